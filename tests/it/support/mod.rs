//! What the test modules share: a fresh database per test ([`db`], cloned from a migrated
//! template by the `pgcourier-testdb` crate, which the benchmark uses too) and an in-process
//! daemon with the rows most tests start from ([`daemon`]). Test functions live in their own
//! modules, not here.

pub mod daemon;
pub mod db;

pub use daemon::{config, send, send_many, smtp_session, spawn, until, Running};
pub use db::TestDb;
