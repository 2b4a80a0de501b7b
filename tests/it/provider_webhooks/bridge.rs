//! The generic bridge route: `X-Pgcourier-Timestamp` + `X-Pgcourier-Signature`.

use super::sign::hmac_sha256_hex;
use super::{expect_error, fixture, inbound, secret, security_events, session, Fixture};
use serde_json::{json, Value};

const SECRET: &str = "bridge-signing-secret";

async fn bridge_session(f: &Fixture) -> i64 {
    let reference = secret(SECRET);
    session(&f.db, "whatsapp", "http_bridge", "+15550000001", json!({ "webhook_secret_ref": reference }), None).await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// POST `body` with `timestamp` and a signature made with `key` (no signature header if `None`).
async fn post(f: &Fixture, session: i64, body: &str, timestamp: i64, key: Option<&str>) -> reqwest::Response {
    let mut request = f
        .app
        .http
        .post(f.app.url(&format!("/v1/providers/http_bridge/{session}")))
        .header("content-type", "application/json")
        .header("x-pgcourier-timestamp", timestamp.to_string());
    if let Some(key) = key {
        let sig = hmac_sha256_hex(key, &[timestamp.to_string().as_bytes(), b".", body.as_bytes()]);
        request = request.header("x-pgcourier-signature", format!("sha256={sig}"));
    }
    request.body(body.to_owned()).send().await.unwrap()
}

#[tokio::test]
async fn a_signed_message_is_inserted_once_and_a_replay_is_harmless() {
    let f = fixture().await;
    let s = bridge_session(&f).await;
    let body = json!({ "id": "3EB0C767D26A", "from": "+1 (555) 123-4567", "text": "Hi, is my order ready?",
                       "metadata": { "pushName": "Ann" } })
    .to_string();
    let ts = now();
    let first = post(&f, s, &body, ts, Some(SECRET)).await;
    assert_eq!(first.status().as_u16(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!((first["received"].as_i64(), first["inserted"].as_i64(), first["duplicates"].as_i64()), (Some(1), Some(1), Some(0)));
    assert_eq!(first["messages"][0]["id"], "3EB0C767D26A");
    assert!(first["messages"][0]["publicId"].is_string(), "{first}");
    let rows = inbound(&f.db, s).await;
    assert_eq!(rows, vec![("3EB0C767D26A".into(), "+15551234567".into(), Some("Hi, is my order ready?".into()))]);
    let meta: Value = f.db.client.query_one("SELECT metadata FROM et_messages", &[]).await.unwrap().get(0);
    assert_eq!(meta["pushName"], "Ann");
    let actor: String = f.db.client.query_one("SELECT actor FROM et_message_events ORDER BY id LIMIT 1", &[]).await.unwrap().get(0);
    assert_eq!(actor, "provider:http_bridge");

    // the same request again (a bridge retry): 200, reported as a duplicate, nothing new
    let again = post(&f, s, &body, ts, Some(SECRET)).await;
    assert_eq!(again.status().as_u16(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!((again["inserted"].as_i64(), again["duplicates"].as_i64()), (Some(0), Some(1)));
    assert_eq!(again["messages"][0]["duplicate"], true);
    assert_eq!(inbound(&f.db, s).await.len(), 1);
    assert!(security_events(&f.db).await.is_empty());
    f.app.stop().await;
}

#[tokio::test]
async fn a_batch_is_all_or_nothing_and_names_the_refused_message() {
    let f = fixture().await;
    let s = bridge_session(&f).await;
    let batch = json!([
        { "id": "m1", "from": "+15551234567", "text": "one" },
        { "id": "m2", "from": "+15557654321", "text": "two", "inReplyTo": "out-1" },
    ])
    .to_string();
    let ok = post(&f, s, &batch, now(), Some(SECRET)).await;
    assert_eq!(ok.status().as_u16(), 200);
    let ok: Value = ok.json().await.unwrap();
    assert_eq!(ok["inserted"], 2);
    let in_reply_to: Option<String> =
        f.db.client.query_one("SELECT in_reply_to FROM et_messages WHERE external_message_id = 'm2'", &[]).await.unwrap().get(0);
    assert_eq!(in_reply_to.as_deref(), Some("out-1"));

    // m3 is fine, m4's sender is not a phone number: the trigger refuses it, m3 is not kept either
    let bad = json!([
        { "id": "m3", "from": "+15551234567", "text": "three" },
        { "id": "m4", "from": "not a phone", "text": "four" },
    ])
    .to_string();
    let refused = post(&f, s, &bad, now(), Some(SECRET)).await;
    let body = expect_error(refused, 400, "invalid_field").await;
    assert_eq!(body["error"]["field"], "[1].from", "{body}");
    // a shape error is caught before the database
    let shape = post(&f, s, &json!([{ "id": "m5", "text": "five" }]).to_string(), now(), Some(SECRET)).await;
    let body = expect_error(shape, 400, "invalid_field").await;
    assert_eq!(body["error"]["field"], "[0].from", "{body}");
    let ids: Vec<String> = inbound(&f.db, s).await.into_iter().map(|r| r.0).collect();
    assert_eq!(ids, vec!["m1", "m2"]);
    f.app.stop().await;
}

#[tokio::test]
async fn a_nul_character_is_400_naming_the_field_and_writes_nothing() {
    let f = fixture().await;
    let s = bridge_session(&f).await;
    let cases = [
        (
            json!([{ "id": "n1", "from": "+15551234567", "text": "ok" }, { "id": "n2", "from": "+15551234567", "text": "a\u{0}b" }]),
            "[1].text",
        ),
        (json!({ "id": "n3", "from": "+15551234567", "text": "x", "metadata": { "pushName": "A\u{0}" } }), "metadata.pushName"),
        (json!({ "id": "n\u{0}4", "from": "+15551234567", "text": "x" }), "id"),
    ];
    for (body, want) in cases {
        let refused = post(&f, s, &body.to_string(), now(), Some(SECRET)).await;
        let err = expect_error(refused, 400, "invalid_field").await;
        assert_eq!(err["error"]["field"], want, "{err}");
    }
    assert!(inbound(&f.db, s).await.is_empty(), "nothing written");
    f.app.stop().await;
}

#[tokio::test]
async fn forged_missing_and_stale_signatures_are_401_and_write_nothing() {
    let f = fixture().await;
    let s = bridge_session(&f).await;
    let body = json!({ "id": "x1", "from": "+15551234567", "text": "let me in" }).to_string();
    let cases = [
        (post(&f, s, &body, now(), Some("not-the-secret")).await, "signature_mismatch"),
        (post(&f, s, &body, now(), None).await, "missing_signature"),
        (post(&f, s, &body, now() - 301, Some(SECRET)).await, "stale_timestamp"),
        (post(&f, s, &body, now() + 400, Some(SECRET)).await, "stale_timestamp"),
    ];
    for (response, why) in cases {
        let body = expect_error(response, 401, "unauthorized").await;
        assert!(body["error"]["message"].as_str().unwrap().contains(&why.replace('_', " ")), "{body}");
    }
    // a valid signature over another body does not carry over
    let ts = now();
    let sig = hmac_sha256_hex(SECRET, &[ts.to_string().as_bytes(), b".", b"{}"]);
    let swapped = f
        .app
        .http
        .post(f.app.url(&format!("/v1/providers/http_bridge/{s}")))
        .header("x-pgcourier-timestamp", ts.to_string())
        .header("x-pgcourier-signature", format!("sha256={sig}"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    expect_error(swapped, 401, "unauthorized").await;
    assert!(inbound(&f.db, s).await.is_empty());
    assert_eq!(f.db.count("SELECT count(*) FROM et_messages").await, 0);
    let events = security_events(&f.db).await;
    let reasons: Vec<&str> = events.iter().map(|e| e.3.as_str()).collect();
    assert_eq!(reasons, vec!["signature_mismatch", "missing_signature", "stale_timestamp", "stale_timestamp", "signature_mismatch"]);
    for (tenant, actor, action, _) in &events {
        assert_eq!((tenant.as_deref(), actor.as_str(), action.as_str()), (Some("acme"), "http_bridge", "bad_webhook_signature"));
    }
    f.app.stop().await;
}
