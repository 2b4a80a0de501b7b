//! The insights worker through the real daemon: bursts debounced into one recompute, many threads
//! in batches, follow-ups that fire once (with a draft awaiting approval) or are answered in time,
//! and an LLM summarizer that fails without writing anything.

use crate::mock_http::{Answer, MockHttp};
use crate::support::TestDb;
use crate::support::{spawn, until};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::json;
use std::time::Duration;
use tokio_postgres::{AsyncMessage, NoTls};

const SECS: Duration = Duration::from_secs(20);
const DEBOUNCE: (&str, &str) = ("PGCOURIER_INSIGHTS_DEBOUNCE", "300ms");
const CONTACT: &str = "+15551234567";

async fn inbound(db: &TestDb, tenant: &str, session: i64, ext: &str, from: &str, text: &str) -> i64 {
    db.client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, body_text)
             VALUES ($1, $2, 'inbound', $3, $4, $5) RETURNING id",
            &[&tenant, &session, &ext, &from, &text],
        )
        .await
        .unwrap()
        .get(0)
}

async fn thread_of(db: &TestDb, message: i64) -> i64 {
    db.client.query_one("SELECT thread_id FROM et_messages WHERE id = $1", &[&message]).await.unwrap().get(0)
}

/// A connection LISTENing on `channel`; notification payloads arrive on the receiver.
async fn listen(db: &TestDb, channel: &str) -> (tokio_postgres::Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (client, mut conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    client.batch_execute(&format!("LISTEN {channel}")).await.unwrap();
    (client, rx)
}

/// The lease the tests claim threads under: (worker, length).
const LEASE: (&str, Duration) = ("w1", Duration::from_secs(60));

#[tokio::test]
async fn a_burst_of_ten_inbound_messages_is_summarized_once_after_it_goes_quiet() {
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    let daemon = spawn(&db, &[DEBOUNCE]);
    let mut ids = Vec::new();
    for i in 1..=9 {
        ids.push(inbound(&db, "acme", wa, &format!("wamid.{i}"), CONTACT, &format!("message number {i}")).await);
    }
    ids.push(inbound(&db, "acme", wa, "wamid.10", CONTACT, "And how much is the yearly plan?").await);
    let newest = *ids.last().unwrap();
    let thread = thread_of(&db, newest).await;

    until(
        &db,
        &format!(
            "SELECT coalesce((SELECT th.insights_due_at IS NULL AND i.source_message_id = {newest}
                                FROM et_threads th JOIN et_thread_insights i ON i.tenant_id = th.tenant_id AND i.thread_id = th.id
                               WHERE th.id = {thread}), false)"
        ),
        SECS,
    )
    .await;
    assert_eq!(db.count("SELECT count(*) FROM et_thread_insights").await, 1);
    let read = || async {
        let r = db
            .client
            .query_one(
                "SELECT i.updated_at, i.ctid::text, i.summary, i.label, i.next_step, i.decided_by, i.follow_up_at,
                        (SELECT max(created_at) FROM et_messages), th.insights_due_at
                   FROM et_thread_insights i JOIN et_threads th ON th.tenant_id = i.tenant_id AND th.id = i.thread_id",
                &[],
            )
            .await
            .unwrap();
        r
    };
    let first = read().await;
    let written: DateTime<Utc> = first.get(0);
    let last_message: DateTime<Utc> = first.get(7);
    assert!(
        written >= last_message + chrono::Duration::milliseconds(300),
        "written {written} only after the burst (last message {last_message}) was quiet for the debounce"
    );
    // the first tuple of a fresh table, never updated: one write for the whole burst
    assert_eq!(first.get::<_, String>(1), "(0,1)", "the insight row was written exactly once");
    let summary: String = first.get(2);
    assert!(
        summary.starts_with(&format!("10 messages (10 in, 0 out); last from {CONTACT}: \"And how much is the yearly plan?\"")),
        "{summary}"
    );
    let decision_label: Option<String> = db
        .client
        .query_one(
            "SELECT (SELECT metadata->'decision'->>'label' FROM et_messages
                      WHERE metadata->'decision'->>'label' IS NOT NULL ORDER BY id DESC LIMIT 1)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(first.get::<_, Option<String>>(3), Some(decision_label.unwrap_or_else(|| "pricing".into())));
    assert!(first.get::<_, Option<String>>(4).is_some(), "a next step");
    assert_eq!(first.get::<_, String>(5), "rules");
    assert_eq!(first.get::<_, Option<DateTime<Utc>>>(6), None);

    // more than 3 × the debounce later nothing was recomputed
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = read().await;
    assert_eq!(again.get::<_, DateTime<Utc>>(0), written, "not recomputed");
    assert_eq!(again.get::<_, String>(1), "(0,1)");
    assert_eq!(again.get::<_, Option<DateTime<Utc>>>(8), None, "not due again");
    daemon.stop().await;
}

