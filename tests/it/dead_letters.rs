//! Seed 003's status events and dead letters: every attempt's event carries the provider's
//! response and the message's trace id; `GET /v1/dead-letters` and `et_dead_letters` give the
//! message as sent, its attempts, failure type, last error and provider response.

use crate::http_api::{field, Api};
use crate::mock_http::{Answer, MockHttp};
use crate::support::until;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const SECS: Duration = Duration::from_secs(20);

/// A bridge that accepts a text unless it says `reject` (400) or `busy` (503), and a whatsapp
/// session of tenant acme on it: two attempts, retries 20 ms apart.
async fn bridge(api: &Api) -> (MockHttp, i64) {
    let mock = MockHttp::start(|r, _| {
        let text = r.json()["text"].as_str().unwrap_or_default().to_owned();
        if text.contains("reject") {
            Answer::json(400, json!({ "error": "number is not on WhatsApp" }))
        } else if text.contains("busy") {
            Answer::json(503, json!({ "error": "socket not connected" }))
        } else {
            Answer::json(200, json!({ "id": "BRIDGE-1", "status": "sent" }))
        }
    })
    .await;
    let config = json!({ "url": format!("{}/send", mock.url()), "timeout_ms": 5000, "retry_base_ms": 20, "retry_cap_ms": 40 });
    let session: i64 = api
        .db
        .client
        .query_one(
            "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config, max_attempts)
             VALUES ('acme', 'whatsapp', 'http_bridge', '+15550009999', $1, 2) RETURNING id",
            &[&config],
        )
        .await
        .unwrap()
        .get(0);
    (mock, session)
}

/// The `detail` of every event that ended an attempt of message `id`, in order.
async fn attempt_events(api: &Api, id: i64) -> Vec<Value> {
    let rows = api
        .db
        .client
        .query("SELECT detail FROM et_message_events WHERE message_id = $1 AND from_status = 'sending' ORDER BY id", &[&id])
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn each_attempt_event_carries_the_provider_response_and_the_trace_id() {
    let api = Api::start().await;
    let (_mock, session) = bridge(&api).await;
    let headers = [("X-Trace-Id", "order-42-trace")];
    let body = json!({ "channelSessionId": session, "to": "+15551234567", "textBody": "Your order shipped" });
    let (s, sent) = api.call_with(Method::POST, "/v1/messages", Some(&api.admin), Some(body), &headers).await;
    assert_eq!(s, 201, "{sent}");
    let id = sent["id"].as_i64().unwrap();
    until(&api.db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), SECS).await;
    let events = attempt_events(&api, id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["trace_id"], "order-42-trace");
    let response = &events[0]["provider_response"];
    assert_eq!((&response["status"], &response["code"], &response["message"]), (&json!("ok"), &json!("200"), &json!("accepted")));
    assert!(response["raw"].as_str().unwrap().contains("BRIDGE-1"), "{response}");
    let (_, view) = api.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(view["metadata"]["trace_id"], "order-42-trace", "{view}");

    // a retried attempt: each attempt's event has its own answer; traceparent gives the trace id
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let body = json!({ "channelSessionId": session, "to": "+15551234567", "textBody": "busy now" });
    let (s, busy) = api.call_with(Method::POST, "/v1/messages", Some(&api.admin), Some(body), &[("traceparent", tp)]).await;
    assert_eq!(s, 201, "{busy}");
    let id = busy["id"].as_i64().unwrap();
    until(&api.db, &format!("SELECT delivery_status = 'failed' FROM et_messages WHERE id = {id}"), SECS).await;
    let events = attempt_events(&api, id).await;
    assert_eq!(events.len(), 2, "two attempts: {events:?}");
    for e in &events {
        assert_eq!(e["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!((&e["provider_response"]["status"], &e["provider_response"]["code"]), (&json!("rejected"), &json!("503")), "{e}");
        assert!(e["provider_response"]["raw"].as_str().unwrap().contains("socket not connected"), "{e}");
    }
    // a malformed traceparent is refused, naming the header; nothing is written
    let before = api.count("SELECT count(*) FROM et_messages").await;
    let body = json!({ "channelSessionId": session, "to": "+15551234567", "textBody": "x" });
    let (s, v) = api.call_with(Method::POST, "/v1/messages", Some(&api.admin), Some(body), &[("traceparent", "00-xyz-01")]).await;
    assert_eq!((s, field(&v)), (400, "traceparent"), "{v}");
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, before);
    api.stop().await;
}

#[tokio::test]
async fn dead_letters_give_the_message_as_sent_and_how_it_failed() {
    let api = Api::start().await;
    let (mock, session) = bridge(&api).await;
    let send = |text: &str, vars: Option<Value>| {
        let mut body = json!({ "channelSessionId": session, "to": "+15551234567", "textBody": text,
                               "metadata": { "trace_id": "t-1", "order": 7 } });
        if let Some(v) = vars {
            body["variables"] = v;
        }
        body
    };
    let rejected = api.send(send("{{who}}: reject me", Some(json!({ "who": "Ann" })))).await["id"].as_i64().unwrap();
    let busy = api.send(send("busy again", None)).await["id"].as_i64().unwrap();
    let fine = api.send(send("fine", None)).await["id"].as_i64().unwrap();
    until(
        &api.db,
        &format!("SELECT count(*) = 3 FROM et_messages WHERE id IN ({rejected}, {busy}, {fine}) AND delivery_status IN ('sent', 'failed')"),
        SECS,
    )
    .await;
    assert_eq!(mock.requests().len(), 1 + 2 + 1, "one attempt rejected, two busy, one sent");

    let (s, page) = api.get("/v1/dead-letters").await;
    assert_eq!(s, 200, "{page}");
    let letters = page["deadLetters"].as_array().unwrap();
    assert_eq!(letters.len(), 2, "{page}");
    let by_id = |id: i64| letters.iter().find(|l| l["id"] == id).unwrap_or_else(|| panic!("{id} in {page}"));
    let r = by_id(rejected);
    assert_eq!(r["textBody"], "Ann: reject me", "as sent, rendered");
    assert_eq!((&r["failureType"], &r["attempts"], &r["provider"]), (&json!("permanent"), &json!(1), &json!("http_bridge")));
    assert_eq!((&r["providerResponse"]["status"], &r["providerResponse"]["code"]), (&json!("rejected"), &json!("400")));
    assert!(r["lastError"].as_str().unwrap().contains("not on WhatsApp"), "{r}");
    assert_eq!((&r["traceId"], &r["meta"]["order"]), (&json!("t-1"), &json!(7)));
    assert!(r["firstFailedAt"].is_string() && r["lastAttemptAt"].is_string() && r["deadSince"].is_string(), "{r}");
    let b = by_id(busy);
    assert_eq!((&b["failureType"], &b["attempts"]), (&json!("transient"), &json!(2)));
    assert!(b["firstFailedAt"].as_str().unwrap() < b["lastAttemptAt"].as_str().unwrap(), "{b}");

    // filters, paging, and the same rows in SQL
    let (_, transient) = api.get("/v1/dead-letters?failureType=transient").await;
    assert_eq!(transient["deadLetters"].as_array().unwrap().len(), 1);
    let (_, first) = api.get("/v1/dead-letters?limit=1").await;
    let cursor = first["nextCursor"].as_str().expect("a second page");
    let (_, second) = api.get(&format!("/v1/dead-letters?limit=1&after={cursor}")).await;
    assert_eq!(second["deadLetters"].as_array().unwrap().len(), 1);
    assert_ne!(first["deadLetters"][0]["id"], second["deadLetters"][0]["id"]);
    assert_eq!(second["nextCursor"], Value::Null);
    for (query, named) in [
        ("failureType=sad", "failureType"),
        ("limit=0", "limit"),
        ("colour=red", "colour"),
        ("after=nope", "after"),
        ("channel=email&channel=sms", "channel"),
    ] {
        let (s, v) = api.get(&format!("/v1/dead-letters?{query}")).await;
        assert_eq!((s, field(&v)), (400, named), "{query}: {v}");
    }
    let row = api
        .db
        .client
        .query_one(
            "SELECT failure_type, attempts, provider_response->>'status', subject IS NULL FROM et_dead_letters WHERE message_id = $1",
            &[&busy],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, i32>(1), row.get::<_, String>(2)), ("transient".into(), 2, "rejected".into()));
    api.stop().await;
}

