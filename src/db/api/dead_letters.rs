//! The dead-letter queue as the API shows it: `et_dead_letters` of one tenant, newest first,
//! with keyset pagination on (dead_since, message_id).

use crate::domain::vocab::{Channel, Provider};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Error;
use uuid::Uuid;

/// One row of `et_dead_letters`.
#[derive(Debug, Clone)]
pub struct DeadLetterRow {
    pub message_id: i64,
    pub public_id: Uuid,
    pub channel: Channel,
    pub channel_session_id: i64,
    pub provider: Provider,
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    /// As sent: rendered where rendering changed them.
    pub subject: Option<String>,
    pub body_text: Option<String>,
    pub body_html: Option<String>,
    pub attempts: i32,
    /// permanent, transient, validation or unknown (the view's CASE).
    pub failure_type: String,
    pub error_class: Option<String>,
    pub last_error: Option<String>,
    pub provider_response: Option<Value>,
    pub first_failed_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub dead_since: DateTime<Utc>,
    pub trace_id: Option<String>,
    pub meta: Value,
}

/// Which dead letters a page holds.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    pub channel: Option<Channel>,
    pub failure_type: Option<String>,
    /// Dead before this (dead_since, message_id): the previous page's last row.
    pub after: Option<(DateTime<Utc>, i64)>,
    pub limit: i64,
}

pub async fn dead_letters(c: &impl GenericClient, tenant: &str, f: &DeadLetterFilter) -> Result<Vec<DeadLetterRow>, Error> {
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&tenant, &f.limit];
    let mut conds = vec!["d.tenant_id = $1".to_owned()];
    if let Some(ch) = &f.channel {
        params.push(ch);
        conds.push(format!("d.channel = ${}", params.len()));
    }
    if let Some(t) = &f.failure_type {
        params.push(t);
        conds.push(format!("d.failure_type = ${}", params.len()));
    }
    if let Some((at, id)) = &f.after {
        params.push(at);
        params.push(id);
        conds.push(format!("(d.dead_since, d.message_id) < (${}, ${})", params.len() - 1, params.len()));
    }
    let sql = format!(
        "SELECT d.message_id, d.public_id, d.channel, d.channel_session_id, d.provider, d.sender, d.recipients, d.cc, d.bcc,
                d.subject, d.body_text, d.body_html, d.attempts, d.failure_type, d.error_class, d.last_error,
                d.provider_response, d.first_failed_at, d.last_attempt_at, d.dead_since, d.trace_id, d.meta
           FROM et_dead_letters d WHERE {} ORDER BY d.dead_since DESC, d.message_id DESC LIMIT $2",
        conds.join(" AND ")
    );
    let rows = c.query(&sql, &params).await?;
    rows.iter()
        .map(|r| {
            Ok(DeadLetterRow {
                message_id: r.get("message_id"),
                public_id: r.get("public_id"),
                channel: r.try_get("channel")?,
                channel_session_id: r.get("channel_session_id"),
                provider: r.try_get("provider")?,
                sender: r.get("sender"),
                recipients: r.get("recipients"),
                cc: r.get("cc"),
                bcc: r.get("bcc"),
                subject: r.get("subject"),
                body_text: r.get("body_text"),
                body_html: r.get("body_html"),
                attempts: r.get("attempts"),
                failure_type: r.get("failure_type"),
                error_class: r.get("error_class"),
                last_error: r.get("last_error"),
                provider_response: r.get("provider_response"),
                first_failed_at: r.get("first_failed_at"),
                last_attempt_at: r.get("last_attempt_at"),
                dead_since: r.get("dead_since"),
                trace_id: r.get("trace_id"),
                meta: r.get("meta"),
            })
        })
        .collect()
}
