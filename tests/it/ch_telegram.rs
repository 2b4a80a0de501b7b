//! Provider `telegram_bot`: the Bot API adapter against a mock answering with Telegram's real
//! payloads (one test per classification row), then end to end through the daemon.

use crate::fixtures::text_message;
use crate::mock_http::{Answer, MockHttp, Recorded};
use crate::support::TestDb;
use crate::support::{spawn, until};
use pgcourier::channels::telegram::Telegram;
use pgcourier::channels::{Attachment, Channel, Outbound, SendError};
use pgcourier::domain::network::Allow;
use pgcourier::domain::outcome::{ErrorClass, SuppressReason};
use serde_json::{json, Value};
use std::time::Duration;

/// The mocks listen on 127.0.0.1: these adapters may call loopback (PGCOURIER_NETWORK_ALLOW=loopback).
const LOOPBACK: Allow = Allow { loopback: true, ..Allow::NONE };

const TOKEN: &str = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11";
const SECS: Duration = Duration::from_secs(15);

fn adapter(mock: &MockHttp) -> Telegram {
    Telegram::new(&json!({ "api_base": mock.url(), "timeout_ms": 5000 }), Some(TOKEN.into()), LOOPBACK).expect("adapter")
}

fn message(to: &[&str], text: &str) -> Outbound {
    text_message(pgcourier::domain::vocab::Channel::Telegram, "@acme_bot", to, text)
}

/// Telegram's success answer: the sent Message.
fn sent(message_id: i64, chat_id: i64) -> Answer {
    Answer::json(
        200,
        json!({ "ok": true, "result": { "message_id": message_id, "date": 1_700_000_000,
                 "from": { "id": 123456, "is_bot": true, "first_name": "Acme", "username": "acme_bot" },
                 "chat": { "id": chat_id, "type": "private", "first_name": "Ann" }, "text": "..." } }),
    )
}

/// Telegram's error answer.
fn error(code: u16, description: &str, parameters: Option<Value>) -> Answer {
    let mut body = json!({ "ok": false, "error_code": code, "description": description });
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    Answer::json(code, body)
}

async fn failure(mock: &MockHttp, msg: &Outbound) -> SendError {
    match adapter(mock).send(msg).await {
        Ok(r) => panic!("expected a failure, got a receipt {:?}", r.external_id),
        Err(e) => {
            assert!(!e.detail.contains(TOKEN), "the token leaked into the error: {}", e.detail);
            e
        }
    }
}

/// One part of a multipart/form-data body.
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay[from..].windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

fn multipart(r: &Recorded) -> Vec<Part> {
    let ct = r.header("content-type").expect("content-type");
    assert!(ct.starts_with("multipart/form-data"), "{ct}");
    let boundary = format!("--{}", ct.split("boundary=").nth(1).expect("boundary").trim_matches('"'));
    let b = boundary.as_bytes();
    let mut parts = Vec::new();
    let mut at = find(&r.body, b, 0).expect("first boundary") + b.len();
    while !r.body[at..].starts_with(b"--") {
        let start = at + 2; // CRLF after the boundary
        let head_end = find(&r.body, b"\r\n\r\n", start).expect("part headers");
        let head = String::from_utf8_lossy(&r.body[start..head_end]).into_owned();
        let next = find(&r.body, b, head_end).expect("next boundary");
        let body = r.body[head_end + 4..next - 2].to_vec(); // CRLF before the boundary
        let disposition = head.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition:")).expect("disposition");
        let param = |key: &str| {
            disposition
                .split(';')
                .map(str::trim)
                .find_map(|p| p.strip_prefix(&format!("{key}=\"")).map(|v| v.trim_end_matches('"').to_owned()))
        };
        let content_type = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_owned()));
        parts.push(Part { name: param("name").expect("part name"), filename: param("filename"), content_type, body });
        at = next + b.len();
    }
    parts
}

fn field<'a>(parts: &'a [Part], name: &str) -> Option<&'a Part> {
    parts.iter().find(|p| p.name == name)
}

fn text_field(parts: &[Part], name: &str) -> Option<String> {
    field(parts, name).map(|p| String::from_utf8(p.body.clone()).unwrap())
}

fn binary(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 256) as u8).collect()
}

// ---- adapter rows ----

