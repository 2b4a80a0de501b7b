//! Provider `whatsapp_cloud` against a mock Graph API: the exact requests (messages, templates,
//! media uploads) and the classification of Meta's real error payloads; then end to end through
//! the daemon.

use crate::fixtures::text_message;
use crate::mock_http::{Answer, MockHttp, Recorded};
use crate::support::TestDb;
use crate::support::{spawn, until};
use pgcourier::channels::whatsapp_cloud::WhatsappCloud;
use pgcourier::channels::{Attachment, Channel, Outbound, SendError};
use pgcourier::domain::network::Allow;
use pgcourier::domain::outcome::ErrorClass;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The mocks listen on 127.0.0.1: these adapters may call loopback (PGCOURIER_NETWORK_ALLOW=loopback).
const LOOPBACK: Allow = Allow { loopback: true, ..Allow::NONE };

const PHONE_ID: &str = "106540352242922";
const TOKEN: &str = "EAAG-test-token";
const SECS: Duration = Duration::from_secs(15);

fn wamid(n: usize) -> String {
    format!("wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTc{n}")
}

/// Meta's success answer for `POST /messages`.
fn accepted(req: &Recorded, n: usize) -> Answer {
    let to = serde_json::from_slice::<Value>(&req.body).ok().and_then(|v| v["to"].as_str().map(str::to_owned)).unwrap_or_default();
    Answer::json(
        200,
        json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": to, "wa_id": to }],
            "messages": [{ "id": wamid(n) }]
        }),
    )
}

/// Meta's error envelope.
fn graph_error(status: u16, code: i64, message: &str, details: &str) -> Answer {
    Answer::json(
        status,
        json!({
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "error_data": { "messaging_product": "whatsapp", "details": details },
                "error_subcode": 2494055,
                "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"
            }
        }),
    )
}

fn adapter(mock: &MockHttp, extra: Value) -> WhatsappCloud {
    let mut config = json!({ "api_base": mock.url(), "phone_number_id": PHONE_ID, "timeout_ms": 5000 });
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    WhatsappCloud::new(&config, Some(TOKEN.into()), LOOPBACK).expect("adapter")
}

fn message(to: &[&str], text: &str) -> Outbound {
    text_message(pgcourier::domain::vocab::Channel::Whatsapp, "+15550000000", to, text)
}

fn messages_path() -> String {
    format!("/{}/{PHONE_ID}/messages", pgcourier::channels::whatsapp_cloud::DEFAULT_API_VERSION)
}

fn assert_graph_request(r: &Recorded, path: &str) {
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, path);
    assert_eq!(r.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
}

async fn fails_with(answer: fn() -> Answer, extra: Value) -> SendError {
    let mock = MockHttp::start(move |_, _| answer()).await;
    let e = adapter(&mock, extra).send(&message(&["+15551234567"], "Hi")).await.expect_err("the send fails");
    assert_eq!(mock.requests().len(), 1, "one attempt, no retry inside the adapter");
    assert_graph_request(&mock.requests()[0], &messages_path());
    e
}

#[tokio::test]
async fn whatsapp_text_reply_is_sent_with_context_and_returns_the_wamid() {
    let mock = MockHttp::start(accepted).await;
    let mut m = message(&["+15551234567"], "Your order shipped");
    m.in_reply_to = Some("wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQUVCMEY0".into());
    let receipt = adapter(&mock, json!({})).send(&m).await.expect("sent");
    let got = mock.requests();
    assert_eq!(got.len(), 1);
    assert_graph_request(&got[0], &messages_path());
    assert!(got[0].header("content-type").unwrap().starts_with("application/json"));
    assert_eq!(
        got[0].json(),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "15551234567",
            "type": "text",
            "text": { "body": "Your order shipped", "preview_url": false },
            "context": { "message_id": "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQUVCMEY0" }
        })
    );
    assert_eq!(receipt.external_id.as_deref(), Some(wamid(0).as_str()));
    assert_eq!(receipt.detail.unwrap()["messages"][0]["wa_id"], "15551234567");
}