#[tokio::test]
async fn two_hundred_threads_with_five_messages_each_get_two_hundred_insights() {
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    let daemon = spawn(&db, &[DEBOUNCE]);
    for round in 1..=5 {
        db.client
            .execute(
                "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, body_text)
                 SELECT 'acme', $1, 'inbound', 'wamid.' || i || '.' || $2::int, '+1555' || lpad(i::text, 7, '0'),
                        'round ' || $2::int || ' from contact ' || i
                   FROM generate_series(1, 200) i",
                &[&wa, &round],
            )
            .await
            .unwrap();
    }
    assert_eq!(db.count("SELECT count(*) FROM et_threads").await, 200);
    until(
        &db,
        "SELECT (SELECT count(*) FROM et_thread_insights) = 200 AND NOT EXISTS (SELECT 1 FROM et_threads WHERE insights_due_at IS NOT NULL)",
        Duration::from_secs(60),
    )
    .await;
    let wrong = db
        .count(
            "SELECT count(*) FROM et_thread_insights i
              WHERE i.source_message_id IS DISTINCT FROM (SELECT max(m.id) FROM et_messages m WHERE m.tenant_id = i.tenant_id AND m.thread_id = i.thread_id)
                 OR i.summary NOT LIKE '5 messages (5 in, 0 out); last from +1555% \"round 5 from contact %\"'
                 OR i.decided_by <> 'rules'",
        )
        .await;
    assert_eq!(wrong, 0, "every insight is from its thread's newest message");
    daemon.stop().await;
}

