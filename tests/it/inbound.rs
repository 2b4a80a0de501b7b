//! Inbound: claim, decide with rules, apply in one transaction; human takeover; auto-replies that
//! thread at the recipient; many daemons, each row decided once.

use crate::smtp_sink::SmtpSink;
use crate::support::TestDb;
use crate::support::{smtp_session, spawn, until};
use std::time::Duration;

const SECS: Duration = Duration::from_secs(20);

async fn inbound(db: &TestDb, session: i64, ext: &str, from: &str, text: &str) -> i64 {
    db.client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, body_text)
             VALUES ('acme', $1, 'inbound', $2, $3, $4) RETURNING id",
            &[&session, &ext, &from, &text],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_refund_request_goes_to_a_human_and_the_thread_stays_human() {
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    // an auto-reply rule that would answer anything, below the built-in takeover rules' meaning:
    // the tenant's own rules replace the defaults, so list the takeover first
    db.client
        .batch_execute(
            "INSERT INTO et_inbound_rules (tenant_id, position, pattern, action, label) VALUES ('acme', 1, '\\m(refund)\\M', 'human_takeover', 'refund');
             INSERT INTO et_inbound_rules (tenant_id, position, pattern, action, reply_template) VALUES ('acme', 2, '.', 'auto_reply', 'We got it');",
        )
        .await
        .unwrap();
    let daemon = spawn(&db, &[]);
    let first = inbound(&db, wa, "wamid.1", "+15551234567", "I want a refund").await;
    until(&db, &format!("SELECT delivery_status = 'inbound_human_takeover' FROM et_messages WHERE id = {first}"), SECS).await;
    let (handling, by): (String, String) = {
        let r = db.client.query_one("SELECT handling, handling_by FROM et_threads", &[]).await.unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(handling, "human");
    assert!(!by.is_empty());
    let decision: serde_json::Value =
        db.client.query_one("SELECT metadata->'decision' FROM et_messages WHERE id = $1", &[&first]).await.unwrap().get(0);
    assert_eq!(decision["label"], "refund");
    assert_eq!(decision["decided_by"], "rules");
    // a later message on the same thread would match the auto-reply rule, but a human has it
    let second = inbound(&db, wa, "wamid.2", "+15551234567", "hello?").await;
    until(&db, &format!("SELECT delivery_status = 'inbound_human_takeover' FROM et_messages WHERE id = {second}"), SECS).await;
    assert_eq!(db.count("SELECT count(*) FROM et_messages WHERE direction = 'outbound'").await, 0, "no reply");
    // handed back to the AI, the next message is answered
    db.client.execute("SELECT et_handoff(thread_id, 'ai', 'dana') FROM et_messages WHERE id = $1", &[&second]).await.unwrap();
    let third = inbound(&db, wa, "wamid.3", "+15551234567", "still there?").await;
    until(&db, &format!("SELECT delivery_status = 'inbound_ai_replied' FROM et_messages WHERE id = {third}"), SECS).await;
    until(&db, "SELECT count(*) = 1 FROM et_messages WHERE direction = 'outbound' AND delivery_status = 'sent'", SECS).await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_rules_auto_reply_reaches_the_smtp_sink_threaded_on_the_inbound_message() {
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    db.client
        .execute(
            "INSERT INTO et_inbound_rules (tenant_id, pattern, action, reply_template, label)
             VALUES ('acme', 'opening hours', 'auto_reply', 'Hello {{contact}}, we are open 9 to 17.', 'hours')",
            &[],
        )
        .await
        .unwrap();
    let daemon = spawn(&db, &[]);
    let id: i64 = db
        .client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, subject, body_text, \"references\")
             VALUES ('acme', $1, 'inbound', '<in1@example.com>', 'Ann <ann@example.com>', 'Opening hours?', 'What are your opening hours?',
                     ARRAY['<root@example.com>']) RETURNING id",
            &[&session],
        )
        .await
        .unwrap()
        .get(0);
    let got = sink.wait_for(1, SECS).await;
    let reply = &got[0];
    assert_eq!(reply.header("In-Reply-To").unwrap(), "<in1@example.com>");
    assert_eq!(reply.header("References").unwrap(), "<root@example.com> <in1@example.com>");
    assert_eq!(reply.header("Subject").unwrap(), "Re: Opening hours?");
    assert_eq!(reply.rcpt_to, ["ann@example.com"]);
    assert!(reply.data.contains("Hello ann@example.com, we are open 9 to 17."));
    until(&db, "SELECT count(*) = 1 FROM et_messages WHERE direction = 'outbound' AND delivery_status = 'sent'", SECS).await;
    let same: bool = db
        .client
        .query_one(
            "SELECT r.thread_id = i.thread_id AND r.in_reply_to = i.external_message_id AND (r.metadata->>'auto_reply_to')::bigint = i.id
               FROM et_messages r, et_messages i WHERE r.direction = 'outbound' AND i.id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(same, "the reply is in the inbound's thread and answers it");
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_messages WHERE id = {id} AND delivery_status = 'inbound_ai_replied'")).await, 1);
    let events: Vec<String> = db
        .client
        .query("SELECT to_status FROM et_message_events WHERE message_id = $1 ORDER BY id", &[&id])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(events, ["received", "inbound_processing", "inbound_ai_replied"]);
    daemon.stop().await;
}

#[tokio::test]
async fn a_thousand_inbound_rows_on_two_daemons_are_each_decided_once() {
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    db.client
        .execute("INSERT INTO et_inbound_rules (tenant_id, pattern, action, reply_template) VALUES ('acme', '.', 'auto_reply', 'ok')", &[])
        .await
        .unwrap();
    let a = spawn(&db, &[("PGCOURIER_WORKER_ID", "a"), ("PGCOURIER_INBOUND_BATCH", "50"), ("PGCOURIER_INSIGHTS_DEBOUNCE", "300ms")]);
    let b = spawn(&db, &[("PGCOURIER_WORKER_ID", "b"), ("PGCOURIER_INBOUND_BATCH", "50"), ("PGCOURIER_INSIGHTS_DEBOUNCE", "300ms")]);
    db.client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, body_text)
             SELECT 'acme', $1, 'inbound', 'wamid.' || i, '+1555000' || lpad((i % 200)::text, 4, '0'), 'message ' || i
               FROM generate_series(1, 1000) i",
            &[&wa],
        )
        .await
        .unwrap();
    until(
        &db,
        "SELECT count(*) = 1000 FROM et_messages WHERE direction = 'inbound' AND delivery_status = 'inbound_ai_replied'",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(db.count("SELECT count(*) FROM et_threads").await, 200);
    assert_eq!(db.count("SELECT count(*) FROM et_messages WHERE direction = 'outbound'").await, 1000, "one reply per inbound row");
    assert_eq!(
        db.count("SELECT count(DISTINCT (metadata->>'auto_reply_to')) FROM et_messages WHERE direction = 'outbound'").await,
        1000,
        "no inbound row answered twice"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM et_message_events e JOIN et_messages m ON m.id = e.message_id WHERE m.direction = 'inbound' AND e.to_status = 'inbound_processing'").await,
        1000,
        "every row claimed exactly once"
    );
    assert_eq!(
        db.count("SELECT count(DISTINCT actor) FROM et_message_events WHERE to_status = 'inbound_processing'").await,
        2,
        "both daemons worked"
    );
    // every thread gets one insight once it settles, recomputed far fewer times than messages arrived
    until(&db, "SELECT count(*) = 200 FROM et_thread_insights", Duration::from_secs(30)).await;
    until(&db, "SELECT count(*) = 0 FROM et_threads WHERE insights_due_at IS NOT NULL", Duration::from_secs(30)).await;
    let writes = {
        // the statistics are flushed about once a second: read until two reads 1.2 s apart agree
        let q = "SELECT (n_tup_ins + n_tup_upd)::bigint FROM pg_stat_user_tables WHERE relname = 'et_thread_insights'";
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut last = db.count(q).await;
        loop {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            let now = db.count(q).await;
            if (now == last && now >= 200) || std::time::Instant::now() > deadline {
                break now;
            }
            last = now;
        }
    };
    eprintln!("insight writes for 2,000 messages (1,000 in, 1,000 replies) on 200 threads: {writes}");
    assert!((200..=600).contains(&writes), "{writes} insight writes for 200 threads");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn pipelined_batches_never_answer_a_thread_taken_over_in_an_earlier_batch() {
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    db.client
        .batch_execute(
            "INSERT INTO et_inbound_rules (tenant_id, position, pattern, action, label) VALUES ('acme', 1, '\\mhuman\\M', 'human_takeover', 'human');
             INSERT INTO et_inbound_rules (tenant_id, position, pattern, action, reply_template) VALUES ('acme', 2, 'hours', 'auto_reply', 'We open at 9');",
        )
        .await
        .unwrap();
    // 300 threads of 3 messages (a takeover, then two that would be answered), in groups of 20
    // threads: batch n holds a group's takeovers and batches n+1, n+2 the same threads' other
    // messages, which are claimed and loaded while the takeovers are being applied
    let daemon = spawn(&db, &[("PGCOURIER_INBOUND_BATCH", "20")]);
    db.client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, body_text)
             SELECT 'acme', $1, 'inbound', 'wamid.' || t || '.' || k, '+1555100' || lpad(t::text, 4, '0'),
                    CASE WHEN k = 1 THEN 'a human please' ELSE 'opening hours?' END
               FROM generate_series(0, 299) t, generate_series(1, 3) k ORDER BY t / 20, k, t",
            &[&wa],
        )
        .await
        .unwrap();
    until(
        &db,
        "SELECT count(*) = 0 FROM et_messages WHERE direction = 'inbound' AND delivery_status IN ('received', 'inbound_processing')",
        Duration::from_secs(60),
    )
    .await;
    // a reply only where the thread was still the AI's: its message came before the takeover
    assert_eq!(
        db.count(
            "SELECT count(*) FROM et_messages r JOIN et_messages i ON i.id = (r.metadata->>'auto_reply_to')::bigint
              WHERE r.direction = 'outbound' AND EXISTS (SELECT 1 FROM et_messages h WHERE h.thread_id = i.thread_id
                    AND h.delivery_status = 'inbound_human_takeover' AND h.id < i.id)"
        )
        .await,
        0,
        "no thread answered after its takeover"
    );
    assert_eq!(db.count("SELECT count(*) FROM et_threads WHERE handling = 'human'").await, 300);
    assert_eq!(db.count("SELECT count(*) FROM et_messages WHERE direction = 'outbound'").await, 0, "no reply at all");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM et_messages WHERE direction = 'inbound'
                AND metadata->'decision'->>'kind' IS DISTINCT FROM substr(delivery_status, 9)"
        )
        .await,
        0,
        "metadata.decision.kind matches the status"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM et_message_events e JOIN et_messages m ON m.id = e.message_id WHERE m.direction = 'inbound' AND e.to_status = 'inbound_processing'").await,
        900,
        "every row claimed exactly once"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn an_abandoned_claim_is_rescued_and_decided() {
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    let id = inbound(&db, wa, "wamid.9", "+15551234567", "hi").await;
    // a daemon claimed it and died: processing, last touched long ago
    db.client
        .execute(
            "UPDATE et_messages SET delivery_status = 'inbound_processing', updated_at = now() - interval '10 minutes' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let daemon = spawn(&db, &[("PGCOURIER_LEASE", "30s")]);
    until(&db, &format!("SELECT delivery_status = 'inbound_no_action' FROM et_messages WHERE id = {id}"), SECS).await;
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM et_message_events WHERE message_id = {id} AND detail->>'reason' = 'lease expired'")).await,
        1
    );
    daemon.stop().await;
}

