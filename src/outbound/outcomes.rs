//! The outcome writer: one task that records finished sends in batches (whatever has arrived
//! since the last write), so a busy daemon writes hundreds of outcomes per transaction and an
//! idle one writes each outcome at once.
//!
//! A batch that cannot be written (the database is restarting, a connection was killed) is
//! retried quickly, for as long as its leases can still be ours: their renewals go on meanwhile,
//! and after a database restart the rescuer leaves leases that ran out while it was down to their
//! daemons for a lease's time, so outcomes written within that window still count and nothing is
//! sent twice. Writes are fenced on the lease, so a late one is never wrong, only discarded.

use crate::db::outbound::{self as q, LeaseKey, OutcomeRow, Released};
use crate::lease::Leases;
use deadpool_postgres::Pool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// What a send task hands to the writer.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // moved once per send; boxing would allocate per send
pub enum Finished {
    /// The attempt ran; record its outcome.
    Outcome(OutcomeRow),
    /// The send never started (shutdown, open circuit breaker): give the lease back without
    /// counting the attempt, due again at `run_at` (now when None).
    Release(Released),
    /// The lease was lost, or ran out during the send: nothing can be recorded; the rescuer
    /// returns the row and flags its next attempt as a possible duplicate.
    Dropped(LeaseKey),
}

const MAX_BATCH: usize = 1000;

/// The first retry of a failed write waits this long; each next one twice as long, up to a
/// quarter lease (and [`MAX_BACKOFF`]), so a database that is back is written to at once.
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// Run until every sender is dropped and the channel is drained.
pub async fn write(
    pool: Pool,
    worker: String,
    leases: Arc<Leases<LeaseKey>>,
    mut rx: mpsc::UnboundedReceiver<(Finished, OwnedSemaphorePermit)>,
) {
    let lease = leases.lease();
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
                Finished::Dropped(key) => leases.forget(&key),
            }
            next = if outcomes.len() + releases.len() < MAX_BATCH { rx.try_recv().ok() } else { None };
        }
        if outcomes.is_empty() && releases.is_empty() {
            continue;
        }
        let keys: Vec<LeaseKey> = outcomes
            .iter()
            .map(|o| (o.tenant_id.clone(), o.message_id, o.attempt))
            .chain(releases.iter().map(|r| (r.tenant_id.clone(), r.message_id, r.attempt)))
            .collect();
        // Keep trying while the leases can still be ours: the longest time left, plus a lease
        // for a database that restarted meanwhile (see the module docs).
        let left = keys.iter().filter_map(|k| leases.time_left(k)).max().unwrap_or(Duration::ZERO);
        let deadline = tokio::time::Instant::now() + left + lease;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match write_once(&pool, &worker, &outcomes, &releases).await {
                Ok((held, released)) => {
                    if held < outcomes.len() as u64 {
                        // the rows are no longer under these attempts' leases: rescued after
                        // they expired, moved by an operator, or, after a failover to an
                        // asynchronous standby, never claimed on this server at all (then the
                        // row is queued again and its next send is an unflagged re-send)
                        let discarded = outcomes.len() as u64 - held;
                        metrics::counter!("pgcourier_outcomes_discarded_total").increment(discarded);
                        tracing::warn!(
                            discarded,
                            "outcomes discarded: their leases are no longer these attempts' (rescued, moved by an operator, or \
                             lost in a failover to an asynchronous standby)"
                        );
                    }
                    if released > 0 {
                        tracing::info!(released, "unstarted leases given back");
                    }
                    break;
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "recording outcomes failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF).min(lease / 4);
                }
                Err(e) => {
                    tracing::error!(error = %e, outcomes = outcomes.len(), "could not record outcomes before the leases expired");
                    break;
                }
            }
        }
        for key in &keys {
            leases.forget(key);
        }
        drop(permits);
    }
}

async fn write_once(pool: &Pool, worker: &str, outcomes: &[OutcomeRow], releases: &[Released]) -> Result<(u64, u64), crate::db::DbError> {
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
