//! The SQL behind the HTTP API v1 (`src/http/api/`): pick a sending session, insert a message
//! (idempotently, with its attachments, in the caller's transaction), read messages, their
//! events and threads, and run the operator functions (`et_approve`, `et_reject`, `et_retry`,
//! `et_retry_failed`, `et_cancel`, `et_resend`, `et_handoff`) on behalf of an API key.
//!
//! Every statement is scoped by the caller's tenant. The only queries that look across tenants
//! are the `*_elsewhere` probes, which answer a yes/no used to log a denied attempt (the caller
//! still gets a plain 404).
//!
//! - `send`: session choice, sender checks, the idempotent insert and attachments
//! - `messages`: message reads, events, the filtered list
//! - `actions`: the operator functions (approve, reject, retry one or many, cancel, resend)
//! - `threads`: thread reads, insights, handoff
//! - `dead_letters`: the dead-letter queue (`et_dead_letters`)

mod actions;
mod dead_letters;
mod messages;
mod send;
mod threads;

pub use actions::*;
pub use dead_letters::*;
pub use messages::*;
pub use send::*;
pub use threads::*;

use uuid::Uuid;

/// A message named by the caller: its public uuid or its bigint id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRef {
    Public(Uuid),
    Id(i64),
}

impl MessageRef {
    /// `"42"` or `"0b5e…"`; `None` when it is neither.
    pub fn parse(s: &str) -> Option<MessageRef> {
        if let Ok(id) = s.parse::<i64>() {
            return Some(MessageRef::Id(id));
        }
        Uuid::parse_str(s).ok().map(MessageRef::Public)
    }
}
