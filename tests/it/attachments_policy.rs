//! Attachments as seed 002 §9 says: allowed MIME types per tenant (default PDF, images, Office
//! documents, CSV), enforced by the insert trigger for SQL and the API alike; content kept for the
//! tenant's retention period after the message is final, then dropped with the metadata kept
//! (`et_drop_expired_attachment_content`, run by the daemon's maintenance task), and a message
//! whose files are gone is never sent again.

use crate::http_api::{field, later, Api};
use crate::support::{spawn, until, TestDb};
use pgcourier::db::apikeys::Scope;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const SECS: Duration = Duration::from_secs(15);

/// The attachment insert of one transaction that first inserts a message for `acme` on
/// `session`, then the files (name, content type); commits.
async fn insert_with_files(db: &TestDb, session: i64, files: &[(&str, &str)]) -> Result<i64, tokio_postgres::Error> {
    let mut c = db.connect().await;
    let tx = c.transaction().await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text, scheduled_at)
             VALUES ('acme', $1, 'outbound', ARRAY['ann@example.com'], 'Files', 'see attached', now() + interval '300 days') RETURNING id",
            &[&session],
        )
        .await?
        .get(0);
    for (name, ct) in files {
        tx.execute(
            "INSERT INTO et_attachments (tenant_id, message_id, filename, content_type, content) VALUES ('acme', $1, $2, $3, '\\x25504446'::bytea)",
            &[&id, name, ct],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(id)
}

fn refusal(e: &tokio_postgres::Error) -> (String, String, String) {
    let d = e.as_db_error().unwrap_or_else(|| panic!("a database refusal: {e}"));
    (d.column().unwrap_or("").to_owned(), d.message().to_owned(), d.hint().unwrap_or("").to_owned())
}

#[tokio::test]
async fn the_default_list_is_the_seeds_pdf_images_office_documents_and_csv() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    let office = [
        ("a.doc", "application/msword"),
        ("a.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("a.xls", "application/vnd.ms-excel"),
        ("a.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("a.ppt", "application/vnd.ms-powerpoint"),
        ("a.pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
    ];
    let id = insert_with_files(&db, email, &[("invoice.pdf", "application/pdf"), ("logo.png", "image/png"), ("photo.jpg", "IMAGE/JPEG")])
        .await
        .expect("PDF and images pass");
    insert_with_files(&db, email, &office).await.expect("Office documents pass");
    // parameters and case do not count; the type is stored in lower case, its parameters as written
    insert_with_files(&db, email, &[("data.csv", " Text/CSV; charset=UTF-8")]).await.expect("CSV with a charset passes");
    let stored: String =
        db.client.query_one("SELECT content_type FROM et_attachments WHERE filename = 'data.csv'", &[]).await.unwrap().get(0);
    assert_eq!(stored, "text/csv; charset=UTF-8");
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_attachments WHERE message_id = {id}")).await, 3);

    // not on the list: an executable, plain text, a file of unknown kind; nothing is written
    let before = (db.count("SELECT count(*) FROM et_messages").await, db.count("SELECT count(*) FROM et_attachments").await);
    for ct in ["application/x-msdownload", "text/plain", "application/octet-stream", "application/pdfx", "imagex/png"] {
        let e = insert_with_files(&db, email, &[("ok.pdf", "application/pdf"), ("setup.exe", ct)]).await.expect_err(ct);
        let (column, message, hint) = refusal(&e);
        assert_eq!(column, "content_type", "{message}");
        assert!(
            message.starts_with(&format!("et_attachments.content_type: {ct} (setup.exe) is not an allowed attachment type")),
            "{message}"
        );
        assert!(message.contains("allowed: application/pdf, image/*, application/msword") && message.ends_with("text/csv"), "{message}");
        assert!(hint.contains("allowed_attachment_types"), "{hint}");
    }
    assert_eq!(
        (db.count("SELECT count(*) FROM et_messages").await, db.count("SELECT count(*) FROM et_attachments").await),
        before,
        "a refused attachment rolls its transaction back"
    );
}

#[tokio::test]
async fn the_api_names_the_attachment_and_writes_nothing() {
    let api = Api::start().await;
    let pdf = json!({ "filename": "invoice.pdf", "contentType": "application/pdf", "contentBase64": "JVBERg==" });
    let png = json!({ "filename": "logo.png", "contentType": "image/png", "contentBase64": "iVBORw==" });
    let exe = json!({ "filename": "setup.exe", "contentType": "application/x-msdownload", "contentBase64": "TVqQ" });
    let untyped = json!({ "filename": "blob", "contentBase64": "TVqQ" });
    let msg = |files: Value| json!({ "to": "ann@example.com", "subject": "Files", "textBody": "see attached", "scheduledAt": later(), "attachments": files });

    let v = api.send(msg(json!([pdf, png]))).await;
    let (_, m) = api.get(&format!("/v1/messages/{}", v["id"])).await;
    assert_eq!(m["attachments"].as_array().map(Vec::len), Some(2), "{m}");
    assert_eq!(
        (m["attachments"][1]["contentType"].as_str(), m["attachments"][1]["contentDropped"].as_bool()),
        (Some("image/png"), Some(false))
    );
    assert_eq!(m["attachments"][1]["contentDroppedAt"], Value::Null);

    let before = (api.count("SELECT count(*) FROM et_messages").await, api.count("SELECT count(*) FROM et_attachments").await);
    let (s, v) = api.post("/v1/messages", msg(json!([pdf, exe]))).await;
    assert_eq!((s, field(&v)), (400, "attachments[1].contentType"), "{v}");
    let text = v["error"]["message"].as_str().unwrap();
    assert!(text.starts_with("attachments[1].contentType: application/x-msdownload (setup.exe) is not an allowed attachment type; allowed: application/pdf, image/*"), "{v}");
    // without a type a file is application/octet-stream, which the default list does not allow
    let (s, v) = api.post("/v1/messages", msg(json!([untyped]))).await;
    assert_eq!((s, field(&v)), (400, "attachments[0].contentType"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("application/octet-stream (blob) is not an allowed"), "{v}");
    assert_eq!(
        (api.count("SELECT count(*) FROM et_messages").await, api.count("SELECT count(*) FROM et_attachments").await),
        before,
        "nothing written"
    );
    assert_eq!(api.count("SELECT count(*) FROM et_outbound_queue").await, 1, "only the first message is queued");
    api.stop().await;
}

#[tokio::test]
async fn a_tenant_list_replaces_the_default_and_takes_wildcards() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    db.client
        .batch_execute(r#"UPDATE et_tenants SET settings = '{"allowed_attachment_types": ["text/*", " APPLICATION/Zip "]}'"#)
        .await
        .unwrap();
    insert_with_files(&db, email, &[("a.txt", "text/plain; charset=utf-8"), ("b.html", "Text/HTML"), ("c.zip", "application/zip")])
        .await
        .expect("on the tenant's list");
    let e = insert_with_files(&db, email, &[("a.pdf", "application/pdf")]).await.expect_err("the list replaces the default");
    let (column, message, _) = refusal(&e);
    assert_eq!(column, "content_type");
    assert!(message.ends_with("allowed: text/*, application/zip"), "{message}");
    // */* allows anything
    db.client.batch_execute(r#"UPDATE et_tenants SET settings = '{"allowed_attachment_types": ["*/*"]}'"#).await.unwrap();
    insert_with_files(&db, email, &[("setup.exe", "application/x-msdownload")]).await.expect("*/* allows anything");

    // settings that would silently refuse everything or keep everything are refused themselves
    for bad in [
        r#"{"allowed_attachment_types": "application/pdf"}"#,
        r#"{"allowed_attachment_types": []}"#,
        r#"{"allowed_attachment_types": ["pdf"]}"#,
        r#"{"allowed_attachment_types": ["application/pdf", 7]}"#,
        r#"{"attachment_retention_days": "30d"}"#,
        r#"{"attachment_retention_days": -1}"#,
        r#"{"attachment_retention_days": 1.5}"#,
    ] {
        let e = db.client.execute("UPDATE et_tenants SET settings = $1::text::jsonb", &[&bad]).await.expect_err(bad);
        assert_eq!(e.as_db_error().unwrap().constraint(), Some("et_tenants_attachment_settings"), "{bad}: {e}");
    }
    db.client.execute("UPDATE et_tenants SET settings = '{\"attachment_retention_days\": 0}'", &[]).await.expect("0 days is valid");
}

/// Move a final message and its attachments `days` into the past: its last change (the final
/// status) and the attachments' creation. Attachments are frozen, so the backdating of
/// `created_at` runs with triggers off (`session_replication_role = replica`), as a test only.
async fn backdate(db: &TestDb, message: i64, days: i32) {
    let mut c = db.connect().await;
    let tx = c.transaction().await.unwrap();
    tx.execute("UPDATE et_messages SET updated_at = now() - make_interval(days => $2) WHERE id = $1", &[&message, &days]).await.unwrap();
    tx.batch_execute("SET LOCAL session_replication_role = replica").await.unwrap();
    tx.execute("UPDATE et_attachments SET created_at = now() - make_interval(days => $2) WHERE message_id = $1", &[&message, &days])
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn drop_expired(db: &TestDb, limit: i32) -> i32 {
    db.client.query_one("SELECT et_drop_expired_attachment_content($1)", &[&limit]).await.unwrap().get(0)
}

async fn cancel(db: &TestDb, id: i64) {
    db.client.query_one("SELECT et_cancel($1, 'test')", &[&id]).await.unwrap();
}

#[tokio::test]
async fn content_is_dropped_after_the_retention_period_and_the_metadata_kept() {
    // a web node: it never leads, so its maintenance pass does not drop the content before the
    // test's own calls do
    let api = Api::start_with(&[("PGCOURIER_ROLE", "web")]).await;
    let db = &api.db;
    let files = json!([{ "filename": "invoice.pdf", "contentType": "application/pdf", "contentBase64": "JVBERi0xLjQ=" },
                       { "filename": "logo.png", "contentType": "image/png", "contentBase64": "iVBORw0K" }]);
    let send = |files: Value| {
        let api = &api;
        async move {
            let v = api.send(json!({ "to": "ann@example.com", "textBody": "x", "scheduledAt": later(), "attachments": files })).await;
            v["id"].as_i64().unwrap()
        }
    };
    let old_final = send(files.clone()).await;
    let recent_final = send(files.clone()).await;
    let old_queued = send(files.clone()).await;
    cancel(db, old_final).await;
    cancel(db, recent_final).await;
    backdate(db, old_final, 31).await;
    backdate(db, old_queued, 31).await;
    backdate(db, recent_final, 29).await;

    // bounded batches: one attachment, then the other, then nothing
    assert_eq!(drop_expired(db, 1).await, 1);
    assert_eq!(drop_expired(db, 100).await, 1);
    assert_eq!(drop_expired(db, 100).await, 0);
    let rows = db
        .client
        .query(
            "SELECT message_id, filename, content_type, size_bytes, content IS NULL, content_dropped_at IS NOT NULL
               FROM et_attachments ORDER BY message_id, id",
            &[],
        )
        .await
        .unwrap();
    let seen: Vec<(i64, String, String, i32, bool, bool)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))).collect();
    for (message, name, ct, size, no_content, dropped_at) in &seen {
        let dropped = *message == old_final;
        assert_eq!((*no_content, *dropped_at), (dropped, dropped), "{seen:?}");
        assert!(
            matches!((name.as_str(), ct.as_str(), *size), ("invoice.pdf", "application/pdf", 8) | ("logo.png", "image/png", 6)),
            "metadata kept: {seen:?}"
        );
    }

    // the API says so
    let (_, m) = api.get(&format!("/v1/messages/{old_final}")).await;
    for a in m["attachments"].as_array().unwrap() {
        assert_eq!(a["contentDropped"], true, "{m}");
        assert!(a["contentDroppedAt"].as_str().is_some_and(|t| t.starts_with("20")), "{m}");
        assert!(a["sizeBytes"].as_i64().unwrap() > 0, "{m}");
    }
    let (_, m) = api.get(&format!("/v1/messages/{recent_final}")).await;
    assert_eq!(m["attachments"][0]["contentDropped"], false, "within the period: {m}");

    // a tenant's own period: 0 days drops a final message's content at the next pass
    db.client.batch_execute("UPDATE et_tenants SET settings = '{\"attachment_retention_days\": 0}'").await.unwrap();
    assert_eq!(drop_expired(db, 100).await, 2, "recent_final's two files; old_queued is not final");

    // content is dropped only from final messages, and only by dropping it
    let e = db
        .client
        .execute("UPDATE et_attachments SET content = NULL, content_dropped_at = now() WHERE message_id = $1", &[&old_queued])
        .await
        .expect_err("not final");
    assert!(refusal(&e).1.contains("dropped only once the message is final"), "{e}");
    let e =
        db.client.execute("UPDATE et_attachments SET filename = 'x.pdf' WHERE message_id = $1", &[&old_final]).await.expect_err("frozen");
    assert!(refusal(&e).1.contains("frozen"), "{e}");
    // and a new attachment comes with its content
    let e = db
        .client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', {}, 'outbound', ARRAY['a@example.com'], 'x');
             INSERT INTO et_attachments (tenant_id, message_id, filename, content_type, content)
             SELECT 'acme', currval(pg_get_serial_sequence('et_messages', 'id')), 'a.pdf', 'application/pdf', NULL;
             COMMIT;",
            api.email
        ))
        .await
        .expect_err("no content");
    db.client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(refusal(&e).0, "content", "{e}");
    assert!(refusal(&e).1.contains("a.pdf has no content"), "{e}");
    api.stop().await;
}

#[tokio::test]
async fn a_message_whose_files_are_gone_is_neither_retried_nor_resent() {
    let api = Api::start().await;
    let db = &api.db;
    // a file session without a directory: its sends fail
    let broken = db.session("acme", "email", "file", "noreply@acme.example").await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let v = api
            .send(json!({ "channelSessionId": broken, "to": "ann@example.com", "textBody": "x",
                          "attachments": [{ "filename": "invoice.pdf", "contentType": "application/pdf", "contentBase64": "JVBERg==" }] }))
            .await;
        ids.push(v["id"].as_i64().unwrap());
    }
    for id in &ids {
        until(db, &format!("SELECT delivery_status = 'failed' FROM et_messages WHERE id = {id}"), SECS).await;
    }
    let (gone, kept) = (ids[0], ids[1]);
    backdate(db, gone, 31).await;
    // this daemon leads the periodic work, and its first pass may still be running on a loaded
    // machine: it or this call drops the content, and which of them does is no matter here
    drop_expired(db, 100).await;
    let dropped = |id: i64| format!("SELECT count(*) FROM et_attachments WHERE message_id = {id} AND content IS NULL");
    assert_eq!((db.count(&dropped(gone)).await, db.count(&dropped(kept)).await), (1, 0));

    let send = api.key(&[Scope::Send]).await;
    let (s, v) = api.call(Method::POST, &format!("/v1/messages/{gone}/retry"), Some(&send), None).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("attachments (invoice.pdf) was dropped after the retention period"), "{v}");
    let (s, v) = api.call(Method::POST, &format!("/v1/messages/{gone}/resend"), Some(&send), Some(json!({}))).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().starts_with("et_resend: the content of message"), "{v}");
    let e = db.client.execute("UPDATE et_messages SET delivery_status = 'queued' WHERE id = $1", &[&gone]).await.expect_err("psql too");
    assert!(refusal(&e).2.contains("send a new message"), "{e}");
    assert_eq!(db.count("SELECT count(*) FROM et_messages").await, 2, "no copy");

    // the bulk retry leaves it out and takes the other one
    let (s, v) = api.post("/v1/messages/retry", json!({})).await;
    assert_eq!((s, v["queued"].as_i64()), (200, Some(1)), "{v}");
    let retried = |id: i64| {
        format!("SELECT count(*) FROM et_message_events WHERE message_id = {id} AND from_status = 'failed' AND to_status = 'queued'")
    };
    assert_eq!((db.count(&retried(gone)).await, db.count(&retried(kept)).await), (0, 1));
    api.stop().await;
}

