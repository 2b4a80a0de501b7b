//! approve / reject / retry / cancel one message, and retry every failed message that matches
//! a filter (`POST /v1/messages/retry`), each through its SQL function (triggers/040).

use super::super::input::{self, OptionalJsonBody};
use super::super::views::{BulkRetryResponse, ErrorBody, MessageView};
use super::list::filter;
use super::{detailed, resolve};
use crate::db::api::{self as db, Action, RetryFilter};
use crate::db::apikeys::Scope;
use crate::domain::vocab::{Channel, Status};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

/// Optional body of an action: why (recorded on the audit event of a rejection).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub reason: Option<String>,
}

/// A refused operator function: its refusal of the state is 409 with its message, an unknown
/// message 404, anything else as any database error.
pub(super) fn refused(e: tokio_postgres::Error) -> ApiError {
    match e.as_db_error().map(|d| (d.code().code(), d.message().to_owned())) {
        Some(("23514", message)) => ApiError::conflict(message),
        Some(("P0002", _)) => ApiError::not_found("message"),
        _ => ApiError::from_db(e),
    }
}

async fn act(
    state: AppState,
    caller: Caller,
    id: String,
    action: Action,
    body: Result<OptionalJsonBody, ApiError>,
) -> Result<Json<MessageView>, ApiError> {
    caller.require(&state, action.scope()).await?;
    let req: ActionRequest = input::json(body?.0, &[])?;
    let message = resolve(&state, &caller, &id).await?;
    let client = state.pool.get().await?;
    let tenant = &caller.0.tenant_id;
    let actor = format!("apikey:{}", caller.0.prefix);
    match db::act(&client, tenant, message, action, &actor, req.reason.as_deref()).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(ApiError::not_found("message")),
        Err(e) => return Err(refused(e)),
    }
    Ok(Json(detailed(&client, tenant, message).await?))
}

macro_rules! action {
    ($name:ident, $action:expr, $verb:literal, $doc:literal, $scope:literal) => {
        #[doc = $doc]
        #[utoipa::path(
            post,
            path = concat!("/v1/messages/{id}/", $verb),
            tag = "messages",
            params(("id" = String, Path, description = "The message's public uuid or bigint id")),
            request_body(content = Option<ActionRequest>, description = "Optional; `reason` is recorded on a rejection"),
            responses(
                (status = 200, description = "The message after the change", body = MessageView),
                (status = 400, description = "The body is not a JSON object, or a field is invalid (named in error.field)", body = ErrorBody),
                (status = 401, description = "No API key, or an unknown, expired or revoked one", body = ErrorBody),
                (status = 403, description = concat!("The key lacks the ", $scope, " scope"), body = ErrorBody),
                (status = 404, description = "No such message for this tenant", body = ErrorBody),
                (status = 409, description = "The message is not in a state that allows this", body = ErrorBody),
                (status = 413, description = "The body is larger than PGCOURIER_HTTP_MAX_BODY", body = ErrorBody),
                (status = 415, description = "A body that is not declared JSON (content-type: application/json)", body = ErrorBody),
            ),
            security(("api_key" = []))
        )]
        pub async fn $name(
            State(state): State<AppState>,
            caller: Caller,
            Path(id): Path<String>,
            body: Result<OptionalJsonBody, ApiError>,
        ) -> Result<Json<MessageView>, ApiError> {
            act(state, caller, id, $action, body).await
        }
    };
}

action!(approve, Action::Approve, "approve", "Approve a pending_approval message (et_approve).", "admin");
action!(reject, Action::Reject, "reject", "Reject a pending_approval message (et_reject).", "admin");
action!(
    retry,
    Action::Retry,
    "retry",
    "Queue a failed message again (et_retry): its attempt count starts again at 0 and the next send renders the stored subject, bodies and variables again.",
    "send"
);
action!(cancel, Action::Cancel, "cancel", "Cancel a pending_approval or queued message (et_cancel).", "send");

pub const DEFAULT_BULK_LIMIT: i32 = 10_000;
pub const MAX_BULK_LIMIT: i32 = 100_000;

