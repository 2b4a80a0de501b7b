//! A tenant's suppression list under `/v1/suppressions` (scope `admin`), through the same SQL
//! functions psql users call (`et_suppress`, `et_unsuppress`: the address normalised like message
//! recipients, the actor `apikey:<prefix>` recorded, every change logged in `et_suppression_log`).
//!
//! - `GET /v1/suppressions?channel=&reason=&address=&limit=&after=` → `{suppressions, nextCursor}`,
//!   newest first; `address` is a case-insensitive prefix; `after` is the previous `nextCursor`
//! - `POST /v1/suppressions` `{channel, address, reason?, detail?, expiresAt?}` → 201 with the
//!   suppression; 200 with it, unchanged, when the address is suppressed already (adding is
//!   idempotent: a retried request is not an error)
//! - `GET /v1/suppressions/{channel}/{address}` → the suppression, or 404
//! - `DELETE /v1/suppressions/{channel}/{address}` → 204, or 404 when it is not suppressed
//!
//! An address is the tenant's own namespace: another tenant suppressing the same address is not
//! visible here, and asking for it is a plain 404 (no security event: nothing was referenced
//! that belongs to someone else).

use super::api::input::{self, JsonBody, QueryParams};
use super::api::views::{ErrorBody, ErrorDetail};
use super::auth::Caller;
use super::error::ApiError;
use super::AppState;
use crate::db::apikeys::Scope;
use crate::db::suppressions::{self as db, ListFilter, NewSuppression, Suppression};
use crate::domain::outcome::SuppressReason;
use crate::domain::vocab::{self, Channel, UnknownValue};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;
/// The longest `detail` the API takes.
pub const MAX_DETAIL_CHARS: usize = 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/suppressions", get(list_suppressions).post(add_suppression))
        .route("/v1/suppressions/{channel}/{address}", get(get_suppression).delete(remove_suppression))
}

/// One suppressed address.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuppressionView {
    pub id: i64,
    pub channel: Channel,
    /// Normalised like message recipients: the bare lower-case email, E.164, chat id.
    pub address: String,
    pub reason: SuppressReason,
    /// Why: the caller's note, or the provider's error text.
    pub detail: Option<String>,
    /// The public id of the message whose failure suppressed the address.
    pub message_id: Option<Uuid>,
    /// Hard bounces counted for the address (the tenant's `hard_bounce_threshold`, default 3,
    /// suppresses it); reset when the suppression is removed.
    pub hard_bounces: i32,
    /// When the suppression stops applying (null: never).
    pub expires_at: Option<DateTime<Utc>>,
    /// False once `expiresAt` has passed.
    pub active: bool,
    pub created_at: DateTime<Utc>,
    /// Who added it: `apikey:<prefix>`, the daemon's worker id, a database user or an actor
    /// given to `et_suppress`.
    pub created_by: String,
}

impl From<Suppression> for SuppressionView {
    fn from(s: Suppression) -> Self {
        SuppressionView {
            id: s.id,
            channel: s.channel,
            address: s.address,
            reason: s.reason,
            detail: s.detail,
            message_id: s.message_id,
            hard_bounces: s.hard_bounces,
            active: s.expires_at.is_none_or(|t| t > Utc::now()),
            expires_at: s.expires_at,
            created_at: s.created_at,
            created_by: s.created_by,
        }
    }
}

/// A page of suppressions, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuppressionPage {
    pub suppressions: Vec<SuppressionView>,
    /// Pass as `after` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// `POST /v1/suppressions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddRequest {
    /// Required. (Optional here so that a missing one is named, not the first field serde meets.)
    #[schema(required = true, nullable = false)]
    pub channel: Option<Channel>,
    /// Required; normalised like message recipients (`Ann <Ann@Example.com>` is `ann@example.com`).
    #[schema(required = true, nullable = false)]
    pub address: Option<String>,
    /// Default `manual`.
    pub reason: Option<SuppressReason>,
    /// A note on why (at most 1,024 characters), kept on the suppression and its log entry.
    #[schema(max_length = 1024)]
    pub detail: Option<String>,
    /// When the suppression stops applying (RFC 3339, in the future); absent: never.
    pub expires_at: Option<String>,
}

/// Query parameters of `GET /v1/suppressions`, parsed as documented: an unknown, repeated or
/// ill-typed one is 400 naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListParams {
    channel: Option<Channel>,
    reason: Option<SuppressReason>,
    /// Addresses starting with this (case-insensitive).
    address: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    after: Option<String>,
}

fn cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("s{id}"))
}

fn parse_cursor(s: &str) -> Option<i64> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(s).ok()?).ok()?;
    raw.strip_prefix('s')?.parse().ok().filter(|id| *id > 0)
}

