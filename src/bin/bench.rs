//! `bench`: throughput and latency of the real pgcourier daemon against a real PostgreSQL.
//!
//! ```text
//! cargo run --release --bin bench -- [--json] [--scenario smtp|steady|ingest|all]
//!                                    [--messages 20000] [--rate 200] [--seconds 10] [--ingest-rows 100000] ...
//! ```
//!
//! The server is `DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`; the user must
//! be allowed to `CREATE DATABASE`. Every scenario runs in its own fresh database `bench_<uuid>`,
//! migrated with the library's migrations, and dropped `WITH (FORCE)` afterwards (also when the
//! scenario fails or Ctrl-C interrupts it). The daemon runs in-process (`pgcourier::daemon`)
//! and sends to an SMTP sink inside this process (127.0.0.1, ephemeral port) that records
//! when each message was accepted and its `Message-ID`. No tracing subscriber is installed, so
//! the daemon's logging costs nothing; `--log` installs the daemon's own (`RUST_LOG`, default
//! info) to look for errors.
//!
//! Scenarios (all by default):
//!
//! - `smtp` — backlog drain. `--messages` (20,000) outbound emails are inserted in ONE statement
//!   while no daemon runs; then one daemon starts and the clock runs until all are `sent` in
//!   the database (polled every 50 ms) and until the sink holds all of them. Reports messages/s
//!   both ways and checks that every Message-ID arrived exactly once (duplicates must be 0).
//!   The SMTP session's `pool_size` / `concurrency` are `--smtp-pool-size` / `--smtp-concurrency`.
//! - `steady` — latency under a modest open-loop load. The daemon is up and idle; `--connections`
//!   (4) connections insert one row per transaction, each at `--rate`/connections per second
//!   on a fixed, staggered schedule (late inserts do not delay later ones), for `--seconds`.
//!   Latency = sink accept instant − the instant the INSERT (autocommit) returned; rows are
//!   matched by `RETURNING external_message_id` (the Message-ID the trigger assigns). Reports
//!   p50 / p99 / max, and the rows that never arrived.
//! - `ingest` — trigger cost. `INSERT ... SELECT generate_series(1, --ingest-rows)` into
//!   `et_messages` versus the same columns into trigger-less copies (`plain`: no index;
//!   `plain_indexed`: the same indexes); seconds, rows/s and the ratio.
//!
//! Output: a table on stdout (progress on stderr), or with `--json` one JSON object with every
//! figure plus the machine (`nproc`, `SHOW server_version`). The exit status is non-zero when a
//! scenario failed or a message was delivered twice or never (listed as problems).
//!
//! Diagnostics: `--analyze` (smtp: `ANALYZE` before the daemon starts, as autovacuum would soon
//! do in production), `--sink-quickack` (the sink ACKs at once instead of with the kernel's
//! delayed ACK: shows what the SMTP client's Nagle stall costs), `--log`, and the daemon knobs
//! `--batch-size`, `--max-in-flight`, `--db-pool-size`, `--smtp-pool-size`, `--smtp-concurrency`.

// A binary's root file resolves `mod x;` next to itself, hence the paths into bench/.
#[path = "bench/ingest.rs"]
mod ingest;
#[path = "bench/setup.rs"]
mod setup;
#[path = "bench/sink.rs"]
mod sink;
#[path = "bench/smtp.rs"]
mod smtp;
#[path = "bench/steady.rs"]
mod steady;

use clap::{Parser, ValueEnum};
use setup::{BenchDb, DaemonSettings};
use std::future::Future;

/// Run one scenario in a fresh database that is dropped afterwards, whatever happened.
macro_rules! in_fresh_db {
    (|$db:ident| $scenario:expr) => {
        match BenchDb::create().await {
            Ok($db) => {
                let result = interruptible($scenario).await;
                $db.drop_database().await;
                result
            }
            Err(e) => Err(e),
        }
    };
}