#[tokio::test]
async fn send_message_posts_json_with_reply_parameters_and_returns_the_message_id() {
    let mock = MockHttp::start(|_, n| sent(501 + n as i64, 4242)).await;
    let mut msg = message(&["4242"], "Your order shipped");
    msg.in_reply_to = Some("77".into());
    let receipt = adapter(&mock).send(&msg).await.expect("sent");
    assert_eq!(receipt.external_id.as_deref(), Some("501"));
    assert!(receipt.detail.is_none(), "one call: nothing else to report");
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/bot{TOKEN}/sendMessage"));
    assert!(r.header("content-type").unwrap().starts_with("application/json"));
    assert_eq!(
        r.json(),
        json!({ "chat_id": 4242, "text": "Your order shipped",
                "reply_parameters": { "message_id": 77, "allow_sending_without_reply": true } })
    );

    // a non-numeric in_reply_to is not a Telegram message id: no reply; @usernames stay strings
    msg.in_reply_to = Some("<abc@example.com>".into());
    msg.to = vec!["@acme_news".into()];
    adapter(&mock).send(&msg).await.expect("sent");
    assert_eq!(mock.requests()[1].json(), json!({ "chat_id": "@acme_news", "text": "Your order shipped" }));
}

#[tokio::test]
async fn several_recipients_are_sent_in_turn_and_the_first_failure_stops_the_send() {
    let mock =
        MockHttp::start(
            |r, n| {
                if r.json()["chat_id"] == 3 {
                    error(400, "Bad Request: chat not found", None)
                } else {
                    sent(10 + n as i64, 1)
                }
            },
        )
        .await;
    let receipt = adapter(&mock).send(&message(&["1", "2"], "hi")).await.expect("sent");
    assert_eq!(receipt.external_id.as_deref(), Some("10"));
    assert_eq!(receipt.detail, Some(json!({ "message_ids": [10, 11] })));
    let chats: Vec<Value> = mock.requests().iter().map(|r| r.json()["chat_id"].clone()).collect();
    assert_eq!(chats, [json!(1), json!(2)]);

    let e = failure(&mock, &message(&["1", "3", "4"], "hi")).await;
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(e.detail.contains("already sent"), "{}", e.detail);
    assert_eq!(mock.requests().len(), 4, "chat 4 is never tried");
}

#[tokio::test]
async fn send_document_uploads_the_bytes_intact_with_the_text_as_caption() {
    let mock = MockHttp::start(|_, _| sent(900, 4242)).await;
    let pdf = binary(70_000);
    let mut msg = message(&["4242"], "Invoice attached");
    msg.in_reply_to = Some("77".into());
    msg.attachments = vec![Attachment { filename: "invoice.pdf".into(), content_type: "application/pdf".into(), content: pdf.clone() }];
    let receipt = adapter(&mock).send(&msg).await.expect("sent");
    assert_eq!(receipt.external_id.as_deref(), Some("900"));
    let got = mock.requests();
    assert_eq!(got.len(), 1, "the short text rides as the caption");
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, format!("/bot{TOKEN}/sendDocument"));
    let parts = multipart(&got[0]);
    assert_eq!(text_field(&parts, "chat_id").as_deref(), Some("4242"));
    assert_eq!(text_field(&parts, "caption").as_deref(), Some("Invoice attached"));
    let reply: Value = serde_json::from_str(&text_field(&parts, "reply_parameters").unwrap()).unwrap();
    assert_eq!(reply, json!({ "message_id": 77, "allow_sending_without_reply": true }));
    let doc = field(&parts, "document").expect("document part");
    assert_eq!(doc.filename.as_deref(), Some("invoice.pdf"));
    assert_eq!(doc.content_type.as_deref(), Some("application/pdf"));
    assert!(doc.body == pdf, "the document bytes arrive intact ({} of {} bytes)", doc.body.len(), pdf.len());
}

