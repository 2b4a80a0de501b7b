//! `bench`: throughput, latency and memory of the real pgcourier daemon against a real
//! PostgreSQL, a peer comparison with graphile-worker, and the issue's targets.
//!
//! ```text
//! cargo run --release -p pgcourier-bench -- [--json]
//!     [--scenario drain|steady|ingest|smtp|inbound|console|retention|peer|insert-cost|all]
//!     [--drain-messages 100000] [--rates 1000] [--seconds 10] [--connections 8]
//!     [--steady-search-budget 300] [--steady-search-start 1000]
//!     [--steady-provider log|smtp] [--ingest-rows 100000] [--ingest-single-rows 20000]
//!     [--messages 20000] [--inbound-messages 50000] [--inbound-threads 5000]
//!     [--no-peer] [--peer-skip-default] [--no-insert-cost] [--analyze] [--log] ...
//! ```
//!
//! The server is `DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`; the user must
//! be allowed to `CREATE DATABASE`. Every scenario (every steady rate) runs in its own fresh
//! database `bench_<uuid>`, a copy of the migrated template database the tests copy too
//! (`pgcourier-testdb`, crates/testdb), and dropped `WITH (FORCE)` afterwards (also when the
//! scenario fails or Ctrl-C interrupts it). The daemon runs as its own
//! process, as in production: this binary re-executed with the hidden `--daemon-child` flag (see
//! the `child` module), configured through `PGCOURIER_*`, so its memory can be measured.
//!
//! Scenarios, in the order `all` (the default) runs them:
//!
//! - `ingest` — trigger cost: `INSERT ... SELECT generate_series(1, --ingest-rows)` into
//!   `et_messages` versus trigger-less copies (`plain`: no index; `plain_indexed`: the same
//!   indexes), then `--connections` connections inserting one row per transaction until
//!   `--ingest-single-rows` rows are in, into each table; rows/s and shares. Beside them, what
//!   no trigger design goes below: each message's lifecycle rows (message, queue row, `queued`
//!   event) into trigger-less copies, alone and with one session lookup per row. Printed with
//!   `et_messages`' rates as ratios to that floor and to graphile-worker's enqueue (the peer).
//! - `drain` (+ `memory`) — `--drain-messages` outbound emails on a provider `log` session
//!   (zero latency) in ONE statement with no daemon; then one daemon process; msgs/s from its
//!   start until every row is sent, the full lifecycle checked (status, `sent_at`, one attempt,
//!   no queue row, events queued→sending→sent for each); the daemon's peak RSS (`VmHWM`).
//!   `--drain-runs` times (2), each checked; the fastest is reported, the others' rates beside it.
//!   In `all` the first runs before the peer and the rest after it. Then the drain's floor
//!   ([`drain_floor`]): the same backlog's lifecycle writes alone (claim, lease, `sending`, event;
//!   delete, `sent`, event) on trigger-less copies from 4 connections, no daemon.
//! - `peer` — `bench/peer/graphile.sh --jobs <drain-messages>` (graphile-worker's no-op job
//!   drain on the same server; `--peer-skip-default` skips its default-settings run) and the
//!   ratio pgcourier drain msgs/s ÷ graphile-worker's best jobs/s. The same script run then
//!   times graphile-worker's enqueue as ingest times ours, with ingest's counts: `add_jobs` of
//!   `--ingest-rows` jobs in one call, and `add_job` one job per transaction from `--connections`
//!   connections, `--ingest-single-rows` in all. "Not run" (with the reason) without the script
//!   or Node.js; `--no-peer` skips it.
//! - `smtp` — `--messages` emails drained to an SMTP sink inside this process (127.0.0.1,
//!   ephemeral port) through the session's pooled connections (`--smtp-pool-size`,
//!   `--smtp-concurrency`); msgs/s in the database and at the sink, every Message-ID once.
//! - `steady` — for each of `--rates` (rows/s; `--rate` gives one), an open-loop load from
//!   `--connections` connections, one row per transaction, for `--seconds`, against an idle
//!   daemon; commit → sent latency p50 / p99 / max (`--steady-provider log`: the row's `sent_at`;
//!   `smtp`: the sink's accept), achieved rate, rows never delivered. Then the highest rate
//!   sustained (p99 ≤ 100 ms, ≥ 95% of the offered rate achieved, none lost): steady runs from
//!   `--steady-search-start` rising ×1.5, then bisecting to within 5%, within
//!   `--steady-search-budget` seconds (0 skips it), reported as a share of ingest's plain
//!   single-row insert rate in the same run (see `steady_search`).
//! - `inbound` — `--inbound-messages` inbound rows from `--inbound-threads` senders in ONE
//!   statement, decided by the rules decider (takeover / auto-reply / follow-up rules); msgs/s
//!   until all are decided, and the time until every thread has its insight.
//! - `console` — `--console-messages` (1,000,000) over `--console-tenants` (20), sent and decided
//!   by the daemon; every console page fetched `--console-samples` times by signed-in tenants
//!   (p50 / p95 / max), and the queries per second one open live stream costs (see `console`).
//!
//! - `retention` — `--retention-days` (14) days of history, `--retention-per-day` (25,000) sent
//!   messages a day in daily event partitions, a tenant that keeps 7 days; `--retention-rounds` (3)
//!   rounds of a `--drain-messages` drain with nothing to prune and one while the leader prunes
//!   every second, alternating: the rates, how
//!   fast the history past the window leaves, table sizes and live rows sampled every second
//!   (see `retention`).
//! - `insert-cost` — instructions PostgreSQL spends on one prepared one-row insert into
//!   `et_messages`, counted by callgrind (`bench/profile/one-row-instructions.sh` on a private
//!   cluster; needs valgrind and root, else "not measured"); `--no-insert-cost` skips it in `all`.
//!
//! Then the targets: "target | measured | goal | met?" for drain vs graphile-worker (≥ 1.5×, the
//! lifecycle checked), steady p99 at 1,000/s (with the share of this machine the rate needs,
//! estimated from the ingest and drain figures), bulk ingest vs the lifecycle-rows floor,
//! single-row ingest vs graphile-worker's `add_job` and vs the floor, instructions per insert,
//! smtp rate, inbound rate, the drain's peak RSS, the console's slowest page at p95 and its live
//! stream's queries per console.
//!
//! Output: the tables on stdout (progress on stderr), or with `--json` one JSON object with every
//! figure, the targets and the machine (`nproc`, `SHOW server_version`). The exit status is
//! non-zero when a scenario failed or a message was lost, delivered twice or left half-done
//! (listed as problems); a missed target is printed MISSED but is not a failure.
//!
//! `--pooler direct,relay,pgbouncer` (drain): how the daemon's pool reaches the database — directly
//! (the default), through its own pooler relay alone (`PGCOURIER_DB_POOLER=transaction`), or
//! through the relay and a private PgBouncer in transaction mode (see `pgbouncer`). With more
//! than one, every drain run is a round of one run per mode, in the order given (alternating),
//! each mode's runs are listed with the CPU seconds PostgreSQL's backends, the daemon and PgBouncer
//! used in them, and the first mode's fastest run is the one the targets judge.
//!
//! Daemon knobs: `--batch-size`, `--max-in-flight`, `--db-pool-size`. Diagnostics: `--analyze`
//! (drain, smtp: `ANALYZE` before the daemon starts, as autovacuum would soon do),
//! `--sink-quickack` (the sink ACKs at once instead of with the kernel's delayed ACK: shows what
//! the SMTP client's Nagle stall costs), `--log` (the daemon logs to stderr; `RUST_LOG`).

