//! API v1 over real HTTP (`spawn_app`) against a real PostgreSQL: auth, sending (idempotency,
//! validation, attachments), reads and pagination, operator actions, threads, OpenAPI.
//! Shared fixtures live here; the tests are in `http_api/`.

mod actions;
mod auth;
mod list;
mod list_filters;
mod refusals;
mod resend;
mod retry;
mod routes;
mod send;
mod send_limits;
mod threads;

use crate::app::{api_key, spawn_app, App};
use crate::support::TestDb;
use pgcourier::db::apikeys::Scope;
use reqwest::Method;
use serde_json::Value;

/// A running app for tenant `acme` with an email session (provider `file`, writing into a temp
/// dir, so it really sends) and a whatsapp session (provider `log`).
pub struct Api {
    pub app: App,
    pub db: TestDb,
    pub email: i64,
    pub wa: i64,
    /// A key with every scope.
    pub admin: String,
    /// Where the email session (provider `file`) writes its `.eml` files.
    pub outbox: TempDir,
}

/// A time to schedule a message at so that nothing sends it during the test: 300 days ahead
/// (the insert trigger refuses scheduled_at more than a year ahead).
pub fn later() -> String {
    (chrono::Utc::now() + chrono::Duration::days(300)).to_rfc3339()
}

/// A directory removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Api {
    pub async fn start() -> Api {
        Api::start_with(&[]).await
    }

    /// With daemon settings (`PGCOURIER_*`) overridden.
    pub async fn start_with(overrides: &[(&str, &str)]) -> Api {
        let db = TestDb::new().await;
        let (email, wa) = db.seed_acme().await;
        let dir = TempDir(std::env::temp_dir().join(format!("pgcourier-api-{}", uuid::Uuid::new_v4().simple())));
        let path = dir.0.to_string_lossy().to_string();
        db.client
            .execute("UPDATE et_channel_sessions SET config = jsonb_build_object('dir', $1::text) WHERE id = $2", &[&path, &email])
            .await
            .unwrap();
        let admin = api_key(&db, "acme", &[Scope::Admin]).await;
        let app = spawn_app(&db, overrides).await;
        Api { app, db, email, wa, admin, outbox: dir }
    }

    pub async fn stop(self) {
        self.app.stop().await;
    }

    pub async fn key(&self, scopes: &[Scope]) -> String {
        api_key(&self.db, "acme", scopes).await
    }

    pub async fn call(&self, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
        self.call_with(method, path, key, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self.app.http.request(method, self.app.url(path));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        for (h, v) in headers {
            req = req.header(*h, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, Some(&self.admin), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(&self.admin), Some(body)).await
    }

    /// Send and expect 201; returns the response.
    pub async fn send(&self, body: Value) -> Value {
        let (status, v) = self.post("/v1/messages", body).await;
        assert_eq!(status, 201, "{v}");
        v
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.db.count(sql).await
    }
}

/// The `error.field` of an error body.
pub fn field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn openapi_json_documents_the_endpoints_and_the_key() {
    let api = Api::start().await;
    let (status, doc) = api.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, 200, "{doc}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    for path in [
        "/v1/messages",
        "/v1/messages/{id}",
        "/v1/messages/{id}/approve",
        "/v1/messages/{id}/retry",
        "/v1/messages/{id}/resend",
        "/v1/messages/retry",
        "/v1/threads/{id}",
        "/v1/threads/{id}/handoff",
        "/v1/webhooks",
        "/v1/webhooks/{id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "missing {path}");
    }
    assert!(doc["paths"]["/v1/messages"]["post"].is_object());
    assert!(doc["paths"]["/v1/messages"]["get"].is_object());
    let scheme = &doc["components"]["securitySchemes"]["api_key"];
    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["in"], "header");
    assert_eq!(scheme["name"], "x-api-key");
    assert!(doc["components"]["schemas"]["SendRequest"]["properties"]["htmlBody"].is_object());
    assert_eq!(pgcourier::http::api::openapi().paths.paths.len(), doc["paths"].as_object().unwrap().len());
    api.stop().await;
}
