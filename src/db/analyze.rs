//! Table statistics for a server that runs with `autovacuum = off`.
//!
//! The daemon's statements are prepared once per connection, and PostgreSQL keeps a generic plan
//! made from the statistics of the moment until an `ANALYZE` invalidates it; so do the foreign-key
//! checks' cached plans. Made while `et_messages` was empty and never analysed, those plans reached
//! messages through `et_messages_thread_recent` on `tenant_id` alone, reading every message of the
//! tenant per claimed row or per audit event (a claim of 500 took 1.5-8 s under a steady load that
//! started on an empty table). Autovacuum's analyze would have fixed that within a minute; with it
//! off nobody does. So when `autovacuum` is off, the daemon analyses its busiest tables itself,
//! once more rows changed since the last analyze than the table had then (plus 50): plans go
//! wrong when a table is misjudged by orders of magnitude, not by 10% (autovacuum's rule, which
//! made a 100,000-row drain analyse ~20 times), and no table more often than once a minute
//! (autovacuum's naptime): an `ANALYZE` invalidates every cached plan on the table in every
//! session, and a table filling from empty would otherwise be analysed at 100, 200, 400... rows.
//! With autovacuum on it does nothing.

use deadpool_postgres::Pool;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The tables whose plans matter on the hot paths.
pub const TABLES: &[&str] = &["et_messages", "et_outbound_queue", "et_message_events", "et_threads", "et_thread_insights"];

const STALE: &str = "SELECT c.relname::text
                       FROM pg_class c
                       JOIN pg_stat_user_tables s ON s.relid = c.oid
                      WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY ($1)
                        AND s.n_mod_since_analyze > 50 + greatest(c.reltuples, 0)
                      ORDER BY c.relname";

/// The tables of [`TABLES`] with more changes since their last analyze than rows then (+ 50).
pub async fn stale(client: &tokio_postgres::Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let tables: Vec<&str> = TABLES.to_vec();
    Ok(client.query(STALE, &[&tables]).await?.iter().map(|r| r.get(0)).collect())
}

/// No table is analysed again sooner than this.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);

/// `ANALYZE` the stale tables except those in `last` analysed less than [`MIN_INTERVAL`] ago;
/// records the time in `last` and returns the names analysed.
pub async fn analyze_stale(
    client: &tokio_postgres::Client,
    last: &mut HashMap<String, Instant>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut tables = stale(client).await?;
    tables.retain(|t| last.get(t).is_none_or(|at| at.elapsed() >= MIN_INTERVAL));
    for t in &tables {
        // names come from TABLES (fixed identifiers), never from input
        client.batch_execute(&format!("ANALYZE {t}")).await?;
        last.insert(t.clone(), Instant::now());
    }
    Ok(tables)
}

/// Run until `shutdown`: every `every`, analyse what is stale, if and only if autovacuum is off.
pub async fn run(pool: Pool, every: Duration, shutdown: CancellationToken) {
    let autovacuum = match pool.get().await {
        Ok(c) => c.query_one("SELECT current_setting('autovacuum')", &[]).await.map(|r| r.get::<_, String>(0)),
        Err(e) => {
            tracing::warn!(error = %crate::telemetry::one_line(&e), "could not read the autovacuum setting; not keeping statistics");
            return;
        }
    };
    match autovacuum {
        Ok(v) if v == "off" => tracing::info!("autovacuum is off: the daemon analyses its busiest tables when they change"),
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %crate::telemetry::one_line(&e), "could not read the autovacuum setting; not keeping statistics");
            return;
        }
    }
    let mut last: HashMap<String, Instant> = HashMap::new();
    let mut tick = crate::daemon::Every::new(every);
    while tick.next(&shutdown).await {
        let result = match pool.get().await {
            Ok(client) => analyze_stale(&client, &mut last).await.map_err(|e| crate::telemetry::one_line(&e)),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(t) if t.is_empty() => {}
            Ok(t) => tracing::debug!(tables = ?t, "analysed"),
            Err(e) => {
                // e.g. a role that does not own the tables: nothing this daemon can do about it
                tracing::warn!(error = %e, "ANALYZE failed; the daemon stops keeping statistics");
                return;
            }
        }
    }
}
