//! pgcourier: a Postgres-native messaging daemon.
//!
//! Applications and bridges write rows into `et_messages`; triggers (in `triggers/`) validate
//! them, thread them, queue outbound sends, audit every status change and `pg_notify` a
//! wake-up. This crate migrates that schema and runs the daemon that does the rest.
//!
//! # Layout
//!
//! - [`domain`]: pure rules (the lifecycle). No tokio, no SQL.
//! - [`db`]: every SQL statement the daemon runs: pool, migrations and triggers.

pub mod db;
pub mod domain;
