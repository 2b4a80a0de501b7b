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
use tracing_subscriber::EnvFilter;

/// Install the global subscriber (once per process; later calls are ignored), and the metrics
/// recorder, so that everything recorded from the start is exported.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,refinery_core=warn,tokio_postgres=warn,deadpool=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    metrics_handle();
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
            .expect("the send duration buckets are not empty");
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
        "Failed sends per provider and error class (transient, rate_limited, permanent, suppress)."
    );
    metrics::describe_counter!(
        "pgcourier_inbound_decisions_total",
        "Inbound decisions made by this daemon, per kind (ai_replied, human_takeover, follow_up, no_action, error)."
    );
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
