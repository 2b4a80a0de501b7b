//! pgcourier: a Postgres-native messaging daemon.
//!
//! Applications and bridges write rows into `et_messages`; triggers (in `triggers/`) validate
//! them, thread them, queue outbound sends, audit every status change and `pg_notify` a
//! wake-up. This crate migrates that schema and runs the daemon that does the rest:
//! insert → trigger → NOTIFY → claim → send → status.
//!
//! # Layout
//!
//! - [`domain`]: pure rules: the lifecycle, retry policy, error classes and decisions.
//! - [`db`]: every SQL statement the daemon runs: pool, migrations, claims, outcomes, LISTEN.
//! - [`channels`]: provider adapters (`smtp`, `file`, `log`); they classify, never decide.
//! - [`outbound`]: the dispatcher loop, outcome writer, rendering, rescuer.
//! - [`daemon`]: wires the workers together under one shutdown token.
//! - [`cluster`]: the private PostgreSQL that `pgcourier up` starts.
//! - [`config`], [`telemetry`]: environment configuration and logging.

pub mod channels;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod db;
pub mod domain;
pub mod http;
pub mod inbound;
pub mod insights;
pub mod outbound;
pub mod status;
pub mod telemetry;
pub mod webhooks;
