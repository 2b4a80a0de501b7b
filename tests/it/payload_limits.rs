//! The payload limits of seed 003, enforced by the insert trigger for SQL (and so for the API):
//! recipients per channel, cc / bcc, body sizes, metadata shape; per-tenant settings may lower
//! them, never raise them; a bad setting is refused by name. Refused rows leave nothing behind.

use crate::http_api::{field, Api};
use crate::support::TestDb;
use serde_json::json;

async fn setup() -> (TestDb, i64, i64, i64) {
    let db = TestDb::new().await;
    let (email, wa) = db.seed_acme().await;
    let sms = db.session("acme", "sms", "log", "+15550000001").await;
    (db, email, wa, sms)
}

/// `n` addresses of the channel's kind.
fn addresses(channel: &str, n: usize) -> String {
    let list: Vec<String> = (0..n)
        .map(|i| match channel {
            "email" => format!("'u{i}@example.com'"),
            _ => format!("'+1555{:07}'", 1_000_000 + i),
        })
        .collect();
    format!("ARRAY[{}]::text[]", list.join(","))
}

/// Insert an outbound row on `session` with `recipients` and `extra` columns; the error, if refused.
async fn insert(db: &TestDb, session: i64, recipients: &str, extra: &[(&str, &str)]) -> Result<(), tokio_postgres::error::DbError> {
    let (mut cols, mut vals) = (String::new(), String::new());
    for (c, v) in extra {
        cols.push_str(&format!(", {c}"));
        vals.push_str(&format!(", {v}"));
    }
    if !extra.iter().any(|(c, _)| c.starts_with("body")) {
        cols.push_str(", body_text");
        vals.push_str(", 'hello'");
    }
    let sql = format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients{cols}) VALUES ('acme', {session}, 'outbound', {recipients}{vals})"
    );
    let before = db.count("SELECT count(*) FROM et_messages").await;
    let result = db.client.batch_execute(&sql).await;
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            assert_eq!(db.count("SELECT count(*) FROM et_messages").await, before, "a refused row wrote nothing");
            Err(e.as_db_error().expect("a database error").clone())
        }
    }
}

fn says(e: &tokio_postgres::error::DbError, column: &str, text: &str) {
    assert_eq!(e.column(), Some(column), "{}", e.message());
    assert!(e.message().contains(text), "{:?} does not say {text:?}", e.message());
    assert_eq!(e.code().code(), "23514", "{}", e.message());
}

#[tokio::test]
async fn recipients_per_channel_at_and_over_the_limit() {
    let (db, email, wa, sms) = setup().await;
    for (channel, session, max) in [("email", email, 100), ("sms", sms, 10), ("whatsapp", wa, 100)] {
        insert(&db, session, &addresses(channel, max), &[]).await.unwrap_or_else(|e| panic!("{channel} at {max}: {}", e.message()));
        let e = insert(&db, session, &addresses(channel, max + 1), &[]).await.expect_err("one over");
        says(&e, "recipients", &format!("{} recipients; a {channel} message has at most {max}", max + 1));
    }
    let cc = addresses("email", 101);
    let e = insert(&db, email, &addresses("email", 1), &[("cc", &cc)]).await.expect_err("101 cc");
    says(&e, "cc", "101 cc addresses; an email has at most 100");
    let e = insert(&db, email, &addresses("email", 1), &[("bcc", &cc)]).await.expect_err("101 bcc");
    says(&e, "bcc", "101 bcc addresses; an email has at most 100");
    insert(&db, email, &addresses("email", 100), &[("cc", &addresses("email", 100)), ("bcc", &addresses("email", 100))]).await.unwrap();
}

#[tokio::test]
async fn metadata_entries_keys_and_values() {
    let (db, email, _, _) = setup().await;
    let object = |n: usize| {
        format!("jsonb_object(array(SELECT 'k' || i FROM generate_series(1, {n}) i), array(SELECT 'v' FROM generate_series(1, {n}) i))")
    };
    insert(&db, email, &addresses("email", 1), &[("metadata", &object(50))]).await.unwrap();
    let e = insert(&db, email, &addresses("email", 1), &[("metadata", &object(51))]).await.expect_err("51 entries");
    says(&e, "metadata", "metadata has 51 entries (at most 50)");
    let e = insert(&db, email, &addresses("email", 1), &[("metadata", "jsonb_build_object(repeat('k', 129), 'v')")])
        .await
        .expect_err("long key");
    says(&e, "metadata", "is 129 characters (at most 128)");
    let e = insert(&db, email, &addresses("email", 1), &[("metadata", "jsonb_build_object('note', repeat('é', 1025))")])
        .await
        .expect_err("long value");
    says(&e, "metadata", "metadata.note is 1025 characters (at most 1024)");
    // at the limits, and non-string values are not length-limited
    insert(
        &db,
        email,
        &addresses("email", 1),
        &[("metadata", "jsonb_build_object(repeat('k', 128), repeat('é', 1024), 'deep', jsonb_build_object('x', repeat('y', 5000)))")],
    )
    .await
    .unwrap();
    let e = insert(&db, email, &addresses("email", 1), &[("metadata", "'[1, 2]'::jsonb")]).await.expect_err("an array");
    says(&e, "metadata", "metadata must be a JSON object");
}

