//! Telegram: updates authenticated by `X-Telegram-Bot-Api-Secret-Token`.

use super::{expect_error, fixture, inbound, secret, security_events, session, Fixture};
use serde_json::{json, Value};

const SECRET_TOKEN: &str = "tg_webhook-Secret_123";

async fn tg_session(f: &Fixture) -> i64 {
    session(&f.db, "telegram", "telegram_bot", "@acme_bot", json!({ "webhook_secret_ref": secret(SECRET_TOKEN) }), None).await
}

async fn post(f: &Fixture, session: i64, update: &Value, token: Option<&str>) -> reqwest::Response {
    let mut request = f.app.http.post(f.app.url(&format!("/v1/providers/telegram_bot/{session}"))).json(update);
    if let Some(token) = token {
        request = request.header("x-telegram-bot-api-secret-token", token);
    }
    request.send().await.unwrap()
}

fn update(update_id: i64, chat: i64, message_id: i64, text: &str) -> Value {
    json!({ "update_id": update_id, "message": {
        "message_id": message_id, "date": 1700000000, "text": text,
        "from": { "id": chat, "is_bot": false, "first_name": "Ann", "username": "ann" },
        "chat": { "id": chat, "type": "private", "first_name": "Ann" } } })
}

#[tokio::test]
async fn a_message_is_inserted_once_keyed_by_chat_and_message_id() {
    let f = fixture().await;
    let s = tg_session(&f).await;
    let first = post(&f, s, &update(1, 123456789, 42, "Where is my parcel?"), Some(SECRET_TOKEN)).await;
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(first.json::<Value>().await.unwrap(), json!({ "ok": true, "duplicate": false }));
    let again = post(&f, s, &update(1, 123456789, 42, "Where is my parcel?"), Some(SECRET_TOKEN)).await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["duplicate"], true);
    // the same message_id in another chat is another message
    let other_chat = post(&f, s, &update(2, 987654321, 42, "Hello"), Some(SECRET_TOKEN)).await;
    assert_eq!(other_chat.status().as_u16(), 200);
    assert_eq!(
        inbound(&f.db, s).await,
        vec![
            ("123456789:42".into(), "123456789".into(), Some("Where is my parcel?".into())),
            ("987654321:42".into(), "987654321".into(), Some("Hello".into())),
        ]
    );
    let meta: Value = f.db.client.query_one("SELECT metadata FROM et_messages ORDER BY id LIMIT 1", &[]).await.unwrap().get(0);
    assert_eq!(meta["telegram"]["message_id"], 42);
    assert_eq!(meta["telegram"]["from"]["username"], "ann");

    // a photo with a caption uses the caption; an edit is acknowledged and ignored
    let photo = json!({ "update_id": 3, "message": { "message_id": 43, "chat": { "id": 123456789, "type": "private" },
                        "photo": [{ "file_id": "AgAD", "width": 90, "height": 90 }], "caption": "this one" } });
    assert_eq!(post(&f, s, &photo, Some(SECRET_TOKEN)).await.status().as_u16(), 200);
    let mut edited = update(4, 123456789, 42, "Where is my parcel??");
    edited["edited_message"] = edited["message"].take();
    edited.as_object_mut().unwrap().remove("message");
    let ignored = post(&f, s, &edited, Some(SECRET_TOKEN)).await;
    assert_eq!(ignored.status().as_u16(), 200);
    assert_eq!(ignored.json::<Value>().await.unwrap()["ignored"], "edited_message");
    let rows = inbound(&f.db, s).await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2], ("123456789:43".into(), "123456789".into(), Some("this one".into())));
    assert!(security_events(&f.db).await.is_empty());
    f.app.stop().await;
}

#[tokio::test]
async fn a_wrong_or_missing_secret_token_is_401_and_writes_nothing() {
    let f = fixture().await;
    let s = tg_session(&f).await;
    expect_error(post(&f, s, &update(1, 5, 1, "hi"), Some("tg_webhook-Secret_124")).await, 401, "unauthorized").await;
    expect_error(post(&f, s, &update(1, 5, 1, "hi"), None).await, 401, "unauthorized").await;
    assert_eq!(f.db.count("SELECT count(*) FROM et_messages").await, 0);
    let events = security_events(&f.db).await;
    let got: Vec<(Option<&str>, &str, &str, &str)> =
        events.iter().map(|e| (e.0.as_deref(), e.1.as_str(), e.2.as_str(), e.3.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (Some("acme"), "telegram_bot", "bad_webhook_signature", "signature_mismatch"),
            (Some("acme"), "telegram_bot", "bad_webhook_signature", "missing_signature"),
        ]
    );
    f.app.stop().await;
}
