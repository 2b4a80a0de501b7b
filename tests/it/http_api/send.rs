//! `POST /v1/messages`: what is written, idempotency (header, body, both, replays, races),
//! sender and session choice, and every refusal naming its field with nothing written.

use super::{field, Api};
use crate::support::until;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const SECS: Duration = Duration::from_secs(15);

/// The session the message an API answer names was sent on.
async fn session_of(api: &Api, answer: &Value) -> i64 {
    api.db
        .client
        .query_one("SELECT channel_session_id FROM et_messages WHERE id = $1", &[&answer["id"].as_i64().unwrap()])
        .await
        .unwrap()
        .get(0)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn a_message_with_attachments_is_written_in_one_go_and_readable() {
    let api = Api::start().await;
    api.db
        .client
        .execute(
            "INSERT INTO et_suppressions (tenant_id, channel, address, reason) VALUES ('acme', 'email', 'gone@example.com', 'hard_bounce')",
            &[],
        )
        .await
        .unwrap();
    let pdf: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let v = api
        .send(json!({
            "to": ["Ann@Example.com", "gone@example.com"],
            "cc": ["boss@example.com"],
            "from": { "email": "billing@acme.example", "name": "Acme Billing" },
            "replyTo": "support@acme.example",
            "subject": "{{product}} invoice",
            "htmlBody": "<p>Hello {{name}}</p>",
            "variables": { "name": "Ann", "product": "Widget" },
            "metadata": { "category": "billing", "tags": ["invoice"] },
            "priority": "high",
            "attachments": [{ "filename": "invoice.pdf", "contentType": "application/pdf", "contentBase64": b64(&pdf) },
                            { "filename": "note.csv", "contentType": "text/csv", "content": b64(b"hi") }],
        }))
        .await;
    assert_eq!(v["status"], "queued");
    assert_eq!(v["suppressedRecipients"], json!(["gone@example.com"]));
    let id = v["id"].as_i64().unwrap();
    let row = api
        .db
        .client
        .query_one("SELECT public_id::text, recipients, cc, sender, priority, metadata, thread_id FROM et_messages WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), v["messageId"].as_str().unwrap());
    assert_eq!(row.get::<_, Vec<String>>(1), vec!["ann@example.com"]);
    assert_eq!(row.get::<_, Vec<String>>(2), vec!["boss@example.com"]);
    assert_eq!(row.get::<_, String>(3), "Acme Billing <billing@acme.example>");
    assert_eq!(row.get::<_, i32>(4), 1);
    assert_eq!(row.get::<_, Value>(5)["category"], "billing");
    assert_eq!(row.get::<_, i64>(6), v["threadId"].as_i64().unwrap());
    let stored: Vec<u8> =
        api.db.client.query_one("SELECT content FROM et_attachments WHERE filename = 'invoice.pdf'", &[]).await.unwrap().get(0);
    assert_eq!(stored, pdf);
    assert_eq!(api.count("SELECT count(*) FROM et_attachments WHERE content_type = 'text/csv'").await, 1);
    let actor: String = api
        .db
        .client
        .query_one("SELECT actor FROM et_message_events WHERE message_id = $1 ORDER BY id LIMIT 1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(actor, format!("apikey:{}", &api.admin[4..12]));

    // it goes out (provider file), and the read shows status, events and attachments
    until(&api.db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), SECS).await;
    let (s, m) = api.get(&format!("/v1/messages/{}", v["messageId"].as_str().unwrap())).await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["status"], "sent");
    assert_eq!(m["attempts"], 1);
    assert_eq!(m["lastError"], Value::Null);
    assert!(m["sentAt"].is_string() && m["createdAt"].is_string());
    assert_eq!(m["to"], json!(["ann@example.com"]));
    assert_eq!(m["subject"], "{{product}} invoice");
    assert!(m["externalMessageId"].as_str().unwrap().ends_with("@acme.example>"));
    let kinds: Vec<&str> = m["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["queued", "sending", "sent"]);
    assert_eq!(m["attachments"].as_array().unwrap().len(), 2);
    assert_eq!(m["attachments"][0]["sizeBytes"], 5000);
    let (s, by_id) = api.get(&format!("/v1/messages/{id}")).await;
    assert_eq!((s, &by_id["messageId"]), (200, &m["messageId"]));
    api.stop().await;
}

#[tokio::test]
async fn idempotency_by_header_body_or_both() {
    let api = Api::start().await;
    let body = |extra: Value| {
        let mut b = json!({ "to": "ann@example.com", "subject": "Hi", "textBody": "Hello", "scheduledAt": super::later() });
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    let post = |b: Value, key: Option<&'static str>| {
        let api = &api;
        async move {
            let headers: Vec<(&str, &str)> = key.map(|k| vec![("Idempotency-Key", k)]).unwrap_or_default();
            api.call_with(Method::POST, "/v1/messages", Some(&api.admin), Some(b), &headers).await
        }
    };
    // header only
    let (s1, a) = post(body(json!({})), Some("k-header")).await;
    let (s2, b) = post(body(json!({})), Some("k-header")).await;
    assert_eq!((s1, s2), (201, 200), "{a} {b}");
    assert_eq!(a["messageId"], b["messageId"]);
    // body only
    let (s1, a) = post(body(json!({ "idempotencyKey": "k-body" })), None).await;
    let (s2, b) = post(body(json!({ "idempotencyKey": "k-body" })), None).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(a["messageId"], b["messageId"]);
    // header replays a body key, and both equal replays too
    let (s3, c) = post(body(json!({})), Some("k-body")).await;
    let (s4, d) = post(body(json!({ "idempotencyKey": "k-body" })), Some("k-body")).await;
    assert_eq!((s3, s4), (200, 200));
    assert_eq!((&c["messageId"], &d["messageId"]), (&a["messageId"], &a["messageId"]));
    // both, equal, new
    let (s, _) = post(body(json!({ "idempotencyKey": "k-both" })), Some("k-both")).await;
    assert_eq!(s, 201);
    // both, different
    let (s, v) = post(body(json!({ "idempotencyKey": "k-one" })), Some("k-two")).await;
    assert_eq!((s, field(&v)), (400, "idempotencyKey"), "{v}");
    // without a key every post is new
    assert_eq!(post(body(json!({})), None).await.0, 201);
    assert_eq!(post(body(json!({})), None).await.0, 201);
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 5);
    assert_eq!(api.count("SELECT count(*) FROM et_messages WHERE idempotency_key IN ('k-one', 'k-two')").await, 0);
    api.stop().await;
}

#[tokio::test]
async fn a_replay_after_sending_returns_the_sent_original() {
    let api = Api::start().await;
    let msg = json!({ "channel": "whatsapp", "to": "+15551234567", "textBody": "Hello", "idempotencyKey": "order-42" });
    let first = api.send(msg.clone()).await;
    let id = first["id"].as_i64().unwrap();
    until(&api.db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), SECS).await;
    let (s, again) = api.post("/v1/messages", msg).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["messageId"], first["messageId"]);
    assert_eq!(again["id"], id);
    assert_eq!(again["status"], "sent");
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 1);
    assert_eq!(api.count("SELECT count(*) FROM et_outbound_queue").await, 0, "nothing queued again");
    api.stop().await;
}