mod child;
mod cli;
mod console;
mod drain;
mod drain_floor;
mod inbound;
mod ingest;
mod insert_cost;
mod peer;
mod pgbouncer;
mod print;
mod retention;
mod setup;
mod sink;
mod smtp;
mod steady;
mod steady_search;
mod targets;

use clap::Parser;
use cli::{Cli, Which};
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

/// Every scenario's outcome (None: not run).
#[derive(Default)]
struct Results {
    ingest: Option<anyhow::Result<ingest::Report>>,
    /// The drain run that counts: the fastest, or the first that failed.
    drain: Option<anyhow::Result<drain::Report>>,
    /// msgs/s of every drain run of the first `--pooler` mode, in order.
    drain_rates: Vec<f64>,
    /// With several `--pooler` modes: each mode and its runs' msgs/s, in order.
    drain_by_pooler: Vec<(pgbouncer::Pooler, Vec<(f64, drain::Cpu)>)>,
    /// What went wrong in any drain run (a message lost, sent twice, a gap in its history).
    drain_problems: Vec<String>,
    /// The lifecycle's writes alone, drained from trigger-less copies (the drain's floor).
    drain_floor: Option<anyhow::Result<drain_floor::Report>>,
    peer: Option<anyhow::Result<peer::Report>>,
    smtp: Option<anyhow::Result<smtp::Report>>,
    steady: Vec<anyhow::Result<steady::Report>>,
    steady_search: Option<anyhow::Result<steady_search::Report>>,
    inbound: Option<anyhow::Result<inbound::Report>>,
    console: Option<anyhow::Result<console::Report>>,
    retention: Option<anyhow::Result<retention::Report>>,
    insert_cost: Option<anyhow::Result<insert_cost::Report>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.daemon_child {
        return child::run_child(cli.log).await;
    }
    if cli.migrate_child {
        return insert_cost::migrate_child().await;
    }
    let daemon = DaemonSettings {
        batch_size: cli.batch_size,
        max_in_flight: cli.max_in_flight,
        db_pool_size: cli.db_pool_size,
        poll_interval: "1s".to_owned(),
        http_addr: "127.0.0.1:0".to_owned(),
        log: cli.log,
        pool_url: None,
        maintenance_interval: None,
    };
    let admin = setup::connect(&setup::admin_url()).await?;
    let server_version: String = admin.query_one("SHOW server_version", &[]).await?.get(0);
    drop(admin);
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let wants = |w: Which| cli.scenario == w || cli.scenario == Which::All;