#[tokio::test]
async fn a_due_follow_up_fires_once_with_a_draft_awaiting_approval() {
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    db.client
        .batch_execute(
            r#"UPDATE et_tenants SET settings = settings || '{"follow_up_draft": "Just checking in: any news?"}' WHERE id = 'acme'"#,
        )
        .await
        .unwrap();
    let (_listener, mut notes) = listen(&db, "et_followups").await;
    let daemon = spawn(&db, &[DEBOUNCE, ("PGCOURIER_WORKER_ID", "insights-test")]);
    let msg = inbound(&db, "acme", wa, "wamid.1", CONTACT, "Call me back next week please").await;
    let thread = thread_of(&db, msg).await;
    // what the inbound worker writes for a follow-up decision
    db.client
        .execute(
            "UPDATE et_threads SET follow_up_at = now() + interval '700 milliseconds', follow_up_note = 'call back',
                                   follow_up_set_at = now(), follow_up_message_id = $1
              WHERE id = $2",
            &[&msg, &thread],
        )
        .await
        .unwrap();
    let due: DateTime<Utc> = db.client.query_one("SELECT follow_up_at FROM et_threads WHERE id = $1", &[&thread]).await.unwrap().get(0);
    until(&db, "SELECT count(*) = 1 FROM et_message_events WHERE detail->>'event' = 'followup.due'", SECS).await;
    let ev = db
        .client
        .query_one(
            "SELECT e.message_id, e.from_status, e.to_status, e.actor, e.detail, m.delivery_status
               FROM et_message_events e JOIN et_messages m ON m.id = e.message_id
              WHERE e.detail->>'event' = 'followup.due'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(ev.get::<_, i64>(0), msg);
    let from: String = ev.get(1);
    assert_eq!(from, ev.get::<_, String>(2), "the event changes no status");
    assert!(from.starts_with("received") || from.starts_with("inbound_"), "{from}");
    assert_eq!(ev.get::<_, String>(3), "insights-test");
    let detail: serde_json::Value = ev.get(4);
    assert_eq!(detail["thread_id"], json!(thread));
    assert_eq!(detail["note"], "call back");
    let due_in_event: DateTime<Utc> = detail["due_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(due_in_event, due);
    let fired_at: DateTime<Utc> =
        db.client.query_one("SELECT created_at FROM et_message_events WHERE detail->>'event' = 'followup.due'", &[]).await.unwrap().get(0);
    assert!(fired_at >= due, "fired at {fired_at}, due at {due}");

    let payload = tokio::time::timeout(SECS, notes.recv()).await.expect("an et_followups notification").unwrap();
    assert_eq!(payload, "acme");

    let draft = db
        .client
        .query_one(
            "SELECT id, thread_id, recipients, body_text, delivery_status, metadata->>'follow_up_for'
               FROM et_messages WHERE direction = 'outbound'",
            &[],
        )
        .await
        .unwrap();
    let draft_id: i64 = draft.get(0);
    assert_eq!(draft.get::<_, i64>(1), thread);
    assert_eq!(draft.get::<_, Vec<String>>(2), [CONTACT]);
    assert_eq!(draft.get::<_, String>(3), "Just checking in: any news?");
    assert_eq!(draft.get::<_, String>(4), "pending_approval");
    assert_eq!(draft.get::<_, String>(5), msg.to_string());
    assert_eq!(detail["draft_message_id"], json!(draft_id));
    let cleared = db
        .count(&format!(
            "SELECT count(*) FROM et_threads WHERE id = {thread} AND follow_up_at IS NULL AND follow_up_note IS NULL
                AND follow_up_set_at IS NULL AND follow_up_message_id IS NULL"
        ))
        .await;
    assert_eq!(cleared, 1, "the follow-up is cleared");

    // the worker keeps cycling (the insight is recomputed without the follow-up) and never fires again
    until(
        &db,
        &format!(
            "SELECT coalesce((SELECT i.follow_up_at IS NULL AND i.next_step = 'approve the pending reply' AND i.source_message_id = {draft_id}
                                FROM et_thread_insights i WHERE i.thread_id = {thread}), false)"
        ),
        SECS,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(db.count("SELECT count(*) FROM et_message_events WHERE detail->>'event' = 'followup.due'").await, 1, "fired once");
    assert_eq!(db.count("SELECT count(*) FROM et_messages WHERE direction = 'outbound'").await, 1, "one draft");
    assert!(tokio::time::timeout(Duration::from_millis(100), notes.recv()).await.is_err(), "notified once");

    // the draft waits for an operator; approved, it goes out
    db.client.execute("SELECT et_approve($1, 'dana')", &[&draft_id]).await.unwrap();
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {draft_id}"), SECS).await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_follow_up_answered_before_it_is_due_does_not_fire() {
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    db.client
        .batch_execute(r#"UPDATE et_tenants SET settings = settings || '{"follow_up_draft": "Any news?"}' WHERE id = 'acme'"#)
        .await
        .unwrap();
    let daemon = spawn(&db, &[DEBOUNCE]);
    let msg = inbound(&db, "acme", wa, "wamid.1", CONTACT, "Call me back tomorrow").await;
    let thread = thread_of(&db, msg).await;
    db.client
        .execute(
            "UPDATE et_threads SET follow_up_at = now() + interval '1500 milliseconds', follow_up_note = 'call back',
                                   follow_up_set_at = now(), follow_up_message_id = $1
              WHERE id = $2",
            &[&msg, &thread],
        )
        .await
        .unwrap();
    // the contact writes first
    inbound(&db, "acme", wa, "wamid.2", CONTACT, "Actually, here is the answer").await;
    let still_pending = db.count(&format!("SELECT count(*) FROM et_threads WHERE id = {thread} AND follow_up_at > now()")).await;
    assert_eq!(still_pending, 1, "the answer arrived before the follow-up was due");
    until(&db, &format!("SELECT follow_up_at IS NULL AND follow_up_message_id IS NULL FROM et_threads WHERE id = {thread}"), SECS).await;
    assert_eq!(db.count("SELECT count(*) FROM et_message_events WHERE detail->>'event' = 'followup.due'").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM et_messages WHERE direction = 'outbound'").await, 0, "no draft");
    daemon.stop().await;
}

#[tokio::test]
async fn an_llm_tenant_whose_endpoint_fails_keeps_its_thread_due_and_writes_nothing() {
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    let mock = MockHttp::start(|_, _| Answer::json(500, json!({ "error": { "message": "model overloaded" } }))).await;
    db.client
        .execute(
            "UPDATE et_tenants SET settings = settings || jsonb_build_object('insights', 'llm',
                 'llm', jsonb_build_object('base_url', $1::text, 'model', 'tiny', 'timeout_ms', 2000))
              WHERE id = 'acme'",
            &[&mock.url()],
        )
        .await
        .unwrap();
    // a rules tenant next to it: the worker keeps working
    db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('beta', 'Beta')").await.unwrap();
    let beta = db.session("beta", "whatsapp", "log", "+15550000001").await;
    let daemon = spawn(&db, &[DEBOUNCE]);
    let msg = inbound(&db, "acme", wa, "wamid.1", CONTACT, "What does the pro plan cost?").await;
    let thread = thread_of(&db, msg).await;
    let other = inbound(&db, "beta", beta, "wamid.b1", CONTACT, "hello").await;
    let other_thread = thread_of(&db, other).await;

    // asked, failed, and asked again after the debounce: the thread stayed due
    let requests = mock.wait_for(2, SECS).await;
    assert!(requests.iter().all(|r| r.method == "POST" && r.path == "/v1/chat/completions"), "{requests:?}");
    let body = requests[0].json();
    assert_eq!(body["model"], "tiny");
    assert!(body["messages"].to_string().contains("What does the pro plan cost?"));
    until(&db, &format!("SELECT EXISTS (SELECT 1 FROM et_thread_insights WHERE thread_id = {other_thread})"), SECS).await;
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_thread_insights WHERE thread_id = {thread}")).await, 0, "nothing written");
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_threads WHERE id = {thread} AND insights_due_at IS NOT NULL")).await, 1);
    daemon.stop().await;
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_thread_insights WHERE thread_id = {thread}")).await, 0);
}

#[tokio::test]
async fn an_llm_tenant_gets_its_insight_once_the_endpoint_recovers() {
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    let answer = json!({ "summary": "The contact asks what the pro plan costs.", "label": "pricing",
                         "next_step": "Send the price list.", "follow_up_at": null })
    .to_string();
    let mock = MockHttp::start(move |_, n| {
        if n < 2 {
            Answer::json(503, json!({ "error": { "message": "loading model" } }))
        } else {
            Answer::json(
                200,
                json!({ "id": "chatcmpl-1", "object": "chat.completion", "model": "tiny",
                        "choices": [{ "index": 0, "message": { "role": "assistant", "content": answer }, "finish_reason": "stop" }] }),
            )
        }
    })
    .await;
    db.client
        .execute(
            "UPDATE et_tenants SET settings = settings || jsonb_build_object('insights', 'llm',
                 'llm', jsonb_build_object('base_url', $1::text, 'model', 'tiny', 'timeout_ms', 2000))
              WHERE id = 'acme'",
            &[&mock.url()],
        )
        .await
        .unwrap();
    let daemon = spawn(&db, &[DEBOUNCE]);
    let msg = inbound(&db, "acme", wa, "wamid.1", CONTACT, "What does the pro plan cost?").await;
    let thread = thread_of(&db, msg).await;
    until(
        &db,
        &format!(
            "SELECT EXISTS (SELECT 1 FROM et_thread_insights i JOIN et_threads th ON th.id = i.thread_id
                                  WHERE i.thread_id = {thread} AND th.insights_due_at IS NULL)"
        ),
        SECS,
    )
    .await;
    let r = db
        .client
        .query_one("SELECT summary, label, next_step, decided_by, model, source_message_id FROM et_thread_insights", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "The contact asks what the pro plan costs.");
    assert_eq!(r.get::<_, String>(1), "pricing");
    assert_eq!(r.get::<_, String>(2), "Send the price list.");
    assert_eq!(r.get::<_, String>(3), "llm");
    assert_eq!(r.get::<_, String>(4), "tiny");
    assert_eq!(r.get::<_, i64>(5), msg);
    assert_eq!(mock.requests().len(), 3, "two failures, then one success");
    daemon.stop().await;
}

