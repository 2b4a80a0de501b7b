//! Scenario `ingest`: what the triggers cost an insert, in bulk and one row at a time. Rows go
//! into `et_messages` (triggers, indexes, foreign keys) and into trigger-less copies: `plain`
//! (`LIKE et_messages INCLUDING DEFAULTS`: no index, no trigger) and `plain_indexed` (also its
//! indexes and CHECK constraints). The copies get the columns the triggers would have filled
//! (`id`, `channel`, `thread_id`, `delivery_status`) written explicitly. No daemon runs.
//!
//! 1. Bulk: the same `INSERT ... SELECT generate_series(1, N)` into each table, one statement.
//! 2. Single-row: C connections each insert one row per transaction (autocommit, a prepared
//!    `INSERT ... SELECT` of one row) back to back, closed loop, connection c taking g = c,
//!    c + C, c + 2C, … (so concurrent rows go to distinct threads), until `single_rows` rows are
//!    in; rows/s from the common start to the last commit. Into `et_messages` every such
//!    transaction also queues, audits and NOTIFYs, which is exactly what this measures.
//!
//! Each run starts after a `CHECKPOINT` (best effort). The target compares rates against
//! `plain_indexed` (same indexes, no trigger); `plain` is shown too.

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

#[derive(Debug, Serialize)]
pub struct Report {
    pub rows: usize,
    /// Into `et_messages`: triggers (validate, thread, queue, audit, counters, NOTIFY), indexes, FKs.
    pub et_messages: Timing,
    /// Into `plain`: same defaults, no index, no trigger.
    pub plain: Timing,
    /// Into `plain_indexed`: same defaults, indexes and CHECKs, no trigger.
    pub plain_indexed: Timing,
    /// et_messages seconds / plain seconds.
    pub ratio_vs_plain: f64,
    /// et_messages seconds / plain_indexed seconds.
    pub ratio_vs_plain_indexed: f64,
    /// One row per transaction from several connections.
    pub single: Single,
}

/// The single-row runs.
#[derive(Debug, Serialize)]
pub struct Single {
    pub rows: usize,
    pub connections: usize,
    pub et_messages: Timing,
    pub plain: Timing,
    pub plain_indexed: Timing,
}

impl Report {
    /// Trigger insert rate as a share of the trigger-less copies' (bulk, single-row), against
    /// `plain_indexed` and against `plain`.
    pub fn shares(&self) -> [(&'static str, f64); 4] {
        let share = |t: &Timing, of: &Timing| t.rows_per_s / of.rows_per_s;
        [
            ("bulk vs plain_indexed", share(&self.et_messages, &self.plain_indexed)),
            ("bulk vs plain", share(&self.et_messages, &self.plain)),
            ("single-row vs plain_indexed", share(&self.single.et_messages, &self.single.plain_indexed)),
            ("single-row vs plain", share(&self.single.et_messages, &self.single.plain)),
        ]
    }
}

pub async fn run(db: &BenchDb, p: &Params) -> anyhow::Result<Report> {
    let rows = p.rows;
    // The session is only a foreign-key target here: no daemon runs, nothing is sent.
    let session = db.smtp_session(9, 1, 1).await?;
    db.client
        .batch_execute(
            "CREATE TABLE plain (LIKE et_messages INCLUDING DEFAULTS);
             CREATE TABLE plain_indexed (LIKE et_messages INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);",
        )
        .await
        .context("creating the trigger-less copies")?;
    let n = rows as i32;
    let triggered = format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
         SELECT $1, $2, 'outbound', {ROW_VALUES} FROM generate_series(1, $3::int) g"
    );
    let copy = |table: &str| {
        format!(
            "INSERT INTO {table} (tenant_id, channel_session_id, direction, recipients, subject, body_text,
                                  id, channel, thread_id, delivery_status)
             SELECT $1, $2, 'outbound', {ROW_VALUES}, g, 'email', 1, 'queued' FROM generate_series(1, $3::int) g"
        )
    };
    let mut timings = Vec::new();
    for (label, sql) in [("et_messages", triggered), ("plain", copy("plain")), ("plain_indexed", copy("plain_indexed"))] {
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
    let plain_indexed = timings.pop().expect("three timings");
    let plain = timings.pop().expect("three timings");
    let et_messages = timings.pop().expect("three timings");
    Ok(Report {
        rows,
        ratio_vs_plain: et_messages.seconds / plain.seconds,
        ratio_vs_plain_indexed: et_messages.seconds / plain_indexed.seconds,
        et_messages,
        plain,
        plain_indexed,
        single,
    })
}

/// The single-row runs into each table; `g` continues after the bulk rows (unique ids), each
/// connection taking every C-th one.
async fn single_rows(db: &BenchDb, session: i64, p: &Params) -> anyhow::Result<Single> {
    anyhow::ensure!(p.connections > 0 && p.single_rows > 0, "--connections and --ingest-single-rows must be positive");
    let per_conn = p.single_rows.div_ceil(p.connections);
    let total = per_conn * p.connections;
    let triggered = format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
         SELECT $1, $2, 'outbound', {ROW_VALUES} FROM (SELECT $3::int AS g) s"
    );
    let copy = |table: &str| {
        format!(
            "INSERT INTO {table} (tenant_id, channel_session_id, direction, recipients, subject, body_text,
                                  id, channel, thread_id, delivery_status)
             SELECT $1, $2, 'outbound', {ROW_VALUES}, g, 'email', 1, 'queued' FROM (SELECT $3::int AS g) s"
        )
    };
    let mut timings = Vec::new();
    for (label, sql) in [("et_messages", triggered), ("plain", copy("plain")), ("plain_indexed", copy("plain_indexed"))] {
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
    let plain_indexed = timings.pop().expect("three timings");
    let plain = timings.pop().expect("three timings");
    let et_messages = timings.pop().expect("three timings");
    Ok(Single { rows: total, connections: p.connections, et_messages, plain, plain_indexed })
}
