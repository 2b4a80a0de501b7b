//! Operations endpoints, for load balancers, orchestrators and Prometheus (no API key: bind the
//! HTTP surface to a private network, or put `/metrics` behind your proxy's access rules — its
//! labels name tenants).
//!
//! - `GET /health` → 200 `{"status":"ok"}` while the process runs (no database involved).
//! - `GET /ready` → 200 `{"status":"ready","checks":{...},"failing":[]}` when the database
//!   answers `SELECT 1`, every migration and trigger file of this binary is applied, and the
//!   LISTEN connection is up; otherwise 503 `{"status":"unavailable", ...}` where `failing` names
//!   each failing check and `checks.<name>.error` says why.
//! - `GET /metrics` → Prometheus text exposition (`text/plain; version=0.0.4`): the process's
//!   counters and histograms (see [`crate::telemetry::metrics_handle`]), then gauges read at
//!   scrape time from this daemon's state and from the database (rendered here, per scrape, so
//!   a series that disappears from the database disappears from the scrape).

use super::AppState;
use crate::db::ops::{self as q, Gauges};
use crate::domain::breaker::BreakerState;
use crate::wakeup::ListenerState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use deadpool_postgres::Pool;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;
use utoipa::{OpenApi, ToSchema};

/// How long `/ready` waits for the database (connection and each query).
pub const READY_DB_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `/metrics` waits for a connection before exporting without the database gauges.
const SCRAPE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn routes() -> Router<AppState> {
    // Install the recorder before anything is served, so that sends are counted from the start.
    crate::telemetry::metrics_handle();
    Router::new().route("/health", get(health)).route("/ready", get(ready)).route("/metrics", get(metrics))
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process is up (no database involved).
#[utoipa::path(
    get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process runs", body = Health)),
    security(())
)]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The body of `/ready`, both when ready and when not.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyBody {
    /// `ready` or `unavailable`.
    #[schema(pattern = "^(ready|unavailable)$")]
    pub status: &'static str,
    /// Each check by name (`database`, `migrations`, `listener`).
    pub checks: BTreeMap<&'static str, CheckView>,
    /// The names of the failing checks.
    pub failing: Vec<&'static str>,
    /// This daemon's role (`PGCOURIER_ROLE`): `all`, `worker` or `web`.
    #[schema(pattern = "^(all|worker|web)$")]
    pub role: &'static str,
    /// Whether this daemon leads the periodic work now (maintenance, statistics); a `web` node never does.
    pub leader: bool,
}

/// One readiness check's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckView {
    pub ok: bool,
    /// Why it failed (null when ok).
    pub error: Option<String>,
}

/// Ready to work: the database answers, its schema is this binary's, LISTEN is up.
#[utoipa::path(
    get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = ReadyBody),
        (status = 503, description = "Not ready: `failing` names the checks, `checks.<name>.error` says why", body = ReadyBody),
    ),
    security(())
)]
pub async fn ready(State(state): State<AppState>) -> Response {
    let r = readiness(&state.pool, &state.listener).await;
    let status = if r.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if !r.is_ready() {
        tracing::warn!(failing = ?r.failing(), "not ready");
    }
    let mut body = r.body();
    body.role = state.config.role.as_str();
    body.leader = state.leader.leads();
    (status, Json(body)).into_response()
}

/// One readiness check: its name, and why it failed.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Check {
    fn ok(name: &'static str) -> Check {
        Check { name, ok: true, error: None }
    }

    fn failed(name: &'static str, why: impl Into<String>) -> Check {
        Check { name, ok: false, error: Some(why.into()) }
    }
}

/// The outcome of the readiness checks, in order: `database`, `migrations`, `listener`.
#[derive(Debug, Clone)]
pub struct Readiness {
    pub checks: Vec<Check>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The names of the failing checks.
    pub fn failing(&self) -> Vec<&'static str> {
        self.checks.iter().filter(|c| !c.ok).map(|c| c.name).collect()
    }

    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The JSON body of `/ready`.
    pub fn body(&self) -> ReadyBody {
        ReadyBody {
            status: if self.is_ready() { "ready" } else { "unavailable" },
            checks: self.checks.iter().map(|c| (c.name, CheckView { ok: c.ok, error: c.error.clone() })).collect(),
            failing: self.failing(),
            role: "all",
            leader: false,
        }
    }
}