#[tokio::test]
async fn whatsapp_template_with_parameters_and_verbatim_components() {
    let mock = MockHttp::start(accepted).await;
    let wa = adapter(&mock, json!({ "api_version": "v21.0" }));
    let mut m = message(&["+447700900123"], "ignored: the template is the message");
    m.metadata = json!({ "template": { "name": "order_update", "language": "en_US", "parameters": ["Ann", "#42"] } });
    let receipt = wa.send(&m).await.expect("sent");
    assert_eq!(receipt.external_id.as_deref(), Some(wamid(0).as_str()));
    let components = json!([{ "type": "header", "parameters": [{ "type": "image", "image": { "link": "https://acme.example/h.png" } }] }]);
    m.metadata = json!({ "template": { "name": "promo", "language": "pt_BR", "components": components } });
    wa.send(&m).await.expect("sent");
    let got = mock.requests();
    assert_graph_request(&got[0], &format!("/v21.0/{PHONE_ID}/messages"));
    assert_eq!(
        got[0].json(),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "447700900123",
            "type": "template",
            "template": {
                "name": "order_update",
                "language": { "code": "en_US" },
                "components": [{ "type": "body", "parameters": [{ "type": "text", "text": "Ann" }, { "type": "text", "text": "#42" }] }]
            }
        })
    );
    assert_eq!(got[1].json()["template"], json!({ "name": "promo", "language": { "code": "pt_BR" }, "components": components }));
}

#[tokio::test]
async fn whatsapp_attachments_are_uploaded_then_sent_as_document_and_image() {
    let mock = MockHttp::start(|req, n| {
        if req.path.ends_with("/media") {
            Answer::json(200, json!({ "id": format!("4490709327384{n}") }))
        } else {
            accepted(req, n)
        }
    })
    .await;
    let pdf = b"%PDF-1.4\n\x00\x01\xff\xfe binary\r\n--not-a-boundary\r\n%%EOF".to_vec();
    let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec();
    let mut m = message(&["+15551234567"], "Your invoice");
    m.attachments = vec![
        Attachment { filename: "invoice.pdf".into(), content_type: "application/pdf".into(), content: pdf.clone() },
        Attachment { filename: "logo.png".into(), content_type: "image/png".into(), content: png.clone() },
    ];
    let receipt = adapter(&mock, json!({})).send(&m).await.expect("sent");
    let got = mock.requests();
    assert_eq!(got.len(), 4, "upload, document, upload, image: {got:?}");
    let media_path = format!("/{}/{PHONE_ID}/media", pgcourier::channels::whatsapp_cloud::DEFAULT_API_VERSION);
    for (upload, bytes, name, ct) in [(&got[0], &pdf, "invoice.pdf", "application/pdf"), (&got[2], &png, "logo.png", "image/png")] {
        assert_graph_request(upload, &media_path);
        assert!(upload.header("content-type").unwrap().starts_with("multipart/form-data; boundary="));
        let body = upload.body.clone();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("name=\"messaging_product\"\r\n\r\nwhatsapp\r\n"), "{text}");
        assert!(text.contains(&format!("name=\"type\"\r\n\r\n{ct}\r\n")), "{text}");
        assert!(text.contains(&format!("name=\"file\"; filename=\"{name}\"")), "{text}");
        assert!(text.contains(&format!("Content-Type: {ct}")), "{text}");
        assert!(body.windows(bytes.len()).any(|w| w == bytes.as_slice()), "the file bytes arrive intact");
    }
    assert_graph_request(&got[1], &messages_path());
    let doc = got[1].json();
    assert_eq!(doc["type"], "document");
    assert_eq!(doc["to"], "15551234567");
    assert_eq!(doc["document"], json!({ "id": "44907093273840", "filename": "invoice.pdf", "caption": "Your invoice" }));
    let img = got[3].json();
    assert_eq!(img["type"], "image");
    assert_eq!(img["image"], json!({ "id": "44907093273842" }), "the caption goes with the first file only");
    assert_eq!(receipt.external_id.as_deref(), Some(wamid(1).as_str()));
}

#[tokio::test]
async fn whatsapp_130429_throughput_limit_is_rate_limited_and_honours_retry_after() {
    let e = fails_with(
        || {
            graph_error(
                400,
                130429,
                "(#130429) Rate limit hit",
                "Message failed to send because there were too many messages sent from this phone number in a short period of time",
            )
            .with_header("Retry-After", "7")
        },
        json!({}),
    )
    .await;
    assert_eq!(e.class, ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(7)) });
    assert!(e.detail.contains("HTTP 400") && e.detail.contains("130429") && e.detail.contains("Rate limit hit"), "{}", e.detail);
}

