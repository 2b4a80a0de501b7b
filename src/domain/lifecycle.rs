//! The message lifecycle as plain data: every `delivery_status`, and every allowed change.
//!
//! The same list is the `et_status_transitions` table (seeded by `sql/V1__baseline.sql`), which the
//! `et_messages` update trigger checks, so a direct `UPDATE` from psql cannot break the lifecycle
//! either. `tests/it/lifecycle.rs` proves the two lists are identical.

use super::vocab::vocabulary;

vocabulary! {
    /// Which way a message travels; the two directions have separate lifecycles
    /// (`et_messages.direction`, domain `et_direction`).
    pub enum Direction: "direction" {
        /// Written by a channel bridge or provider webhook: a contact wrote to us.
        Inbound = "inbound",
        /// Written by an application: we send it.
        Outbound = "outbound",
    }
}

vocabulary! {
    /// Every value `et_messages.delivery_status` may hold (domain `et_delivery_status`).
    pub enum Status: "delivery_status" {
        /// Outbound, waiting for an operator's `et_approve` / `et_reject`.
        PendingApproval = "pending_approval",
        /// Outbound, in `et_outbound_queue`, waiting for its `run_at`.
        Queued = "queued",
        /// Outbound, leased by a daemon that is talking to the provider.
        Sending = "sending",
        /// Outbound, accepted by the provider (final).
        Sent = "sent",
        /// Outbound, permanent error or attempts exhausted; the queue row is dead (operator may retry).
        Failed = "failed",
        /// Outbound, refused by an operator (final).
        Rejected = "rejected",
        /// Outbound, withdrawn before sending (final).
        Cancelled = "cancelled",
        /// Outbound, every recipient is on the suppression list (final).
        Suppressed = "suppressed",
        /// Inbound, waiting for the inbound worker.
        Received = "received",
        /// Inbound, leased by the inbound worker while it decides.
        InboundProcessing = "inbound_processing",
        /// Inbound, answered automatically (final).
        InboundAiReplied = "inbound_ai_replied",
        /// Inbound, handed to a human (final).
        InboundHumanTakeover = "inbound_human_takeover",
        /// Inbound, a follow-up was scheduled (final).
        InboundFollowUp = "inbound_follow_up",
        /// Inbound, nothing to do (final).
        InboundNoAction = "inbound_no_action",
        /// Inbound, the decision failed; an operator may send it back to `received`.
        InboundError = "inbound_error",
    }
}

impl Status {
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
