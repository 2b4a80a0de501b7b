//! A message that did not go out can be resent as a corrected copy (`POST
//! /v1/messages/{id}/resend`, `et_resend`): a new message through the same insert trigger, so
//! every check applies to the corrections, linked both ways to its original. The refusal of a
//! content change says so instead of suggesting a cancel that is not allowed.

use super::{field, Api};
use crate::support::until;
use pgcourier::db::apikeys::Scope;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

const SECS: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_failed_message_is_resent_as_a_linked_corrected_copy() {
    let api = Api::start().await;
    let broken = api.db.session("acme", "email", "file", "noreply@acme.example").await;
    let v = api
        .send(json!({ "channelSessionId": broken, "to": ["ann@example.com", "bob@example.com"], "subject": "Invoice {{n}}",
                      "textBody": "Amount: {{amount}}", "variables": { "n": "7", "amount": "$9" },
                      "metadata": { "category": "billing" },
                      "attachments": [{ "filename": "a.txt", "contentType": "text/csv", "contentBase64": "aGVsbG8=" }] }))
        .await;
    let (id, uuid) = (v["id"].as_i64().unwrap(), v["messageId"].as_str().unwrap().to_owned());
    until(&api.db, &format!("SELECT delivery_status = 'failed' FROM et_messages WHERE id = {id}"), SECS).await;

    // the content of a failed message is frozen, and the refusal says what to do instead
    let e = api.db.client.execute("UPDATE et_messages SET subject = 'x' WHERE id = $1", &[&id]).await.unwrap_err();
    let hint = e.as_db_error().unwrap().hint().unwrap().to_owned();
    assert!(hint.contains("et_resend") && hint.contains("/resend") && !hint.contains("cancel"), "{hint}");

    // bad corrections are refused by the insert trigger, naming the field; nothing is written
    let send = api.key(&[Scope::Send]).await;
    let resend = |body: serde_json::Value, key: &str| {
        let (api, path, key) = (&api, format!("/v1/messages/{uuid}/resend"), key.to_owned());
        async move { api.call(Method::POST, &path, Some(&key), Some(body)).await }
    };
    for (body, name) in [
        (json!({ "to": "not an address" }), "to"),
        (json!({ "to": [] }), "to"),
        (json!({ "subject": "two\nlines" }), "subject"),
        (json!({ "from": "someone@elsewhere.example" }), "from"),
        (json!({ "priority": 9 }), "priority"),
        (json!({ "scheduledAt": "tomorrow" }), "scheduledAt"),
        (json!({ "channel": "sms" }), "channel"),
        (json!({ "variables": [1] }), "variables"),
    ] {
        let (s, v) = resend(body.clone(), &send).await;
        assert_eq!((s, field(&v)), (400, name), "{body}: {v}");
    }
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 1, "a refused copy leaves no trace");
    assert_eq!(api.count("SELECT count(*) FROM et_attachments").await, 1);
    let (s, _) = resend(json!({}), &api.key(&[Scope::Read]).await).await;
    assert_eq!(s, 403, "resending is sending");

    // fix the session, resend with a corrected subject and one recipient fewer
    let dir = api.outbox.0.to_string_lossy().to_string();
    api.db
        .client
        .execute("UPDATE et_channel_sessions SET config = jsonb_build_object('dir', $1::text) WHERE id = $2", &[&dir, &broken])
        .await
        .unwrap();
    let (s, copy) = resend(json!({ "to": "ann@example.com", "subject": "Invoice {{n}} (corrected)" }), &send).await;
    assert_eq!(s, 201, "{copy}");
    let copy_id = copy["id"].as_i64().unwrap();
    assert_ne!(copy_id, id);
    assert_eq!(copy["resentFrom"], id);
    assert_eq!(copy["to"], json!(["ann@example.com"]));
    assert_eq!(copy["metadata"]["category"], "billing", "the rest is copied");
    until(&api.db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {copy_id}"), SECS).await;
    let (_, copy) = api.get(&format!("/v1/messages/{copy_id}")).await;
    assert_eq!(copy["rendered"]["subject"], "Invoice 7 (corrected)", "{copy}");
    assert_eq!(copy["rendered"]["textBody"], "Amount: $9");
    assert_eq!(copy["attachments"][0]["filename"], "a.txt");
    let eml = std::fs::read_to_string(api.outbox.0.join(format!("{}.eml", copy["messageId"].as_str().unwrap()))).unwrap();
    assert!(eml.contains("Invoice 7 (corrected)") && eml.contains("a.txt"), "{eml}");
    assert!(copy["events"][0]["actor"].as_str().unwrap().starts_with("apikey:"), "{copy}");
    let (_, original) = api.get(&format!("/v1/messages/{id}")).await;
    assert_eq!((original["status"].as_str(), original["resentAs"].as_i64()), (Some("failed"), Some(copy_id)));

    // once: correct the copy instead; a sent message is not resent
    let (s, v) = resend(json!({}), &send).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains(&format!("already resent as message {copy_id}")), "{v}");
    let (s, v) = api.post(&format!("/v1/messages/{copy_id}/resend"), json!({})).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("only outbound messages that did not go out"), "{v}");
    // unknown fields and ids
    assert_eq!(field(&resend(json!({ "colour": "red" }), &send).await.1), "colour");
    assert_eq!(api.post("/v1/messages/999999/resend", json!({})).await.0, 404);
    api.stop().await;
}

