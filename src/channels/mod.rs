//! Channel adapters: one module per provider. Adapters speak SMTP or HTTP, never SQL, and
//! classify every failure at their edge into an [`ErrorClass`]; the dispatcher decides.

pub mod email;
pub mod file;
pub mod http_bridge;
pub mod log;
pub mod provider_http;
pub mod smtp;
pub mod telegram;
pub mod twilio;
pub mod whatsapp_cloud;

use crate::domain::network::Allow;
use crate::domain::outcome::{ErrorClass, ProviderResponse};
use crate::domain::vocab::{self, Provider};
pub use crate::rows::Attachment;
use crate::rows::SessionRow;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// A message ready for a provider: variables rendered, suppressed recipients removed.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub public_id: Uuid,
    pub tenant_id: String,
    pub channel: vocab::Channel,
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub reply_to: Option<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// Email: the `Message-ID` header value (`<public_id@sender-domain>`).
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// The row's `metadata` (e.g. `template` for WhatsApp template messages).
    pub metadata: serde_json::Value,
    /// The row's `variables` (template parameters).
    pub variables: serde_json::Value,
    /// Files to send with the message, in `et_attachments` order.
    pub attachments: Vec<Attachment>,
}

/// What a provider said when it accepted a message.
#[derive(Debug, Clone, Default)]
pub struct Receipt {
    /// The provider's id for the message (stored in `external_message_id`).
    pub external_id: Option<String>,
    /// Anything else worth keeping (e.g. a migrated chat id), merged into the message's
    /// `metadata` under `delivery`.
    pub detail: Option<serde_json::Value>,
    /// The provider's answer (code and text), for the attempt's provider response.
    pub answer: Answer,
}

/// What a provider answered, as received: its code (SMTP reply code, HTTP status) and text.
/// Both None: no answer (the failure happened before one came).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub code: Option<String>,
    pub raw: Option<String>,
}

impl Answer {
    /// An HTTP answer: its status and body.
    pub fn http(status: u16, body: &str) -> Answer {
        Answer { code: Some(status.to_string()), raw: (!body.trim().is_empty()).then(|| body.trim().to_owned()) }
    }
}

impl Receipt {
    /// The attempt's provider response.
    pub fn response(&self) -> ProviderResponse {
        ProviderResponse::accepted(self.answer.code.clone(), self.answer.raw.clone())
    }
}

/// A failed send, classified by the adapter.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct SendError {
    pub class: ErrorClass,
    /// What the provider said (kept, truncated, in `last_error`).
    pub detail: String,
    /// The message may have reached the provider although the send failed: the connection broke
    /// or timed out after the message was handed over, before the provider's answer. A retry
    /// is then flagged as a possible duplicate.
    pub possibly_delivered: bool,
    /// The provider's answer, when it gave one (boxed: errors travel in `Result`s and stay small).
    pub answer: Option<Box<Answer>>,
}

impl SendError {
    pub fn new(class: ErrorClass, detail: impl Into<String>) -> Self {
        SendError { class, detail: detail.into(), possibly_delivered: false, answer: None }
    }

    /// The message cannot be sent as stored; the provider is not asked.
    pub fn invalid(detail: impl Into<String>) -> Self {
        SendError::new(ErrorClass::Invalid, detail)
    }

    /// The same error, with the provider's answer.
    pub fn answered(mut self, answer: Answer) -> Self {
        self.answer = (answer != Answer::default()).then(|| Box::new(answer));
        self
    }

    /// The attempt's provider response (None: the provider was never asked).
    pub fn response(&self) -> Option<ProviderResponse> {
        let answer = self.answer.as_deref().cloned().unwrap_or_default();
        ProviderResponse::failed(&self.class, answer.code, answer.raw, &self.detail)
    }

    pub fn permanent(detail: impl Into<String>) -> Self {
        SendError::new(ErrorClass::Permanent, detail)
    }

    pub fn transient(detail: impl Into<String>) -> Self {
        SendError::new(ErrorClass::Transient { retry_after: None }, detail)
    }

    /// The same error, marked as one the provider may have acted on (see `possibly_delivered`).
    pub fn possibly_delivered(mut self, maybe: bool) -> Self {
        self.possibly_delivered = maybe;
        self
    }
}

/// One provider connection (an SMTP pool, a folder, an HTTP client).
#[async_trait]
pub trait Channel: Send + Sync {
    async fn send(&self, msg: &Outbound) -> Result<Receipt, SendError>;
}

/// Resolves `credentials_ref` to a secret: `PGCOURIER_SECRET_<REF>` in the daemon's environment
/// (the reference upper-cased, anything but letters and digits turned into `_`).
pub fn secret_env_name(reference: &str) -> String {
    let name: String = reference.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("PGCOURIER_SECRET_{name}")
}

fn resolve_secret(reference: &Option<String>) -> Result<Option<String>, SendError> {
    let Some(reference) = reference else { return Ok(None) };
    let var = secret_env_name(reference);
    match std::env::var(&var) {
        Ok(v) if !v.is_empty() => Ok(Some(v)),
        _ => Err(SendError::permanent(format!("credentials_ref {reference:?}: secret {var} is not set in the daemon's environment"))),
    }
}

/// A built adapter, shared by the sends of its session.
type Built = Arc<dyn Channel>;

/// The adapters of every session seen so far, rebuilt when a session is edited. The HTTP
/// adapters' clients pass the SSRF guard with the operator's `allow` ([`crate::egress`]).
#[derive(Default)]
pub struct Registry {
    allow: Allow,
    /// Per session: the `updated_at` the adapter was built for, and the adapter.
    built: Mutex<HashMap<i64, (chrono::DateTime<chrono::Utc>, Built)>>,
}

impl Registry {
    /// A registry whose HTTP adapters may call the address classes `allow` permits
    /// (`PGCOURIER_NETWORK_ALLOW`) besides public ones.
    pub fn new(allow: Allow) -> Registry {
        Registry { allow, built: Mutex::default() }
    }

    /// The adapter for `session`, built on first use (or after the session changed).
    pub fn get(&self, session: &SessionRow) -> Result<Arc<dyn Channel>, SendError> {
        let mut built = self.built.lock().expect("registry lock");
        if let Some((at, ch)) = built.get(&session.id) {
            if *at == session.updated_at {
                return Ok(ch.clone());
            }
        }
        let ch = build(session, self.allow)?;
        built.insert(session.id, (session.updated_at, ch.clone()));
        Ok(ch)
    }
}

fn build(session: &SessionRow, allow: Allow) -> Result<Arc<dyn Channel>, SendError> {
    let secret = resolve_secret(&session.credentials_ref)?;
    Ok(match session.provider {
        Provider::Smtp => Arc::new(smtp::Smtp::new(&session.config, secret)?),
        Provider::File => Arc::new(file::File::new(&session.config)?),
        Provider::Log => Arc::new(log::Log),
        Provider::TelegramBot => Arc::new(telegram::Telegram::new(&session.config, secret, allow)?),
        Provider::WhatsappCloud => Arc::new(whatsapp_cloud::WhatsappCloud::new(&session.config, secret, allow)?),
        Provider::Twilio => Arc::new(twilio::Twilio::new(&session.config, &session.address, secret, allow)?),
        Provider::HttpBridge => Arc::new(http_bridge::HttpBridge::new(&session.config, secret, allow)?),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_names() {
        assert_eq!(super::secret_env_name("smtp-main.prod"), "PGCOURIER_SECRET_SMTP_MAIN_PROD");
    }
}
