//! References that triggers keep instead of per-row foreign keys (`COMMENT ON TABLE et_messages` in
//! sql/V1__baseline.sql, `triggers/035_message_keys.sql`): queue rows name an outbound message of their tenant and
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

// ---- the races under every isolation level ----------------------------------------------------
//
// Each race runs under READ COMMITTED, REPEATABLE READ and SERIALIZABLE, in two shapes:
// `Waits`, the second statement blocks on a lock the first transaction holds and goes on when it
// commits; `Stale`, the second transaction took its snapshot before the first committed and runs
// its statement after (no wait: under REPEATABLE READ and SERIALIZABLE it never sees the first's
// rows). Either side may lose with 23503 (the reference is refused) or 40001 (serialization
// failure, the transaction is to be retried); what must never happen is a reference left dangling.

const LEVELS: [&str; 3] = ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    Waits,
    Stale,
}

/// Runs `first` in a transaction at `level`, then `second` in another as `shape` says, commits
/// both; returns how each ended: "ok" or the SQLSTATE (anything but 23503 / 40001 fails the test).
async fn race(db: &TestDb, level: &str, shape: Shape, first: &str, second: &str) -> (String, String) {
    let one = db.connect().await;
    one.batch_execute(&format!("BEGIN ISOLATION LEVEL {level}; {first}")).await.unwrap_or_else(|e| panic!("{first}: {e:?}"));
    let two = db.connect().await;
    let (r1, r2) = match shape {
        Shape::Waits => {
            let sql = format!("BEGIN ISOLATION LEVEL {level}; {second}; COMMIT");
            let waiting = tokio::spawn(async move { two.batch_execute(&sql).await });
            until_a_backend_waits_for_a_lock(db).await;
            let r1 = one.batch_execute("COMMIT").await;
            (r1, waiting.await.unwrap())
        }
        Shape::Stale => {
            two.batch_execute(&format!("BEGIN ISOLATION LEVEL {level}; SELECT 1")).await.unwrap();
            let r1 = one.batch_execute("COMMIT").await;
            (r1, two.batch_execute(&format!("{second}; COMMIT")).await)
        }
    };
    let outcome = |r: Result<(), tokio_postgres::Error>, sql: &str| match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => {
            let code = e.as_db_error().map(|d| d.code().code().to_owned()).unwrap_or_else(|| panic!("{sql}: {e:?}"));
            assert!(code == "23503" || code == "40001", "{level} {shape:?} {sql}: {e:?}");
            code
        }
    };
    (outcome(r1, first), outcome(r2, second))
}

/// Messages whose thread is missing (or of another session), events whose message is missing,
/// queue rows without their outbound message on that session.
async fn dangling(db: &TestDb) -> i64 {
    db.count(
        "SELECT (SELECT count(*) FROM et_messages m WHERE NOT EXISTS (
                    SELECT 1 FROM et_threads th WHERE th.tenant_id = m.tenant_id AND th.id = m.thread_id
                                                  AND th.channel_session_id = m.channel_session_id))
              + (SELECT count(*) FROM et_message_events e WHERE NOT EXISTS (
                    SELECT 1 FROM et_messages m WHERE m.tenant_id = e.tenant_id AND m.id = e.message_id))
              + (SELECT count(*) FROM et_outbound_queue q WHERE NOT EXISTS (
                    SELECT 1 FROM et_messages m WHERE m.tenant_id = q.tenant_id AND m.id = q.message_id
                                                  AND m.direction = 'outbound' AND m.channel_session_id = q.channel_session_id))",
    )
    .await
}

