//! Per-session rate limits (held in the database, so across daemons) and circuit breakers
//! with fallback sessions.

use crate::smtp_sink::{Reply, SmtpSink};
use crate::support::TestDb;
use crate::support::{send, smtp_session, spawn, until};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_5_per_second_session_holds_its_rate_across_two_daemons() {
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({ "rate_per_second": 5 })).await;
    db.client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
             SELECT 'acme', $1, 'outbound', ARRAY['u' || i || '@example.com'], 'Hi', 'x' FROM generate_series(1, 20) i",
            &[&session],
        )
        .await
        .unwrap();
    let a = spawn(&db, &[("PGCOURIER_WORKER_ID", "a")]);
    let b = spawn(&db, &[("PGCOURIER_WORKER_ID", "b")]);
    let got = sink.wait_for(20, Duration::from_secs(30)).await;
    // A bucket of 5 tokens refilled at 5/s: 20 messages need at least (20 - 5) / 5 = 3 s.
    let first = got.iter().map(|m| m.at).min().unwrap();
    let last = got.iter().map(|m| m.at).max().unwrap();
    let span = last.duration_since(first);
    assert!(span >= Duration::from_millis(2_800), "20 messages at 5/s went out in {span:?}");
    // and in no one-second window did more than 5 + 5 (burst + refill) leave
    let mut times: Vec<Instant> = got.iter().map(|m| m.at).collect();
    times.sort();
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..].iter().take_while(|u| u.duration_since(*t) < Duration::from_secs(1)).count();
        assert!(in_window <= 10, "{in_window} messages within one second from #{i}");
    }
    until(&db, "SELECT count(*) = 20 FROM et_messages WHERE delivery_status = 'sent'", Duration::from_secs(10)).await;
    // deferral by the rate limit is not an attempt
    assert_eq!(db.count("SELECT max(attempts)::bigint FROM et_messages").await, 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_breaker_opens_routes_to_the_fallback_and_closes_after_recovery() {
    let db = TestDb::new().await;
    // the primary fails its first 3 transactions with 451, then recovers
    let primary_sink = SmtpSink::with_rule(|_, n| if n < 3 { Reply::Temp451 } else { Reply::Accept }).await;
    let fallback_sink = SmtpSink::start().await;
    let fallback = smtp_session(&db, &fallback_sink, serde_json::json!({})).await;
    let primary = smtp_session(
        &db,
        &primary_sink,
        serde_json::json!({ "breaker_min_requests": 3, "breaker_failure_rate": 0.5, "breaker_cooldown_ms": 2500,
                            "retry_base_ms": 20, "retry_cap_ms": 50, "concurrency": 1 }),
    )
    .await;
    db.client.execute("UPDATE et_channel_sessions SET fallback_session_id = $1 WHERE id = $2", &[&fallback, &primary]).await.unwrap();
    let daemon = spawn(&db, &[]);
    for i in 0..3 {
        send(&db, primary, &format!("first{i}@example.com")).await;
    }
    // three transient failures open the breaker; the retries go to the fallback
    fallback_sink.wait_for(3, Duration::from_secs(15)).await;
    assert_eq!(primary_sink.messages().len(), 0);
    assert_eq!(primary_sink.attempts(), 3);
    until(
        &db,
        &format!("SELECT breaker_state = 'open' FROM et_session_health WHERE channel_session_id = {primary}"),
        Duration::from_secs(5),
    )
    .await;
    let status = pgcourier::status::render(&db.client).await.unwrap();
    assert!(status.contains(&format!("session {primary:<6} open")), "{status}");
    // while open, new traffic goes to the fallback too
    send(&db, primary, "during@example.com").await;
    fallback_sink.wait_for(4, Duration::from_secs(15)).await;
    // the row says which session carried it
    until(
        &db,
        &format!("SELECT count(*) = 4 FROM et_messages WHERE (metadata->'delivery'->>'via_fallback_session')::bigint = {fallback}"),
        Duration::from_secs(10),
    )
    .await;
    // after the cooldown a probe goes to the recovered primary and closes the breaker
    until(
        &db,
        &format!("SELECT since < now() - interval '2600 milliseconds' FROM et_session_health WHERE channel_session_id = {primary}"),
        Duration::from_secs(10),
    )
    .await;
    send(&db, primary, "probe@example.com").await;
    primary_sink.wait_for(1, Duration::from_secs(15)).await;
    until(
        &db,
        &format!("SELECT breaker_state = 'closed' FROM et_session_health WHERE channel_session_id = {primary}"),
        Duration::from_secs(5),
    )
    .await;
    send(&db, primary, "after1@example.com").await;
    send(&db, primary, "after2@example.com").await;
    primary_sink.wait_for(3, Duration::from_secs(15)).await;
    assert_eq!(fallback_sink.messages().len(), 4, "nothing more went to the fallback");
    until(&db, "SELECT count(*) = 7 FROM et_messages WHERE delivery_status = 'sent'", Duration::from_secs(10)).await;
    daemon.stop().await;
}

#[tokio::test]
async fn an_open_breaker_without_fallback_defers_without_counting_attempts() {
    let db = TestDb::new().await;
    let sink = SmtpSink::with_rule(|_, n| if n < 2 { Reply::Temp451 } else { Reply::Accept }).await;
    let session = smtp_session(
        &db,
        &sink,
        serde_json::json!({ "breaker_min_requests": 2, "breaker_cooldown_ms": 1500, "retry_base_ms": 10, "retry_cap_ms": 20, "concurrency": 1 }),
    )
    .await;
    let daemon = spawn(&db, &[]);
    let a = send(&db, session, "a@example.com").await;
    let b = send(&db, session, "b@example.com").await;
    sink.wait_for(2, Duration::from_secs(20)).await;
    until(&db, "SELECT count(*) = 2 FROM et_messages WHERE delivery_status = 'sent'", Duration::from_secs(10)).await;
    assert_eq!(sink.attempts(), 4, "two failures, then one probe and one more: no send while open");
    for id in [a, b] {
        assert_eq!(db.count(&format!("SELECT attempts::bigint FROM et_messages WHERE id = {id}")).await, 2, "deferrals are not attempts");
    }
    assert!(db.count("SELECT count(*) FROM et_message_events WHERE detail->>'reason' = 'circuit breaker open'").await >= 1);
    daemon.stop().await;
}
