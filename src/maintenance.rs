//! The maintenance task: housekeeping that no request and no claim does. As soon as this daemon
//! becomes the leader ([`crate::leader`]), and then every `PGCOURIER_MAINTENANCE_INTERVAL` while it
//! leads, it:
//! - keeps the audit trail's daily partitions: the next days made ahead
//!   ([`retention::make_partitions_ahead`]), expired days dropped whole, one transaction each
//!   ([`retention::drop_expired_day`]);
//! - deletes history past each tenant's retention periods ([`retention::Prune`]: finished
//!   messages and dead letters with their events, events, webhook deliveries, security events,
//!   attachment content), in batches that are each one short transaction, until a batch comes
//!   back short; each batch also takes a transaction-level advisory lock, so a pass overlapping
//!   a change of leader stays one at a time; while sends or decisions are due it rests between
//!   batches and between dropped days ([`rest_after`]), so that pruning takes little from them;
//! - removes the console's expired sessions and old chart minutes.
//!
//! The periods are tenant settings (`message_retention_days`, ...; their defaults in
//! `et_retention_defaults()`, sql/V12__retention.sql).

use crate::db::retention::{self, Prune};
use crate::db::DbError;
use crate::every::Every;
use crate::leader::LeaderState;
use crate::telemetry::one_line;
use deadpool_postgres::Pool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Run until `shutdown`: whenever this daemon becomes the leader a pass at once, then one every
/// `every` for as long as it leads.
pub async fn run(pool: Pool, every: Duration, leader: Arc<LeaderState>, shutdown: CancellationToken) {
    while leader.until_leads(&shutdown).await {
        // an interval's first tick is immediate: the pass runs as leadership is won
        let mut tick = Every::new(every);
        while tick.next(&shutdown).await && leader.leads() {
            one_pass(&pool, &shutdown).await;
        }
    }
}

async fn one_pass(pool: &Pool, shutdown: &CancellationToken) {
    if let Err(e) = pass(pool, shutdown).await {
        if e.is_transient() {
            // the server restarting, a lost connection: the next pass tries again
            tracing::debug!(error = %one_line(&e), "maintenance pass failed; trying again next pass");
        } else {
            tracing::warn!(error = %one_line(&e), "maintenance pass failed");
        }
    }
}

/// While work is due, the pruner rests this many times as long as its last batch (or dropped
/// day) took, so it takes at most 1 / (1 + BUSY_REST_FACTOR) of one connection's time (2.5%)
/// from the sends and decisions that are waiting; with nothing due it runs back to back.
const BUSY_REST_FACTOR: u32 = 39;

/// How long to rest after a batch that took `took`, given whether work is due: the pruner's
/// throttle as a pure function.
pub fn rest_after(took: Duration, work_due: bool) -> Duration {
    match work_due {
        true => took * BUSY_REST_FACTOR,
        false => Duration::ZERO,
    }
}

/// One pass: partitions, retention, console upkeep. What it removed is logged and counted.
pub async fn pass(pool: &Pool, shutdown: &CancellationToken) -> Result<(), DbError> {
    let created = retention::make_partitions_ahead(&pool.get().await?).await?;
    if created > 0 {
        tracing::info!(created, "event partitions made ahead");
        metrics::counter!("pgcourier_event_partitions_created_total").increment(created as u64);
    }
    drop_expired_days(pool, shutdown).await?;
    for kind in Prune::ALL {
        let n = prune(pool, kind, shutdown).await?;
        if n > 0 {
            tracing::info!(kind = kind.label(), rows = n, "deleted history past its retention period");
        }
    }
    let client = pool.get().await?;
    while crate::db::console::delete_expired_sessions(&client, 1000).await? == 1000 {}
    while crate::db::console::delete_old_minutes(&client, 1000).await? == 1000 {}
    Ok(())
}

/// Sleep `rest` unless shutdown comes first; whether to go on.
async fn rested(rest: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(rest) => true,
    }
}

/// The audit trail's expired days, one transaction each, each followed by its rest
/// ([`rest_after`]): every day's drop locks the trail that each status change writes to.
async fn drop_expired_days(pool: &Pool, shutdown: &CancellationToken) -> Result<(), DbError> {
    let mut rest = Duration::ZERO;
    while rested(rest, shutdown).await {
        let client = pool.get().await?;
        let started = std::time::Instant::now();
        let Some(day) = retention::drop_expired_day(&client).await? else { break };
        rest = rest_after(started.elapsed(), retention::work_due(&client).await?);
        tracing::info!(partition = %day, "expired day of the audit trail dropped");
        metrics::counter!("pgcourier_event_partitions_dropped_total").increment(1);
    }
    Ok(())
}

/// Batches of `kind` until one comes back short (or another daemon holds the lock, or
/// shutdown), each followed by its rest ([`rest_after`]), which holds no connection; how many
/// rows it removed.
async fn prune(pool: &Pool, kind: Prune, shutdown: &CancellationToken) -> Result<i64, DbError> {
    let mut total = 0i64;
    let mut rest = Duration::ZERO;
    while rested(rest, shutdown).await {
        let mut client = pool.get().await?;
        let started = std::time::Instant::now();
        let Some(n) = retention::prune_batch(&mut client, kind).await? else { break };
        rest = rest_after(started.elapsed(), retention::work_due(&client).await?);
        drop(client);
        total += i64::from(n);
        metrics::counter!("pgcourier_retention_deleted_total", "kind" => kind.label()).increment(n.max(0) as u64);
        if kind == Prune::AttachmentContent {
            metrics::counter!("pgcourier_attachment_content_dropped_total").increment(n.max(0) as u64);
        }
        if n < kind.batch() {
            break;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pruner_rests_only_while_work_is_due() {
        let batch = Duration::from_millis(80);
        assert_eq!(rest_after(batch, false), Duration::ZERO);
        // 80 ms of work in every 3.2 s: 2.5% of the connection's time
        assert_eq!(rest_after(batch, true), Duration::from_millis(3120));
        assert_eq!(batch + rest_after(batch, true), batch * 40);
    }
}
