//! Tenant administration under `/v1/tenants`, for the platform operator (a platform key: no
//! tenant, scope `platform`, made only by `pgcourier apikey create --platform`):
//!
//! - `POST /v1/tenants` `{id, name?, settings?}` → 201; `GET /v1/tenants?active=&after=&limit=`
//! - `GET /v1/tenants/{id}`; `PATCH /v1/tenants/{id}` `{name?, settings? (JSON Merge Patch), active?}`
//! - `POST /v1/tenants/{id}/deactivate`, `POST /v1/tenants/{id}/activate`: a deactivated tenant's
//!   keys are refused with 403 until it is active again; nothing is deleted
//! - `POST|GET /v1/tenants/{id}/sessions`, `GET|PATCH|DELETE /v1/tenants/{id}/sessions/{sid}`:
//!   channel sessions; `config` changes by JSON Merge Patch; DELETE disables the session (its
//!   messages and threads stay)
//!
//! The tenant's keys are in [`super::keys`] (a tenant's own `admin` key may manage those too).
//!
//! Rules at the edge: secrets are never stored in settings or config, only references to them
//! (`credentials_ref`, or a key ending in `_ref`, resolved from the daemon's environment): a key
//! that names a secret (`password`, `token`, `secret`, `api_key`, ...) without `_ref` is a 400.
//! Every URL the daemon will call (a session's `config.url` and `config.api_base`, the tenant's
//! `settings.llm.base_url`) passes the SSRF guard ([`crate::egress`], 400 naming the field), and
//! again at call time. A tenant key on these routes is a 403 for its own tenant and a 404 for
//! any other (both logged in `et_security_events`).

