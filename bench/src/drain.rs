//! Scenario `drain` (and `memory`): how fast one daemon empties a backlog when the provider
//! costs nothing, with the full lifecycle, and how much memory the daemon needs meanwhile.
//!
//! N outbound emails on a session with provider `log` (accepts at once) are inserted in ONE
//! statement while no daemon runs (triggers: validation, threads, queue rows, `queued` events).
//! Then one daemon process starts (see [`crate::child`]) and the clock runs from its spawn until
//! no queue row is ready or leased, polled every 50 ms (the queue, not a count over
//! `et_messages`: that scan, 20 times a second, would compete with the daemon for the CPUs).
//! msgs/s = N / that time. Afterwards every row is checked: `sent` with `sent_at`, one attempt,
//! no queue row left, and exactly the events `→queued`, `queued→sending`, `sending→sent`.
//! Like the peer's runs, it starts after a `CHECKPOINT` (best effort).
//! Memory: the daemon's `VmHWM` (peak resident set) read when the drain is done, and the largest
//! `VmRSS` of the 50 ms sampler.
//! `--pooler` chooses how the daemon's pool reaches the database (see [`crate::pgbouncer`]).
//! CPU: the seconds PostgreSQL's backends serving the daemon, the daemon and PgBouncer used,
//! read from `/proc` just before the daemon stops (see [`Cpu`]).

use crate::child::{ChildDaemon, Memory};
use crate::pgbouncer::{Pooler, Route};
use crate::setup::{db_clock_offset_ms, epoch_ms, ms, BenchDb, DaemonSettings, QUEUE_SETTLED, SENDER};
use serde::Serialize;
use std::time::{Duration, Instant, SystemTime};

pub struct Params {
    pub messages: usize,
    pub daemon: DaemonSettings,
    /// `ANALYZE` after the bulk insert, before the daemon starts.
    pub analyze: bool,
    /// How the daemon's pool reaches the database.
    pub pooler: Pooler,
}

/// What the rows look like after the drain.
#[derive(Debug, Serialize)]
pub struct Lifecycle {
    pub sent: i64,
    pub sent_at_missing: i64,
    /// Rows with attempts ≠ 1 (a retry or a second send).
    pub attempts_not_one: i64,
    pub queue_rows_left: i64,
    pub events_total: i64,
    pub events_queued: i64,
    pub events_sending: i64,
    pub events_sent: i64,
    /// Messages whose events are exactly →queued, queued→sending, sending→sent.
    pub complete_lifecycles: i64,
}

/// CPU seconds used during the drain, read just before the daemon stops: the database's
/// backends that served it (every backend connected to the benchmark database except the
/// bench's own: the daemon's pool, listener and leader, or PgBouncer's server connections; they
/// started with the daemon), the daemon process, and PgBouncer when there is one. Less noisy
/// than wall time on a shared machine: it counts work done, not time waited.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Cpu {
    pub postgres_s: f64,
    pub daemon_s: f64,
    pub pgbouncer_s: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub messages: usize,
    pub daemon: DaemonSettings,
    pub pooler: Pooler,
    pub analyzed_before_start: bool,
    pub bulk_insert_s: f64,
    /// Daemon spawn → its LISTEN connection is up (process start, schema check, pool).
    pub ready_ms: f64,
    /// Daemon spawn → the first `sent_at` (database clock, offset-corrected).
    pub first_sent_ms: f64,
    /// Daemon spawn → no queue row ready or leased (all outcomes recorded).
    pub all_sent_s: f64,
    pub msgs_per_s: f64,
    pub lifecycle: Lifecycle,
    pub cpu: Cpu,
    /// The daemon process during the drain.
    pub memory: Memory,
    /// `et_messages` row updates during the drain, and how many were HOT (no index entry
    /// written: the new version fit on the same page and no indexed column changed).
    pub message_updates: i64,
    pub message_hot_updates: i64,
}

impl Report {
    /// What must not happen: a message lost, sent twice, or with a gap in its history.
    pub fn problems(&self) -> Vec<String> {
        let (l, n) = (&self.lifecycle, self.messages as i64);
        let mut p = Vec::new();
        if l.sent != n || l.sent_at_missing > 0 {
            p.push(format!("drain: {} of {n} sent, {} without sent_at", l.sent, l.sent_at_missing));
        }
        if l.queue_rows_left > 0 {
            p.push(format!("drain: {} queue rows left", l.queue_rows_left));
        }
        if l.attempts_not_one > 0 {
            p.push(format!("drain: {} rows with attempts ≠ 1", l.attempts_not_one));
        }
        if l.complete_lifecycles != n || l.events_total != 3 * n {
            p.push(format!(
                "drain: {} of {n} messages with exactly queued→sending→sent ({} events)",
                l.complete_lifecycles, l.events_total
            ));
        }
        p
    }
}

