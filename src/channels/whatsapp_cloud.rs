//! Provider `whatsapp_cloud`: Meta's WhatsApp Cloud API (Graph API), with the access token from
//! the session's secret as `Authorization: Bearer`.
//!
//! Speaks `POST {api_base}/{api_version}/{phone_number_id}/messages` (JSON): a text message
//! (with `context.message_id` when answering a wamid), a template message when
//! `metadata.template` is set, and media messages for attachments, each uploaded first by
//! `POST …/{phone_number_id}/media` (multipart). Recipients are sent to one after another.
//!
//! Classification of Graph errors (`{"error":{"code":N,…}}`): 130429 / 4 / 80007 and HTTP 429 →
//! rate limited; 131056 (pair rate limit) → rate limited for `pair_rate_delay_ms` (default 6 s,
//! the documented one message per 6 s per recipient); 131000 / 1 / 2 / 131057 / HTTP 5xx /
//! connection errors → transient; 131026, 131047 (24-hour window), 190 (token) and every other
//! 4xx → permanent with a reason for the operator. `Retry-After` is honoured when present.
//!
//! A retry does not resend what already went out: the adapter remembers, in memory, the wamid of
//! every step delivered for a message that then failed on a later step or recipient.
//!
//! Sources:
//! - https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes
//! - https://developers.facebook.com/docs/whatsapp/cloud-api/reference/media (upload: file, type, messaging_product → {"id"})
//! - https://apis.io/schemas/whatsapp/whatsapp-cloud-api-send-message-request/ (`to`: E.164 without the +)
//! - https://dualhook.com/docs/capacity-quality-limits (pair rate limit: 1 message / 6 s per recipient, 131056)
//! - https://docs.chatsyncs.com/meta-api/messaging/document-messages (document: id, filename, caption)

use super::provider_http::{excerpt, parse_retry_after};
use super::{Attachment, Channel, Outbound, Receipt, SendError};
use crate::domain::network::Allow;
use crate::domain::outcome::ErrorClass;
use crate::domain::vocab::Provider;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

pub const DEFAULT_API_VERSION: &str = "v23.0";
const TEMPLATE_ADVICE: &str = "outside the 24-hour customer service window: send an approved template message (metadata.template)";

pub struct WhatsappCloud {
    client: reqwest::Client,
    /// `{api_base}/{api_version}/{phone_number_id}`
    base: String,
    token: String,
    pair_rate_delay: Duration,
    /// (message, recipient, step) → wamid, for steps delivered before a later one failed.
    delivered: Mutex<HashMap<(Uuid, String, usize), String>>,
}

/// One message sent to each recipient.
enum Step<'a> {
    Text(&'a str),
    Template(Value),
    Media { index: usize, caption: Option<&'a str> },
}

impl WhatsappCloud {
    pub fn new(config: &serde_json::Value, secret: Option<String>, allow: Allow) -> Result<WhatsappCloud, SendError> {
        let phone_number_id = match config.get("phone_number_id") {
            Some(Value::String(s)) if !s.trim().is_empty() && !s.contains('/') => s.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(SendError::permanent("provider whatsapp_cloud needs config.phone_number_id (the business phone number ID from WhatsApp Manager, not the phone number)")),
        };
        let token = secret.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
            SendError::permanent("provider whatsapp_cloud needs an access token: set the session's credentials_ref and the secret PGCOURIER_SECRET_<REF> to the token")
        })?;
        let text = |k: &str, d: &str| config.get(k).and_then(Value::as_str).unwrap_or(d).trim_end_matches('/').to_owned();
        let ms = |k: &str, d: u64| config.get(k).and_then(Value::as_u64).unwrap_or(d);
        let api_base = text("api_base", "https://graph.facebook.com");
        let client = super::provider_http::guarded_client(
            "whatsapp_cloud",
            "api_base",
            &api_base,
            allow,
            Duration::from_millis(ms("timeout_ms", 10_000)),
        )?;
        Ok(WhatsappCloud {
            client,
            base: format!("{api_base}/{}/{phone_number_id}", text("api_version", DEFAULT_API_VERSION)),
            token: token.trim().to_owned(),
            pair_rate_delay: Duration::from_millis(ms("pair_rate_delay_ms", 6_000)),
            delivered: Mutex::default(),
        })
    }

    /// Send one request (one attempt, no retries here) and classify a failure.
    async fn post(&self, what: &str, req: reqwest::RequestBuilder) -> Result<Value, SendError> {
        let resp = req.bearer_auth(&self.token).send().await.map_err(|e| {
            let how = if e.is_timeout() { format!("timed out: {e}") } else { format!("connection failed: {e}") };
            super::provider_http::unanswered(format!("WhatsApp Cloud API {what}: {how}"), &e)
        })?;
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let body = resp.text().await.map_err(|e| {
            SendError::transient(format!("WhatsApp Cloud API {what}: HTTP {status}, reading the body failed: {e}")).possibly_delivered(true)
        })?;
        if (200..300).contains(&status) {
            return Ok(serde_json::from_str(&body).unwrap_or_else(|_| json!({ "raw": excerpt(&body, 1000) })));
        }
        Err(classify(status, retry_after, &body, what, self.pair_rate_delay))
    }

    async fn upload(&self, a: &Attachment) -> Result<String, SendError> {
        let part = reqwest::multipart::Part::bytes(a.content.clone()).file_name(a.filename.clone());
        let part = part
            .mime_str(&a.content_type)
            .unwrap_or_else(|_| reqwest::multipart::Part::bytes(a.content.clone()).file_name(a.filename.clone()));
        let form =
            reqwest::multipart::Form::new().text("messaging_product", "whatsapp").text("type", a.content_type.clone()).part("file", part);
        let what = format!("media upload of {:?}", a.filename);
        let v = self.post(&what, self.client.post(format!("{}/media", self.base)).multipart(form)).await?;
        v.get("id").and_then(|id| id.as_str().map(str::to_owned).or_else(|| id.as_u64().map(|n| n.to_string()))).ok_or_else(|| {
            SendError::permanent(format!("WhatsApp Cloud API {what}: the answer has no media id: {}", excerpt(&v.to_string(), 1000)))
        })
    }

    fn forget(&self, id: Uuid) {
        self.delivered.lock().expect("delivered lock").retain(|(m, _, _), _| *m != id);
    }
}

