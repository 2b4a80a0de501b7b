//! The maintenance task: housekeeping that no request and no claim does. Every
//! `PGCOURIER_MAINTENANCE_INTERVAL` (and once at start) the leader ([`crate::leader`]):
//! - keeps the audit trail's daily partitions: the next days made ahead, expired days dropped
//!   whole ([`retention::partitions_upkeep`]);
//! - deletes history past each tenant's retention periods ([`retention::Prune`]: finished
//!   messages and dead letters with their events, events, webhook deliveries, security events,
//!   attachment content), in batches that are each one short transaction, until a batch comes
//!   back short; each batch also takes a transaction-level advisory lock, so a pass overlapping
//!   a change of leader stays one at a time;
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

/// Run until `shutdown`: a pass at start, then every `every`.
pub async fn run(pool: Pool, every: Duration, leader: Arc<LeaderState>, shutdown: CancellationToken) {
    let mut tick = Every::new(every);
    while tick.next(&shutdown).await {
        if !leader.leads() {
            continue;
        }
        if let Err(e) = pass(&pool, &shutdown).await {
            if e.is_transient() {
                // the server restarting, a lost connection: the next pass tries again
                tracing::debug!(error = %one_line(&e), "maintenance pass failed; trying again next pass");
            } else {
                tracing::warn!(error = %one_line(&e), "maintenance pass failed");
            }
        }
    }
}

/// One pass: partitions, retention, console upkeep. What it removed is logged and counted.
pub async fn pass(pool: &Pool, shutdown: &CancellationToken) -> Result<(), DbError> {
    let mut client = pool.get().await?;
    let upkeep = retention::partitions_upkeep(&client).await?;
    if upkeep != retention::PartitionUpkeep::default() {
        tracing::info!(created = upkeep.created, dropped = upkeep.dropped, "event partitions made ahead and expired days dropped");
        metrics::counter!("pgcourier_event_partitions_created_total").increment(upkeep.created.max(0) as u64);
        metrics::counter!("pgcourier_event_partitions_dropped_total").increment(upkeep.dropped.max(0) as u64);
    }
    for kind in Prune::ALL {
        let n = prune(&mut client, kind, shutdown).await?;
        if n > 0 {
            tracing::info!(kind = kind.label(), rows = n, "deleted history past its retention period");
        }
    }
    while crate::db::console::delete_expired_sessions(&client, 1000).await? == 1000 {}
    while crate::db::console::delete_old_minutes(&client, 1000).await? == 1000 {}
    Ok(())
}

/// Batches of `kind` until one comes back short (or another daemon holds the lock, or
/// shutdown); how many rows it removed.
async fn prune(client: &mut deadpool_postgres::Client, kind: Prune, shutdown: &CancellationToken) -> Result<i64, DbError> {
    let mut total = 0i64;
    while !shutdown.is_cancelled() {
        let Some(n) = retention::prune_batch(client, kind).await? else { break };
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
