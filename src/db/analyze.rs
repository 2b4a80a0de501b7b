//! The statements of the statistics keeper ([`crate::statistics`] runs it and says why it exists):
//! which of the hot tables are stale, and analysing them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The tables whose plans matter on the hot paths.
pub const TABLES: &[&str] = &["et_messages", "et_outbound_queue", "et_message_events", "et_threads", "et_thread_insights"];

/// A partitioned table (et_message_events) has no statistics row of its own: its changes are
/// the sum of its partitions' (which autovacuum analyses on their own, but never the parent,
/// whose statistics plan the joins over it).
const STALE: &str = "SELECT c.relname::text
                       FROM pg_class c
                      CROSS JOIN LATERAL (SELECT sum(s.n_mod_since_analyze) AS changed
                                            FROM pg_stat_user_tables s
                                           WHERE s.relid = c.oid
                                              OR s.relid IN (SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = c.oid)) m
                      WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY ($1)
                        AND m.changed > 50 + greatest(c.reltuples, 0)
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

/// The server's `autovacuum` setting: the keeper works only when it is off.
pub async fn autovacuum_on(client: &tokio_postgres::Client) -> Result<bool, tokio_postgres::Error> {
    let value: String = client.query_one("SELECT current_setting('autovacuum')", &[]).await?.get(0);
    Ok(value != "off")
}
