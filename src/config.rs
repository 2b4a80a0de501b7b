//! The daemon's settings, each declared once below: its command-line flag, its environment
//! variable, its default and its help (what `pgcourier run --help` prints).
//!
//! A value comes from the command line, else the environment, else the `--config` file, else the
//! default. The file is TOML whose keys are the variables' names without `PGCOURIER_`, in lower
//! case (`lease = "60s"` for `PGCOURIER_LEASE`, `database_url` for `DATABASE_URL`); an unknown
//! key is an error naming it. Durations take humantime spellings: `500ms`, `1s`, `2m`, `6h`.
//! An error names the setting the way the operator wrote it (`PGCOURIER_LEASE`, `--lease`, or
//! `lease in FILE`).
//!
//! Secrets are never read here: sessions name them with `credentials_ref`, resolved from
//! `PGCOURIER_SECRET_<REF>` by the channel registry (a variable per secret, so not a flag).
//! `RUST_LOG` (a `tracing` filter, default `info`) is read by [`crate::telemetry`].

use crate::domain::network::Allow;
use clap::{ArgMatches, Args, FromArgMatches};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// What a daemon does (`PGCOURIER_ROLE`): every role may run on many nodes against one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The HTTP surface and every worker.
    All,
    /// Claims and sends, decides inbound, delivers webhooks, keeps insights, runs the periodic
    /// work (maintenance and statistics under one leader); its HTTP surface serves only
    /// `/health`, `/ready` and `/metrics`.
    Worker,
    /// The API, provider webhooks, the console, `/health`, `/ready`, `/metrics`; never claims,
    /// never runs periodic work, holds no LISTEN connection.
    Web,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Worker => "worker",
            Role::Web => "web",
        }
    }

    /// Claims work and may lead the periodic work.
    pub fn works(self) -> bool {
        self != Role::Web
    }

    /// Serves the API, provider webhooks and the console.
    pub fn serves(self) -> bool {
        self != Role::Worker
    }
}

