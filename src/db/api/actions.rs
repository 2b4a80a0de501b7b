//! The operator actions on messages, each one SQL function of triggers/040 run for a tenant's
//! message as `actor`: approve, reject, retry, cancel, a filtered bulk retry, resend a
//! corrected copy.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Error;

/// An operator action on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Approve,
    Reject,
    Retry,
    Cancel,
}

impl Action {
    /// Every action, by the name forms and the API's paths give it.
    pub const ALL: [(Action, &'static str); 4] =
        [(Action::Approve, "approve"), (Action::Reject, "reject"), (Action::Retry, "retry"), (Action::Cancel, "cancel")];

    pub fn as_str(self) -> &'static str {
        Action::ALL.iter().find(|(a, _)| *a == self).map(|(_, name)| *name).unwrap_or_default()
    }

    /// `"approve"` → [`Action::Approve`]; `None` for any other word.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.iter().find(|(_, name)| *name == s).map(|(a, _)| *a)
    }

    /// The key scope an action needs, for the API and the console alike: deciding what is sent
    /// (approve, reject) is an administrator's; retrying or cancelling one's sends is a sender's.
    pub fn scope(self) -> crate::db::apikeys::Scope {
        use crate::db::apikeys::Scope;
        match self {
            Action::Approve | Action::Reject => Scope::Admin,
            Action::Retry | Action::Cancel => Scope::Send,
        }
    }
}

/// Run the action's SQL function on a message of `tenant` as `actor`. `Ok(None)`: no such
/// message for this tenant. A refused transition is the function's error (SQLSTATE 23514).
pub async fn act(
    c: &impl GenericClient,
    tenant: &str,
    id: i64,
    action: Action,
    actor: &str,
    reason: Option<&str>,
) -> Result<Option<String>, Error> {
    let row = match action {
        Action::Reject => {
            c.query_opt(
                "SELECT et_reject(m.id, $3, $4) FROM et_messages m WHERE m.tenant_id = $1 AND m.id = $2",
                &[&tenant, &id, &actor, &reason],
            )
            .await?
        }
        other => {
            let f = match other {
                Action::Approve => "et_approve",
                Action::Retry => "et_retry",
                _ => "et_cancel",
            };
            c.query_opt(&format!("SELECT {f}(m.id, $3) FROM et_messages m WHERE m.tenant_id = $1 AND m.id = $2"), &[&tenant, &id, &actor])
                .await?
        }
    };
    Ok(row.map(|r| r.get(0)))
}

/// Which failed messages a bulk retry takes (each `None`: any).
#[derive(Debug, Clone, Default)]
pub struct RetryFilter {
    pub recipient: Option<String>,
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub until: Option<DateTime<Utc>>,
    pub category: Option<String>,
    /// Every one of these in metadata.tags.
    pub tags: Vec<String>,
    pub channel: Option<crate::domain::vocab::Channel>,
    /// At most this many.
    pub limit: i32,
}

/// `et_retry_failed`: queue again the failed messages of `tenant` that match; how many.
pub async fn retry_failed(c: &impl GenericClient, tenant: &str, actor: &str, f: &RetryFilter) -> Result<i32, Error> {
    let tags: Option<&[String]> = if f.tags.is_empty() { None } else { Some(&f.tags) };
    let channel = f.channel.map(|c| c.as_str());
    let row = c
        .query_one(
            "SELECT et_retry_failed($1, $2, p_recipient => $3, p_from => $4, p_to => $5, p_category => $6, p_tags => $7,
                                    p_channel => $8, p_limit => $9)",
            &[&tenant, &actor, &f.recipient, &f.from, &f.until, &f.category, &tags, &channel, &f.limit],
        )
        .await?;
    Ok(row.get(0))
}

/// `et_resend`: a corrected copy of a message of `tenant` (`changes` keyed by column), inserted
/// like any message. `Ok(None)`: no such message for this tenant; a refusal is the function's
/// or the insert trigger's error.
pub async fn resend(c: &impl GenericClient, tenant: &str, id: i64, changes: &Value, actor: &str) -> Result<Option<i64>, Error> {
    let row = c
        .query_opt(
            "SELECT et_resend(m.id, $3, $4) FROM et_messages m WHERE m.tenant_id = $1 AND m.id = $2",
            &[&tenant, &id, changes, &actor],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
