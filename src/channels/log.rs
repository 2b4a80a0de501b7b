//! Provider `log`: accepts everything and writes one log line per message (demos, tests).

use super::{Channel, Outbound, Receipt, SendError};
use async_trait::async_trait;

pub struct Log;

#[async_trait]
impl Channel for Log {
    async fn send(&self, msg: &Outbound) -> Result<Receipt, SendError> {
        tracing::info!(
            public_id = %msg.public_id,
            to = ?msg.to,
            subject = msg.subject.as_deref().unwrap_or(""),
            body = msg.text.as_deref().unwrap_or(""),
            "log channel delivered"
        );
        // an email keeps the Message-ID it would have been sent with, as over SMTP
        let external_id = msg.message_id.clone().unwrap_or_else(|| format!("log-{}", msg.public_id));
        Ok(Receipt { external_id: Some(external_id), detail: None, answer: Default::default() })
    }
}
