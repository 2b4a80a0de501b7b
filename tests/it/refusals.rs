//! Bad input is refused whole, with an error naming the column and the rule, and leaves no
//! message, queue row, event or thread behind.

use crate::support::TestDb;
use tokio_postgres::error::DbError;

/// Row counts of every table a message insert writes to.
async fn footprint(db: &TestDb) -> [i64; 4] {
    [
        db.count("SELECT count(*) FROM et_messages").await,
        db.count("SELECT count(*) FROM et_outbound_queue").await,
        db.count("SELECT count(*) FROM et_message_events").await,
        db.count("SELECT count(*) FROM et_threads").await,
    ]
}

/// Run `sql`, expect it refused, expect nothing written; return the database error.
async fn refused(db: &TestDb, sql: &str) -> DbError {
    let before = footprint(db).await;
    let err = db.client.batch_execute(sql).await.expect_err(sql);
    let db_err = err.as_db_error().unwrap_or_else(|| panic!("not a database error: {err}")).clone();
    assert_eq!(footprint(db).await, before, "a refused statement wrote something: {sql}");
    db_err
}

/// The error names `column` (in its COLUMN field or its message) and says `rule`.
fn names(e: &DbError, column: &str, rule: &str) {
    let text = format!("{} {}", e.message(), e.detail().unwrap_or(""));
    assert!(e.column() == Some(column) || e.message().contains(column), "error does not name {column}: {text}");
    assert!(text.contains(rule), "error does not say {rule:?}: {text}");
}

async fn setup() -> (TestDb, i64, i64, i64) {
    let db = TestDb::new().await;
    let (email, wa) = db.seed_acme().await;
    let sms = db.session("acme", "sms", "log", "+15550000001").await;
    (db, email, wa, sms)
}

#[tokio::test]
async fn invalid_email_addresses_in_every_address_column() {
    let (db, email, _, _) = setup().await;
    for (column, sql) in [
        ("recipients", format!("INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', {email}, 'outbound', ARRAY['ok@example.com','not-an-address'], 'x')")),
        ("cc", format!("INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, cc, body_text) VALUES ('acme', {email}, 'outbound', ARRAY['ok@example.com'], ARRAY['a@@b.com'], 'x')")),
        ("bcc", format!("INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, bcc, body_text) VALUES ('acme', {email}, 'outbound', ARRAY['ok@example.com'], ARRAY['x@localhost'], 'x')")),
        ("sender", format!("INSERT INTO et_messages (tenant_id, channel_session_id, direction, sender, recipients, body_text) VALUES ('acme', {email}, 'outbound', 'me at acme', ARRAY['ok@example.com'], 'x')")),
    ] {
        let e = refused(&db, &sql).await;
        names(&e, column, "valid email address");
        assert_eq!(e.code().code(), "23514", "check_violation for {column}");
    }
}

#[tokio::test]
async fn invalid_e164_numbers_on_sms_and_whatsapp() {
    let (db, _, wa, sms) = setup().await;
    for (session, number) in [(sms, "5551234"), (sms, "+0123456789"), (wa, "+1 555 12"), (wa, "whatsapp:12345678")] {
        let e = refused(&db, &format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', {session}, 'outbound', ARRAY['{number}'], 'x')"
        )).await;
        names(&e, "recipients", "E.164");
    }
}

#[tokio::test]
async fn outbound_without_recipient() {
    let (db, email, _, _) = setup().await;
    let e = refused(&db, &format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, subject, body_text) VALUES ('acme', {email}, 'outbound', 'Hi', 'x')"
    )).await;
    names(&e, "recipients", "at least one recipient");
}

#[tokio::test]
async fn unknown_or_other_tenants_session() {
    let (db, email, _, _) = setup().await;
    db.client.batch_execute("INSERT INTO et_tenants (id) VALUES ('globex')").await.unwrap();
    let unknown = refused(&db, "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', 999999, 'outbound', ARRAY['a@example.com'], 'x')").await;
    names(&unknown, "channel_session_id", "no channel session 999999");
    // acme's session used by globex: refused exactly like a session that does not exist.
    let other = refused(&db, &format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('globex', {email}, 'outbound', ARRAY['a@example.com'], 'x')"
    )).await;
    names(&other, "channel_session_id", "for tenant 'globex'");
    assert_eq!(other.code().code(), "23503");
}

