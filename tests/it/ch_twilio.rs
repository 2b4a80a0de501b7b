//! Provider `twilio`: the exact Messages API request (form, basic auth, whatsapp: prefixes,
//! StatusCallback), every classification row against Twilio's real payload shapes, and the
//! daemon end to end (sent with the SID stored; 21610 failed and suppressed as unsubscribed).

use crate::fixtures::text_message;
use crate::mock_http::{Answer, MockHttp, Recorded};
use crate::support::TestDb;
use crate::support::{spawn, until};
use base64::Engine as _;
use pgcourier::channels::twilio::Twilio;
use pgcourier::channels::{Attachment, Channel, Outbound, SendError};
use pgcourier::domain::network::Allow;
use pgcourier::domain::outcome::{ErrorClass, SuppressReason};
use pgcourier::domain::vocab;
use serde_json::json;
use std::time::Duration;

/// The mocks listen on 127.0.0.1: these adapters may call loopback (PGCOURIER_NETWORK_ALLOW=loopback).
const LOOPBACK: Allow = Allow { loopback: true, ..Allow::NONE };

const SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const TOKEN: &str = "f00dcafe0123456789abcdef01234567";
const FROM: &str = "+15550001111";
const TO: &str = "+15551234567";
const SECS: Duration = Duration::from_secs(15);

fn path() -> String {
    format!("/2010-04-01/Accounts/{SID}/Messages.json")
}

/// Twilio's 201 answer to a create (abridged to the fields it always carries).
fn created(req: &Recorded, sid: &str) -> Answer {
    let f = req.form();
    let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    Answer::json(
        201,
        json!({
            "account_sid": SID, "api_version": "2010-04-01", "body": get("Body"),
            "date_created": "Thu, 24 Aug 2023 05:01:45 +0000", "date_sent": null, "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
            "direction": "outbound-api", "error_code": null, "error_message": null, "from": get("From"),
            "messaging_service_sid": get("MessagingServiceSid"), "num_media": "0", "num_segments": "1", "price": null,
            "price_unit": "USD", "sid": sid, "status": "queued",
            "subresource_uris": { "media": format!("/2010-04-01/Accounts/{SID}/Messages/{sid}/Media.json") },
            "to": get("To"), "uri": format!("/2010-04-01/Accounts/{SID}/Messages/{sid}.json")
        }),
    )
}

