//! The lifecycle is one list, enforced twice: the Rust `TRANSITIONS` and the SQL table agree,
//! and every transition the SQL table allows is accepted by the trigger.

use crate::support::TestDb;
use pgcourier::domain::lifecycle::{Status, TRANSITIONS};
use std::collections::BTreeSet;

#[tokio::test]
async fn rust_transitions_equal_the_sql_table() {
    let db = TestDb::new().await;
    let sql: BTreeSet<(String, String, String, String)> = db
        .client
        .query("SELECT direction, from_status, to_status, description FROM et_status_transitions", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let rust: BTreeSet<(String, String, String, String)> = TRANSITIONS
        .iter()
        .map(|t| (t.direction.as_str().to_owned(), t.from.as_str().to_owned(), t.to.as_str().to_owned(), t.description.to_owned()))
        .collect();
    assert_eq!(rust.len(), TRANSITIONS.len(), "no duplicates in the Rust list");
    assert_eq!(sql, rust);
}

#[tokio::test]
async fn rust_statuses_equal_the_sql_check_constraint() {
    let db = TestDb::new().await;
    // et_messages_delivery_status casts to the domain et_delivery_status, which holds the list (sql/V1__baseline.sql)
    let def: String = db
        .client
        .query_one("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'et_delivery_status_values'", &[])
        .await
        .unwrap()
        .get(0);
    let in_sql: BTreeSet<&str> = def.split('\'').skip(1).step_by(2).collect();
    let in_rust: BTreeSet<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(in_sql, in_rust);
}

#[tokio::test]
async fn an_outbound_message_walks_its_lifecycle_in_the_audit_trail() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    db.client
        .batch_execute(&format!(
            "UPDATE et_channel_sessions SET requires_approval = true WHERE id = {email};
         INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
         VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], 'Hi', 'Hello')"
        ))
        .await
        .unwrap();
    let id: i64 = db.client.query_one("SELECT id FROM et_messages", &[]).await.unwrap().get(0);
    assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue").await, 0, "not queued before approval");
    db.client.execute("SELECT et_approve($1, 'alice')", &[&id]).await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue WHERE state = 'ready'").await, 1);
    // a daemon's moves, by hand
    db.client
        .batch_execute(&format!(
            "UPDATE et_messages SET delivery_status = 'sending' WHERE id = {id};
         UPDATE et_messages SET delivery_status = 'failed', last_error = '550 5.1.1 no such user' WHERE id = {id};
         UPDATE et_outbound_queue SET state = 'dead', last_error = '550 5.1.1 no such user' WHERE message_id = {id};"
        ))
        .await
        .unwrap();
    assert_eq!(db.count("SELECT count(*) FROM et_dead_letters").await, 1);
    db.client.execute("SELECT et_retry($1, 'bob')", &[&id]).await.unwrap();
    let q = db.client.query_one("SELECT state, attempts FROM et_outbound_queue", &[]).await.unwrap();
    assert_eq!((q.get::<_, String>(0).as_str(), q.get::<_, i32>(1)), ("ready", 0), "dead row revived");
    db.client.execute("SELECT et_cancel($1, 'carol')", &[&id]).await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue").await, 0, "cancelled leaves the queue");

    let events: Vec<(Option<String>, String, String)> = db
        .client
        .query("SELECT from_status, to_status, actor FROM et_message_events WHERE message_id = $1 ORDER BY id", &[&id])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let walked: Vec<(Option<&str>, &str)> = events.iter().map(|(f, t, _)| (f.as_deref(), t.as_str())).collect();
    assert_eq!(
        walked,
        vec![
            (None, "pending_approval"),
            (Some("pending_approval"), "queued"),
            (Some("queued"), "sending"),
            (Some("sending"), "failed"),
            (Some("failed"), "queued"),
            (Some("queued"), "cancelled"),
        ]
    );
    assert_eq!(events[1].2, "alice");
    assert_eq!(events[4].2, "bob");
    assert_eq!(events[5].2, "carol");
    let err: serde_json::Value = db
        .client
        .query_one("SELECT detail FROM et_message_events WHERE message_id = $1 AND to_status = 'failed'", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(err["error"], "550 5.1.1 no such user");
    // the actor setting does not leak into the rest of the session
    db.client.batch_execute(&format!("INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', {email}, 'outbound', ARRAY['z@example.com'], 'x')")).await.unwrap();
    let actor: String = db.client.query_one("SELECT actor FROM et_message_events ORDER BY id DESC LIMIT 1", &[]).await.unwrap().get(0);
    assert_eq!(actor, "postgres");
}

#[tokio::test]
async fn reject_keeps_the_reason_and_never_queues() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    db.client
        .batch_execute(&format!(
            "UPDATE et_tenants SET settings = '{{\"requires_approval\": true}}';
         INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
         VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], 'x')"
        ))
        .await
        .unwrap();
    let id: i64 = db.client.query_one("SELECT id FROM et_messages WHERE delivery_status = 'pending_approval'", &[]).await.unwrap().get(0);
    db.client.execute("SELECT et_reject($1, 'alice', 'tone is wrong')", &[&id]).await.unwrap();
    let detail: serde_json::Value =
        db.client.query_one("SELECT detail FROM et_message_events WHERE to_status = 'rejected'", &[]).await.unwrap().get(0);
    assert_eq!(detail["reason"], "tone is wrong");
    assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue").await, 0);
    assert!(db.client.execute("SELECT et_approve($1, 'alice')", &[&id]).await.is_err(), "rejected is final");
}

#[tokio::test]
async fn inbound_lifecycle_and_handoff() {
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    db.client
        .batch_execute(&format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, body_text)
         VALUES ('acme', {wa}, 'inbound', 'wamid.1', '+15551234567', 'hi');
         UPDATE et_messages SET delivery_status = 'inbound_processing';
         UPDATE et_messages SET delivery_status = 'inbound_error', last_error = 'llm timeout';
         UPDATE et_messages SET delivery_status = 'received';"
        ))
        .await
        .unwrap();
    assert!(db.client.batch_execute("UPDATE et_messages SET delivery_status = 'sent'").await.is_err());
    let thread: i64 = db.client.query_one("SELECT thread_id FROM et_messages", &[]).await.unwrap().get(0);
    assert_eq!(db.client.query_one("SELECT et_handoff($1, 'human', 'dana')", &[&thread]).await.unwrap().get::<_, String>(0), "human");
    let row = db.client.query_one("SELECT handling, handling_by FROM et_threads WHERE id = $1", &[&thread]).await.unwrap();
    assert_eq!((row.get::<_, String>(0).as_str(), row.get::<_, String>(1).as_str()), ("human", "dana"));
    let e = db.client.query_one("SELECT et_handoff($1, 'robot', 'dana')", &[&thread]).await.expect_err("bad handling");
    assert!(e.as_db_error().unwrap().message().contains("handling must be ai or human"));
}
