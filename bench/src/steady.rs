//! Scenario `steady`: commit-to-send latency under an open-loop insert load, one rate per run
//! (each in its own fresh database with a fresh daemon process).
//!
//! The daemon is up and idle; C connections each insert one row per transaction (autocommit,
//! prepared) on a fixed, staggered schedule of rate / C per second each, for `seconds`. Open
//! loop: an insert is issued at its scheduled instant even when earlier ones on the same
//! connection have not returned (they are pipelined on the connection), so a slow commit never
//! postpones the load. Connection c writes rows g = c, c + C, c + 2C, … (recipient g mod 1,000),
//! so the rows in flight at once go to distinct threads. Latency = delivery − the instant the INSERT returned to us:
//!
//! - provider `log` (default; zero provider latency, so this is the daemon's own latency): the
//!   delivery is the row's `sent_at` (written by the daemon's outcome transaction right after
//!   the provider accepted it), a database timestamp compared with our wall clock at commit,
//!   corrected by the measured clock offset (zero on one host); rows matched by `RETURNING id`.
//! - provider `smtp`: the sink's accept instant; rows matched by the Message-ID the trigger
//!   assigns (`RETURNING external_message_id`).
//!
//! Reports p50 / p99 / max, the achieved insert rate, the INSERT round trips, the load
//! generator's own lag, and rows never delivered (waited for up to 15 s after the last insert).

use crate::child::{ChildDaemon, Memory};
use crate::setup::{db_clock_offset_ms, epoch_ms, ms, BenchDb, DaemonSettings, QUEUE_SETTLED, ROW_VALUES, SENDER, TENANT};
use crate::sink::Sink;
use anyhow::Context;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// Where `steady` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Provider `log`: latency up to `sent_at` in the database.
    Log,
    /// Provider `smtp` to the in-process sink: latency up to the sink's accept.
    Smtp,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Log => "log",
            Provider::Smtp => "smtp",
        }
    }
}

pub struct Params {
    pub rate: f64,
    pub seconds: f64,
    pub connections: usize,
    pub provider: Provider,
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
    pub provider: Provider,
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
    /// Commit returned → sent (log: `sent_at`; smtp: the sink accepted the message).
    pub latency: Option<Spread>,
    /// How long each single-row INSERT (autocommit) took to return.
    pub insert: Option<Spread>,
    /// How late inserts were issued against their schedule (the load generator's own lag).
    pub schedule_lag: Option<Spread>,
    /// Inserted rows never delivered (waited up to 15 s after the last insert).
    pub missing: usize,
    /// smtp: extra copies at the sink; log: rows with more than one attempt.
    pub duplicates: usize,
    /// The daemon process's resident memory.
    pub memory: Memory,
}

impl Report {
    /// What must not happen: a message delivered twice or never.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let at = format!("steady {}/s", self.target_rate_per_s);
        if self.duplicates > 0 {
            p.push(format!("{at}: {} duplicate deliveries", self.duplicates));
        }
        if self.missing > 0 {
            p.push(format!("{at}: {} rows not sent by the end of the wait (15 s + 1 ms per row)", self.missing));
        }
        p
    }
}

struct Insert {
    id: i64,
    message_id: String,
    scheduled: Instant,
    started: Instant,
    committed: Instant,
    committed_wall: SystemTime,
}

const WARMUP: usize = 20;

