//! Refusals at the HTTP boundary: NUL characters in any JSON string or query parameter (400
//! naming the field, nothing written), bodies that are not declared JSON (415), oversized request
//! headers (431), and database refusals raised by triggers (4xx naming the field, never a 500).

use super::{field, Api};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Expect a 400 `invalid_field` naming `want`.
fn assert_nul_refused(what: &str, (status, v): (u16, Value), want: &str) {
    assert_eq!(status, 400, "{what}: {v}");
    assert_eq!(v["error"]["code"], "invalid_field", "{what}: {v}");
    assert_eq!(field(&v), want, "{what}: {v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("NUL"), "{what}: {v}");
}

#[tokio::test]
async fn a_nul_character_in_a_message_field_is_400_naming_the_field() {
    let api = Api::start().await;
    let base = || json!({ "to": ["ann@example.com"], "subject": "Hi", "textBody": "Hello" });
    let with = |k: &str, v: Value| {
        let mut b = base();
        b[k] = v;
        b
    };
    let cases = [
        ("subject", with("subject", json!("Hi\u{0}there")), "subject"),
        ("textBody", with("textBody", json!("a\u{0}b")), "textBody"),
        ("htmlBody", with("htmlBody", json!("<p>\u{0}</p>")), "htmlBody"),
        ("to[1]", with("to", json!(["ann@example.com", "bob\u{0}@example.com"])), "to[1]"),
        ("metadata value", with("metadata", json!({ "foo": "x\u{0}" })), "metadata.foo"),
        ("nested metadata", with("metadata", json!({ "a": { "b": [1, "\u{0}"] } })), "metadata.a.b[1]"),
        ("metadata key", with("metadata", json!({ "fo\u{0}o": "x" })), "metadata"),
        ("variables", with("variables", json!({ "name": "\u{0}" })), "variables.name"),
        ("from name", with("from", json!({ "email": "billing@acme.example", "name": "A\u{0}" })), "from.name"),
        (
            "attachment filename",
            with("attachments", json!([{ "filename": "a\u{0}.txt", "contentBase64": "aGk=" }])),
            "attachments[0].filename",
        ),
        ("idempotencyKey", with("idempotencyKey", json!("k\u{0}")), "idempotencyKey"),
    ];
    for (what, body, want) in cases {
        assert_nul_refused(what, api.post("/v1/messages", body).await, want);
    }
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 0, "nothing written");
    // the same message without the NUL goes through
    let (status, v) = api.post("/v1/messages", base()).await;
    assert_eq!(status, 201, "{v}");
    api.stop().await;
}

#[tokio::test]
async fn a_nul_character_in_webhook_thread_and_action_bodies_is_400_naming_the_field() {
    let api = Api::start().await;
    let wh = |body: Value| api.call(Method::POST, "/v1/webhooks", Some(&api.admin), Some(body));
    assert_nul_refused(
        "webhook description",
        wh(json!({ "url": "https://example.com/hook", "description": "d\u{0}" })).await,
        "description",
    );
    assert_nul_refused("webhook url", wh(json!({ "url": "https://example.com/\u{0}" })).await, "url");
    assert_nul_refused(
        "webhook events",
        wh(json!({ "url": "https://example.com/hook", "events": ["message.sent", "\u{0}"] })).await,
        "events[1]",
    );
    assert_eq!(api.count("SELECT count(*) FROM et_webhook_endpoints").await, 0, "nothing written");
    let patch = api.call(Method::PATCH, "/v1/webhooks/1", Some(&api.admin), Some(json!({ "description": "\u{0}" }))).await;
    assert_nul_refused("webhook patch", patch, "description");

    let later = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let sent = api.send(json!({ "to": ["ann@example.com"], "textBody": "x", "scheduledAt": later })).await;
    let (id, thread) = (sent["id"].as_i64().unwrap(), sent["threadId"].as_i64().unwrap());
    let handoff = api.post(&format!("/v1/threads/{thread}/handoff"), json!({ "handling": "hu\u{0}man" })).await;
    assert_nul_refused("handoff", handoff, "handling");
    let cancel = api.post(&format!("/v1/messages/{id}/cancel"), json!({ "reason": "\u{0}" })).await;
    assert_nul_refused("cancel reason", cancel, "reason");
    assert_eq!(api.count("SELECT count(*) FROM et_messages WHERE delivery_status = 'queued'").await, 1, "still queued");
    api.stop().await;
}

#[tokio::test]
async fn a_nul_character_in_a_query_parameter_is_400_naming_it() {
    let api = Api::start().await;
    assert_nul_refused("status", api.get("/v1/messages?status=sent%00").await, "status");
    assert_nul_refused("to", api.get("/v1/messages?to=ann%00@example.com").await, "to");
    assert_nul_refused("after", api.get("/v1/messages?after=%00").await, "after");
    assert_nul_refused("parameter name", api.get("/v1/messages?st%00atus=sent").await, "query");
    assert_nul_refused("deliveries limit", api.get("/v1/webhooks/1/deliveries?limit=1%00").await, "limit");
    let (status, v) = api.get("/v1/messages?to=ann@example.com").await;
    assert_eq!(status, 200, "{v}");
    api.stop().await;
}

