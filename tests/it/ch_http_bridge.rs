//! Provider `http_bridge`: the exact JSON POST (bearer token, Idempotency-Key, attachments in
//! base64), every classification row, and the daemon end to end (sent with the bridge's id
//! stored, attachment bytes intact; a 400 failed with the bridge's body in last_error).

use crate::fixtures::text_message;
use crate::mock_http::{Answer, MockHttp, Recorded};
use crate::support::TestDb;
use crate::support::{spawn, until};
use base64::Engine as _;
use pgcourier::channels::http_bridge::HttpBridge;
use pgcourier::channels::{Attachment, Channel, Outbound, SendError};
use pgcourier::domain::network::Allow;
use pgcourier::domain::outcome::ErrorClass;
use serde_json::json;
use std::time::Duration;

/// The mocks listen on 127.0.0.1: these adapters may call loopback (PGCOURIER_NETWORK_ALLOW=loopback).
const LOOPBACK: Allow = Allow { loopback: true, ..Allow::NONE };

const SECS: Duration = Duration::from_secs(15);
const TOKEN: &str = "bridge-token-123";

fn message() -> Outbound {
    Outbound {
        in_reply_to: Some("3EB0C431C26A1916E07A".into()),
        metadata: json!({ "order": 42 }),
        ..text_message(pgcourier::domain::vocab::Channel::Whatsapp, "+15550001111", &["+15551234567"], "Your order shipped")
    }
}

fn bridge(mock: &MockHttp, secret: Option<&str>) -> HttpBridge {
    HttpBridge::new(&json!({ "url": format!("{}/send", mock.url()), "timeout_ms": 5000 }), secret.map(str::to_owned), LOOPBACK)
        .expect("adapter")
}

async fn fail_with(answer: fn() -> Answer) -> (SendError, Recorded) {
    let mock = MockHttp::start(move |_, _| answer()).await;
    let err = bridge(&mock, Some(TOKEN)).send(&message()).await.expect_err("a failure");
    (err, mock.requests().remove(0))
}

