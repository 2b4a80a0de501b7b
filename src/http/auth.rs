//! `x-api-key` → the calling tenant and its scopes, or the platform operator. Unknown, expired or
//! revoked keys are 401; a key of a deactivated tenant, a missing scope, and a platform key on a
//! tenant's route are 403; every refusal is written to `et_security_events`.
//!
//! [`Caller`] is a tenant key (the routes that act on one tenant's messages, threads, webhooks);
//! [`KeyHolder`] is any key (the `/v1/tenants` routes, which decide per tenant: a platform key
//! may act on every tenant, a tenant's `admin` key on its own keys).

use super::{error::ApiError, AppState};
use crate::db::apikeys::{self, Authenticated, Principal, Rejected, Scope};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// The authenticated tenant key of a request.
pub struct Caller(pub Principal);

/// The authenticated key of a request, a tenant's or the platform's.
pub struct KeyHolder(pub Authenticated);

impl KeyHolder {
    /// `apikey:<prefix>`, the actor recorded for what this key does.
    pub fn actor(&self) -> String {
        format!("apikey:{}", self.prefix())
    }

    pub fn prefix(&self) -> &str {
        match &self.0 {
            Authenticated::Tenant(p) => &p.prefix,
            Authenticated::Platform(p) => &p.prefix,
        }
    }

    /// The key's tenant; `None` for a platform key.
    pub fn tenant(&self) -> Option<&str> {
        match &self.0 {
            Authenticated::Tenant(p) => Some(&p.tenant_id),
            Authenticated::Platform(_) => None,
        }
    }
}

/// The key in `x-api-key`, checked; a refusal is logged and answered.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Authenticated, ApiError> {
    let key = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("");
    let client = state.pool.get().await?;
    let path = parts.uri.path().to_owned();
    if key.is_empty() {
        return Err(ApiError::unauthorized("missing x-api-key header"));
    }
    match apikeys::authenticate(&**client, key).await.map_err(ApiError::internal)? {
        Ok(a) => Ok(a),
        Err(why) => {
            let (action, message) = match why {
                Rejected::Unknown => ("unknown_api_key", "unknown API key"),
                Rejected::Expired => ("expired_api_key", "this API key has expired"),
                Rejected::Revoked => ("revoked_api_key", "this API key was revoked"),
                Rejected::TenantInactive => ("inactive_tenant_key", "this API key's tenant is deactivated"),
            };
            let shown: String = key.chars().take(12).collect();
            let _ = apikeys::security_event(&**client, None, &shown, action, &serde_json::json!({ "path": path })).await;
            Err(match why {
                Rejected::TenantInactive => ApiError::forbidden(message),
                _ => ApiError::unauthorized(message),
            })
        }
    }
}

impl FromRequestParts<AppState> for KeyHolder {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        authenticate(parts, state).await.map(KeyHolder)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match authenticate(parts, state).await? {
            Authenticated::Tenant(p) => Ok(Caller(p)),
            Authenticated::Platform(p) => {
                if let Ok(client) = state.pool.get().await {
                    let detail = serde_json::json!({ "path": parts.uri.path() });
                    let _ = apikeys::security_event(&**client, None, &p.prefix, "platform_key_on_tenant_route", &detail).await;
                }
                Err(ApiError::forbidden(
                    "a platform key has no tenant: it administers tenants under /v1/tenants; send and read with a tenant's key",
                ))
            }
        }
    }
}

impl Caller {
    /// 403 (and a security event) unless the key has `scope`.
    pub async fn require(&self, state: &AppState, scope: Scope) -> Result<(), ApiError> {
        if self.0.has(scope) {
            return Ok(());
        }
        if let Ok(client) = state.pool.get().await {
            let _ = apikeys::security_event(
                &**client,
                Some(&self.0.tenant_id),
                &self.0.prefix,
                "missing_scope",
                &serde_json::json!({ "needed": scope.as_str(), "has": self.0.scopes }),
            )
            .await;
        }
        Err(ApiError::forbidden(format!("this API key lacks the {} scope", scope.as_str())))
    }

    /// Record that this caller asked for something that is not its tenant's (the response is a
    /// plain 404, so nothing leaks about other tenants).
    pub async fn denied(&self, state: &AppState, action: &str, detail: serde_json::Value) {
        if let Ok(client) = state.pool.get().await {
            let _ = apikeys::security_event(&**client, Some(&self.0.tenant_id), &self.0.prefix, action, &detail).await;
        }
    }
}

impl Caller {
    /// The caller named channel session `id`, which its tenant does not have: if it is another
    /// tenant's, log a cross-tenant attempt (the answer stays the same as for no session at all).
    pub async fn foreign_session(&self, state: &AppState, id: i64) {
        let Ok(client) = state.pool.get().await else { return };
        match crate::db::tenants::session_elsewhere(&**client, &self.0.tenant_id, id).await {
            Ok(true) => {
                let detail = serde_json::json!({ "resource": "channel_session", "id": id, "path": "POST /v1/messages" });
                let _ = apikeys::security_event(&**client, Some(&self.0.tenant_id), &self.0.prefix, "cross_tenant_access", &detail).await;
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %crate::telemetry::one_line(&e), "could not check a session for the security log"),
        }
    }
}
