//! WhatsApp Cloud: the GET subscription check and signed POSTs (`X-Hub-Signature-256`).

use super::sign::hmac_sha256_hex;
use super::{delivery, expect_error, fixture, inbound, secret, security_events, sent_outbound, session, Fixture};
use serde_json::{json, Value};

const APP_SECRET: &str = "meta-app-secret";
const VERIFY_TOKEN: &str = "my-verify-token";
const PHONE_NUMBER_ID: &str = "106540352242922";

async fn wa_session(f: &Fixture) -> i64 {
    let config =
        json!({ "phone_number_id": PHONE_NUMBER_ID, "app_secret_ref": secret(APP_SECRET), "verify_token_ref": secret(VERIFY_TOKEN) });
    session(&f.db, "whatsapp", "whatsapp_cloud", "+15550000002", config, None).await
}

fn url(f: &Fixture, session: i64) -> String {
    f.app.url(&format!("/v1/providers/whatsapp_cloud/{session}"))
}

async fn post(f: &Fixture, session: i64, body: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = f.app.http.post(url(f, session)).header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("x-hub-signature-256", format!("sha256={}", hmac_sha256_hex(key, &[body.as_bytes()])));
    }
    request.body(body.to_owned()).send().await.unwrap()
}

fn change(value: Value) -> String {
    json!({ "object": "whatsapp_business_account",
            "entry": [{ "id": "WABA", "changes": [{ "field": "messages", "value": value }] }] })
    .to_string()
}

fn text_message(wamid: &str, from: &str, text: &str) -> String {
    change(json!({
        "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "15550000002", "phone_number_id": PHONE_NUMBER_ID },
        "contacts": [{ "profile": { "name": "Ann" }, "wa_id": from }],
        "messages": [{ "from": from, "id": wamid, "timestamp": "1700000000", "type": "text", "text": { "body": text } }]
    }))
}

#[tokio::test]
async fn the_subscription_check_answers_the_challenge_only_for_the_right_token() {
    let f = fixture().await;
    let s = wa_session(&f).await;
    let ok = f
        .app
        .http
        .get(format!("{}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444", url(&f, s)))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(ok.headers()["content-type"], "text/plain");
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    for query in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
        "hub.mode=unsubscribe&hub.verify_token=my-verify-token&hub.challenge=1",
        "hub.challenge=1",
    ] {
        let refused = f.app.http.get(format!("{}?{query}", url(&f, s))).send().await.unwrap();
        expect_error(refused, 403, "forbidden").await;
    }
    let events = security_events(&f.db).await;
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.0.as_deref() == Some("acme") && e.1 == "whatsapp_cloud" && e.2 == "bad_webhook_verify_token"));
    f.app.stop().await;
}

#[tokio::test]
async fn a_signed_message_is_inserted_once_and_a_replay_is_harmless() {
    let f = fixture().await;
    let s = wa_session(&f).await;
    let body = text_message("wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTk", "15551234567", "Do you deliver on Sundays?");
    let first = post(&f, s, &body, Some(APP_SECRET)).await;
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(first.json::<Value>().await.unwrap()["inserted"], 1);
    let again = post(&f, s, &body, Some(APP_SECRET)).await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["duplicates"], 1);
    assert_eq!(
        inbound(&f.db, s).await,
        vec![("wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTk".into(), "+15551234567".into(), Some("Do you deliver on Sundays?".into()))]
    );
    let meta: Value = f.db.client.query_one("SELECT metadata FROM et_messages", &[]).await.unwrap().get(0);
    assert_eq!(meta["whatsapp"]["profile_name"], "Ann");

    // an image without caption gets a note and its type; another phone number's change is skipped
    let image = change(json!({
        "metadata": { "phone_number_id": PHONE_NUMBER_ID },
        "messages": [{ "from": "15551234567", "id": "wamid.IMG", "type": "image", "image": { "id": "MEDIA1", "mime_type": "image/jpeg" } }]
    }));
    assert_eq!(post(&f, s, &image, Some(APP_SECRET)).await.status().as_u16(), 200);
    let other = change(json!({
        "metadata": { "phone_number_id": "999" },
        "messages": [{ "from": "15551234567", "id": "wamid.OTHER", "type": "text", "text": { "body": "not ours" } }]
    }));
    assert_eq!(post(&f, s, &other, Some(APP_SECRET)).await.status().as_u16(), 200);
    // a message the trigger refuses (no valid phone number) is skipped, still 200: Meta would retry
    let refused = post(&f, s, &text_message("wamid.BAD", "12", "short number"), Some(APP_SECRET)).await;
    assert_eq!(refused.status().as_u16(), 200);
    assert_eq!(refused.json::<Value>().await.unwrap()["refused"], 1);
    let rows = inbound(&f.db, s).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].2.as_deref(), Some("[image]"));
    let kind: String =
        f.db.client
            .query_one("SELECT metadata->'whatsapp'->>'type' FROM et_messages WHERE external_message_id = 'wamid.IMG'", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(kind, "image");
    f.app.stop().await;
}

