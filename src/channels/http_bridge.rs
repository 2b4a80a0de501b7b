//! Provider `http_bridge`: a JSON POST of the whole message to an in-house gateway (a
//! Baileys/WhatsApp-Web bridge, an SMS modem server, anything that speaks HTTP).
//!
//! Request: `POST {config.url}`, `Content-Type: application/json`, `Idempotency-Key: <public_id>`
//! (the same on every retry, so the bridge can dedupe), `Authorization: Bearer <secret>` when the
//! session has a secret. Body:
//! `{"id","tenant","channel","from","to":[..],"subject","text","html","in_reply_to","metadata",
//!   "attachments":[{"filename","content_type","content_base64"}]}`.
//! Answer: any 2xx is accepted; `{"id": "..."}` in it becomes the external message id.
//!
//! Session config: `url` (required, http or https; the SSRF guard's rules, [`crate::egress`]),
//! `timeout_ms` (default 10000).
//!
//! Classification: 429 → rate limited (Retry-After honoured); 5xx, 408, connection errors and
//! timeouts → transient (Retry-After honoured); 410 Gone and every other 4xx (and 3xx: redirects
//! are not followed) → permanent, with the bridge's body in the error.
//!
//! Sources: RFC 9110 §10.2.3 (Retry-After: seconds or HTTP-date);
//! https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/ (Idempotency-Key).

use super::provider_http::{error_chain, excerpt, guarded_client, retry_after, unanswered};
use super::{Answer, Channel, Outbound, Receipt, SendError};
use crate::domain::network::Allow;
use crate::domain::outcome::ErrorClass;
use async_trait::async_trait;
use base64::Engine as _;
use std::time::Duration;

pub struct HttpBridge {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl HttpBridge {
    pub fn new(config: &serde_json::Value, secret: Option<String>, allow: Allow) -> Result<HttpBridge, SendError> {
        let url = config
            .get("url")
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| SendError::permanent("provider http_bridge needs config.url (the bridge's send endpoint)"))?;
        let parsed = reqwest::Url::parse(url).map_err(|e| SendError::permanent(format!("http_bridge config.url {url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(SendError::permanent(format!("http_bridge config.url {url:?}: expected an http or https URL")));
        }
        let timeout = config.get("timeout_ms").and_then(|v| v.as_u64()).unwrap_or(10_000);
        let client = guarded_client("http_bridge", "url", url, allow, Duration::from_millis(timeout))?;
        let token = secret.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        Ok(HttpBridge { client, url: url.to_owned(), token })
    }
}

/// The JSON the bridge receives.
fn payload(msg: &Outbound) -> serde_json::Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let attachments: Vec<serde_json::Value> = msg
        .attachments
        .iter()
        .map(|a| serde_json::json!({ "filename": a.filename, "content_type": a.content_type, "content_base64": b64.encode(&a.content) }))
        .collect();
    serde_json::json!({
        "id": msg.public_id,
        "tenant": msg.tenant_id,
        "channel": msg.channel,
        "from": msg.from,
        "to": msg.to,
        "subject": msg.subject,
        "text": msg.text,
        "html": msg.html,
        "in_reply_to": msg.in_reply_to,
        "metadata": msg.metadata,
        "attachments": attachments,
    })
}

#[async_trait]
impl Channel for HttpBridge {
    async fn send(&self, msg: &Outbound) -> Result<Receipt, SendError> {
        let mut request = self.client.post(&self.url).header("Idempotency-Key", msg.public_id.to_string()).json(&payload(msg));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            let what = if e.is_timeout() { "timed out" } else { "failed" };
            unanswered(format!("http_bridge: POST {} {what}: {}", self.url, error_chain(&e)), &e)
        })?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let text = response.text().await.map_err(|e| {
            SendError::transient(format!("http_bridge: HTTP {status} from {}: reading the answer failed: {}", self.url, error_chain(&e)))
                .possibly_delivered(true)
        })?;
        if (200..300).contains(&status) {
            let json: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
            let external_id = match json.get("id") {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            return Ok(Receipt { external_id, detail: None, answer: Answer::http(status, &text) });
        }
        let body = excerpt(text.trim(), 1000);
        let detail = format!("http_bridge HTTP {status} from {}: {}", self.url, if body.is_empty() { "(empty body)" } else { &body });
        let class = match status {
            429 => ErrorClass::RateLimited { retry_after },
            408 | 500..=599 => ErrorClass::Transient { retry_after },
            _ => ErrorClass::Permanent,
        };
        Err(SendError::new(class, detail).answered(Answer::http(status, &text)))
    }
}