#[async_trait]
impl Channel for WhatsappCloud {
    async fn send(&self, msg: &Outbound) -> Result<Receipt, SendError> {
        let steps = plan(msg)?;
        let mut media: Vec<Option<String>> = vec![None; msg.attachments.len()];
        let mut sent = Vec::new();
        for (r, to) in msg.to.iter().enumerate() {
            let digits = to.trim().trim_start_matches('+').to_owned();
            for (i, step) in steps.iter().enumerate() {
                let key = (msg.public_id, digits.clone(), i);
                if let Some(wamid) = self.delivered.lock().expect("delivered lock").get(&key).cloned() {
                    sent.push(json!({ "to": digits, "id": wamid, "earlier_attempt": true }));
                    continue;
                }
                let mut body = json!({ "messaging_product": "whatsapp", "recipient_type": "individual", "to": digits });
                match step {
                    Step::Text(text) => {
                        body["type"] = json!("text");
                        body["text"] = json!({ "body": text, "preview_url": false });
                    }
                    Step::Template(t) => {
                        body["type"] = json!("template");
                        body["template"] = t.clone();
                    }
                    Step::Media { index, caption } => {
                        let a = &msg.attachments[*index];
                        let id = match &media[*index] {
                            Some(id) => id.clone(),
                            None => {
                                let id = self.upload(a).await.map_err(|e| self.failed(msg, e))?;
                                media[*index] = Some(id.clone());
                                id
                            }
                        };
                        let kind = media_kind(&a.content_type);
                        let mut obj = json!({ "id": id });
                        if kind == "document" {
                            obj["filename"] = json!(a.filename);
                        }
                        if let Some(c) = caption {
                            obj["caption"] = json!(c);
                        }
                        body["type"] = json!(kind);
                        body[kind] = obj;
                    }
                }
                if let (0, Some(wamid)) = (i, msg.in_reply_to.as_deref().filter(|s| !s.is_empty())) {
                    body["context"] = json!({ "message_id": wamid });
                }
                let what = format!("message to {} (recipient {} of {})", to, r + 1, msg.to.len());
                let answer = match self.post(&what, self.client.post(format!("{}/messages", self.base)).json(&body)).await {
                    Ok(v) => v,
                    Err(e) => return Err(self.failed(msg, e)),
                };
                let wamid = answer.pointer("/messages/0/id").and_then(Value::as_str).map(str::to_owned);
                if wamid.is_none() {
                    tracing::warn!(answer = %answer, "WhatsApp accepted a message but named no wamid");
                }
                if let Some(w) = &wamid {
                    self.delivered.lock().expect("delivered lock").insert(key, w.clone());
                }
                let wa_id = answer.pointer("/contacts/0/wa_id").cloned().unwrap_or(Value::Null);
                sent.push(json!({ "to": digits, "wa_id": wa_id, "id": wamid }));
            }
        }
        self.forget(msg.public_id);
        let external_id = sent.iter().find_map(|s| s["id"].as_str().map(str::to_owned));
        Ok(Receipt {
            external_id,
            detail: Some(json!({ "provider": Provider::WhatsappCloud, "messages": sent })),
            answer: Default::default(),
        })
    }
}

impl WhatsappCloud {
    /// Keep what was delivered only when the daemon may retry; say so in the detail.
    fn failed(&self, msg: &Outbound, mut e: SendError) -> SendError {
        if e.class.is_permanent() {
            self.forget(msg.public_id);
        } else {
            let mut d = self.delivered.lock().expect("delivered lock");
            if d.len() > 100_000 {
                d.clear();
            }
            let already = d.keys().filter(|(m, _, _)| *m == msg.public_id).count();
            if already > 0 {
                e.detail.push_str(&format!(" ({already} earlier message(s) of this row were delivered and will not be resent)"));
            }
        }
        e
    }
}

