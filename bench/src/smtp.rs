//! Scenario `smtp`: drain a backlog through pooled SMTP connections. N outbound emails are
//! inserted in one statement while no daemon runs; then one daemon process starts and the clock
//! runs until every row is `sent` and the sink (in this process) holds every Message-ID once.
//!
//! Planner statistics matter here: right after the bulk insert the tables have never been
//! analysed, and autovacuum may analyse them at any moment during the drain (the report says
//! whether it did). `--analyze` runs `ANALYZE` before the daemon starts, for the other case.

use crate::child::{ChildDaemon, Memory};
use crate::setup::{ms, BenchDb, DaemonSettings};
use crate::sink::Sink;
use anyhow::Context;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Params {
    pub messages: usize,
    pub smtp_pool_size: usize,
    pub smtp_concurrency: usize,
    pub daemon: DaemonSettings,
    /// The sink re-arms TCP_QUICKACK (diagnostic; see the sink module).
    pub sink_quickack: bool,
    /// `ANALYZE` after the bulk insert, before the daemon starts.
    pub analyze: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub messages: usize,
    pub smtp_pool_size: usize,
    pub smtp_concurrency: usize,
    pub daemon: DaemonSettings,
    pub sink_quickack: bool,
    pub analyzed_before_start: bool,
    /// Tables autovacuum analysed while the daemon was draining (plans may change mid-run).
    pub autoanalyzed_during_run: Vec<String>,
    /// The one `INSERT ... SELECT generate_series` (with the triggers), before the daemon starts.
    pub bulk_insert_s: f64,
    /// Daemon start (including its start-up migration check) → first message at the sink.
    pub first_at_sink_ms: f64,
    /// Daemon start → the sink holds all N.
    pub all_at_sink_s: f64,
    pub sink_msgs_per_s: f64,
    /// Daemon start → all N `sent` in the database (polled every 50 ms).
    pub all_sent_s: f64,
    pub sent_msgs_per_s: f64,
    pub smtp_connections: usize,
    /// Message-IDs that arrived more than once (extra copies counted); must be 0.
    pub duplicates: usize,
    /// Rows whose Message-ID never reached the sink.
    pub missing: usize,
    /// Arrivals whose Message-ID is not in the database.
    pub unknown: usize,
    /// Rows that needed more than one attempt.
    pub retried: i64,
    /// The daemon process's resident memory.
    pub memory: Memory,
}

impl Report {
    /// What must not happen: a message delivered twice, lost, or not ours.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.duplicates > 0 {
            p.push(format!("smtp: {} duplicate deliveries", self.duplicates));
        }
        if self.missing + self.unknown > 0 {
            p.push(format!("smtp: {} missing and {} unknown Message-IDs", self.missing, self.unknown));
        }
        p
    }
}

pub async fn run(db: &BenchDb, p: &Params) -> anyhow::Result<Report> {
    let sink = Sink::start(p.sink_quickack).await.context("starting the SMTP sink")?;
    let session = db.smtp_session(sink.addr.port(), p.smtp_pool_size, p.smtp_concurrency).await?;
    let n = p.messages;

    let bulk_insert = db.bulk_outbound(session, n).await?;

    if p.analyze {
        db.client.batch_execute("ANALYZE").await.context("ANALYZE")?;
    }

    eprintln!("smtp: {n} rows queued in {:.2} s; starting the daemon", bulk_insert.as_secs_f64());
    let started_at: chrono::DateTime<chrono::Utc> = db.client.query_one("SELECT now()", &[]).await?.get(0);
    let t0 = Instant::now();
    let mut daemon = ChildDaemon::spawn(db, &p.daemon).await?;
    let deadline = t0 + Duration::from_secs(60) + Duration::from_millis(n as u64 * 5);
    let all_sent = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        daemon.check_alive()?;
        let sent = db.count("SELECT count(*) FROM et_messages WHERE delivery_status = 'sent'").await?;
        if sent as usize >= n {
            break t0.elapsed();
        }
        if Instant::now() > deadline {
            let distinct = sink.arrivals().iter().map(|a| a.message_id.as_str()).collect::<std::collections::HashSet<_>>().len();
            anyhow::bail!(
                "only {sent} of {n} sent after {:.0?} (sink: {} arrivals, {distinct} distinct Message-IDs; statuses: {})",
                t0.elapsed(),
                sink.count(),
                db.statuses().await?
            );
        }
    };
    // `sent` is written after the sink's 250, so the sink should already have them all.
    sink.wait_for(n, Duration::from_secs(5)).await;
    let arrivals = sink.arrivals();
    let connections = sink.connections();
    let memory = daemon.stop().await?;

    let expected: Vec<String> =
        db.client.query("SELECT external_message_id FROM et_messages", &[]).await?.iter().map(|r| r.get(0)).collect();
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(arrivals.len());
    for a in &arrivals {
        *seen.entry(a.message_id.as_str()).or_default() += 1;
    }
    let duplicates = seen.values().map(|&c| c - 1).sum();
    let missing = expected.iter().filter(|id| !seen.contains_key(id.as_str())).count();
    let known: std::collections::HashSet<&str> = expected.iter().map(String::as_str).collect();
    let unknown = seen.keys().filter(|id| !known.contains(*id)).count();
    let retried = db.count("SELECT count(*) FROM et_messages WHERE attempts > 1").await?;
    let autoanalyzed = db
        .client
        .query("SELECT relname::text FROM pg_stat_user_tables WHERE last_autoanalyze >= $1 ORDER BY 1", &[&started_at])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();

    let first = arrivals.iter().map(|a| a.at).min().context("the sink received nothing")?;
    let nth = arrivals.get(n - 1).map(|a| a.at).context("the sink has fewer arrivals than rows")?;
    let (all_at_sink, first_at_sink) = (nth.duration_since(t0), first.duration_since(t0));
    Ok(Report {
        messages: n,
        smtp_pool_size: p.smtp_pool_size,
        smtp_concurrency: p.smtp_concurrency,
        daemon: p.daemon.clone(),
        sink_quickack: p.sink_quickack,
        analyzed_before_start: p.analyze,
        autoanalyzed_during_run: autoanalyzed,
        bulk_insert_s: bulk_insert.as_secs_f64(),
        first_at_sink_ms: ms(first_at_sink),
        all_at_sink_s: all_at_sink.as_secs_f64(),
        sink_msgs_per_s: n as f64 / all_at_sink.as_secs_f64(),
        all_sent_s: all_sent.as_secs_f64(),
        sent_msgs_per_s: n as f64 / all_sent.as_secs_f64(),
        smtp_connections: connections,
        duplicates,
        missing,
        unknown,
        retried,
        memory,
    })
}
