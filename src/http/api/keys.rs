//! A tenant's API keys under `/v1/tenants/{id}/keys`, for a platform key (any tenant) or the
//! tenant's own `admin` key:
//!
//! - `GET /v1/tenants/{id}/keys` → `{keys: [key]}` (never a secret)
//! - `POST /v1/tenants/{id}/keys` `{scopes, name?, expiresAt?}` → 201 key + `key` (shown once)
//! - `POST /v1/tenants/{id}/keys/{prefix}/rotate` `{overlapSeconds?}` → 201 the new key + `key`
//!   (shown once), same name, scopes and expiry; the old key stops at once (default) or after
//!   the overlap (at most 7 days, both work meanwhile)
//! - `DELETE /v1/tenants/{id}/keys/{prefix}` → 204: revoked at once (a rotated key too)
//!
//! Keys are stored as their SHA-256 only. Another tenant's keys are a 404 and a security event;
//! a tenant key without `admin` is a 403 (logged).

use super::input::{self, JsonBody, OptionalJsonBody};
use super::views::ErrorBody;
use crate::db::apikeys::{self, Authenticated, KeyError, Scope};
use crate::http::auth::KeyHolder;
use crate::http::error::ApiError;
use crate::http::responses::KeyAdmin;
use crate::http::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

/// A key's scope.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyScope {
    Send,
    Read,
    /// Every scope, and the tenant's webhooks, keys and operator actions.
    Admin,
}

impl From<KeyScope> for Scope {
    fn from(s: KeyScope) -> Scope {
        match s {
            KeyScope::Send => Scope::Send,
            KeyScope::Read => Scope::Read,
            KeyScope::Admin => Scope::Admin,
        }
    }
}

/// An API key (its prefix identifies it; the secret is shown once).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub id: i64,
    /// The 8 hex characters after `pgc_`: how the key is named in these routes.
    pub prefix: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When it stops (stopped) working: revoked, or the end of a rotation's overlap.
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The whole key: only in the answer that created it. Send it as `x-api-key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// Body of `POST /v1/tenants/{id}/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateKey {
    #[schema(min_items = 1)]
    pub scopes: Vec<KeyScope>,
    #[serde(default)]
    pub name: Option<String>,
    /// When the key stops working; never when absent.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Body of `POST /v1/tenants/{id}/keys/{prefix}/rotate` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RotateKey {
    /// How long the old key keeps working beside the new one (0 = revoked at once, the default).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604800)]
    pub overlap_seconds: Option<u64>,
}

/// Who manages `tenant`'s keys: a platform key, or the tenant's own key with `admin` (403
/// without it); any other tenant's key gets 404. Refusals are logged.
async fn key_admin(state: &AppState, holder: &KeyHolder, tenant: &str, route: &str) -> Result<(), ApiError> {
    let Authenticated::Tenant(p) = &holder.0 else { return Ok(()) };
    if p.tenant_id != tenant {
        return Err(super::tenants::refuse_tenant_key(state, holder, &p.tenant_id, Some(tenant), route).await);
    }
    if p.has(Scope::Admin) {
        return Ok(());
    }
    if let Ok(client) = state.pool.get().await {
        let detail = serde_json::json!({ "needed": "admin", "has": p.scopes, "route": route });
        let _ = apikeys::security_event(&**client, Some(&p.tenant_id), &p.prefix, "missing_scope", &detail).await;
    }
    Err(ApiError::forbidden("this API key lacks the admin scope"))
}

/// 404 for a key the tenant does not have; a tenant key naming another tenant's key is logged.
async fn missing_key(holder: &KeyHolder, client: &deadpool_postgres::Client, prefix: &str) -> ApiError {
    if let Authenticated::Tenant(p) = &holder.0 {
        match apikeys::key_elsewhere(&***client, &p.tenant_id, prefix).await {
            Ok(true) => {
                let detail = serde_json::json!({ "resource": "api_key", "prefix": prefix });
                let _ = apikeys::security_event(&***client, Some(&p.tenant_id), &p.prefix, "cross_tenant_access", &detail).await;
            }
            Ok(false) => {}
            Err(e) => return ApiError::internal(e),
        }
    }
    ApiError::not_found("API key")
}

fn key_error(e: KeyError) -> ApiError {
    match e {
        KeyError::UnknownTenant(_) => ApiError::not_found("tenant"),
        KeyError::UnknownKey(_) => ApiError::not_found("API key"),
        KeyError::NotLive(why) => ApiError::conflict(why),
        KeyError::Db(e) => ApiError::from_db(e),
    }
}

/// A tenant's keys.
#[utoipa::path(
    get, path = "/v1/tenants/{id}/keys", tag = "keys",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The keys, oldest first (no secrets)", body = KeyList),
        KeyAdmin,
        (status = 404, description = "No such tenant (or not the caller's: logged)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_keys(State(state): State<AppState>, holder: KeyHolder, Path(id): Path<String>) -> Result<Json<KeyList>, ApiError> {
    key_admin(&state, &holder, &id, "GET /v1/tenants/{id}/keys").await?;
    let client = state.pool.get().await?;
    let rows = apikeys::list(&**client, &id).await.map_err(key_error)?;
    let keys = rows
        .into_iter()
        .map(|(id, name, prefix, scopes, expires_at, revoked_at, last_used_at)| KeyView {
            id,
            prefix,
            name,
            scopes,
            expires_at,
            revoked_at,
            last_used_at,
            key: None,
        })
        .collect();
    Ok(Json(KeyList { keys }))
}