#[tokio::test]
async fn whatsapp_131056_pair_rate_limit_delays_only_that_recipient() {
    fn pair() -> Answer {
        graph_error(400, 131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                    "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.")
    }
    let e = fails_with(pair, json!({})).await;
    assert_eq!(e.class, ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(6)) }, "the documented 1 message / 6 s per pair");
    assert!(e.detail.contains("131056") && e.detail.contains("pair rate limit"), "{}", e.detail);
    let e = fails_with(pair, json!({ "pair_rate_delay_ms": 250 })).await;
    assert_eq!(e.class, ErrorClass::RateLimited { retry_after: Some(Duration::from_millis(250)) });

    // Two recipients: the first gets it, the second is throttled; the retry sends only to the second.
    let mock = MockHttp::start(|req, n| if n == 1 { pair() } else { accepted(req, n) }).await;
    let wa = adapter(&mock, json!({}));
    let m = message(&["+15551234567", "+15557654321"], "Hi both");
    let e = wa.send(&m).await.expect_err("second recipient throttled");
    assert!(matches!(e.class, ErrorClass::RateLimited { .. }));
    assert!(e.detail.contains("+15557654321") && e.detail.contains("will not be resent"), "{}", e.detail);
    let receipt = wa.send(&m).await.expect("retry");
    let to: Vec<Value> = mock.requests().iter().map(|r| r.json()["to"].clone()).collect();
    assert_eq!(to, ["15551234567", "15557654321", "15557654321"], "each in turn; no duplicate to the first");
    assert_eq!(receipt.external_id.as_deref(), Some(wamid(0).as_str()));
    let sent = &receipt.detail.unwrap()["messages"];
    assert_eq!(sent[1]["id"], wamid(2));
}

#[tokio::test]
async fn whatsapp_5xx_and_temporary_codes_are_transient() {
    let e = fails_with(
        || graph_error(500, 131000, "(#131000) Something went wrong", "Message failed to send due to an unknown error."),
        json!({}),
    )
    .await;
    assert_eq!(e.class, ErrorClass::Transient { retry_after: None });
    assert!(e.detail.contains("HTTP 500") && e.detail.contains("131000") && e.detail.contains("unknown error"), "{}", e.detail);
    let e = fails_with(|| graph_error(503, 2, "(#2) Service temporarily unavailable", "Temporary due to downtime"), json!({})).await;
    assert_eq!(e.class, ErrorClass::Transient { retry_after: None });
    let e = fails_with(|| Answer { status: 502, headers: vec![], body: "<html>Bad Gateway</html>".into() }, json!({})).await;
    assert_eq!(e.class, ErrorClass::Transient { retry_after: None });
    assert!(e.detail.contains("Bad Gateway"), "{}", e.detail);
}

#[tokio::test]
async fn whatsapp_131026_undeliverable_is_permanent_with_a_reason() {
    let e = fails_with(|| graph_error(400, 131026, "(#131026) Message Undeliverable", "Message Undeliverable."), json!({})).await;
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(
        e.detail.contains("131026") && e.detail.contains("not on WhatsApp") && e.detail.contains("old WhatsApp version"),
        "{}",
        e.detail
    );
}

#[tokio::test]
async fn whatsapp_131047_outside_the_24_hour_window_asks_for_a_template() {
    let e = fails_with(
        || {
            graph_error(
                400,
                131047,
                "(#131047) Re-engagement message",
                "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
            )
        },
        json!({}),
    )
    .await;
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(e.detail.contains("131047"), "{}", e.detail);
    assert!(
        e.detail.contains("outside the 24-hour customer service window: send an approved template message (metadata.template)"),
        "{}",
        e.detail
    );
}

#[tokio::test]
async fn whatsapp_190_expired_token_is_permanent_and_names_the_token() {
    let e = fails_with(
        || Answer::json(401, json!({ "error": {
            "message": "Error validating access token: Session has expired on Friday, 01-Mar-24 10:00:00 PST. The current time is Friday, 01-Mar-24 11:00:00 PST.",
            "type": "OAuthException", "code": 190, "error_subcode": 463, "fbtrace_id": "AbCdEfGh123" } })),
        json!({}),
    )
    .await;
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(e.detail.contains("HTTP 401") && e.detail.contains("code 190") && e.detail.contains("access token"), "{}", e.detail);
    assert!(e.detail.contains("Session has expired"), "{}", e.detail);
}