/// Run the readiness checks against `pool` and `listener` (what `/ready` answers).
pub async fn readiness(pool: &Pool, listener: &ListenerState) -> Readiness {
    let (database, migrations) = match tokio::time::timeout(READY_DB_TIMEOUT, pool.get()).await {
        Err(_) => (
            Check::failed("database", format!("no connection within {READY_DB_TIMEOUT:?}")),
            Check::failed("migrations", "not checked: the database is unavailable"),
        ),
        Ok(Err(e)) => (
            Check::failed("database", format!("cannot connect: {e}")),
            Check::failed("migrations", "not checked: the database is unavailable"),
        ),
        Ok(Ok(client)) => match tokio::time::timeout(READY_DB_TIMEOUT, q::ping(&client)).await {
            Err(_) => (
                Check::failed("database", format!("SELECT 1 did not answer within {READY_DB_TIMEOUT:?}")),
                Check::failed("migrations", "not checked: the database is unavailable"),
            ),
            Ok(Err(e)) => (
                Check::failed("database", format!("SELECT 1 failed: {e}")),
                Check::failed("migrations", "not checked: the database is unavailable"),
            ),
            Ok(Ok(())) => {
                let migrations = match tokio::time::timeout(READY_DB_TIMEOUT, crate::db::migrate::is_current(&client)).await {
                    Ok(Ok(true)) => Check::ok("migrations"),
                    Ok(Ok(false)) => Check::failed(
                        "migrations",
                        "the database is behind this binary: run `pgcourier migrate` (or start a daemon, which migrates)",
                    ),
                    Ok(Err(e)) => Check::failed("migrations", format!("cannot read the migration state: {e}")),
                    Err(_) => Check::failed("migrations", format!("no answer within {READY_DB_TIMEOUT:?}")),
                };
                (Check::ok("database"), migrations)
            }
        },
    };
    let listener = if listener.connected.load(Ordering::SeqCst) || listener.poll_only.load(Ordering::SeqCst) {
        Check::ok("listener")
    } else {
        Check::failed(
            "listener",
            format!("the LISTEN connection is down (reconnecting; {} reconnects so far)", listener.reconnects.load(Ordering::Relaxed)),
        )
    };
    Readiness { checks: vec![database, migrations, listener] }
}

/// Prometheus text exposition: the process's counters and histograms, then gauges read from
/// this daemon and the database at scrape time.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "The metrics", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)),
    security(())
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    crate::telemetry::process_collector().collect();
    let mut out = crate::telemetry::metrics_handle().render();
    render_listener(&mut out, &state.listener);
    let gauges = match tokio::time::timeout(SCRAPE_CONNECT_TIMEOUT, state.pool.get()).await {
        Err(_) => Err(format!("no database connection within {SCRAPE_CONNECT_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(mut client)) => q::gauges(&mut client).await.map_err(|e| crate::telemetry::one_line(&e)),
    };
    match gauges {
        Ok(g) => {
            single(&mut out, "pgcourier_database_up", "gauge", "1 when the scrape could read the database gauges.", 1.0);
            render_database(&mut out, &g);
        }
        Err(e) => {
            tracing::warn!(error = %e, "/metrics: database gauges unavailable");
            single(&mut out, "pgcourier_database_up", "gauge", "1 when the scrape could read the database gauges.", 0.0);
        }
    }
    ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], out).into_response()
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn render_listener(out: &mut String, listener: &ListenerState) {
    let connected = if listener.connected.load(Ordering::SeqCst) { 1.0 } else { 0.0 };
    let reconnects = listener.reconnects.load(Ordering::Relaxed) as f64;
    // no LISTEN connection by design (poll-only mode, a web node): no series, so that the
    // listener-down alert does not fire for a connection that is not meant to exist
    if !listener.poll_only.load(Ordering::SeqCst) {
        single(
            out,
            "pgcourier_listener_connected",
            "gauge",
            "1 while the LISTEN connection is up (absent in poll-only mode and on web nodes).",
            connected,
        );
    }
    single(
        out,
        "pgcourier_listener_reconnects_total",
        "counter",
        "Times the LISTEN connection was re-established after a loss.",
        reconnects,
    );
}

