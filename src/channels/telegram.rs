//! Provider `telegram_bot`: the Telegram Bot API over HTTPS, `POST {api_base}/bot{token}/{method}`.
//!
//! Speaks `sendMessage` (JSON: `chat_id`, `text`, and `reply_parameters {message_id,
//! allow_sending_without_reply}` when `in_reply_to` is an integer message id) and `sendDocument`
//! (multipart/form-data: `chat_id`, `document`, `caption` = the text on the first document when
//! it fits in 1024 characters; otherwise the text goes first as a `sendMessage`). Each recipient
//! is one chat, sent to in turn; the first failure stops the send with its class.
//! Session config: `api_base` (default `https://api.telegram.org`), `timeout_ms` (default 10000);
//! the secret is the bot token (`123456:ABC...`), never logged.
//!
//! Classification (Telegram answers `{"ok":false,"error_code":N,"description":..,"parameters":..}`):
//! 429 → rate limited (`parameters.retry_after`, else `Retry-After`); 5xx, connection errors and
//! timeouts → transient; 403 "bot was blocked by the user" / "user is deactivated" / "bot was
//! kicked" / "bot is not a member" → suppress `blocked` (the recipient); 401 → permanent (wrong
//! token); other 4xx (400 "chat not found", ...) → permanent. A 400 carrying
//! `parameters.migrate_to_chat_id` (group upgraded to a supergroup) is retried once to the new
//! chat id, and the receipt's detail says so (`from_chat_id`, `migrated_to_chat_id`).
//!
//! Sources:
//! - https://core.telegram.org/bots/api#making-requests (URL form, `ok`/`error_code`/`description`/`parameters`)
//! - https://core.telegram.org/bots/api#responseparameters (`retry_after`, `migrate_to_chat_id`)
//! - https://core.telegram.org/bots/api#sendmessage, #replyparameters, #senddocument (caption 0-1024 characters)
//! - error payloads seen in the wild: https://github.com/TwiN/gatus/issues/179 (migrate),
//!   https://github.com/y9san9/catbot/issues/24 (403 blocked), https://github.com/tdlib/td/issues/1937 (429)

use super::provider_http::error_chain;
use super::{Attachment, Channel, Outbound, Receipt, SendError};
use crate::domain::network::Allow;
use crate::domain::outcome::{ErrorClass, SuppressReason};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

const DEFAULT_API_BASE: &str = "https://api.telegram.org";
/// Telegram's caption limit (counted here in UTF-16 units, which is never fewer than characters).
const CAPTION_MAX: usize = 1024;
/// How much of a provider answer goes into `last_error`.
const BODY_MAX: usize = 1000;

pub struct Telegram {
    client: reqwest::Client,
    api_base: String,
    token: String,
}

impl Telegram {
    pub fn new(config: &serde_json::Value, secret: Option<String>, allow: Allow) -> Result<Telegram, SendError> {
        let token = secret.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).ok_or_else(|| {
            SendError::permanent(
                "provider telegram_bot needs the bot token as its secret: set the session's credentials_ref \
                 and PGCOURIER_SECRET_<REF>=123456:ABC... (the token from @BotFather)",
            )
        })?;
        if !looks_like_token(&token) {
            return Err(SendError::permanent(
                "the telegram_bot secret is not a bot token: expected digits, a colon, then letters, digits, - or _ \
                 (like 123456:ABC-DEF1234ghIkl)",
            ));
        }
        let api_base = match config.get("api_base") {
            None | Some(Value::Null) => DEFAULT_API_BASE.to_owned(),
            Some(Value::String(s)) if s.starts_with("http://") || s.starts_with("https://") => s.trim_end_matches('/').to_owned(),
            Some(other) => return Err(SendError::permanent(format!("telegram_bot config.api_base {other} is not an http(s) URL"))),
        };
        let timeout_ms = match config.get("timeout_ms") {
            None | Some(Value::Null) => 10_000,
            Some(v) => v.as_u64().filter(|&n| n > 0).ok_or_else(|| {
                SendError::permanent(format!("telegram_bot config.timeout_ms {v} must be a positive number of milliseconds"))
            })?,
        };
        let client = super::provider_http::guarded_client("telegram_bot", "api_base", &api_base, allow, Duration::from_millis(timeout_ms))?;
        Ok(Telegram { client, api_base, token })
    }
}

/// `123456:ABC-DEF...`: also guarantees the token cannot bend the URL path.
fn looks_like_token(t: &str) -> bool {
    match t.split_once(':') {
        Some((id, key)) => {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }
        None => false,
    }
}

