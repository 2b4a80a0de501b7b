//! The door: what an inserting application may not set or write, refused at insert with an error
//! naming the column and the rule, and session edits that reach a running daemon.

use crate::smtp_sink::SmtpSink;
use crate::support::TestDb;
use crate::support::{send, smtp_session, spawn, until};
use std::time::Duration;
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

/// Run `sql`, expect it refused with `sqlstate` naming `column` (COLUMN field and message
/// prefix `et_messages.<column>:`) and saying `says`, and expect nothing written.
async fn refused(db: &TestDb, sql: &str, sqlstate: &str, column: &str, says: &str) -> DbError {
    let before = footprint(db).await;
    let err = db.client.batch_execute(sql).await.expect_err(sql);
    let e = err.as_db_error().unwrap_or_else(|| panic!("not a database error: {err}")).clone();
    assert_eq!(footprint(db).await, before, "a refused statement wrote something: {sql}");
    assert_eq!(e.code().code(), sqlstate, "{sql}: {}", e.message());
    assert_eq!(e.column(), Some(column), "{sql}: {}", e.message());
    let table = e.table().unwrap_or("et_messages");
    assert!(e.message().starts_with(&format!("{table}.{column}: ")), "{sql}: {}", e.message());
    let text = format!("{} {}", e.message(), e.detail().unwrap_or(""));
    assert!(text.contains(says), "{sql}: {text:?} does not say {says:?}");
    e
}

const OUT: &str = "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text";

fn outbound(session: i64, columns: &str, values: &str) -> String {
    format!("{OUT}, {columns}) VALUES ('acme', {session}, 'outbound', ARRAY['a@example.com'], 'x', {values})")
}

#[tokio::test]
async fn an_outbound_insert_cannot_set_what_the_daemon_owns() {
    let db = TestDb::new().await;
    let (email, wa) = db.seed_acme().await;
    for (column, value) in [
        ("external_message_id", "'<forged@bank.example>'"),
        ("attempts", "-5"),
        ("possible_duplicates", "0 + 3"),
        ("sent_at", "now()"),
        ("last_error", "'none'"),
        ("error_class", "'permanent'"),
        ("rendered_subject", "'x'"),
        ("rendered_text", "'x'"),
        ("rendered_html", "'<p>x</p>'"),
        ("suppressed_recipients", "ARRAY['b@example.com']"),
        ("approved_by", "'mallory'"),
        ("approved_at", "now()"),
    ] {
        refused(&db, &outbound(email, column, value), "23514", column, "written by pgcourier").await;
    }
    // a provider id on a chat channel too
    let sql = format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text, external_message_id)
                       VALUES ('acme', {wa}, 'outbound', ARRAY['+15551234567'], 'x', 'wamid.forged')"
    );
    refused(&db, &sql, "23514", "external_message_id", "written by pgcourier").await;
    // statuses other than the initial ones, as before
    refused(&db, &outbound(email, "delivery_status", "'sent'"), "23514", "delivery_status", "starts as queued or pending_approval").await;
    // the defaults pass, and the Message-ID is the database's
    let id: String = db
        .client
        .query_one(&format!("{OUT}, attempts, delivery_status) VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], 'x', 0, 'queued') RETURNING external_message_id"), &[])
        .await
        .unwrap()
        .get(0);
    assert!(id.ends_with("@acme.example>"), "{id}");
    // inbound rows keep the provider id and the sender they bring
    db.client
        .batch_execute(&format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, sender, body_text, external_message_id)
             VALUES ('acme', {email}, 'inbound', 'ceo@bank.example', 'hi', '<theirs@bank.example>')"
        ))
        .await
        .unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM et_messages WHERE sender = 'ceo@bank.example' AND external_message_id = '<theirs@bank.example>'")
            .await,
        1
    );
}

