//! Twilio: form-encoded webhooks signed with `X-Twilio-Signature` (HMAC-SHA1 over the URL and
//! the sorted parameters).
//!
//! The tests marked `ignore` need HMAC-SHA1 in the daemon, i.e. the `sha1` crate in
//! Cargo.toml (see `src/http/providers/twilio.rs`, `hmac_sha1`); without it the route answers a
//! signed request with 501. Run them with `cargo test --test it provider_webhooks::twilio -- --include-ignored`.

use super::sign::twilio_signature;
use super::{delivery, expect_error, fixture, inbound, secret, security_events, sent_outbound, session, Fixture};
use serde_json::json;

const SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const TOKEN: &str = "twilio-auth-token-0123456789abcdef";

/// A session whose signed URL is the test server's base + path (`config.public_base_url`).
async fn twilio_session(f: &Fixture, channel: &str, address: &str) -> i64 {
    let config = json!({ "public_base_url": f.app.base });
    session(&f.db, channel, "twilio", address, config, Some(&secret(&format!("{SID}:{TOKEN}")))).await
}

fn path(session: i64) -> String {
    format!("/v1/providers/twilio/{session}")
}

/// POST `params`, signed with `token` for `signed_url` (unsigned if `token` is `None`).
async fn post(f: &Fixture, session: i64, params: &[(&str, &str)], token: Option<&str>, signed_url: &str) -> reqwest::Response {
    let mut request = f.app.http.post(f.app.url(&path(session))).form(params);
    if let Some(token) = token {
        request = request.header("x-twilio-signature", twilio_signature(token, signed_url, params));
    }
    request.send().await.unwrap()
}

fn sms<'a>(sid: &'a str, from: &'a str, body: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ToCountry", "US"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("SmsSid", sid),
        ("SmsStatus", "received"),
        ("Body", body),
        ("To", "+15550001111"),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", SID),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
}

#[tokio::test]
async fn an_unsigned_request_is_401_and_writes_nothing() {
    let f = fixture().await;
    let s = twilio_session(&f, "sms", "+15550001111").await;
    let url = f.app.url(&path(s));
    expect_error(post(&f, s, &sms("SM1", "+15551234567", "hi"), None, &url).await, 401, "unauthorized").await;
    assert_eq!(f.db.count("SELECT count(*) FROM et_messages").await, 0);
    let events = security_events(&f.db).await;
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].0.as_deref(), events[0].1.as_str(), events[0].2.as_str()), (Some("acme"), "twilio", "bad_webhook_signature"));
    f.app.stop().await;
}

#[tokio::test]
async fn a_signed_message_is_inserted_once_and_a_replay_is_harmless() {
    let f = fixture().await;
    let s = twilio_session(&f, "whatsapp", "+15550001111").await;
    let url = f.app.url(&path(s));
    let params = sms("SM0123456789abcdef0123456789abcdef", "whatsapp:+15551234567", "Is the shop open today?");
    let first = post(&f, s, &params, Some(TOKEN), &url).await;
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(first.headers()["content-type"], "text/xml");
    assert!(first.text().await.unwrap().contains("<Response/>"));
    let again = post(&f, s, &params, Some(TOKEN), &url).await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(
        inbound(&f.db, s).await,
        vec![("SM0123456789abcdef0123456789abcdef".into(), "+15551234567".into(), Some("Is the shop open today?".into()))]
    );
    // the exact URL given to Twilio (config.webhook_url) wins over the base URL
    let exact = format!("https://hooks.acme.example/twilio/{s}?tenant=acme");
    f.db.client
        .execute(
            "UPDATE et_channel_sessions SET config = config || jsonb_build_object('webhook_url', $2::text) WHERE id = $1",
            &[&s, &exact],
        )
        .await
        .unwrap();
    let second = sms("SM2", "whatsapp:+15551234567", "and tomorrow?");
    assert_eq!(post(&f, s, &second, Some(TOKEN), &exact).await.status().as_u16(), 200);
    assert_eq!(inbound(&f.db, s).await.len(), 2);
    assert!(security_events(&f.db).await.is_empty());
    f.app.stop().await;
}

