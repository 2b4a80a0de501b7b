//! Inbound: the worker that claims `received` rows, the deciders (rules, llm), and applying a
//! decision in one transaction.

pub mod llm;
pub mod rules;
pub mod worker;

use crate::domain::decision::{DecideError, Decided, Insight, ThreadHistory};
use async_trait::async_trait;

/// Decides what to do about the newest inbound message of a thread.
#[async_trait]
pub trait Decider: Send + Sync {
    async fn decide(&self, thread: &ThreadHistory) -> Result<Decided, DecideError>;

    /// True when deciding needs no network (decided inline, in batch order); network deciders
    /// are called concurrently.
    fn is_local(&self) -> bool {
        false
    }
}

/// Writes a thread's CRM insight (summary, label, next step, follow-up date).
#[async_trait]
pub trait Summarizer: Send + Sync {
    async fn summarize(&self, thread: &ThreadHistory) -> Result<Insight, DecideError>;
}