#[derive(Parser)]
#[command(name = "bench", about = "Benchmark the pgcourier daemon against a real PostgreSQL")]
struct Cli {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    #[arg(long, value_enum, default_value_t = Which::All)]
    scenario: Which,
    /// smtp: messages in the backlog.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// steady: rows per second, all connections together.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// steady: how long the load runs.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// steady: inserting connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// ingest: rows per bulk insert.
    #[arg(long, default_value_t = 100_000)]
    ingest_rows: usize,
    /// The SMTP session's `config.pool_size` (lettre's connection pool).
    /// (8/64, 64/64, 8/128, 128/128, 256/256 were tried; 128/128 was among the fastest and,
    /// unlike a pool smaller than the concurrency, does not open a connection per message.)
    #[arg(long, default_value_t = 128)]
    smtp_pool_size: usize,
    /// The SMTP session's `config.concurrency` (sends in progress at once).
    #[arg(long, default_value_t = 128)]
    smtp_concurrency: usize,
    /// PGCOURIER_BATCH_SIZE.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// PGCOURIER_MAX_IN_FLIGHT.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// PGCOURIER_POOL_SIZE (the daemon's database connections).
    #[arg(long, default_value_t = 8)]
    db_pool_size: usize,
    /// smtp: ANALYZE after the bulk insert, before the daemon starts.
    #[arg(long)]
    analyze: bool,
    /// Diagnostic: the sink acknowledges at once (TCP_QUICKACK) instead of with the kernel's
    /// delayed ACK, which a client writing with Nagle's algorithm on otherwise waits for.
    #[arg(long)]
    sink_quickack: bool,
    /// Install the daemon's log subscriber (RUST_LOG, default info) on stderr.
    #[arg(long)]
    log: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Smtp,
    Steady,
    Ingest,
    All,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.log {
        pgcourier::telemetry::init(pgcourier::config::LogFormat::Text);
    }
    let daemon = DaemonSettings {
        batch_size: cli.batch_size,
        max_in_flight: cli.max_in_flight,
        db_pool_size: cli.db_pool_size,
        poll_interval: "1s".to_owned(),
    };
    let admin = setup::connect(&setup::admin_url()).await?;
    let server_version: String = admin.query_one("SHOW server_version", &[]).await?.get(0);
    drop(admin);
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let wants = |w: Which| cli.scenario == w || cli.scenario == Which::All;

    let mut smtp_report = None;
    let mut steady_report = None;
    let mut ingest_report = None;
    if wants(Which::Smtp) {
        let params = smtp::Params {
            messages: cli.messages,
            smtp_pool_size: cli.smtp_pool_size,
            smtp_concurrency: cli.smtp_concurrency,
            daemon: daemon.clone(),
            sink_quickack: cli.sink_quickack,
            analyze: cli.analyze,
        };
        smtp_report = Some(in_fresh_db!(|db| smtp::run(&db, &params)));
    }
    if wants(Which::Steady) {
        let params = steady::Params {
            rate: cli.rate,
            seconds: cli.seconds,
            connections: cli.connections,
            smtp_pool_size: cli.smtp_pool_size,
            smtp_concurrency: cli.smtp_concurrency,
            daemon: daemon.clone(),
            sink_quickack: cli.sink_quickack,
        };
        steady_report = Some(in_fresh_db!(|db| steady::run(&db, &params)));
    }
    if wants(Which::Ingest) {
        ingest_report = Some(in_fresh_db!(|db| ingest::run(&db, cli.ingest_rows)));
    }

    let failed = [smtp_report.as_ref().map(|r| r.is_err()), steady_report.as_ref().map(|r| r.is_err()), ingest_report.as_ref().map(|r| r.is_err())]
        .into_iter()
        .flatten()
        .filter(|&e| e)
        .count();
    let mut problems = Vec::new();
    if let Some(Ok(r)) = &smtp_report {
        problems.extend(r.problems());
    }
    if let Some(Ok(r)) = &steady_report {
        problems.extend(r.problems());
    }
    if cli.json {
        let all = serde_json::json!({
            "machine": { "nproc": nproc, "server_version": server_version },
            "smtp": smtp_report.as_ref().map(as_json),
            "steady": steady_report.as_ref().map(as_json),
            "ingest": ingest_report.as_ref().map(as_json),
            "problems": problems,
        });
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        println!("pgcourier bench: {nproc} CPUs, PostgreSQL {server_version}");
        print_or_fail("smtp", &smtp_report, print_smtp);
        print_or_fail("steady", &steady_report, print_steady);
        print_or_fail("ingest", &ingest_report, print_ingest);
        for p in &problems {
            println!("\nPROBLEM: {p}");
        }
    }
    anyhow::ensure!(failed == 0, "{failed} scenario(s) failed");
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}

/// A scenario's report, or `{"error": "..."}`.
fn as_json<T: serde::Serialize>(r: &anyhow::Result<T>) -> serde_json::Value {
    match r {
        Ok(report) => serde_json::to_value(report).unwrap_or_default(),
        Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
    }
}

