//! References that triggers keep instead of per-row foreign keys (V16, V18,
//! `triggers/035_message_keys.sql`): queue rows name an outbound message of their tenant and
//! session and go with it; threads that messages name are never deleted, re-keyed or truncated,
//! also when the delete races an insert; a message moves only to a thread of its own.

use crate::support::TestDb;
use std::time::{Duration, Instant};
use tokio_postgres::GenericClient;

async fn setup() -> (TestDb, i64) {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    db.client.batch_execute("INSERT INTO et_tenants (id) VALUES ('globex')").await.unwrap();
    (db, email)
}

/// Insert one outbound email to `to` on `session` as acme; returns (message id, thread id).
async fn try_send(client: &impl GenericClient, session: i64, to: &str) -> Result<(i64, i64), tokio_postgres::Error> {
    let row = client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
             VALUES ('acme', $1, 'outbound', ARRAY[$2], 'x') RETURNING id, thread_id",
            &[&session, &to],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

async fn send(client: &impl GenericClient, session: i64, to: &str) -> (i64, i64) {
    try_send(client, session, to).await.unwrap()
}

/// The thread of a@example.com, left without messages (its only one deleted).
async fn empty_thread(db: &TestDb, session: i64) -> i64 {
    let (id, thread) = send(&db.client, session, "a@example.com").await;
    db.client.batch_execute(&format!("DELETE FROM et_messages WHERE id = {id}")).await.unwrap();
    thread
}

/// The SQLSTATE and the column the error names.
fn code_and_column(e: &tokio_postgres::Error) -> (String, String) {
    let d = e.as_db_error().unwrap_or_else(|| panic!("not a database error: {e}"));
    (d.code().code().to_owned(), d.column().unwrap_or_default().to_owned())
}

/// Wait until some other backend of this database waits for a lock (the statement under test
/// is blocked, not finished): fails after 10 s.
async fn until_a_backend_waits_for_a_lock(db: &TestDb) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while db.count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'").await == 0 {
        assert!(Instant::now() < deadline, "no backend ever waited for the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn hand_written_queue_rows_must_name_an_outbound_message_of_their_tenant_and_session() {
    let (db, email) = setup().await;
    let wa: i64 = db.client.query_one("SELECT id FROM et_channel_sessions WHERE channel = 'whatsapp'", &[]).await.unwrap().get(0);
    let (id, _) = send(&db.client, email, "a@example.com").await;
    db.client.batch_execute("DELETE FROM et_outbound_queue").await.unwrap();
    let row = |tenant: &str, message: i64, session: i64| {
        format!("INSERT INTO et_outbound_queue (tenant_id, message_id, channel_session_id) VALUES ('{tenant}', {message}, {session})")
    };
    for sql in [row("acme", id + 1000, email), row("globex", id, email), row("acme", id, wa)] {
        let e = db.client.batch_execute(&sql).await.expect_err(&sql);
        assert_eq!(code_and_column(&e), ("23503".into(), "message_id".into()), "{sql}: {e:?}");
        assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue").await, 0, "nothing written: {sql}");
    }
    db.client.batch_execute(&row("acme", id, email)).await.expect("a queue row of an existing message of its tenant and session");
    let e = db.client.batch_execute(&format!("UPDATE et_outbound_queue SET message_id = {}", id + 1000)).await.expect_err("re-keyed");
    assert_eq!(code_and_column(&e), ("23503".into(), "message_id".into()));
    // the daemon's own updates (lease, outcome) are not re-checked, and still work
    db.client.batch_execute("UPDATE et_outbound_queue SET attempts = attempts + 1, run_at = now()").await.unwrap();

    db.client.batch_execute(&format!("DELETE FROM et_messages WHERE id = {id}")).await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue").await, 0, "a deleted message's queue row goes with it");
}

#[tokio::test]
async fn truncating_messages_takes_queue_rows_and_events_along_also_when_named_together() {
    let (db, email) = setup().await;
    for sql in ["TRUNCATE et_messages CASCADE", "TRUNCATE et_messages, et_message_events, et_outbound_queue CASCADE"] {
        send(&db.client, email, "a@example.com").await;
        assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue").await, 1);
        db.client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue").await, 0, "{sql}");
        assert_eq!(db.count("SELECT count(*) FROM et_message_events").await, 0, "{sql}");
    }
}

#[tokio::test]
async fn a_thread_with_messages_is_never_deleted_rekeyed_or_truncated() {
    let (db, email) = setup().await;
    let (id, thread) = send(&db.client, email, "a@example.com").await;
    for sql in [
        format!("DELETE FROM et_threads WHERE id = {thread}"),
        format!("UPDATE et_threads SET id = {} WHERE id = {thread}", thread + 1000),
        "TRUNCATE et_threads CASCADE".to_owned(),
    ] {
        let e = db.client.batch_execute(&sql).await.expect_err(&sql);
        assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("23503"), "{sql}: {e:?}");
        assert_eq!(db.count(&format!("SELECT count(*) FROM et_threads WHERE id = {thread}")).await, 1, "{sql}");
    }
    // once its messages are gone the thread may go
    db.client.batch_execute(&format!("DELETE FROM et_messages WHERE id = {id}; DELETE FROM et_threads WHERE id = {thread}")).await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM et_threads").await, 0);
    send(&db.client, email, "b@example.com").await;
    db.client.batch_execute("TRUNCATE et_messages, et_threads CASCADE").await.expect("messages and threads truncated together");
}