#[tokio::test]
async fn a_nul_character_in_a_parameter_is_400_naming_it() {
    let f = fixture().await;
    let s = twilio_session(&f, "sms", "+15550001111").await;
    let url = f.app.url(&path(s));
    let params = sms("SM9", "+15551234567", "a\u{0}b");
    let body = expect_error(post(&f, s, &params, Some(TOKEN), &url).await, 400, "invalid_field").await;
    assert_eq!(body["error"]["field"], "Body", "{body}");
    assert_eq!(f.db.count("SELECT count(*) FROM et_messages").await, 0);
    f.app.stop().await;
}

#[tokio::test]
async fn forged_signatures_are_401_and_write_nothing() {
    let f = fixture().await;
    let s = twilio_session(&f, "sms", "+15550001111").await;
    let url = f.app.url(&path(s));
    let params = sms("SM3", "+15551234567", "let me in");
    expect_error(post(&f, s, &params, Some("another-accounts-token"), &url).await, 401, "unauthorized").await;
    expect_error(post(&f, s, &params, Some(TOKEN), "https://elsewhere.example/hook").await, 401, "unauthorized").await;
    // a valid signature for other parameters does not carry over
    let signature = twilio_signature(TOKEN, &url, &sms("SM3", "+15551234567", "something else"));
    let swapped = f.app.http.post(&url).header("x-twilio-signature", signature).form(&params).send().await.unwrap();
    expect_error(swapped, 401, "unauthorized").await;
    assert_eq!(f.db.count("SELECT count(*) FROM et_messages").await, 0);
    let reasons: Vec<String> = security_events(&f.db).await.into_iter().map(|e| e.3).collect();
    assert_eq!(reasons, vec!["signature_mismatch"; 3]);
    f.app.stop().await;
}

#[tokio::test]
async fn status_callbacks_land_in_metadata_delivery_of_the_sent_message() {
    let f = fixture().await;
    let s = twilio_session(&f, "sms", "+15550001111").await;
    let url = f.app.url(&path(s));
    let id = sent_outbound(&f.db, s, "+15551234567", "SMout0000000000000000000000000001").await;
    let callback = |status: &'static str, error: Option<&'static str>| {
        let mut p = vec![
            ("SmsSid", "SMout0000000000000000000000000001"),
            ("SmsStatus", status),
            ("MessageStatus", status),
            ("To", "+15551234567"),
            ("MessageSid", "SMout0000000000000000000000000001"),
            ("AccountSid", SID),
            ("From", "+15550001111"),
            ("ApiVersion", "2010-04-01"),
        ];
        if let Some(code) = error {
            p.push(("ErrorCode", code));
        }
        p
    };
    let delivered = post(&f, s, &callback("delivered", None), Some(TOKEN), &url).await;
    assert_eq!(delivered.status().as_u16(), 200);
    let (status, d) = delivery(&f.db, id).await;
    assert_eq!(status, "sent", "delivery_status is not changed by provider statuses");
    assert_eq!(d["provider_status"], "delivered");
    assert!(d["provider_status_at"].is_string(), "{d}");
    assert_eq!(inbound(&f.db, s).await.len(), 0, "a status callback is not an inbound message");

    let id2 = sent_outbound(&f.db, s, "+15557654321", "SMout0000000000000000000000000002").await;
    let mut undelivered = callback("undelivered", Some("30003"));
    for p in undelivered.iter_mut().filter(|p| p.0 == "MessageSid" || p.0 == "SmsSid") {
        p.1 = "SMout0000000000000000000000000002";
    }
    assert_eq!(post(&f, s, &undelivered, Some(TOKEN), &url).await.status().as_u16(), 200);
    let (status, d) = delivery(&f.db, id2).await;
    assert_eq!((status.as_str(), &d["provider_status"], &d["error_code"]), ("sent", &json!("undelivered"), &json!("30003")));
    // a forged callback changes nothing
    expect_error(post(&f, s, &callback("failed", Some("1")), Some("forged"), &url).await, 401, "unauthorized").await;
    assert_eq!(delivery(&f.db, id).await.1["provider_status"], "delivered");
    f.app.stop().await;
}
