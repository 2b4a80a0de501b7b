//! Operations endpoints: `/health`, `/ready` (200 when up; 503 naming each failing check),
//! `/metrics` (valid Prometheus text with the queue, send and listener metrics). Row-level
//! security for application roles is in [`rls`].

mod exposition;
mod promtool;
mod rls;

use crate::app::spawn_app;
use crate::support::until;
use crate::support::TestDb;
use pgcourier::domain::vocab::{Channel, QueueState};
use pgcourier::http::ops::readiness;
use pgcourier::http::AppState;
use pgcourier::wakeup::ListenerState;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SECS: Duration = Duration::from_secs(15);

/// A pool whose database is a port nothing listens on.
async fn unreachable_pool() -> deadpool_postgres::Pool {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // closed again here
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(port).user("postgres").dbname("nothing").connect_timeout(Duration::from_secs(1));
    pgcourier::db::pool(config, 2).unwrap()
}

fn listener(connected: bool) -> Arc<ListenerState> {
    let l = ListenerState::default();
    l.connected.store(connected, Ordering::SeqCst);
    Arc::new(l)
}

/// Serve the HTTP surface on `state` alone (no daemon around it); returns its base URL.
async fn serve(state: AppState) -> (String, CancellationToken) {
    let bound = Arc::new(std::sync::OnceLock::new());
    let stop = CancellationToken::new();
    tokio::spawn(pgcourier::http::serve("127.0.0.1:0".parse().unwrap(), state, Default::default(), bound.clone(), stop.clone()));
    let deadline = std::time::Instant::now() + SECS;
    loop {
        if let Some(addr) = bound.get() {
            return (format!("http://{addr}"), stop);
        }
        assert!(std::time::Instant::now() < deadline, "the HTTP surface never listened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn config() -> pgcourier::config::Config {
    pgcourier::config::Config::from_lookup(|_| None).unwrap()
}

#[tokio::test]
async fn health_is_ok_and_ready_when_everything_is_up() {
    let db = TestDb::new().await;
    let app = spawn_app(&db, &[]).await;
    app.daemon.listening().await;

    let r = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({ "status": "ok" }));

    let r = app.http.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["failing"], json!([]));
    for check in ["database", "migrations", "listener"] {
        assert_eq!(body["checks"][check]["ok"], true, "{check}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn ready_is_503_naming_the_database_when_it_is_unreachable() {
    let pool = unreachable_pool().await;
    let r = readiness(&pool, &listener(true)).await;
    assert!(!r.is_ready());
    assert_eq!(r.failing(), vec!["database", "migrations"]);
    let why = r.check("database").unwrap().error.clone().unwrap();
    assert!(why.contains("cannot connect"), "{why}");
    assert!(r.check("migrations").unwrap().error.as_deref().unwrap().contains("not checked"));
    assert!(r.check("listener").unwrap().ok);

    // The same through HTTP.
    let (base, stop) =
        serve(AppState { pool, config: config(), listener: listener(true), leader: Default::default(), shutdown: Default::default() })
            .await;
    let resp = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["failing"], json!(["database", "migrations"]));
    assert_eq!(body["checks"]["database"]["ok"], false);
    assert!(body["checks"]["database"]["error"].as_str().unwrap().contains("cannot connect"), "{body}");
    assert_eq!(body["checks"]["listener"]["ok"], true);
    // /health does not depend on the database; /metrics still answers, saying the database is down.
    assert_eq!(reqwest::get(format!("{base}/health")).await.unwrap().status(), 200);
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    let e = exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(e.value("pgcourier_database_up", &[]), Some(0.0));
    stop.cancel();
}

#[tokio::test]
async fn ready_names_missing_migrations_and_a_down_listener() {
    let db = TestDb::empty().await; // nothing migrated
    let pool = pgcourier::db::pool(db.config.clone(), 2).unwrap();
    let r = readiness(&pool, &listener(false)).await;
    assert_eq!(r.failing(), vec!["migrations", "listener"]);
    assert!(r.check("database").unwrap().ok);
    assert!(r.check("migrations").unwrap().error.as_deref().unwrap().contains("pgcourier migrate"));
    assert!(r.check("listener").unwrap().error.as_deref().unwrap().contains("LISTEN connection is down"));

    // Migrated, the database side is ready; the listener alone keeps it from being ready.
    let mut client = db.connect().await;
    pgcourier::db::migrate::migrate(&mut client).await.unwrap();
    let r = readiness(&pool, &listener(false)).await;
    assert_eq!(r.failing(), vec!["listener"]);
    assert!(readiness(&pool, &listener(true)).await.is_ready());
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_queue_send_and_listener_metrics() {
    // The recorder is process-wide: make sure it is installed before anything is sent.
    pgcourier::telemetry::metrics_handle();
    let db = TestDb::new().await;
    let (email, whatsapp) = db.seed_acme().await;
    let app = spawn_app(&db, &[]).await;
    app.daemon.listening().await;

    // A queued row that stays queued (scheduled in an hour), and a message that is sent now.
    db.client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text, scheduled_at)
             VALUES ('acme', $1, 'outbound', ARRAY['later@example.com'], 'Later', 'Body', now() + interval '1 hour')",
            &[&email],
        )
        .await
        .unwrap();
    let sent: i64 = db
        .client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
             VALUES ('acme', $1, 'outbound', ARRAY['+15551234567'], 'Now') RETURNING id",
            &[&whatsapp],
        )
        .await
        .unwrap()
        .get(0);
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {sent}"), SECS).await;
    db.client
        .execute(
            "INSERT INTO et_session_health (tenant_id, channel_session_id, breaker_state, failure_rate, reported_by)
             VALUES ('acme', $1, 'open', 0.9, 'test')",
            &[&email],
        )
        .await
        .unwrap();

    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = r.text().await.unwrap();
    let e = exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    // database gauges, read at scrape time
    assert_eq!(e.value("pgcourier_database_up", &[]), Some(1.0));
    assert_eq!(e.value("pgcourier_queue_depth", &[("channel", "email"), ("state", "ready")]), Some(1.0), "{text}");
    assert_eq!(e.value("pgcourier_queue_depth", &[("channel", "email"), ("state", "dead")]), Some(0.0));
    assert_eq!(e.value("pgcourier_queue_depth", &[("channel", "whatsapp"), ("state", "ready")]), Some(0.0));
    assert_eq!(e.value("pgcourier_queue_oldest_ready_seconds", &[("channel", "email")]), Some(0.0), "not due yet");
    assert_eq!(e.value("pgcourier_dead_letters", &[]), Some(0.0));
    let session = email.to_string();
    assert_eq!(e.value("pgcourier_breaker_open", &[("tenant", "acme"), ("session", session.as_str())]), Some(1.0));
    assert_eq!(e.value("pgcourier_message_rows", &[("status", "queued"), ("channel", "email"), ("tenant", "acme")]), Some(1.0));
    assert_eq!(e.value("pgcourier_message_rows", &[("status", "sent"), ("channel", "whatsapp"), ("tenant", "acme")]), Some(1.0));
    assert_eq!(e.types["pgcourier_message_rows"], "gauge");
    assert!(e.value("pgcourier_table_bytes", &[("table", "et_messages")]).unwrap() > 0.0, "{text}");
    assert_eq!(e.types["pgcourier_table_dead_rows"], "gauge");

    // the daemon's own state
    assert_eq!(e.value("pgcourier_listener_connected", &[]), Some(1.0));
    assert_eq!(e.types["pgcourier_listener_reconnects_total"], "counter");

    // recorded by the dispatcher (the recorder is shared by every test in this process: at least)
    assert_eq!(e.types["pgcourier_send_duration_seconds"], "histogram");
    let buckets = e.find("pgcourier_send_duration_seconds_bucket", &[("provider", "log")]);
    assert!(!buckets.is_empty(), "{text}");
    let inf = buckets.iter().find(|s| s.labels["le"] == "+Inf").expect("+Inf bucket");
    assert!(inf.value >= 1.0);
    assert!(buckets.iter().any(|s| s.labels["le"] == "0.005"), "the configured buckets");
    let sent_total: f64 = e
        .find("pgcourier_messages_total", &[("status", "sent"), ("channel", "whatsapp"), ("tenant", "acme")])
        .iter()
        .map(|s| s.value)
        .sum();
    assert!(sent_total >= 1.0, "{text}");
    assert_eq!(e.types["pgcourier_messages_total"], "counter");

    app.stop().await;
}

