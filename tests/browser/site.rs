//! The daemon under test and what a person does first: [`Site::start`] gives tenant `acme` with
//! an email session (provider `file`, writing `.eml` files into a folder of the test) and a
//! whatsapp session (provider `log`), an API key with every scope, and a daemon with its HTTP
//! surface on a free port; [`sign_in`] signs in through the console's form.

use crate::app::{api_key, spawn_app, App};
use crate::chrome::Chrome;
use crate::support::TestDb;
use pgcourier::db::apikeys::Scope;
use serde_json::{json, Value};

pub struct Site {
    pub app: App,
    pub db: TestDb,
    /// The email session (provider `file`).
    pub email: i64,
    /// The whatsapp session (provider `log`).
    pub wa: i64,
    /// A key of `acme` with every scope.
    pub key: String,
    /// `console:<key prefix>`: the actor of what the console does with [`Site::key`].
    pub actor: String,
    /// Where the email session writes its `.eml` files.
    pub outbox: String,
}

impl Site {
    pub async fn start() -> Site {
        Site::start_with(&[]).await
    }

    /// With daemon settings (`PGCOURIER_*`) overridden.
    pub async fn start_with(overrides: &[(&str, &str)]) -> Site {
        let db = TestDb::new().await;
        let (email, wa) = db.seed_acme().await;
        let outbox =
            std::env::temp_dir().join(format!("pgcourier-browser-{}", uuid::Uuid::new_v4().simple())).to_string_lossy().to_string();
        db.client
            .execute("UPDATE et_channel_sessions SET config = jsonb_build_object('dir', $1::text) WHERE id = $2", &[&outbox, &email])
            .await
            .unwrap();
        let key = api_key(&db, "acme", &[Scope::Admin]).await;
        let actor = format!("console:{}", key.split('_').nth(1).unwrap());
        let app = spawn_app(&db, overrides).await;
        Site { app, db, email, wa, key, actor, outbox }
    }

    pub async fn stop(self) {
        self.app.stop().await;
        let _ = std::fs::remove_dir_all(&self.outbox);
    }

    /// An API call with the site's key: (status, JSON body).
    pub async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.app.http.request(method, self.app.url(path)).header("x-api-key", &self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `POST /v1/messages` with `body` (on the email session unless it names one); the message's
    /// public id.
    pub async fn send(&self, mut body: Value) -> String {
        if body.get("channelSessionId").is_none() {
            body["channelSessionId"] = json!(self.email);
        }
        let (status, answer) = self.api(reqwest::Method::POST, "/v1/messages", Some(body)).await;
        assert_eq!(status, 201, "POST /v1/messages: {answer}");
        answer["messageId"].as_str().expect("messageId").to_owned()
    }

    /// One boolean of SQL, polled until true; fails after `WAIT` saying which.
    pub async fn until(&self, sql: &str) {
        crate::support::until(&self.db, sql, crate::chrome::WAIT).await;
    }

    /// One row's first column of SQL.
    pub async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> T {
        self.db.client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
    }
}

/// An RFC 3339 time `secs` from now (API `scheduledAt`).
pub fn in_secs(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339()
}

/// Sign in as a person does: open the console, land on the sign-in form, type the key, submit,
/// and arrive on the overview.
pub async fn sign_in(chrome: &Chrome, key: &str) {
    chrome.goto("/console").await;
    chrome.wait_for("the sign-in form", "location.pathname === '/console/sign-in' && document.querySelector('form.signin')").await;
    chrome.type_into("#key", key).await;
    chrome.click_to("form.signin button[type=submit]", "/console").await;
    chrome
        .wait_for(
            "the overview after signing in",
            "location.pathname === '/console' && document.querySelector('h1').innerText === 'Overview'",
        )
        .await;
}