#[tokio::test]
async fn the_sender_is_the_session_address_or_at_an_allowed_domain() {
    let db = TestDb::new().await;
    let (email, wa) = db.seed_acme().await;
    let forged =
        refused(&db, &outbound(email, "sender", "'ceo@bank.example'"), "23514", "sender", "sender domain bank.example is not allowed")
            .await;
    assert!(forged.message().contains("acme.example"), "names what is allowed: {}", forged.message());
    refused(&db, &outbound(email, "sender", "'x@evilacme.example'"), "23514", "sender", "not allowed").await;
    // the session's address (any display name), its domain and subdomains while the tenant lists none
    for ok in ["'Someone Else <NoReply@acme.example>'", "'billing@acme.example'", "'news@mail.acme.example'"] {
        db.client.batch_execute(&outbound(email, "sender", ok)).await.unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    // the tenant's list replaces the session's domain; the session address stays allowed
    db.client
        .batch_execute("UPDATE et_tenants SET settings = '{\"allowed_sender_domains\": [\"Brand.example\", \"@bücher.de\"]}'")
        .await
        .unwrap();
    for ok in ["'hi@brand.example'", "'a@eu.brand.example'", "'noreply@acme.example'", "'ann@xn--bcher-kva.de'", "'ann@Bücher.de'"] {
        db.client.batch_execute(&outbound(email, "sender", ok)).await.unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    refused(&db, &outbound(email, "sender", "'billing@acme.example'"), "23514", "sender", "allowed_sender_domains").await;
    // chat channels: only the session's own number
    let sql = format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, sender, recipients, body_text)
                       VALUES ('acme', {wa}, 'outbound', '+15559999999', ARRAY['+15551234567'], 'x')"
    );
    refused(&db, &sql, "23514", "sender", "not this whatsapp session's address").await;
    db.client
        .batch_execute(&format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, sender, recipients, body_text)
                                 VALUES ('acme', {wa}, 'outbound', '+1 555 000 0000', ARRAY['+15551234567'], 'x')"
        ))
        .await
        .unwrap();
    // an edit while pending approval is held to the same rule
    db.client.batch_execute(&format!("UPDATE et_channel_sessions SET requires_approval = true WHERE id = {email}")).await.unwrap();
    let id: i64 = db
        .client
        .query_one(&format!("{OUT}) VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], 'x') RETURNING id"), &[])
        .await
        .unwrap()
        .get(0);
    let e = db.client.batch_execute(&format!("UPDATE et_messages SET sender = 'ceo@bank.example' WHERE id = {id}")).await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().column(), Some("sender"), "{e}");
}

#[tokio::test]
async fn what_a_mail_header_cannot_carry_is_refused_with_its_limit() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    refused(&db, &outbound(email, "subject", "repeat('s', 1000000)"), "23514", "subject", "at most 255").await;
    refused(&db, &outbound(email, "subject", "E'Hi\\r\\nBcc: all@example.com'"), "23514", "subject", "line break").await;
    refused(&db, &outbound(email, "in_reply_to", "repeat('i', 20000)"), "23514", "in_reply_to", "at most 985").await;
    refused(&db, &outbound(email, "\"references\"", "ARRAY['<ok@example.com>', repeat('r', 986)]"), "23514", "references", "at most 985")
        .await;
    refused(&db, &outbound(email, "in_reply_to", "E'<a@b>\\nX: y'"), "23514", "in_reply_to", "line break").await;
    refused(
        &db,
        &format!("{OUT}) VALUES ('acme', {email}, 'outbound', ARRAY['{}@example.com'], 'x')", "a".repeat(65)),
        "23514",
        "recipients",
        "valid email address",
    )
    .await;
    refused(
        &db,
        &format!("{OUT}) VALUES ('acme', {email}, 'outbound', ARRAY['\"{}\" <a@example.com>'], 'x')", "n".repeat(256)),
        "23514",
        "recipients",
        "valid email address",
    )
    .await;
    // at the limits
    db.client.batch_execute(&outbound(email, "subject, in_reply_to", &format!("repeat('é', 255), '<{}>'", "i".repeat(983)))).await.unwrap();
}

#[tokio::test]
async fn scheduled_at_is_finite_and_at_most_a_year_ahead() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    for (value, says) in [
        ("'infinity'", "not a finite time"),
        ("'-infinity'", "not a finite time"),
        ("'294276-12-31 00:00:00+00'", "at most 1 year ahead"),
        ("now() + interval '1 year 1 day'", "at most 1 year ahead"),
    ] {
        refused(&db, &outbound(email, "scheduled_at", value), "23514", "scheduled_at", says).await;
    }
    db.client.batch_execute(&outbound(email, "scheduled_at", "now() + interval '360 days'")).await.unwrap();
    db.client.batch_execute(&outbound(email, "scheduled_at", "'2001-01-01'")).await.unwrap();
}