/// The file under the data directory where `pgcourier up` writes the URL of its private
/// PostgreSQL while it runs; the other commands use it when `DATABASE_URL` is not set.
pub const UP_URL_FILE: &str = "database_url";

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL connection string. Unset: the private PostgreSQL that a running `pgcourier up`
    /// announced in DATA_DIR/database_url.
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true, help_heading = "Database")]
    pub database_url: Option<String>,
    /// Where `up` keeps its private PostgreSQL, the demo outbox, the demo API key and its connection URL.
    #[arg(long, env = "PGCOURIER_DATA_DIR", default_value = ".pgcourier", value_name = "DIR", help_heading = "Database")]
    pub data_dir: PathBuf,
    /// The directory of `initdb` and `pg_ctl` for the private PostgreSQL of `up` [default: `pg_config
    /// --bindir`, else the newest /usr/lib/postgresql/*/bin, else /usr/local/pgsql/bin].
    #[arg(long, env = "PGCOURIER_PG_BIN", value_name = "DIR", help_heading = "Database")]
    pub pg_bin: Option<PathBuf>,
    /// The session connections (LISTEN, the leader lock, migrations) go here when set, e.g.
    /// straight to PostgreSQL while DATABASE_URL points at a transaction pooler [default: DATABASE_URL].
    #[arg(long, env = "PGCOURIER_LISTEN_URL", value_name = "URL", hide_env_values = true, help_heading = "Database")]
    pub listen_url: Option<String>,
    /// `transaction`: DATABASE_URL is a transaction-mode pooler (PgBouncer pool_mode = transaction):
    /// the pool's statements go unnamed (re-parsed per execution), no session settings are sent,
    /// and the session connections need PGCOURIER_LISTEN_URL (or PGCOURIER_LISTEN=off).
    #[arg(long, env = "PGCOURIER_DB_POOLER", default_value = "none", value_parser = pooler, action = clap::ArgAction::Set, value_name = "none|transaction", help_heading = "Database")]
    pub db_pooler: bool,
    /// Database connections in the pool.
    #[arg(long, env = "PGCOURIER_POOL_SIZE", default_value = "8", value_parser = count, value_name = "N", help_heading = "Database")]
    pub pool_size: usize,
    /// `off`: poll-only mode, no session connection at all (no LISTEN, no leader lock: every
    /// worker runs the periodic passes, each safe on many nodes); work is found by polling every
    /// poll interval.
    #[arg(long, env = "PGCOURIER_LISTEN", default_value = "on", value_parser = on_off, action = clap::ArgAction::Set, value_name = "on|off", help_heading = "Database")]
    pub listen: bool,

    /// What this daemon does: `all`; `worker` (claims, sends, periodic work; HTTP only for
    /// /health, /ready, /metrics); `web` (API, provider webhooks, console; never claims).
    #[arg(long, env = "PGCOURIER_ROLE", default_value = "all", value_parser = role, value_name = "all|worker|web", help_heading = "Sending")]
    pub role: Role,
    /// Claim at least this often, NOTIFY or not.
    #[arg(long, env = "PGCOURIER_POLL_INTERVAL", default_value = "1s", value_parser = duration, value_name = "DURATION", help_heading = "Sending")]
    pub poll_interval: Duration,
    /// How long in-flight sends may finish after SIGTERM/SIGINT.
    #[arg(long, env = "PGCOURIER_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = duration, value_name = "DURATION", help_heading = "Sending")]
    pub shutdown_timeout: Duration,
    /// A claim's lease, renewed every third of it while the work runs; a lease not renewed in
    /// time is rescued back to the queue.
    #[arg(long, env = "PGCOURIER_LEASE", default_value = "60s", value_parser = duration, value_name = "DURATION", help_heading = "Sending")]
    pub lease: Duration,
    /// How often the rescuer looks for expired leases.
    #[arg(long, env = "PGCOURIER_RESCUE_INTERVAL", default_value = "5s", value_parser = duration, value_name = "DURATION", help_heading = "Sending")]
    pub rescue_interval: Duration,
    /// Messages per claim.
    #[arg(long, env = "PGCOURIER_BATCH_SIZE", default_value = "500", value_parser = count, value_name = "N", help_heading = "Sending")]
    pub batch_size: usize,
    /// Sends in progress at once, all sessions together.
    #[arg(long, env = "PGCOURIER_MAX_IN_FLIGHT", default_value = "1000", value_parser = count, value_name = "N", help_heading = "Sending")]
    pub max_in_flight: usize,
    /// Sends in progress at once per session (a session's `config.concurrency` overrides it).
    #[arg(long, env = "PGCOURIER_SESSION_CONCURRENCY", default_value = "16", value_parser = count, value_name = "N", help_heading = "Sending")]
    pub session_concurrency: usize,
    /// Written to `leased_by` and as the actor of the daemon's events [default: <host>-<pid>-<random>].
    #[arg(long, env = "PGCOURIER_WORKER_ID", default_value_t = default_worker_id(), hide_default_value = true, value_name = "NAME", help_heading = "Sending")]
    pub worker_id: String,

    /// Inbound messages decided per claim.
    #[arg(long, env = "PGCOURIER_INBOUND_BATCH", default_value = "1000", value_parser = count, value_name = "N", help_heading = "Inbound and insights")]
    pub inbound_batch: usize,
    /// Decisions tried before a message stays in `inbound_error`.
    #[arg(long, env = "PGCOURIER_INBOUND_MAX_ATTEMPTS", default_value = "3", value_parser = count, value_name = "N", help_heading = "Inbound and insights")]
    pub inbound_max_attempts: usize,
    /// An errored decision is retried after base · 2^(attempt-1).
    #[arg(long, env = "PGCOURIER_INBOUND_RETRY_BASE", default_value = "2s", value_parser = duration, value_name = "DURATION", help_heading = "Inbound and insights")]
    pub inbound_retry_base: Duration,
    /// How quiet a thread must be before its insight is recomputed (a burst costs one recompute).
    #[arg(long, env = "PGCOURIER_INSIGHTS_DEBOUNCE", default_value = "2s", value_parser = duration, value_name = "DURATION", help_heading = "Inbound and insights")]
    pub insights_debounce: Duration,

    /// The HTTP surface (API, provider webhooks, health, metrics, console); `off` disables it.
    #[arg(long, env = "PGCOURIER_HTTP_ADDR", default_value = "127.0.0.1:8080", value_parser = http_addr, value_name = "ADDR|off", help_heading = "HTTP")]
    pub http_addr: ::std::option::Option<SocketAddr>,
    /// The public origin providers call (Twilio signs the URL), e.g. https://courier.example.com.
    #[arg(long, env = "PGCOURIER_PUBLIC_URL", value_name = "URL", help_heading = "HTTP")]
    pub public_url: Option<String>,
    /// Request bodies over this many bytes are refused with 413 (the seed's 30 MiB; attachments
    /// travel base64-encoded, 4/3 of their size, so 25 MiB of files need about 34 MiB).
    #[arg(long, env = "PGCOURIER_HTTP_MAX_BODY", default_value = "31457280", value_parser = count, value_name = "BYTES", help_heading = "HTTP")]
    pub http_max_body: usize,
    /// The operator console at /console (and / redirecting there); `off` leaves only the API.
    #[arg(long, env = "PGCOURIER_CONSOLE", default_value = "on", value_parser = on_off, action = clap::ArgAction::Set, value_name = "on|off", help_heading = "HTTP")]
    pub console: bool,
    /// How long a console sign-in lasts before the operator signs in again.
    #[arg(long, env = "PGCOURIER_CONSOLE_SESSION_TTL", default_value = "12h", value_parser = duration, value_name = "DURATION", help_heading = "HTTP")]
    pub console_session_ttl: Duration,

    /// SSRF exceptions for every URL a tenant makes the daemon call (status webhooks, http_bridge
    /// URLs, providers' api_base, the LLM's base_url), comma-separated: loopback, private,
    /// link_local, cgnat [default: none].
    #[arg(long, env = "PGCOURIER_NETWORK_ALLOW", default_value = "", hide_default_value = true, value_parser = allow, value_name = "CLASSES", help_heading = "HTTP")]
    pub network_allow: Allow,
    /// How often the webhook worker looks for due deliveries, besides NOTIFY.
    #[arg(long, env = "PGCOURIER_WEBHOOK_POLL", default_value = "500ms", value_parser = duration, value_name = "DURATION", help_heading = "Status webhooks")]
    pub webhook_poll: Duration,
    /// A delivery's HTTP timeout.
    #[arg(long, env = "PGCOURIER_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = duration, value_name = "DURATION", help_heading = "Status webhooks")]
    pub webhook_timeout: Duration,
    /// Attempts before a delivery is dead.
    #[arg(long, env = "PGCOURIER_WEBHOOK_MAX_ATTEMPTS", default_value = "8", value_parser = count32, value_name = "N", help_heading = "Status webhooks")]
    pub webhook_max_attempts: u32,
    /// Backoff base between attempts (full jitter).
    #[arg(long, env = "PGCOURIER_WEBHOOK_RETRY_BASE", default_value = "10s", value_parser = duration, value_name = "DURATION", help_heading = "Status webhooks")]
    pub webhook_retry_base: Duration,
    /// Backoff cap between attempts.
    #[arg(long, env = "PGCOURIER_WEBHOOK_RETRY_CAP", default_value = "6h", value_parser = duration, value_name = "DURATION", help_heading = "Status webhooks")]
    pub webhook_retry_cap: Duration,
    /// An endpoint is disabled after this many dead deliveries in a row.
    #[arg(long, env = "PGCOURIER_WEBHOOK_DISABLE_AFTER", default_value = "20", value_parser = count32, value_name = "N", help_heading = "Status webhooks")]
    pub webhook_disable_after: u32,

    /// How often the leader runs its maintenance pass: the audit trail's daily partitions, and each
    /// tenant's history past its retention periods (messages, dead letters, events, webhook
    /// deliveries, security events, attachment content); one daemon at a time.
    #[arg(long, env = "PGCOURIER_MAINTENANCE_INTERVAL", default_value = "5m", value_parser = duration, value_name = "DURATION", help_heading = "Maintenance")]
    pub maintenance_interval: Duration,

    /// `json`: one JSON object per line (every send line carries the message's `public_id`).
    /// The level filter is `RUST_LOG` (default `info`, e.g. `RUST_LOG=debug` or `RUST_LOG=pgcourier=debug`).
    #[arg(long, env = "PGCOURIER_LOG_FORMAT", default_value = "text", value_parser = log_format, value_name = "text|json", help_heading = "Logging")]
    pub log_format: LogFormat,
}

