//! Logging and metrics.
//!
//! Logging: `tracing` to stderr, human-readable or JSON (`PGCOURIER_LOG_FORMAT=json`), filtered
//! by `RUST_LOG` (default `info`).
//!
//! Metrics: one process-wide Prometheus recorder ([`metrics_handle`]), installed on first use
//! (by [`init`], and by the HTTP surface when it builds its routes). Workers record with the
//! `metrics` macros (`counter!`, `histogram!`); `GET /metrics` renders the recorder and adds the
//! gauges it reads from the database at scrape time (see `crate::http::ops`).

use crate::config::LogFormat;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber (once per process; later calls are ignored), and the metrics
/// recorder, so that everything recorded from the start is exported.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,refinery_core=warn,tokio_postgres=warn,deadpool=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.fmt_fields(JsonFields::new()).event_format(FlatJson).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    metrics_handle();
}

/// JSON log lines with every field at the top level: the event's own (`message`, `error`, ...)
/// and those of the spans it happened in (`public_id`, `tenant` and `attempt` of a send,
/// `request_id`, `method` and `path` of an HTTP request), so that `jq 'select(.public_id == ...)'`
/// finds every line about a message. An event's field wins over a span's of the same name, an
/// inner span's over an outer one's.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &tracing::Event<'_>) -> std::fmt::Result {
        let mut line = serde_json::Map::new();
        line.insert("timestamp".into(), chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true).into());
        line.insert("level".into(), event.metadata().level().as_str().into());
        line.insert("target".into(), event.metadata().target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else { continue };
                if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(fields) {
                    line.extend(map);
                }
            }
        }
        let mut own = Visitor(serde_json::Map::new());
        event.record(&mut own);
        line.extend(own.0);
        writeln!(writer, "{}", serde_json::Value::Object(line))
    }
}

/// Collects an event's fields as JSON values.
struct Visitor(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for Visitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}

/// An error and its causes, `: `-separated, on one line; tokio-postgres' bare "db error" and a
/// cause already quoted by its parent are left out.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string().replace('\n', "; ");
        if !(text.is_empty() || text == "db error" || out.contains(&text)) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        cur = err.source();
    }
    out
}

/// The send latency histogram (seconds, labelled `provider`).
pub const SEND_DURATION: &str = "pgcourier_send_duration_seconds";

/// Bucket bounds of [`SEND_DURATION`]: from a local file or log write (well under 5 ms) to a slow
/// SMTP server or HTTP provider (tens of seconds, where provider timeouts sit).
pub const SEND_DURATION_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// How often recorded histogram samples are folded into their buckets between scrapes (so that
/// an unscraped daemon does not accumulate raw samples).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed as the global `metrics` recorder on first use.
///
/// Should another global recorder already be installed (nothing in pgcourier does that), the
/// handle still renders, but only what was recorded into it: nothing.
pub fn metrics_handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(SEND_DURATION.to_owned()), SEND_DURATION_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), REQUEST_DURATION_BUCKETS))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(WEBHOOK_DURATION.to_owned()), REQUEST_DURATION_BUCKETS))
            .expect("the bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::warn!(error = %e, "another metrics recorder is installed; /metrics will not show pgcourier's counters");
        }
        describe();
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        });
        handle
    })
}

