//! Attachments: limits enforced at insert, frozen with the content, delivered byte-for-byte.

use crate::smtp_sink::SmtpSink;
use crate::support::TestDb;
use crate::support::{smtp_session, spawn, until};
use base64::Engine;
use std::time::Duration;

/// The decoded body of the MIME part whose headers name `filename`.
fn part(data: &str, filename: &str) -> Vec<u8> {
    let lines: Vec<&str> = data.split("\r\n").collect();
    let marker = format!("filename=\"{filename}\"");
    let at = lines.iter().position(|l| l.contains(&marker)).unwrap_or_else(|| panic!("no part named {filename}"));
    let body_start = at + lines[at..].iter().position(|l| l.is_empty()).unwrap() + 1;
    let body: String = lines[body_start..].iter().take_while(|l| !l.starts_with("--")).map(|l| l.trim()).collect();
    base64::engine::general_purpose::STANDARD.decode(body).expect("base64 part")
}

/// One outbound email (subject, text, html) to ann@example.com with `files` (name, content type,
/// bytes), inserted in one transaction as an application would; returns the message id.
async fn send_with_files(db: &TestDb, session: i64, (subject, text, html): (&str, &str, &str), files: &[(&str, &str, &Vec<u8>)]) -> i64 {
    let mut c = db.connect().await;
    let tx = c.transaction().await.unwrap();
    let id: i64 = tx
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text, body_html)
             VALUES ('acme', $1, 'outbound', ARRAY['ann@example.com'], $2, $3, $4) RETURNING id",
            &[&session, &subject, &text, &html],
        )
        .await
        .unwrap()
        .get(0);
    for (name, ct, bytes) in files {
        tx.execute(
            "INSERT INTO et_attachments (tenant_id, message_id, filename, content_type, content) VALUES ('acme', $1, $2, $3, $4)",
            &[&id, name, ct, bytes],
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    id
}

#[tokio::test]
async fn an_email_with_two_attachments_arrives_byte_for_byte() {
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    let pdf: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let png: Vec<u8> = (0..3_000u32).map(|i| (255 - i % 256) as u8).collect();
    let id = send_with_files(
        &db,
        session,
        ("Invoice", "See attached", "<p>See attached</p>"),
        &[("invoice.pdf", "application/pdf", &pdf), ("logo.png", "Image/PNG", &png)],
    )
    .await;
    let daemon = spawn(&db, &[]);
    let got = sink.wait_for(1, Duration::from_secs(15)).await;
    assert!(got[0].header("Content-Type").unwrap().contains("multipart/mixed"));
    assert_eq!(part(&got[0].data, "invoice.pdf"), pdf);
    assert_eq!(part(&got[0].data, "logo.png"), png);
    assert!(got[0].data.contains("Content-Type: image/png"), "content type normalised");
    assert!(got[0].data.contains("See attached"));
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), Duration::from_secs(10)).await;
    // sent: the attachments are frozen with the content
    let e = db.client.execute("DELETE FROM et_attachments", &[]).await.expect_err("frozen");
    assert!(e.as_db_error().unwrap().message().contains("frozen"));
    daemon.stop().await;
}

#[tokio::test]
async fn attachments_over_the_limits_are_refused_at_insert() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    db.client
        .execute(
            "UPDATE et_tenants SET settings = '{\"attachment_max_file_bytes\": 1000, \"attachment_max_message_bytes\": 1500, \"attachment_max_files\": 2}'",
            &[],
        )
        .await
        .unwrap();
    let insert = |files: &[(&str, &str, usize)]| {
        let mut sql = format!(
            "BEGIN; INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], 'x');"
        );
        for (name, ct, size) in files {
            sql.push_str(&format!(
                "INSERT INTO et_attachments (tenant_id, message_id, filename, content_type, content)
                 SELECT 'acme', currval(pg_get_serial_sequence('et_messages', 'id')), '{name}', '{ct}', decode(repeat('ab', {size}), 'hex');"
            ));
        }
        sql.push_str("COMMIT;");
        sql
    };
    let cases = [
        (vec![("big.pdf", "application/pdf", 1001)], "the limit per file is 1000 bytes"),
        (vec![("a.pdf", "application/pdf", 800), ("b.pdf", "application/pdf", 800)], "the limit per message is 1500 bytes"),
        (vec![("a", "text/csv", 1), ("b", "text/csv", 1), ("c", "text/csv", 1)], "would have 3 attachments; the limit is 2"),
        (vec![("../etc/passwd", "text/csv", 1)], "is not a file name"),
        (vec![("a.txt", "text", 1)], "is not a MIME type"),
    ];
    for (files, rule) in cases {
        let e = db.client.batch_execute(&insert(&files)).await.expect_err(rule);
        let msg = e.as_db_error().unwrap().message().to_owned();
        assert!(msg.contains(rule), "{msg}");
        db.client.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(db.count("SELECT count(*) FROM et_messages").await, 0, "nothing half-written");
        assert_eq!(db.count("SELECT count(*) FROM et_attachments").await, 0);
    }
    // within the limits: fine
    db.client.batch_execute(&insert(&[("a.csv", "text/csv", 700), ("b.pdf", "application/pdf", 700)])).await.unwrap();
    assert_eq!(db.count("SELECT sum(size_bytes)::bigint FROM et_attachments").await, 1400);
    // a queued message from an earlier transaction is frozen: no attachment can be added later
    let e = db
        .client
        .batch_execute(
            "INSERT INTO et_attachments (tenant_id, message_id, filename, content) SELECT 'acme', id, 'late.txt', '\\x00' FROM et_messages",
        )
        .await
        .expect_err("frozen");
    assert!(e.as_db_error().unwrap().message().contains("frozen"));
}

