//! Scenario `ingest`: what the triggers cost an insert, in bulk and one row at a time. Rows go
//! into `et_messages` (triggers, indexes, keys) and into trigger-less copies: `plain`
//! (`LIKE et_messages INCLUDING DEFAULTS`: no index, no trigger) and `plain_indexed` (also its
//! indexes and CHECK constraints). The copies get the columns the triggers would have filled
//! (`id`, `channel`, `thread_id`, `delivery_status`) written explicitly. No daemon runs.
//!
//! Two more runs show what no trigger design can go below, in the same run:
//! - `lifecycle rows`: one statement writes what the lifecycle needs for each message, the message,
//!   its queue row and its `queued` event, into trigger-less copies of the three tables (same
//!   indexes and CHECKs, no trigger);
//! - `lifecycle rows + one lookup`: the same, with a PL/pgSQL BEFORE ROW trigger on the message
//!   copy that does the least the insert trigger must do per row: look its session up.
//!
//! 1. Bulk: the same `INSERT ... SELECT generate_series(1, N)` into each, one statement.
//! 2. Single-row: C connections each insert one row per transaction (autocommit, a prepared
//!    statement of one row) back to back, closed loop, connection c taking g = c, c + C, c + 2C,
//!    … (so concurrent rows go to distinct threads), until `single_rows` rows are in; rows/s from
//!    the common start to the last commit. Into `et_messages` every such transaction also
//!    queues, audits and NOTIFYs, which is exactly what this measures.
//!
//! Each run starts after a `CHECKPOINT` (best effort). Shares are of `plain_indexed` (same
//! indexes, no trigger); `plain` is shown too. The targets judge `et_messages` against the
//! lifecycle rows (the floor) and against graphile-worker's `add_jobs` / `add_job` measured by
//! the peer in the same run ([`Ratios`]).

use crate::peer;
use crate::setup::{BenchDb, ROW_VALUES, TENANT};
use anyhow::Context;
use serde::Serialize;
use std::time::{Duration, Instant};

pub struct Params {
    /// Rows in each bulk insert.
    pub rows: usize,
    /// Rows in each single-row run, all connections together.
    pub single_rows: usize,
    pub connections: usize,
}

#[derive(Debug, Serialize)]
pub struct Timing {
    pub seconds: f64,
    pub rows_per_s: f64,
}

/// One timing per table, in bulk or one row per transaction.
#[derive(Debug, Serialize)]
pub struct Tables {
    /// Into `et_messages`: triggers (validate, thread, queue, audit, counters, NOTIFY), indexes, keys.
    pub et_messages: Timing,
    /// Into `plain`: same defaults, no index, no trigger.
    pub plain: Timing,
    /// Into `plain_indexed`: same defaults, indexes and CHECKs, no trigger.
    pub plain_indexed: Timing,
    /// The message, its queue row and its event into trigger-less copies, in one statement.
    pub lifecycle_rows: Timing,
    /// As `lifecycle_rows`, with one session lookup per row in a BEFORE ROW trigger.
    pub lifecycle_rows_one_lookup: Timing,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub rows: usize,
    /// The bulk insert into each table.
    pub bulk: Tables,
    /// One row per transaction from several connections.
    pub single: Single,
}

/// The single-row runs.
#[derive(Debug, Serialize)]
pub struct Single {
    pub rows: usize,
    pub connections: usize,
    pub tables: Tables,
}

impl Tables {
    /// The timings in [`statements`]' order.
    fn from(t: Vec<Timing>) -> anyhow::Result<Tables> {
        let [et_messages, plain, plain_indexed, lifecycle_rows, lifecycle_rows_one_lookup]: [Timing; 5] =
            t.try_into().map_err(|t: Vec<Timing>| anyhow::anyhow!("{} timings, expected 5", t.len()))?;
        Ok(Tables { et_messages, plain, plain_indexed, lifecycle_rows, lifecycle_rows_one_lookup })
    }