pub async fn run(db: &BenchDb, p: &Params) -> anyhow::Result<Report> {
    anyhow::ensure!(p.rate > 0.0 && p.seconds > 0.0 && p.connections > 0, "--rates, --seconds and --connections must be positive");
    let sink = match p.provider {
        Provider::Smtp => Some(Sink::start(p.sink_quickack).await.context("starting the SMTP sink")?),
        Provider::Log => None,
    };
    let session = match &sink {
        Some(sink) => db.smtp_session(sink.addr.port(), p.smtp_pool_size, p.smtp_concurrency).await?,
        None => db.log_session("email", SENDER).await?,
    };
    let offset_ms = db_clock_offset_ms(&db.client).await?;
    let mut daemon = ChildDaemon::spawn(db, &p.daemon).await?;
    daemon.ready(Duration::from_secs(30)).await?;

    // Warm up the provider, the daemon's statement caches and ours, then let everything go idle.
    let mut clients = Vec::with_capacity(p.connections);
    for _ in 0..p.connections {
        clients.push(db.connect().await?);
    }
    let sql = format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
         SELECT $1, $2, 'outbound', {ROW_VALUES} FROM (SELECT $3::int AS g) s
         RETURNING id, external_message_id"
    );
    for i in 0..WARMUP {
        let c = &clients[i % clients.len()];
        c.query_one(&sql, &[&TENANT, &session, &(-(i as i32))]).await.context("warm-up insert")?;
    }
    match &sink {
        Some(sink) => anyhow::ensure!(sink.wait_for(WARMUP, Duration::from_secs(15)).await, "warm-up messages did not reach the sink"),
        None => {
            db.until_or_fail(QUEUE_SETTLED, &mut daemon, Duration::from_secs(15)).await.context("warm-up")?;
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    daemon.check_alive()?;
    let baseline = sink.as_ref().map_or(0, |s| s.count());

    let per_conn = ((p.rate * p.seconds) / p.connections as f64).round().max(1.0) as usize;
    let period = Duration::from_secs_f64(p.connections as f64 / p.rate);
    eprintln!(
        "steady: {} connections × {per_conn} rows, one every {:.2} ms each ({} rows/s in total, provider {})",
        p.connections,
        ms(period),
        p.rate,
        p.provider.name()
    );
    let start = Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::with_capacity(p.connections);
    for (c, client) in clients.into_iter().enumerate() {
        let sql = sql.clone();
        let offset = period.mul_f64(c as f64 / p.connections as f64);
        let connections = p.connections;
        tasks.push(tokio::spawn(async move {
            let stmt = client.prepare(&sql).await?;
            let (client, stmt) = (&client, &stmt);
            let mut done = Vec::with_capacity(per_conn);
            let mut in_flight = FuturesUnordered::new();
            for k in 0..per_conn {
                // Open loop: the schedule is fixed; finish what returns while waiting for the slot.
                let scheduled = start + offset + period.mul_f64(k as f64);
                let slot = tokio::time::sleep_until(scheduled.into());
                tokio::pin!(slot);
                loop {
                    // biased: polling the in-flight set first also sends the inserts just pushed
                    tokio::select! {
                        biased;
                        Some(r) = in_flight.next(), if !in_flight.is_empty() => done.push(r?),
                        _ = &mut slot => break,
                    }
                }
                // interleaved, so rows in flight at once go to distinct recipients (threads)
                let g = (k * connections + c) as i32;
                in_flight.push(async move {
                    let started = Instant::now();
                    let row = client.query_one(stmt, &[&TENANT, &session, &g]).await?;
                    let (committed, committed_wall) = (Instant::now(), SystemTime::now());
                    let message_id: Option<String> = row.get(1);
                    anyhow::Ok(Insert {
                        id: row.get(0),
                        message_id: message_id.unwrap_or_default(),
                        scheduled,
                        started,
                        committed,
                        committed_wall,
                    })
                });
            }
            while let Some(r) = in_flight.next().await {
                done.push(r?);
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

    let (latency, missing, duplicates) = match &sink {
        Some(sink) => {
            sink.wait_for(baseline + inserts.len(), Duration::from_secs(15)).await;
            daemon.check_alive()?;
            by_sink(sink, baseline, &inserts)
        }
        None => {
            // a backlog the inserts left (they may lag the schedule) gets time to drain: 15 s
            // plus 1 ms per row, then what is still unsent counts as missing
            let wait = Duration::from_secs(15) + Duration::from_millis(inserts.len() as u64);
            db.until(QUEUE_SETTLED, &mut daemon, wait).await?;
            by_sent_at(db, &inserts, offset_ms).await?
        }
    };
    let memory = daemon.stop().await?;

    let insert: Vec<f64> = inserts.iter().map(|i| ms(i.committed - i.started)).collect();
    let lag: Vec<f64> = inserts.iter().map(|i| ms(i.started.saturating_duration_since(i.scheduled))).collect();
    Ok(Report {
        provider: p.provider,
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
        memory,
    })
}

/// Latencies (ms), missing and duplicates from the sink's arrivals.
fn by_sink(sink: &Sink, baseline: usize, inserts: &[Insert]) -> (Vec<f64>, usize, usize) {
    let arrivals = sink.arrivals();
    let mut first_seen: HashMap<&str, Instant> = HashMap::with_capacity(arrivals.len());
    let mut duplicates = 0;
    for a in &arrivals[baseline..] {
        if first_seen.insert(a.message_id.as_str(), a.at).is_some() {
            duplicates += 1;
        }
    }
    let mut latency = Vec::with_capacity(inserts.len());
    let mut missing = 0;
    for i in inserts {
        match first_seen.get(i.message_id.as_str()) {
            // signed: the sink may, in principle, beat our own task to the commit reply
            Some(&at) => latency.push(signed_ms(at, i.committed)),
            None => missing += 1,
        }
    }
    (latency, missing, duplicates)
}

/// Latencies (ms), missing and rows sent more than once from `sent_at` / `attempts`.
async fn by_sent_at(db: &BenchDb, inserts: &[Insert], offset_ms: f64) -> anyhow::Result<(Vec<f64>, usize, usize)> {
    let ids: Vec<i64> = inserts.iter().map(|i| i.id).collect();
    let rows = db
        .client
        .query(
            "SELECT id, (extract(epoch FROM sent_at) * 1000)::float8, attempts FROM et_messages
              WHERE id = ANY($1) AND delivery_status = 'sent'",
            &[&ids],
        )
        .await?;
    let sent: HashMap<i64, (f64, i32)> = rows.iter().map(|r| (r.get(0), (r.get(1), r.get(2)))).collect();
    let mut latency = Vec::with_capacity(inserts.len());
    for i in inserts {
        if let Some(&(sent_ms, _)) = sent.get(&i.id) {
            latency.push(sent_ms - offset_ms - epoch_ms(i.committed_wall));
        }
    }
    let retried = sent.values().filter(|(_, attempts)| *attempts > 1).count();
    Ok((latency, inserts.len() - sent.len(), retried))
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