    let mut r = Results::default();
    if wants(Which::Ingest) {
        let params = ingest::Params { rows: cli.ingest_rows, single_rows: cli.ingest_single_rows, connections: cli.connections };
        r.ingest = Some(in_fresh_db!(|db| ingest::run(&db, &params)));
    }
    let poolers = cli.pooler.clone();
    let drain_params = |pooler| drain::Params { messages: cli.drain_messages, daemon: daemon.clone(), analyze: cli.analyze, pooler };
    let mut drains = Vec::new();
    if wants(Which::Drain) && cli.drain_runs > 0 {
        drain_round(&poolers, &drain_params, &mut drains).await;
    }
    if cli.scenario == Which::Peer || (cli.scenario == Which::All && !cli.no_peer) {
        // graphile-worker's enqueue gets ingest's counts and connections, for the ratios
        let params = peer::Params {
            jobs: cli.drain_messages,
            skip_default: cli.peer_skip_default,
            enqueue_jobs: cli.ingest_rows,
            enqueue_single_jobs: cli.ingest_single_rows,
            enqueue_connections: cli.connections,
        };
        r.peer = Some(interruptible(peer::run(&params)).await);
    }
    if wants(Which::Drain) {
        for _ in 1..cli.drain_runs {
            drain_round(&poolers, &drain_params, &mut drains).await;
        }
        r.drain_problems = drains.iter().filter_map(|(_, d)| d.as_ref().ok()).flat_map(|d| d.problems()).collect();
        if poolers.len() > 1 {
            r.drain_by_pooler = poolers
                .iter()
                .map(|&m| {
                    (
                        m,
                        drains
                            .iter()
                            .filter(|(p, _)| *p == m)
                            .filter_map(|(_, d)| d.as_ref().ok())
                            .map(|d| (d.msgs_per_s, d.cpu))
                            .collect(),
                    )
                })
                .collect();
        }
        let first: Vec<anyhow::Result<drain::Report>> = drains.into_iter().filter(|(p, _)| *p == poolers[0]).map(|(_, d)| d).collect();
        r.drain_rates = first.iter().filter_map(|d| d.as_ref().ok()).map(|d| d.msgs_per_s).collect();
        r.drain = kept(first);
        let params = drain_floor::Params { messages: cli.drain_messages, connections: 4, batch: cli.batch_size };
        r.drain_floor = Some(in_fresh_db!(|db| drain_floor::run(&db, &params)));
    }
    if wants(Which::Smtp) {
        let params = smtp::Params {
            messages: cli.messages,
            smtp_pool_size: cli.smtp_pool_size,
            smtp_concurrency: cli.smtp_concurrency,
            daemon: daemon.clone(),
            sink_quickack: cli.sink_quickack,
            analyze: cli.analyze,
        };
        r.smtp = Some(in_fresh_db!(|db| smtp::run(&db, &params)));
    }
    if wants(Which::Steady) {
        let steady_params = |rate| steady::Params {
            rate,
            seconds: cli.seconds,
            connections: cli.connections,
            provider: cli.steady_provider,
            smtp_pool_size: cli.smtp_pool_size,
            smtp_concurrency: cli.smtp_concurrency,
            daemon: daemon.clone(),
            sink_quickack: cli.sink_quickack,
        };
        for rate in cli.rate.map_or(cli.rates.clone(), |r| vec![r]) {
            let params = steady_params(rate);
            r.steady.push(in_fresh_db!(|db| steady::run(&db, &params)));
        }
        if cli.steady_search_budget > 0.0 {
            let params = steady_search::Params {
                start: cli.steady_search_start,
                budget: std::time::Duration::from_secs_f64(cli.steady_search_budget),
                plain_single_rows_per_s: ok(&r.ingest).map(|i| i.single.tables.plain.rows_per_s),
            };
            let done: Vec<&steady::Report> = r.steady.iter().filter_map(|s| s.as_ref().ok()).collect();
            let search = steady_search::run(&params, &done, |rate| {
                let params = steady_params(rate);
                async move { in_fresh_db!(|db| steady::run(&db, &params)) }
            })
            .await;
            r.steady_search = Some(search);
        }
    }
    if wants(Which::Inbound) {
        let params = inbound::Params { messages: cli.inbound_messages, threads: cli.inbound_threads, daemon: daemon.clone() };
        r.inbound = Some(in_fresh_db!(|db| inbound::run(&db, &params)));
    }
    if wants(Which::Console) {
        let params = console::Params {
            messages: cli.console_messages,
            tenants: cli.console_tenants,
            samples: cli.console_samples,
            streams: cli.console_streams,
            stream_seconds: cli.console_stream_seconds,
            daemon: daemon.clone(),
        };
        r.console = Some(in_fresh_db!(|db| console::run(&db, &params)));
    }
    if wants(Which::Retention) {
        let params = retention::Params {
            days: cli.retention_days,
            per_day: cli.retention_per_day,
            drain: cli.drain_messages,
            rounds: cli.retention_rounds,
            daemon: daemon.clone(),
        };
        r.retention = Some(in_fresh_db!(|db| retention::run(&db, &params)));
    }
    if cli.scenario == Which::InsertCost || (cli.scenario == Which::All && !cli.no_insert_cost) {
        r.insert_cost = Some(interruptible(insert_cost::run()).await);
    }

