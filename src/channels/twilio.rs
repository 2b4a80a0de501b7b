//! Provider `twilio`: SMS, and WhatsApp through Twilio when the message's channel is `whatsapp`.
//!
//! Speaks the Programmable Messaging API: `POST {api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json`,
//! form-encoded (`To`, `From` or `MessagingServiceSid`, `Body`, `StatusCallback`), HTTP basic auth.
//! WhatsApp addresses are prefixed `whatsapp:`. One API call per recipient; the receipt's
//! external id is the first message `sid` (`SM…`).
//!
//! Session config: `api_base` (default `https://api.twilio.com`), `timeout_ms` (10000),
//! `account_sid` (when the secret is the auth token alone, or an API key `SK…:secret`),
//! `messaging_service_sid`, `status_callback_url`. Secret: `ACxxxx:authtoken`, or the token alone
//! with `config.account_sid`.
//!
//! Classification (Twilio answers `{"code","message","more_info","status"}`): 20429 / HTTP 429 →
//! rate limited (Retry-After honoured); 5xx, connection errors, timeouts → transient; 21610
//! (recipient replied STOP) → suppress `unsubscribed`; 20003 (authentication) → permanent naming
//! the credentials; 21211 and every other 4xx → permanent with Twilio's code and message.
//! Attachments are refused (MMS needs a public `MediaUrl`, which this adapter does not host).
//!
//! Several recipients: a permanent failure for one does not stop the others; a transient one
//! stops the loop. Nothing accepted → the error (transient first, so a retry can reach the rest);
//! something accepted → success (a retry would send duplicates), the failures in the receipt
//! detail and the log.
//!
//! Sources:
//! - https://www.twilio.com/docs/messaging/api/message-resource (create a Message, 201 + `sid`)
//! - https://github.com/twilio/twilio-go/blob/v1.7.2/rest/api/v2010/docs/AccountsMessagesApi.md
//! - https://www.twilio.com/docs/usage/twilios-response (error body: code, message, more_info, status)
//! - https://www.twilio.com/docs/api/errors/21610, /20003, /20429, /21211

use super::provider_http::{error_chain, excerpt, retry_after, unanswered};
use super::{Answer, Channel, Outbound, Receipt, SendError};
use crate::domain::network::Allow;
use crate::domain::outcome::{ErrorClass, SuppressReason};
use crate::domain::vocab;
use async_trait::async_trait;
use std::time::Duration;

pub struct Twilio {
    client: reqwest::Client,
    /// `{api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json`
    endpoint: String,
    /// Basic-auth user (the AccountSid, or an API key SID) and password.
    user: String,
    password: String,
    from: String,
    messaging_service_sid: Option<String>,
    status_callback: Option<String>,
}

impl Twilio {
    pub fn new(config: &serde_json::Value, from: &str, secret: Option<String>, allow: Allow) -> Result<Twilio, SendError> {
        let get = |k: &str| config.get(k).and_then(|v| v.as_str()).map(str::trim).filter(|s| !s.is_empty());
        let secret = secret.ok_or_else(|| {
            SendError::permanent("provider twilio needs a secret: set the session's credentials_ref (secret `AccountSid:AuthToken`)")
        })?;
        let config_sid = get("account_sid");
        let (account_sid, user, password) = match (secret.split_once(':'), config_sid) {
            (Some((sid, token)), configured) if sid.starts_with("AC") => {
                if let Some(c) = configured.filter(|c| *c != sid) {
                    return Err(SendError::permanent(format!("twilio: the secret's AccountSid {sid} differs from config.account_sid {c}")));
                }
                (sid.to_owned(), sid.to_owned(), token.to_owned())
            }
            // An API key (`SKxxxx:secret`) authenticates for the account named in the config.
            (Some((key, key_secret)), Some(sid)) if key.starts_with("SK") => (sid.to_owned(), key.to_owned(), key_secret.to_owned()),
            (None, Some(sid)) => (sid.to_owned(), sid.to_owned(), secret.clone()),
            _ => {
                return Err(SendError::permanent(
                    "twilio: the secret must be `AccountSid:AuthToken` (ACxxxx:token), or the auth token alone with config.account_sid",
                ))
            }
        };
        if !account_sid.starts_with("AC") {
            return Err(SendError::permanent(format!("twilio: account sid {account_sid:?} does not start with AC")));
        }
        let api_base = get("api_base").unwrap_or("https://api.twilio.com").trim_end_matches('/');
        let timeout = config.get("timeout_ms").and_then(|v| v.as_u64()).unwrap_or(10_000);
        let client = super::provider_http::guarded_client("twilio", "api_base", api_base, allow, Duration::from_millis(timeout))?;
        Ok(Twilio {
            client,
            endpoint: format!("{api_base}/2010-04-01/Accounts/{account_sid}/Messages.json"),
            user,
            password,
            from: from.to_owned(),
            messaging_service_sid: get("messaging_service_sid").map(str::to_owned),
            status_callback: get("status_callback_url").map(str::to_owned),
        })
    }