/// What each recipient gets: the template or the text, then one message per attachment (the
/// text as the first attachment's caption when it can carry one).
fn plan(msg: &Outbound) -> Result<Vec<Step<'_>>, SendError> {
    if msg.to.is_empty() {
        return Err(SendError::permanent("whatsapp_cloud: the message has no recipient"));
    }
    let text = msg.text.as_deref().filter(|t| !t.trim().is_empty());
    let captionable = msg.attachments.first().is_some_and(|a| media_kind(&a.content_type) != "audio");
    let mut steps = Vec::new();
    let mut caption = None;
    if let Some(t) = msg.metadata.get("template").filter(|t| !t.is_null()) {
        steps.push(Step::Template(template(t)?));
    } else if captionable {
        caption = text;
    } else if let Some(t) = text {
        steps.push(Step::Text(t));
    } else if msg.attachments.is_empty() {
        return Err(SendError::permanent("whatsapp_cloud: nothing to send: the message has no body_text, metadata.template or attachment"));
    }
    for index in 0..msg.attachments.len() {
        steps.push(Step::Media { index, caption: if index == 0 { caption } else { None } });
    }
    Ok(steps)
}

/// `metadata.template` = `{name, language, parameters?: [..], components?: [..]}` → Graph's template object.
fn template(t: &Value) -> Result<Value, SendError> {
    let name = t
        .get("name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SendError::permanent("whatsapp_cloud: metadata.template.name (the approved template's name) is required"))?;
    let code = match t.get("language") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Object(o)) if o.get("code").and_then(Value::as_str).is_some() => o["code"].as_str().unwrap_or_default().to_owned(),
        _ => return Err(SendError::permanent("whatsapp_cloud: metadata.template.language (e.g. \"en_US\") is required")),
    };
    let mut out = json!({ "name": name, "language": { "code": code } });
    if let Some(c) = t.get("components").filter(|c| !c.is_null()) {
        out["components"] = c.clone();
    } else if let Some(p) = t.get("parameters").and_then(Value::as_array).filter(|p| !p.is_empty()) {
        let params: Vec<Value> =
            p.iter().map(|v| json!({ "type": "text", "text": v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()) })).collect();
        out["components"] = json!([{ "type": "body", "parameters": params }]);
    }
    Ok(out)
}

/// WhatsApp's media message type for a content type (anything it cannot play goes as a document).
fn media_kind(content_type: &str) -> &'static str {
    let ct = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match ct.as_str() {
        "image/jpeg" | "image/png" => "image",
        "video/mp4" | "video/3gpp" => "video",
        "audio/aac" | "audio/amr" | "audio/mpeg" | "audio/mp4" | "audio/ogg" => "audio",
        _ => "document",
    }
}

/// A Graph API error → its class, with what the operator needs in the detail.
fn classify(status: u16, retry_after: Option<Duration>, body: &str, what: &str, pair_delay: Duration) -> SendError {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let err = &v["error"];
    let code = err["code"].as_i64().or_else(|| err["code"].as_str().and_then(|s| s.parse().ok()));
    let message = err["message"].as_str().unwrap_or("");
    let details = err.pointer("/error_data/details").and_then(Value::as_str).unwrap_or("");
    let (class, advice) = match code {
        Some(130429 | 4 | 80007) => (ErrorClass::RateLimited { retry_after }, "throughput rate limit: retrying later"),
        Some(131056) => (
            ErrorClass::RateLimited { retry_after: Some(retry_after.map_or(pair_delay, |r| r.max(pair_delay))) },
            "pair rate limit: too many messages to this recipient in a short time; only this message waits",
        ),
        Some(131000 | 1 | 2 | 131057) => (ErrorClass::Transient { retry_after }, "temporary WhatsApp service error: retrying later"),
        Some(131026) => (ErrorClass::Permanent, "message undeliverable: the number is not on WhatsApp, has not accepted the latest terms, or runs an old WhatsApp version; check the number or reach the person another way"),
        Some(131047) => (ErrorClass::Permanent, TEMPLATE_ADVICE),
        Some(190) => (ErrorClass::Permanent, "the access token (the session's secret) has expired or is invalid: set a new token in PGCOURIER_SECRET_<REF> and restart or edit the session"),
        _ if status == 429 => (ErrorClass::RateLimited { retry_after }, "rate limited: retrying later"),
        _ if status >= 500 => (ErrorClass::Transient { retry_after }, "server error: retrying later"),
        _ => (ErrorClass::Permanent, "rejected"),
    };
    let code = code.map_or_else(|| "no Graph error code".to_owned(), |c| format!("code {c}"));
    let mut detail = format!("WhatsApp Cloud API {what}: HTTP {status}, {code}: {advice}");
    if !message.is_empty() {
        detail.push_str(&format!("; message: {message}"));
    }
    if !details.is_empty() {
        detail.push_str(&format!("; details: {details}"));
    }
    detail.push_str(&format!("; body: {}", excerpt(body, 1000)));
    SendError::new(class, detail).answered(super::Answer::http(status, body))
}