/// Runs one race, built by `setup` on an emptied database, under every level and shape; checks
/// that nothing dangles after any of them and prints the outcomes.
async fn every_level<F, Fut>(name: &str, setup: F)
where
    F: Fn(TestDb, i64) -> Fut,
    Fut: std::future::Future<Output = (TestDb, String, String)>,
{
    let (mut db, email) = setup_db().await;
    let mut dangled = Vec::new();
    for level in LEVELS {
        for shape in [Shape::Waits, Shape::Stale] {
            db.client.batch_execute("TRUNCATE et_messages, et_threads CASCADE").await.unwrap();
            let (back, first, second) = setup(db, email).await;
            db = back;
            let (o1, o2) = race(&db, level, shape, &first, &second).await;
            println!("{name}: {level:<15} {shape:?}: first {o1}, second {o2}");
            if dangling(&db).await != 0 {
                dangled.push(format!("{level} ({shape:?}): first {o1}, second {o2}"));
            }
        }
    }
    assert!(dangled.is_empty(), "{name} left a dangling reference under {dangled:?}");
}

async fn setup_db() -> (TestDb, i64) {
    setup().await
}

#[tokio::test]
async fn races_between_a_message_insert_and_a_thread_delete_leave_nothing_dangling() {
    every_level("insert, then delete the thread", |db, email| async move {
        let thread = empty_thread(&db, email).await;
        let insert = format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
                              VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], 'x')"
        );
        (db, insert, format!("DELETE FROM et_threads WHERE id = {thread}"))
    })
    .await;
    every_level("delete the thread, then insert", |db, email| async move {
        let thread = empty_thread(&db, email).await;
        let insert = format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
                              VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], 'x')"
        );
        (db, format!("DELETE FROM et_threads WHERE id = {thread}"), insert)
    })
    .await;
    every_level("insert, then truncate threads", |db, email| async move {
        empty_thread(&db, email).await;
        let insert = format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
                              VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], 'x')"
        );
        (db, insert, "TRUNCATE et_threads CASCADE".to_owned())
    })
    .await;
}

#[tokio::test]
async fn races_between_a_message_move_and_a_thread_delete_leave_nothing_dangling() {
    every_level("move a message, then delete its new thread", |db, email| async move {
        let thread = empty_thread(&db, email).await;
        let (id, _) = send(&db.client, email, "b@example.com").await;
        (db, format!("UPDATE et_messages SET thread_id = {thread} WHERE id = {id}"), format!("DELETE FROM et_threads WHERE id = {thread}"))
    })
    .await;
    every_level("delete a thread, then move a message to it", |db, email| async move {
        let thread = empty_thread(&db, email).await;
        let (id, _) = send(&db.client, email, "b@example.com").await;
        (db, format!("DELETE FROM et_threads WHERE id = {thread}"), format!("UPDATE et_messages SET thread_id = {thread} WHERE id = {id}"))
    })
    .await;
}

#[tokio::test]
async fn races_between_hand_written_events_or_queue_rows_and_a_message_delete_leave_nothing_dangling() {
    let event = |id: i64| {
        format!(
            "INSERT INTO et_message_events (tenant_id, message_id, from_status, to_status, actor, detail)
                 VALUES ('acme', {id}, 'queued', 'queued', 'test', '{{}}')"
        )
    };
    let queue_row = |id: i64, session: i64| {
        format!("INSERT INTO et_outbound_queue (tenant_id, message_id, channel_session_id) VALUES ('acme', {id}, {session})")
    };
    every_level("write an event, then delete its message", |db, email| async move {
        let (id, _) = send(&db.client, email, "b@example.com").await;
        (db, event(id), format!("DELETE FROM et_messages WHERE id = {id}"))
    })
    .await;
    every_level("delete a message, then write an event of it", |db, email| async move {
        let (id, _) = send(&db.client, email, "b@example.com").await;
        (db, format!("DELETE FROM et_messages WHERE id = {id}"), event(id))
    })
    .await;
    every_level("write a queue row, then delete its message", |db, email| async move {
        let (id, _) = send(&db.client, email, "b@example.com").await;
        db.client.batch_execute("DELETE FROM et_outbound_queue").await.unwrap();
        (db, queue_row(id, email), format!("DELETE FROM et_messages WHERE id = {id}"))
    })
    .await;
    every_level("delete a message, then write a queue row of it", |db, email| async move {
        let (id, _) = send(&db.client, email, "b@example.com").await;
        db.client.batch_execute("DELETE FROM et_outbound_queue").await.unwrap();
        (db, format!("DELETE FROM et_messages WHERE id = {id}"), queue_row(id, email))
    })
    .await;
}

