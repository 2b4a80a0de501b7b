//! Table statistics for a server that runs with `autovacuum = off`.
//!
//! The daemon's statements are prepared once per connection, and PostgreSQL keeps a generic plan
//! made from the statistics of the moment until an `ANALYZE` invalidates it; so do the foreign-key
//! checks' cached plans. Made while `et_messages` was empty and never analysed, those plans reached
//! messages through `et_messages_thread_recent` on `tenant_id` alone, reading every message of the
//! tenant per claimed row or per audit event. Autovacuum's analyze would fix that within a
//! minute; with it off nobody does. So when `autovacuum` is off, the daemon analyses its busiest tables itself,
//! once more rows changed since the last analyze than the table had then (plus 50): plans go
//! wrong when a table is misjudged by orders of magnitude, not by 10% (autovacuum's rule, which
//! analyses a table filling up many times over in one drain), and no table more often than once a minute
//! (autovacuum's naptime): an `ANALYZE` invalidates every cached plan on the table in every
//! session, and a table filling from empty would otherwise be analysed at 100, 200, 400... rows.
//! With autovacuum on it does nothing. With many daemons only the leader ([`crate::leader`]) analyses. The measurements behind this are in BENCHMARKS.md.

use crate::db::{analyze, DbError};
use crate::every::Every;
use crate::leader::LeaderState;
use crate::telemetry::one_line;
use deadpool_postgres::Pool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Run until `shutdown`: every `every`, analyse what is stale, if and only if autovacuum is off.
pub async fn run(pool: Pool, every: Duration, leader: Arc<LeaderState>, shutdown: CancellationToken) {
    let autovacuum_on: Result<bool, DbError> = async {
        let client = pool.get().await?;
        Ok(analyze::autovacuum_on(&client).await?)
    }
    .await;
    match autovacuum_on {
        Ok(false) => tracing::info!("autovacuum is off: the daemon analyses its busiest tables when they change"),
        Ok(true) => return,
        Err(e) => {
            tracing::warn!(error = %one_line(&e), "could not read the autovacuum setting; not keeping statistics");
            return;
        }
    }
    let mut last: HashMap<String, Instant> = HashMap::new();
    let mut tick = Every::new(every);
    while tick.next(&shutdown).await {
        if !leader.leads() {
            continue;
        }
        let result: Result<_, DbError> = async {
            let client = pool.get().await?;
            Ok(analyze::analyze_stale(&client, &mut last).await?)
        }
        .await;
        match result {
            Ok(t) if t.is_empty() => {}
            Ok(t) => tracing::debug!(tables = ?t, "analysed"),
            // the server restarting, a lost connection: the next pass tries again
            Err(e) if e.is_transient() => tracing::debug!(error = %one_line(&e), "ANALYZE failed; trying again next pass"),
            Err(e) => {
                // e.g. a role that does not own the tables: nothing this daemon can do about it
                tracing::warn!(error = %one_line(&e), "ANALYZE failed; the daemon stops keeping statistics");
                return;
            }
        }
    }
}