#[tokio::test]
async fn whatsapp_config_errors_and_connection_failures() {
    let no_id = WhatsappCloud::new(&json!({}), Some(TOKEN.into()), LOOPBACK).err().expect("needs phone_number_id");
    assert!(no_id.detail.contains("config.phone_number_id"), "{}", no_id.detail);
    let no_token = WhatsappCloud::new(&json!({ "phone_number_id": PHONE_ID }), None, LOOPBACK).err().expect("needs a token");
    assert!(no_token.detail.contains("access token") && no_token.detail.contains("credentials_ref"), "{}", no_token.detail);
    assert_eq!(no_token.class, ErrorClass::Permanent);
    // nothing listens on port 9 of 127.0.0.1
    let wa = WhatsappCloud::new(&json!({ "phone_number_id": PHONE_ID, "api_base": "http://127.0.0.1:9" }), Some(TOKEN.into()), LOOPBACK)
        .unwrap();
    let e = wa.send(&message(&["+15551234567"], "Hi")).await.expect_err("refused");
    assert!(e.class.is_transient(), "{e:?}");
    let mut m = message(&["+15551234567"], "Hi");
    m.metadata = json!({ "template": { "name": "x" } });
    let e = wa.send(&m).await.expect_err("language missing");
    assert!(e.class == ErrorClass::Permanent && e.detail.contains("metadata.template.language"), "{e:?}");
}

// ---- end to end through the daemon ----

/// Tenant `acme` with a whatsapp_cloud session on `mock`; the secret in an env var unique to the test.
async fn session(db: &TestDb, mock: &MockHttp, reference: &str, extra: Value) -> i64 {
    std::env::set_var(pgcourier::channels::secret_env_name(reference), format!("token-{reference}"));
    db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('acme', 'Acme') ON CONFLICT DO NOTHING").await.unwrap();
    let mut config =
        json!({ "api_base": mock.url(), "phone_number_id": PHONE_ID, "timeout_ms": 5000, "retry_base_ms": 20, "retry_cap_ms": 100 });
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    db.client
        .query_one(
            "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config, credentials_ref)
             VALUES ('acme', 'whatsapp', 'whatsapp_cloud', '+15550000000', $1, $2) RETURNING id",
            &[&config, &reference],
        )
        .await
        .unwrap()
        .get(0)
}

async fn send(db: &TestDb, session: i64, to: &str, text: &str) -> i64 {
    db.client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
             VALUES ('acme', $1, 'outbound', ARRAY[$2], $3) RETURNING id",
            &[&session, &to, &text],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn whatsapp_daemon_sends_text_and_a_document_and_stores_the_wamid() {
    let db = TestDb::new().await;
    let mock = MockHttp::start(|req, n| {
        if req.path.ends_with("/media") {
            Answer::json(200, json!({ "id": "1166846181421424" }))
        } else {
            accepted(req, n)
        }
    })
    .await;
    let s = session(&db, &mock, "wa-e2e-sent", json!({})).await;
    let daemon = spawn(&db, &[]);
    let text_id: i64 = db
        .client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text, variables)
             VALUES ('acme', $1, 'outbound', ARRAY['whatsapp:+1 (555) 123-4567'], 'Hello {{name}}', '{\"name\": \"Ann\"}') RETURNING id",
            &[&s],
        )
        .await
        .unwrap()
        .get(0);
    let first = mock.wait_for(1, SECS).await;
    assert_eq!(first[0].header("authorization"), Some("Bearer token-wa-e2e-sent"));
    assert_eq!(first[0].json()["to"], "15551234567");
    assert_eq!(first[0].json()["text"]["body"], "Hello Ann");
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {text_id}"), SECS).await;
    let ext: String = db.client.query_one("SELECT external_message_id FROM et_messages WHERE id = $1", &[&text_id]).await.unwrap().get(0);
    assert_eq!(ext, wamid(0));
    let delivery: Value =
        db.client.query_one("SELECT metadata->'delivery' FROM et_messages WHERE id = $1", &[&text_id]).await.unwrap().get(0);
    assert_eq!(delivery["messages"][0], json!({ "to": "15551234567", "wa_id": "15551234567", "id": wamid(0) }), "{delivery}");

    db.client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
             VALUES ('acme', {s}, 'outbound', ARRAY['+15551234567'], 'Your invoice');
             INSERT INTO et_attachments (tenant_id, message_id, filename, content_type, content)
             SELECT 'acme', currval(pg_get_serial_sequence('et_messages', 'id')), 'invoice.pdf', 'application/pdf', '\\x255044460001fffe0d0a2d2d78';
             COMMIT;"
        ))
        .await
        .unwrap();
    let got = mock.wait_for(3, SECS).await;
    assert!(got[1].path.ends_with(&format!("/{PHONE_ID}/media")));
    let bytes = b"%PDF\x00\x01\xff\xfe\r\n--x";
    assert!(got[1].body.windows(bytes.len()).any(|w| w == bytes), "attachment bytes intact");
    assert_eq!(got[2].json()["document"], json!({ "id": "1166846181421424", "filename": "invoice.pdf", "caption": "Your invoice" }));
    until(&db, "SELECT count(*) = 2 FROM et_messages WHERE delivery_status = 'sent'", SECS).await;
    let ext: String = db.client.query_one("SELECT external_message_id FROM et_messages WHERE id <> $1", &[&text_id]).await.unwrap().get(0);
    assert_eq!(ext, wamid(2));
    daemon.stop().await;
}

