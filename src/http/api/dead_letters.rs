//! `GET /v1/dead-letters`: the caller's dead-letter queue (`et_dead_letters`), newest first:
//! each message as it was sent, how it failed, the provider's last answer; retry one with
//! `POST /v1/messages/{id}/retry`.

use super::input::{self, QueryParams};
use super::messages::{cursor, parse_cursor, DEFAULT_LIMIT, MAX_LIMIT};
use super::views::ErrorBody;
use crate::db::api::{self as db, DeadLetterFilter, DeadLetterRow};
use crate::db::apikeys::Scope;
use crate::domain::outcome::ProviderResponse;
use crate::domain::vocab::{Channel, Provider};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

/// Seed 003's failure types, from the last attempt's error class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureType {
    /// The provider refused for good (or the address is suppressed).
    Permanent,
    /// The provider kept failing for now until the attempts ran out.
    Transient,
    /// The message itself cannot be sent as stored; resend a corrected copy.
    Validation,
    /// Neither: e.g. a lease that ran out on the last attempt, or a row a DBA failed by hand.
    Unknown,
}

impl FailureType {
    const ALL: [(&'static str, FailureType); 4] = [
        ("permanent", FailureType::Permanent),
        ("transient", FailureType::Transient),
        ("validation", FailureType::Validation),
        ("unknown", FailureType::Unknown),
    ];

    fn parse(v: &str) -> Option<FailureType> {
        FailureType::ALL.iter().find(|(s, _)| *s == v).map(|(_, t)| *t)
    }

    fn as_str(self) -> &'static str {
        FailureType::ALL.iter().find(|(_, t)| *t == self).map(|(s, _)| *s).expect("every failure type is listed")
    }
}

/// A message that failed for good.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    pub message_id: Uuid,
    pub id: i64,
    pub channel: Channel,
    pub channel_session_id: i64,
    /// The session's provider (smtp, file, telegram_bot, whatsapp_cloud, twilio, http_bridge, log).
    #[schema(value_type = String)]
    pub provider: Provider,
    pub from: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    /// As sent (rendered where rendering changed it).
    pub subject: Option<String>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub attempts: i32,
    pub failure_type: FailureType,
    pub error_class: Option<String>,
    pub last_error: Option<String>,
    /// The provider's answer to the last attempt (null: never asked, or no attempt recorded one).
    pub provider_response: Option<ProviderResponse>,
    pub first_failed_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub dead_since: DateTime<Utc>,
    pub trace_id: Option<String>,
    /// The message's metadata.
    #[schema(value_type = Object)]
    pub meta: Value,
}

impl From<DeadLetterRow> for DeadLetterView {
    fn from(r: DeadLetterRow) -> Self {
        DeadLetterView {
            message_id: r.public_id,
            id: r.message_id,
            channel: r.channel,
            channel_session_id: r.channel_session_id,
            provider: r.provider,
            from: r.sender,
            to: r.recipients,
            cc: r.cc,
            bcc: r.bcc,
            subject: r.subject,
            text_body: r.body_text,
            html_body: r.body_html,
            attempts: r.attempts,
            failure_type: FailureType::parse(&r.failure_type).unwrap_or(FailureType::Unknown),
            error_class: r.error_class,
            last_error: r.last_error,
            provider_response: r.provider_response.and_then(|v| serde_json::from_value(v).ok()),
            first_failed_at: r.first_failed_at,
            last_attempt_at: r.last_attempt_at,
            dead_since: r.dead_since,
            trace_id: r.trace_id,
            meta: r.meta,
        }
    }
}

/// A page of `GET /v1/dead-letters`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterPage {
    pub dead_letters: Vec<DeadLetterView>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Query parameters of `GET /v1/dead-letters`, parsed as documented: an unknown, repeated or
/// ill-typed one is 400 naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetterParams {
    channel: Option<Channel>,
    failure_type: Option<FailureType>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    after: Option<String>,
}

const HINTS: &[(&str, &str)] =
    &[("failureType", "is not one of permanent, transient, validation, unknown"), ("limit", "is not a number from 1 to 500")];

fn filter(params: &[(String, String)]) -> Result<DeadLetterFilter, ApiError> {
    let p: DeadLetterParams = input::query(params, HINTS)?;
    let after = match p.after {
        Some(c) => Some(parse_cursor(&c).ok_or_else(|| ApiError::field("after", "is not a cursor from nextCursor"))?),
        None => None,
    };
    Ok(DeadLetterFilter {
        channel: p.channel,
        failure_type: p.failure_type.map(|t| t.as_str().to_owned()),
        after,
        limit: match p.limit {
            Some(l) => input::limit(&l.to_string(), MAX_LIMIT)?,
            None => DEFAULT_LIMIT,
        },
    })
}

/// The caller's dead letters, newest first, with keyset pagination.
#[utoipa::path(
    get,
    path = "/v1/dead-letters",
    tag = "messages",
    params(DeadLetterParams),
    responses(
        (status = 200, description = "A page of dead letters", body = DeadLetterPage),
        (status = 400, description = "A parameter is invalid (named in error.field)", body = ErrorBody),
        (status = 401, description = "Missing, unknown, expired or revoked key", body = ErrorBody),
        (status = 403, description = "The key lacks the read scope, or its tenant is not active", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<QueryParams, ApiError>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    caller.require(&state, Scope::Read).await?;
    let QueryParams(params) = query?;
    let mut f = filter(&params)?;
    let limit = f.limit;
    f.limit += 1;
    let client = state.pool.get().await?;
    let rows = db::dead_letters(&client, &caller.0.tenant_id, &f).await.map_err(ApiError::internal)?;
    let (rows, next_cursor) = input::page(rows, limit, |r| cursor(r.dead_since, r.message_id));
    Ok(Json(DeadLetterPage { dead_letters: rows.into_iter().map(DeadLetterView::from).collect(), next_cursor }))
}

#[derive(OpenApi)]
#[openapi(
    paths(list_dead_letters),
    components(schemas(DeadLetterPage, DeadLetterView, FailureType, ProviderResponse, crate::domain::outcome::ResponseStatus))
)]
struct DeadLetterDoc;

/// This module's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    DeadLetterDoc::openapi()
}
