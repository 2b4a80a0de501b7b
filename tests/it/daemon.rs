//! The daemon end to end: rows inserted by plain SQL reach a real SMTP sink; retries, dead
//! letters, suppression, approval, crash safety and graceful shutdown.

use crate::smtp_sink::{Reply, SmtpSink};
use crate::support::{send, send_many, smtp_session, spawn, until, TestDb};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

async fn status(db: &TestDb, id: i64) -> String {
    db.client.query_one("SELECT delivery_status FROM et_messages WHERE id = $1", &[&id]).await.unwrap().get(0)
}

async fn walk(db: &TestDb, id: i64) -> Vec<String> {
    db.client
        .query("SELECT to_status FROM et_message_events WHERE message_id = $1 ORDER BY id", &[&id])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

const SECS: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_row_inserted_by_sql_reaches_the_smtp_sink() {
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    let daemon = spawn(&db, &[]);
    daemon.listening().await;
    // warm the SMTP pool and the statement cache, then measure one fresh insert
    send(&db, session, "warm@example.com").await;
    sink.wait_for(1, SECS).await;
    let t0 = Instant::now();
    let id: i64 = db
        .client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, cc, reply_to, subject, body_html, variables)
             VALUES ('acme', $1, 'outbound', ARRAY['Ann <ann@example.com>'], ARRAY['cat@example.com'], 'help@acme.example',
                     'Order {{order}}', '<p>Hi {{name}}</p>', '{\"order\": \"#42\", \"name\": \"<Ann>\"}') RETURNING id",
            &[&session],
        )
        .await
        .unwrap()
        .get(0);
    let got = sink.wait_for(2, SECS).await;
    let latency = got[1].at.duration_since(t0);
    assert!(latency < Duration::from_millis(200), "commit to SMTP DATA took {latency:?}");
    let m = &got[1];
    assert_eq!(m.mail_from, "noreply@acme.example");
    assert_eq!(m.rcpt_to, ["ann@example.com", "cat@example.com"]);
    assert_eq!(m.header("Subject").unwrap(), "Order #42");
    assert_eq!(m.header("From").unwrap(), "Acme <noreply@acme.example>");
    assert_eq!(m.header("Reply-To").unwrap(), "help@acme.example");
    assert!(m.header("Content-Type").unwrap().contains("multipart/alternative"));
    assert!(m.data.contains("&lt;Ann&gt;"), "variables are HTML-escaped in HTML");
    assert!(m.data.contains("Hi <Ann>"), "text derived from HTML, unescaped");
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), SECS).await;
    let row = db
        .client
        .query_one(
            "SELECT external_message_id, rendered_subject, rendered_html, attempts, sent_at IS NOT NULL FROM et_messages WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(m.header("Message-ID").unwrap(), row.get::<_, String>(0));
    assert_eq!(row.get::<_, String>(1), "Order #42");
    assert_eq!(row.get::<_, String>(2), "<p>Hi &lt;Ann&gt;</p>");
    assert_eq!(row.get::<_, i32>(3), 1);
    assert!(row.get::<_, bool>(4));
    assert_eq!(walk(&db, id).await, ["queued", "sending", "sent"]);
    // rendered_* hold what rendering changed (here: variables, text derived from the HTML);
    // a message sent exactly as written is not stored twice.
    let as_written = "SELECT count(*) FROM et_messages WHERE recipients = ARRAY['warm@example.com'] AND delivery_status = 'sent'
                        AND rendered_subject IS NULL AND rendered_text IS NULL AND rendered_html IS NULL";
    assert_eq!(db.count(as_written).await, 1, "sent as written: rendered_* stay NULL");
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_messages WHERE id = {id} AND rendered_text LIKE '%Hi <Ann>%'")).await, 1);
    assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue").await, 0, "finished rows leave the queue");
    daemon.stop().await;
}