#[tokio::test]
async fn a_text_too_long_for_a_caption_goes_first_then_each_document() {
    let mock = MockHttp::start(|_, n| sent(700 + n as i64, 4242)).await;
    let long = "é".repeat(1025);
    let mut msg = message(&["4242"], &long);
    msg.in_reply_to = Some("77".into());
    let (a, b) = (binary(5000), vec![0u8, 255, 13, 10, 45, 45]);
    msg.attachments = vec![
        Attachment { filename: "a.bin".into(), content_type: "application/octet-stream".into(), content: a.clone() },
        Attachment { filename: "b.txt".into(), content_type: "text/plain".into(), content: b.clone() },
    ];
    let receipt = adapter(&mock).send(&msg).await.expect("sent");
    assert_eq!(receipt.external_id.as_deref(), Some("700"));
    assert_eq!(receipt.detail, Some(json!({ "message_ids": [700, 701, 702] })));
    let got = mock.requests();
    let paths: Vec<&str> = got.iter().map(|r| r.path.rsplit('/').next().unwrap()).collect();
    assert_eq!(paths, ["sendMessage", "sendDocument", "sendDocument"]);
    assert_eq!(got[0].json()["text"], long.as_str());
    assert_eq!(got[0].json()["reply_parameters"]["message_id"], 77, "the first message answers");
    for (r, bytes) in [(&got[1], &a), (&got[2], &b)] {
        let parts = multipart(r);
        assert!(field(&parts, "caption").is_none());
        assert!(field(&parts, "reply_parameters").is_none());
        assert!(&field(&parts, "document").unwrap().body == bytes);
    }
}

#[tokio::test]
async fn too_many_requests_is_rate_limited_for_retry_after() {
    let mock = MockHttp::start(|_, _| error(429, "Too Many Requests: retry after 35", Some(json!({ "retry_after": 35 })))).await;
    let e = failure(&mock, &message(&["4242"], "hi")).await;
    assert_eq!(e.class, ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(35)) });
    assert!(e.detail.contains("429") && e.detail.contains("Too Many Requests: retry after 35"), "{}", e.detail);
    assert_eq!(mock.requests().len(), 1, "no retry inside the adapter");
}

#[tokio::test]
async fn server_errors_and_connection_failures_are_transient() {
    let mock = MockHttp::start(|_, _| error(500, "Internal Server Error", None)).await;
    let e = failure(&mock, &message(&["4242"], "hi")).await;
    assert_eq!(e.class, ErrorClass::Transient { retry_after: None });
    assert!(e.detail.contains("HTTP 500") && e.detail.contains("Internal Server Error"), "{}", e.detail);

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // closed again
    let closed = Telegram::new(&json!({ "api_base": format!("http://127.0.0.1:{port}") }), Some(TOKEN.into()), LOOPBACK).unwrap();
    let e = closed.send(&message(&["4242"], "hi")).await.expect_err("nothing listens");
    assert_eq!(e.class, ErrorClass::Transient { retry_after: None });
    assert!(!e.detail.contains(TOKEN), "{}", e.detail);
}

#[tokio::test]
async fn forbidden_blocked_by_the_user_suppresses_that_chat() {
    let mock = MockHttp::start(|r, _| {
        if r.json()["chat_id"] == 9 {
            error(403, "Forbidden: bot can't initiate conversation with a user", None)
        } else {
            error(403, "Forbidden: bot was blocked by the user", None)
        }
    })
    .await;
    let e = failure(&mock, &message(&["4242"], "hi")).await;
    assert_eq!(e.class, ErrorClass::Suppress { reason: SuppressReason::Blocked, address: Some("4242".into()) });
    assert!(e.detail.contains("403") && e.detail.contains("bot was blocked by the user"), "{}", e.detail);
    // a 403 that is not about this recipient blocking us is permanent but suppresses nothing
    let e = failure(&mock, &message(&["9"], "hi")).await;
    assert_eq!(e.class, ErrorClass::Permanent);
}

#[tokio::test]
async fn bad_request_chat_not_found_is_permanent() {
    let mock = MockHttp::start(|_, _| error(400, "Bad Request: chat not found", None)).await;
    let e = failure(&mock, &message(&["4242"], "hi")).await;
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(e.detail.contains("HTTP 400") && e.detail.contains("Bad Request: chat not found"), "{}", e.detail);
}

#[tokio::test]
async fn unauthorized_is_permanent_and_says_the_token_is_wrong() {
    let mock = MockHttp::start(|_, _| error(401, "Unauthorized", None)).await;
    let e = failure(&mock, &message(&["4242"], "hi")).await;
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(e.detail.contains("token is wrong") && e.detail.contains("401"), "{}", e.detail);
}

