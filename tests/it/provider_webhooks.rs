//! Provider webhook routes (`/v1/providers/{provider}/{session_id}`) over real HTTP against a
//! spawned daemon and a real PostgreSQL: signed deliveries insert exactly one inbound row,
//! replays insert nothing more, forged / missing / stale signatures are 401 with a security
//! event and nothing written, status callbacks land in `metadata.delivery`.
//!
//! Expected signatures are computed here with hmac / sha2 / base64 and, for Twilio, a test-only
//! SHA-1 (`sign::hmac_sha1`, checked against Twilio's documented example), independently of the
//! implementation's helpers.

mod bridge;
mod sign;
mod telegram;
mod twilio;
mod whatsapp;

use crate::app::{spawn_app, App};
use crate::support::TestDb;
use serde_json::{json, Value};

/// A database with tenant `acme`, and a daemon serving HTTP on it.
pub struct Fixture {
    pub db: TestDb,
    pub app: App,
}

pub async fn fixture() -> Fixture {
    let db = TestDb::new().await;
    db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('acme', 'Acme')").await.unwrap();
    let app = spawn_app(&db, &[]).await;
    Fixture { db, app }
}

/// Put `value` in the environment under a reference unique to this call; returns the reference.
pub fn secret(value: &str) -> String {
    let reference = format!("pw-{}", uuid::Uuid::new_v4().simple());
    std::env::set_var(pgcourier::channels::secret_env_name(&reference), value);
    reference
}

/// A session of tenant `acme`; outbound sends (if any) go to a closed local port.
pub async fn session(db: &TestDb, channel: &str, provider: &str, address: &str, config: Value, credentials_ref: Option<&str>) -> i64 {
    let mut config = config;
    config["api_base"] = json!("http://127.0.0.1:9");
    config["url"] = json!("http://127.0.0.1:9/send");
    db.client
        .query_one(
            "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config, credentials_ref)
             VALUES ('acme', $1, $2, $3, $4, $5) RETURNING id",
            &[&channel, &provider, &address, &config, &credentials_ref],
        )
        .await
        .unwrap()
        .get(0)
}

/// (external_message_id, sender, body_text) of the inbound rows of `session`, oldest first.
pub async fn inbound(db: &TestDb, session: i64) -> Vec<(String, String, Option<String>)> {
    db.client
        .query(
            "SELECT external_message_id, sender, body_text FROM et_messages
              WHERE channel_session_id = $1 AND direction = 'inbound' ORDER BY id",
            &[&session],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// (tenant_id, actor, action, detail.reason) of every security event, oldest first.
pub async fn security_events(db: &TestDb) -> Vec<(Option<String>, String, String, String)> {
    db.client
        .query("SELECT tenant_id, actor, action, coalesce(detail->>'reason', '') FROM et_security_events ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// The JSON error body of a refused request, after checking its status and code.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["code"], code, "{body}");
    body
}

/// An outbound message of `session` to `to` that the provider accepted as `external_id`: inserted
/// for tomorrow (so no daemon claims it), then walked queued → sending → sent by SQL.
pub async fn sent_outbound(db: &TestDb, session: i64, to: &str, external_id: &str) -> i64 {
    let id: i64 = db
        .client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text, scheduled_at)
             VALUES ('acme', $1, 'outbound', ARRAY[$2], 'Your order shipped', now() + interval '1 day') RETURNING id",
            &[&session, &to],
        )
        .await
        .unwrap()
        .get(0);
    db.client.execute("DELETE FROM et_outbound_queue WHERE message_id = $1", &[&id]).await.unwrap();
    // (the provider's id is the daemon's to record, as it does when the send succeeds)
    db.client.execute("UPDATE et_messages SET delivery_status = 'sending' WHERE id = $1", &[&id]).await.unwrap();
    db.client
        .execute("UPDATE et_messages SET delivery_status = 'sent', external_message_id = $2 WHERE id = $1", &[&id, &external_id])
        .await
        .unwrap();
    id
}

/// (delivery_status, metadata.delivery) of message `id`.
pub async fn delivery(db: &TestDb, id: i64) -> (String, Value) {
    let row = db
        .client
        .query_one("SELECT delivery_status, coalesce(metadata->'delivery', 'null') FROM et_messages WHERE id = $1", &[&id])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn unknown_sessions_providers_and_mismatched_sessions_are_404_json() {
    let f = fixture().await;
    let bridge = session(&f.db, "whatsapp", "http_bridge", "+15550000001", json!({}), None).await;
    let http = &f.app.http;
    for path in [
        format!("/v1/providers/http_bridge/{}", bridge + 1000),
        "/v1/providers/http_bridge/not-a-number".to_string(),
        format!("/v1/providers/telegram_bot/{bridge}"),
        format!("/v1/providers/twilio/{bridge}"),
        format!("/v1/providers/whatsapp_cloud/{bridge}"),
        format!("/v1/providers/smoke_signals/{bridge}"),
    ] {
        let response = http.post(f.app.url(&path)).body("{}").send().await.unwrap();
        let body = expect_error(response, 404, "not_found").await;
        assert!(body["error"]["message"].as_str().unwrap().contains("not found"), "{path}: {body}");
    }
    let response = http.get(f.app.url(&format!("/v1/providers/http_bridge/{bridge}"))).send().await.unwrap();
    expect_error(response, 405, "method_not_allowed").await;
    assert!(security_events(&f.db).await.is_empty(), "a 404 is not a signature failure");
    f.app.stop().await;
}

#[tokio::test]
async fn a_session_without_its_webhook_secret_is_503_and_writes_nothing() {
    let f = fixture().await;
    let unset = session(&f.db, "whatsapp", "http_bridge", "+15550000001", json!({}), None).await;
    let missing_env = session(&f.db, "telegram", "telegram_bot", "@acme_bot", json!({ "webhook_secret_ref": "pw-never-set" }), None).await;
    let http = &f.app.http;
    let response = http.post(f.app.url(&format!("/v1/providers/http_bridge/{unset}"))).body("{}").send().await.unwrap();
    let body = expect_error(response, 503, "not_configured").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("webhook_secret_ref"), "{body}");
    let response = http
        .post(f.app.url(&format!("/v1/providers/telegram_bot/{missing_env}")))
        .header("x-telegram-bot-api-secret-token", "anything")
        .body("{}")
        .send()
        .await
        .unwrap();
    let body = expect_error(response, 503, "not_configured").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("PGCOURIER_SECRET_PW_NEVER_SET"), "{body}");
    assert_eq!(f.db.count("SELECT count(*) FROM et_messages").await, 0);
    f.app.stop().await;
}