    let (drain, peer, smtp, ingest, inbound) = (ok(&r.drain), ok(&r.peer), ok(&r.smtp), ok(&r.ingest), ok(&r.inbound));
    let console = ok(&r.console);
    let steady: Vec<&steady::Report> = r.steady.iter().filter_map(|s| s.as_ref().ok()).collect();
    let insert_cost = ok(&r.insert_cost);
    let drain_floor = ok(&r.drain_floor);
    let targets = targets::evaluate(&targets::Inputs {
        drain,
        drain_floor,
        peer,
        steady: steady.clone(),
        ingest,
        smtp,
        inbound,
        console,
        insert_cost,
    });
    let errors = [r.ingest.as_ref().map(|x| x.is_err()), r.drain.as_ref().map(|x| x.is_err()), r.peer.as_ref().map(|x| x.is_err())]
        .into_iter()
        .chain([
            r.drain_floor.as_ref().map(|x| x.is_err()),
            r.smtp.as_ref().map(|x| x.is_err()),
            r.inbound.as_ref().map(|x| x.is_err()),
            r.console.as_ref().map(|x| x.is_err()),
            r.retention.as_ref().map(|x| x.is_err()),
            r.steady_search.as_ref().map(|x| x.is_err()),
            r.insert_cost.as_ref().map(|x| x.is_err()),
        ])
        .chain(r.steady.iter().map(|x| Some(x.is_err())))
        .flatten()
        .filter(|&e| e)
        .count();
    let mut problems = Vec::new();
    problems.extend(r.drain_problems.iter().cloned());
    problems.extend(smtp.map(|s| s.problems()).unwrap_or_default());
    problems.extend(steady.iter().flat_map(|s| s.problems()));
    problems.extend(ok(&r.steady_search).map(|x| x.problems.clone()).unwrap_or_default());
    problems.extend(inbound.map(|i| i.problems()).unwrap_or_default());
    problems.extend(ok(&r.retention).map(|x| x.problems.clone()).unwrap_or_default());