#[tokio::test]
async fn thread_of_another_tenant() {
    let (db, email, _, _) = setup().await;
    db.client.batch_execute("INSERT INTO et_tenants (id) VALUES ('globex')").await.unwrap();
    let globex = db.session("globex", "email", "log", "hi@globex.example").await;
    db.client.batch_execute(&format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('globex', {globex}, 'outbound', ARRAY['a@example.com'], 'x')"
    )).await.unwrap();
    let thread: i64 = db.client.query_one("SELECT id FROM et_threads WHERE tenant_id = 'globex'", &[]).await.unwrap().get(0);
    let e = refused(&db, &format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, thread_id, direction, recipients, body_text) VALUES ('acme', {email}, {thread}, 'outbound', ARRAY['a@example.com'], 'x')"
    )).await;
    names(&e, "thread_id", "no thread");
    // Even bypassing the trigger's check, the composite foreign key makes the reference impossible.
    let fk = db
        .client
        .batch_execute(&format!(
            "UPDATE et_messages SET thread_id = {thread} WHERE tenant_id = 'acme'; \
         INSERT INTO et_thread_insights (tenant_id, thread_id, summary) VALUES ('acme', {thread}, 'x')"
        ))
        .await
        .expect_err("cross-tenant insight");
    assert_eq!(fk.as_db_error().unwrap().code().code(), "23503");
}

#[tokio::test]
async fn unknown_channel_or_direction() {
    let (db, email, _, _) = setup().await;
    let ch = refused(&db, &format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, channel, direction, recipients, body_text) VALUES ('acme', {email}, 'pigeon', 'outbound', ARRAY['a@example.com'], 'x')"
    )).await;
    names(&ch, "channel", "unknown channel 'pigeon'");
    let mismatch = refused(&db, &format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, channel, direction, recipients, body_text) VALUES ('acme', {email}, 'sms', 'outbound', ARRAY['+15551234567'], 'x')"
    )).await;
    names(&mismatch, "channel", "does not match session");
    let dir = refused(&db, &format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', {email}, 'sideways', ARRAY['a@example.com'], 'x')"
    )).await;
    names(&dir, "direction", "unknown direction 'sideways'");
    let missing = refused(&db, &format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, recipients, body_text) VALUES ('acme', {email}, ARRAY['a@example.com'], 'x')"
    )).await;
    names(&missing, "direction", "direction is required");
}

#[tokio::test]
async fn bodies_over_the_channel_limit() {
    let (db, email, wa, sms) = setup().await;
    let e = refused(&db, &format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_html) VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], repeat('x', 2097153))"
    )).await;
    names(&e, "body_html", "limited to 2097152 bytes");
    let e = refused(&db, &format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', {sms}, 'outbound', ARRAY['+15551234567'], repeat('x', 1601))"
    )).await;
    names(&e, "body_text", "limited to 1600 characters");
    let e = refused(&db, &format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', {wa}, 'outbound', ARRAY['+15551234567'], repeat('é', 2049))"
    )).await;
    // WhatsApp counts UTF-8 bytes: 2,049 'é' are 4,098 bytes
    names(&e, "body_text", "4098 bytes (UTF-8); whatsapp bodies are limited to 4096 bytes");
    // exactly at the limit is fine
    db.client.batch_execute(&format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', {sms}, 'outbound', ARRAY['+15551234567'], repeat('x', 1600))"
    )).await.unwrap();
    db.client.batch_execute(&format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', {wa}, 'outbound', ARRAY['+15551234567'], repeat('é', 2048))"
    )).await.unwrap();
}

#[tokio::test]
async fn a_bad_row_in_a_bulk_insert_refuses_the_whole_statement() {
    let (db, email, _, _) = setup().await;
    let e = refused(
        &db,
        &format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
         SELECT 'acme', {email}, 'outbound', ARRAY[CASE WHEN i = 500 THEN 'broken' ELSE 'u' || i || '@example.com' END], 'x'
           FROM generate_series(1, 1000) i"
        ),
    )
    .await;
    names(&e, "recipients", "'broken'");
}

