//! The rows the database layer reads for the channel adapters: the session a message goes out
//! on and the files sent with it. A leaf, so that [`crate::db`] (which reads them) and
//! [`crate::channels`] (which sends with them) need not know each other.

use crate::domain::vocab::{Channel, Provider};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The channel session a claimed message goes out on.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// `et_sessions.id`: keys the adapter cache and the session's circuit breaker.
    pub id: i64,
    /// The channel the session serves.
    pub channel: Channel,
    /// The adapter that sends for it.
    pub provider: Provider,
    /// The from-address / phone / bot of the session.
    pub address: String,
    /// Non-secret provider settings.
    pub config: Value,
    /// Name of the secret the daemon resolves from its environment.
    pub credentials_ref: Option<String>,
    /// Changes when an operator edits the session: the adapter is rebuilt.
    pub updated_at: DateTime<Utc>,
}

/// A file sent with a message (`et_attachments`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The name the recipient sees (the trigger refused slashes and empty names).
    pub filename: String,
    /// The MIME type it is sent with.
    pub content_type: String,
    /// The file itself.
    pub content: Vec<u8>,
}
