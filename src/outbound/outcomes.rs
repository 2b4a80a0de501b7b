//! The outcome writer: one task that records finished sends in batches (whatever has arrived
//! since the last write), so a busy daemon writes hundreds of outcomes per transaction and an
//! idle one writes each outcome at once.

use crate::db::outbound::{self as q, OutcomeRow, Released};
use deadpool_postgres::Pool;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// What a send task hands to the writer.
#[derive(Debug)]
pub enum Finished {
    /// The attempt ran; record its outcome.
    Outcome(OutcomeRow),
    /// The send never started (shutdown, open circuit breaker): give the lease back without
    /// counting the attempt, due again at `run_at` (now when None).
    Release(Released),
}

const MAX_BATCH: usize = 1000;

/// Run until every sender is dropped and the channel is drained.
pub async fn write(pool: Pool, worker: String, lease: Duration, mut rx: mpsc::UnboundedReceiver<(Finished, OwnedSemaphorePermit)>) {
    while let Some(first) = rx.recv().await {
        let mut outcomes = Vec::new();
        let mut releases = Vec::new();
        // the sends' in-flight permits, freed once their outcomes are written
        let mut permits = Vec::new();
        let mut next = Some(first);
        while let Some((f, permit)) = next {
            permits.push(permit);
            match f {
                Finished::Outcome(o) => outcomes.push(o),
                Finished::Release(r) => releases.push(r),
            }
            next = if outcomes.len() + releases.len() < MAX_BATCH { rx.try_recv().ok() } else { None };
        }
        // Keep trying for as long as the leases last; after that the rescuer owns the rows.
        let deadline = tokio::time::Instant::now() + lease;
        let mut backoff = Duration::from_millis(50);
        loop {
            match write_once(&pool, &worker, &outcomes, &releases).await {
                Ok((held, released)) => {
                    if held < outcomes.len() as u64 {
                        tracing::warn!(lost = outcomes.len() as u64 - held, "outcomes for expired leases were discarded (the rows were rescued)");
                    }
                    if released > 0 {
                        tracing::info!(released, "unstarted leases given back");
                    }
                    break;
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "recording outcomes failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(error = %e, outcomes = outcomes.len(), "could not record outcomes before the leases expired");
                    break;
                }
            }
        }
        drop(permits);
    }
}

async fn write_once(
    pool: &Pool,
    worker: &str,
    outcomes: &[OutcomeRow],
    releases: &[Released],
) -> Result<(u64, u64), Box<dyn std::error::Error + Send + Sync>> {
    let mut client = pool.get().await?;
    let held = if outcomes.is_empty() { 0 } else { q::record(&mut client, worker, outcomes).await? };
    let mut released = 0;
    let mut reasons: Vec<&str> = releases.iter().map(|r| r.reason).collect();
    reasons.dedup();
    for reason in reasons {
        let group: Vec<Released> = releases.iter().filter(|r| r.reason == reason).cloned().collect();
        released += q::release(&mut client, worker, &group).await?;
    }
    Ok((held, released))
}