#[tokio::test]
async fn a_cancelled_message_is_resent_and_the_hints_follow_the_state() {
    let api = Api::start().await;
    let sent = api.send(json!({ "to": "ann@example.com", "subject": "Tpyo", "textBody": "x", "scheduledAt": super::later() })).await;
    let id = sent["id"].as_i64().unwrap();
    let (_, original) = api.get(&format!("/v1/messages/{id}")).await;
    // queued: the hint says cancel, then resend; a queued message is not resent directly
    let e = api.db.client.execute("UPDATE et_messages SET subject = 'Typo' WHERE id = $1", &[&id]).await.unwrap_err();
    let hint = e.as_db_error().unwrap().hint().unwrap().to_owned();
    assert!(hint.contains("et_cancel") && hint.contains("et_resend"), "{hint}");
    let (s, v) = api.post(&format!("/v1/messages/{id}/resend"), json!({ "subject": "Typo" })).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(api.post(&format!("/v1/messages/{id}/cancel"), json!({})).await.0, 200);
    let (s, copy) = api.post(&format!("/v1/messages/{id}/resend"), json!({ "subject": "Typo", "replyTo": null })).await;
    assert_eq!((s, copy["subject"].as_str(), copy["resentFrom"].as_i64()), (201, Some("Typo"), Some(id)), "{copy}");
    assert_eq!(copy["status"], "queued");
    assert_eq!(copy["scheduledAt"], original["scheduledAt"], "a scheduled time still ahead is kept");
    // the same function from psql
    let (_, again) = api.post(&format!("/v1/messages/{}/cancel", copy["id"]), json!({})).await;
    assert_eq!(again["status"], "cancelled");
    let third: i64 = api
        .db
        .client
        .query_one("SELECT et_resend($1, '{\"subject\": \"Typo!\"}', 'dba')", &[&copy["id"].as_i64().unwrap()])
        .await
        .unwrap()
        .get(0);
    let actor: String = api
        .db
        .client
        .query_one("SELECT actor FROM et_message_events WHERE message_id = $1 ORDER BY id LIMIT 1", &[&third])
        .await
        .unwrap()
        .get(0);
    assert_eq!(actor, "dba");
    api.stop().await;
}

#[tokio::test]
async fn another_tenants_message_cannot_be_resent_and_the_attempt_is_logged() {
    let api = Api::start().await;
    let mine = api.send(json!({ "to": "ann@example.com", "textBody": "x", "scheduledAt": super::later() })).await;
    let id = mine["id"].as_i64().unwrap();
    api.post(&format!("/v1/messages/{id}/cancel"), json!({})).await;
    api.db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('beta', 'Beta')").await.unwrap();
    api.db.session("beta", "email", "file", "noreply@beta.example").await;
    let beta = pgcourier::db::apikeys::create(&api.db.client, "beta", "beta", &[Scope::Admin], None).await.unwrap();
    for path in [format!("/v1/messages/{id}/resend"), format!("/v1/messages/{}/resend", mine["messageId"].as_str().unwrap())] {
        let (s, v) = api.call(Method::POST, &path, Some(&beta.key), Some(json!({ "subject": "mine now" }))).await;
        assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    }
    assert_eq!(api.count("SELECT count(*) FROM et_security_events WHERE tenant_id = 'beta' AND action = 'cross_tenant_access'").await, 2);
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 1);
    // nor retried in bulk, nor listed
    let (s, v) = api.call(Method::POST, "/v1/messages/retry", Some(&beta.key), Some(json!({}))).await;
    assert_eq!((s, v["queued"].as_i64()), (200, Some(0)));
    api.stop().await;
}

#[tokio::test]
async fn resent_from_names_a_message_of_the_same_tenant_or_the_insert_is_refused() {
    let api = Api::start().await;
    api.db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('globex', 'Globex')").await.unwrap();
    let theirs_session = api.db.session("globex", "email", "file", "noreply@globex.example").await;
    let insert = "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text, resent_from)
                  VALUES ($1, $2, 'outbound', ARRAY['a@example.com'], 'x', $3) RETURNING id";
    let theirs: i64 = api.db.client.query_one(insert, &[&"globex", &theirs_session, &None::<i64>]).await.unwrap().get(0);
    let ours: i64 = api.db.client.query_one(insert, &[&"acme", &api.email, &None::<i64>]).await.unwrap().get(0);
    let before = api.count("SELECT count(*) FROM et_messages").await;
    for bad in [theirs, 999_999] {
        let e = api.db.client.query_one(insert, &[&"acme", &api.email, &Some(bad)]).await.expect_err("another tenant's or no message");
        let db = e.as_db_error().unwrap();
        assert_eq!(db.column(), Some("resent_from"), "{db:?}");
        assert!(db.message().contains("is not an outbound message of tenant acme"), "{db:?}");
    }
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, before, "nothing written");
    api.db.client.query_one(insert, &[&"acme", &api.email, &Some(ours)]).await.expect("a message of the same tenant");
    api.stop().await;
}
