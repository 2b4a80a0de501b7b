//! Integration tests against a real PostgreSQL: one binary, a fresh database per test.

mod ch_http_bridge;
mod ch_telegram;
mod ch_twilio;
mod ch_whatsapp_cloud;
mod app;
mod attachments;
mod fixtures;
mod harness;
mod http_api;
mod inbound;
mod insights;
mod keys;
mod lifecycle;
mod limits;
mod llm;
mod messages;
mod mock_http;
mod ops;
mod process;
mod provider_webhooks;
mod daemon;
mod door;
mod address_corpus;
mod refusals;
mod smtp_sink;
mod webhooks;
