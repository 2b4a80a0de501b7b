//! Wake-ups: one NOTIFY for a huge transaction, and delivery by polling alone.

use crate::outbox::{self, settled, sink_quiet};
use crate::smtp_sink::SmtpSink;
use crate::support::TestDb;
use crate::support::{send, smtp_session, spawn};
use crate::tally::{note, Copies, Tally};
use futures_util::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::AsyncMessage;

/// Issue 15 Deliver 9 / DESIGN "NOTIFY contract": 50,000 rows in one transaction (one INSERT ...
/// SELECT generate_series) with a daemon listening and a 60 s poll interval, so the drain can only
/// start from the wake-up. Provider `log` (no sink: copies are counted from the attempts); a
/// connection of our own LISTENs on `et_outbound` and counts the notifications: one.
pub async fn one_50000_row_transaction() {
    const N: i32 = 50_000;
    let db = TestDb::new().await;
    let (_, log) = db.seed_acme().await;
    let (listen, mut conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.expect("a LISTEN connection");
    let notified = Arc::new(AtomicUsize::new(0));
    let counter = notified.clone();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if matches!(&m, AsyncMessage::Notification(n) if n.channel() == "et_outbound") {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    listen.batch_execute("LISTEN et_outbound").await.unwrap();
    let daemon = spawn(&db, &[("PGCOURIER_POLL_INTERVAL", "60s")]);
    daemon.listening().await;
    let t0 = Instant::now();
    db.client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
             SELECT 'acme', $1, 'outbound', ARRAY['+1555' || lpad(i::text, 7, '0')], 'Your code is ' || i
               FROM generate_series(1, $2::int) i",
            &[&log, &N],
        )
        .await
        .expect("one 50,000-row INSERT");
    let insert = t0.elapsed();
    let committed = Instant::now();
    let started =
        outbox::wait(&db.client, "SELECT EXISTS (SELECT 1 FROM et_messages WHERE delivery_status = 'sent')", Duration::from_secs(10)).await;
    let first = committed.elapsed();
    let done = settled(&db.client, "true", Duration::from_secs(90)).await;
    let drain = committed.elapsed();
    daemon.stop().await;
    let notifications = notified.load(Ordering::SeqCst);
    note(format!(
        "50,000-row transaction: insert {:.1} s; first sent {:.2} s after commit; settled {done} {:.1} s after commit ({:.0} msgs/s); \
         NOTIFYs on et_outbound {notifications}",
        insert.as_secs_f64(),
        first.as_secs_f64(),
        drain.as_secs_f64(),
        N as f64 / drain.as_secs_f64()
    ));
    let tally =
        Tally::count("one 50,000-row transaction (log provider: copies = attempts not given back)", &db.client, "true", Copies::Attempts)
            .await;
    drop(listen);
    assert!(started, "nothing sent 10 s after the commit: the wake-up was lost (poll interval 60 s)");
    assert!(done, "not every message reached a final status within 90 s — {}", tally.line());
    tally.assert_clean();
    assert_eq!(notifications, 1, "one NOTIFY for the whole transaction");
}

/// Issue 15 Deliver 9: wake-ups disabled, polling alone. `PGCOURIER_LISTEN=off` (the switch the
/// lead adds; today unknown and ignored) with a 500 ms poll interval: no LISTEN connection, no
/// `et_listeners` row, and messages still go out, each within the poll interval (+ 700 ms).
pub async fn polling_alone() {
    const POLL: Duration = Duration::from_millis(500);
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    let daemon = spawn(&db, &[("PGCOURIER_LISTEN", "off"), ("PGCOURIER_POLL_INTERVAL", "500ms")]);
    // a first message and the daemon's start-up behind us
    send(&db, session, "first@example.com").await;
    let warmed = outbox::sink_reaches(&sink, 1, Duration::from_secs(10)).await;
    let mut latencies = Vec::new();
    for i in 0..5 {
        // idle long enough that a busy daemon's short polling has ended
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let before = sink.count();
        send(&db, session, &format!("p{i}@example.com")).await;
        let committed = Instant::now();
        if outbox::sink_reaches(&sink, before + 1, Duration::from_secs(5)).await {
            latencies.push(sink.messages()[before].at.saturating_duration_since(committed));
        }
    }
    crate::support::send_many(&db, session, "bulk", 200).await;
    let done = settled(&db.client, "true", Duration::from_secs(20)).await;
    sink_quiet(&sink, Duration::from_millis(300), Duration::from_secs(3)).await;
    let listener_connected = daemon.handles.listener.connected.load(Ordering::SeqCst);
    let listen_sessions = db
        .count(&format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND application_name = 'pgcourier listener'", db.name))
        .await;
    let registered = db.count("SELECT count(*) FROM et_listeners").await;
    daemon.stop().await;
    let ms: Vec<u128> = latencies.iter().map(|d| d.as_millis()).collect();
    note(format!(
        "polling alone (PGCOURIER_LISTEN=off, 500 ms poll): latencies {ms:?} ms; listener connected {listener_connected}, \
         LISTEN sessions {listen_sessions}, et_listeners rows {registered}"
    ));
    let tally = Tally::count("wake-ups disabled, polling alone (206 msgs)", &db.client, "true", Copies::Sink(sink.message_ids())).await;
    assert!(warmed && done, "not every message was delivered by polling — {}", tally.line());
    tally.assert_clean();
    assert!(
        !listener_connected && listen_sessions == 0 && registered == 0,
        "PGCOURIER_LISTEN=off must leave LISTEN off: listener connected {listener_connected}, {listen_sessions} LISTEN session(s), \
         {registered} et_listeners row(s)"
    );
    assert_eq!(latencies.len(), 5, "every single message arrived within 5 s: {ms:?}");
    assert!(latencies.iter().all(|d| *d <= POLL + Duration::from_millis(700)), "each within the poll interval: {ms:?} ms");
}