    /// Each run but `plain_indexed`, described, with its rate as a share of `plain_indexed`'s.
    pub fn shares(&self) -> [(&'static str, &Timing, f64); 4] {
        let share = |t: &Timing| t.rows_per_s / self.plain_indexed.rows_per_s;
        [
            ("et_messages (triggers)", &self.et_messages, share(&self.et_messages)),
            ("plain (no trigger, no index)", &self.plain, share(&self.plain)),
            ("lifecycle rows (message + queue row + event)", &self.lifecycle_rows, share(&self.lifecycle_rows)),
            ("lifecycle rows + one session lookup per row", &self.lifecycle_rows_one_lookup, share(&self.lifecycle_rows_one_lookup)),
        ]
    }
}

/// `et_messages`' rates as ratios: to the lifecycle rows (the floor, same run, same shape) and to
/// graphile-worker's enqueue of the same count (`add_jobs` in one call for bulk; `add_job` one
/// per transaction from as many connections for single rows), when the peer ran.
#[derive(Debug, Serialize)]
pub struct Ratios {
    pub bulk_vs_lifecycle_rows: f64,
    pub bulk_vs_add_jobs: Option<f64>,
    pub single_vs_lifecycle_rows: f64,
    pub single_vs_add_job: Option<f64>,
}

impl Report {
    pub fn ratios(&self, peer: Option<&peer::Enqueue>) -> Ratios {
        let (bulk, single) = (&self.bulk, &self.single.tables);
        Ratios {
            bulk_vs_lifecycle_rows: bulk.et_messages.rows_per_s / bulk.lifecycle_rows.rows_per_s,
            bulk_vs_add_jobs: peer.map(|p| bulk.et_messages.rows_per_s / p.add_jobs_bulk.jobs_per_s),
            single_vs_lifecycle_rows: single.et_messages.rows_per_s / single.lifecycle_rows.rows_per_s,
            single_vs_add_job: peer.map(|p| single.et_messages.rows_per_s / p.add_job_single.jobs_per_s),
        }
    }
}

/// The five runs' statements, labelled, in the order of [`Tables`]; `source` is the `FROM` clause
/// giving `g` (`generate_series(1, $3::int) g` in bulk, one `g` per transaction for single rows).
fn statements(source: &str) -> [(&'static str, String); 5] {
    let copy = |table: &str| {
        format!(
            "INSERT INTO {table} (tenant_id, channel_session_id, direction, recipients, subject, body_text,
                                  id, channel, thread_id, delivery_status)
             SELECT $1, $2, 'outbound', {ROW_VALUES}, g, 'email', 1, 'queued' FROM {source}"
        )
    };
    // each run its own three tables (`{prefix}_messages`, `_queue`, `_events`)
    let lifecycle = |prefix: &str| {
        format!(
            "WITH m AS ({}
                        RETURNING tenant_id, id, channel_session_id, priority),
                  q AS (INSERT INTO {prefix}_queue (tenant_id, message_id, channel_session_id, priority, run_at, max_attempts)
                        SELECT m.tenant_id, m.id, m.channel_session_id, m.priority, now(), 5 FROM m)
             INSERT INTO {prefix}_events (tenant_id, message_id, from_status, to_status, actor)
             SELECT m.tenant_id, m.id, NULL, 'queued', 'bench' FROM m",
            copy(&format!("{prefix}_messages"))
        )
    };
    [
        (
            "et_messages",
            format!(
                "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
                 SELECT $1, $2, 'outbound', {ROW_VALUES} FROM {source}"
            ),
        ),
        ("plain", copy("plain")),
        ("plain_indexed", copy("plain_indexed")),
        ("lifecycle rows", lifecycle("lifecycle")),
        ("lifecycle rows + one lookup", lifecycle("lookup")),
    ]
}

