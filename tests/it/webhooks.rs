//! Tenant status webhooks end to end: endpoints created through the API receive signed events
//! from a real daemon on a local mock; retries, 410 Gone, failure counting, the SSRF guard, and
//! the CRUD routes with their auth / tenant matrix.
//!
//! The signature is verified here with an independent HMAC-SHA256 (built on SHA-256 alone) and a
//! constant-time comparison, not with the crate's signer.
//!
//! Configuration: the mock listens on 127.0.0.1, so the daemons and workers here run with
//! [`ENV`]: `PGCOURIER_NETWORK_ALLOW=loopback` (private and link-local addresses stay refused) and
//! fast retries.

mod crud;
mod delivery;
mod redeliver;
mod ssrf;

use crate::app::{api_key, spawn_app, App};
use crate::support::TestDb;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pgcourier::db::apikeys::Scope;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const SECS: Duration = Duration::from_secs(20);

/// The webhook settings of this module's daemons and workers.
pub const ENV: &[(&str, &str)] = &[
    ("PGCOURIER_NETWORK_ALLOW", "loopback"),
    ("PGCOURIER_WEBHOOK_RETRY_BASE", "50ms"),
    ("PGCOURIER_WEBHOOK_RETRY_CAP", "200ms"),
    ("PGCOURIER_WEBHOOK_POLL", "100ms"),
];

/// A webhook worker on its own pool (the daemon may run one too: claims are safe across workers).
pub struct Worker {
    token: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Worker {
    pub fn start(db: &TestDb) -> Worker {
        let pool = pgcourier::db::pool(db.config.clone(), 4).expect("pool");
        let config = crate::support::config(db, ENV);
        let token = CancellationToken::new();
        let task = tokio::spawn(pgcourier::webhooks::run(pool, config, Default::default(), token.clone()));
        Worker { token, task }
    }

    pub async fn stop(self) {
        self.token.cancel();
        self.task.await.expect("webhook worker");
    }
}

/// acme (with its email and whatsapp `log` sessions), a daemon with its HTTP surface, an admin
/// key and a webhook worker. Returns (app, admin key, whatsapp session, worker).
pub async fn setup(db: &TestDb) -> (App, String, i64, Worker) {
    let (_, wa) = db.seed_acme().await;
    let app = spawn_app(db, ENV).await;
    let key = api_key(db, "acme", &[Scope::Admin]).await;
    (app, key, wa, Worker::start(db))
}

/// `POST /v1/webhooks` with `body`; returns (status, JSON).
pub async fn create(app: &App, key: &str, body: Value) -> (u16, Value) {
    let r = app.http.post(app.url("/v1/webhooks")).header("x-api-key", key).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Create an endpoint that must succeed; returns (id, secret).
pub async fn endpoint(app: &App, key: &str, url: &str, events: &[&str]) -> (i64, String) {
    let (status, body) = create(app, key, json!({ "url": url, "events": events })).await;
    assert_eq!(status, 201, "{body}");
    (body["id"].as_i64().unwrap(), body["secret"].as_str().unwrap().to_owned())
}

/// An inbound whatsapp message (one `inbound.received` event).
pub async fn inbound(db: &TestDb, session: i64, external_id: &str) -> i64 {
    db.client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, body_text)
             VALUES ('acme', $1, 'inbound', $2, '+15557654321', 'hello there') RETURNING id",
            &[&session, &external_id],
        )
        .await
        .unwrap()
        .get(0)
}

/// HMAC-SHA256 (RFC 2104) from SHA-256 alone.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new().chain_update(block.map(|b| b ^ 0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(block.map(|b| b ^ 0x5c)).chain_update(inner).finalize().into()
}

/// Equal length and equal bytes, looking at every byte whatever the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Standard Webhooks verification: one of the space-separated `v1,<base64>` signatures must be
/// HMAC-SHA256(base64-decoded part of `whsec_…`, "{id}.{timestamp}.{body}").
pub fn verify(secret: &str, id: &str, timestamp: &str, signatures: &str, body: &[u8]) -> bool {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("whsec_ prefix")).expect("base64 secret");
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let expected = hmac_sha256(&key, &signed);
    signatures.split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|s| match STANDARD.decode(s) {
        Ok(given) => constant_time_eq(&given, &expected),
        Err(_) => false,
    })
}

#[test]
fn the_independent_verifier_passes_the_reference_vector() {
    // the Standard Webhooks test suites' vector
    let body = br#"{"test": 2432232314}"#;
    let (secret, id, ts) = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330");
    assert!(verify(secret, id, ts, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", body));
    assert!(verify(secret, id, ts, "v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", body));
    assert!(!verify(secret, id, ts, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", br#"{"test": 2432232315}"#));
    assert!(!verify(secret, id, "1614265331", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", body));
    // RFC 4231 test case 2
    assert_eq!(
        hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