/// A setting that could not be used; `name` is its environment variable, the message names it
/// the way it was given.
#[derive(Debug, thiserror::Error)]
#[error("{given}: {problem}")]
pub struct ConfigError {
    pub name: String,
    pub given: String,
    pub problem: String,
}

impl ConfigError {
    fn file(path: &Path, problem: String) -> ConfigError {
        let given = format!("--config {}", path.display());
        ConfigError { name: "PGCOURIER_CONFIG".into(), given, problem }
    }
}

/// A `--config` file: TOML, keys as in the module documentation.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    values: Vec<(String, String)>,
}

impl ConfigFile {
    pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::file(path, e.to_string()))?;
        ConfigFile::parse(path, &text)
    }

    /// The file's settings; an unknown key or a value that is not a string, a number, a
    /// boolean or a list of strings is an error naming the key.
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::file(path, e.message().to_owned()))?;
        let known: Vec<Setting> = settings();
        let mut values = Vec::new();
        for (key, value) in table {
            let Some(setting) = known.iter().find(|s| s.key == key) else {
                return Err(ConfigError::file(
                    path,
                    format!("unknown key `{key}` (keys are the variables without PGCOURIER_, in lower case: lease, batch_size, ...; see pgcourier run --help)"),
                ));
            };
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Boolean(b) if setting.key == "listen" => (if b { "on" } else { "off" }).to_owned(),
                toml::Value::Array(items) if items.iter().all(|i| i.is_str()) => {
                    items.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>().join(",")
                }
                other => {
                    return Err(ConfigError {
                        name: setting.env.clone(),
                        given: format!("{key} in {}", path.display()),
                        problem: format!("{other} is not a {} value (write it as a string, e.g. {key} = \"...\")", other.type_str()),
                    })
                }
            };
            values.push((key, text));
        }
        Ok(ConfigFile { path: path.to_owned(), values })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// One declared setting, as clap knows it.
