//! The maintenance task: housekeeping that no request and no claim does: the console's expired
//! sessions and old chart minutes, and attachment retention (seed 002 §9): every `PGCOURIER_MAINTENANCE_INTERVAL` the content of attachments
//! whose message has been final for longer than the tenant's `attachment_retention_days`
//! (default 30) is dropped, metadata kept, in batches of [`BATCH`] rows, each its own short
//! transaction (`et_drop_expired_attachment_content`, triggers/060_attachments.sql). With several
//! daemons only the leader ([`crate::leader`]) runs the pass, and each retention batch also takes a
//! transaction-level advisory lock (so a pass overlapping a change of leader stays one at a time).

use crate::db::{retention, DbError};
use crate::every::Every;
use crate::leader::LeaderState;
use crate::telemetry::one_line;
use deadpool_postgres::Pool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Attachments per transaction: short enough that no lock is held for long.
pub const BATCH: i32 = 500;

/// Run until `shutdown`: a pass at start, then every `every`.
pub async fn run(pool: Pool, every: Duration, leader: Arc<LeaderState>, shutdown: CancellationToken) {
    let mut tick = Every::new(every);
    while tick.next(&shutdown).await {
        if !leader.leads() {
            continue;
        }
        match drop_expired(&pool, &shutdown).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(attachments = n, "dropped the content of attachments past their retention period"),
            // the server restarting, a lost connection: the next pass tries again
            Err(e) if e.is_transient() => {
                tracing::debug!(error = %one_line(&e), "attachment retention pass failed; trying again next pass")
            }
            Err(e) => tracing::warn!(error = %one_line(&e), "attachment retention pass failed"),
        }
        if let Err(e) = console_upkeep(&pool).await {
            tracing::debug!(error = %one_line(&e), "console upkeep failed; trying again next pass");
        }
    }
}

/// The console's leftovers: expired sign-in sessions and chart minutes past two days, in
/// batches (plain deletes of rows nobody reads any more: safe on every daemon at once).
async fn console_upkeep(pool: &Pool) -> Result<(), DbError> {
    let client = pool.get().await?;
    while crate::db::console::delete_expired_sessions(&client, 1000).await? == 1000 {}
    while crate::db::console::delete_old_minutes(&client, 1000).await? == 1000 {}
    Ok(())
}

/// Batches until one comes back short (or another daemon holds the lock, or shutdown); how many
/// attachments lost their content.
async fn drop_expired(pool: &Pool, shutdown: &CancellationToken) -> Result<i64, DbError> {
    let mut client = pool.get().await?;
    let mut total = 0i64;
    while !shutdown.is_cancelled() {
        match retention::drop_expired_batch(&mut client, BATCH).await? {
            Some(n) => {
                total += i64::from(n);
                metrics::counter!("pgcourier_attachment_content_dropped_total").increment(n as u64);
                if n < BATCH {
                    break;
                }
            }
            None => break,
        }
    }
    Ok(total)
}