#[tokio::test]
async fn illegal_status_change_by_direct_update() {
    let (db, email, _, _) = setup().await;
    db.client.batch_execute(&format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], 'x')"
    )).await.unwrap();
    let e = refused(&db, "UPDATE et_messages SET delivery_status = 'sent'").await;
    names(&e, "delivery_status", "cannot go from queued to sent");
    assert!(e.detail().unwrap().contains("allowed from queued: cancelled, sending, suppressed"), "{:?}", e.detail());
    let e = refused(&db, "UPDATE et_messages SET delivery_status = 'banana'").await;
    assert_eq!(e.code().code(), "23514");
    // nothing changed
    assert_eq!(db.count("SELECT count(*) FROM et_messages WHERE delivery_status = 'queued'").await, 1);
}

#[tokio::test]
async fn content_is_frozen_after_approval() {
    let (db, email, _, _) = setup().await;
    db.client.batch_execute(&format!(
        "UPDATE et_channel_sessions SET requires_approval = true WHERE id = {email};
         INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text) VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], 'Draft', 'x')"
    )).await.unwrap();
    // while pending, content may change, and is validated again
    db.client.batch_execute("UPDATE et_messages SET subject = 'Final', recipients = ARRAY['B@Example.com']").await.unwrap();
    let e = refused(&db, "UPDATE et_messages SET recipients = ARRAY['nope']").await;
    names(&e, "recipients", "valid email address");
    let id: i64 = db.client.query_one("SELECT id FROM et_messages", &[]).await.unwrap().get(0);
    db.client.execute("SELECT et_approve($1, 'alice')", &[&id]).await.unwrap();
    for change in [
        "subject = 'Changed'",
        "body_text = 'y'",
        "body_html = '<p>y</p>'",
        "recipients = ARRAY['c@example.com']",
        "cc = ARRAY['c@example.com']",
        "bcc = ARRAY['c@example.com']",
        "sender = 'x@acme.example'",
        "variables = '{\"a\":1}'",
    ] {
        let e = refused(&db, &format!("UPDATE et_messages SET {change}")).await;
        assert!(e.message().contains("frozen"), "{change}: {}", e.message());
        let column = change.split(' ').next().unwrap();
        assert_eq!(e.column(), Some(column), "the error names the changed column");
    }
    let e = refused(&db, "UPDATE et_messages SET tenant_id = 'acme2'").await;
    assert!(e.message().contains("never change"), "{}", e.message());
    let row = db.client.query_one("SELECT subject, recipients, approved_by FROM et_messages", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "Final");
    assert_eq!(row.get::<_, Vec<String>>(1), vec!["b@example.com".to_owned()]);
    assert_eq!(row.get::<_, String>(2), "alice");
}

#[tokio::test]
async fn approving_something_not_pending() {
    let (db, email, _, _) = setup().await;
    db.client.batch_execute(&format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], 'x')"
    )).await.unwrap();
    let id: i64 = db.client.query_one("SELECT id FROM et_messages", &[]).await.unwrap().get(0);
    let events = db.count("SELECT count(*) FROM et_message_events").await;
    let e = db.client.execute("SELECT et_approve($1, 'alice')", &[&id]).await.expect_err("approve queued");
    let e = e.as_db_error().unwrap();
    assert!(e.message().contains(&format!("message {id} is queued; only pending_approval messages can be approved")), "{}", e.message());
    let e = db.client.execute("SELECT et_approve(424242, 'alice')", &[]).await.expect_err("approve unknown");
    assert!(e.as_db_error().unwrap().message().contains("no message 424242"));
    let e = db.client.execute("SELECT et_retry($1, 'alice')", &[&id]).await.expect_err("retry queued");
    assert!(e.as_db_error().unwrap().message().contains("only failed messages can be retried"));
    assert_eq!(db.count("SELECT count(*) FROM et_message_events").await, events);
}