/// A value of one of the vocabulary lists, or 400 naming `field` and the allowed values.
fn one_of<T: std::str::FromStr<Err = UnknownValue>>(field: &str, v: &str) -> Result<T, ApiError> {
    v.parse().map_err(|e: UnknownValue| ApiError::field(field, format!("{v:?} is not one of {}", vocab::Listed(e.allowed))))
}

fn filter(params: &[(String, String)]) -> Result<ListFilter, ApiError> {
    let p: ListParams = input::query(params, &[("limit", "is not a number from 1 to 500")])?;
    let address_prefix = match p.address {
        Some(a) if a.trim().is_empty() => return Err(ApiError::field("address", "must not be empty")),
        a => a.map(|a| a.trim().to_owned()),
    };
    let before_id = match p.after {
        Some(c) => Some(parse_cursor(&c).ok_or_else(|| ApiError::field("after", "is not a cursor from nextCursor"))?),
        None => None,
    };
    let limit = match p.limit {
        Some(l) => input::limit(&l.to_string(), MAX_LIMIT)?,
        None => DEFAULT_LIMIT,
    };
    Ok(ListFilter { channel: p.channel, reason: p.reason, address_prefix, before_id, limit })
}

/// A refusal by the suppression functions, named by the request field (their column).
fn refused(e: tokio_postgres::Error) -> ApiError {
    let mut err = ApiError::from_db(e);
    let message = err.message.trim_start_matches("et_suppressions.").to_owned();
    err.message = match err.field.as_deref() {
        Some("expires_at") => {
            err.field = Some("expiresAt".into());
            format!("expiresAt:{}", message.trim_start_matches("expires_at:"))
        }
        _ => message,
    };
    err
}

/// The `{channel}` of a path.
fn path_channel(v: &str) -> Result<Channel, ApiError> {
    one_of("channel", v)
}

