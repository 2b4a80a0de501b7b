//! The HTTP surface (axum): a thin layer over the same rows SQL users write. API v1 with keys,
//! provider webhooks, health / readiness / metrics. Served by `pgcourier run` / `up` on
//! `PGCOURIER_HTTP_ADDR`.

pub mod api;
pub mod auth;
pub mod error;
pub mod ops;
pub mod providers;
pub mod webhooks;

use crate::config::Config;
use crate::db::listener::ListenerState;
use axum::Router;
use deadpool_postgres::Pool;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub config: Config,
    /// For `/ready`: is the LISTEN connection up?
    pub listener: Arc<ListenerState>,
}

/// Request bodies larger than this are refused with 413 (attachments travel base64 in JSON).
pub const MAX_BODY_BYTES: usize = 40 * 1024 * 1024;

/// Every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(webhooks::routes())
        .merge(providers::routes())
        .merge(ops::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serve until `shutdown`; `bound` receives the address actually bound (port 0 in tests).
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    bound: Arc<std::sync::OnceLock<SocketAddr>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let _ = bound.set(local);
    tracing::info!(addr = %local, "HTTP surface listening");
    axum::serve(listener, router(state)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}
