//! The maintenance task: housekeeping that no request and no claim does. As soon as this daemon
//! becomes the leader ([`crate::leader`]), and then every `PGCOURIER_MAINTENANCE_INTERVAL` while it
//! leads, it:
//! - keeps the audit trail's daily partitions: the next days made ahead
//!   ([`retention::make_partitions_ahead`]), expired days dropped whole, one transaction each
//!   ([`retention::drop_expired_day`]), and while work is due at most one a minute
//!   ([`may_drop_day`]); days left waiting are offered again between the pruning batches, so
//!   they go whole as soon as they may rather than row by row with their messages;
//! - deletes history past each tenant's retention periods ([`retention::Prune`]: finished
//!   messages and dead letters with their events, events, webhook deliveries, security events,
//!   attachment content), in batches that are each one short transaction, until a batch comes
//!   back short; each batch also takes a transaction-level advisory lock, so a pass overlapping
//!   a change of leader stays one at a time; while sends or decisions are due it rests between
//!   batches ([`rest_after`], ended once nothing is due), so that pruning takes little from them;
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
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Run until `shutdown`: whenever this daemon becomes the leader a pass at once, then one every
/// `every` for as long as it leads.
pub async fn run(pool: Pool, every: Duration, leader: Arc<LeaderState>, shutdown: CancellationToken) {
    let mut days = DayDrops::default();
    while leader.until_leads(&shutdown).await {
        // an interval's first tick is immediate: the pass runs as leadership is won
        let mut tick = Every::new(every);
        while tick.next(&shutdown).await && leader.leads() {
            one_pass(&pool, &mut days, &shutdown).await;
        }
    }
}

async fn one_pass(pool: &Pool, days: &mut DayDrops, shutdown: &CancellationToken) {
    if let Err(e) = pass(pool, days, shutdown).await {
        if e.is_transient() {
            // the server restarting, a lost connection: the next pass tries again
            tracing::debug!(error = %one_line(&e), "maintenance pass failed; trying again next pass");
        } else {
            tracing::warn!(error = %one_line(&e), "maintenance pass failed");
        }
    }
}

/// While work is due, the pruner rests this many times as long as its last batch took, so it
/// takes at most 1 / (1 + BUSY_REST_FACTOR) of one connection's time (2.5%)
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

/// While work is due, at most one expired day of the audit trail is dropped in this time. A
/// drop is short but stops the whole trail: every status change writes to it and waits for the
/// drop's lock (up to its 50 ms lock wait and the drop itself), and every connection then plans
/// its statements on the trail again: a backlog of days dropped during a drain slowed it more
/// than all the pruning batches did (BENCHMARKS.md). A day a minute is still far ahead of the one
/// day a day that expires.
pub const BUSY_DAY_SPACING: Duration = Duration::from_secs(60);

/// Whether an expired day may be dropped now, given whether work is due and how long ago the
/// last day was dropped while work was due: the day drops' pace as a pure function.
pub fn may_drop_day(work_due: bool, since_last_busy_drop: Option<Duration>) -> bool {
    !work_due || since_last_busy_drop.is_none_or(|since| since >= BUSY_DAY_SPACING)
}

/// What the leader remembers between passes about its day drops.
#[derive(Debug, Default)]
pub struct DayDrops {
    /// When it last dropped a day while work was due ([`may_drop_day`]'s spacing).
    last_busy_drop: Option<Instant>,
}

/// One pass: partitions, retention, console upkeep. What it removed is logged and counted.
/// `days` is carried from pass to pass by the leader (a new one for a pass on its own).
pub async fn pass(pool: &Pool, days: &mut DayDrops, shutdown: &CancellationToken) -> Result<(), DbError> {
    let created = retention::make_partitions_ahead(&pool.get().await?).await?;
    if created > 0 {
        tracing::info!(created, "event partitions made ahead");
        metrics::counter!("pgcourier_event_partitions_created_total").increment(created as u64);
    }
    drop_expired_days(pool, days, shutdown).await?;
    for kind in Prune::ALL {
        let n = prune(pool, kind, days, shutdown).await?;
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

/// Sleep `rest` unless shutdown comes first, and end it early once no work is due (asked every
/// [`REST_PROBE`], no connection held between): whether to go on.
async fn rested_while_due(pool: &Pool, rest: Duration, shutdown: &CancellationToken) -> Result<bool, DbError> {
    let until = Instant::now() + rest;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(!shutdown.is_cancelled());
        }
        if !rested(left.min(REST_PROBE), shutdown).await {
            return Ok(false);
        }
        if !retention::work_due(&pool.get().await?).await? {
            return Ok(true);
        }
    }
}

/// How often a rest asks whether work is still due: a rest computed while the queue was busy
/// ends within this long of the queue going idle.
const REST_PROBE: Duration = Duration::from_secs(1);

/// The audit trail's expired days, one transaction each: back to back while nothing is due,
/// else one per [`BUSY_DAY_SPACING`]; the days left wait for the next call, which [`prune`]
/// makes between its batches.
async fn drop_expired_days(pool: &Pool, days: &mut DayDrops, shutdown: &CancellationToken) -> Result<(), DbError> {
    while !shutdown.is_cancelled() {
        let client = pool.get().await?;
        let due = retention::work_due(&client).await?;
        if !may_drop_day(due, days.last_busy_drop.map(|at| at.elapsed())) {
            tracing::debug!("expired days of the audit trail left for a later pass: work is due");
            return Ok(());
        }
        let Some(day) = retention::drop_expired_day(&client).await? else { break };
        if due {
            days.last_busy_drop = Some(Instant::now());
        }
        tracing::info!(partition = %day, "expired day of the audit trail dropped");
        metrics::counter!("pgcourier_event_partitions_dropped_total").increment(1);
    }
    Ok(())
}

/// Batches of `kind` until one comes back short (or another daemon holds the lock, or
/// shutdown), each followed by its rest ([`rest_after`], ended early when the work is done),
/// which holds no connection, and by the expired days that may go now
/// ([`drop_expired_days`]): a day left while work was due would otherwise lose its rows one
/// by one to these batches before the next pass dropped it; how many rows it removed.
async fn prune(pool: &Pool, kind: Prune, days: &mut DayDrops, shutdown: &CancellationToken) -> Result<i64, DbError> {
    let mut total = 0i64;
    let mut rest = Duration::ZERO;
    while rested_while_due(pool, rest, shutdown).await? {
        if total > 0 {
            drop_expired_days(pool, days, shutdown).await?;
        }
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

    #[test]
    fn expired_days_go_back_to_back_when_idle_and_one_a_minute_while_work_is_due() {
        let never = None;
        let just_now = Some(Duration::from_secs(1));
        let a_minute_ago = Some(BUSY_DAY_SPACING);
        assert!(may_drop_day(false, never) && may_drop_day(false, just_now));
        assert!(may_drop_day(true, never), "the first day goes at once");
        assert!(!may_drop_day(true, just_now), "the next waits");
        assert!(!may_drop_day(true, Some(BUSY_DAY_SPACING - Duration::from_millis(1))));
        assert!(may_drop_day(true, a_minute_ago));
    }
}