/// One Bot API call for one chat: a text message, or a document with an optional caption.
struct Call<'a> {
    text: Option<&'a str>,
    document: Option<&'a Attachment>,
    reply_to: Option<i64>,
}

/// A failed call; `migrate_to` is set when Telegram says the group became a supergroup.
struct Failed {
    err: SendError,
    migrate_to: Option<i64>,
}

impl From<SendError> for Failed {
    fn from(err: SendError) -> Failed {
        Failed { err, migrate_to: None }
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    ok: bool,
    result: Option<Value>,
    error_code: Option<i64>,
    description: Option<String>,
    parameters: Option<Parameters>,
}

#[derive(Deserialize)]
struct Parameters {
    retry_after: Option<u64>,
    migrate_to_chat_id: Option<i64>,
}

#[async_trait]
impl Channel for Telegram {
    async fn send(&self, msg: &Outbound) -> Result<Receipt, SendError> {
        let text = msg.text.as_deref().filter(|t| !t.trim().is_empty());
        if text.is_none() && msg.attachments.is_empty() {
            return Err(SendError::invalid("telegram: the message has no text and no attachments: nothing to send"));
        }
        if msg.to.is_empty() {
            return Err(SendError::invalid("telegram: the message has no recipient chat"));
        }
        // inbound Telegram rows are keyed `<chat_id>:<message_id>`; a bare message id works too
        let reply_to = msg.in_reply_to.as_deref().and_then(|r| r.rsplit(':').next()).and_then(|r| r.trim().parse::<i64>().ok());
        let caption = text.filter(|t| !msg.attachments.is_empty() && t.encode_utf16().count() <= CAPTION_MAX);
        let mut calls = Vec::new();
        if text.is_some() && caption.is_none() {
            calls.push(Call { text, document: None, reply_to });
        }
        for a in &msg.attachments {
            let first = calls.is_empty();
            calls.push(Call { text: if first { caption } else { None }, document: Some(a), reply_to: if first { reply_to } else { None } });
        }

        let mut ids: Vec<i64> = Vec::new();
        let mut migrations: Vec<(String, i64)> = Vec::new();
        for recipient in &msg.to {
            let mut chat = recipient.clone();
            for call in &calls {
                match self.call_following_migration(recipient, &mut chat, call, &mut migrations).await {
                    Ok(id) => ids.push(id),
                    Err(mut e) => {
                        if !ids.is_empty() {
                            // a retry sends to those chats again
                            e.detail = format!("{} (already sent before this failure: message ids {ids:?})", e.detail);
                            e.possibly_delivered = true;
                        }
                        return Err(e);
                    }
                }
            }
        }
        Ok(receipt(&ids, &migrations))
    }
}

impl Telegram {
    /// `call`, and once more to the new chat id if Telegram says the group was migrated.
    async fn call_following_migration(
        &self,
        recipient: &str,
        chat: &mut String,
        call: &Call<'_>,
        migrations: &mut Vec<(String, i64)>,
    ) -> Result<i64, SendError> {
        match self.call(recipient, chat, call).await {
            Ok(id) => Ok(id),
            Err(Failed { migrate_to: Some(new), .. }) if chat.as_str() == recipient => {
                tracing::warn!(from_chat_id = %chat, migrated_to_chat_id = new, "telegram group was upgraded to a supergroup; retrying once to the new chat id");
                migrations.push((chat.clone(), new));
                *chat = new.to_string();
                self.call(recipient, chat, call).await.map_err(|f| f.err)
            }
            Err(f) => Err(f.err),
        }
    }