/// Create a key for a tenant: the answer carries the key, once.
#[utoipa::path(
    post, path = "/v1/tenants/{id}/keys", tag = "keys", request_body = CreateKey,
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 201, description = "The key, with its secret (shown once)", body = KeyView),
        (status = 400, description = "A field is invalid (named in error.field)", body = ErrorBody),
        KeyAdmin,
        (status = 404, description = "No such tenant (or not the caller's: logged)", body = ErrorBody),
        (status = 415, description = "The body is not declared JSON", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_key(
    State(state): State<AppState>,
    holder: KeyHolder,
    Path(id): Path<String>,
    body: Result<JsonBody, ApiError>,
) -> Result<(StatusCode, Json<KeyView>), ApiError> {
    key_admin(&state, &holder, &id, "POST /v1/tenants/{id}/keys").await?;
    let req: CreateKey = input::json(body?.0, &[])?;
    if req.scopes.is_empty() {
        return Err(ApiError::field("scopes", "must name at least one of send, read, admin"));
    }
    if req.expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(ApiError::field("expiresAt", "must be in the future"));
    }
    let scopes: Vec<Scope> = req.scopes.iter().map(|s| Scope::from(*s)).collect();
    let name = req.name.unwrap_or_default();
    let client = state.pool.get().await?;
    let new = apikeys::create_as(&**client, &id, &name, &scopes, req.expires_at, &holder.actor()).await.map_err(key_error)?;
    let view = KeyView {
        id: new.id,
        prefix: new.prefix,
        name,
        scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        expires_at: req.expires_at,
        revoked_at: None,
        last_used_at: None,
        key: Some(new.key),
    };
    Ok((StatusCode::CREATED, Json(view)))
}

/// Rotate a key: a new key (shown once) replaces it; the old one stops now or after the overlap.
#[utoipa::path(
    post, path = "/v1/tenants/{id}/keys/{prefix}/rotate", tag = "keys", request_body(content = RotateKey, description = "Optional"),
    params(("id" = String, Path, description = "The tenant's id"), ("prefix" = String, Path, description = "The key's prefix")),
    responses(
        (status = 201, description = "The new key, with its secret (shown once)", body = KeyView),
        (status = 400, description = "A field is invalid (named in error.field)", body = ErrorBody),
        KeyAdmin,
        (status = 404, description = "No such tenant or key (or not the caller's: logged)", body = ErrorBody),
        (status = 409, description = "The key is revoked, expired or already rotated", body = ErrorBody),
        (status = 415, description = "A body that is not declared JSON", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn rotate_key(
    State(state): State<AppState>,
    holder: KeyHolder,
    Path((id, prefix)): Path<(String, String)>,
    body: Result<OptionalJsonBody, ApiError>,
) -> Result<(StatusCode, Json<KeyView>), ApiError> {
    key_admin(&state, &holder, &id, "POST /v1/tenants/{id}/keys/{prefix}/rotate").await?;
    let req: RotateKey = input::json(body?.0, &[])?;
    let overlap = req.overlap_seconds.unwrap_or(0);
    if overlap > 7 * 24 * 3600 {
        return Err(ApiError::field("overlapSeconds", "must be 0..=604800 (7 days)"));
    }
    let client = state.pool.get().await?;
    let r = match apikeys::rotate(&**client, Some(&id), &prefix, Duration::from_secs(overlap), &holder.actor()).await {
        Ok(r) => r,
        Err(KeyError::UnknownKey(_)) => return Err(missing_key(&holder, &client, &prefix).await),
        Err(e) => return Err(key_error(e)),
    };
    let view = KeyView {
        id: r.new.id,
        prefix: r.new.prefix,
        name: r.name,
        scopes: r.scopes,
        expires_at: r.expires_at,
        revoked_at: None,
        last_used_at: None,
        key: Some(r.new.key),
    };
    Ok((StatusCode::CREATED, Json(view)))
}

/// Revoke a key at once.
#[utoipa::path(
    delete, path = "/v1/tenants/{id}/keys/{prefix}", tag = "keys",
    params(("id" = String, Path, description = "The tenant's id"), ("prefix" = String, Path, description = "The key's prefix")),
    responses(
        (status = 204, description = "Revoked"),
        KeyAdmin,
        (status = 404, description = "No such tenant or live key (or not the caller's: logged)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    holder: KeyHolder,
    Path((id, prefix)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    key_admin(&state, &holder, &id, "DELETE /v1/tenants/{id}/keys/{prefix}").await?;
    let client = state.pool.get().await?;
    if apikeys::revoke_as(&**client, Some(&id), &prefix, &holder.actor()).await.map_err(key_error)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(missing_key(&holder, &client, &prefix).await)
    }
}