#[tokio::test]
async fn http_bridge_success_posts_json_with_bearer_idempotency_key_and_base64_attachments() {
    let mock = MockHttp::start(|_, _| Answer::json(200, json!({ "id": "3EB0B430B6F8F1D0E053AC120E0A9E5C", "status": "sent" }))).await;
    let mut m = message();
    let bytes: Vec<u8> = (0..=255u8).chain([0, 0xff, b'\n']).collect();
    m.attachments.push(Attachment { filename: "invoice.pdf".into(), content_type: "application/pdf".into(), content: bytes.clone() });
    let receipt = bridge(&mock, Some(TOKEN)).send(&m).await.expect("sent");
    assert_eq!(receipt.external_id.as_deref(), Some("3EB0B430B6F8F1D0E053AC120E0A9E5C"));
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/send");
    assert_eq!(r.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(r.header("idempotency-key"), Some(m.public_id.to_string().as_str()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(
        body,
        json!({
            "id": m.public_id.to_string(), "tenant": "acme", "channel": "whatsapp", "from": "+15550001111",
            "to": ["+15551234567"], "subject": null, "text": "Your order shipped", "html": null,
            "in_reply_to": "3EB0C431C26A1916E07A", "metadata": { "order": 42 },
            "attachments": [{ "filename": "invoice.pdf", "content_type": "application/pdf",
                              "content_base64": body["attachments"][0]["content_base64"] }]
        })
    );
    let decoded = base64::engine::general_purpose::STANDARD.decode(body["attachments"][0]["content_base64"].as_str().unwrap()).unwrap();
    assert_eq!(decoded, bytes, "attachment bytes round-trip");
}

#[tokio::test]
async fn http_bridge_2xx_without_id_is_sent_and_no_secret_sends_no_authorization() {
    let mock = MockHttp::start(|_, _| Answer { status: 202, headers: vec![], body: String::new() }).await;
    let receipt = bridge(&mock, None).send(&message()).await.expect("sent");
    assert_eq!(receipt.external_id, None);
    assert_eq!(mock.requests()[0].header("authorization"), None);
}

#[tokio::test]
async fn http_bridge_429_is_rate_limited_and_honours_retry_after() {
    let (err, _) = fail_with(|| Answer::json(429, json!({ "error": "rate-overlimit" })).with_header("Retry-After", "30")).await;
    assert_eq!(err.class, ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(30)) });
    assert!(err.detail.contains("HTTP 429") && err.detail.contains("rate-overlimit"), "{}", err.detail);
}

#[tokio::test]
async fn http_bridge_503_is_transient() {
    let (err, _) = fail_with(|| Answer::json(503, json!({ "error": "whatsapp socket not connected" }))).await;
    assert_eq!(err.class, ErrorClass::Transient { retry_after: None });
    assert!(err.detail.contains("HTTP 503") && err.detail.contains("socket not connected"), "{}", err.detail);
}

#[tokio::test]
async fn http_bridge_400_is_permanent_with_the_body() {
    let (err, r) = fail_with(|| Answer::json(400, json!({ "error": "number +15551234567 is not on WhatsApp" }))).await;
    assert_eq!(err.class, ErrorClass::Permanent);
    assert!(err.detail.contains("HTTP 400") && err.detail.contains("is not on WhatsApp"), "{}", err.detail);
    assert_eq!(r.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
}

#[tokio::test]
async fn http_bridge_410_is_permanent_and_connection_errors_are_transient() {
    let (err, _) = fail_with(|| Answer { status: 410, headers: vec![], body: "session logged out".into() }).await;
    assert_eq!(err.class, ErrorClass::Permanent);
    assert!(err.detail.contains("410") && err.detail.contains("session logged out"), "{}", err.detail);
    let port = { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port() };
    let b = HttpBridge::new(&json!({ "url": format!("http://127.0.0.1:{port}/send") }), None, LOOPBACK).unwrap();
    let err = b.send(&message()).await.expect_err("refused");
    assert_eq!(err.class, ErrorClass::Transient { retry_after: None }, "{}", err.detail);
    let err = HttpBridge::new(&json!({}), None, LOOPBACK).err().expect("no url");
    assert!(err.detail.contains("config.url"), "{}", err.detail);
}

/// Tenant `acme` and a whatsapp session on provider http_bridge pointing at `mock`.
async fn bridge_session(db: &TestDb, mock: &MockHttp, reference: &str) -> i64 {
    std::env::set_var(pgcourier::channels::secret_env_name(reference), TOKEN);
    db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('acme', 'Acme')").await.unwrap();
    let config = json!({ "url": format!("{}/send", mock.url()), "timeout_ms": 5000, "retry_base_ms": 20, "retry_cap_ms": 100 });
    db.client
        .query_one(
            "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config, credentials_ref)
             VALUES ('acme', 'whatsapp', 'http_bridge', '+15550001111', $1, $2) RETURNING id",
            &[&config, &reference],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn http_bridge_daemon_sends_with_an_attachment_and_stores_the_bridge_id() {
    let db = TestDb::new().await;
    let mock = MockHttp::start(|_, _| Answer::json(200, json!({ "id": "BAE5F2D6A1B2C3D4" }))).await;
    let session = bridge_session(&db, &mock, "bridge-e2e-sent").await;
    let daemon = spawn(&db, &[]);
    // message and attachment in one transaction
    db.client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text, idempotency_key)
             VALUES ('acme', {session}, 'outbound', ARRAY['+1 555 123 4567'], 'Your invoice', 'bridge-e2e');
             INSERT INTO et_attachments (tenant_id, message_id, filename, content_type, content)
             SELECT 'acme', id, 'invoice.pdf', 'application/pdf', '\\x255044460001ff0a'::bytea
               FROM et_messages WHERE idempotency_key = 'bridge-e2e';
             COMMIT;"
        ))
        .await
        .unwrap();
    let row = db.client.query_one("SELECT id, public_id FROM et_messages WHERE idempotency_key = 'bridge-e2e'", &[]).await.unwrap();
    let (id, public_id): (i64, uuid::Uuid) = (row.get(0), row.get(1));
    let got = mock.wait_for(1, SECS).await;
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), SECS).await;
    let r = &got[0];
    assert_eq!(r.path, "/send");
    assert_eq!(r.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(r.header("idempotency-key"), Some(public_id.to_string().as_str()));
    let body = r.json();
    assert_eq!(body["id"], public_id.to_string());
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["channel"], "whatsapp");
    assert_eq!(body["from"], "+15550001111");
    assert_eq!(body["to"], json!(["+15551234567"]));
    assert_eq!(body["text"], "Your invoice");
    assert_eq!(body["attachments"][0]["filename"], "invoice.pdf");
    let bytes = base64::engine::general_purpose::STANDARD.decode(body["attachments"][0]["content_base64"].as_str().unwrap()).unwrap();
    assert_eq!(bytes, [0x25, 0x50, 0x44, 0x46, 0x00, 0x01, 0xff, 0x0a]);
    let ext: String = db.client.query_one("SELECT external_message_id FROM et_messages WHERE id = $1", &[&id]).await.unwrap().get(0);
    assert_eq!(ext, "BAE5F2D6A1B2C3D4");
    daemon.stop().await;
}

#[tokio::test]
async fn http_bridge_daemon_400_fails_with_the_body_in_last_error() {
    let db = TestDb::new().await;
    let mock = MockHttp::start(|_, _| Answer::json(400, json!({ "error": "jid +15551234567 does not exist on WhatsApp" }))).await;
    let session = bridge_session(&db, &mock, "bridge-e2e-400").await;
    let daemon = spawn(&db, &[]);
    let id: i64 = db
        .client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
             VALUES ('acme', $1, 'outbound', ARRAY['+15551234567'], 'Hi') RETURNING id",
            &[&session],
        )
        .await
        .unwrap()
        .get(0);
    until(&db, &format!("SELECT delivery_status = 'failed' FROM et_messages WHERE id = {id}"), SECS).await;
    let row = db.client.query_one("SELECT last_error, error_class, attempts FROM et_messages WHERE id = $1", &[&id]).await.unwrap();
    let err: String = row.get(0);
    assert!(err.contains("HTTP 400") && err.contains("does not exist on WhatsApp"), "{err}");
    assert_eq!(row.get::<_, String>(1), "permanent");
    assert_eq!(row.get::<_, i32>(2), 1, "no retry");
    assert_eq!(db.count("SELECT count(*) FROM et_suppressions").await, 0);
    assert_eq!(mock.requests().len(), 1);
    daemon.stop().await;
}