#[tokio::test]
async fn a_migrated_group_is_retried_once_to_the_supergroup_and_the_receipt_says_so() {
    let mock = MockHttp::start(|r, _| {
        if r.json()["chat_id"] == -4001 {
            error(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                Some(json!({ "migrate_to_chat_id": -1001557912345i64 })),
            )
        } else {
            sent(321, -1001557912345)
        }
    })
    .await;
    let receipt = adapter(&mock).send(&message(&["-4001"], "standup in 5")).await.expect("sent after the migration");
    assert_eq!(receipt.external_id.as_deref(), Some("321"));
    assert_eq!(receipt.detail, Some(json!({ "migrated_to_chat_id": -1001557912345i64, "from_chat_id": -4001 })));
    let got = mock.requests();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].path, format!("/bot{TOKEN}/sendMessage"));
    assert_eq!(got[1].json(), json!({ "chat_id": -1001557912345i64, "text": "standup in 5" }));

    // only once: a second migration answer is permanent
    let looping = MockHttp::start(|_, n| {
        error(400, "Bad Request: group chat was upgraded to a supergroup chat", Some(json!({ "migrate_to_chat_id": -1000 - n as i64 })))
    })
    .await;
    let e = failure(&looping, &message(&["-4001"], "x")).await;
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(e.detail.contains("upgraded to a supergroup"), "{}", e.detail);
    assert_eq!(looping.requests().len(), 2);
}

#[tokio::test]
async fn a_missing_or_malformed_token_or_api_base_is_refused_at_construction() {
    let named = |r: Result<Telegram, SendError>| match r {
        Ok(_) => panic!("expected a refusal"),
        Err(e) => {
            assert_eq!(e.class, ErrorClass::Permanent);
            e.detail
        }
    };
    assert!(named(Telegram::new(&json!({}), None, LOOPBACK)).contains("secret"));
    let bad = named(Telegram::new(&json!({}), Some("not a token/../x".into()), LOOPBACK));
    assert!(bad.contains("not a bot token") && !bad.contains("not a token/"), "{bad}");
    assert!(named(Telegram::new(&json!({ "api_base": 5 }), Some(TOKEN.into()), LOOPBACK)).contains("config.api_base"));
    assert!(named(Telegram::new(&json!({ "timeout_ms": "x" }), Some(TOKEN.into()), LOOPBACK)).contains("config.timeout_ms"));
}

// ---- end to end through the daemon ----

/// Tenant `acme` with a telegram_bot session pointing at `mock`, its secret under `reference`.
async fn session(db: &TestDb, mock: &MockHttp, reference: &str) -> i64 {
    std::env::set_var(pgcourier::channels::secret_env_name(reference), TOKEN);
    db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('acme', 'Acme') ON CONFLICT DO NOTHING").await.unwrap();
    let config = json!({ "api_base": mock.url(), "timeout_ms": 5000, "retry_base_ms": 20, "retry_cap_ms": 100 });
    db.client
        .query_one(
            "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config, credentials_ref)
             VALUES ('acme', 'telegram', 'telegram_bot', '@acme_bot', $1, $2) RETURNING id",
            &[&config, &reference],
        )
        .await
        .unwrap()
        .get(0)
}

async fn insert(db: &TestDb, session: i64, to: &str, text: &str) -> i64 {
    db.client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text, in_reply_to)
             VALUES ('acme', $1, 'outbound', ARRAY[$2], $3, '77') RETURNING id",
            &[&session, &to, &text],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn daemon_sends_a_telegram_message_and_stores_its_message_id() {
    let db = TestDb::new().await;
    let mock = MockHttp::start(|_, _| sent(4711, 4242)).await;
    let s = session(&db, &mock, "tg-e2e-sent").await;
    let daemon = spawn(&db, &[]);
    let id = insert(&db, s, "4242", "Hello Ann").await;
    let got = mock.wait_for(1, SECS).await;
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), SECS).await;
    assert_eq!(got[0].path, format!("/bot{TOKEN}/sendMessage"));
    let body = got[0].json();
    assert_eq!(body["chat_id"], 4242);
    assert_eq!(body["reply_parameters"]["message_id"], 77);
    let ext: String = db.client.query_one("SELECT external_message_id FROM et_messages WHERE id = $1", &[&id]).await.unwrap().get(0);
    assert_eq!(ext, "4711");
    daemon.stop().await;
}

