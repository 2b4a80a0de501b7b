//! The HTTP surface (axum): a thin layer over the same rows SQL users write. API v1 with keys,
//! provider webhooks, health / readiness / metrics. Served by `pgcourier run` / `up` on
//! `PGCOURIER_HTTP_ADDR`.

pub mod api;
pub mod auth;
pub mod error;
pub mod ops;
pub mod providers;
pub mod responses;
pub mod suppressions;
pub mod webhooks;

use crate::config::Config;
use crate::wakeup::ListenerState;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use deadpool_postgres::Pool;
use error::ApiError;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub config: Config,
    /// For `/ready`: is the LISTEN connection up?
    pub listener: Arc<ListenerState>,
    /// For `/ready`: does this daemon lead the periodic work?
    pub leader: Arc<crate::leader::LeaderState>,
    /// Cancelled when the daemon stops: long-lived responses (the console's event stream) end
    /// with it, so that the graceful shutdown does not wait on them.
    pub shutdown: CancellationToken,
}

/// Request headers larger than this in total (names and values) are refused with 431 and the
/// JSON error body. (hyper itself answers 431, without a body, to a header section beyond its
/// read buffer, about 400 KiB, or to more than 100 headers.)
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Every route: the API, provider webhooks and operations, plus `pages` (the operator console,
/// which the daemon passes in: it is built on this module, not the other way round).
pub fn router(state: AppState, pages: Router<AppState>) -> Router {
    let max_body = state.config.http_max_body;
    // a worker node serves only /health, /ready and /metrics (below)
    let serves = match state.config.role.serves() {
        true => Router::new()
            .merge(api::routes())
            .merge(pages)
            .merge(webhooks::routes())
            .merge(suppressions::routes())
            .merge(providers::routes()),
        false => Router::new(),
    };
    serves
        // an unknown path is a JSON 404, like every other refusal
        .fallback(no_route)
        // one log line per request (health checks and scrapes below are not logged)
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span).on_request(()).on_response(log_response))
        .merge(ops::routes())
        // a known path with a method it does not take: JSON 405 (axum adds the Allow header);
        // set last, so that it reaches every route above
        .method_not_allowed_fallback(wrong_method)
        // request bodies over PGCOURIER_HTTP_MAX_BODY are refused with 413
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(limit_headers))
        .layer(axum::middleware::from_fn(count_request))
        // every request gets an id (the caller's X-Request-Id, else a new UUID), on the log
        // lines about it and on its response
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// The span of one request: every line logged while it is served carries these fields.
fn request_span(req: &Request) -> tracing::Span {
    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
}

fn log_response(res: &Response, latency: std::time::Duration, _: &tracing::Span) {
    tracing::info!(status = res.status().as_u16(), latency_ms = latency.as_secs_f64() * 1000.0, "request served");
}

/// 404 for a path no route serves.
async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {}", uri.path()))
}

/// 405 for a method a route does not take.
async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{} does not take {method}", uri.path()))
}

/// Count every request by method, matched route (the route's pattern, so the label stays
/// bounded whatever paths clients send) and status, and time it to its response head.
async fn count_request(req: Request, next: Next) -> Response {
    use crate::telemetry::{HTTP_DURATION, HTTP_REQUESTS};
    let route = req.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method: &'static str = match *req.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::HEAD => "HEAD",
        axum::http::Method::POST => "POST",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::PATCH => "PATCH",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route).record(started.elapsed().as_secs_f64());
    res
}

/// 431 for a request whose headers are over [`MAX_HEADER_BYTES`].
async fn limit_headers(req: Request, next: Next) -> Response {
    // (each header line also carries ": " and CRLF)
    let size: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if size > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "header_too_large",
            format!("the request headers are {size} bytes; the limit is {MAX_HEADER_BYTES}"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Bind the HTTP surface's address. The daemon binds before it starts any work, so a taken
/// port stops it at once.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serve until `shutdown`; `bound` receives the address actually bound (port 0 in tests).
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    pages: Router<AppState>,
    bound: Arc<std::sync::OnceLock<SocketAddr>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_on(bind(addr).await?, state, pages, bound, shutdown).await
}

/// [`serve`] on a listener already bound.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    pages: Router<AppState>,
    bound: Arc<std::sync::OnceLock<SocketAddr>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let _ = bound.set(local);
    tracing::info!(addr = %local, "HTTP surface listening");
    axum::serve(listener, router(state, pages)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}
