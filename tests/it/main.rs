//! Integration tests against a real PostgreSQL: one binary, a fresh database per test.
//! Shared helpers are in [`support`].

mod ch_http_bridge;
mod ch_telegram;
mod ch_twilio;
mod ch_whatsapp_cloud;
mod app;
mod attachments;
mod cli;
mod config_cli;
mod fixtures;
mod http_api;
mod inbound;
mod insights;
mod keys;
mod leases;
mod lifecycle;
mod limits;
mod llm;
mod messages;
mod mock_http;
mod ops;
mod process;
mod provider_webhooks;
mod daemon;
mod fairness;
mod door;
mod address_corpus;
mod refusals;
mod smtp_sink;
mod support;
mod webhooks;
