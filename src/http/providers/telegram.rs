//! `POST /v1/providers/telegram_bot/{session_id}`: Telegram Bot API updates (`setWebhook`).
//!
//! Authentication: `X-Telegram-Bot-Api-Secret-Token` must equal the secret named by session
//! `config.webhook_secret_ref` (the `secret_token` given to `setWebhook`: 1-256 characters of
//! `A-Z a-z 0-9 _ -`). The Update's `message` becomes an inbound row: `external_message_id` =
//! `<chat_id>:<message_id>` (message ids are unique only within a chat), `sender` = `chat.id`,
//! `body_text` = `text` or `caption` (else a note such as `[photo]`), `in_reply_to` = the
//! `message_id` of `reply_to_message`, details in `metadata.telegram`. Other update kinds
//! (`edited_message`, `channel_post`, `callback_query`, ...) are acknowledged and ignored: an
//! edit does not change a received message.
//!
//! Sources: https://core.telegram.org/bots/api#setwebhook (secret_token header),
//! https://core.telegram.org/bots/api#update, #message.

use super::{config_secret, constant_time_eq, refused_row, verified, Provider, ProviderErrors};
use crate::db::provider_inbound::{self, Inserted, NewInbound};
use crate::http::{error::ApiError, AppState};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

const PROVIDER: Provider = Provider::TelegramBot;

/// Message kinds without text, in the order they are looked for.
const KINDS: &[&str] =
    &["photo", "document", "audio", "video", "voice", "video_note", "sticker", "animation", "location", "venue", "contact", "poll", "dice"];

/// The answer to an update.
#[derive(Debug, Serialize, ToSchema)]
pub struct TelegramReceipt {
    pub ok: bool,
    /// The update's kind, when it is not a `message` (acknowledged, not written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    /// For a message: whether it was received before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
}

/// Telegram Bot API updates (`setWebhook` with a `secret_token`).
#[utoipa::path(
    post, path = "/v1/providers/telegram_bot/{session_id}", tag = "providers",
    params(
        ("session_id" = String, Path, description = "The telegram_bot session's id"),
        ("x-telegram-bot-api-secret-token" = Option<String>, Header, description = "The secret named by config.webhook_secret_ref"),
    ),
    request_body(content = Object, content_type = "application/json", description = "A Telegram Update"),
    responses((status = 200, description = "Written, a duplicate, or an update kind that is ignored", body = TelegramReceipt), ProviderErrors),
    security(())
)]
pub async fn receive(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TelegramReceipt>, ApiError> {
    let (mut client, session, ()) = verified(&state, PROVIDER, &session_id, uri.path(), |session| {
        let secret = config_secret(session, "webhook_secret_ref")?;
        let presented = headers.get("x-telegram-bot-api-secret-token").and_then(|v| v.to_str().ok()).unwrap_or("");
        Ok(if presented.is_empty() {
            Err("missing_signature")
        } else if !constant_time_eq(presented.as_bytes(), secret.as_bytes()) {
            Err("signature_mismatch")
        } else {
            Ok(())
        })
    })
    .await?;
    let update: Value = super::parse_json(&body)?;
    let Some(message) = update.get("message") else {
        let kind = update.as_object().and_then(|o| o.keys().find(|k| *k != "update_id").cloned()).unwrap_or_default();
        PROVIDER.count("ignored", 1);
        return Ok(Json(TelegramReceipt { ok: true, ignored: Some(kind), duplicate: None }));
    };
    let row = inbound(message)?;
    match provider_inbound::insert_all(&mut client, &PROVIDER.actor(), &session, std::slice::from_ref(&row))
        .await
        .map_err(ApiError::internal)?
    {
        Ok(done) => {
            let duplicate = matches!(done[0], Inserted::Duplicate);
            PROVIDER.count(if duplicate { "duplicate" } else { "inserted" }, 1);
            Ok(Json(TelegramReceipt { ok: true, ignored: None, duplicate: Some(duplicate) }))
        }
        Err((_, e)) => Err(refused_row(e, None, &[("sender", "message.chat.id"), ("body_text", "message.text")])),
    }
}

/// The inbound row for a `message`.
fn inbound(m: &Value) -> Result<NewInbound, ApiError> {
    let id = |v: Option<&Value>| v.and_then(|v| v.as_i64().map(|n| n.to_string()).or_else(|| v.as_str().map(str::to_owned)));
    let message_id = id(m.get("message_id")).ok_or_else(|| ApiError::field("message.message_id", "a message needs message_id"))?;
    let chat_id = id(m.pointer("/chat/id")).ok_or_else(|| ApiError::field("message.chat.id", "a message needs chat.id"))?;
    let text = |k: &str| m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let kind = if m.get("text").is_some() { "text" } else { KINDS.iter().find(|k| m.get(**k).is_some()).copied().unwrap_or("unknown") };
    let body_text = text("text").or_else(|| text("caption")).or_else(|| {
        let name = m.pointer(&format!("/{kind}/file_name")).and_then(Value::as_str);
        let emoji = m.pointer("/sticker/emoji").and_then(Value::as_str).filter(|_| kind == "sticker");
        Some(super::note(kind, name.or(emoji)))
    });
    let mut telegram = Map::new();
    telegram.insert("message_id".into(), m.get("message_id").cloned().unwrap_or(Value::Null));
    telegram.insert("type".into(), json!(kind));
    for key in ["chat", "from", "date", "message_thread_id", "media_group_id"] {
        if let Some(v) = m.get(key) {
            telegram.insert(key.into(), v.clone());
        }
    }
    if kind != "text" && kind != "unknown" {
        if let Some(v) = m.get(kind) {
            telegram.insert(kind.into(), v.clone());
        }
    }
    Ok(NewInbound {
        external_message_id: format!("{chat_id}:{message_id}"),
        sender: chat_id,
        subject: None,
        body_text,
        in_reply_to: id(m.pointer("/reply_to_message/message_id")),
        metadata: json!({ "telegram": telegram }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_keyed_by_chat_and_id() {
        let m = json!({ "message_id": 42, "chat": { "id": -100123, "type": "group" }, "from": { "id": 7 }, "text": "hello",
                        "reply_to_message": { "message_id": 41 } });
        let row = inbound(&m).unwrap();
        assert_eq!(row.external_message_id, "-100123:42");
        assert_eq!(row.sender, "-100123");
        assert_eq!(row.body_text.as_deref(), Some("hello"));
        assert_eq!(row.in_reply_to.as_deref(), Some("41"));
        let photo = json!({ "message_id": 1, "chat": { "id": 5 }, "photo": [{ "file_id": "x" }], "caption": "look" });
        assert_eq!(inbound(&photo).unwrap().body_text.as_deref(), Some("look"));
        let doc = json!({ "message_id": 2, "chat": { "id": 5 }, "document": { "file_name": "a.pdf" } });
        assert_eq!(inbound(&doc).unwrap().body_text.as_deref(), Some("[document: a.pdf]"));
        assert_eq!(inbound(&json!({ "message_id": 3 })).unwrap_err().field.as_deref(), Some("message.chat.id"));
    }
}