/// The caller's suppressions, newest first, with keyset pagination.
#[utoipa::path(
    get, path = "/v1/suppressions", tag = "suppressions", params(ListParams),
    responses(
        (status = 200, description = "A page of suppressions", body = SuppressionPage),
        (status = 400, description = "A parameter is invalid (named in error.field)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The key lacks the admin scope", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_suppressions(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<QueryParams, ApiError>,
) -> Result<Json<SuppressionPage>, ApiError> {
    caller.require(&state, Scope::Admin).await?;
    let QueryParams(params) = query?;
    let mut f = filter(&params)?;
    let limit = f.limit;
    f.limit += 1;
    let client = state.pool.get().await?;
    let rows = db::list(&client, &caller.0.tenant_id, &f).await.map_err(ApiError::from_db)?;
    let (rows, next_cursor) = input::page(rows, limit, |r| cursor(r.id));
    Ok(Json(SuppressionPage { suppressions: rows.into_iter().map(Into::into).collect(), next_cursor }))
}

/// Suppress an address (`et_suppress`, actor `apikey:<prefix>`).
#[utoipa::path(
    post, path = "/v1/suppressions", tag = "suppressions", request_body = AddRequest,
    responses(
        (status = 201, description = "Suppressed", body = SuppressionView),
        (status = 200, description = "Already suppressed: the existing suppression, unchanged", body = SuppressionView),
        (status = 400, description = "A field is invalid (named in error.field)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The key lacks the admin scope", body = ErrorBody),
        (status = 413, description = "The body is larger than the server accepts", body = ErrorBody),
        (status = 415, description = "The body is not declared JSON (content-type: application/json)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn add_suppression(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody, ApiError>,
) -> Result<(StatusCode, Json<SuppressionView>), ApiError> {
    caller.require(&state, Scope::Admin).await?;
    let req: AddRequest = input::json(body?.0, &[("channel", "must be one of email, whatsapp, telegram, sms, webhook")])?;
    let channel = req.channel.ok_or_else(|| ApiError::field("channel", "is required"))?;
    let address = req.address.ok_or_else(|| ApiError::field("address", "is required"))?;
    if address.trim().is_empty() {
        return Err(ApiError::field("address", "must not be empty"));
    }
    if let Some(d) = &req.detail {
        if d.chars().count() > MAX_DETAIL_CHARS {
            return Err(ApiError::field("detail", format!("at most {MAX_DETAIL_CHARS} characters")));
        }
    }
    let expires_at = req.expires_at.as_deref().map(|v| input::timestamp("expiresAt", v, false)).transpose()?;
    let new = NewSuppression {
        channel,
        address: &address,
        reason: req.reason.unwrap_or(SuppressReason::Manual),
        detail: req.detail.as_deref(),
        expires_at,
    };
    let actor = format!("apikey:{}", caller.0.prefix);
    let client = state.pool.get().await?;
    let (row, created) = db::suppress(&client, &caller.0.tenant_id, &new, &actor).await.map_err(refused)?;
    if created {
        tracing::info!(tenant = %caller.0.tenant_id, channel = %row.channel, reason = %row.reason, key = %caller.0.prefix, "address suppressed");
    }
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(row.into())))
}

/// Whether an address is suppressed, and why.
#[utoipa::path(
    get, path = "/v1/suppressions/{channel}/{address}", tag = "suppressions",
    params(
        ("channel" = Channel, Path, description = "The channel"),
        ("address" = String, Path, description = "The address (percent-encoded; normalised like message recipients)"),
    ),
    responses(
        (status = 200, description = "The suppression", body = SuppressionView),
        (status = 400, description = "The channel or address is invalid (named in error.field)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The key lacks the admin scope", body = ErrorBody),
        (status = 404, description = "The address is not suppressed for this tenant", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_suppression(
    State(state): State<AppState>,
    caller: Caller,
    Path((channel, address)): Path<(String, String)>,
) -> Result<Json<SuppressionView>, ApiError> {
    caller.require(&state, Scope::Admin).await?;
    let channel = path_channel(&channel)?;
    let client = state.pool.get().await?;
    match db::get(&client, &caller.0.tenant_id, channel, &address).await.map_err(refused)? {
        Some(s) => Ok(Json(s.into())),
        None => Err(ApiError::not_found("suppression")),
    }
}

/// Remove a suppression (`et_unsuppress`: logged with the actor, the hard-bounce count reset).
#[utoipa::path(
    delete, path = "/v1/suppressions/{channel}/{address}", tag = "suppressions",
    params(
        ("channel" = Channel, Path, description = "The channel"),
        ("address" = String, Path, description = "The address (percent-encoded; normalised like message recipients)"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "The channel or address is invalid (named in error.field)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The key lacks the admin scope", body = ErrorBody),
        (status = 404, description = "The address is not suppressed for this tenant", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn remove_suppression(
    State(state): State<AppState>,
    caller: Caller,
    Path((channel, address)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require(&state, Scope::Admin).await?;
    let channel = path_channel(&channel)?;
    let actor = format!("apikey:{}", caller.0.prefix);
    let client = state.pool.get().await?;
    if db::unsuppress(&client, &caller.0.tenant_id, channel, &address, &actor, "removed through the API").await.map_err(refused)? {
        tracing::info!(tenant = %caller.0.tenant_id, channel = %channel, key = %caller.0.prefix, "suppression removed");
        return Ok(StatusCode::NO_CONTENT);
    }
    Err(ApiError::not_found("suppression"))
}

/// The OpenAPI paths and schemas of these routes (to merge into the API's document).
#[derive(OpenApi)]
#[openapi(
    paths(list_suppressions, add_suppression, get_suppression, remove_suppression),
    components(schemas(SuppressionView, SuppressionPage, AddRequest, SuppressReason, Channel, ErrorBody, ErrorDetail)),
    tags((name = "suppressions", description = "Addresses never sent to: hard bounces past the tenant's threshold, complaints, unsubscribes, manual entries"))
)]
pub struct SuppressionsDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    SuppressionsDoc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        assert_eq!(parse_cursor(&cursor(42)), Some(42));
        assert_eq!(parse_cursor("garbage!"), None);
        assert_eq!(parse_cursor(&URL_SAFE_NO_PAD.encode("s-1")), None);
    }

    #[test]
    fn bad_parameters_are_named() {
        let bad = |k: &str, v: &str| filter(&[(k.into(), v.into())]).unwrap_err().field;
        assert_eq!(bad("channel", "pigeon").as_deref(), Some("channel"));
        assert_eq!(bad("reason", "bored").as_deref(), Some("reason"));
        assert_eq!(bad("limit", "0").as_deref(), Some("limit"));
        assert_eq!(bad("limit", "501").as_deref(), Some("limit"));
        assert_eq!(bad("after", "nope").as_deref(), Some("after"));
        assert_eq!(bad("address", " ").as_deref(), Some("address"));
        assert_eq!(bad("colour", "red").as_deref(), Some("colour"));
        assert_eq!(filter(&[]).unwrap().limit, DEFAULT_LIMIT);
        let twice = filter(&[("reason".into(), "manual".into()), ("reason".into(), "complaint".into())]).unwrap_err();
        assert_eq!(twice.field.as_deref(), Some("reason"));
    }

    #[test]
    fn the_openapi_document_lists_every_route_and_the_reasons() {
        let doc = serde_json::to_value(openapi()).unwrap();
        for path in ["/v1/suppressions", "/v1/suppressions/{channel}/{address}"] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        let reasons = &doc["components"]["schemas"]["SuppressReason"]["enum"];
        assert_eq!(reasons, &serde_json::json!(SuppressReason::NAMES));
        assert_eq!(doc["components"]["schemas"]["AddRequest"]["required"], serde_json::json!(["channel", "address"]));
        assert!(doc["paths"]["/v1/suppressions"]["post"]["responses"]["200"].is_object());
        assert!(doc["paths"]["/v1/suppressions/{channel}/{address}"]["delete"]["responses"]["404"].is_object());
    }
}
