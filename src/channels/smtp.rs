//! Provider `smtp`: lettre's pooled async SMTP client. Session config: `host`, `port`,
//! `tls` (`none` | `starttls` | `tls`, default `starttls`), `timeout_ms`, `pool_size`;
//! credentials (`user:password`) from the secret named by `credentials_ref`.
//!
//! Classification: 4xx, connection errors and timeouts are transient; 5xx is permanent, and
//! 5.1.1–5.1.3 (no such mailbox / bad address) also suppress the address as `hard_bounce`.

use super::{email, Channel, Outbound, Receipt, SendError};
use crate::domain::outcome::{ErrorClass, SuppressReason};
use async_trait::async_trait;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::time::Duration;

pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Smtp {
    pub fn new(config: &serde_json::Value, secret: Option<String>) -> Result<Smtp, SendError> {
        let get = |k: &str| config.get(k);
        let host = get("host")
            .and_then(|v| v.as_str())
            .ok_or_else(|| SendError::permanent("provider smtp needs config.host"))?;
        let tls = get("tls").and_then(|v| v.as_str()).unwrap_or("starttls");
        let mut builder = match tls {
            "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| SendError::permanent(format!("smtp config: {e}")))?,
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| SendError::permanent(format!("smtp config: {e}")))?,
            other => return Err(SendError::permanent(format!("smtp config.tls {other:?}: expected none, starttls or tls"))),
        };
        if let Some(port) = get("port").and_then(|v| v.as_u64()) {
            let port = u16::try_from(port).map_err(|_| SendError::permanent(format!("smtp config.port {port} is not a port")))?;
            builder = builder.port(port);
        }
        let timeout = get("timeout_ms").and_then(|v| v.as_u64()).unwrap_or(30_000);
        let pool_size = get("pool_size").and_then(|v| v.as_u64()).unwrap_or(8) as u32;
        builder = builder
            .timeout(Some(Duration::from_millis(timeout)))
            .pool_config(PoolConfig::new().max_size(pool_size));
        if let Some(secret) = secret {
            let (user, pass) = secret
                .split_once(':')
                .ok_or_else(|| SendError::permanent("the smtp secret must be user:password"))?;
            builder = builder.credentials(Credentials::new(user.to_owned(), pass.to_owned()));
        }
        Ok(Smtp { transport: builder.build() })
    }
}

#[async_trait]
impl Channel for Smtp {
    async fn send(&self, msg: &Outbound) -> Result<Receipt, SendError> {
        let m = email::build(msg)?;
        match self.transport.send(m).await {
            Ok(_) => Ok(Receipt { external_id: msg.message_id.clone(), detail: None }),
            Err(e) => Err(classify(&e, msg)),
        }
    }
}

/// Transient or permanent from the SMTP reply; 5.1.1–5.1.3 suppress the rejected address.
fn classify(e: &lettre::transport::smtp::Error, msg: &Outbound) -> SendError {
    let detail = e.to_string();
    let class = if e.is_permanent() {
        if ["5.1.1", "5.1.2", "5.1.3"].iter().any(|code| detail.contains(code)) {
            ErrorClass::Suppress { reason: SuppressReason::HardBounce, address: rejected_address(&detail, msg) }
        } else {
            ErrorClass::Permanent
        }
    } else {
        // 4xx replies, connection failures, timeouts, TLS hiccups: try again later.
        ErrorClass::Transient { retry_after: None }
    };
    SendError { class, detail }
}

/// The address a 5.1.x reply names (`<user@host>`), else the only recipient.
fn rejected_address(detail: &str, msg: &Outbound) -> Option<String> {
    let named = detail
        .split('<')
        .skip(1)
        .filter_map(|s| s.split_once('>').map(|(a, _)| a.to_lowercase()))
        .find(|a| a.contains('@'));
    let all: Vec<&String> = msg.to.iter().chain(&msg.cc).chain(&msg.bcc).collect();
    named.or_else(|| (all.len() == 1).then(|| bare(all[0])))
}

fn bare(addr: &str) -> String {
    match addr.rsplit_once('<') {
        Some((_, rest)) => rest.trim_end_matches('>').trim().to_lowercase(),
        None => addr.trim().to_lowercase(),
    }
}
