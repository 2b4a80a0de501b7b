//! The message lifecycle as plain data: every `delivery_status`, and every allowed change.
//!
//! The same list is the `et_status_transitions` table (seeded by `sql/V1__baseline.sql`), which the
//! `et_messages` update trigger checks, so a direct `UPDATE` from psql cannot break the lifecycle
//! either. `tests/it/lifecycle.rs` proves the two lists are identical.

use std::fmt;
use std::str::FromStr;

/// Which way a message travels; the two directions have separate lifecycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Written by a channel bridge or provider webhook: a contact wrote to us.
    Inbound,
    /// Written by an application: we send it.
    Outbound,
}

impl Direction {
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Every value `et_messages.delivery_status` may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Outbound, waiting for an operator's `et_approve` / `et_reject`.
    PendingApproval,
    /// Outbound, in `et_outbound_queue`, waiting for its `run_at`.
    Queued,
    /// Outbound, leased by a daemon that is talking to the provider.
    Sending,
    /// Outbound, accepted by the provider (final).
    Sent,
    /// Outbound, permanent error or attempts exhausted; the queue row is dead (operator may retry).
    Failed,
    /// Outbound, refused by an operator (final).
    Rejected,
    /// Outbound, withdrawn before sending (final).
    Cancelled,
    /// Outbound, every recipient is on the suppression list (final).
    Suppressed,
    /// Inbound, waiting for the inbound worker.
    Received,
    /// Inbound, leased by the inbound worker while it decides.
    InboundProcessing,
    /// Inbound, answered automatically (final).
    InboundAiReplied,
    /// Inbound, handed to a human (final).
    InboundHumanTakeover,
    /// Inbound, a follow-up was scheduled (final).
    InboundFollowUp,
    /// Inbound, nothing to do (final).
    InboundNoAction,
    /// Inbound, the decision failed; an operator may send it back to `received`.
    InboundError,
}

impl Status {
    pub const ALL: [Status; 15] = [
        Status::PendingApproval,
        Status::Queued,
        Status::Sending,
        Status::Sent,
        Status::Failed,
        Status::Rejected,
        Status::Cancelled,
        Status::Suppressed,
        Status::Received,
        Status::InboundProcessing,
        Status::InboundAiReplied,
        Status::InboundHumanTakeover,
        Status::InboundFollowUp,
        Status::InboundNoAction,
        Status::InboundError,
    ];

    /// The spelling stored in `et_messages.delivery_status`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::PendingApproval => "pending_approval",
            Status::Queued => "queued",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Failed => "failed",
            Status::Rejected => "rejected",
            Status::Cancelled => "cancelled",
            Status::Suppressed => "suppressed",
            Status::Received => "received",
            Status::InboundProcessing => "inbound_processing",
            Status::InboundAiReplied => "inbound_ai_replied",
            Status::InboundHumanTakeover => "inbound_human_takeover",
            Status::InboundFollowUp => "inbound_follow_up",
            Status::InboundNoAction => "inbound_no_action",
            Status::InboundError => "inbound_error",
        }
    }

    /// The direction whose lifecycle this status belongs to.
    pub const fn direction(self) -> Direction {
        match self {
            Status::PendingApproval
            | Status::Queued
            | Status::Sending
            | Status::Sent
            | Status::Failed
            | Status::Rejected
            | Status::Cancelled
            | Status::Suppressed => Direction::Outbound,
            _ => Direction::Inbound,
        }
    }

    /// The statuses a new row may start in.
    pub const fn is_initial(self, direction: Direction) -> bool {
        matches!(
            (direction, self),
            (Direction::Outbound, Status::PendingApproval | Status::Queued | Status::Suppressed) | (Direction::Inbound, Status::Received)
        )
    }

    /// No transition leaves this status.
    pub fn is_final(self) -> bool {
        !TRANSITIONS.iter().any(|t| t.from == self)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `delivery_status` string that is not one of [`Status::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown delivery_status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// One allowed change of `delivery_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub direction: Direction,
    pub from: Status,
    pub to: Status,
    /// Why it happens, as stored in `et_status_transitions.description`.
    pub description: &'static str,
}

const fn t(direction: Direction, from: Status, to: Status, description: &'static str) -> Transition {
    Transition { direction, from, to, description }
}

use Direction::{Inbound as In, Outbound as Out};
use Status::*;

/// The lifecycle. Anything not listed here is refused, in Rust and in the database.
pub const TRANSITIONS: &[Transition] = &[
    t(Out, PendingApproval, Queued, "approved by an operator"),
    t(Out, PendingApproval, Rejected, "rejected by an operator"),
    t(Out, PendingApproval, Cancelled, "cancelled before approval"),
    t(Out, Queued, Sending, "claimed by a daemon"),
    t(Out, Queued, Cancelled, "cancelled before sending"),
    t(Out, Queued, Suppressed, "every recipient is suppressed"),
    t(Out, Sending, Sent, "the provider accepted it"),
    t(Out, Sending, Queued, "transient error or expired lease: retry later"),
    t(Out, Sending, Failed, "permanent error or attempts exhausted: dead letter"),
    t(Out, Sending, Suppressed, "every recipient was suppressed after it was queued"),
    t(Out, Failed, Queued, "operator retry"),
    t(In, Received, InboundProcessing, "claimed by the inbound worker"),
    t(In, InboundProcessing, Received, "lease expired: decide again"),
    t(In, InboundProcessing, InboundAiReplied, "an automatic reply was queued"),
    t(In, InboundProcessing, InboundHumanTakeover, "a human takes the thread"),
    t(In, InboundProcessing, InboundFollowUp, "a follow-up was scheduled"),
    t(In, InboundProcessing, InboundNoAction, "nothing to do"),
    t(In, InboundProcessing, InboundError, "the decision failed"),
    t(In, InboundError, Received, "operator retry"),
];

/// Whether `from → to` is allowed for a message travelling `direction`.
pub fn allowed(direction: Direction, from: Status, to: Status) -> bool {
    TRANSITIONS.iter().any(|t| t.direction == direction && t.from == from && t.to == to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_spelling() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
        }
        assert!("banana".parse::<Status>().is_err());
    }

    #[test]
    fn outbound_happy_path_and_refusals() {
        assert!(allowed(Out, Queued, Sending));
        assert!(allowed(Out, Sending, Sent));
        assert!(!allowed(Out, Sent, Queued), "sent is final");
        assert!(!allowed(In, Queued, Sending), "directions do not share transitions");
        assert!(!allowed(Out, PendingApproval, Sending), "approval cannot be skipped");
        assert!(Sent.is_final() && Rejected.is_final() && !Failed.is_final());
    }

    #[test]
    fn every_transition_stays_within_one_direction() {
        for t in TRANSITIONS {
            assert_eq!(t.from.direction(), t.direction, "{t:?}");
            assert_eq!(t.to.direction(), t.direction, "{t:?}");
        }
    }
}
