//! The operator console: server-rendered pages at `/console` on the daemon's HTTP port (and `/`
//! redirecting there), on unless `PGCOURIER_CONSOLE=off`.
//!
//! Pages are maud templates (every value escaped), read without JavaScript; htmx (vendored,
//! embedded) refreshes the parts that change, driven by one Server-Sent Events stream per open
//! console ([`live`]) that costs the database one small query a second. Actions are plain
//! forms that post, run the same SQL function the API runs as `console:<key prefix>`, and
//! redirect back with a notice: there is no second copy of a lifecycle rule or of a scope check.
//!
//! # Layout
//!
//! - [`session`]: sign-in with an API key, server-side sessions, CSRF and same-origin checks
//! - [`page`]: the page frame, error pages and the small drawing helpers
//! - [`assets`]: htmx, its SSE extension and the stylesheet, under content-hashed names
//! - [`overview`]: counts by state per tenant and session, the last hour's sends, queue health
//! - [`messages`]: the message list with its search and filters
//! - [`message`]: one message with its timeline, preview, attachments and actions
//! - [`approvals`]: the pending-approval inbox
//! - [`dead_letters`]: the dead-letter queue, retried one at a time, by selection, or all that
//!   match the filter as a job
//! - [`conversations`]: threads newest activity first, with handling and CRM insight
//! - [`conversation`]: one thread as a chat, its insight; take over, hand back, reply as a human
//! - [`suppressions`]: the suppression list; add and remove an address
//! - [`sessions`]: channel sessions with rate limits and breakers; pause and resume
//! - [`webhooks`]: webhook endpoints (no secrets) and their newest deliveries
//! - [`keys`]: the tenant's API keys; create (shown once) and revoke
//! - [`live`]: the event stream

// A handler answers a refusal with the page that says why, returned early as `Err(Response)`:
// the response is the error, and boxing it would only add noise at every call.
#![allow(clippy::result_large_err)]

pub mod approvals;
pub mod assets;
pub mod conversation;
pub mod conversations;
pub mod dead_letters;
pub mod keys;
pub mod live;
pub mod message;
pub mod messages;
pub mod overview;
pub mod page;
pub mod session;
pub mod sessions;
pub mod suppressions;
pub mod webhooks;

use crate::http::AppState;
use axum::response::Redirect;
use axum::routing::{get, post};
use axum::Router;

/// Statements of a console request give up after this (the console's pool sets it for every
/// statement): a page that asks too much is an error page, never a load on the database that
/// outlives the request.
pub const STATEMENT_TIMEOUT: &str = "5s";

/// Connections of the console's pool.
pub const POOL_SIZE: usize = 4;

/// The console's routes, served with `state` (whose pool is the console's own, with
/// [`STATEMENT_TIMEOUT`]); the daemon merges them into [`crate::http::router`].
pub fn routes<S>(state: AppState) -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(overview::show))
        .route("/console/sign-in", get(session::sign_in_form).post(session::sign_in))
        .route("/console/sign-out", post(session::sign_out))
        .route("/console/tenant", post(session::switch_tenant))
        .route("/console/assets/{file}", get(assets::serve))
        .route("/console/live", get(live::stream))
        .route("/console/messages", get(messages::list))
        .route("/console/messages/{id}", get(message::show))
        .route("/console/messages/{id}/preview", get(message::preview))
        .route("/console/messages/{id}/attachments/{attachment}", get(message::attachment))
        .route("/console/messages/{id}/act", post(message::act))
        .route("/console/messages/{id}/resend", post(message::resend))
        .route("/console/approvals", get(approvals::list).post(approvals::decide))
        .route("/console/dead-letters", get(dead_letters::list))
        .route("/console/dead-letters/retry", post(dead_letters::retry))
        .route("/console/jobs/{id}", get(dead_letters::job))
        .route("/console/conversations", get(conversations::list))
        .route("/console/conversations/{id}", get(conversation::show))
        .route("/console/conversations/{id}/handling", post(conversation::handoff))
        .route("/console/conversations/{id}/reply", post(conversation::reply))
        .route("/console/suppressions", get(suppressions::list).post(suppressions::add))
        .route("/console/suppressions/remove", post(suppressions::remove))
        .route("/console/sessions", get(sessions::list))
        .route("/console/sessions/{id}/status", post(sessions::set_status))
        .route("/console/webhooks", get(webhooks::list))
        .route("/console/webhooks/{id}", get(webhooks::show))
        .route("/console/webhooks/{id}/deliveries/{delivery}/redeliver", post(webhooks::redeliver))
        .route("/console/keys", get(keys::list).post(keys::create))
        .route("/console/keys/{prefix}/revoke", post(keys::revoke))
        .layer(axum::middleware::from_fn(session::same_origin))
        .with_state(state)
}
