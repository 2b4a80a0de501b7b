//! What the inbound worker decides about a message, and what the insights worker writes about a
//! thread. Plain data: deciders produce it, `db::inbound` / `db::insights` apply it.

use super::vocab::{Channel, DecidedBy, Direction, Handling, Status};
use chrono::{DateTime, Utc};

/// One message of a thread, as deciders see it.
#[derive(Debug, Clone)]
pub struct HistoryMessage {
    pub id: i64,
    pub direction: Direction,
    pub delivery_status: Status,
    pub sender: Option<String>,
    pub subject: Option<String>,
    /// The text (body_text, or the text of body_html).
    pub text: String,
    pub created_at: DateTime<Utc>,
}

/// A thread's recent history, oldest first, ending with the message being decided.
#[derive(Debug, Clone)]
pub struct ThreadHistory {
    pub tenant_id: String,
    pub thread_id: i64,
    pub channel: Channel,
    /// The normalised peer address.
    pub contact: String,
    pub subject: Option<String>,
    pub handling: Handling,
    /// Bounded (the newest N), oldest first.
    pub messages: Vec<HistoryMessage>,
}

impl ThreadHistory {
    /// The newest inbound message (the one being decided).
    pub fn last_inbound(&self) -> Option<&HistoryMessage> {
        self.messages.iter().rev().find(|m| m.direction == Direction::Inbound)
    }
}

/// What to do about an inbound message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Queue this reply (an outbound row in the same thread; approval gating applies).
    AutoReply {
        body: String,
    },
    /// A human takes the thread over: it is never auto-answered again until handed back.
    HumanTakeover {
        reason: String,
    },
    /// Come back to the contact at `at` unless they write first.
    FollowUp {
        at: DateTime<Utc>,
        note: String,
    },
    NoAction,
}

impl Decision {
    /// The inbound `delivery_status` this decision ends in.
    pub fn status(&self) -> Status {
        match self {
            Decision::AutoReply { .. } => Status::InboundAiReplied,
            Decision::HumanTakeover { .. } => Status::InboundHumanTakeover,
            Decision::FollowUp { .. } => Status::InboundFollowUp,
            Decision::NoAction => Status::InboundNoAction,
        }
    }
}

/// A decision with why and by whom (stored in the message's `metadata.decision`).
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub decision: Decision,
    /// Human-readable: which rule matched, or the model's reason.
    pub reason: String,
    /// A CRM label for the thread (e.g. `refund`, `pricing`).
    pub label: Option<String>,
    pub decided_by: DecidedBy,
    pub model: Option<String>,
}

/// A decision that could not be made (retried with backoff, then left in `inbound_error`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct DecideError {
    pub reason: String,
}

impl DecideError {
    pub fn new(reason: impl Into<String>) -> Self {
        DecideError { reason: reason.into() }
    }
}

/// What the insights worker writes to `et_thread_insights`.
#[derive(Debug, Clone, PartialEq)]
pub struct Insight {
    pub summary: String,
    pub label: Option<String>,
    pub next_step: Option<String>,
    pub follow_up_at: Option<DateTime<Utc>>,
    pub decided_by: DecidedBy,
    pub model: Option<String>,
}