/// What a strict MTA (Postfix `smtpd_forbid_bare_newline`) or a DKIM verifier would object to in
/// the DATA as received: a line not ended by CRLF, a bare CR, a line over 998 octets, an 8-bit octet.
fn wire_faults(data: &str) -> Vec<String> {
    let mut faults = Vec::new();
    for (n, line) in data.split_inclusive('\n').enumerate() {
        let Some(content) = line.strip_suffix("\r\n") else {
            faults.push(format!("line {n} does not end in CRLF: {line:?}"));
            continue;
        };
        if content.contains('\r') {
            faults.push(format!("line {n} has a bare CR: {content:?}"));
        }
        if content.len() > 998 {
            faults.push(format!("line {n} is {} octets long", content.len()));
        }
        if !content.is_ascii() {
            faults.push(format!("line {n} is not 7-bit: {content:?}"));
        }
    }
    faults
}

#[tokio::test]
async fn attachments_and_bodies_arrive_as_strict_mime() {
    use mail_parser::MimeHeaders;
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    // text and unknown binary files are not on the seed's default list: this tenant allows them
    db.client
        .batch_execute("UPDATE et_tenants SET settings = '{\"allowed_attachment_types\": [\"text/plain\", \"application/octet-stream\"]}'")
        .await
        .unwrap();
    let long = "lorem ipsum ".repeat(150); // one 1,800-character line
    let text = format!("Grüße aus Köln\nbare LF\rbare CR\r\n{long}\nend");
    let html = format!("<p>Grüße</p>\n<p>{long}</p>");
    let notes = b"first line\nsecond line\n.\n\nno newline at the end".to_vec();
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let resume = "Grüße\nRésumé — 履歴書\n".as_bytes().to_vec();
    let files: [(&str, &str, &Vec<u8>); 4] = [
        ("notes.txt", "text/plain", &notes),
        ("all-bytes.bin", "application/octet-stream", &all_bytes),
        ("Grüße résumé.txt", "text/plain", &resume),
        ("report; \"final\" v2.txt", "text/plain", &notes),
    ];
    let id = send_with_files(&db, session, ("Files", &text, &html), &files).await;
    let daemon = spawn(&db, &[]);
    let got = sink.wait_for(1, Duration::from_secs(15)).await;
    let data = &got[0].data;
    assert_eq!(wire_faults(data), Vec::<String>::new(), "{data}");

    let parsed = mail_parser::MessageParser::default().parse(data.as_bytes()).expect("an independent parser reads it");
    // line ends as written; the parser may keep the CRLF that ends the last line
    let lines = |s: &str| s.replace("\r\n", "\n").replace('\r', "\n").trim_end_matches('\n').to_owned();
    assert_eq!(lines(&parsed.body_text(0).unwrap()), lines(&text));
    assert_eq!(lines(&parsed.body_html(0).unwrap()), lines(&html));
    let parts: Vec<_> = parsed.attachments().collect();
    assert_eq!(parts.len(), files.len(), "{data}");
    for ((name, ct, bytes), part) in files.iter().zip(parts) {
        let raw = data[part.raw_header_offset() as usize..part.raw_body_offset() as usize].replace("\r\n ", " ");
        assert_eq!(part.attachment_name(), Some(*name), "{raw}");
        assert!(part.is_content_type(ct.split('/').next().unwrap(), ct.split('/').nth(1).unwrap()), "{raw}");
        assert_eq!(part.content_transfer_encoding(), Some("base64"), "{raw}");
        assert_eq!(part.contents(), bytes.as_slice(), "{name} arrives byte for byte");
        let cd = raw.lines().find(|l| l.starts_with("Content-Disposition:")).expect("Content-Disposition");
        assert!(cd.contains(" filename=\""), "a plain filename= for readers without RFC 2231: {cd}");
        if !name.is_ascii() {
            assert!(cd.contains(" filename*=utf-8''"), "the RFC 2231 form: {cd}");
        }
    }
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), Duration::from_secs(10)).await;
    daemon.stop().await;
}