#[derive(Debug, Clone)]
struct Setting {
    id: String,
    long: String,
    env: String,
    /// The `--config` key: the variable without `PGCOURIER_`, in lower case.
    key: String,
}

/// The settings alone, as a command that takes them as flags (no binary name).
fn settings_command() -> clap::Command {
    Config::augment_args(clap::Command::new("pgcourier-settings").no_binary_name(true))
}

fn settings() -> Vec<Setting> {
    settings_command()
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_string_lossy().into_owned();
            Some(Setting {
                id: a.get_id().to_string(),
                long: a.get_long()?.to_owned(),
                key: env.strip_prefix("PGCOURIER_").unwrap_or(&env).to_ascii_lowercase(),
                env,
            })
        })
        .collect()
}

/// The text of `.env.example`: every setting with its help, heading by heading, commented out
/// at its default (`#PGCOURIER_LEASE=60s`), so that an operator uncomments what they change. The
/// file in the repository is this text (a unit test compares them).
pub fn env_example() -> String {
    let mut out = String::from(
        "# Every setting of `pgcourier run`, generated from src/config.rs (`pgcourier run --help` prints the same).\n\
         # Uncomment and change what you need; precedence: command line, environment, --config FILE, default.\n\
         # Secrets are not settings: a session's credentials_ref NAME is read from PGCOURIER_SECRET_<NAME>.\n\
         # RUST_LOG is the log filter (default info), e.g. RUST_LOG=pgcourier=debug.\n",
    );
    let mut heading = None;
    for arg in settings_command().get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        if arg.get_help_heading() != heading {
            heading = arg.get_help_heading();
            out.push_str(&format!("\n# --- {} ---\n", heading.unwrap_or("Other")));
        }
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        for line in help.lines() {
            out.push_str(&format!("# {line}\n"));
        }
        // a default computed per process (the worker id) is described in the help instead
        let default: Vec<String> = if arg.is_hide_default_value_set() {
            Vec::new()
        } else {
            arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect()
        };
        out.push_str(&format!("#{}={}\n", env.to_string_lossy(), default.join(",")));
    }
    out
}