/// Twilio's error body: `{"code","message","more_info","status"}`.
fn twilio_error(status: u16, code: u32, message: &str) -> Answer {
    Answer::json(
        status,
        json!({ "code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status }),
    )
}

fn message(channel: vocab::Channel, to: &[&str], text: &str) -> Outbound {
    text_message(channel, FROM, to, text)
}

fn adapter(mock: &MockHttp, extra: serde_json::Value) -> Twilio {
    let mut config = json!({ "api_base": mock.url(), "timeout_ms": 5000 });
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    Twilio::new(&config, FROM, Some(format!("{SID}:{TOKEN}")), LOOPBACK).expect("adapter")
}

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

async fn fail_with(answer: fn() -> Answer) -> (SendError, Recorded) {
    let mock = MockHttp::start(move |_, _| answer()).await;
    let err = adapter(&mock, json!({})).send(&message(vocab::Channel::Sms, &[TO], "hi")).await.expect_err("a failure");
    (err, mock.requests().remove(0))
}

#[tokio::test]
async fn twilio_sms_success_posts_the_exact_form_with_basic_auth() {
    let mock = MockHttp::start(|r, _| created(r, "SM0123456789abcdef0123456789abcdef")).await;
    let receipt = adapter(&mock, json!({})).send(&message(vocab::Channel::Sms, &[TO], "Your code is 123 & more")).await.expect("sent");
    assert_eq!(receipt.external_id.as_deref(), Some("SM0123456789abcdef0123456789abcdef"));
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, path());
    assert_eq!(r.header("authorization"), Some(basic(SID, TOKEN).as_str()));
    assert_eq!(r.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(r.form(), vec![("To".into(), TO.into()), ("From".into(), FROM.into()), ("Body".into(), "Your code is 123 & more".into())]);
}

#[tokio::test]
async fn twilio_whatsapp_success_prefixes_to_and_from() {
    let mock = MockHttp::start(|r, _| created(r, "SMwa")).await;
    let receipt = adapter(&mock, json!({})).send(&message(vocab::Channel::Whatsapp, &[TO], "Hola")).await.expect("sent");
    assert_eq!(receipt.external_id.as_deref(), Some("SMwa"));
    let r = &mock.requests()[0];
    assert_eq!(r.path, path());
    assert_eq!(
        r.form(),
        vec![("To".into(), format!("whatsapp:{TO}")), ("From".into(), format!("whatsapp:{FROM}")), ("Body".into(), "Hola".into())]
    );
}

#[tokio::test]
async fn twilio_status_callback_and_messaging_service_with_the_token_alone() {
    let mock = MockHttp::start(|r, _| created(r, "SMcb")).await;
    let config = json!({ "api_base": mock.url(), "account_sid": SID, "messaging_service_sid": "MG1234",
                         "status_callback_url": "https://hooks.acme.example/twilio/status" });
    let twilio = Twilio::new(&config, FROM, Some(TOKEN.into()), LOOPBACK).expect("token alone with config.account_sid");
    twilio.send(&message(vocab::Channel::Sms, &[TO], "hi")).await.expect("sent");
    let r = &mock.requests()[0];
    assert_eq!(r.path, path());
    assert_eq!(r.header("authorization"), Some(basic(SID, TOKEN).as_str()));
    assert_eq!(
        r.form(),
        vec![
            ("To".into(), TO.into()),
            ("MessagingServiceSid".into(), "MG1234".into()),
            ("Body".into(), "hi".into()),
            ("StatusCallback".into(), "https://hooks.acme.example/twilio/status".into()),
        ]
    );
}

#[tokio::test]
async fn twilio_one_call_per_recipient() {
    let mock = MockHttp::start(|r, n| created(r, &format!("SM{n}"))).await;
    let receipt = adapter(&mock, json!({})).send(&message(vocab::Channel::Sms, &[TO, "+15557654321"], "hi")).await.expect("sent");
    assert_eq!(receipt.external_id.as_deref(), Some("SM0"));
    let tos: Vec<String> = mock.requests().iter().map(|r| r.form()[0].1.clone()).collect();
    assert_eq!(tos, [TO, "+15557654321"]);
    assert_eq!(receipt.detail.unwrap()["messages"][1]["sid"], "SM1");
}

#[tokio::test]
async fn twilio_several_recipients_partial_failure_is_sent_and_nothing_sent_returns_the_transient_error() {
    // the second number replied STOP: the first got it, so the message counts as sent
    let mock =
        MockHttp::start(
            |r, n| if n == 1 { twilio_error(400, 21610, "Attempt to send to unsubscribed recipient") } else { created(r, "SMok") },
        )
        .await;
    let receipt = adapter(&mock, json!({})).send(&message(vocab::Channel::Sms, &[TO, "+15557654321"], "hi")).await.expect("partly sent");
    assert_eq!(receipt.external_id.as_deref(), Some("SMok"));
    let detail = receipt.detail.unwrap();
    assert_eq!(detail["failed"][0]["to"], "+15557654321");
    assert_eq!(detail["failed"][0]["class"], "suppress");
    // nothing accepted: a transient failure wins over a permanent one, so a retry reaches the rest
    let mock =
        MockHttp::start(|_, n| if n == 0 { twilio_error(400, 21211, "invalid") } else { twilio_error(503, 20503, "Service Unavailable") })
            .await;
    let err = adapter(&mock, json!({}))
        .send(&message(vocab::Channel::Sms, &[TO, "+15557654321", "+15559999999"], "hi"))
        .await
        .expect_err("nothing sent");
    assert_eq!(err.class, ErrorClass::Transient { retry_after: None });
    assert_eq!(mock.requests().len(), 2, "a transient failure stops the loop");
}

#[tokio::test]
async fn twilio_20429_is_rate_limited_and_honours_retry_after() {
    let (err, _) = fail_with(|| twilio_error(429, 20429, "Too Many Requests").with_header("Retry-After", "7")).await;
    assert_eq!(err.class, ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(7)) });
    assert!(err.detail.contains("429") && err.detail.contains("20429") && err.detail.contains("Too Many Requests"), "{}", err.detail);
}

