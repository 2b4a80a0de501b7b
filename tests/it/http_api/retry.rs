//! Retrying failed messages (seed 002 §6.4): one (`POST /v1/messages/{id}/retry`) starts its
//! attempt count again and sends the stored content again, rendered anew; many
//! (`POST /v1/messages/retry`, admin scope) take the list's filters, run in SQL
//! (`et_retry_failed`) and say how many were queued.

use super::{field, Api};
use crate::support::until;
use pgcourier::db::apikeys::Scope;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

const SECS: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_retry_resets_the_attempts_and_sends_the_stored_content_again() {
    let api = Api::start().await;
    // a folder that cannot be created: the file provider fails transiently, three times
    let flaky = api.db.session("acme", "email", "file", "noreply@acme.example").await;
    api.db
        .client
        .execute(
            "UPDATE et_channel_sessions SET max_attempts = 3,
                    config = '{\"dir\": \"/dev/null/cannot\", \"retry_base_ms\": 10, \"retry_cap_ms\": 30}' WHERE id = $1",
            &[&flaky],
        )
        .await
        .unwrap();
    let v = api
        .send(json!({ "channelSessionId": flaky, "to": "ann@example.com", "subject": "Hi {{name}}",
                      "textBody": "Hello {{name}}", "variables": { "name": "Ann" } }))
        .await;
    let id = v["id"].as_i64().unwrap();
    until(&api.db, &format!("SELECT delivery_status = 'failed' FROM et_messages WHERE id = {id}"), SECS).await;
    let (_, m) = api.get(&format!("/v1/messages/{id}")).await;
    assert_eq!((m["attempts"].as_i64(), m["errorClass"].as_str()), (Some(3), Some("transient")), "{m}");

    // fixed; the retry starts counting again
    let dir = api.outbox.0.to_string_lossy().to_string();
    api.db
        .client
        .execute("UPDATE et_channel_sessions SET config = jsonb_build_object('dir', $1::text) WHERE id = $2", &[&dir, &flaky])
        .await
        .unwrap();
    let send = api.key(&[Scope::Send]).await;
    let (s, r) = api.call(Method::POST, &format!("/v1/messages/{id}/retry"), Some(&send), None).await;
    assert_eq!(s, 200, "{r}");
    assert!(r["attempts"].as_i64().unwrap() <= 1, "reset: {r}");
    assert_eq!(r["lastError"], serde_json::Value::Null);
    until(&api.db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), SECS).await;
    let (_, m) = api.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(m["attempts"], 1, "one attempt since the retry: {m}");
    // the stored content, rendered again; the written content is unchanged
    assert_eq!((m["subject"].as_str(), m["rendered"]["subject"].as_str()), (Some("Hi {{name}}"), Some("Hi Ann")), "{m}");
    assert_eq!(m["rendered"]["textBody"], "Hello Ann");
    assert_eq!(m["provider"], "file");
    let eml = std::fs::read_to_string(api.outbox.0.join(format!("{}.eml", m["messageId"].as_str().unwrap()))).expect("the .eml file");
    assert!(eml.contains("Subject: Hi Ann"), "{eml}");
    // the events: the retry by the key, then the attempt that sent it, counted from 1
    let events = m["events"].as_array().unwrap();
    let retried = events.iter().position(|e| e["from"] == "failed" && e["type"] == "queued").expect("the retry event");
    assert_eq!(events[retried]["actor"], format!("apikey:{}", &send[4..12]));
    let sent = events.iter().rev().find(|e| e["type"] == "sent").unwrap();
    assert_eq!(sent["detail"]["attempts"], 1, "{sent}");
    api.stop().await;
}

