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
mod door;
mod fairness;
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
mod refusals;
mod smtp_sink;
mod support;
mod vocabulary;
mod webhooks;