#[tokio::test]
async fn whatsapp_daemon_fails_131047_with_the_template_advice() {
    let db = TestDb::new().await;
    let mock = MockHttp::start(|_, _| {
        graph_error(
            400,
            131047,
            "(#131047) Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        )
    })
    .await;
    let s = session(&db, &mock, "wa-e2e-131047", json!({})).await;
    let daemon = spawn(&db, &[]);
    let id = send(&db, s, "+15551234567", "Are you still there?").await;
    until(&db, &format!("SELECT delivery_status = 'failed' FROM et_messages WHERE id = {id}"), SECS).await;
    let row = db.client.query_one("SELECT last_error, error_class, attempts FROM et_messages WHERE id = $1", &[&id]).await.unwrap();
    let err: String = row.get(0);
    assert!(err.contains("131047"), "{err}");
    assert!(err.contains("send an approved template message (metadata.template)"), "{err}");
    assert_eq!(row.get::<_, String>(1), "permanent");
    assert_eq!(row.get::<_, i32>(2), 1, "no retry");
    assert_eq!(mock.requests().len(), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn whatsapp_daemon_requeues_131056_with_the_pair_delay_then_sends() {
    let db = TestDb::new().await;
    let mock = MockHttp::start(|req, n| {
        if n == 0 {
            graph_error(400, 131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                        "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.")
        } else {
            accepted(req, n)
        }
    })
    .await;
    let delay = Duration::from_millis(1000);
    let s = session(&db, &mock, "wa-e2e-131056", json!({ "pair_rate_delay_ms": delay.as_millis() as u64 })).await;
    let daemon = spawn(&db, &[]);
    let id = send(&db, s, "+15551234567", "Hi again").await;
    mock.wait_for(1, SECS).await;
    let throttled_at = Instant::now();
    // The daemon's decision: back to queued, due no sooner than the pair delay.
    until(
        &db,
        &format!(
            "SELECT m.delivery_status = 'queued' AND m.error_class = 'rate_limited' AND q.state = 'ready' AND q.run_at > now()
               FROM et_messages m JOIN et_outbound_queue q ON q.tenant_id = m.tenant_id AND q.message_id = m.id WHERE m.id = {id}"
        ),
        SECS,
    )
    .await;
    let ahead: f64 = db
        .client
        .query_one("SELECT extract(epoch FROM run_at - updated_at)::float8 FROM et_outbound_queue WHERE message_id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert!(ahead > 0.8, "run_at is the pair delay ahead, not the 20 ms base backoff: {ahead}s");
    let err: String = db.client.query_one("SELECT last_error FROM et_messages WHERE id = $1", &[&id]).await.unwrap().get(0);
    assert!(err.contains("131056"), "{err}");
    mock.wait_for(2, SECS).await;
    assert!(throttled_at.elapsed() >= delay.mul_f64(0.8), "the retry waited for the pair delay ({:?})", throttled_at.elapsed());
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), SECS).await;
    let row = db.client.query_one("SELECT external_message_id, attempts FROM et_messages WHERE id = $1", &[&id]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), wamid(1));
    assert_eq!(row.get::<_, i32>(1), 2);
    daemon.stop().await;
}