/// Events are kept tied to a message of their own tenant by triggers (no foreign
/// key, see `et_message_events` in sql/V1__baseline.sql): a hand-written event naming no message, or another tenant's, is refused; deleting or
/// truncating messages takes their events along.
#[tokio::test]
async fn events_name_a_message_of_their_own_tenant_and_go_with_it() {
    let (db, email, _, _) = setup().await;
    db.client.batch_execute("INSERT INTO et_tenants (id) VALUES ('globex')").await.unwrap();
    let id: i64 = db
        .client
        .query_one(
            &format!("INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], 'x') RETURNING id"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let event = |tenant: &str, message: i64| {
        format!("INSERT INTO et_message_events (tenant_id, message_id, to_status, actor) VALUES ('{tenant}', {message}, 'queued', 'dba')")
    };
    for sql in [event("acme", id + 1000), event("globex", id), format!("{}, ('acme', {}, 'queued', 'dba')", event("acme", id), id + 1)] {
        let e = refused(&db, &sql).await;
        names(&e, "message_id", "an event must name a message of its own tenant");
        assert_eq!(e.code().code(), "23503", "foreign_key_violation: {sql}");
    }
    db.client.batch_execute(&event("acme", id)).await.expect("an event of an existing message of its tenant");
    let e = refused(&db, &format!("UPDATE et_message_events SET message_id = {} WHERE actor = 'dba'", id + 1000)).await;
    names(&e, "message_id", "no message");
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_message_events WHERE message_id = {id}")).await, 2);

    db.client.batch_execute(&format!("DELETE FROM et_messages WHERE id = {id}")).await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM et_message_events").await, 0, "a deleted message's events go with it");
    db.client
        .batch_execute(&format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], 'y');
             TRUNCATE et_messages CASCADE"
        ))
        .await
        .unwrap();
    assert_eq!(db.count("SELECT count(*) FROM et_message_events").await, 0, "truncated messages take their events along");
}

/// The value lists (a CHECK casting to a domain that holds the list, sql/V1__baseline.sql) refuse a value outside
/// them on every table a send writes, as check_violation naming the table, the column and the
/// allowed values (in the error, or in the constraint's name), also for a writer that
/// bypasses the triggers.
#[tokio::test]
async fn value_lists_refuse_values_outside_them_by_direct_update() {
    let (db, email, _, _) = setup().await;
    db.client.batch_execute(&format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], 'x')"
    )).await.unwrap();
    for (table, column, domain) in [
        ("et_messages", "delivery_status", "et_delivery_status"),
        ("et_messages", "channel", "et_channel"),
        ("et_messages", "direction", "et_direction"),
        ("et_outbound_queue", "state", "et_queue_state"),
        ("et_threads", "state", "et_thread_state"),
        ("et_threads", "handling", "et_thread_handling"),
    ] {
        // with the triggers asleep (replica role), so the constraint itself answers: the triggers
        // refuse a changed channel or direction before it
        let sql = format!("SET session_replication_role = replica; UPDATE {table} SET {column} = 'banana'");
        let e = refused(&db, &sql).await;
        assert_eq!(e.code().code(), "23514", "{table}.{column}: {}", e.message());
        let listed: String = db
            .client
            .query_one(
                "SELECT string_agg(m[1], ', ' ORDER BY n) FROM pg_constraint c,
                        regexp_matches(pg_get_constraintdef(c.oid), '''([^'']*)''', 'g') WITH ORDINALITY r(m, n)
                  WHERE c.contypid = $1::text::regtype",
                &[&domain],
            )
            .await
            .unwrap()
            .get(0);
        // the delivery status list raises its own error; the short lists' constraint names say it
        let says = if domain == "et_delivery_status" {
            assert_eq!((e.table(), e.column()), (Some(table), Some(column)), "{}", e.message());
            format!("{table}.{column}: 'banana' is not allowed (allowed: {listed})")
        } else {
            format!("\"{table}.{column}: {listed}\"")
        };
        assert!(e.message().contains(&says), "{table}.{column}: {} does not say {says}", e.message());
    }
    // and every status on the list passes the cast the table's CHECK makes
    let ok: bool = db
        .client
        .query_one(
            "SELECT bool_and(v::et_delivery_status IS NOT NULL) FROM unnest(ARRAY['pending_approval','queued','sending','sent',
               'failed','rejected','cancelled','suppressed','received','inbound_processing','inbound_ai_replied',
               'inbound_human_takeover','inbound_follow_up','inbound_no_action','inbound_error']) v",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ok);
    assert_eq!(db.count("SELECT count(*) FROM et_messages WHERE delivery_status = 'queued' AND channel = 'email'").await, 1);
}