#[tokio::test]
async fn a_tenant_lowers_its_limits_and_cannot_raise_them() {
    let (db, email, wa, sms) = setup().await;
    db.client
        .batch_execute(
            r#"UPDATE et_tenants SET settings = settings || '{"sms_max_recipients": 2, "sms_max_body_chars": 160, "whatsapp_max_body_bytes": 10, "email_max_recipients": 3, "metadata_max_entries": 1}' WHERE id = 'acme'"#,
        )
        .await
        .unwrap();
    let e = insert(&db, sms, &addresses("sms", 3), &[]).await.expect_err("3 sms recipients");
    says(&e, "recipients", "a sms message has at most 2");
    let e = insert(&db, sms, &addresses("sms", 1), &[("body_text", "repeat('x', 161)")]).await.expect_err("161 characters");
    says(&e, "body_text", "sms bodies are limited to 160 characters");
    let e = insert(&db, wa, &addresses("whatsapp", 1), &[("body_text", "'ééééé é'")]).await.expect_err("11 bytes");
    says(&e, "body_text", "13 bytes (UTF-8); whatsapp bodies are limited to 10 bytes");
    let e = insert(&db, email, &addresses("email", 4), &[]).await.expect_err("4 email recipients");
    says(&e, "recipients", "at most 3");
    let e = insert(&db, email, &addresses("email", 1), &[("metadata", r#"'{"a": "1", "b": "2"}'"#)]).await.expect_err("2 entries");
    says(&e, "metadata", "at most 1");
    insert(&db, sms, &addresses("sms", 2), &[("body_text", "repeat('x', 160)")]).await.unwrap();

    // raising past the default, or a value that is not a whole number, refuses the row by name
    for bad in [
        r#"{"sms_max_recipients": 11}"#,
        r#"{"sms_max_recipients": "5"}"#,
        r#"{"sms_max_recipients": 2.5}"#,
        r#"{"sms_max_recipients": 0}"#,
    ] {
        db.client.execute("UPDATE et_tenants SET settings = settings || $1::text::jsonb WHERE id = 'acme'", &[&bad]).await.unwrap();
        let e = insert(&db, sms, &addresses("sms", 1), &[]).await.expect_err(bad);
        says(&e, "tenant_id", "tenant setting sms_max_recipients must be a whole number from 1 to 10");
    }
}

#[tokio::test]
async fn edits_while_pending_approval_are_held_to_the_same_limits() {
    let (db, email, _, _) = setup().await;
    db.client
        .batch_execute("UPDATE et_tenants SET settings = settings || '{\"requires_approval\": true}' WHERE id = 'acme'")
        .await
        .unwrap();
    insert(&db, email, &addresses("email", 1), &[]).await.unwrap();
    let sql = format!("UPDATE et_messages SET recipients = {} WHERE tenant_id = 'acme'", addresses("email", 101));
    let e = db.client.batch_execute(&sql).await.expect_err("101 recipients by edit");
    says(e.as_db_error().unwrap(), "recipients", "at most 100");
    let e = db
        .client
        .batch_execute("UPDATE et_messages SET body_text = repeat('x', 2097153) WHERE tenant_id = 'acme'")
        .await
        .expect_err("a long body by edit");
    says(e.as_db_error().unwrap(), "body_text", "limited to 2097152 bytes");
}

#[tokio::test]
async fn the_api_names_the_field_over_its_limit() {
    let api = Api::start().await;
    let many: Vec<String> = (0..101).map(|i| format!("u{i}@example.com")).collect();
    let cases = [
        (json!({ "to": many, "textBody": "x" }), "to", "101 recipients; a email message has at most 100"),
        (json!({ "to": ["a@example.com"], "cc": many, "textBody": "x" }), "cc", "at most 100"),
        (json!({ "to": ["a@example.com"], "textBody": "x", "metadata": { "note": "x".repeat(1025) } }), "metadata", "at most 1024"),
        (json!({ "to": ["a@example.com"], "textBody": "x", "subject": "s".repeat(256) }), "subject", "at most 255"),
    ];
    for (body, want, text) in cases {
        let (status, v) = api.post("/v1/messages", body).await;
        assert_eq!(status, 400, "{want}: {v}");
        assert_eq!(field(&v), want, "{v}");
        assert!(v["error"]["message"].as_str().unwrap_or("").contains(text), "{want}: {v}");
    }
    let (status, v) =
        api.post("/v1/messages", json!({ "channel": "whatsapp", "to": ["+15551234567"], "textBody": "é".repeat(2049) })).await;
    assert_eq!((status, field(&v)), (400, "textBody"), "{v}");
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 0, "nothing written");
    api.stop().await;
}

/// The limits the OpenAPI document states (`domain::limits`) are the trigger's defaults.
#[tokio::test]
async fn the_documented_defaults_are_the_triggers() {
    let db = TestDb::new().await;
    let sql: serde_json::Value = db.client.query_one("SELECT et_payload_limit_defaults()", &[]).await.unwrap().get(0);
    let rust: serde_json::Map<String, serde_json::Value> =
        pgcourier::domain::limits::DEFAULTS.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    assert_eq!(sql, serde_json::Value::Object(rust));
}