#[tokio::test]
async fn rows_inserted_with_no_daemon_or_while_listen_is_killed_are_all_delivered() {
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    for i in 0..20 {
        send(&db, session, &format!("before{i}@example.com")).await;
    }
    // A long poll interval: delivery below must come from NOTIFY or the claim after reconnect.
    let daemon = spawn(&db, &[("PGCOURIER_POLL_INTERVAL", "60s")]);
    sink.wait_for(20, SECS).await;
    daemon.listening().await;
    let killed: i64 = db
        .count(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{}' AND application_name = 'pgcourier listener'",
            db.name
        ))
        .await;
    assert_eq!(killed, 1, "the LISTEN connection was found and killed");
    for i in 0..20 {
        send(&db, session, &format!("during{i}@example.com")).await;
    }
    sink.wait_for(40, SECS).await;
    until(&db, "SELECT count(*) = 40 FROM et_messages WHERE delivery_status = 'sent'", SECS).await;
    // (the rows may have come by the dispatcher's busy polling before the listener is back)
    let deadline = Instant::now() + SECS;
    while daemon.handles.listener.reconnects.load(Ordering::SeqCst) < 1 {
        assert!(Instant::now() < deadline, "the LISTEN connection was never re-established");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.stop().await;
}

#[tokio::test]
async fn a_claim_that_fails_is_tried_again_within_moments_not_after_the_poll_interval() {
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    // A 60 s poll interval: after a failed claim, only the dispatcher's own retry can send soon.
    let daemon = spawn(&db, &[("PGCOURIER_POLL_INTERVAL", "60s")]);
    daemon.listening().await;
    // every claim fails while this trigger stands (the claim updates the queue row it leases)
    db.client
        .batch_execute(
            "CREATE FUNCTION test_claim_fails() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'test: the claim fails'; END $$;
             CREATE TRIGGER test_claim_fails BEFORE UPDATE ON et_outbound_queue
               FOR EACH ROW EXECUTE FUNCTION test_claim_fails();",
        )
        .await
        .unwrap();
    send(&db, session, "ann@example.com").await;
    // the NOTIFY wakes the dispatcher, whose claims fail until the trigger goes
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.count(), 0);
    db.client.batch_execute("DROP TRIGGER test_claim_fails ON et_outbound_queue").await.unwrap();
    let fixed = Instant::now();
    sink.wait_for(1, SECS).await;
    assert!(fixed.elapsed() < Duration::from_secs(5), "sent {:?} after the claims could succeed", fixed.elapsed());
    until(&db, "SELECT count(*) = 1 FROM et_messages WHERE delivery_status = 'sent'", SECS).await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_listening_daemon_registers_in_et_listeners_and_deregisters_when_it_stops() {
    let db = TestDb::new().await;
    let daemon = spawn(&db, &[("PGCOURIER_WORKER_ID", "w-listen")]);
    daemon.listening().await;
    let live = "SELECT count(*) FROM et_listeners WHERE worker_id = 'w-listen' AND listening_until > now() + interval '20 seconds'";
    assert_eq!(db.count(live).await, 1, "registered (30 s) once LISTEN is up");
    assert!(db.client.query_one("SELECT et_wakeup_wanted('et_outbound')", &[]).await.unwrap().get::<_, bool>(0));
    daemon.stop().await;
    assert_eq!(db.count("SELECT count(*) FROM et_listeners").await, 0, "a stopped daemon wakes nobody");
    assert!(!db.client.query_one("SELECT et_wakeup_wanted('et_outbound')", &[]).await.unwrap().get::<_, bool>(0));
}