#[tokio::test]
async fn an_invalid_message_is_a_validation_dead_letter_without_a_provider_response() {
    let api = Api::start().await;
    let mock = MockHttp::start(|_, _| Answer::json(201, json!({ "sid": "SM1", "status": "queued" }))).await;
    std::env::set_var(pgcourier::channels::secret_env_name("dead-letters-twilio"), "AC123:token");
    let config = json!({ "api_base": mock.url(), "account_sid": "AC123" });
    let session: i64 = api
        .db
        .client
        .query_one(
            "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config, credentials_ref)
             VALUES ('acme', 'sms', 'twilio', '+15550001234', $1, 'dead-letters-twilio') RETURNING id",
            &[&config],
        )
        .await
        .unwrap()
        .get(0);
    // an attachment an SMS cannot carry: refused by the adapter before the provider is asked
    let v = api
        .send(json!({ "channelSessionId": session, "to": "+15551234567", "textBody": "see attached",
                      "attachments": [{ "filename": "a.pdf", "contentType": "application/pdf", "contentBase64": "JVBERg==" }] }))
        .await;
    let id = v["id"].as_i64().unwrap();
    until(&api.db, &format!("SELECT delivery_status = 'failed' FROM et_messages WHERE id = {id}"), SECS).await;
    assert!(mock.requests().is_empty(), "the provider was never asked");
    let (_, page) = api.get("/v1/dead-letters").await;
    let letter = &page["deadLetters"][0];
    assert_eq!((&letter["id"], &letter["failureType"], &letter["errorClass"]), (&json!(id), &json!("validation"), &json!("validation")));
    assert_eq!(letter["providerResponse"], Value::Null, "{letter}");
    let events = attempt_events(&api, id).await;
    assert_eq!(events[0].get("provider_response"), None, "{events:?}");
    api.stop().await;
}

#[tokio::test]
async fn provider_response_is_written_by_the_daemon_only() {
    let api = Api::start().await;
    let err = api
        .db
        .client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text, provider_response)
             VALUES ('acme', $1, 'outbound', ARRAY['a@example.com'], 'x', '{\"status\": \"ok\"}')",
            &[&api.email],
        )
        .await
        .expect_err("refused");
    let db = err.as_db_error().expect("a refusal");
    assert!(db.message().contains("provider_response is written by pgcourier"), "{db:?}");
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 0);
    api.stop().await;
}