#[tokio::test]
async fn daemon_sends_an_attachment_as_a_document_byte_for_byte() {
    let db = TestDb::new().await;
    let mock = MockHttp::start(|_, _| sent(4800, 4242)).await;
    let s = session(&db, &mock, "tg-e2e-doc").await;
    let pdf = binary(40_000);
    let mut c = db.connect().await;
    let tx = c.transaction().await.unwrap();
    let id: i64 = tx
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
             VALUES ('acme', $1, 'outbound', ARRAY['4242'], 'Your invoice') RETURNING id",
            &[&s],
        )
        .await
        .unwrap()
        .get(0);
    tx.execute(
        "INSERT INTO et_attachments (tenant_id, message_id, filename, content_type, content) VALUES ('acme', $1, 'invoice.pdf', 'application/pdf', $2)",
        &[&id, &pdf],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let daemon = spawn(&db, &[]);
    let got = mock.wait_for(1, SECS).await;
    until(&db, &format!("SELECT delivery_status = 'sent' AND external_message_id = '4800' FROM et_messages WHERE id = {id}"), SECS).await;
    let parts = multipart(&got[0]);
    assert_eq!(text_field(&parts, "caption").as_deref(), Some("Your invoice"));
    assert!(field(&parts, "document").unwrap().body == pdf, "the stored bytes arrive intact");
    daemon.stop().await;
}

#[tokio::test]
async fn daemon_fails_a_message_to_a_user_who_blocked_the_bot_and_suppresses_the_chat() {
    let db = TestDb::new().await;
    let mock = MockHttp::start(|_, _| error(403, "Forbidden: bot was blocked by the user", None)).await;
    let s = session(&db, &mock, "tg-e2e-blocked").await;
    let daemon = spawn(&db, &[]);
    let id = insert(&db, s, "4242", "hi").await;
    until(&db, &format!("SELECT delivery_status = 'failed' FROM et_messages WHERE id = {id}"), SECS).await;
    let row = db.client.query_one("SELECT last_error, error_class, attempts FROM et_messages WHERE id = $1", &[&id]).await.unwrap();
    let err: String = row.get(0);
    assert!(err.contains("403") && err.contains("bot was blocked by the user"), "{err}");
    assert!(!err.contains(TOKEN));
    assert_eq!(row.get::<_, String>(1), "suppress");
    assert_eq!(row.get::<_, i32>(2), 1, "no retry");
    let sup = db
        .client
        .query_one("SELECT reason, source_message_id FROM et_suppressions WHERE channel = 'telegram' AND address = '4242'", &[])
        .await
        .unwrap();
    assert_eq!(sup.get::<_, String>(0), "blocked");
    assert_eq!(sup.get::<_, i64>(1), id);
    assert_eq!(mock.requests().len(), 1);
    // the next message to that chat is suppressed at insert and never reaches Telegram
    let next = insert(&db, s, "4242", "again").await;
    let status: String = db.client.query_one("SELECT delivery_status FROM et_messages WHERE id = $1", &[&next]).await.unwrap().get(0);
    assert_eq!(status, "suppressed");
    daemon.stop().await;
}

#[tokio::test]
async fn daemon_follows_a_group_migration_and_records_it_in_delivery_metadata() {
    let db = TestDb::new().await;
    let mock = MockHttp::start(|r, _| {
        if r.json()["chat_id"] == -4001 {
            error(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                Some(json!({ "migrate_to_chat_id": -1001557912345i64 })),
            )
        } else {
            sent(99, -1001557912345)
        }
    })
    .await;
    let s = session(&db, &mock, "tg-e2e-migrate").await;
    let daemon = spawn(&db, &[]);
    let id = insert(&db, s, "-4001", "standup in 5").await;
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), SECS).await;
    let row = db
        .client
        .query_one(
            "SELECT external_message_id, metadata->'delivery'->>'migrated_to_chat_id', metadata->'delivery'->>'from_chat_id'
               FROM et_messages WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "99");
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("-1001557912345"), "Receipt.detail merged under metadata.delivery");
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("-4001"));
    assert_eq!(mock.requests().len(), 2);
    daemon.stop().await;
}
