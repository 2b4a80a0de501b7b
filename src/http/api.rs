//! API v1: send, read and act on messages, read threads and hand them over, as JSON over HTTP
//! with `x-api-key` auth (see [`super::auth`]). A thin layer: it writes the rows SQL users write
//! and calls the SQL operator functions; the triggers validate and refuse, and their refusals
//! come back as 4xx naming the request field. `GET /openapi.json` describes it all.
//!
//! - [`send`]: `POST /v1/messages` (idempotent, attachments in the same transaction)
//! - [`messages`]: `GET /v1/messages/{id}`, `GET /v1/messages`, `POST …/{approve|reject|retry|cancel|resend}`,
//!   `POST /v1/messages/retry` (bulk)
//! - [`threads`]: `GET /v1/threads/{id}`, `POST /v1/threads/{id}/handoff`
//! - [`dead_letters`]: `GET /v1/dead-letters`
//! - [`tenants`]: `/v1/tenants` and their sessions, for the platform operator
//! - [`keys`]: `/v1/tenants/{id}/keys`: create, rotate, revoke (platform key or the tenant's admin key)
//! - `input`: body / parameter parsing and the column → field map of database refusals
//! - [`views`]: the response shapes
//! - `doc`: the OpenAPI document

pub mod dead_letters;
mod doc;
pub(crate) mod input;
pub mod keys;
mod limits;
pub mod messages;
pub mod send;
pub mod tenants;
pub mod threads;
pub mod views;

use super::AppState;
use axum::routing::{delete, get, post};
use axum::{Json, Router};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/messages", post(send::send_message).get(messages::list_messages))
        .route("/v1/messages/retry", post(messages::retry_failed))
        .route("/v1/messages/{id}", get(messages::get_message))
        .route("/v1/messages/{id}/approve", post(messages::approve))
        .route("/v1/messages/{id}/reject", post(messages::reject))
        .route("/v1/messages/{id}/retry", post(messages::retry))
        .route("/v1/messages/{id}/cancel", post(messages::cancel))
        .route("/v1/messages/{id}/resend", post(messages::resend))
        .route("/v1/dead-letters", get(dead_letters::list_dead_letters))
        .route("/v1/threads/{id}", get(threads::get_thread))
        .route("/v1/threads/{id}/handoff", post(threads::handoff))
        .route("/v1/tenants", post(tenants::create_tenant).get(tenants::list_tenants))
        .route("/v1/tenants/{id}", get(tenants::get_tenant).patch(tenants::update_tenant))
        .route("/v1/tenants/{id}/deactivate", post(tenants::deactivate_tenant))
        .route("/v1/tenants/{id}/activate", post(tenants::activate_tenant))
        .route("/v1/tenants/{id}/sessions", post(tenants::create_session).get(tenants::list_sessions))
        .route("/v1/tenants/{id}/sessions/{sid}", get(tenants::get_session).patch(tenants::update_session).delete(tenants::disable_session))
        .route("/v1/tenants/{id}/keys", post(keys::create_key).get(keys::list_keys))
        .route("/v1/tenants/{id}/keys/{prefix}/rotate", post(keys::rotate_key))
        .route("/v1/tenants/{id}/keys/{prefix}", delete(keys::revoke_key))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
}

/// The OpenAPI 3 document of every route (`doc`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    doc::openapi()
}