#[tokio::test]
async fn forged_and_missing_signatures_are_401_and_write_nothing() {
    let f = fixture().await;
    let s = wa_session(&f).await;
    let body = text_message("wamid.FORGED", "15551234567", "hello");
    expect_error(post(&f, s, &body, Some("some-other-app-secret")).await, 401, "unauthorized").await;
    expect_error(post(&f, s, &body, None).await, 401, "unauthorized").await;
    let bare =
        f.app.http.post(url(&f, s)).header("x-hub-signature-256", hmac_sha256_hex(APP_SECRET, &[body.as_bytes()])).body(body.clone());
    expect_error(bare.send().await.unwrap(), 401, "unauthorized").await;
    assert_eq!(f.db.count("SELECT count(*) FROM et_messages").await, 0);
    let reasons: Vec<String> = security_events(&f.db).await.into_iter().map(|e| e.3).collect();
    assert_eq!(reasons, vec!["signature_mismatch", "missing_signature", "malformed_signature"]);
    f.app.stop().await;
}

#[tokio::test]
async fn status_callbacks_land_in_metadata_delivery_of_the_sent_message() {
    let f = fixture().await;
    let s = wa_session(&f).await;
    let id = sent_outbound(&f.db, s, "+15551234567", "wamid.OUT1").await;
    let statuses = |status: &str, extra: Value| {
        let mut item = json!({ "id": "wamid.OUT1", "status": status, "timestamp": "1700000100", "recipient_id": "15551234567" });
        item.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        change(json!({ "metadata": { "phone_number_id": PHONE_NUMBER_ID }, "statuses": [item] }))
    };
    let delivered = post(&f, s, &statuses("delivered", json!({})), Some(APP_SECRET)).await;
    assert_eq!(delivered.status().as_u16(), 200);
    assert_eq!(delivered.json::<Value>().await.unwrap()["statuses_matched"], 1);
    let (status, d) = delivery(&f.db, id).await;
    assert_eq!(status, "sent", "delivery_status is not changed by provider statuses");
    assert_eq!(d["provider_status"], "delivered");
    assert!(d["provider_status_at"].is_string() && d["provider_statuses"]["delivered"].is_string(), "{d}");
    assert_eq!(d["recipient_id"], "15551234567");

    // a late `sent` is recorded but does not hide `delivered`; `read` moves it on
    post(&f, s, &statuses("sent", json!({})), Some(APP_SECRET)).await;
    let (_, d) = delivery(&f.db, id).await;
    assert_eq!(d["provider_status"], "delivered");
    assert!(d["provider_statuses"]["sent"].is_string(), "{d}");
    post(&f, s, &statuses("read", json!({})), Some(APP_SECRET)).await;
    assert_eq!(delivery(&f.db, id).await.1["provider_status"], "read");

    // a failure keeps Meta's error code
    let id2 = sent_outbound(&f.db, s, "+15557654321", "wamid.OUT2").await;
    let failed = change(json!({ "metadata": { "phone_number_id": PHONE_NUMBER_ID }, "statuses": [{
        "id": "wamid.OUT2", "status": "failed", "timestamp": "1700000200", "recipient_id": "15557654321",
        "errors": [{ "code": 131026, "title": "Message undeliverable" }] }] }));
    post(&f, s, &failed, Some(APP_SECRET)).await;
    let (status, d) = delivery(&f.db, id2).await;
    assert_eq!((status.as_str(), &d["provider_status"], &d["error_code"]), ("sent", &json!("failed"), &json!("131026")));
    assert_eq!(d["error_title"], "Message undeliverable");

    // a forged status callback changes nothing
    let before = delivery(&f.db, id).await.1;
    expect_error(post(&f, s, &statuses("failed", json!({})), Some("forged")).await, 401, "unauthorized").await;
    assert_eq!(delivery(&f.db, id).await.1, before);
    f.app.stop().await;
}