#[tokio::test]
async fn the_daemon_drops_expired_content_on_its_maintenance_pass() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    let daemon = spawn(&db, &[("PGCOURIER_MAINTENANCE_INTERVAL", "200ms")]);
    // expired after the daemon started: its first pass (at start) found nothing
    let id = insert_with_files(&db, email, &[("invoice.pdf", "application/pdf")]).await.unwrap();
    let fresh = insert_with_files(&db, email, &[("fresh.pdf", "application/pdf")]).await.unwrap();
    cancel(&db, id).await;
    cancel(&db, fresh).await;
    backdate(&db, id, 31).await;
    until(&db, &format!("SELECT content_dropped_at IS NOT NULL FROM et_attachments WHERE message_id = {id}"), SECS).await;
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_attachments WHERE message_id = {fresh} AND content IS NOT NULL")).await, 1);
    daemon.stop().await;
}

#[tokio::test]
async fn a_claimed_message_without_its_files_fails_instead_of_going_out_without_them() {
    // the triggers keep such a message from being queued; here the rows are changed behind their
    // back, to show that the dispatcher does not send it anyway
    let api = Api::start().await;
    let (db, email) = (&api.db, api.email);
    let mut c = db.connect().await;
    let tx = c.transaction().await.unwrap();
    let id: i64 = tx
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text, scheduled_at)
             VALUES ('acme', $1, 'outbound', ARRAY['ann@example.com'], 'x', now() + interval '2 seconds') RETURNING id",
            &[&email],
        )
        .await
        .unwrap()
        .get(0);
    tx.execute(
        "INSERT INTO et_attachments (tenant_id, message_id, filename, content_type, content) VALUES ('acme', $1, 'invoice.pdf', 'application/pdf', 'x')",
        &[&id],
    )
    .await
    .unwrap();
    tx.batch_execute("SET LOCAL session_replication_role = replica").await.unwrap();
    tx.execute("UPDATE et_attachments SET content = NULL, content_dropped_at = now() WHERE message_id = $1", &[&id]).await.unwrap();
    tx.commit().await.unwrap();
    until(db, &format!("SELECT delivery_status = 'failed' FROM et_messages WHERE id = {id}"), SECS).await;
    let row = db.client.query_one("SELECT last_error, public_id::text FROM et_messages WHERE id = $1", &[&id]).await.unwrap();
    let (error, public_id): (String, String) = (row.get(0), row.get(1));
    assert!(error.contains("invoice.pdf") && error.contains("retention period"), "{error}");
    assert!(!api.outbox.0.join(format!("{public_id}.eml")).exists(), "nothing went out");
    api.stop().await;
}