#[tokio::test]
async fn queue_age_and_dead_letters_follow_the_database() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    // No daemon: rows stay where they are put.
    db.client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
             SELECT 'acme', $1, 'outbound', ARRAY['a' || g || '@example.com'], 'x' FROM generate_series(1, 3) g",
            &[&email],
        )
        .await
        .unwrap();
    db.client
        .batch_execute(
            "UPDATE et_outbound_queue SET run_at = now() - interval '90 seconds';
             UPDATE et_outbound_queue SET state = 'dead'
              WHERE message_id = (SELECT min(message_id) FROM et_outbound_queue);",
        )
        .await
        .unwrap();
    let mut client = db.connect().await;
    let g = pgcourier::db::ops::gauges(&mut client).await.unwrap();
    let depth = |state: QueueState| g.queue_depth.iter().find(|d| d.channel == Channel::Email && d.state == state).map(|d| d.depth);
    assert_eq!(depth(QueueState::Ready), Some(2));
    assert_eq!(depth(QueueState::Dead), Some(1));
    assert_eq!(depth(QueueState::Leased), Some(0));
    let age = g.oldest_ready_secs.iter().find(|(c, _)| *c == Channel::Email).unwrap().1;
    assert!((90.0..120.0).contains(&age), "{age}");
    assert_eq!(g.dead_letters, 1);
    assert_eq!(g.messages.iter().map(|m| m.count).sum::<i64>(), 3);
    assert!(g.tables.iter().any(|t| t.table == "et_messages"));
}