fn print_or_fail<T>(name: &str, r: &Option<anyhow::Result<T>>, print: fn(&T)) {
    match r {
        None => {}
        Some(Ok(report)) => print(report),
        Some(Err(e)) => println!("\n{name}: FAILED: {e:#}"),
    }
}

/// Run a scenario unless SIGINT or SIGTERM comes first (the caller then still drops the database).
async fn interruptible<T>(scenario: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = scenario => r,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        _ = term.recv() => anyhow::bail!("terminated"),
    }
}

fn settings(d: &DaemonSettings, sink_quickack: bool) -> String {
    let sink = if sink_quickack { "; sink TCP_QUICKACK on" } else { "" };
    format!("batch {}, max_in_flight {}, db pool {}, poll {}{sink}", d.batch_size, d.max_in_flight, d.db_pool_size, d.poll_interval)
}

fn print_smtp(r: &smtp::Report) {
    println!();
    println!("smtp: drain a backlog of {} emails with one daemon", r.messages);
    println!("  settings: smtp pool_size {}, concurrency {}; {}", r.smtp_pool_size, r.smtp_concurrency, settings(&r.daemon, r.sink_quickack));
    println!("  {:<40}{:>10.2} s", "bulk insert (one statement, no daemon)", r.bulk_insert_s);
    println!("  {:<40}{:>10.1} ms", "daemon start → first at the sink", r.first_at_sink_ms);
    println!("  {:<40}{:>10.2} s {:>10.0} msgs/s", format!("daemon start → all {} at the sink", r.messages), r.all_at_sink_s, r.sink_msgs_per_s);
    println!("  {:<40}{:>10.2} s {:>10.0} msgs/s", format!("daemon start → all {} sent (db)", r.messages), r.all_sent_s, r.sent_msgs_per_s);
    println!("  {:<40}{:>10}", "SMTP connections", r.smtp_connections);
    println!("  {:<40}{:>10}", "duplicates / missing / unknown", format!("{} / {} / {}", r.duplicates, r.missing, r.unknown));
    println!("  {:<40}{:>10}", "rows retried (attempts > 1)", r.retried);
    let analysed = if r.autoanalyzed_during_run.is_empty() { "none".to_owned() } else { r.autoanalyzed_during_run.join(", ") };
    println!("  {:<40}{:>10}", "ANALYZE before start (--analyze)", if r.analyzed_before_start { "yes" } else { "no" });
    println!("  {:<40}{analysed}", "autoanalyze during the drain");
}

fn print_steady(r: &steady::Report) {
    println!();
    println!("steady: {} rows/s for {} s from {} connections, one row per transaction", r.target_rate_per_s, r.seconds, r.connections);
    println!("  settings: smtp pool_size {}, concurrency {}; {}", r.smtp_pool_size, r.smtp_concurrency, settings(&r.daemon, r.sink_quickack));
    println!("  {:<40}{:>10}   achieved {:.1} rows/s", "rows inserted", r.inserted, r.achieved_rate_per_s);
    println!("  {:<40}{:>10}{:>10}{:>10}", "", "p50 ms", "p99 ms", "max ms");
    for (label, s) in [
        ("commit → SMTP accept (latency)", &r.latency),
        ("INSERT round trip (autocommit)", &r.insert),
        ("load generator lag (start − schedule)", &r.schedule_lag),
    ] {
        match s {
            Some(s) => println!("  {label:<40}{:>10.2}{:>10.2}{:>10.2}", s.p50_ms, s.p99_ms, s.max_ms),
            None => println!("  {label:<40}{:>10}", "-"),
        }
    }
    println!("  {:<40}{:>10}", "missing / duplicates", format!("{} / {}", r.missing, r.duplicates));
}

fn print_ingest(r: &ingest::Report) {
    println!();
    println!("ingest: INSERT ... SELECT generate_series(1, {}) in one statement", r.rows);
    for (label, t) in [
        ("et_messages (triggers)", &r.et_messages),
        ("plain (no trigger, no index)", &r.plain),
        ("plain_indexed (no trigger, same indexes)", &r.plain_indexed),
    ] {
        println!("  {label:<42}{:>8.2} s {:>10.0} rows/s", t.seconds, t.rows_per_s);
    }
    println!("  {:<42}{:>8.2}×", "et_messages / plain", r.ratio_vs_plain);
    println!("  {:<42}{:>8.2}×", "et_messages / plain_indexed", r.ratio_vs_plain_indexed);
}
