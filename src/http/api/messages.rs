//! Reading messages (`GET /v1/messages/{id}`, `GET /v1/messages`) and acting on them
//! (`approve`, `reject`, `retry`, `cancel`, through the SQL operator functions).

use super::input::{self, OptionalJsonBody, QueryParams};
use super::views::{ErrorBody, MessagePage, MessageView};
use crate::db::api::{self as db, Action, ListFilter, MessageRef};
use crate::db::apikeys::Scope;
use crate::domain::vocab::{self, Channel, Direction, Status, UnknownValue};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::AppState;
use axum::extract::{Path, State};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

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

/// One message with its events and attachments.
#[utoipa::path(
    get,
    path = "/v1/messages/{id}",
    tag = "messages",
    params(("id" = String, Path, description = "The message's public uuid (messageId) or bigint id")),
    responses(
        (status = 200, description = "The message", body = MessageView),
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
    let mut view = MessageView::from(row);
    view.events = Some(events.into_iter().map(Into::into).collect());
    view.attachments = Some(files.into_iter().map(Into::into).collect());
    Ok(Json(view))
}

/// Query parameters of `GET /v1/messages` (documentation; parsed by hand to name bad ones).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ListParams {
    /// A delivery status.
    status: Option<Status>,
    direction: Option<Direction>,
    thread_id: Option<i64>,
    channel: Option<Channel>,
    /// A recipient address.
    to: Option<String>,
    /// Created at or after (RFC 3339 or YYYY-MM-DD).
    from: Option<String>,
    /// Created before (RFC 3339 or YYYY-MM-DD).
    until: Option<String>,
    /// 1 to 500, default 50.
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    after: Option<String>,
}

pub(super) fn cursor(at: DateTime<Utc>, id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{id}", at.timestamp_micros()))
}

pub(super) fn parse_cursor(s: &str) -> Option<(DateTime<Utc>, i64)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(s).ok()?).ok()?;
    let (micros, id) = raw.split_once(':')?;
    Some((DateTime::from_timestamp_micros(micros.parse().ok()?)?, id.parse().ok()?))
}

/// A value of one of the vocabulary lists, or 400 naming `field` and the allowed values.
pub(super) fn one_of<T: std::str::FromStr<Err = UnknownValue>>(field: &str, v: &str) -> Result<T, ApiError> {
    v.parse().map_err(|e: UnknownValue| ApiError::field(field, format!("{v:?} is not one of {}", vocab::Listed(e.allowed))))
}

fn filter(params: Vec<(String, String)>) -> Result<ListFilter, ApiError> {
    let mut f = ListFilter { limit: DEFAULT_LIMIT, ..ListFilter::default() };
    let mut seen = std::collections::HashSet::new();
    for (k, v) in params {
        if !seen.insert(k.clone()) {
            return Err(ApiError::field(k, "is given more than once"));
        }
        match k.as_str() {
            "status" => f.status = Some(one_of("status", &v)?),
            "direction" => f.direction = Some(one_of("direction", &v)?),
            "channel" => f.channel = Some(one_of("channel", &v)?),
            "threadId" => {
                f.thread_id = Some(v.parse().map_err(|_| ApiError::field("threadId", format!("{v:?} is not a thread id (an integer)")))?)
            }
            "to" if v.trim().is_empty() => return Err(ApiError::field("to", "must not be empty")),
            "to" => f.to = Some(v),
            "from" => f.from = Some(input::timestamp("from", &v, true)?),
            "until" => f.until = Some(input::timestamp("until", &v, true)?),
            "limit" => {
                f.limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| ApiError::field("limit", format!("{v:?} is not a number from 1 to {MAX_LIMIT}")))?
            }
            "after" => f.after = Some(parse_cursor(&v).ok_or_else(|| ApiError::field("after", "is not a cursor from nextCursor"))?),
            _ => {
                return Err(ApiError::field(
                    k,
                    "unknown parameter (expected status, direction, threadId, channel, to, from, until, limit, after)",
                ))
            }
        }
    }
    Ok(f)
}