#[tokio::test]
async fn concurrent_identical_requests_create_exactly_one_message() {
    let api = Api::start().await;
    let msg = json!({ "to": "ann@example.com", "textBody": "once", "idempotencyKey": "race",
                      "attachments": [{ "filename": "a.csv", "contentType": "text/csv", "contentBase64": b64(b"payload") }] });
    let calls = (0..8).map(|_| api.post("/v1/messages", msg.clone()));
    let results = futures_util::future::join_all(calls).await;
    let mut statuses: Vec<u16> = results.iter().map(|(s, _)| *s).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 201], "{results:?}");
    let ids: std::collections::HashSet<String> = results.iter().map(|(_, v)| v["messageId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 1);
    assert_eq!(api.count("SELECT count(*) FROM et_attachments").await, 1);
    api.stop().await;
}

#[tokio::test]
async fn every_refusal_names_its_field_and_writes_nothing() {
    let api = Api::start().await;
    api.db.client.batch_execute("UPDATE et_tenants SET settings = '{\"attachment_max_file_bytes\": 100}'").await.unwrap();
    let ok = json!({ "to": ["ann@example.com"], "subject": "Hi", "htmlBody": "<p>Hi</p>" });
    let with = |extra: Value| {
        let mut b = ok.clone();
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                b.as_object_mut().unwrap().remove(k);
            } else {
                b[k] = v.clone();
            }
        }
        b
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (with(json!({ "to": ["not an address"] })), 400, "to"),
        (with(json!({ "to": [] })), 400, "to"),
        (with(json!({ "to": null })), 400, "to"),
        (with(json!({ "to": 42 })), 400, "to"),
        (with(json!({ "cc": ["ok@example.com", "bad@"] })), 400, "cc"),
        (with(json!({ "bcc": "@nope" })), 400, "bcc"),
        (with(json!({ "from": "someone@elsewhere.example" })), 400, "from"),
        (with(json!({ "from": "not-an-address" })), 400, "from"),
        (with(json!({ "replyTo": "bad reply" })), 400, "replyTo"),
        (with(json!({ "htmlBody": null })), 400, "textBody"),
        (with(json!({ "colour": "red" })), 400, "colour"),
        (with(json!({ "priority": "urgent" })), 400, "priority"),
        (with(json!({ "priority": 9 })), 400, "priority"),
        (with(json!({ "priority": true })), 400, "priority"),
        (with(json!({ "scheduledAt": "tomorrow" })), 400, "scheduledAt"),
        (with(json!({ "subject": 7 })), 400, "subject"),
        (with(json!({ "variables": [1, 2] })), 400, "variables"),
        (with(json!({ "channel": "pigeon" })), 400, "channel"),
        (with(json!({ "channel": "sms" })), 400, "channel"),
        (with(json!({ "channelSessionId": 999999 })), 400, "channelSessionId"),
        (with(json!({ "channel": "whatsapp", "to": "+15551234567" })), 400, "htmlBody"),
        (with(json!({ "attachments": [{ "filename": "a.txt", "contentBase64": "!!!not base64" }] })), 400, "attachments[0].contentBase64"),
        (
            with(json!({ "attachments": [{ "filename": "a.txt", "contentBase64": "aGk=" }, { "contentBase64": "aGk=" }] })),
            400,
            "attachments[1].filename",
        ),
        (with(json!({ "attachments": [{ "filename": "a.txt", "contentBase64": "aGk=", "extra": 1 }] })), 400, "attachments[0].extra"),
        (with(json!({ "attachments": [{ "filename": "a/b.txt", "contentBase64": "aGk=" }] })), 400, "attachments[0].filename"),
        (
            with(json!({ "attachments": [{ "filename": "a.txt", "contentType": "not a type", "contentBase64": "aGk=" }] })),
            400,
            "attachments[0].contentType",
        ),
        (
            with(json!({ "attachments": [{ "filename": "ok.pdf", "contentType": "application/pdf", "contentBase64": "aGk=" },
                                         { "filename": "big.pdf", "contentType": "application/pdf", "contentBase64": b64(&[7u8; 101]) }] })),
            413,
            "attachments[1].contentBase64",
        ),
    ];
    for (body, status, name) in cases {
        let (s, v) = api.post("/v1/messages", body.clone()).await;
        assert_eq!((s, field(&v)), (status, name), "{body} → {v}");
        assert!(v["error"]["message"].as_str().unwrap().starts_with(name), "the message names the field: {v}");
    }
    // not JSON, not an object
    let (s, v) = post_raw(&api, "{nope".to_owned()).await;
    assert_eq!((s, field(&v)), (400, "body"), "{v}");
    let (s, v) = api.post("/v1/messages", json!([1])).await;
    assert_eq!((s, field(&v)), (400, "body"));
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 0);
    assert_eq!(api.count("SELECT count(*) FROM et_attachments").await, 0);
    assert_eq!(api.count("SELECT count(*) FROM et_outbound_queue").await, 0);
    // and the valid body goes through
    assert_eq!(api.post("/v1/messages", ok).await.0, 201);
    api.stop().await;
}

