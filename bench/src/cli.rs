//! The command line: every scenario's sizes and the daemon's knobs (see `main` for what each
//! scenario does).

use crate::{pgbouncer, steady};
use clap::{Parser, ValueEnum};

#[derive(Parser)]
#[command(name = "bench", about = "Benchmark the pgcourier daemon against a real PostgreSQL")]
pub struct Cli {
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value_t = Which::All)]
    pub scenario: Which,
    /// drain: outbound rows in the backlog (also the peer's job count).
    #[arg(long, default_value_t = 100_000)]
    pub drain_messages: usize,
    /// drain: how many times the drain runs, each in a fresh database; the faster run counts, as
    /// graphile-worker's faster of its two tuned runs does. In `all` the runs after the first come
    /// after the peer, so the two sides' runs bracket each other in time.
    #[arg(long, default_value_t = 2)]
    pub drain_runs: usize,
    /// drain: how the daemon's pool reaches the database, one or more (comma-separated); with
    /// several, each drain run runs every mode in turn, and the first mode's runs count.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [pgbouncer::Pooler::Direct])]
    pub pooler: Vec<pgbouncer::Pooler>,
    /// smtp: messages in the backlog.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// steady: the rates to run (rows per second, all connections together), each in a fresh
    /// database with a fresh daemon; then the search for the highest rate sustained.
    #[arg(long, value_delimiter = ',', default_values_t = [1000.0])]
    pub rates: Vec<f64>,
    /// steady: one rate instead of --rates.
    #[arg(long)]
    pub rate: Option<f64>,
    /// steady: how long the load runs at each rate.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// steady: the time budget (seconds) of the search for the highest rate sustained (p99
    /// commit → send ≤ 100 ms, ≥ 95% of the offered rate); 0 skips the search.
    #[arg(long, default_value_t = 300.0)]
    pub steady_search_budget: f64,
    /// steady: the search's first offered rate (rows/s); it rises ×1.5 a probe, then bisects.
    #[arg(long, default_value_t = 1000.0)]
    pub steady_search_start: f64,
    /// steady and ingest (and the peer's add_job): inserting connections.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// steady: where messages go (log: latency to sent_at; smtp: to the sink's accept).
    #[arg(long, value_enum, default_value_t = steady::Provider::Log)]
    pub steady_provider: steady::Provider,
    /// ingest: rows per bulk insert (also the peer's add_jobs count).
    #[arg(long, default_value_t = 100_000)]
    pub ingest_rows: usize,
    /// ingest: rows per single-row run, all connections together (also the peer's add_job count).
    #[arg(long, default_value_t = 20_000)]
    pub ingest_single_rows: usize,
    /// inbound: inbound rows in the backlog.
    #[arg(long, default_value_t = 50_000)]
    pub inbound_messages: usize,
    /// inbound: distinct senders, hence threads.
    #[arg(long, default_value_t = 5_000)]
    pub inbound_threads: usize,
    /// console: messages over all tenants.
    #[arg(long, default_value_t = 1_000_000)]
    pub console_messages: usize,
    /// console: tenants, each with its own key and session.
    #[arg(long, default_value_t = 20)]
    pub console_tenants: usize,
    /// console: requests per page (rotating over the tenants).
    #[arg(long, default_value_t = 40)]
    pub console_samples: usize,
    /// console: open live streams while their cost is measured.
    #[arg(long, default_value_t = 10)]
    pub console_streams: usize,
    /// console: how long each live-stream measurement window lasts.
    #[arg(long, default_value_t = 20.0)]
    pub console_stream_seconds: f64,
    /// retention: days of history before the drains (the tenant keeps 7).
    #[arg(long, default_value_t = 14)]
    pub retention_days: usize,
    /// retention: history messages per day (10M over 14 days: 714286).
    #[arg(long, default_value_t = 25_000)]
    pub retention_per_day: usize,
    /// retention: rounds of a drain with nothing to prune and one while pruning, alternating.
    #[arg(long, default_value_t = 3)]
    pub retention_rounds: usize,
    /// Skip the graphile-worker comparison (in `all`).
    #[arg(long)]
    pub no_peer: bool,
    /// peer: skip graphile-worker's default-settings run (only the tuned runs count as best).
    #[arg(long)]
    pub peer_skip_default: bool,
    /// The SMTP session's `config.pool_size`: at most this many connections; sends beyond it
    /// wait for one. (128 with the session concurrency 128 was among the fastest tried.)
    #[arg(long, default_value_t = 128)]
    pub smtp_pool_size: usize,
    /// The SMTP session's `config.concurrency` (sends in progress at once).
    #[arg(long, default_value_t = 128)]
    pub smtp_concurrency: usize,
    /// PGCOURIER_BATCH_SIZE (the daemon's default).
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// PGCOURIER_MAX_IN_FLIGHT (the daemon's default).
    #[arg(long, default_value_t = 1000)]
    pub max_in_flight: usize,
    /// PGCOURIER_POOL_SIZE (the daemon's database connections).
    #[arg(long, default_value_t = 8)]
    pub db_pool_size: usize,
    /// drain, smtp: ANALYZE after the bulk insert, before the daemon starts.
    #[arg(long)]
    pub analyze: bool,
    /// Diagnostic: the sink acknowledges at once (TCP_QUICKACK) instead of with the kernel's
    /// delayed ACK, which a client writing with Nagle's algorithm on otherwise waits for.
    #[arg(long)]
    pub sink_quickack: bool,
    /// The daemon process installs its log subscriber (RUST_LOG, default info) on stderr.
    #[arg(long)]
    pub log: bool,
    /// Skip the instructions-per-insert count (in `all`).
    #[arg(long)]
    pub no_insert_cost: bool,
    /// Internal: run only the daemon (the process the scenarios start).
    #[arg(long = "daemon-child", hide = true)]
    pub daemon_child: bool,
    /// Internal: migrate DATABASE_URL and exit (for bench/profile/one-row-instructions.sh).
    #[arg(long = "migrate-child", hide = true)]
    pub migrate_child: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    Drain,
    Steady,
    Ingest,
    Smtp,
    Inbound,
    Console,
    Retention,
    Peer,
    /// Instructions per one-row insert (callgrind, a private cluster).
    InsertCost,
    All,
}
