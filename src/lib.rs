//! pgcourier: a Postgres-native messaging daemon.
//!
//! Applications and bridges write rows into `et_messages`; triggers (in `triggers/`) validate
//! them, thread them, queue outbound sends, audit every status change and `pg_notify` a
//! wake-up. This crate migrates that schema and runs the daemon that does the rest:
//! insert → trigger → NOTIFY → claim → send → status.
//!
//! # Layout
//!
//! - [`domain`]: pure rules: lifecycle, retry policy, error classes and decisions, circuit breaker,
//!   inbound decision types. No tokio, no SQL.
//! - [`db`]: every SQL statement the daemon runs: pool, migrations, claims, outcomes, LISTEN,
//!   inbound, insights, webhooks, API queries, API keys. Statements only: the loops that run
//!   them live in the modules below.
//! - [`rows`]: the session and attachment rows that `db` reads and `channels` sends with.
//! - [`channels`]: provider adapters (`smtp`, `file`, `log`, `telegram_bot`, `whatsapp_cloud`,
//!   `twilio`, `http_bridge`); they classify failures, never decide.
//! - [`outbound`]: the dispatcher loop, outcome writer, rendering, breakers, rescuer.
//! - [`inbound`]: the inbound worker and its deciders (`rules`, `llm`).
//! - [`insights`]: the CRM insights worker and due follow-ups.
//! - [`webhooks`]: signed status webhook delivery to tenants.
//! - [`egress`]: the SSRF guard of every URL a tenant makes the daemon call.
//! - [`http`]: the axum surface: API v1, provider webhooks, health / ready / metrics.
//! - [`console`]: the operator console's pages on that surface (sign-in, overview, messages,
//!   approvals, dead letters, the live stream); it runs the API's own queries and functions.
//! - [`lease`]: the leases a daemon holds on claimed work, renewed in batches until recorded.
//! - [`wakeup`]: the LISTEN connection that turns NOTIFY into wake-ups for the workers.
//! - [`leader`]: which one daemon runs the periodic work (a session-level advisory lock).
//! - [`statistics`]: the statistics keeper (ANALYZE of the hot tables when autovacuum is off).
//! - [`maintenance`]: the leader's maintenance pass: history past each tenant's retention periods
//!   deleted in throttled batches, the audit trail's daily partitions, the console's upkeep.
//! - [`every`]: the pass timer of the periodic workers.
//! - [`daemon`]: wires the workers together under one shutdown token.
//! - [`cluster`]: the private PostgreSQL that `pgcourier up` starts.
//! - [`config`], [`telemetry`], [`status`], [`show`]: environment configuration, logging and
//!   metrics, the `pgcourier status` report, one message's `pgcourier show` report.
//!
//! # The workers
//!
//! Four workers claim rows and record outcomes: the dispatcher ([`outbound`]), the inbound
//! worker, the insights worker and the webhook worker. What they share is shared: the leases and
//! their batched renewal ([`lease`]), the wake-ups ([`wakeup`]), the pass timer ([`every`]), the
//! database errors ([`db::DbError`]) and one shutdown token. Their loops are not one generic
//! loop, because they differ where it matters: the dispatcher bounds sends per session and in
//! total, keeps a busy mark instead of NOTIFYs and writes outcomes from a separate task; the
//! inbound worker prefetches the next claim while it decides a batch set-based; the insights
//! worker works one batch at a time; the webhook worker has no renewal (a request is shorter than
//! its lease). A loop generic over those choices would take a parameter for each and read longer
//! than any one of them, so each worker keeps its own short loop.

pub mod channels;
pub mod cluster;
pub mod config;
pub mod console;
pub mod daemon;
pub mod db;
pub mod domain;
pub mod egress;
pub mod every;
pub mod http;
pub mod inbound;
pub mod insights;
pub mod leader;
pub mod lease;
pub mod maintenance;
pub mod outbound;
pub mod rows;
pub mod show;
pub mod statistics;
pub mod status;
pub mod telemetry;
pub mod wakeup;
pub mod webhooks;