#[tokio::test]
async fn numbers_and_value_lists_name_the_column_and_what_is_allowed() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    let e = refused(&db, &outbound(email, "priority", "99999"), "23514", "priority", "out of range (1 = first … 4 = last)").await;
    assert!(!e.message().contains("smallint"), "{}", e.message());
    refused(&db, &outbound(email, "priority", "0"), "23514", "priority", "out of range").await;
    db.client.batch_execute(&outbound(email, "priority", "4")).await.unwrap();
    // an UPDATE meets the CHECK, whose name says the column and the range
    let e = db.client.batch_execute("UPDATE et_messages SET priority = 7").await.unwrap_err();
    let e = e.as_db_error().unwrap();
    assert_eq!((e.code().code(), e.constraint()), ("23514", Some("et_messages.priority: 1 to 4 (1 = first, 4 = last)")));
    assert!(e.message().contains("et_messages.priority: 1 to 4"), "{}", e.message());
    // session values
    let e = db.client.batch_execute(&format!("UPDATE et_channel_sessions SET status = 'on' WHERE id = {email}")).await.unwrap_err();
    let e = e.as_db_error().unwrap();
    assert_eq!((e.code().code(), e.table(), e.column()), ("23514", Some("et_channel_sessions"), Some("status")));
    assert!(e.message().contains("'on' is not allowed (allowed: active, paused, disabled)"), "{}", e.message());
    let e = db
        .client
        .batch_execute("INSERT INTO et_channel_sessions (tenant_id, channel, provider, address) VALUES ('acme', 'email', 'sendgrid', 'a@acme.example')")
        .await
        .unwrap_err();
    assert!(
        e.as_db_error().unwrap().message().contains("et_channel_sessions.provider: 'sendgrid' is not allowed (allowed: smtp, file,"),
        "{e}"
    );
}

#[tokio::test]
async fn an_unknown_tenant_is_reported_as_one() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    let sql = format!("{OUT}) VALUES ('nope', {email}, 'outbound', ARRAY['a@example.com'], 'x')");
    refused(&db, &sql, "23503", "tenant_id", "unknown tenant 'nope'").await;
}

/// PostgreSQL refuses a NUL in text and `\u0000` in jsonb while it reads the value, before any
/// trigger sees the row: the error cannot name the column, but it is clear and writes nothing.
#[tokio::test]
async fn nul_in_jsonb_is_refused_before_the_row_exists() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    let before = footprint(&db).await;
    let e = db.client.batch_execute(&outbound(email, "metadata", r#"'{"a": "x\u0000y"}'"#)).await.unwrap_err();
    let e = e.as_db_error().unwrap();
    assert_eq!(e.code().code(), "22P05", "untranslatable_character: {}", e.message());
    assert!(e.detail().unwrap_or("").contains("\\u0000 cannot be converted to text"), "{:?}", e.detail());
    assert_eq!(footprint(&db).await, before);
}

#[tokio::test]
async fn any_session_change_moves_updated_at() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    async fn at(db: &TestDb, id: i64) -> chrono::DateTime<chrono::Utc> {
        db.client.query_one("SELECT updated_at FROM et_channel_sessions WHERE id = $1", &[&id]).await.unwrap().get(0)
    }
    let t0 = at(&db, email).await;
    db.client
        .batch_execute(&format!("UPDATE et_channel_sessions SET config = '{{\"dir\": \"/tmp/x\"}}' WHERE id = {email}"))
        .await
        .unwrap();
    let t1 = at(&db, email).await;
    assert!(t1 > t0);
    // twice in one transaction: two values
    db.client
        .batch_execute(&format!(
            "BEGIN; UPDATE et_channel_sessions SET config = '{{}}' WHERE id = {email};
             UPDATE et_channel_sessions SET config = '{{\"dir\": \"/tmp/y\"}}' WHERE id = {email}; COMMIT"
        ))
        .await
        .unwrap();
    assert!(at(&db, email).await > t1);
    // an explicit updated_at is kept, an update that changes nothing moves nothing
    db.client.batch_execute(&format!("UPDATE et_channel_sessions SET updated_at = '2030-01-01Z' WHERE id = {email}")).await.unwrap();
    db.client.batch_execute(&format!("UPDATE et_channel_sessions SET status = status WHERE id = {email}")).await.unwrap();
    assert_eq!(at(&db, email).await.to_rfc3339(), "2030-01-01T00:00:00+00:00");
}