    /// One request; the message id on success, the classified failure otherwise.
    async fn call(&self, recipient: &str, chat: &str, call: &Call<'_>) -> Result<i64, Failed> {
        let method = if call.document.is_some() { "sendDocument" } else { "sendMessage" };
        let what = format!("telegram {method} to chat {chat}");
        let reply = call.reply_to.map(|id| json!({ "message_id": id, "allow_sending_without_reply": true }));
        let request = self.client.post(format!("{}/bot{}/{method}", self.api_base, self.token));
        let request = match call.document {
            None => {
                let mut body = json!({ "chat_id": chat_id_value(chat), "text": call.text.unwrap_or_default() });
                if let Some(r) = reply {
                    body["reply_parameters"] = r;
                }
                request.json(&body)
            }
            Some(a) => {
                let part = || reqwest::multipart::Part::bytes(a.content.clone()).file_name(a.filename.clone());
                let part = part().mime_str(&a.content_type).unwrap_or_else(|_| part());
                let mut form = reqwest::multipart::Form::new().text("chat_id", chat.to_owned());
                if let Some(c) = call.text {
                    form = form.text("caption", c.to_owned());
                }
                if let Some(r) = reply {
                    form = form.text("reply_parameters", r.to_string());
                }
                request.multipart(form.part("document", part))
            }
        };
        tracing::debug!(method, chat, "telegram request");
        let result = match request.send().await {
            Err(e) => {
                let unanswered = super::provider_http::unanswered(String::new(), &e);
                // the detail without the URL: the bot token is in it
                Err(Failed::from(SendError { detail: format!("{what}: {}", error_chain(&e.without_url())), ..unanswered }))
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_header = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                match response.text().await {
                    Err(e) => Err(Failed::from(
                        SendError::transient(format!("{what}: HTTP {status}, reading the answer: {}", error_chain(&e.without_url())))
                            .possibly_delivered(true),
                    )),
                    Ok(body) => classify(&what, recipient, status, retry_header, &body),
                }
            }
        };
        // Belt and braces: the token must never reach last_error or the logs.
        result.map_err(|mut f| {
            f.err.detail = f.err.detail.replace(&self.token, "<token>");
            f
        })
    }
}

/// A numeric chat id as a JSON number, an `@username` as a string.
fn chat_id_value(chat: &str) -> Value {
    chat.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(chat))
}

/// Telegram's answer → the sent message id, or a classified failure.
fn classify(what: &str, recipient: &str, status: u16, retry_header: Option<u64>, body: &str) -> Result<i64, Failed> {
    let answer: Option<Answer> = serde_json::from_str(body).ok();
    let raw: String = body.chars().take(BODY_MAX).collect();
    if (200..300).contains(&status) {
        let id = answer.as_ref().filter(|a| a.ok).and_then(|a| a.result.as_ref()?.get("message_id")?.as_i64());
        return id.ok_or_else(|| SendError::permanent(format!("{what}: HTTP {status} without result.message_id; body: {raw}")).into());
    }
    let description = answer.as_ref().and_then(|a| a.description.clone()).unwrap_or_default();
    let code = answer.as_ref().and_then(|a| a.error_code).unwrap_or(status as i64);
    let params = answer.as_ref().and_then(|a| a.parameters.as_ref());
    let detail = format!("{what}: HTTP {status}, error_code {code}: {description}; body: {raw}");
    if let Some(new) = params.and_then(|p| p.migrate_to_chat_id) {
        let err = SendError::permanent(format!("{detail} (the group is now supergroup {new}; use that chat id)"));
        return Err(Failed { err, migrate_to: Some(new) });
    }
    let lower = description.to_lowercase();
    let (class, detail) = match code {
        429 => {
            let retry_after = params.and_then(|p| p.retry_after).or(retry_header).map(Duration::from_secs);
            (ErrorClass::RateLimited { retry_after }, detail)
        }
        500..=599 => (ErrorClass::Transient { retry_after: None }, detail),
        401 => (ErrorClass::Permanent, format!("the telegram bot token is wrong or was revoked (check the session's secret): {detail}")),
        403 if ["blocked by the user", "user is deactivated", "bot was kicked", "not a member"].iter().any(|s| lower.contains(s)) => {
            (ErrorClass::Suppress { reason: SuppressReason::Blocked, address: Some(recipient.to_owned()) }, detail)
        }
        404 => (ErrorClass::Permanent, format!("{detail} (Telegram answers 404 for an unknown bot token or a wrong config.api_base)")),
        _ if (400..500).contains(&code) => (ErrorClass::Permanent, detail),
        _ if status >= 500 => (ErrorClass::Transient { retry_after: None }, detail),
        _ => (ErrorClass::Permanent, detail),
    };
    Err(SendError::new(class, detail).answered(super::Answer::http(status, body)).into())
}

/// External id = the first message; the detail lists every id when there were several, and
/// any group → supergroup migration the send followed.
fn receipt(ids: &[i64], migrations: &[(String, i64)]) -> Receipt {
    let mut detail = serde_json::Map::new();
    if ids.len() > 1 {
        detail.insert("message_ids".into(), json!(ids));
    }
    if let Some((from, to)) = migrations.first() {
        detail.insert("from_chat_id".into(), chat_id_value(from));
        detail.insert("migrated_to_chat_id".into(), json!(to));
    }
    if migrations.len() > 1 {
        let all: Vec<Value> =
            migrations.iter().map(|(f, t)| json!({ "from_chat_id": chat_id_value(f), "migrated_to_chat_id": t })).collect();
        detail.insert("migrations".into(), Value::Array(all));
    }
    Receipt {
        external_id: ids.first().map(|id| id.to_string()),
        detail: (!detail.is_empty()).then_some(Value::Object(detail)),
        answer: Default::default(),
    }
}