#[tokio::test]
async fn sender_domains_and_session_choice() {
    let api = Api::start().await;
    // the session's domain (and its subdomains) by default
    api.send(json!({ "to": "a@example.com", "textBody": "x", "from": "news@mail.acme.example" })).await;
    // the tenant's allowed list replaces the session's domain when set
    api.db.client.batch_execute("UPDATE et_tenants SET settings = '{\"allowed_sender_domains\": [\"Brand.example\"]}'").await.unwrap();
    api.send(json!({ "to": "a@example.com", "textBody": "x", "from": "Brand <hi@brand.example>" })).await;
    let (s, v) = api.post("/v1/messages", json!({ "to": "a@example.com", "textBody": "x", "from": "billing@acme.example" })).await;
    assert_eq!((s, field(&v)), (400, "from"), "{v}");
    // the session's own address always
    api.send(json!({ "to": "a@example.com", "textBody": "x", "from": "Acme <noreply@acme.example>" })).await;
    // chat channels: from must be the session's own number
    let wa = api.send(json!({ "channel": "whatsapp", "to": "+1 555 123 4567", "textBody": "x", "from": "+15550000000" })).await;
    let session = session_of(&api, &wa).await;
    assert_eq!(session, api.wa);
    let (s, v) =
        api.post("/v1/messages", json!({ "channel": "whatsapp", "to": "+15551234567", "textBody": "x", "from": "+15559999999" })).await;
    assert_eq!((s, field(&v)), (400, "from"), "{v}");
    // two active whatsapp sessions: `channel` is ambiguous, channelSessionId decides
    let second = api.db.session("acme", "whatsapp", "log", "+15550000001").await;
    let (s, v) = api.post("/v1/messages", json!({ "channel": "whatsapp", "to": "+15551234567", "textBody": "x" })).await;
    assert_eq!((s, field(&v)), (400, "channel"), "{v}");
    let v = api.send(json!({ "channelSessionId": second, "to": "+15551234567", "textBody": "x" })).await;
    let session = session_of(&api, &v).await;
    assert_eq!(session, second);
    // a session id and a channel that disagree
    let (s, v) =
        api.post("/v1/messages", json!({ "channelSessionId": second, "channel": "email", "to": "a@example.com", "textBody": "x" })).await;
    assert_eq!((s, field(&v)), (400, "channel"), "{v}");
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 5);
    api.stop().await;
}