/// The README's "fix the session, then et_retry" workflow: a running daemon sends the next
/// message with the session's new config, without anyone touching updated_at.
#[tokio::test]
async fn a_running_daemon_sends_with_the_edited_session() {
    let db = TestDb::new().await;
    let old = SmtpSink::start().await;
    let new = SmtpSink::start().await;
    let session = smtp_session(&db, &old, serde_json::json!({})).await;
    let daemon = spawn(&db, &[]);
    send(&db, session, "first@example.com").await;
    old.wait_for(1, Duration::from_secs(15)).await;
    db.client
        .execute(
            "UPDATE et_channel_sessions SET config = config || jsonb_build_object('port', $1::int) WHERE id = $2",
            &[&(new.addr.port() as i32), &session],
        )
        .await
        .unwrap();
    let id = send(&db, session, "second@example.com").await;
    let got = new.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(got[0].rcpt_to, ["second@example.com"]);
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), Duration::from_secs(15)).await;
    assert_eq!(old.messages().len(), 1, "nothing more went to the old port");
    daemon.stop().await;
}

/// The daemon's own replies stay within the door's limits: an inbound email with a long, folded
/// subject and an over-long Message-ID among its references still gets its auto-reply.
#[tokio::test]
async fn an_auto_reply_to_a_long_folded_subject_is_not_refused() {
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    db.client
        .execute("INSERT INTO et_inbound_rules (tenant_id, pattern, action, reply_template) VALUES ('acme', 'hours', 'auto_reply', 'We are open 9 to 17.')", &[])
        .await
        .unwrap();
    let daemon = spawn(&db, &[]);
    let subject = format!("Re: RE: Opening hours\r\n {}", "and more ".repeat(40));
    let long_id = format!("<{}@example.com>", "x".repeat(1000));
    let id: i64 = db
        .client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, subject, body_text, \"references\")
             VALUES ('acme', $1, 'inbound', '<in1@example.com>', 'Ann <ann@example.com>', $2, 'What are your hours?', ARRAY['<root@example.com>', $3])
             RETURNING id",
            &[&session, &subject, &long_id],
        )
        .await
        .unwrap()
        .get(0);
    until(&db, &format!("SELECT delivery_status = 'inbound_ai_replied' FROM et_messages WHERE id = {id}"), Duration::from_secs(20)).await;
    let got = sink.wait_for(1, Duration::from_secs(20)).await;
    let reply = &got[0];
    assert_eq!(reply.header("References").unwrap(), "<root@example.com> <in1@example.com>");
    let row = db.client.query_one("SELECT subject FROM et_messages WHERE direction = 'outbound'", &[]).await.unwrap();
    let stored: String = row.get(0);
    assert!(stored.starts_with("Re: Opening hours and more") && stored.chars().count() == 255, "{stored:?}");
    daemon.stop().await;
}

/// Addresses the door used to refuse or the mail library could not send go out end to end: an
/// international domain (in its ASCII form, no SMTPUTF8 needed), a display name with a comma.
#[tokio::test]
async fn an_international_domain_and_a_name_with_a_comma_reach_the_smtp_sink() {
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    let daemon = spawn(&db, &[]);
    let id: i64 = db
        .client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, cc, subject, body_text)
             VALUES ('acme', $1, 'outbound', ARRAY['Doe, John <John@Bücher.de>'], ARRAY['\"john\"@example.com'], 'Hi', 'x') RETURNING id",
            &[&session],
        )
        .await
        .unwrap()
        .get(0);
    let got = sink.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(got[0].rcpt_to, ["john@xn--bcher-kva.de", "john@example.com"]);
    // lettre writes the name as an RFC 2047 encoded word: it decodes to the name as given
    let to = got[0].header("To").unwrap();
    let (word, address) = to.split_once(' ').unwrap();
    assert_eq!(address, "<john@xn--bcher-kva.de>");
    let b64 = word.strip_prefix("=?utf-8?b?").and_then(|w| w.strip_suffix("?=")).unwrap_or_else(|| panic!("{to}"));
    let name = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
    assert_eq!(String::from_utf8(name).unwrap(), "Doe, John");
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), Duration::from_secs(15)).await;
    daemon.stop().await;
}
