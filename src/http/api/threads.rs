//! Threads: `GET /v1/threads/{id}` (the thread, its newest messages, its insight) and
//! `POST /v1/threads/{id}/handoff` (et_handoff: `ai` or `human` handling).

use super::input::{self, JsonBody};
use super::views::{ThreadDetail, ThreadView};
use crate::db::api as db;
use crate::db::apikeys::Scope;
use crate::domain::vocab::Handling;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::responses::{Authenticated, JsonBodyErrors, NotFound};
use crate::http::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

/// How many of a thread's messages a read returns (the newest ones).
pub const THREAD_MESSAGES: i64 = 100;

/// The caller's thread `id`, or a 404 (and, when it is another tenant's, a security event).
async fn resolve(state: &AppState, caller: &Caller, id: &str) -> Result<i64, ApiError> {
    let Ok(thread) = id.parse::<i64>() else {
        return Err(ApiError::not_found("thread"));
    };
    let client = state.pool.get().await?;
    if db::find_thread(&client, &caller.0.tenant_id, thread).await.map_err(ApiError::internal)?.is_some() {
        return Ok(thread);
    }
    let elsewhere = db::thread_elsewhere(&client, &caller.0.tenant_id, thread).await.map_err(ApiError::internal)?;
    drop(client);
    if elsewhere {
        caller.denied(state, "cross_tenant_access", serde_json::json!({ "resource": "thread", "id": id })).await;
    }
    Err(ApiError::not_found("thread"))
}

/// A thread with its newest 100 messages (oldest first) and its insight.
#[utoipa::path(
    get,
    path = "/v1/threads/{id}",
    tag = "threads",
    params(("id" = i64, Path, description = "The thread id")),
    responses((status = 200, description = "The thread", body = ThreadDetail), Authenticated, NotFound),
    security(("api_key" = []))
)]
pub async fn get_thread(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<ThreadDetail>, ApiError> {
    caller.require(&state, Scope::Read).await?;
    let thread = resolve(&state, &caller, &id).await?;
    let client = state.pool.get().await?;
    let tenant = &caller.0.tenant_id;
    let row = db::find_thread(&client, tenant, thread).await.map_err(ApiError::internal)?.ok_or_else(|| ApiError::not_found("thread"))?;
    let messages = db::thread_messages(&client, tenant, thread, THREAD_MESSAGES).await.map_err(ApiError::internal)?;
    let insight = db::thread_insight(&client, tenant, thread).await.map_err(ApiError::internal)?;
    Ok(Json(ThreadDetail {
        thread: row.into(),
        messages: messages.into_iter().map(Into::into).collect(),
        insight: insight.map(Into::into),
    }))
}

/// Who handles the thread from now on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffRequest {
    /// `ai` (may be auto-answered) or `human` (never auto-answered).
    pub handling: Handling,
}

/// Hand a thread to a human, or back to the AI (et_handoff).
#[utoipa::path(
    post,
    path = "/v1/threads/{id}/handoff",
    tag = "threads",
    params(("id" = i64, Path, description = "The thread id")),
    request_body = HandoffRequest,
    responses((status = 200, description = "The thread after the change", body = ThreadView), Authenticated, JsonBodyErrors, NotFound),
    security(("api_key" = []))
)]
pub async fn handoff(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<ThreadView>, ApiError> {
    caller.require(&state, Scope::Admin).await?;
    let req: HandoffRequest = input::json(body?.0, &[])?;
    let thread = resolve(&state, &caller, &id).await?;
    let client = state.pool.get().await?;
    let tenant = &caller.0.tenant_id;
    let actor = format!("apikey:{}", caller.0.prefix);
    db::handoff(&client, tenant, thread, req.handling, &actor)
        .await
        .map_err(|e| input::db_error(e, &[("handling", "handling")]))?
        .ok_or_else(|| ApiError::not_found("thread"))?;
    let row = db::find_thread(&client, tenant, thread).await.map_err(ApiError::internal)?.ok_or_else(|| ApiError::not_found("thread"))?;
    Ok(Json(row.into()))
}