use super::input::{self, JsonBody, QueryParams};
use super::views::ErrorBody;
use crate::db::apikeys::{self, Authenticated};
use crate::db::tenants::{self as db, NewSession, SessionChanges, TenantChanges};
use crate::domain::vocab::{Channel, Provider, SessionStatus};
use crate::egress;
use crate::http::auth::KeyHolder;
use crate::http::error::ApiError;
use crate::http::responses::PlatformKey;
use crate::http::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A tenant.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantView {
    /// The slug every row of the tenant carries (`^[a-z0-9][a-z0-9_-]{0,62}$`).
    pub id: String,
    pub name: String,
    /// Rate limits, sender domains, attachment limits, approval default, `llm`, ...
    pub settings: Value,
    /// False: deactivated (its keys get 403).
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<db::TenantRow> for TenantView {
    fn from(t: db::TenantRow) -> Self {
        TenantView { id: t.id, name: t.name, settings: t.settings, active: t.active, created_at: t.created_at, updated_at: t.updated_at }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantView>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A channel session: one sending / receiving identity of a tenant.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: i64,
    pub tenant_id: String,
    pub channel: Channel,
    pub provider: Provider,
    /// From-address, phone number, bot name (normalised).
    pub address: String,
    pub name: String,
    /// Non-secret provider settings (host, port, url, api_base, ...).
    pub config: Value,
    /// The name of the secret the daemon reads from `PGCOURIER_SECRET_<REF>`; never the secret.
    pub credentials_ref: Option<String>,
    pub requires_approval: bool,
    pub status: SessionStatus,
    pub max_attempts: i32,
    pub fallback_session_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<db::SessionRow> for SessionView {
    type Error = ApiError;
    fn try_from(s: db::SessionRow) -> Result<Self, ApiError> {
        let bad = |what: &str, v: &str| ApiError::internal(std::io::Error::other(format!("session {}: {what} {v:?}", s.id)));
        Ok(SessionView {
            channel: s.channel.parse().map_err(|_| bad("channel", &s.channel))?,
            provider: s.provider.parse().map_err(|_| bad("provider", &s.provider))?,
            status: s.status.parse().map_err(|_| bad("status", &s.status))?,
            id: s.id,
            tenant_id: s.tenant_id,
            address: s.address,
            name: s.name,
            config: s.config,
            credentials_ref: s.credentials_ref,
            requires_approval: s.requires_approval,
            max_attempts: s.max_attempts,
            fallback_session_id: s.fallback_session_id,
            created_at: s.created_at,
            updated_at: s.updated_at,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// Body of `POST /v1/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// The tenant's slug: `^[a-z0-9][a-z0-9_-]{0,62}$`.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$", max_length = 63)]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// A JSON object (default `{}`).
    #[serde(default)]
    pub settings: Option<Map<String, Value>>,
}

/// Body of `PATCH /v1/tenants/{id}`: absent fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    #[serde(default)]
    pub name: Option<String>,
    /// A JSON Merge Patch (RFC 7396) of the settings: objects merge, `null` removes a key.
    #[serde(default)]
    pub settings: Option<Map<String, Value>>,
    #[serde(default)]
    pub active: Option<bool>,
}

/// Body of `POST /v1/tenants/{id}/sessions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateSession {
    pub channel: Channel,
    pub provider: Provider,
    /// From-address (email), phone number (sms, whatsapp), bot (telegram), any name (webhook).
    pub address: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Non-secret provider settings; secrets by reference only.
    #[serde(default)]
    pub config: Option<Map<String, Value>>,
    /// Name of the secret in the daemon's environment (`PGCOURIER_SECRET_<REF>`).
    #[serde(default)]
    pub credentials_ref: Option<String>,
    #[serde(default)]
    pub requires_approval: Option<bool>,
    #[serde(default)]
    pub status: Option<SessionStatus>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<i32>,
    #[serde(default)]
    pub fallback_session_id: Option<i64>,
}

/// Body of `PATCH /v1/tenants/{id}/sessions/{sid}`: absent fields keep their value; `null`
/// clears `credentialsRef` and `fallbackSessionId`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateSession {
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// A JSON Merge Patch (RFC 7396) of the config.
    #[serde(default)]
    pub config: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub credentials_ref: Option<Option<String>>,
    #[serde(default)]
    pub requires_approval: Option<bool>,
    #[serde(default)]
    pub status: Option<SessionStatus>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<i32>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub fallback_session_id: Option<Option<i64>>,
}

/// A field that is present: `Some(value)`, where `value` may be `None` (JSON null).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

// ---------------------------------------------------------------------------------------------
// Who may do what
// ---------------------------------------------------------------------------------------------

/// A refusal of a tenant key on a platform route: 403 when it names its own tenant (or no
/// tenant), else 404 as if `tenant` did not exist; both logged.
pub(super) async fn refuse_tenant_key(state: &AppState, holder: &KeyHolder, own: &str, tenant: Option<&str>, route: &str) -> ApiError {
    let (action, detail, err) = match tenant {
        Some(t) if t != own => {
            ("cross_tenant_access", serde_json::json!({ "resource": "tenant", "id": t, "route": route }), ApiError::not_found("tenant"))
        }
        _ => (
            "missing_scope",
            serde_json::json!({ "needed": apikeys::PLATFORM_SCOPE, "route": route }),
            ApiError::forbidden("this route needs a platform key (pgcourier apikey create --platform)"),
        ),
    };
    if let Ok(client) = state.pool.get().await {
        let _ = apikeys::security_event(&**client, Some(own), holder.prefix(), action, &detail).await;
    }
    err
}

/// Only a platform key passes.
async fn platform(state: &AppState, holder: &KeyHolder, tenant: Option<&str>, route: &str) -> Result<(), ApiError> {
    match &holder.0 {
        Authenticated::Platform(_) => Ok(()),
        Authenticated::Tenant(p) => Err(refuse_tenant_key(state, holder, &p.tenant_id, tenant, route).await),
    }
}

// ---------------------------------------------------------------------------------------------
// Rules on settings and config
// ---------------------------------------------------------------------------------------------

/// Words in a key that say it holds a secret.
const SECRET_WORDS: &[&str] = &["password", "passwd", "secret", "token", "api_key", "apikey", "private_key", "credential"];

/// 400 naming the first key under `v` (path `at`) that looks like it holds a secret rather than
/// a reference to one (`..._ref`).
fn no_secrets(v: &Value, at: &str) -> Result<(), ApiError> {
    let Value::Object(map) = v else { return Ok(()) };
    for (k, inner) in map {
        let path = format!("{at}.{k}");
        let lower = k.to_ascii_lowercase();
        if SECRET_WORDS.iter().any(|w| lower.contains(w)) && !lower.ends_with("_ref") && !inner.is_null() {
            return Err(ApiError::field(
                path,
                "looks like a secret: secrets are never stored in the database; put it in the daemon's environment \
                 (PGCOURIER_SECRET_<REF>) and name it here with a key ending in _ref (or the session's credentialsRef)",
            ));
        }
        no_secrets(inner, &path)?;
    }
    Ok(())
}

/// Each URL the daemon would call, through the SSRF guard; 400 naming its field.
async fn urls_pass(state: &AppState, urls: &[(&str, Option<&Value>)]) -> Result<(), ApiError> {
    for (field, v) in urls {
        match v {
            None | Some(Value::Null) => {}
            Some(Value::String(url)) => {
                egress::check_url(url, &state.config.network_allow)
                    .await
                    .map_err(|refused| ApiError::field(*field, refused.to_string()))?;
            }
            Some(_) => return Err(ApiError::field(*field, "must be an http(s) URL (a string)")),
        }
    }
    Ok(())
}

/// Secrets and URLs of a settings object (or merge patch).
async fn settings_pass(state: &AppState, settings: &Map<String, Value>) -> Result<(), ApiError> {
    let v = Value::Object(settings.clone());
    no_secrets(&v, "settings")?;
    urls_pass(state, &[("settings.llm.base_url", v.get("llm").and_then(|l| l.get("base_url")))]).await
}

/// Secrets and URLs of a session config (or merge patch).
async fn config_pass(state: &AppState, config: &Map<String, Value>) -> Result<(), ApiError> {
    let v = Value::Object(config.clone());
    no_secrets(&v, "config")?;
    urls_pass(state, &[("config.url", v.get("url")), ("config.api_base", v.get("api_base"))]).await
}

fn slug_ok(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// The columns of the tables → the API's fields, for the triggers' and constraints' refusals.
const SESSION_FIELDS: &[(&str, &str)] = &[
    ("address", "address"),
    ("channel", "channel"),
    ("provider", "provider"),
    ("fallback_session_id", "fallbackSessionId"),
    ("max_attempts", "maxAttempts"),
    ("status", "status"),
];

fn session_error(e: tokio_postgres::Error) -> ApiError {
    let mut err = input::db_error(e, SESSION_FIELDS);
    err.message = err.message.trim_start_matches("et_channel_sessions.").to_owned();
    err
}

// ---------------------------------------------------------------------------------------------
// Tenants
// ---------------------------------------------------------------------------------------------

/// Create a tenant.
#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses(
        (status = 201, description = "The tenant", body = TenantView),
        (status = 400, description = "A field is invalid (named in error.field)", body = ErrorBody),
        PlatformKey,
        (status = 409, description = "A tenant with this id exists", body = ErrorBody),
        (status = 415, description = "The body is not declared JSON", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_tenant(
    State(state): State<AppState>,
    holder: KeyHolder,
    body: Result<JsonBody, ApiError>,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    platform(&state, &holder, None, "POST /v1/tenants").await?;
    let req: CreateTenant = input::json(body?.0, &[])?;
    if !slug_ok(&req.id) {
        return Err(ApiError::field("id", "must match ^[a-z0-9][a-z0-9_-]{0,62}$ (lower-case letters, digits, _ and -)"));
    }
    let settings = req.settings.unwrap_or_default();
    settings_pass(&state, &settings).await?;
    let client = state.pool.get().await?;
    let row = db::create_tenant(&**client, &req.id, req.name.as_deref().unwrap_or(""), &Value::Object(settings), &holder.actor())
        .await
        .map_err(ApiError::from_db)?
        .ok_or_else(|| ApiError::conflict(format!("tenant {:?} exists", req.id)))?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// List tenants in id order.
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants",
    params(
        ("active" = Option<bool>, Query, description = "Only active (true) or deactivated (false) tenants"),
        ("after" = Option<String>, Query, description = "The `next` of the previous page"),
        ("limit" = Option<i64>, Query, description = "1..=500, default 100", minimum = 1, maximum = 500),
    ),
    responses(
        (status = 200, description = "A page of tenants", body = TenantList),
        (status = 400, description = "A parameter is invalid (named in error.field)", body = ErrorBody),
        PlatformKey,
    ),
    security(("api_key" = []))
)]
pub async fn list_tenants(
    State(state): State<AppState>,
    holder: KeyHolder,
    query: Result<QueryParams, ApiError>,
) -> Result<Json<TenantList>, ApiError> {
    platform(&state, &holder, None, "GET /v1/tenants").await?;
    let (mut active, mut after, mut limit) = (None, None, 100i64);
    for (k, v) in query?.0 {
        match k.as_str() {
            "active" => active = Some(v.parse::<bool>().map_err(|_| ApiError::field("active", "must be true or false"))?),
            "after" => after = Some(v),
            "limit" => {
                limit =
                    v.parse::<i64>().ok().filter(|n| (1..=500).contains(n)).ok_or_else(|| ApiError::field("limit", "must be 1..=500"))?
            }
            _ => return Err(ApiError::field(k, "unknown parameter (expected active, after, limit)")),
        }
    }
    let client = state.pool.get().await?;
    let rows = db::list_tenants(&**client, active, after.as_deref(), limit + 1).await.map_err(ApiError::from_db)?;
    let more = rows.len() as i64 > limit;
    let tenants: Vec<TenantView> = rows.into_iter().take(limit as usize).map(Into::into).collect();
    let next = if more { tenants.last().map(|t| t.id.clone()) } else { None };
    Ok(Json(TenantList { tenants, next }))
}

/// One tenant.
#[utoipa::path(
    get, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        PlatformKey,
        (status = 404, description = "No such tenant (or not the caller's: logged)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_tenant(State(state): State<AppState>, holder: KeyHolder, Path(id): Path<String>) -> Result<Json<TenantView>, ApiError> {
    platform(&state, &holder, Some(&id), "GET /v1/tenants/{id}").await?;
    let client = state.pool.get().await?;
    let row = db::get_tenant(&**client, &id).await.map_err(ApiError::from_db)?.ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(Json(row.into()))
}

async fn change_tenant(state: &AppState, holder: &KeyHolder, id: &str, changes: TenantChanges) -> Result<Json<TenantView>, ApiError> {
    let client = state.pool.get().await?;
    let row = db::update_tenant(&**client, id, &changes, &holder.actor())
        .await
        .map_err(ApiError::from_db)?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(Json(row.into()))
}

/// Change a tenant's name, settings (JSON Merge Patch) or active flag.
#[utoipa::path(
    patch, path = "/v1/tenants/{id}", tag = "tenants", request_body = UpdateTenant,
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The tenant as changed", body = TenantView),
        (status = 400, description = "A field is invalid (named in error.field)", body = ErrorBody),
        PlatformKey,
        (status = 404, description = "No such tenant (or not the caller's: logged)", body = ErrorBody),
        (status = 415, description = "The body is not declared JSON", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn update_tenant(
    State(state): State<AppState>,
    holder: KeyHolder,
    Path(id): Path<String>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<TenantView>, ApiError> {
    platform(&state, &holder, Some(&id), "PATCH /v1/tenants/{id}").await?;
    let req: UpdateTenant = input::json(body?.0, &[])?;
    if let Some(s) = &req.settings {
        settings_pass(&state, s).await?;
    }
    let changes = TenantChanges { name: req.name, settings: req.settings.map(Value::Object), active: req.active };
    change_tenant(&state, &holder, &id, changes).await
}

/// Deactivate a tenant: its API keys get 403 from now on; its rows stay.
#[utoipa::path(
    post, path = "/v1/tenants/{id}/deactivate", tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The tenant, inactive", body = TenantView),
        PlatformKey,
        (status = 404, description = "No such tenant (or not the caller's: logged)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn deactivate_tenant(
    State(state): State<AppState>,
    holder: KeyHolder,
    Path(id): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    platform(&state, &holder, Some(&id), "POST /v1/tenants/{id}/deactivate").await?;
    change_tenant(&state, &holder, &id, TenantChanges { active: Some(false), ..Default::default() }).await
}

/// Activate a tenant again.
#[utoipa::path(
    post, path = "/v1/tenants/{id}/activate", tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The tenant, active", body = TenantView),
        PlatformKey,
        (status = 404, description = "No such tenant (or not the caller's: logged)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn activate_tenant(
    State(state): State<AppState>,
    holder: KeyHolder,
    Path(id): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    platform(&state, &holder, Some(&id), "POST /v1/tenants/{id}/activate").await?;
    change_tenant(&state, &holder, &id, TenantChanges { active: Some(true), ..Default::default() }).await
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

/// 404 unless `tenant` exists.
async fn tenant_exists(client: &deadpool_postgres::Client, tenant: &str) -> Result<(), ApiError> {
    match db::get_tenant(&***client, tenant).await.map_err(ApiError::from_db)? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found("tenant")),
    }
}

fn session_id(sid: &str) -> Result<i64, ApiError> {
    sid.parse::<i64>().ok().filter(|i| *i > 0).ok_or_else(|| ApiError::not_found("channel session"))
}

/// Create a channel session for a tenant.
#[utoipa::path(
    post, path = "/v1/tenants/{id}/sessions", tag = "tenants", request_body = CreateSession,
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 201, description = "The session", body = SessionView),
        (status = 400, description = "A field is invalid (named in error.field): a bad address, a secret in config, a URL the SSRF guard refuses", body = ErrorBody),
        PlatformKey,
        (status = 404, description = "No such tenant (or not the caller's: logged)", body = ErrorBody),
        (status = 415, description = "The body is not declared JSON", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_session(
    State(state): State<AppState>,
    holder: KeyHolder,
    Path(id): Path<String>,
    body: Result<JsonBody, ApiError>,
) -> Result<(StatusCode, Json<SessionView>), ApiError> {
    platform(&state, &holder, Some(&id), "POST /v1/tenants/{id}/sessions").await?;
    let req: CreateSession = input::json(body?.0, &[])?;
    let config = req.config.unwrap_or_default();
    config_pass(&state, &config).await?;
    let client = state.pool.get().await?;
    tenant_exists(&client, &id).await?;
    let new = NewSession {
        channel: req.channel.as_str().to_owned(),
        provider: req.provider.as_str().to_owned(),
        address: req.address,
        name: req.name,
        config: Some(Value::Object(config)),
        credentials_ref: req.credentials_ref.filter(|r| !r.trim().is_empty()),
        requires_approval: req.requires_approval,
        status: req.status.map(|s| s.as_str().to_owned()),
        max_attempts: req.max_attempts,
        fallback_session_id: req.fallback_session_id,
    };
    let row = db::create_session(&**client, &id, &new, &holder.actor()).await.map_err(session_error)?;
    Ok((StatusCode::CREATED, Json(row.try_into()?)))
}

/// A tenant's sessions.
#[utoipa::path(
    get, path = "/v1/tenants/{id}/sessions", tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The sessions, in id order", body = SessionList),
        PlatformKey,
        (status = 404, description = "No such tenant (or not the caller's: logged)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_sessions(
    State(state): State<AppState>,
    holder: KeyHolder,
    Path(id): Path<String>,
) -> Result<Json<SessionList>, ApiError> {
    platform(&state, &holder, Some(&id), "GET /v1/tenants/{id}/sessions").await?;
    let client = state.pool.get().await?;
    tenant_exists(&client, &id).await?;
    let rows = db::list_sessions(&**client, &id).await.map_err(ApiError::from_db)?;
    Ok(Json(SessionList { sessions: rows.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()? }))
}

/// One session.
#[utoipa::path(
    get, path = "/v1/tenants/{id}/sessions/{sid}", tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id"), ("sid" = i64, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session", body = SessionView),
        PlatformKey,
        (status = 404, description = "No such tenant or session (or not the caller's: logged)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_session(
    State(state): State<AppState>,
    holder: KeyHolder,
    Path((id, sid)): Path<(String, String)>,
) -> Result<Json<SessionView>, ApiError> {
    platform(&state, &holder, Some(&id), "GET /v1/tenants/{id}/sessions/{sid}").await?;
    let sid = session_id(&sid)?;
    let client = state.pool.get().await?;
    let row =
        db::get_session(&**client, &id, sid).await.map_err(ApiError::from_db)?.ok_or_else(|| ApiError::not_found("channel session"))?;
    Ok(Json(row.try_into()?))
}

async fn change_session(
    state: &AppState,
    holder: &KeyHolder,
    id: &str,
    sid: i64,
    changes: SessionChanges,
) -> Result<Json<SessionView>, ApiError> {
    let client = state.pool.get().await?;
    let row = db::update_session(&**client, id, sid, &changes, &holder.actor())
        .await
        .map_err(session_error)?
        .ok_or_else(|| ApiError::not_found("channel session"))?;
    Ok(Json(row.try_into()?))
}

/// Change a session (config by JSON Merge Patch); the daemon uses the new settings from the next send.
#[utoipa::path(
    patch, path = "/v1/tenants/{id}/sessions/{sid}", tag = "tenants", request_body = UpdateSession,
    params(("id" = String, Path, description = "The tenant's id"), ("sid" = i64, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session as changed", body = SessionView),
        (status = 400, description = "A field is invalid (named in error.field)", body = ErrorBody),
        PlatformKey,
        (status = 404, description = "No such tenant or session (or not the caller's: logged)", body = ErrorBody),
        (status = 415, description = "The body is not declared JSON", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn update_session(
    State(state): State<AppState>,
    holder: KeyHolder,
    Path((id, sid)): Path<(String, String)>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<SessionView>, ApiError> {
    platform(&state, &holder, Some(&id), "PATCH /v1/tenants/{id}/sessions/{sid}").await?;
    let sid = session_id(&sid)?;
    let req: UpdateSession = input::json(body?.0, &[])?;
    if let Some(c) = &req.config {
        config_pass(&state, c).await?;
    }
    let changes = SessionChanges {
        address: req.address,
        name: req.name,
        config: req.config.map(Value::Object),
        credentials_ref: req.credentials_ref.map(|r| r.filter(|r| !r.trim().is_empty())),
        requires_approval: req.requires_approval,
        status: req.status.map(|s| s.as_str().to_owned()),
        max_attempts: req.max_attempts,
        fallback_session_id: req.fallback_session_id,
    };
    change_session(&state, &holder, &id, sid, changes).await
}

/// Disable a session (status `disabled`): nothing more is sent on it; its messages stay.
#[utoipa::path(
    delete, path = "/v1/tenants/{id}/sessions/{sid}", tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id"), ("sid" = i64, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session, disabled", body = SessionView),
        PlatformKey,
        (status = 404, description = "No such tenant or session (or not the caller's: logged)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn disable_session(
    State(state): State<AppState>,
    holder: KeyHolder,
    Path((id, sid)): Path<(String, String)>,
) -> Result<Json<SessionView>, ApiError> {
    platform(&state, &holder, Some(&id), "DELETE /v1/tenants/{id}/sessions/{sid}").await?;
    let sid = session_id(&sid)?;
    let changes = SessionChanges { status: Some(SessionStatus::Disabled.as_str().to_owned()), ..Default::default() };
    change_session(&state, &holder, &id, sid, changes).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_refused_references_are_not() {
        assert!(no_secrets(&json!({ "host": "smtp.example.com", "password_ref": "smtp" }), "config").is_ok());
        assert!(no_secrets(&json!({ "llm": { "api_key_ref": "openai", "base_url": "https://x" } }), "settings").is_ok());
        let e = no_secrets(&json!({ "host": "h", "password": "hunter2" }), "config").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("config.password"));
        let e = no_secrets(&json!({ "llm": { "apiKey": "sk-..." } }), "settings").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("settings.llm.apiKey"));
        assert!(no_secrets(&json!({ "bot_token": null }), "config").is_ok(), "null removes a key in a merge patch");
    }

    #[test]
    fn slugs() {
        assert!(slug_ok("acme") && slug_ok("a-1_b") && slug_ok(&"a".repeat(63)));
        assert!(!slug_ok("") && !slug_ok("Acme") && !slug_ok("-a") && !slug_ok(&"a".repeat(64)) && !slug_ok("a b"));
    }
}
