//! Work that outlasts its lease, and sends whose outcome the daemon cannot know.

use crate::llm_mock::SlowLlm;
use crate::outbox::{self, settled, sink_quiet};
use crate::smtp_sink::{Reply, SmtpSink};
use crate::support::TestDb;
use crate::support::{smtp_session, spawn};
use crate::tally::{note, Copies, Tally};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Issue 15 §1: the provider answers DATA after 3 s, the lease is 1 s. The lease must cover the
/// whole send (renewed while it runs): each of 40 messages delivered once, all `sent`, none `failed`.
pub async fn provider_slower_than_the_lease() {
    let db = TestDb::new().await;
    let sink = SmtpSink::with_rule(|_, _| Reply::Delay(Duration::from_secs(3))).await;
    let session = smtp_session(&db, &sink, serde_json::json!({ "concurrency": 16, "pool_size": 16, "timeout_ms": 10000 })).await;
    crate::support::send_many(&db, session, "slow", 40).await;
    let t0 = Instant::now();
    let daemon = spawn(&db, &[("PGCOURIER_LEASE", "1s"), ("PGCOURIER_RESCUE_INTERVAL", "200ms")]);
    let done = settled(&db.client, "true", Duration::from_secs(45)).await;
    note(format!("provider slower than the lease: settled {done} after {:.1} s", t0.elapsed().as_secs_f64()));
    sink_quiet(&sink, Duration::from_millis(3500), Duration::from_secs(8)).await; // copies of abandoned sends land late
    daemon.stop().await;
    let tally =
        Tally::count("provider slower than the lease (3 s DATA, 1 s lease, 40 msgs)", &db.client, "true", Copies::Sink(sink.message_ids()))
            .await;
    assert!(done, "not every message reached a final status within 45 s — {}", tally.line());
    tally.assert_clean();
}

/// Issue 15 §6 / Deliver 1: the sink resets the connection after the whole DATA of every 10th
/// message (the first time it sees it): the message was received, the client cannot know it. Its
/// retry may go out, but flagged `possible_duplicate`: DUP counts only unflagged copies.
pub async fn sink_resets_after_data_for_one_in_ten() {
    const N: i32 = 200;
    let db = TestDb::new().await;
    let reset_once: Mutex<HashSet<String>> = Mutex::default();
    let sink = SmtpSink::with_rule(move |rcpt, _| {
        let i: u32 = rcpt[0].trim_start_matches('r').split('@').next().and_then(|n| n.parse().ok()).unwrap_or(1);
        if i.is_multiple_of(10) && reset_once.lock().unwrap().insert(rcpt[0].clone()) {
            Reply::ResetAfterData
        } else {
            Reply::Accept
        }
    })
    .await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    crate::support::send_many(&db, session, "r", N).await;
    let t0 = Instant::now();
    let daemon = spawn(&db, &[("PGCOURIER_LEASE", "5s"), ("PGCOURIER_RESCUE_INTERVAL", "200ms")]);
    let done = settled(&db.client, "true", Duration::from_secs(40)).await;
    note(format!("resets after DATA: settled {done} after {:.1} s, {} resets", t0.elapsed().as_secs_f64(), sink.resets()));
    sink_quiet(&sink, Duration::from_millis(500), Duration::from_secs(5)).await;
    daemon.stop().await;
    let tally = Tally::count("sink resets after DATA for 1 in 10 (200 msgs)", &db.client, "true", Copies::Sink(sink.message_ids())).await;
    assert!(done, "not every message reached a final status within 40 s — {}", tally.line());
    assert_eq!(sink.resets(), N as usize / 10, "every 10th message was reset once");
    tally.assert_clean();
}

/// Issue 15 §2: two daemons, a 3 s lease, an LLM answering in 1.5 s, 40 inbound messages: every
/// row decided exactly once (none left `inbound_processing`), one LLM decision call per row,
/// within 30 s. (Calls are counted at the mock when they arrive: a call cut off still costs.)
pub async fn llm_slower_than_the_lease_with_two_daemons() {
    const N: i64 = 40;
    let llm = SlowLlm::start(Duration::from_millis(1500)).await;
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    db.client
        .execute(
            "UPDATE et_tenants SET settings = jsonb_build_object('decider', 'llm', 'llm', jsonb_build_object('base_url', $1::text, 'model', 'slow'))",
            &[&llm.url()],
        )
        .await
        .unwrap();
    db.client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, body_text)
             SELECT 'acme', $1, 'inbound', 'wamid.ask-' || i, '+1555010' || lpad(i::text, 4, '0'), 'Question ask-' || i || ' please'
               FROM generate_series(1, $2::bigint) i",
            &[&wa, &N],
        )
        .await
        .unwrap();
    let t0 = Instant::now();
    let overrides = |id| [("PGCOURIER_LEASE", "3s"), ("PGCOURIER_RESCUE_INTERVAL", "200ms"), ("PGCOURIER_WORKER_ID", id)];
    let a = spawn(&db, &overrides("daemon-a"));
    let b = spawn(&db, &overrides("daemon-b"));
    let open = "SELECT count(*) = 0 FROM et_messages WHERE direction = 'inbound' AND delivery_status IN ('received', 'inbound_processing')";
    let done = outbox::wait(&db.client, open, Duration::from_secs(30)).await;
    let wall = t0.elapsed();
    a.stop().await;
    b.stop().await;

    let calls = llm.calls();
    let mut per_row: HashMap<String, usize> = HashMap::new();
    for c in calls.iter().filter(|c| c.schema == "decision") {
        *per_row.entry(c.token.clone().unwrap_or_default()).or_insert(0) += 1;
    }
    let decision_calls: usize = per_row.values().sum();
    let repeated = per_row.values().filter(|&&n| n > 1).count();
    let statuses: Vec<(String, i64)> = db
        .client
        .query("SELECT delivery_status, count(*) FROM et_messages WHERE direction = 'inbound' GROUP BY 1 ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let decided_twice = db
        .count(
            "SELECT count(*) FROM (SELECT message_id FROM et_message_events
                WHERE to_status IN ('inbound_ai_replied', 'inbound_human_takeover', 'inbound_follow_up', 'inbound_no_action')
                GROUP BY message_id HAVING count(*) > 1) x",
        )
        .await;
    let decided = db.count("SELECT count(*) FROM et_messages WHERE direction = 'inbound' AND delivery_status = 'inbound_no_action'").await;
    let rescued =
        db.count("SELECT count(*) FROM et_message_events WHERE from_status = 'inbound_processing' AND to_status = 'received'").await;
    note(format!(
        "llm slower than the lease, two daemons (3 s lease, 1.5 s LLM, 40 rows): settled {done} after {:.1} s; decided {decided} of {N}, \
         decided twice {decided_twice}, LLM decision calls {decision_calls} (rows asked more than once {repeated}), other LLM calls {}, \
         lease rescues {rescued}; statuses {statuses:?}",
        wall.as_secs_f64(),
        calls.len() - decision_calls,
    ));
    assert!(done, "rows still received / inbound_processing after 30 s: {statuses:?}, {decision_calls} LLM decision calls");
    assert_eq!(decided, N, "every row decided: {statuses:?}");
    assert_eq!(decided_twice, 0, "no row decided twice");
    assert_eq!((decision_calls, per_row.len(), repeated), (N as usize, N as usize, 0), "one LLM call per decision");
}
