//! Integration tests against a real PostgreSQL: one binary, a fresh database per test.

mod harness;
mod lifecycle;
mod messages;
mod process;
mod daemon;
mod refusals;
mod smtp_sink;