/// `count` inbound rows on `threads` threads (one per contact) in ONE statement: one `created_at`
/// and one `insights_due_at` for all of them, as a bridge's bulk load gives.
async fn bulk_inbound(db: &TestDb, session: i64, count: i64, threads: i64) {
    db.client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, body_text)
             SELECT 'acme', $1, 'inbound', 'bulk.' || i, '+1666' || lpad((i % $3::bigint)::text, 7, '0'), 'message ' || i
               FROM generate_series(0, $2::bigint - 1) i",
            &[&session, &count, &threads],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn the_claims_of_a_pass_walk_on_from_the_last_thread_taken_even_when_all_share_one_due_marker() {
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    bulk_inbound(&db, wa, 250, 250).await;
    assert_eq!(db.count("SELECT count(DISTINCT insights_due_at) FROM et_threads").await, 1);
    let pool = pgcourier::db::pool(db.url.parse().unwrap(), 1).unwrap();
    let pooled = pool.get().await.unwrap();
    // debounce 0: every due thread is claimable (starved at once)
    let mut cursor = None;
    let mut taken = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let claimed = pgcourier::db::insights::claim_due(&pooled, Duration::ZERO, &[], cursor, 100, LEASE).await.unwrap();
        sizes.push(claimed.len());
        if claimed.is_empty() {
            break;
        }
        cursor = pgcourier::db::insights::cursor_after(cursor, &claimed);
        taken.extend(claimed.iter().map(|t| t.thread_id));
    }
    assert_eq!(sizes, [100, 100, 50, 0], "each claim of the pass starts after the previous one");
    let mut distinct = taken.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 250, "every due thread once: {taken:?}");
    // the threads are still due (nothing was written) but leased: another daemon skips them
    let other = pgcourier::db::insights::claim_due(&pooled, Duration::ZERO, &[], None, 100, ("w2", Duration::from_secs(60))).await.unwrap();
    assert!(other.is_empty(), "leased threads are skipped");
    let held: Vec<(String, i64)> = taken.iter().map(|id| ("acme".to_owned(), *id)).collect();
    assert_eq!(
        pgcourier::db::insights::renew(&pooled, "w2", &held, Duration::from_secs(60)).await.unwrap().len(),
        0,
        "nor can it renew them"
    );
    assert_eq!(pgcourier::db::insights::renew(&pooled, LEASE.0, &held, Duration::from_secs(60)).await.unwrap().len(), 250);
    // once given back, a new pass starts from the beginning
    assert_eq!(pgcourier::db::insights::release(&pooled, LEASE.0, &held).await.unwrap(), 250);
    let again = pgcourier::db::insights::claim_due(&pooled, Duration::ZERO, &[], None, 100, ("w2", Duration::from_secs(60))).await.unwrap();
    assert_eq!(again.len(), 100);
}