#[tokio::test]
async fn twilio_500_is_transient() {
    let (err, _) = fail_with(|| twilio_error(500, 20500, "Internal Server Error")).await;
    assert_eq!(err.class, ErrorClass::Transient { retry_after: None });
    assert!(err.detail.contains("HTTP 500") && err.detail.contains("20500"), "{}", err.detail);
}

#[tokio::test]
async fn twilio_21211_invalid_to_is_permanent() {
    let (err, _) = fail_with(|| twilio_error(400, 21211, "The 'To' number +15551234567 is not a valid phone number.")).await;
    assert_eq!(err.class, ErrorClass::Permanent);
    assert!(err.detail.contains("21211") && err.detail.contains("is not a valid phone number"), "{}", err.detail);
    assert!(err.detail.contains("https://www.twilio.com/docs/errors/21211"), "{}", err.detail);
}

#[tokio::test]
async fn twilio_21610_suppresses_the_recipient_as_unsubscribed() {
    let (err, _) = fail_with(|| twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")).await;
    assert_eq!(err.class, ErrorClass::Suppress { reason: SuppressReason::Unsubscribed, address: Some(TO.into()) });
    assert!(err.detail.contains("21610") && err.detail.contains("unsubscribed recipient"), "{}", err.detail);
}

#[tokio::test]
async fn twilio_20003_is_permanent_and_names_the_credentials() {
    let (err, r) = fail_with(|| {
        Answer::json(
            401,
            json!({ "code": 20003, "detail": "Your AccountSid or AuthToken was incorrect.",
                                   "message": "Authentication Error - invalid username",
                                   "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401 }),
        )
    })
    .await;
    assert_eq!(err.class, ErrorClass::Permanent);
    assert!(err.detail.contains("20003") && err.detail.contains("AccountSid:AuthToken"), "{}", err.detail);
    assert_eq!(r.header("authorization"), Some(basic(SID, TOKEN).as_str()));
}

#[tokio::test]
async fn twilio_other_4xx_is_permanent_and_network_errors_are_transient() {
    let (err, _) = fail_with(|| twilio_error(400, 21614, "'To' number is not a valid mobile number")).await;
    assert_eq!(err.class, ErrorClass::Permanent);
    assert!(err.detail.contains("21614"), "{}", err.detail);
    // nothing listens on this port any more
    let port = { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port() };
    let twilio =
        Twilio::new(&json!({ "api_base": format!("http://127.0.0.1:{port}") }), FROM, Some(format!("{SID}:{TOKEN}")), LOOPBACK).unwrap();
    let err = twilio.send(&message(vocab::Channel::Sms, &[TO], "hi")).await.expect_err("refused");
    assert_eq!(err.class, ErrorClass::Transient { retry_after: None }, "{}", err.detail);
}

#[tokio::test]
async fn twilio_refuses_attachments_and_bad_secrets() {
    let mock = MockHttp::start(|r, _| created(r, "SMx")).await;
    let mut m = message(vocab::Channel::Sms, &[TO], "see attached");
    m.attachments.push(Attachment { filename: "a.pdf".into(), content_type: "application/pdf".into(), content: vec![1, 2, 3] });
    let err = adapter(&mock, json!({})).send(&m).await.expect_err("attachments refused");
    assert_eq!(err.class, ErrorClass::Invalid, "content the channel cannot carry: the provider is not asked");
    assert!(err.detail.contains("MediaUrl"), "{}", err.detail);
    assert!(mock.requests().is_empty());
    let config = json!({ "api_base": mock.url() });
    for secret in [None, Some("just-a-token".to_string()), Some("user:pass".to_string())] {
        let err = Twilio::new(&config, FROM, secret, LOOPBACK).err().expect("refused");
        assert_eq!(err.class, ErrorClass::Permanent);
        assert!(err.detail.contains("AccountSid:AuthToken"), "{}", err.detail);
    }
}

/// Tenant `acme` and an sms session on provider twilio pointing at `mock`; the secret is set
/// under a reference unique to the test.
async fn twilio_session(db: &TestDb, mock: &MockHttp, reference: &str) -> i64 {
    std::env::set_var(pgcourier::channels::secret_env_name(reference), format!("{SID}:{TOKEN}"));
    db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('acme', 'Acme')").await.unwrap();
    let config = json!({ "api_base": mock.url(), "timeout_ms": 5000, "retry_base_ms": 20, "retry_cap_ms": 100 });
    db.client
        .query_one(
            "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config, credentials_ref)
             VALUES ('acme', 'sms', 'twilio', $1, $2, $3) RETURNING id",
            &[&FROM, &config, &reference],
        )
        .await
        .unwrap()
        .get(0)
}

async fn insert_sms(db: &TestDb, session: i64, to: &str, body: &str) -> i64 {
    db.client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
             VALUES ('acme', $1, 'outbound', ARRAY[$2], $3) RETURNING id",
            &[&session, &to, &body],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn twilio_daemon_sends_an_sms_and_stores_the_sid() {
    let db = TestDb::new().await;
    let mock = MockHttp::start(|r, _| created(r, "SMe2e00000000000000000000000000001")).await;
    let session = twilio_session(&db, &mock, "twilio-e2e-sent").await;
    let daemon = spawn(&db, &[]);
    let id = insert_sms(&db, session, "+1 (555) 123-4567", "Hello Ann").await;
    let got = mock.wait_for(1, SECS).await;
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), SECS).await;
    assert_eq!(got[0].path, path());
    assert_eq!(got[0].header("authorization"), Some(basic(SID, TOKEN).as_str()));
    let form = got[0].form();
    assert_eq!(form[0], ("To".into(), TO.into()), "the trigger normalised the number");
    assert_eq!(form[1], ("From".into(), FROM.into()));
    assert_eq!(form[2], ("Body".into(), "Hello Ann".into()));
    let ext: String = db.client.query_one("SELECT external_message_id FROM et_messages WHERE id = $1", &[&id]).await.unwrap().get(0);
    assert_eq!(ext, "SMe2e00000000000000000000000000001");
    daemon.stop().await;
}

#[tokio::test]
async fn twilio_daemon_21610_fails_and_suppresses_the_number_as_unsubscribed() {
    let db = TestDb::new().await;
    let mock = MockHttp::start(|_, _| twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")).await;
    let session = twilio_session(&db, &mock, "twilio-e2e-stop").await;
    let daemon = spawn(&db, &[]);
    let id = insert_sms(&db, session, TO, "Sale today").await;
    until(&db, &format!("SELECT delivery_status = 'failed' FROM et_messages WHERE id = {id}"), SECS).await;
    let row = db.client.query_one("SELECT last_error, error_class, attempts FROM et_messages WHERE id = $1", &[&id]).await.unwrap();
    let err: String = row.get(0);
    assert!(err.contains("21610") && err.contains("Attempt to send to unsubscribed recipient"), "{err}");
    assert_eq!(row.get::<_, String>(1), "suppress");
    assert_eq!(row.get::<_, i32>(2), 1, "no retry");
    let s = db.client.query_one("SELECT channel, reason, source_message_id FROM et_suppressions WHERE address = $1", &[&TO]).await.unwrap();
    assert_eq!(s.get::<_, String>(0), "sms");
    assert_eq!(s.get::<_, String>(1), "unsubscribed");
    assert_eq!(s.get::<_, i64>(2), id);
    assert_eq!(mock.requests().len(), 1);
    daemon.stop().await;
}
