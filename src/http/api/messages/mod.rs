//! Reading messages (`GET /v1/messages/{id}`, `GET /v1/messages`) and acting on them through
//! the SQL operator functions (`approve`, `reject`, `retry`, `cancel`, a filtered bulk retry,
//! `resend` a corrected copy).
//!
//! - `list`: the filtered, paged list and its parameters
//! - `actions`: approve / reject / retry / cancel one message, and the bulk retry
//! - `resend`: a corrected copy of a message that did not go out

mod actions;
mod list;
mod resend;

pub use actions::*;
pub use list::*;
pub use resend::*;

use super::views::{ErrorBody, MessageView};
use crate::db::api::{self as db, MessageRef};
use crate::db::apikeys::Scope;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::AppState;
use axum::extract::{Path, State};
use axum::Json;

/// The caller's message `id`, or a 404 (and, when it is another tenant's, a security event).
async fn resolve(state: &AppState, caller: &Caller, id: &str) -> Result<i64, ApiError> {
    let Some(m) = MessageRef::parse(id) else {
        return Err(ApiError::not_found("message"));
    };
    let client = state.pool.get().await?;
    if let Some(found) = db::message_id(&client, &caller.0.tenant_id, m).await.map_err(ApiError::internal)? {
        return Ok(found);
    }
    not_found(state, caller, &client, m, id).await
}

async fn not_found<T>(
    state: &AppState,
    caller: &Caller,
    client: &deadpool_postgres::Client,
    m: MessageRef,
    id: &str,
) -> Result<T, ApiError> {
    if db::message_elsewhere(client, &caller.0.tenant_id, m).await.map_err(ApiError::internal)? {
        caller.denied(state, "cross_tenant_access", serde_json::json!({ "resource": "message", "id": id })).await;
    }
    Err(ApiError::not_found("message"))
}

/// One message of the caller's tenant as the detailed view.
async fn detailed(client: &deadpool_postgres::Client, tenant: &str, id: i64) -> Result<MessageView, ApiError> {
    let row = db::find_message(client, tenant, MessageRef::Id(id)).await.map_err(ApiError::internal)?;
    Ok(MessageView::detailed(row.ok_or_else(|| ApiError::not_found("message"))?))
}

/// One message with its provider, the content as rendered, its events (each with the detail
/// its writer recorded: errors, the provider's answer, the actor's reason) and attachments.
#[utoipa::path(
    get,
    path = "/v1/messages/{id}",
    tag = "messages",
    params(("id" = String, Path, description = "The message's public uuid (messageId) or bigint id")),
    responses(
        (status = 200, description = "The message", body = MessageView),
        (status = 401, description = "No API key, or an unknown, expired or revoked one", body = ErrorBody),
        (status = 403, description = "The key lacks the read scope", body = ErrorBody),
        (status = 404, description = "No such message for this tenant", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_message(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<MessageView>, ApiError> {
    caller.require(&state, Scope::Read).await?;
    let Some(m) = MessageRef::parse(&id) else {
        return Err(ApiError::not_found("message"));
    };
    let client = state.pool.get().await?;
    let tenant = &caller.0.tenant_id;
    let Some(row) = db::find_message(&client, tenant, m).await.map_err(ApiError::internal)? else {
        return not_found(&state, &caller, &client, m, &id).await;
    };
    let events = db::events(&client, tenant, row.id).await.map_err(ApiError::internal)?;
    let files = db::attachments(&client, tenant, row.id).await.map_err(ApiError::internal)?;
    let mut view = MessageView::detailed(row);
    view.events = Some(events.into_iter().map(Into::into).collect());
    view.attachments = Some(files.into_iter().map(Into::into).collect());
    Ok(Json(view))
}