#[tokio::test]
async fn a_bulk_retry_queues_the_failed_messages_that_match_and_needs_admin() {
    let api = Api::start().await;
    let broken = api.db.session("acme", "email", "file", "noreply@acme.example").await;
    let mut ids = Vec::new();
    for (to, category) in [("a@example.com", "billing"), ("b@example.com", "billing"), ("c@example.com", "other")] {
        let v = api
            .send(json!({ "channelSessionId": broken, "to": to, "textBody": "x", "metadata": { "category": category, "tags": ["t"] } }))
            .await;
        ids.push(v["id"].as_i64().unwrap());
    }
    // another tenant's failed message: never touched
    api.db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('beta', 'Beta')").await.unwrap();
    let beta_session = api.db.session("beta", "email", "file", "noreply@beta.example").await;
    api.db
        .client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text, metadata)
             VALUES ('beta', $1, 'outbound', '{z@example.com}', 'x', '{\"category\": \"billing\"}')",
            &[&beta_session],
        )
        .await
        .unwrap();
    until(&api.db, "SELECT count(*) = 4 FROM et_messages WHERE delivery_status = 'failed'", SECS).await;
    // paused: a retried message stays queued, so the counts below do not race the daemon
    api.db.client.execute("UPDATE et_channel_sessions SET status = 'paused' WHERE id = $1", &[&broken]).await.unwrap();

    let bulk = |key: String, body: serde_json::Value| {
        let api = &api;
        async move { api.call(Method::POST, "/v1/messages/retry", Some(&key), Some(body)).await }
    };
    for scopes in [&[Scope::Send][..], &[Scope::Read], &[Scope::Send, Scope::Read]] {
        let (s, v) = bulk(api.key(scopes).await, json!({})).await;
        assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "{scopes:?}: {v}");
    }
    for (body, name) in [
        (json!({ "status": "sent" }), "status"),
        (json!({ "status": ["failed", "queued"] }), "status"),
        (json!({ "limit": 0 }), "limit"),
        (json!({ "limit": "many" }), "limit"),
        (json!({ "offset": 1 }), "offset"),
        (json!({ "from": "last week" }), "from"),
        (json!({ "tags": [1] }), "tags"),
    ] {
        let (s, v) = bulk(api.admin.clone(), body.clone()).await;
        assert_eq!((s, field(&v)), (400, name), "{body}: {v}");
    }
    assert_eq!(api.count("SELECT count(*) FROM et_messages WHERE delivery_status = 'failed'").await, 4, "refusals change nothing");

    // what the list shows for a filter is what the same filter retries
    let (_, listed) = api.get("/v1/messages?status=failed&category=billing&tags=t").await;
    let mut listed: Vec<i64> = listed["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    listed.sort();
    assert_eq!(listed, vec![ids[0], ids[1]]);
    let (s, v) = bulk(api.admin.clone(), json!({ "status": "failed", "category": "billing", "tags": ["t"] })).await;
    assert_eq!((s, v["queued"].as_i64(), v["limitReached"].as_bool()), (200, Some(2), Some(false)), "{v}");
    let retried: Vec<i64> = api
        .db
        .client
        .query(
            "SELECT message_id FROM et_message_events WHERE from_status = 'failed' AND to_status = 'queued'
                AND actor = $1 AND detail->>'reason' = 'operator retry (bulk)' ORDER BY message_id",
            &[&format!("apikey:{}", &api.admin[4..12])],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(retried, listed);
    let reset = api.count(&format!("SELECT count(*) FROM et_messages WHERE id IN ({}, {}) AND attempts = 0", ids[0], ids[1])).await;
    assert_eq!(reset, 2, "attempts start again");
    assert_eq!(api.count("SELECT count(*) FROM et_outbound_queue WHERE state = 'ready'").await, 2);

    // a limit, then everything left: acme's only
    let (_, v) = bulk(api.admin.clone(), json!({ "limit": 1, "to": "c@example.com" })).await;
    assert_eq!((v["queued"].as_i64(), v["limitReached"].as_bool()), (Some(1), Some(true)), "{v}");
    let (_, v) = bulk(api.admin.clone(), json!({})).await;
    assert_eq!(v["queued"], 0, "{v}");
    assert_eq!(api.count("SELECT count(*) FROM et_messages WHERE tenant_id = 'beta' AND delivery_status = 'failed'").await, 1);
    assert_eq!(api.count("SELECT count(*) FROM et_messages WHERE tenant_id = 'acme' AND delivery_status = 'queued'").await, 3);
    // the same function from psql, with named filters
    api.db.client.execute("UPDATE et_channel_sessions SET status = 'active' WHERE id = $1", &[&beta_session]).await.unwrap();
    let n: i32 = api.db.client.query_one("SELECT et_retry_failed('beta', 'dba', p_category => 'billing')", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    api.stop().await;
}
