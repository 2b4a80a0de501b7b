//! Scenario `steady`: commit-to-SMTP latency under a modest open-loop load. The daemon runs
//! and is idle; C connections each insert one row per transaction on a fixed schedule
//! (rate / C per second each, staggered), and every row's latency is the sink's accept
//! instant minus the instant its INSERT (autocommit) returned.

use crate::setup::{ms, BenchDb, Daemon, DaemonSettings, ROW_VALUES, TENANT};
use crate::sink::Sink;
use anyhow::Context;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Params {
    pub rate: f64,
    pub seconds: f64,
    pub connections: usize,
    pub smtp_pool_size: usize,
    pub smtp_concurrency: usize,
    pub daemon: DaemonSettings,
    /// The sink re-arms TCP_QUICKACK (diagnostic; see the sink module).
    pub sink_quickack: bool,
}

/// p50 / p99 / max of a set of durations, in milliseconds.
#[derive(Debug, Serialize)]
pub struct Spread {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub target_rate_per_s: f64,
    pub seconds: f64,
    pub connections: usize,
    pub smtp_pool_size: usize,
    pub smtp_concurrency: usize,
    pub daemon: DaemonSettings,
    pub sink_quickack: bool,
    pub inserted: usize,
    /// Rows inserted / time from the first scheduled insert to the last commit.
    pub achieved_rate_per_s: f64,
    /// Commit returned → the sink accepted the message.
    pub latency: Option<Spread>,
    /// How long each single-row INSERT (autocommit) took to return.
    pub insert: Option<Spread>,
    /// How late inserts started against their schedule (the load generator's own lag).
    pub schedule_lag: Option<Spread>,
    /// Inserted rows that never reached the sink (waited up to 15 s after the last insert).
    pub missing: usize,
    pub duplicates: usize,
}

impl Report {
    /// What must not happen: a message delivered twice or never.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.duplicates > 0 {
            p.push(format!("steady: {} duplicate deliveries", self.duplicates));
        }
        if self.missing > 0 {
            p.push(format!("steady: {} rows never reached the sink", self.missing));
        }
        p
    }
}

struct Insert {
    message_id: String,
    scheduled: Instant,
    started: Instant,
    committed: Instant,
}

const WARMUP: usize = 20;

pub async fn run(db: &BenchDb, p: &Params) -> anyhow::Result<Report> {
    anyhow::ensure!(p.rate > 0.0 && p.seconds > 0.0 && p.connections > 0, "--rate, --seconds and --connections must be positive");
    let sink = Sink::start(p.sink_quickack).await.context("starting the SMTP sink")?;
    let session = db.smtp_session(sink.addr.port(), p.smtp_pool_size, p.smtp_concurrency).await?;
    let mut daemon = Daemon::spawn(db, &p.daemon)?;
    daemon.listening(Duration::from_secs(30)).await?;

    // Warm up the SMTP pool, the daemon's statement caches and ours, then let everything go idle.
    let mut clients = Vec::with_capacity(p.connections);
    for _ in 0..p.connections {
        clients.push(db.connect().await?);
    }
    let sql = format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
         SELECT $1, $2, 'outbound', {ROW_VALUES} FROM (SELECT $3::int AS g) s
         RETURNING external_message_id"
    );
    for i in 0..WARMUP {
        let c = &clients[i % clients.len()];
        c.query_one(&sql, &[&TENANT, &session, &(-(i as i32))]).await.context("warm-up insert")?;
    }
    anyhow::ensure!(sink.wait_for(WARMUP, Duration::from_secs(15)).await, "warm-up messages did not reach the sink");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    daemon.check_alive().await?;
    let baseline = sink.count();

    let per_conn = ((p.rate * p.seconds) / p.connections as f64).round().max(1.0) as usize;
    let period = Duration::from_secs_f64(p.connections as f64 / p.rate);
    eprintln!(
        "steady: {} connections × {per_conn} rows, one every {:.1} ms each ({} rows/s in total)",
        p.connections,
        ms(period),
        p.rate
    );
    let start = Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::with_capacity(p.connections);
    for (c, client) in clients.into_iter().enumerate() {
        let sql = sql.clone();
        let offset = period.mul_f64(c as f64 / p.connections as f64);
        tasks.push(tokio::spawn(async move {
            let stmt = client.prepare(&sql).await?;
            let mut done = Vec::with_capacity(per_conn);
            for k in 0..per_conn {
                // Open loop: the schedule is fixed; a late insert does not push later ones back.
                let scheduled = start + offset + period.mul_f64(k as f64);
                tokio::time::sleep_until(scheduled.into()).await;
                let started = Instant::now();
                let g = (c * per_conn + k) as i32;
                let row = client.query_one(&stmt, &[&TENANT, &session, &g]).await?;
                let committed = Instant::now();
                done.push(Insert { message_id: row.get(0), scheduled, started, committed });
            }
            anyhow::Ok(done)
        }));
    }
    let mut inserts = Vec::with_capacity(per_conn * p.connections);
    for t in tasks {
        inserts.extend(t.await.context("an insert task panicked")?.context("steady insert")?);
    }
    let last_commit = inserts.iter().map(|i| i.committed).max().context("nothing inserted")?;
    let achieved = inserts.len() as f64 / last_commit.duration_since(start).as_secs_f64();

    sink.wait_for(baseline + inserts.len(), Duration::from_secs(15)).await;
    let arrivals = sink.arrivals();
    daemon.check_alive().await?;
    daemon.stop().await?;

    let mut first_seen: HashMap<&str, Instant> = HashMap::with_capacity(arrivals.len());
    let mut duplicates = 0;
    for a in &arrivals[baseline..] {
        if first_seen.insert(a.message_id.as_str(), a.at).is_some() {
            duplicates += 1;
        }
    }
    let mut latency = Vec::with_capacity(inserts.len());
    let mut missing = 0;
    for i in &inserts {
        match first_seen.get(i.message_id.as_str()) {
            // signed: the sink may, in principle, beat our own task to the commit reply
            Some(&at) => latency.push(signed_ms(at, i.committed)),
            None => missing += 1,
        }
    }
    let insert: Vec<f64> = inserts.iter().map(|i| ms(i.committed - i.started)).collect();
    let lag: Vec<f64> = inserts.iter().map(|i| ms(i.started.saturating_duration_since(i.scheduled))).collect();
    Ok(Report {
        target_rate_per_s: p.rate,
        seconds: p.seconds,
        connections: p.connections,
        smtp_pool_size: p.smtp_pool_size,
        smtp_concurrency: p.smtp_concurrency,
        daemon: p.daemon.clone(),
        sink_quickack: p.sink_quickack,
        inserted: inserts.len(),
        achieved_rate_per_s: achieved,
        latency: spread(latency),
        insert: spread(insert),
        schedule_lag: spread(lag),
        missing,
        duplicates,
    })
}

fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => ms(d),
        None => -ms(earlier.duration_since(later)),
    }
}

/// Nearest-rank percentiles.
fn spread(mut v: Vec<f64>) -> Option<Spread> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some(Spread { p50_ms: rank(0.50), p99_ms: rank(0.99), max_ms: v[v.len() - 1] })
}