#[tokio::test]
async fn tables_changed_more_than_their_size_are_analysed_and_then_no_longer_stale() {
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    let stale = || async { pgcourier::db::analyze::stale(&db.client).await.unwrap() };
    assert!(!stale().await.contains(&"et_messages".to_owned()), "an empty table is not stale");
    send_many(&db, session, "u", 200).await;
    // the inserting backend's counters reach the shared statistics at its next flush
    let deadline = Instant::now() + SECS;
    while !stale().await.contains(&"et_messages".to_owned()) {
        assert!(Instant::now() < deadline, "200 new rows never made et_messages stale");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut last = std::collections::HashMap::new();
    let done = pgcourier::db::analyze::analyze_stale(&db.client, &mut last).await.unwrap();
    assert!(done.contains(&"et_messages".to_owned()) && done.contains(&"et_outbound_queue".to_owned()), "{done:?}");
    assert!(!stale().await.contains(&"et_messages".to_owned()));
    assert!(last.contains_key("et_messages"), "the time of the analyze is kept");
    // stale again at once, but analysed less than a minute ago: left alone
    db.client.batch_execute("UPDATE et_messages SET priority = 3; UPDATE et_messages SET priority = 2").await.unwrap();
    let deadline = Instant::now() + SECS;
    while !stale().await.contains(&"et_messages".to_owned()) {
        assert!(Instant::now() < deadline, "400 updates never made et_messages stale");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = pgcourier::db::analyze::analyze_stale(&db.client, &mut last).await.unwrap();
    assert!(!again.contains(&"et_messages".to_owned()), "{again:?}");
    assert_eq!(db.count("SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'et_messages' AND last_analyze IS NOT NULL").await, 1);
    // a daemon does the same by itself, but only where autovacuum is off (as on the test server)
    let autovacuum_off = db.client.query_one("SELECT current_setting('autovacuum') = 'off'", &[]).await.unwrap().get::<_, bool>(0);
    // (et_messages is stale now: the 400 updates above came after its analyze)
    if autovacuum_off {
        let before: String = db
            .client
            .query_one("SELECT last_analyze::text FROM pg_stat_user_tables WHERE relname = 'et_messages'", &[])
            .await
            .unwrap()
            .get(0);
        let daemon = spawn(&db, &[]);
        let analysed = format!("SELECT last_analyze > '{before}'::timestamptz FROM pg_stat_user_tables WHERE relname = 'et_messages'");
        until(&db, &analysed, SECS).await;
        sink.wait_for(200, SECS).await;
        daemon.stop().await;
    }
}

/// Claimed rows that wait for their session's only slot longer than their lease keep it (it is
/// renewed while they wait) and are each sent once, on their first attempt: 3 messages of 1.2 s
/// each through concurrency 1 with a 2 s lease. (Without renewals the third starts at 2.4 s,
/// after its lease expired and the rescuer queued it again, and goes out twice.)
#[tokio::test]
async fn sends_waiting_for_a_slow_slot_keep_their_leases_and_go_out_once() {
    let db = TestDb::new().await;
    let sink = SmtpSink::with_rule(|_, _| Reply::Delay(Duration::from_millis(1200))).await;
    let session = smtp_session(&db, &sink, serde_json::json!({ "concurrency": 1 })).await;
    send_many(&db, session, "r", 3).await;
    let daemon = spawn(&db, &[("PGCOURIER_LEASE", "2s"), ("PGCOURIER_RESCUE_INTERVAL", "200ms")]);
    until(&db, "SELECT count(*) = 3 FROM et_messages WHERE delivery_status = 'sent'", SECS).await;
    daemon.stop().await;
    let mut to: Vec<String> = sink.messages().iter().flat_map(|m| m.rcpt_to.clone()).collect();
    to.sort();
    assert_eq!(to, ["r1@example.com", "r2@example.com", "r3@example.com"], "each message delivered exactly once");
    assert_eq!(db.count("SELECT count(*) FROM et_messages WHERE attempts = 1").await, 3, "each on its first attempt");
    assert_eq!(
        db.count("SELECT count(*) FROM et_message_events WHERE from_status = 'sending' AND to_status = 'queued'").await,
        0,
        "nothing given back or rescued"
    );
}

#[tokio::test]
async fn smtp_451_twice_then_250_is_sent_on_attempt_3() {
    let db = TestDb::new().await;
    let sink = SmtpSink::with_rule(|_, n| if n < 2 { Reply::Temp451 } else { Reply::Accept }).await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    let daemon = spawn(&db, &[]);
    let id = send(&db, session, "ann@example.com").await;
    sink.wait_for(1, SECS).await;
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), SECS).await;
    assert_eq!(sink.attempts(), 3);
    assert_eq!(db.count(&format!("SELECT attempts::bigint FROM et_messages WHERE id = {id}")).await, 3);
    assert_eq!(walk(&db, id).await, ["queued", "sending", "queued", "sending", "queued", "sending", "sent"]);
    let detail: serde_json::Value = db
        .client
        .query_one("SELECT detail FROM et_message_events WHERE message_id = $1 AND from_status = 'sending' AND to_status = 'queued' ORDER BY id LIMIT 1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert!(detail["error"].as_str().unwrap().contains("451"), "{detail}");
    assert_eq!(detail["error_class"], "transient");
    daemon.stop().await;
}

#[tokio::test]
async fn smtp_550_5_1_1_fails_at_once_suppresses_and_the_next_message_never_connects() {
    let db = TestDb::new().await;
    let sink = SmtpSink::with_rule(|rcpt, _| if rcpt[0].starts_with("gone@") { Reply::Reject550_511 } else { Reply::Accept }).await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    // suppressed on the first hard bounce (the default threshold, 3: tests/it/suppressions.rs)
    db.client.batch_execute("UPDATE et_tenants SET settings = '{\"hard_bounce_threshold\": 1}' WHERE id = 'acme'").await.unwrap();
    let daemon = spawn(&db, &[]);
    let id = send(&db, session, "Gone@Example.com").await;
    until(&db, &format!("SELECT delivery_status = 'failed' FROM et_messages WHERE id = {id}"), SECS).await;
    assert_eq!(db.count(&format!("SELECT attempts::bigint FROM et_messages WHERE id = {id}")).await, 1);
    let s =
        db.client.query_one("SELECT reason, source_message_id FROM et_suppressions WHERE address = 'gone@example.com'", &[]).await.unwrap();
    assert_eq!(s.get::<_, String>(0), "hard_bounce");
    assert_eq!(s.get::<_, i64>(1), id);
    let dead = db.client.query_one("SELECT last_error FROM et_dead_letters WHERE message_id = $1", &[&id]).await.unwrap();
    assert!(dead.get::<_, String>(0).contains("5.1.1"));

    let connections = sink.connections();
    let transactions_before = sink.messages().len() + sink.attempts();
    let next = send(&db, session, "gone@example.com").await;
    assert_eq!(status(&db, next).await, "suppressed", "suppressed at insert");
    let ok = send(&db, session, "ok@example.com").await;
    sink.wait_for(1, SECS).await;
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {ok}"), SECS).await;
    assert_eq!(sink.messages().len() + sink.attempts(), transactions_before + 2, "only ok@ was transmitted");
    assert!(sink.connections() <= connections + 1);
    assert!(sink.messages().iter().all(|m| !m.rcpt_to.iter().any(|r| r.starts_with("gone@"))));
    daemon.stop().await;
}

#[tokio::test]
async fn pending_messages_wait_for_approval_and_rejected_ones_never_go() {
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let gated = smtp_session(&db, &sink, serde_json::json!({})).await;
    let open = smtp_session(&db, &sink, serde_json::json!({})).await;
    db.client.execute("UPDATE et_channel_sessions SET requires_approval = true WHERE id = $1", &[&gated]).await.unwrap();
    let daemon = spawn(&db, &[]);
    let pending = send(&db, gated, "wait@example.com").await;
    let rejected = send(&db, gated, "never@example.com").await;
    let control = send(&db, open, "control@example.com").await;
    sink.wait_for(1, SECS).await;
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {control}"), SECS).await;
    assert_eq!(status(&db, pending).await, "pending_approval");
    db.client.execute("SELECT et_reject($1, 'alice', 'no')", &[&rejected]).await.unwrap();
    db.client.execute("SELECT et_approve($1, 'alice')", &[&pending]).await.unwrap();
    let got = sink.wait_for(2, SECS).await;
    assert_eq!(got[1].rcpt_to, ["wait@example.com"]);
    let last = send(&db, open, "after@example.com").await;
    sink.wait_for(3, SECS).await;
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {last}"), SECS).await;
    assert!(sink.messages().iter().all(|m| m.rcpt_to != ["never@example.com"]));
    assert_eq!(status(&db, rejected).await, "rejected");
    daemon.stop().await;
}

#[tokio::test]
async fn a_missing_secret_fails_its_rows_and_the_daemon_keeps_delivering() {
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let broken = smtp_session(&db, &sink, serde_json::json!({})).await;
    db.client.execute("UPDATE et_channel_sessions SET credentials_ref = 'mail-prod' WHERE id = $1", &[&broken]).await.unwrap();
    let good = smtp_session(&db, &sink, serde_json::json!({})).await;
    let daemon = spawn(&db, &[]);
    let bad = send(&db, broken, "a@example.com").await;
    let fine = send(&db, good, "b@example.com").await;
    until(&db, &format!("SELECT delivery_status = 'failed' FROM et_messages WHERE id = {bad}"), SECS).await;
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {fine}"), SECS).await;
    let err: String = db.client.query_one("SELECT last_error FROM et_messages WHERE id = $1", &[&bad]).await.unwrap().get(0);
    assert!(err.contains("PGCOURIER_SECRET_MAIL_PROD is not set"), "{err}");
    let after = send(&db, good, "c@example.com").await;
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {after}"), SECS).await;
    daemon.stop().await;
}

#[tokio::test]
async fn two_daemons_deliver_5000_messages_exactly_once() {
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({ "pool_size": 4, "concurrency": 8 })).await;
    db.client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
             SELECT 'acme', $1, 'outbound', ARRAY['u' || i || '@example.com'], 'Hi', 'x' FROM generate_series(1, 5000) i",
            &[&session],
        )
        .await
        .unwrap();
    let a = spawn(&db, &[("PGCOURIER_WORKER_ID", "daemon-a")]);
    let b = spawn(&db, &[("PGCOURIER_WORKER_ID", "daemon-b")]);
    let got = sink.wait_for(5000, Duration::from_secs(120)).await;
    until(&db, "SELECT count(*) = 5000 FROM et_messages WHERE delivery_status = 'sent'", SECS).await;
    let ids: HashSet<String> = got.iter().map(|m| m.header("Message-ID").unwrap()).collect();
    assert_eq!(ids.len(), 5000, "every Message-ID once");
    assert_eq!(sink.messages().len(), 5000, "nothing sent twice");
    let both: i64 = db.count("SELECT count(DISTINCT actor) FROM et_message_events WHERE to_status = 'sending'").await;
    assert_eq!(both, 2, "both daemons claimed work");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn an_address_suppressed_after_queueing_is_not_sent_to() {
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    let only = send(&db, session, "late@example.com").await;
    let mixed: i64 = db
        .client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, cc, subject, body_text)
             VALUES ('acme', $1, 'outbound', ARRAY['keep@example.com'], ARRAY['late@example.com'], 'Hi', 'x') RETURNING id",
            &[&session],
        )
        .await
        .unwrap()
        .get(0);
    // suppressed after both were queued, before any daemon ran
    db.client
        .batch_execute(
            "INSERT INTO et_suppressions (tenant_id, channel, address, reason) VALUES ('acme', 'email', 'late@example.com', 'complaint')",
        )
        .await
        .unwrap();
    let daemon = spawn(&db, &[]);
    let got = sink.wait_for(1, SECS).await;
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {mixed}"), SECS).await;
    until(&db, &format!("SELECT delivery_status = 'suppressed' FROM et_messages WHERE id = {only}"), SECS).await;
    assert_eq!(got[0].rcpt_to, ["keep@example.com"], "the suppressed cc is left out of the envelope");
    assert_eq!(walk(&db, only).await, ["queued", "sending", "suppressed"]);
    assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue").await, 0);
    assert_eq!(sink.messages().len(), 1);
    daemon.stop().await;
}