/// One value or several (`"a"`, `["a", "b"]`; a string may also hold a comma list).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Which failed messages to retry: the filters of `GET /v1/messages`, with the same meaning
/// (`to` shaped like a date ends the range, otherwise it is a recipient). No filter: every
/// failed message of the tenant, up to `limit`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct BulkRetryRequest {
    /// Only `failed` (the default): the one status a retry applies to.
    status: Option<OneOrMany>,
    channel: Option<Channel>,
    /// A recipient address, or the (inclusive) end of the date range when shaped like a date.
    to: Option<String>,
    recipient: Option<String>,
    /// Created at or after (RFC 3339 or YYYY-MM-DD).
    from: Option<String>,
    /// Created before (exclusive).
    until: Option<String>,
    category: Option<String>,
    /// Every one of these in `metadata.tags`.
    tags: Option<OneOrMany>,
    /// At most this many (1 to 100,000, default 10,000), oldest first.
    #[schema(minimum = 1, maximum = 100000)]
    limit: Option<i64>,
}

const BULK_HINTS: &[(&str, &str)] = &[
    ("status", "must be \"failed\" or [\"failed\"]"),
    ("tags", "must be a tag or an array of tags"),
    ("limit", "must be a number from 1 to 100000"),
];

/// The body as the list's `(name, value)` parameters, so both parse the same way.
fn as_params(body: serde_json::Map<String, Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in body {
        match v {
            Value::Null => {}
            Value::String(s) => out.push((k, s)),
            Value::Array(items) => out.extend(items.into_iter().map(|i| (k.clone(), i.as_str().map(str::to_owned).unwrap_or_default()))),
            other => out.push((k, other.to_string())),
        }
    }
    out
}

/// Retry every failed message of the tenant that matches the filter (`et_retry_failed`, one
/// transaction, in batches of 1,000): each is queued again with its attempt count reset.
#[utoipa::path(
    post,
    path = "/v1/messages/retry",
    tag = "messages",
    request_body(content = Option<BulkRetryRequest>, description = "The filter; none: every failed message, up to limit"),
    responses(
        (status = 200, description = "How many were queued again", body = BulkRetryResponse),
        (status = 400, description = "A field is invalid or unknown (named in error.field)", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown, expired or revoked one", body = ErrorBody),
        (status = 403, description = "The key lacks the admin scope", body = ErrorBody),
        (status = 413, description = "The body is larger than PGCOURIER_HTTP_MAX_BODY", body = ErrorBody),
        (status = 415, description = "A body that is not declared JSON (content-type: application/json)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn retry_failed(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<OptionalJsonBody, ApiError>,
) -> Result<Json<BulkRetryResponse>, ApiError> {
    caller.require(&state, Scope::Admin).await?;
    let body = body?.0;
    let _: BulkRetryRequest = input::json(body.clone(), BULK_HINTS)?;
    let mut params = as_params(body);
    let limit = match params.iter().position(|(k, _)| k == "limit") {
        Some(i) => {
            let (_, v) = params.remove(i);
            v.parse().ok().filter(|l| (1..=MAX_BULK_LIMIT).contains(l)).ok_or_else(|| ApiError::field("limit", BULK_HINTS[2].1))?
        }
        None => DEFAULT_BULK_LIMIT,
    };
    let f = filter(params, &["status", "channel", "to", "recipient", "from", "until", "category", "tags"])?;
    if f.statuses.iter().any(|s| *s != Status::Failed) {
        return Err(ApiError::field("status", "only failed messages are retried (leave status out, or give \"failed\")"));
    }
    let retry =
        RetryFilter { recipient: f.recipient, from: f.from, until: f.until, category: f.category, tags: f.tags, channel: f.channel, limit };
    let client = state.pool.get().await?;
    let actor = format!("apikey:{}", caller.0.prefix);
    let queued = db::retry_failed(&client, &caller.0.tenant_id, &actor, &retry).await.map_err(ApiError::from_db)?;
    Ok(Json(BulkRetryResponse { queued, limit_reached: queued == limit }))
}
