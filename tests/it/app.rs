//! `spawn_app`: a daemon with its HTTP surface on 127.0.0.1:0, and API keys for tests.
#![allow(dead_code)]

use crate::support::TestDb;
use crate::support::{spawn, Running};
use pgcourier::db::apikeys::{self, Scope};
use std::time::{Duration, Instant};

pub struct App {
    pub daemon: Running,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub http: reqwest::Client,
}

impl App {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn stop(self) {
        self.daemon.stop().await;
    }
}

/// Start a daemon whose HTTP surface listens on a free port; waits until it does.
pub async fn spawn_app(db: &TestDb, overrides: &[(&str, &str)]) -> App {
    let mut all = vec![("PGCOURIER_HTTP_ADDR", "127.0.0.1:0")];
    all.extend_from_slice(overrides);
    let daemon = spawn(db, &all);
    let deadline = Instant::now() + Duration::from_secs(15);
    let addr = loop {
        if let Some(a) = daemon.handles.http_addr.get() {
            break *a;
        }
        assert!(Instant::now() < deadline, "the HTTP surface never listened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    App { daemon, base: format!("http://{addr}"), http: reqwest::Client::new() }
}

/// A new API key for `tenant` with `scopes`.
pub async fn api_key(db: &TestDb, tenant: &str, scopes: &[Scope]) -> String {
    apikeys::create(&db.client, tenant, "test", scopes, None).await.expect("create api key").key
}
