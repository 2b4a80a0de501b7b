//! Integration tests against a real PostgreSQL: one binary, a fresh database per test.
//! Shared helpers are in [`support`].

mod address_corpus;
mod app;
mod attachments;
mod ch_http_bridge;
mod ch_telegram;
mod ch_twilio;
mod ch_whatsapp_cloud;
mod cli;
mod config_cli;
mod daemon;
mod db_errors;
mod door;
mod fairness;
mod fixtures;
mod http_api;
mod inbound;
mod insights;
mod keys;
mod layout;
mod leases;
mod lifecycle;
mod limits;
mod llm;
mod messages;
mod mock_http;
mod ops;
mod payload_limits;
mod process;
mod provider_webhooks;
mod refusals;
mod schema;
mod smtp_sink;
mod support;
mod templates;
mod webhooks;