#[tokio::test]
async fn a_quiet_thread_waits_for_its_newest_inbound_decision_probed_through_the_undecided_index() {
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    bulk_inbound(&db, wa, 4_000, 200).await;
    // quiet for a minute, due for a minute: past the debounce, not yet starved (10 × 60 s)
    db.client
        .batch_execute("UPDATE et_threads SET updated_at = now() - interval '1 minute', insights_due_at = now() - interval '1 minute'")
        .await
        .unwrap();
    let debounce = Duration::from_secs(60);
    let q = "EXPLAIN (FORMAT JSON) ".to_owned() + pgcourier::db::insights::CLAIM;
    let (quiet, starved, exclude, limit, after) = (60.0f64, 600.0f64, Vec::<i64>::new(), 100i64, None::<DateTime<Utc>>);
    let plan: serde_json::Value =
        db.client.query_one(&q, &[&quiet, &starved, &exclude, &limit, &after, &None::<i64>, &LEASE.0, &60.0f64]).await.unwrap().get(0);
    let plan = plan.to_string();
    // never analysed: without an index made for the probe the planner took the dedupe index on
    // tenant_id alone and read the tenant's whole inbound history per due thread
    assert!(plan.contains("et_messages_inbound_undecided"), "{plan}");
    assert!(!plan.contains("et_messages_inbound_dedupe"), "{plan}");

    let pool = pgcourier::db::pool(db.url.parse().unwrap(), 1).unwrap();
    let pooled = pool.get().await.unwrap();
    let claim = || pgcourier::db::insights::claim_due(&pooled, debounce, &[], None, 1_000, LEASE);
    assert!(claim().await.unwrap().is_empty(), "every thread's newest inbound message is undecided");
    // thread of contact 7: its older messages decided only: still waiting
    let contact = "+16660000007";
    let client = &db.client;
    let set = |from: &'static str, to: &'static str| async move {
        let sql = format!("UPDATE et_messages SET delivery_status = '{to}' WHERE sender = $1 AND delivery_status = '{from}'");
        client.execute(&sql, &[&contact]).await.unwrap()
    };
    db.client
        .execute(
            "UPDATE et_messages SET delivery_status = 'inbound_processing'
              WHERE sender = $1 AND id < (SELECT max(id) FROM et_messages WHERE sender = $1)",
            &[&contact],
        )
        .await
        .unwrap();
    set("inbound_processing", "inbound_no_action").await;
    // one bulk insert: the whole thread shares created_at = last_inbound_at
    assert!(claim().await.unwrap().is_empty(), "the newest of the thread's messages is still received");
    set("received", "inbound_processing").await;
    assert!(claim().await.unwrap().is_empty(), "in processing is not decided either");
    set("inbound_processing", "inbound_ai_replied").await;
    let claimed = claim().await.unwrap();
    assert_eq!(claimed.len(), 1, "only the thread whose messages are all decided");
    assert_eq!(claimed[0].contact, contact);
}