pub async fn run(db: &BenchDb, p: &Params) -> anyhow::Result<Report> {
    let n = p.messages;
    let session = db.log_session("email", SENDER).await?;
    // A fresh checkpoint cycle (as the peer's runs get), so a checkpoint owed to an earlier
    // scenario's WAL does not land in the drain (best effort: needs the right to CHECKPOINT).
    let _ = db.client.batch_execute("CHECKPOINT").await;
    let bulk_insert = db.bulk_outbound(session, n).await?;
    if p.analyze {
        db.client.batch_execute("ANALYZE").await?;
    }
    let offset_ms = db_clock_offset_ms(&db.client).await?;
    // held until the function returns: the daemon has stopped by then
    let route = Route::open(db, p.pooler, p.daemon.db_pool_size).await?;
    let settings = DaemonSettings { pool_url: route.pool_url.clone(), ..p.daemon.clone() };
    eprintln!("drain: {n} rows queued in {:.2} s; starting the daemon (pool: {})", bulk_insert.as_secs_f64(), p.pooler.as_str());

    let wall0 = SystemTime::now();
    let mut daemon = ChildDaemon::spawn(db, &settings).await?;
    let t0 = daemon.started;
    let ready = daemon.ready(Duration::from_secs(30)).await?;
    let done = db.until_or_fail(QUEUE_SETTLED, &mut daemon, Duration::from_secs(60) + Duration::from_millis(n as u64 * 5)).await?;
    let all_sent = done.duration_since(t0);
    let backends =
        db.client.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()", &[]).await?;
    let cpu = Cpu {
        postgres_s: backends.iter().filter_map(|r| crate::child::cpu_seconds(r.get::<_, i32>(0) as u32)).sum(),
        daemon_s: crate::child::cpu_seconds(daemon.pid()).unwrap_or(f64::NAN),
        pgbouncer_s: route.pgbouncer_cpu_seconds(),
    };
    let memory = daemon.memory();
    daemon.stop().await?;
    eprintln!("drain: {n} sent in {:.2} s; checking every row", all_sent.as_secs_f64());

    let first_sent_epoch_ms: Option<f64> =
        db.client.query_one("SELECT (extract(epoch FROM min(sent_at)) * 1000)::float8 FROM et_messages", &[]).await?.get(0);
    let first_sent_ms = first_sent_epoch_ms.map(|t| t - offset_ms - epoch_ms(wall0)).unwrap_or(f64::NAN);
    let lifecycle = lifecycle(db).await?;
    // (the daemon's backends flushed their statistics when it stopped)
    let upd =
        db.client.query_one("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'et_messages'::regclass", &[]).await?;
    Ok(Report {
        messages: n,
        daemon: p.daemon.clone(),
        pooler: p.pooler,
        analyzed_before_start: p.analyze,
        bulk_insert_s: bulk_insert.as_secs_f64(),
        ready_ms: ms(ready),
        first_sent_ms,
        all_sent_s: all_sent.as_secs_f64(),
        msgs_per_s: n as f64 / all_sent.as_secs_f64(),
        lifecycle,
        cpu,
        memory,
        message_updates: upd.get(0),
        message_hot_updates: upd.get(1),
    })
}

async fn lifecycle(db: &BenchDb) -> anyhow::Result<Lifecycle> {
    let t = Instant::now();
    let m = db
        .client
        .query_one(
            "SELECT count(*) FILTER (WHERE delivery_status = 'sent'),
                    count(*) FILTER (WHERE sent_at IS NULL),
                    count(*) FILTER (WHERE attempts <> 1)
               FROM et_messages",
            &[],
        )
        .await?;
    let e = db
        .client
        .query_one(
            "SELECT count(*),
                    count(*) FILTER (WHERE from_status IS NULL AND to_status = 'queued'),
                    count(*) FILTER (WHERE from_status = 'queued' AND to_status = 'sending'),
                    count(*) FILTER (WHERE from_status = 'sending' AND to_status = 'sent')
               FROM et_message_events",
            &[],
        )
        .await?;
    let complete = db
        .count(
            "SELECT count(*) FROM (
               SELECT 1 FROM et_message_events GROUP BY tenant_id, message_id
               HAVING array_agg(coalesce(from_status, '') || '>' || to_status ORDER BY id)
                      = ARRAY['>queued', 'queued>sending', 'sending>sent']) x",
        )
        .await?;
    let l = Lifecycle {
        sent: m.get(0),
        sent_at_missing: m.get(1),
        attempts_not_one: m.get(2),
        queue_rows_left: db.count("SELECT count(*) FROM et_outbound_queue").await?,
        events_total: e.get(0),
        events_queued: e.get(1),
        events_sending: e.get(2),
        events_sent: e.get(3),
        complete_lifecycles: complete,
    };
    eprintln!("drain: lifecycle checked in {:.2} s", t.elapsed().as_secs_f64());
    Ok(l)
}