/// `# HELP` lines for what the workers record.
fn describe() {
    metrics::describe_histogram!(SEND_DURATION, metrics::Unit::Seconds, "Time a provider took to accept or refuse one send, per provider.");
    metrics::describe_counter!(
        "pgcourier_messages_total",
        "Send outcomes recorded by this daemon (status sent, queued = retry, failed, suppressed), per channel and tenant."
    );
    metrics::describe_counter!(
        "pgcourier_provider_errors_total",
        "Failed sends per provider and error class (transient, rate_limited, permanent, suppress, validation)."
    );
    metrics::describe_counter!(
        "pgcourier_send_limit_refusals_total",
        "API sends refused with 429 because a tenant send limit was reached, per tenant and limit (max_per_minute, max_per_hour, max_per_day)."
    );
    metrics::describe_counter!(
        "pgcourier_inbound_decisions_total",
        "Inbound decisions made by this daemon, per kind (ai_replied, human_takeover, follow_up, no_action, error)."
    );
    metrics::describe_counter!(
        "pgcourier_attachment_content_dropped_total",
        "Attachments whose content this daemon dropped after the retention period (tenant setting attachment_retention_days)."
    );
    metrics::describe_counter!(
        "pgcourier_retention_deleted_total",
        "Rows this daemon deleted past their tenant's retention period, per kind (messages, events, webhook_deliveries, security_events, attachment_content)."
    );
    metrics::describe_counter!("pgcourier_event_partitions_created_total", "Daily partitions of et_message_events this daemon made ahead.");
    metrics::describe_counter!(
        "pgcourier_event_partitions_dropped_total",
        "Daily partitions of et_message_events this daemon dropped once every tenant's event retention had passed them."
    );
    metrics::describe_counter!(
        "pgcourier_possible_duplicates_total",
        "Send attempts flagged possible_duplicate (an earlier attempt's outcome is unknown), per channel and tenant."
    );
    metrics::describe_counter!(
        "pgcourier_sends_abandoned_total",
        "Sends abandoned because their lease ran out during the send (the next attempt is flagged possible_duplicate), per provider."
    );
    metrics::describe_counter!(
        "pgcourier_outcomes_discarded_total",
        "Send outcomes not recorded because the row was no longer under that attempt's lease (rescued, moved by an operator, or its claim lost in a failover to an asynchronous standby)."
    );
    metrics::describe_counter!(
        "pgcourier_webhook_attempts_total",
        "Status webhook delivery attempts, per outcome (delivered, retry, dead, gone)."
    );
    metrics::describe_histogram!(
        WEBHOOK_DURATION,
        metrics::Unit::Seconds,
        "Time a tenant's webhook endpoint took to answer one delivery, per outcome."
    );
    metrics::describe_counter!(
        "pgcourier_lease_renewals_total",
        "Leases renewed in batches, per kind of work (outbound, inbound, insights)."
    );
    metrics::describe_counter!(
        "pgcourier_leases_lost_total",
        "Leases found lost at renewal (rescued or changed meanwhile; their work is dropped), per kind of work."
    );
    metrics::describe_counter!(
        "pgcourier_provider_webhooks_total",
        "Provider webhook calls (inbound messages and delivery statuses), per provider and outcome."
    );
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests served, per method, matched route and status code.");
    metrics::describe_histogram!(HTTP_DURATION, metrics::Unit::Seconds, "Time to serve an HTTP request, per method and matched route.");
    metrics::describe_gauge!(BUILD_INFO, "Always 1; the labels say which pgcourier this is.");
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    process_collector().describe();
}

/// The build info gauge (labelled `version`).
pub const BUILD_INFO: &str = "pgcourier_build_info";
/// HTTP requests (labelled `method`, `route`, `status`).
pub const HTTP_REQUESTS: &str = "pgcourier_http_requests_total";
/// HTTP request latency (labelled `method`, `route`).
pub const HTTP_DURATION: &str = "pgcourier_http_request_duration_seconds";
/// Status webhook delivery latency (labelled `outcome`).
pub const WEBHOOK_DURATION: &str = "pgcourier_webhook_delivery_duration_seconds";

/// Bucket bounds of the HTTP and webhook latencies: from a cached page (a millisecond) to a
/// request that hits the statement or delivery timeout.
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process metrics (CPU seconds, resident memory, open file descriptors, threads, start
/// time: `process_*`, as the Prometheus client libraries name them), read at each scrape.
pub fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer ({0})")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_chain_is_one_line_without_repeats() {
        let e = Outer(std::io::Error::other("inner\nsecond line"));
        assert_eq!(one_line(&e), "outer (inner\nsecond line)".replace('\n', "; "));
        let e = anyhow::anyhow!(std::io::Error::other("x")).context("doing y");
        assert_eq!(one_line(e.as_ref()), "doing y: x");
    }
}