const TABLES: &str = "
    CREATE TABLE plain (LIKE et_messages INCLUDING DEFAULTS);
    CREATE TABLE plain_indexed (LIKE et_messages INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
    CREATE TABLE lifecycle_messages (LIKE et_messages INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
    CREATE TABLE lifecycle_queue (LIKE et_outbound_queue INCLUDING ALL);
    CREATE TABLE lifecycle_events (LIKE et_message_events INCLUDING ALL);
    CREATE TABLE lookup_messages (LIKE et_messages INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
    CREATE TABLE lookup_queue (LIKE et_outbound_queue INCLUDING ALL);
    CREATE TABLE lookup_events (LIKE et_message_events INCLUDING ALL);
    CREATE FUNCTION bench_one_lookup() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM et_channel_sessions cs
                      WHERE cs.tenant_id = NEW.tenant_id AND cs.id = NEW.channel_session_id) THEN
        RAISE EXCEPTION 'no session %', NEW.channel_session_id;
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER bench_one_lookup BEFORE INSERT ON lookup_messages
      FOR EACH ROW EXECUTE FUNCTION bench_one_lookup();";

pub async fn run(db: &BenchDb, p: &Params) -> anyhow::Result<Report> {
    let rows = p.rows;
    // The session is only a key target here: no daemon runs, nothing is sent.
    let session = db.smtp_session(9, 1, 1).await?;
    db.client.batch_execute(TABLES).await.context("creating the trigger-less copies")?;
    let n = rows as i32;
    let mut timings = Vec::new();
    for (label, sql) in statements("generate_series(1, $3::int) g") {
        // Start each from a clean slate of dirty buffers (best effort: needs the right to CHECKPOINT).
        let _ = db.client.batch_execute("CHECKPOINT").await;
        let t = Instant::now();
        let inserted = db.client.execute(&sql, &[&TENANT, &session, &n]).await.with_context(|| format!("inserting into {label}"))?;
        let seconds = t.elapsed().as_secs_f64();
        anyhow::ensure!(inserted as usize == rows, "{label}: inserted {inserted} rows, expected {rows}");
        eprintln!("ingest: {rows} rows into {label} in {seconds:.2} s");
        timings.push(Timing { seconds, rows_per_s: rows as f64 / seconds });
    }
    let single = single_rows(db, session, p).await?;
    let queued = db.count("SELECT count(*) FROM et_outbound_queue").await?;
    anyhow::ensure!(queued as usize == rows + single.rows, "the triggers queued {queued} rows, expected {}", rows + single.rows);
    for prefix in ["lifecycle", "lookup"] {
        let copied = db.count(&format!("SELECT (SELECT count(*) FROM {prefix}_queue) + (SELECT count(*) FROM {prefix}_events)")).await?;
        anyhow::ensure!(copied as usize == 2 * (rows + single.rows), "{prefix}_queue and _events hold {copied} rows");
    }
    Ok(Report { rows, bulk: Tables::from(timings)?, single })
}

/// The single-row runs into each table; `g` continues after the bulk rows (unique ids), each
/// connection taking every C-th one.
async fn single_rows(db: &BenchDb, session: i64, p: &Params) -> anyhow::Result<Single> {
    anyhow::ensure!(p.connections > 0 && p.single_rows > 0, "--connections and --ingest-single-rows must be positive");
    let per_conn = p.single_rows.div_ceil(p.connections);
    let total = per_conn * p.connections;
    let mut timings = Vec::new();
    for (label, sql) in statements("(SELECT $3::int AS g) s") {
        let mut clients = Vec::with_capacity(p.connections);
        for _ in 0..p.connections {
            let client = db.connect().await?;
            let stmt = client.prepare(&sql).await.with_context(|| format!("preparing the insert into {label}"))?;
            clients.push((client, stmt));
        }
        let _ = db.client.batch_execute("CHECKPOINT").await;
        let start = Instant::now() + Duration::from_millis(50);
        let mut tasks = Vec::with_capacity(p.connections);
        for (c, (client, stmt)) in clients.into_iter().enumerate() {
            // Interleaved: at any moment the connections insert neighbouring g, hence distinct
            // recipients and threads, as an application writing to many contacts does. (Blocks
            // of g made connections c and c + 4 write to the same thread in lockstep, so they
            // waited on each other's thread-counter lock through every commit.)
            let (first, step) = ((p.rows + 1 + c) as i32, p.connections as i32);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(start.into()).await;
                for k in 0..per_conn as i32 {
                    let g = first + k * step;
                    client.execute(&stmt, &[&TENANT, &session, &g]).await?;
                }
                anyhow::Ok(Instant::now())
            }));
        }
        let mut last = start;
        for t in tasks {
            last = last.max(t.await.context("an insert task panicked")?.with_context(|| format!("single-row insert into {label}"))?);
        }
        let seconds = last.duration_since(start).as_secs_f64();
        eprintln!("ingest: {total} single-row transactions from {} connections into {label} in {seconds:.2} s", p.connections);
        timings.push(Timing { seconds, rows_per_s: total as f64 / seconds });
    }
    Ok(Single { rows: total, connections: p.connections, tables: Tables::from(timings)? })
}