#[tokio::test]
async fn a_message_moves_only_to_a_thread_of_its_own_tenant_and_session() {
    let (db, email) = setup().await;
    let globex = db.session("globex", "email", "log", "hi@globex.example").await;
    let theirs: i64 = db
        .client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
             VALUES ('globex', $1, 'outbound', ARRAY['z@example.com'], 'x') RETURNING thread_id",
            &[&globex],
        )
        .await
        .unwrap()
        .get(0);
    let (id, _) = send(&db.client, email, "a@example.com").await;
    let (_, other) = send(&db.client, email, "b@example.com").await;
    for target in [theirs, other + 1000] {
        let e = db.client.batch_execute(&format!("UPDATE et_messages SET thread_id = {target} WHERE id = {id}")).await.expect_err("moved");
        assert_eq!(code_and_column(&e), ("23503".into(), "thread_id".into()), "thread {target}");
    }
    db.client.batch_execute(&format!("UPDATE et_messages SET thread_id = {other} WHERE id = {id}")).await.expect("a thread of its own");
}

#[tokio::test]
async fn a_thread_delete_that_waited_for_an_insert_is_refused() {
    let (db, email) = setup().await;
    let thread = empty_thread(&db, email).await;

    // The insert holds its thread's lock until commit; the delete waits for it, then sees the
    // message and is refused.
    let mut inserter = db.connect().await;
    let tx = inserter.transaction().await.unwrap();
    let (_, same) = send(&tx, email, "a@example.com").await;
    assert_eq!(same, thread);
    let deleter = db.connect().await;
    let delete = tokio::spawn(async move { deleter.batch_execute(&format!("DELETE FROM et_threads WHERE id = {thread}")).await });
    until_a_backend_waits_for_a_lock(&db).await;
    tx.commit().await.unwrap();
    let e = delete.await.unwrap().expect_err("the delete went through under a committed message");
    assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("23503"), "{e:?}");
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_messages WHERE thread_id = {thread}")).await, 1);
}

#[tokio::test]
async fn an_insert_that_waited_for_a_thread_delete_is_refused() {
    let (db, email) = setup().await;
    let thread = empty_thread(&db, email).await;

    // The delete goes first and holds the row; the insert found the thread (not yet gone for
    // it), waits on its lock, finds it deleted and fails whole, as the foreign key did.
    let mut deleter = db.connect().await;
    let tx = deleter.transaction().await.unwrap();
    tx.batch_execute(&format!("DELETE FROM et_threads WHERE id = {thread}")).await.unwrap();
    let inserter = db.connect().await;
    let insert = tokio::spawn(async move { try_send(&inserter, email, "a@example.com").await });
    until_a_backend_waits_for_a_lock(&db).await;
    tx.commit().await.unwrap();
    let e = insert.await.unwrap().expect_err("a message was inserted on a deleted thread");
    assert_eq!(code_and_column(&e), ("23503".into(), "thread_id".into()), "{e:?}");
    assert_eq!(db.count("SELECT count(*) FROM et_messages").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue").await, 0);
}