    if cli.json {
        let all = serde_json::json!({
            "machine": { "nproc": nproc, "server_version": server_version },
            "ingest": r.ingest.as_ref().map(as_json),
            "ingest_ratios": ingest.map(|i| i.ratios(peer.and_then(|p| p.enqueue.as_ref()))),
            "drain": r.drain.as_ref().map(as_json),
            "drain_runs_msgs_per_s": &r.drain_rates,
            "drain_floor": r.drain_floor.as_ref().map(as_json),
            "drain_runs_msgs_per_s_by_pooler": r.drain_by_pooler.iter().map(|(m, runs)| serde_json::json!({ "pooler": m, "msgs_per_s": runs.iter().map(|r| r.0).collect::<Vec<_>>(), "cpu": runs.iter().map(|r| r.1).collect::<Vec<_>>() })).collect::<Vec<_>>(),
            "memory": drain.map(|d| &d.memory),
            "peer": r.peer.as_ref().map(as_json),
            "peer_ratio": targets::peer_ratio(drain, peer),
            "smtp": r.smtp.as_ref().map(as_json),
            "steady": r.steady.iter().map(as_json).collect::<Vec<_>>(),
            "steady_search": r.steady_search.as_ref().map(as_json),
            "inbound": r.inbound.as_ref().map(as_json),
            "console": r.console.as_ref().map(as_json),
            "retention": r.retention.as_ref().map(as_json),
            "insert_cost": r.insert_cost.as_ref().map(as_json),
            "targets": targets,
            "problems": problems,
        });
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        println!("pgcourier bench: {nproc} CPUs, PostgreSQL {server_version}");
        print::or_fail("ingest", r.ingest.as_ref(), |i| print::ingest(i, peer.and_then(|p| p.enqueue.as_ref())));
        print::or_fail("drain", r.drain.as_ref(), |d| print::drain(d, &r.drain_rates));
        print::drain_by_pooler(&r.drain_by_pooler);
        print::or_fail("drain floor", r.drain_floor.as_ref(), |f| print::drain_floor(f, drain, peer));
        match &r.peer {
            Some(Ok(p)) => print::peer(p, drain),
            Some(Err(e)) => println!("\npeer: FAILED: {e:#}"),
            None => {}
        }
        print::or_fail("smtp", r.smtp.as_ref(), print::smtp);
        for s in &r.steady {
            print::or_fail("steady", Some(s), print::steady);
        }
        print::or_fail("steady search", r.steady_search.as_ref(), print::steady_search);
        print::or_fail("inbound", r.inbound.as_ref(), print::inbound);
        print::or_fail("console", r.console.as_ref(), print::console);
        print::or_fail("retention", r.retention.as_ref(), print::retention);
        print::or_fail("insert-cost", r.insert_cost.as_ref(), print::insert_cost);
        targets::print(&targets);
        for p in &problems {
            println!("\nPROBLEM: {p}");
        }
    }
    anyhow::ensure!(errors == 0, "{errors} scenario(s) failed");
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}

/// One drain run per `--pooler` mode, in the order given, each in a fresh database.
async fn drain_round(
    poolers: &[pgbouncer::Pooler],
    params: &impl Fn(pgbouncer::Pooler) -> drain::Params,
    drains: &mut Vec<(pgbouncer::Pooler, anyhow::Result<drain::Report>)>,
) {
    for &pooler in poolers {
        let params = params(pooler);
        drains.push((pooler, in_fresh_db!(|db| drain::run(&db, &params))));
    }
}

/// Of several runs of one scenario: the first that failed, else the fastest drain.
fn kept(runs: Vec<anyhow::Result<drain::Report>>) -> Option<anyhow::Result<drain::Report>> {
    let failed = runs.iter().position(|r| r.is_err());
    let mut runs = runs.into_iter();
    match failed {
        Some(i) => runs.nth(i),
        None => runs.max_by(|a, b| {
            let rate = |r: &anyhow::Result<drain::Report>| r.as_ref().map_or(0.0, |d| d.msgs_per_s);
            rate(a).total_cmp(&rate(b))
        }),
    }
}

/// The report of a scenario that ran and succeeded.
fn ok<T>(r: &Option<anyhow::Result<T>>) -> Option<&T> {
    r.as_ref().and_then(|r| r.as_ref().ok())
}

/// A scenario's report, or `{"error": "..."}`.
fn as_json<T: serde::Serialize>(r: &anyhow::Result<T>) -> serde_json::Value {
    match r {
        Ok(report) => serde_json::to_value(report).unwrap_or_default(),
        Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
    }
}

/// Set by the first SIGINT / SIGTERM: the scenarios after it do not start.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Run a scenario unless SIGINT or SIGTERM comes first (the caller then still drops the database).
async fn interruptible<T>(scenario: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    use std::sync::atomic::Ordering;
    anyhow::ensure!(!INTERRUPTED.load(Ordering::SeqCst), "not started: interrupted");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let why = tokio::select! {
        r = scenario => return r,
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term.recv() => "terminated",
    };
    INTERRUPTED.store(true, Ordering::SeqCst);
    anyhow::bail!(why)
}
