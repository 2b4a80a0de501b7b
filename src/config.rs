//! Typed daemon configuration from the environment (`PGCOURIER_*`, `DATABASE_URL`).
//! Durations accept humantime spellings: `500ms`, `1s`, `2m`. Secrets are never read here:
//! sessions name them with `credentials_ref`, resolved by the channel registry.

use std::time::Duration;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`; `None` makes `pgcourier up` start its private cluster.
    pub database_url: Option<String>,
    /// `PGCOURIER_POLL_INTERVAL` (1s): claim at least this often even without a NOTIFY.
    pub poll_interval: Duration,
    /// `PGCOURIER_SHUTDOWN_TIMEOUT` (30s): how long in-flight sends may finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// `PGCOURIER_LEASE` (60s): how long a claimed message is ours before the rescuer takes it back.
    pub lease: Duration,
    /// `PGCOURIER_RESCUE_INTERVAL` (5s): how often expired leases are looked for.
    pub rescue_interval: Duration,
    /// `PGCOURIER_BATCH_SIZE` (500): messages per claim.
    pub batch_size: usize,
    /// `PGCOURIER_MAX_IN_FLIGHT` (1000): sends in progress at once, all sessions together.
    pub max_in_flight: usize,
    /// `PGCOURIER_SESSION_CONCURRENCY` (16): sends in progress at once per session, unless the
    /// session's `config.concurrency` says otherwise.
    pub session_concurrency: usize,
    /// `PGCOURIER_POOL_SIZE` (8): database connections in the pool.
    pub pool_size: usize,
    /// `PGCOURIER_WORKER_ID` (host-pid-random): the name written into `leased_by`.
    pub worker_id: String,
    /// `PGCOURIER_LOG_FORMAT` (`text` | `json`).
    pub log_format: LogFormat,
    /// `PGCOURIER_HTTP_ADDR` (127.0.0.1:8080; `off` disables the HTTP surface).
    pub http_addr: Option<std::net::SocketAddr>,
    /// `PGCOURIER_INBOUND_BATCH` (1000): inbound messages decided per claim.
    pub inbound_batch: usize,
    /// `PGCOURIER_INBOUND_MAX_ATTEMPTS` (3): decisions tried before a message stays in `inbound_error`.
    pub inbound_max_attempts: usize,
    /// `PGCOURIER_INBOUND_RETRY_BASE` (2s): an errored decision is retried after base · 2^(attempt-1).
    pub inbound_retry_base: Duration,
    /// `PGCOURIER_INSIGHTS_DEBOUNCE` (2s): a thread's insight is recomputed once its newest
    /// change is this old, so a burst of messages costs one recompute.
    pub insights_debounce: Duration,
    /// `PGCOURIER_LISTEN` (`on` | `off`): `off` runs without a LISTEN connection (for setups with
    /// no session-level connection); work is then found by polling every poll interval.
    pub listen: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    pub name: &'static str,
    pub problem: String,
}

impl Config {
    /// Read the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Read the configuration from any key → value lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let duration = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => humantime::parse_duration(v.trim())
                    .map_err(|e| ConfigError { name, problem: format!("{v:?} is not a duration like 500ms or 2s ({e})") }),
            }
        };
        let count = |name: &'static str, default: usize| -> Result<usize, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(ConfigError { name, problem: format!("{v:?} is not a positive whole number") }),
                },
            }
        };
        let log_format = match get("PGCOURIER_LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("") | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError { name: "PGCOURIER_LOG_FORMAT", problem: format!("{other:?}: expected text or json") })
            }
        };
        Ok(Config {
            database_url: get("DATABASE_URL").filter(|v| !v.trim().is_empty()),
            poll_interval: duration("PGCOURIER_POLL_INTERVAL", Duration::from_secs(1))?,
            shutdown_timeout: duration("PGCOURIER_SHUTDOWN_TIMEOUT", Duration::from_secs(30))?,
            lease: duration("PGCOURIER_LEASE", Duration::from_secs(60))?,
            rescue_interval: duration("PGCOURIER_RESCUE_INTERVAL", Duration::from_secs(5))?,
            batch_size: count("PGCOURIER_BATCH_SIZE", 500)?,
            max_in_flight: count("PGCOURIER_MAX_IN_FLIGHT", 1000)?,
            session_concurrency: count("PGCOURIER_SESSION_CONCURRENCY", 16)?,
            pool_size: count("PGCOURIER_POOL_SIZE", 8)?,
            worker_id: get("PGCOURIER_WORKER_ID").unwrap_or_else(default_worker_id),
            log_format,
            http_addr: match get("PGCOURIER_HTTP_ADDR").as_deref().map(str::trim) {
                Some("off") | Some("") => None,
                Some(v) => Some(v.parse().map_err(|_| ConfigError {
                    name: "PGCOURIER_HTTP_ADDR",
                    problem: format!("{v:?} is not an address like 127.0.0.1:8080 (or off)"),
                })?),
                None => Some(std::net::SocketAddr::from(([127, 0, 0, 1], 8080))),
            },
            inbound_batch: count("PGCOURIER_INBOUND_BATCH", 1000)?,
            inbound_max_attempts: count("PGCOURIER_INBOUND_MAX_ATTEMPTS", 3)?,
            inbound_retry_base: duration("PGCOURIER_INBOUND_RETRY_BASE", Duration::from_secs(2))?,
            insights_debounce: duration("PGCOURIER_INSIGHTS_DEBOUNCE", Duration::from_secs(2))?,
            listen: match get("PGCOURIER_LISTEN").as_deref().map(str::trim) {
                None | Some("") | Some("on") => true,
                Some("off") => false,
                Some(other) => return Err(ConfigError { name: "PGCOURIER_LISTEN", problem: format!("{other:?}: expected on or off") }),
            },
        })
    }
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into());
    format!("{host}-{}-{:04x}", std::process::id(), rand::random::<u16>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        let c = from(&[]).unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(1));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert!(c.database_url.is_none());
        let c = from(&[("PGCOURIER_POLL_INTERVAL", "250ms"), ("PGCOURIER_LOG_FORMAT", "json")]).unwrap();
        assert_eq!(c.poll_interval, Duration::from_millis(250));
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn errors_name_the_variable() {
        let e = from(&[("PGCOURIER_LEASE", "soon")]).unwrap_err();
        assert_eq!(e.name, "PGCOURIER_LEASE");
        assert!(from(&[("PGCOURIER_BATCH_SIZE", "0")]).unwrap_err().to_string().contains("PGCOURIER_BATCH_SIZE"));
    }
}