/// An OpenAI-compatible chat completion whose content is `content`.
fn completion(content: &str) -> crate::mock_http::Answer {
    crate::mock_http::Answer::json(
        200,
        serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "tiny",
            "choices": [{ "index": 0, "finish_reason": "stop", "message": { "role": "assistant", "content": content } }]
        }),
    )
}

#[tokio::test]
async fn llm_failures_go_to_inbound_error_with_the_reason_and_are_retried_until_applied() {
    use crate::mock_http::{Answer, MockHttp};
    let llm = MockHttp::start(|_, n| match n {
        0 => Answer::json(500, serde_json::json!({ "error": { "message": "model overloaded" } })),
        1 => completion("Sure! I think you should reply politely."),
        _ => completion(r#"{"decision":"auto_reply","reply":"We deliver on Sundays.","reason":"delivery question","label":"delivery","summary":null,"follow_up_at":null}"#),
    })
    .await;
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    db.client
        .execute(
            "UPDATE et_tenants SET settings = jsonb_build_object('decider', 'llm', 'llm', jsonb_build_object('base_url', $1::text, 'model', 'tiny'))",
            &[&llm.url()],
        )
        .await
        .unwrap();
    let daemon = spawn(&db, &[("PGCOURIER_INBOUND_RETRY_BASE", "700ms"), ("PGCOURIER_INBOUND_MAX_ATTEMPTS", "3")]);
    let id = inbound(&db, wa, "wamid.77", "+15551234567", "Do you deliver on Sundays?").await;
    // attempt 1: HTTP 500 → inbound_error naming it, nothing else written
    until(
        &db,
        &format!("SELECT delivery_status = 'inbound_error' AND last_error LIKE '%HTTP 500%' FROM et_messages WHERE id = {id}"),
        SECS,
    )
    .await;
    assert_eq!(db.count("SELECT count(*) FROM et_messages WHERE direction = 'outbound'").await, 0, "no reply half-written");
    assert_eq!(db.count("SELECT count(*) FROM et_threads WHERE handling = 'ai'").await, 1);
    // attempt 2: malformed JSON → inbound_error naming it
    until(
        &db,
        &format!("SELECT delivery_status = 'inbound_error' AND last_error LIKE '%malformed%' FROM et_messages WHERE id = {id}"),
        SECS,
    )
    .await;
    assert_eq!(db.count("SELECT count(*) FROM et_messages WHERE direction = 'outbound'").await, 0);
    // attempt 3: a valid answer is applied, exactly once
    until(&db, &format!("SELECT delivery_status = 'inbound_ai_replied' AND last_error IS NULL FROM et_messages WHERE id = {id}"), SECS)
        .await;
    let reply = db.client.query_one("SELECT body_text, in_reply_to FROM et_messages WHERE direction = 'outbound'", &[]).await.unwrap();
    assert_eq!(reply.get::<_, String>(0), "We deliver on Sundays.");
    assert_eq!(reply.get::<_, String>(1), "wamid.77");
    let decision: serde_json::Value =
        db.client.query_one("SELECT metadata->'decision' FROM et_messages WHERE id = $1", &[&id]).await.unwrap().get(0);
    assert_eq!(
        (decision["decided_by"].as_str(), decision["model"].as_str(), decision["label"].as_str()),
        (Some("llm"), Some("tiny"), Some("delivery"))
    );
    assert_eq!(db.count(&format!("SELECT attempts::bigint FROM et_messages WHERE id = {id}")).await, 3);
    assert_eq!(llm.requests().len(), 3);
    daemon.stop().await;
}

#[tokio::test]
async fn an_llm_that_never_answers_times_out_and_stops_after_max_attempts() {
    // a listener that accepts and never answers
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    db.client
        .execute(
            "UPDATE et_tenants SET settings = jsonb_build_object('decider', 'llm', 'llm', jsonb_build_object('base_url', $1::text, 'model', 'tiny', 'timeout_ms', 300))",
            &[&format!("http://{addr}")],
        )
        .await
        .unwrap();
    let daemon = spawn(&db, &[("PGCOURIER_INBOUND_RETRY_BASE", "200ms"), ("PGCOURIER_INBOUND_MAX_ATTEMPTS", "2")]);
    let id = inbound(&db, wa, "wamid.88", "+15551234567", "hello?").await;
    until(
        &db,
        &format!("SELECT delivery_status = 'inbound_error' AND attempts = 2 AND last_error LIKE '%timed out after 300 ms%' FROM et_messages WHERE id = {id}"),
        SECS,
    )
    .await;
    // it stays there for an operator (inbound_error → received by SQL is the operator's retry)
    let events_before = db.count(&format!("SELECT count(*) FROM et_message_events WHERE message_id = {id}")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // several retry periods: nothing may happen
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_message_events WHERE message_id = {id}")).await, events_before);
    assert_eq!(db.count("SELECT count(*) FROM et_messages WHERE direction = 'outbound'").await, 0);
    daemon.stop().await;
}