/// Where a value came from.
enum Given<'a> {
    CommandLine,
    Env,
    File(&'a Path),
}

impl Config {
    /// The settings from the process environment and defaults.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::resolve(None, |k| std::env::var(k).ok(), None)
    }

    /// The settings from any variable → value lookup (tests pass a map) and defaults.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Config::resolve(None, get, None)
    }

    /// The settings from the command line (`cli`: matches of a command that flattens [`Config`];
    /// only values typed there count), else `env`, else `file`, else the defaults.
    pub fn resolve(
        cli: Option<&ArgMatches>,
        env: impl Fn(&str) -> Option<String>,
        file: Option<&ConfigFile>,
    ) -> Result<Config, ConfigError> {
        let settings = settings();
        let mut argv: Vec<String> = Vec::new();
        let mut given: Vec<(&Setting, Given, String)> = Vec::new();
        for s in &settings {
            let typed = cli
                .filter(|m| m.value_source(&s.id) == Some(clap::parser::ValueSource::CommandLine))
                .and_then(|m| m.get_raw(&s.id))
                .and_then(|mut raw| raw.next())
                .map(|v| (Given::CommandLine, v.to_string_lossy().into_owned()));
            let value = typed
                .or_else(|| env(&s.env).map(|v| (Given::Env, v)))
                .or_else(|| file.and_then(|f| Some((Given::File(&f.path), f.get(&s.key)?.to_owned()))));
            if let Some((from, v)) = value {
                argv.push(format!("--{}={v}", s.long));
                given.push((s, from, v));
            }
        }
        // parse what was gathered with the declared parsers; the process environment is not
        // consulted again (it was, above, through `env`)
        let command = settings_command().mut_args(|a| a.env(None::<&str>));
        let matches = command.try_get_matches_from(&argv).map_err(|e| explain(&e, &given))?;
        let mut config = Config::from_arg_matches(&matches).map_err(|e| explain(&e, &given))?;
        config.database_url = config.database_url.filter(|u| !u.trim().is_empty());
        config.listen_url = config.listen_url.filter(|u| !u.trim().is_empty());
        Ok(config)
    }

    /// The database to connect to: `DATABASE_URL`, else the URL of the private PostgreSQL that a
    /// running `pgcourier up` wrote under the data directory.
    pub fn database(&self) -> Result<DatabaseUrl, String> {
        if let Some(url) = &self.database_url {
            return Ok(DatabaseUrl { url: url.clone(), from_up: None });
        }
        let file = self.data_dir.join(UP_URL_FILE);
        match std::fs::read_to_string(&file) {
            Ok(url) if !url.trim().is_empty() => Ok(DatabaseUrl { url: url.trim().to_owned(), from_up: Some(file) }),
            _ => Err(format!(
                "DATABASE_URL is not set and no `pgcourier up` is running with data directory {} (no {}); \
                 set DATABASE_URL, start `pgcourier up`, or point PGCOURIER_DATA_DIR at the directory `up` uses",
                self.data_dir.display(),
                file.display()
            )),
        }
    }
}