/// POST `body` as raw bytes with `content_type` (none when `None`).
async fn raw_post(api: &Api, path: &str, content_type: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = api.app.http.post(api.app.url(path)).header("x-api-key", &api.admin).body(body.to_owned());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn a_json_body_must_be_declared_json_or_it_is_415() {
    let api = Api::start().await;
    let later = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let msg = &format!(r#"{{"to": ["ann@example.com"], "textBody": "x", "scheduledAt": "{later}"}}"#);
    for ct in [Some("text/plain"), None, Some("application/x-www-form-urlencoded"), Some("application/jsonx")] {
        let (status, v) = raw_post(&api, "/v1/messages", ct, msg).await;
        assert_eq!(status, 415, "{ct:?}: {v}");
        assert_eq!(v["error"]["code"], "unsupported_media_type", "{ct:?}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("application/json"), "{v}");
    }
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 0, "nothing written");
    for ct in ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"] {
        let (status, v) = raw_post(&api, "/v1/messages", Some(ct), msg).await;
        assert_eq!(status, 201, "{ct}: {v}");
    }
    let (status, v) = raw_post(&api, "/v1/webhooks", Some("text/plain"), r#"{"url": "https://example.com/hook"}"#).await;
    assert_eq!((status, v["error"]["code"].as_str()), (415, Some("unsupported_media_type")), "{v}");
    let (status, v) = raw_post(&api, "/v1/threads/1/handoff", None, r#"{"handling": "human"}"#).await;
    assert_eq!(status, 415, "{v}");
    // an action's body is optional: none at all needs no content type; a body does
    let id = api.count("SELECT min(id) FROM et_messages").await;
    let (status, v) = raw_post(&api, &format!("/v1/messages/{id}/cancel"), Some("text/plain"), r#"{"reason": "x"}"#).await;
    assert_eq!(status, 415, "{v}");
    let (status, v) = raw_post(&api, &format!("/v1/messages/{id}/cancel"), None, "").await;
    assert_eq!(status, 200, "{v}");
    // the OpenAPI document says so
    let (_, doc) = api.call(Method::GET, "/openapi.json", None, None).await;
    for (path, method) in [
        ("/v1/messages", "post"),
        ("/v1/webhooks", "post"),
        ("/v1/webhooks/{id}", "patch"),
        ("/v1/threads/{id}/handoff", "post"),
        ("/v1/messages/{id}/cancel", "post"),
    ] {
        assert!(doc["paths"][path][method]["responses"]["415"].is_object(), "{method} {path} documents 415");
        assert!(doc["paths"][path][method]["responses"]["400"].is_object(), "{method} {path} documents 400");
    }
    api.stop().await;
}

/// Send `request` over a raw TCP connection; returns the status code and the body.
async fn raw_request(api: &Api, request: &[u8]) -> (u16, String) {
    let addr = api.app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // the server may answer (and close) before the whole request is written
    let _ = stream.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn an_oversized_request_header_is_431_with_a_json_body() {
    let api = Api::start().await;
    let big = "a".repeat(200 * 1024);
    let req = format!("GET /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {}\r\nx-big: {big}\r\nconnection: close\r\n\r\n", api.admin);
    let (status, body) = raw_request(&api, req.as_bytes()).await;
    assert_eq!(status, 431, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(v["error"]["code"], "header_too_large", "{body}");
    // many headers that are each small but together too large
    let many: String = (0..40).map(|i| format!("x-h{i}: {}\r\n", "b".repeat(2000))).collect();
    let req = format!("GET /health HTTP/1.1\r\nhost: x\r\n{many}connection: close\r\n\r\n");
    let (status, body) = raw_request(&api, req.as_bytes()).await;
    assert_eq!(status, 431, "{body}");
    // a header far beyond what hyper buffers is refused too (by hyper itself, before routing)
    let huge = "c".repeat(1024 * 1024);
    let req = format!("GET /health HTTP/1.1\r\nhost: x\r\nx-huge: {huge}\r\nconnection: close\r\n\r\n");
    let (status, _) = raw_request(&api, req.as_bytes()).await;
    assert_eq!(status, 431);
    // ordinary headers pass
    let ok = format!(
        "GET /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {}\r\nx-fine: {}\r\nconnection: close\r\n\r\n",
        api.admin,
        "d".repeat(4000)
    );
    let (status, body) = raw_request(&api, ok.as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    api.stop().await;
}

/// A stand-in for a validation trigger: refuses inserted messages whose subject starts with
/// `refuse:<sqlstate>`, the way the project's triggers do (`et_messages.<column>: ...`, COLUMN set).
const TEST_TRIGGER: &str = r#"
CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE code text := split_part(NEW.subject, ':', 2);
BEGIN
  IF NEW.subject LIKE 'refuse:%' THEN
    RAISE EXCEPTION 'et_messages.subject: test refusal %', code
      USING ERRCODE = code, COLUMN = 'subject', TABLE = 'et_messages', DETAIL = 'the detail', HINT = 'nothing was written';
  END IF;
  IF NEW.subject LIKE 'nocolumn:%' THEN
    RAISE EXCEPTION 'et_messages: test refusal %', code USING ERRCODE = code;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_refuse BEFORE INSERT ON et_messages FOR EACH ROW EXECUTE FUNCTION test_refuse();
"#;

#[tokio::test]
async fn trigger_refusals_are_4xx_naming_the_field_never_500() {
    let api = Api::start().await;
    api.db.client.batch_execute(TEST_TRIGGER).await.unwrap();
    let send = |subject: &str| api.post("/v1/messages", json!({ "to": ["ann@example.com"], "textBody": "x", "subject": subject }));
    // check, not null, foreign key, data exceptions (value too long, out of range, bad value,
    // bad datetime, NUL), and a plain RAISE: the client's fault
    for code in ["23514", "23502", "23503", "22001", "22003", "22023", "22P02", "22008", "22021", "P0001"] {
        let (status, v) = send(&format!("refuse:{code}")).await;
        assert_eq!(status, 400, "{code}: {v}");
        assert_eq!(v["error"]["code"], "invalid_field", "{code}: {v}");
        assert_eq!(field(&v), "subject", "{code}: {v}");
        assert_eq!(v["error"]["message"], format!("subject: test refusal {code}"), "{code}: {v}");
    }
    let (status, v) = send("refuse:23505").await;
    assert_eq!((status, v["error"]["code"].as_str(), field(&v)), (409, Some("conflict"), "subject"), "{v}");
    // without a column: still the client's fault, with the trigger's message
    let (status, v) = send("nocolumn:22003").await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["message"], "et_messages: test refusal 22003", "{v}");
    // a server-side failure stays a 500 that says nothing of the database
    let (status, v) = send("refuse:XX000").await;
    assert_eq!((status, v["error"]["code"].as_str()), (500, Some("internal")), "{v}");
    assert!(!v.to_string().contains("test refusal"), "{v}");
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 0, "nothing written");
    api.stop().await;
}

#[tokio::test]
async fn a_deactivated_tenant_is_told_so_not_blamed_on_a_field() {
    let api = Api::start().await;
    api.db.client.execute("UPDATE et_tenants SET active = false WHERE id = 'acme'", &[]).await.unwrap();
    let (status, v) = api.post("/v1/messages", json!({ "to": ["ann@example.com"], "textBody": "x" })).await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "forbidden", "{v}");
    assert_eq!(v["error"]["field"], Value::Null, "the tenant is not a request field: {v}");
    // refused at the door, by the key's tenant (the insert trigger refuses SQL inserts the same way)
    assert!(v["error"]["message"].as_str().unwrap().contains("tenant is deactivated"), "{v}");
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 0);
    api.stop().await;
}

#[tokio::test]
async fn a_nul_character_in_a_path_id_is_404() {
    let api = Api::start().await;
    for path in ["/v1/messages/%00", "/v1/threads/1%00", "/v1/webhooks/%00", "/v1/providers/twilio/%00"] {
        let (status, v) = api.get(path).await;
        assert_eq!(status, if path.contains("providers") { 405 } else { 404 }, "{path}: {v}");
        assert!(v["error"]["code"].is_string(), "{path}: a JSON error body: {v}");
    }
    api.stop().await;
}

/// A method a route does not take is 405 with the JSON error body and the Allow header, like
/// every other refusal (axum's own 405 has no body).
#[tokio::test]
async fn a_method_a_route_does_not_take_is_405_with_the_error_body() {
    let api = Api::start().await;
    for (method, path, allowed) in [
        (Method::PUT, "/v1/messages", "GET,HEAD,POST"),
        (Method::DELETE, "/v1/messages/1", "GET,HEAD"),
        (Method::POST, "/health", "GET,HEAD"),
        (Method::PUT, "/v1/providers/twilio/1", "POST"),
    ] {
        let resp = api.app.http.request(method.clone(), api.app.url(path)).header("x-api-key", &api.admin).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 405, "{method} {path}");
        let allow = resp.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default().replace(' ', "");
        let mut got: Vec<&str> = allow.split(',').collect();
        got.sort_unstable();
        assert_eq!(got.join(","), allowed, "{method} {path}");
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(v["error"]["code"], "method_not_allowed", "{method} {path}: {v}");
    }
    api.stop().await;
}