/// Messages of the caller's tenant, newest first, with keyset pagination.
#[utoipa::path(
    get,
    path = "/v1/messages",
    tag = "messages",
    params(ListParams),
    responses(
        (status = 200, description = "A page of messages", body = MessagePage),
        (status = 400, description = "A parameter is invalid (named in error.field)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<QueryParams, ApiError>,
) -> Result<Json<MessagePage>, ApiError> {
    caller.require(&state, Scope::Read).await?;
    let QueryParams(params) = query?;
    let mut f = filter(params)?;
    let limit = f.limit;
    f.limit += 1;
    let client = state.pool.get().await?;
    let mut rows = db::list_messages(&client, &caller.0.tenant_id, &f).await.map_err(ApiError::internal)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more { rows.last().map(|r| cursor(r.created_at, r.id)) } else { None };
    Ok(Json(MessagePage { messages: rows.into_iter().map(MessageView::from).collect(), next_cursor }))
}

/// Optional body of an action: why (recorded on the audit event of a rejection).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub reason: Option<String>,
}

async fn act(
    state: AppState,
    caller: Caller,
    id: String,
    action: Action,
    body: Result<OptionalJsonBody, ApiError>,
) -> Result<Json<MessageView>, ApiError> {
    let scope = match action {
        Action::Approve | Action::Reject => Scope::Admin,
        Action::Retry | Action::Cancel => Scope::Send,
    };
    caller.require(&state, scope).await?;
    let req: ActionRequest = input::json(body?.0, &[])?;
    let message = resolve(&state, &caller, &id).await?;
    let client = state.pool.get().await?;
    let tenant = &caller.0.tenant_id;
    let actor = format!("apikey:{}", caller.0.prefix);
    match db::act(&client, tenant, message, action, &actor, req.reason.as_deref()).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(ApiError::not_found("message")),
        Err(e) => {
            return Err(match e.as_db_error().map(|d| (d.code().code(), d.message().to_owned())) {
                Some(("23514", message)) => ApiError::conflict(message),
                Some(("P0002", _)) => ApiError::not_found("message"),
                _ => ApiError::from_db(e),
            })
        }
    }
    let row = db::find_message(&client, tenant, MessageRef::Id(message)).await.map_err(ApiError::internal)?;
    Ok(Json(row.ok_or_else(|| ApiError::not_found("message"))?.into()))
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
                (status = 403, description = concat!("The key lacks the ", $scope, " scope"), body = ErrorBody),
                (status = 404, description = "No such message for this tenant", body = ErrorBody),
                (status = 409, description = "The message is not in a state that allows this", body = ErrorBody),
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
action!(retry, Action::Retry, "retry", "Queue a failed message again (et_retry).", "send");
action!(cancel, Action::Cancel, "cancel", "Cancel a pending_approval or queued message (et_cancel).", "send");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let at = DateTime::from_timestamp_micros(1_760_000_000_123_456).unwrap();
        assert_eq!(parse_cursor(&cursor(at, 42)), Some((at, 42)));
        assert_eq!(parse_cursor("garbage!"), None);
    }

    #[test]
    fn bad_parameters_are_named() {
        let bad = |k: &str, v: &str| filter(vec![(k.into(), v.into())]).unwrap_err().field;
        assert_eq!(bad("status", "nope").as_deref(), Some("status"));
        assert_eq!(bad("limit", "0").as_deref(), Some("limit"));
        assert_eq!(bad("limit", "501").as_deref(), Some("limit"));
        assert_eq!(bad("from", "yesterday").as_deref(), Some("from"));
        assert_eq!(bad("colour", "red").as_deref(), Some("colour"));
        assert_eq!(filter(vec![]).unwrap().limit, DEFAULT_LIMIT);
    }
}