/// A connection string and, when `pgcourier up` announced it, the file it was read from.
#[derive(Debug, Clone)]
pub struct DatabaseUrl {
    pub url: String,
    pub from_up: Option<PathBuf>,
}

impl DatabaseUrl {
    /// How to name this database in an error: `DATABASE_URL` or the file `up` wrote.
    pub fn origin(&self) -> String {
        match &self.from_up {
            None => "DATABASE_URL".into(),
            Some(file) => format!("the database of `pgcourier up` ({})", file.display()),
        }
    }
}

/// A clap error about a gathered value, as one line naming where the value came from.
fn explain(e: &clap::Error, given: &[(&Setting, Given, String)]) -> ConfigError {
    use clap::error::{ContextKind, ContextValue};
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let problem = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_else(|| e.kind().to_string());
    let found = given.iter().find(|(s, ..)| {
        arg.strip_prefix("--")
            .and_then(|a| a.strip_prefix(s.long.as_str()))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '=']))
    });
    match found {
        Some((s, from, value)) => ConfigError {
            name: s.env.clone(),
            given: match from {
                Given::CommandLine => format!("--{}", s.long),
                Given::Env => s.env.clone(),
                Given::File(path) => format!("{} in {}", s.key, path.display()),
            },
            problem: format!("{value:?} {problem}"),
        },
        None => ConfigError {
            name: String::new(),
            given: "configuration".into(),
            problem: e.to_string().lines().next().unwrap_or("").to_owned(),
        },
    }
}

fn duration(v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v.trim()).map_err(|e| format!("is not a duration like 500ms or 2s ({e})"))
}

fn count(v: &str) -> Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("is not a positive whole number".into()),
    }
}

fn count32(v: &str) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("is not a positive whole number".into()),
    }
}

fn on_off(v: &str) -> Result<bool, String> {
    match v.trim() {
        "" | "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("expected on or off".into()),
    }
}

fn pooler(v: &str) -> Result<bool, String> {
    match v.trim() {
        "" | "none" => Ok(false),
        "transaction" => Ok(true),
        _ => Err("expected none or transaction".into()),
    }
}

fn role(v: &str) -> Result<Role, String> {
    match v.trim() {
        "" | "all" => Ok(Role::All),
        "worker" => Ok(Role::Worker),
        "web" => Ok(Role::Web),
        _ => Err("expected all, worker or web".into()),
    }
}

fn log_format(v: &str) -> Result<LogFormat, String> {
    match v.trim() {
        "" | "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected text or json".into()),
    }
}

fn http_addr(v: &str) -> Result<Option<SocketAddr>, String> {
    match v.trim() {
        "off" | "" => Ok(None),
        v => v.parse().map(Some).map_err(|_| "is not an address like 127.0.0.1:8080 (or off)".into()),
    }
}