    /// The form of one message to `to`.
    fn form(&self, prefix: &str, to: &str, body: &str) -> Vec<(&'static str, String)> {
        let mut form = vec![("To", format!("{prefix}{to}"))];
        match &self.messaging_service_sid {
            Some(sid) => form.push(("MessagingServiceSid", sid.clone())),
            None => form.push(("From", format!("{prefix}{}", self.from))),
        }
        form.push(("Body", body.to_owned()));
        if let Some(url) = &self.status_callback {
            form.push(("StatusCallback", url.clone()));
        }
        form
    }

    /// One API call: the created message (`sid`, `status`) or a classified failure.
    async fn send_one(&self, form: &[(&'static str, String)], to: &str) -> Result<serde_json::Value, SendError> {
        let response = self
            .client
            .post(&self.endpoint)
            .basic_auth(&self.user, Some(&self.password))
            .form(form)
            .send()
            .await
            .map_err(|e| unanswered(format!("twilio: request to {} failed: {}", self.endpoint, error_chain(&e)), &e))?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let text = response.text().await.map_err(|e| {
            SendError::transient(format!("twilio: HTTP {status}: reading the answer failed: {}", error_chain(&e))).possibly_delivered(true)
        })?;
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        if (200..300).contains(&status) {
            return Ok(json);
        }
        Err(classify(status, &json, &text, retry_after, to).answered(Answer::http(status, &text)))
    }
}

#[async_trait]
impl Channel for Twilio {
    async fn send(&self, msg: &Outbound) -> Result<Receipt, SendError> {
        let prefix = match msg.channel {
            vocab::Channel::Sms => "",
            vocab::Channel::Whatsapp => "whatsapp:",
            other => return Err(SendError::permanent(format!("twilio sends sms and whatsapp, not {other}"))),
        };
        if !msg.attachments.is_empty() {
            return Err(SendError::invalid(format!(
                "twilio: {} attachment(s) cannot be sent: MMS/WhatsApp media need a public MediaUrl, which pgcourier does not host; send a link in the text instead",
                msg.attachments.len()
            )));
        }
        let body =
            msg.text.as_deref().filter(|t| !t.trim().is_empty()).ok_or_else(|| SendError::invalid("twilio: the message has no text"))?;
        if msg.to.is_empty() {
            return Err(SendError::invalid("twilio: the message has no recipients"));
        }
        let mut sent = Vec::new();
        let mut failed: Vec<(String, SendError)> = Vec::new();
        for to in &msg.to {
            match self.send_one(&self.form(prefix, to, body), to).await {
                Ok(json) => sent.push(serde_json::json!({ "to": to, "sid": json["sid"], "status": json["status"] })),
                Err(e) => {
                    let stop = e.class.is_transient();
                    failed.push((to.clone(), e));
                    if stop {
                        break;
                    }
                }
            }
        }
        if sent.is_empty() {
            let first = failed.iter().position(|(_, e)| e.class.is_transient()).unwrap_or(0);
            return Err(failed.swap_remove(first).1);
        }
        let unsent: Vec<&String> = msg.to.iter().skip(sent.len() + failed.len()).collect();
        if !failed.is_empty() || !unsent.is_empty() {
            tracing::warn!(failed = ?failed.iter().map(|(to, e)| format!("{to}: {}", e.detail)).collect::<Vec<_>>(), ?unsent,
                "twilio: some recipients were not sent to; the message counts as sent (a retry would duplicate the others)");
        }
        let external_id = sent[0]["sid"].as_str().map(str::to_owned);
        let mut detail = serde_json::json!({ "provider": vocab::Provider::Twilio, "messages": sent });
        if !failed.is_empty() || !unsent.is_empty() {
            detail["failed"] =
                failed.iter().map(|(to, e)| serde_json::json!({ "to": to, "class": e.class.as_str(), "error": e.detail })).collect();
            detail["unsent"] = serde_json::json!(unsent);
        }
        Ok(Receipt { external_id, detail: Some(detail), answer: Default::default() })
    }
}

/// A Twilio error answer to a class and an operator-readable detail.
fn classify(status: u16, json: &serde_json::Value, text: &str, retry_after: Option<Duration>, to: &str) -> SendError {
    let code = json.get("code").and_then(|c| c.as_u64());
    let message = json.get("message").and_then(|m| m.as_str());
    let said = match (code, message) {
        (Some(code), Some(message)) => {
            let extra = json.get("detail").and_then(|d| d.as_str()).map(|d| format!(". {d}")).unwrap_or_default();
            let more = json.get("more_info").and_then(|m| m.as_str()).map(|u| format!(" ({u})")).unwrap_or_default();
            format!("error {code}: {message}{extra}{more}")
        }
        _ => excerpt(text.trim(), 1000),
    };
    let detail = format!("twilio HTTP {status} for {to}, {said}");
    let class = match (code, status) {
        (Some(20429), _) | (_, 429) => ErrorClass::RateLimited { retry_after },
        (Some(21610), _) => ErrorClass::Suppress { reason: SuppressReason::Unsubscribed, address: Some(to.to_owned()) },
        (Some(20003), _) | (_, 401) => {
            return SendError::permanent(format!(
                "{detail}: Twilio rejected the credentials; check the session's secret (AccountSid:AuthToken) and config.account_sid"
            ))
        }
        (_, 500..=599) => ErrorClass::Transient { retry_after },
        _ => ErrorClass::Permanent,
    };
    SendError::new(class, detail)
}