fn render_database(out: &mut String, g: &Gauges) {
    let depth: Vec<(Labels, f64)> =
        g.queue_depth.iter().map(|d| (vec![("channel", d.channel.as_str()), ("state", d.state.as_str())], d.depth as f64)).collect();
    family(out, "pgcourier_queue_depth", "gauge", "Rows in et_outbound_queue per channel and state.", &depth);

    let oldest: Vec<(Labels, f64)> = g.oldest_ready_secs.iter().map(|(c, s)| (vec![("channel", c.as_str())], *s)).collect();
    family(out, "pgcourier_queue_oldest_ready_seconds", "gauge", "How long the oldest due ready row has waited.", &oldest);

    let breakers: Vec<(Vec<(&'static str, String)>, f64)> = g
        .breakers
        .iter()
        .map(|b| {
            let open = if matches!(b.state, BreakerState::Open | BreakerState::HalfOpen) { 1.0 } else { 0.0 };
            (vec![("tenant", b.tenant_id.clone()), ("session", b.session_id.to_string())], open)
        })
        .collect();
    family(
        out,
        "pgcourier_breaker_open",
        "gauge",
        "1 while a session's circuit breaker is open or half-open (as last reported in et_session_health).",
        &breakers,
    );

    single(out, "pgcourier_dead_letters", "gauge", "Rows in the dead-letter queue (et_dead_letters).", g.dead_letters as f64);
    let counts: Vec<(Labels, f64)> = g
        .messages
        .iter()
        .map(|m| (vec![("status", m.status.as_str()), ("channel", m.channel.as_str()), ("tenant", m.tenant_id.as_str())], m.count as f64))
        .collect();
    family(
        out,
        "pgcourier_message_rows",
        "gauge",
        "Rows of et_messages per delivery status, channel and tenant (the counters the message triggers keep).",
        &counts,
    );
    let live: Vec<(Labels, f64)> = g.tables.iter().map(|t| (vec![("table", t.table.as_str())], t.live_rows as f64)).collect();
    family(out, "pgcourier_table_live_rows", "gauge", "Live rows per pgcourier table (statistics collector).", &live);
    let dead: Vec<(Labels, f64)> = g.tables.iter().map(|t| (vec![("table", t.table.as_str())], t.dead_rows as f64)).collect();
    family(out, "pgcourier_table_dead_rows", "gauge", "Dead rows not yet vacuumed per pgcourier table (statistics collector).", &dead);
    let bytes: Vec<(Labels, f64)> = g.tables.iter().map(|t| (vec![("table", t.table.as_str())], t.bytes as f64)).collect();
    family(out, "pgcourier_table_bytes", "gauge", "Bytes per pgcourier table with its indexes and TOAST.", &bytes);
}

/// A family with one unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    family::<&str>(out, name, kind, help, &[(vec![], value)]);
}

/// One metric family: `# HELP`, `# TYPE`, then a `name{labels} value` line per sample.
fn family<V: AsRef<str>>(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(Vec<(&'static str, V)>, f64)]) {
    if !out.is_empty() && !out.ends_with("\n\n") {
        out.push('\n');
    }
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        out.push_str(name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"{}\"", escape_label(v.as_ref()));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {}", format_value(*value));
    }
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        v.to_string()
    }
}

/// The OpenAPI paths and schemas of these routes (to merge into the API's document).
#[derive(OpenApi)]
#[openapi(
    paths(health, ready, metrics),
    tags((name = "operations", description = "Health, readiness and metrics (no API key)"))
)]
pub struct OpsDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_in_the_text_format() {
        let mut out = String::new();
        family(&mut out, "x_total", "counter", "An x.", &[(vec![("a", "q\"uote\\back\nline")], 2.0), (vec![("a", "b")], 0.5)]);
        family::<&str>(&mut out, "y", "gauge", "A y.", &[(vec![], f64::INFINITY)]);
        assert_eq!(
            out,
            "# HELP x_total An x.\n# TYPE x_total counter\nx_total{a=\"q\\\"uote\\\\back\\nline\"} 2\nx_total{a=\"b\"} 0.5\n\n\
             # HELP y A y.\n# TYPE y gauge\ny +Inf\n"
        );
    }
}