#[tokio::test]
async fn only_our_own_triggers_skip_the_key_checks() {
    let (db, email) = setup().await;
    // our triggers' queue rows and events are not checked again (the check functions never run)
    db.client.batch_execute("SET track_functions = 'all'; BEGIN").await.unwrap();
    let (id, _) = send(&db.client, email, "a@example.com").await;
    db.client.execute("SELECT et_cancel($1, 'test')", &[&id]).await.unwrap();
    let checks = db
        .count("SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_xact_user_functions WHERE funcname IN ('et_message_events_check', 'et_outbound_queue_check')")
        .await;
    db.client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(checks, 0, "our own writes were checked");

    let bad_event = "INSERT INTO et_message_events (tenant_id, message_id, from_status, to_status, actor, detail)
                     VALUES ('acme', -1, 'queued', 'queued', 'test', '{}')";
    // a session cannot set the marker to skip them
    let e = db
        .client
        .batch_execute(&format!("SELECT set_config('pgcourier.internal_write', '0', false); {bad_event}"))
        .await
        .expect_err("the marker set by hand skipped the check");
    assert_eq!(code_and_column(&e), ("23503".into(), "message_id".into()));
    db.client.batch_execute("RESET pgcourier.internal_write").await.unwrap();

    // another trigger's writes are checked: one on an application's table ...
    db.client
        .batch_execute(&format!(
            "CREATE TABLE app_orders (id int);
             CREATE FUNCTION app_orders_event() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN {bad_event}; RETURN NULL; END $$;
             CREATE TRIGGER app_orders_event AFTER INSERT ON app_orders FOR EACH ROW EXECUTE FUNCTION app_orders_event();"
        ))
        .await
        .unwrap();
    let e = db.client.batch_execute("INSERT INTO app_orders VALUES (1)").await.expect_err("a trigger's event skipped the check");
    assert_eq!(code_and_column(&e), ("23503".into(), "message_id".into()));
    // ... and one that fires inside our own writes (on the events our insert trigger writes)
    db.client
        .batch_execute(
            "CREATE FUNCTION app_echo_queue_row() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               INSERT INTO et_outbound_queue (tenant_id, message_id, channel_session_id) VALUES (NEW.tenant_id, -NEW.message_id, 0);
               RETURN NULL;
             END $$;
             CREATE TRIGGER zz_app_echo AFTER INSERT ON et_message_events FOR EACH ROW
               WHEN (NEW.message_id > 0) EXECUTE FUNCTION app_echo_queue_row();",
        )
        .await
        .unwrap();
    let e = try_send(&db.client, email, "b@example.com").await.expect_err("a nested trigger's queue row skipped the check");
    assert_eq!(code_and_column(&e), ("23503".into(), "message_id".into()));
    assert_eq!(dangling(&db).await, 0);
}

#[tokio::test]
async fn every_content_column_of_the_one_list_is_frozen_and_named() {
    let (db, email) = setup().await;
    let (id, _) = send(&db.client, email, "a@example.com").await;
    let columns: Vec<(String, String)> = db
        .client
        .query(
            "SELECT c, format_type(a.atttypid, a.atttypmod) FROM unnest(et_message_content_columns()) c
               JOIN pg_attribute a ON a.attrelid = 'et_messages'::regclass AND a.attname = c",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(columns.len(), 9, "every listed column exists: {columns:?}");
    for (column, ty) in &columns {
        let value = match ty.as_str() {
            "text[]" => "ARRAY['c@example.com']",
            "jsonb" => "'{\"a\": 1}'",
            _ => "'c@example.com'",
        };
        let sql = format!("UPDATE et_messages SET {column} = {value} WHERE id = {id}");
        let e = db.client.batch_execute(&sql).await.expect_err(&sql);
        let d = e.as_db_error().unwrap();
        assert_eq!((d.code().code(), d.column()), ("23514", Some(column.as_str())), "{sql}: {}", d.message());
        assert!(d.message().contains("is frozen"), "{}", d.message());
    }
}
