//! Running the daemon in-process for a test, and the rows most tests start from (an SMTP
//! session, outbound messages), and waiting for the daemon's asynchronous outcomes.

use super::db::TestDb;
use crate::smtp_sink::SmtpSink;
use pgcourier::config::Config;
use pgcourier::daemon::{self, Handles};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// An in-process daemon; stopped (and awaited) by [`Running::stop`].
pub struct Running {
    token: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
    pub handles: Handles,
}

impl Running {
    pub async fn stop(self) {
        self.token.cancel();
        self.task.await.expect("daemon task").expect("daemon result");
    }

    /// Wait until the LISTEN connection is up (so NOTIFY latency can be measured).
    pub async fn listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.handles.listener.connected.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "listener never connected");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

pub fn config(db: &TestDb, overrides: &[(&str, &str)]) -> Config {
    let mut env: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), db.url.clone()),
        ("PGCOURIER_POLL_INTERVAL".into(), "1s".into()),
        ("PGCOURIER_SHUTDOWN_TIMEOUT".into(), "10s".into()),
        ("PGCOURIER_HTTP_ADDR".into(), "off".into()),
        // the mock providers, bridges and model servers of the tests listen on 127.0.0.1: the
        // SSRF guard must let loopback through (tests of the guard override this with "")
        ("PGCOURIER_NETWORK_ALLOW".into(), "loopback".into()),
    ]);
    for (k, v) in overrides {
        env.insert(k.to_string(), v.to_string());
    }
    Config::from_lookup(|k| env.get(k).cloned()).expect("test config")
}

pub fn spawn(db: &TestDb, overrides: &[(&str, &str)]) -> Running {
    let token = CancellationToken::new();
    let handles = Handles::default();
    let task = tokio::spawn(daemon::run_with(config(db, overrides), db.config.clone(), token.clone(), handles.clone()));
    Running { token, task, handles }
}

/// Tenant `acme` with an SMTP session pointing at `sink`; returns the session id.
pub async fn smtp_session(db: &TestDb, sink: &SmtpSink, extra: serde_json::Value) -> i64 {
    db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('acme', 'Acme') ON CONFLICT DO NOTHING").await.unwrap();
    let mut config = serde_json::json!({ "host": "127.0.0.1", "port": sink.addr.port(), "tls": "none", "timeout_ms": 5000,
                                         "retry_base_ms": 20, "retry_cap_ms": 100 });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    db.client
        .query_one(
            "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config)
             VALUES ('acme', 'email', 'smtp', 'Acme <noreply@acme.example>', $1) RETURNING id",
            &[&config],
        )
        .await
        .unwrap()
        .get(0)
}

/// `n` messages in one statement, to `{prefix}1@example.com` ... `{prefix}{n}@example.com`.
pub async fn send_many(db: &TestDb, session: i64, prefix: &str, n: i32) {
    db.client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
             SELECT 'acme', $1, 'outbound', ARRAY[$2::text || i || '@example.com'], 'Hello', 'Body' FROM generate_series(1, $3::int) i",
            &[&session, &prefix, &n],
        )
        .await
        .unwrap();
}

pub async fn send(db: &TestDb, session: i64, to: &str) -> i64 {
    db.client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
             VALUES ('acme', $1, 'outbound', ARRAY[$2], 'Hello', 'Body') RETURNING id",
            &[&session, &to],
        )
        .await
        .unwrap()
        .get(0)
}

/// Poll the database for a condition, up to `timeout` (the daemon writes outcomes asynchronously).
pub async fn until(db: &TestDb, sql: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let ok: bool = db.client.query_one(sql, &[]).await.unwrap().get(0);
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
