//! `x-api-key` → the calling tenant and its scopes. Unknown, expired or revoked keys are 401,
//! a missing scope is 403; every refusal is written to `et_security_events`.

use super::{error::ApiError, AppState};
use crate::db::apikeys::{self, Principal, Rejected, Scope};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// The authenticated caller of a request.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("");
        let client = state.pool.get().await?;
        let path = parts.uri.path().to_owned();
        if key.is_empty() {
            return Err(ApiError::unauthorized("missing x-api-key header"));
        }
        match apikeys::authenticate(&client, key).await.map_err(ApiError::internal)? {
            Ok(p) => Ok(Caller(p)),
            Err(why) => {
                let (action, message) = match why {
                    Rejected::Unknown => ("unknown_api_key", "unknown API key"),
                    Rejected::Expired => ("expired_api_key", "this API key has expired"),
                    Rejected::Revoked => ("revoked_api_key", "this API key was revoked"),
                };
                let shown: String = key.chars().take(12).collect();
                let _ = apikeys::security_event(&client, None, &shown, action, &serde_json::json!({ "path": path })).await;
                Err(ApiError::unauthorized(message))
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
                &client,
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
            let _ = apikeys::security_event(&client, Some(&self.0.tenant_id), &self.0.prefix, action, &detail).await;
        }
    }
}
