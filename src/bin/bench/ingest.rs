//! Scenario `ingest`: what the triggers cost a bulk insert. The same
//! `INSERT ... SELECT generate_series(1, N)` goes into `et_messages` (triggers, indexes, foreign
//! keys) and into trigger-less copies: `plain` (`LIKE et_messages INCLUDING DEFAULTS`: no
//! index, no trigger) and `plain_indexed` (also its indexes and CHECK constraints). The copies
//! get the columns the triggers would have filled (`id`, `channel`, `thread_id`,
//! `delivery_status`) written explicitly. No daemon runs.

use crate::setup::{BenchDb, ROW_VALUES, TENANT};
use anyhow::Context;
use serde::Serialize;
use std::time::Instant;

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
}

pub async fn run(db: &BenchDb, rows: usize) -> anyhow::Result<Report> {
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
    let queued = db.count("SELECT count(*) FROM et_outbound_queue").await?;
    anyhow::ensure!(queued as usize == rows, "the triggers queued {queued} rows, expected {rows}");
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
    })
}