/// POST a `text`-byte text body as `/v1/messages`: the status and the JSON answer.
async fn post_sized(api: &Api, text: usize) -> (u16, Value) {
    post_raw(api, format!("{{\"to\": \"a@example.com\", \"textBody\": \"{}\"}}", "a".repeat(text))).await
}

/// POST `body` as it is, declared JSON, to `/v1/messages`: the status and the JSON answer.
async fn post_raw(api: &Api, body: String) -> (u16, Value) {
    let resp = api
        .app
        .http
        .post(api.app.url("/v1/messages"))
        .header("x-api-key", &api.admin)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("a response, not a reset");
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    // the default limit is the seed's 30 MiB
    let api = Api::start().await;
    let (status, v) = post_sized(&api, 30 * 1024 * 1024 + 1024).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large");
    assert!(v["error"]["message"].as_str().unwrap().contains("PGCOURIER_HTTP_MAX_BODY"), "{v}");
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 0);
    api.stop().await;

    // and an operator sets another one
    let api = Api::start_with(&[("PGCOURIER_HTTP_MAX_BODY", "2000")]).await;
    assert_eq!(post_sized(&api, 1000).await.0, 201);
    assert_eq!(post_sized(&api, 2000).await.0, 413);
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 1);
    api.stop().await;
}