fn allow(v: &str) -> Result<Allow, String> {
    Allow::parse(v)
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
        assert_eq!(c.http_addr, Some(SocketAddr::from(([127, 0, 0, 1], 8080))));
        assert!(c.listen && c.database_url.is_none() && c.public_url.is_none());
        assert_eq!(c.network_allow, Allow::NONE);
        assert_eq!((c.webhook_max_attempts, c.webhook_retry_cap), (8, Duration::from_secs(6 * 3600)));
        let c = from(&[("PGCOURIER_POLL_INTERVAL", "250ms"), ("PGCOURIER_LOG_FORMAT", "json"), ("PGCOURIER_HTTP_ADDR", "off")]).unwrap();
        assert_eq!(c.poll_interval, Duration::from_millis(250));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.http_addr, None);
        assert!(from(&[("DATABASE_URL", " ")]).unwrap().database_url.is_none());
    }

    #[test]
    fn errors_name_the_variable() {
        let e = from(&[("PGCOURIER_LEASE", "soon")]).unwrap_err();
        assert_eq!(e.name, "PGCOURIER_LEASE");
        assert_eq!(e.to_string(), r#"PGCOURIER_LEASE: "soon" is not a duration like 500ms or 2s (expected number at 0)"#);
        assert!(from(&[("PGCOURIER_BATCH_SIZE", "0")]).unwrap_err().to_string().starts_with("PGCOURIER_BATCH_SIZE: \"0\""));
        assert!(from(&[("PGCOURIER_NETWORK_ALLOW", "all")]).unwrap_err().to_string().starts_with("PGCOURIER_NETWORK_ALLOW: "));
    }

    /// Every setting has a flag, a variable and a file key, and the key is the variable's tail.
    #[test]
    fn every_setting_is_a_flag_a_variable_and_a_key() {
        let all = settings();
        assert_eq!(all.len(), settings_command().get_arguments().filter(|a| a.get_id() != "help").count(), "a setting without a variable");
        for s in &all {
            assert_eq!(s.key, s.id, "{}: the file key is the field name", s.env);
            assert_eq!(s.long, s.id.replace('_', "-"), "{}", s.env);
        }
        assert!(all.iter().any(|s| s.env == "DATABASE_URL" && s.key == "database_url"));
    }

    /// `.env.example` lists every setting at its default; regenerate it with
    /// `PGCOURIER_BLESS=1 cargo test --lib env_example`.
    #[test]
    fn env_example_lists_every_setting() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example");
        let want = env_example();
        if std::env::var_os("PGCOURIER_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(have == want, ".env.example is stale: run PGCOURIER_BLESS=1 cargo test --lib env_example");
        for s in settings() {
            assert!(have.contains(&format!("#{}=", s.env)), "{} is listed", s.env);
        }
    }

    #[test]
    fn precedence_is_command_line_then_environment_then_file_then_default() {
        let file = ConfigFile::parse(
            Path::new("pgcourier.toml"),
            "lease = \"7s\"\nbatch_size = 7\npoll_interval = \"7s\"\nlisten = false\nnetwork_allow = [\"loopback\", \"private\"]\n",
        )
        .unwrap();
        let cli = settings_command().try_get_matches_from(["--lease", "5s"]).unwrap();
        let env = |k: &str| {
            (k == "PGCOURIER_LEASE" || k == "PGCOURIER_BATCH_SIZE").then(|| "6".to_owned()).map(|v| {
                if k == "PGCOURIER_LEASE" {
                    "6s".into()
                } else {
                    v
                }
            })
        };
        let c = Config::resolve(Some(&cli), env, Some(&file)).unwrap();
        assert_eq!(c.lease, Duration::from_secs(5), "command line over environment and file");
        assert_eq!(c.batch_size, 6, "environment over file");
        assert_eq!(c.poll_interval, Duration::from_secs(7), "file over default");
        assert!(!c.listen);
        assert!(c.network_allow.loopback && c.network_allow.private && !c.network_allow.cgnat);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30), "default");
    }

    #[test]
    fn file_errors_name_the_key_and_the_file() {
        let e = ConfigFile::parse(Path::new("p.toml"), "leese = \"60s\"\n").unwrap_err().to_string();
        assert!(e.starts_with("--config p.toml: unknown key `leese`"), "{e}");
        let e = ConfigFile::parse(Path::new("p.toml"), "lease = [1]\n").unwrap_err().to_string();
        assert!(e.starts_with("lease in p.toml: "), "{e}");
        let file = ConfigFile::parse(Path::new("p.toml"), "lease = \"soon\"\n").unwrap();
        let e = Config::resolve(None, |_| None, Some(&file)).unwrap_err();
        assert_eq!(e.name, "PGCOURIER_LEASE");
        assert!(e.to_string().starts_with(r#"lease in p.toml: "soon" is not a duration"#), "{e}");
        let cli = settings_command().try_get_matches_from(["--batch-size", "x"]);
        assert!(cli.is_err(), "clap checks what is typed");
    }
}
