//! The `pgcourier` command line: parse, build config, call into the library.

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use pgcourier::config::{Config, ConfigFile, DatabaseUrl};
use pgcourier::{cluster, daemon, db, status, telemetry};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "pgcourier", version, about = "A Postgres-native messaging daemon")]
struct Cli {
    /// Settings from a TOML file: keys are the variables without PGCOURIER_, in lower case
    /// (`lease = "60s"`, `database_url = "postgres://..."`). The command line and the environment
    /// override it.
    #[arg(long = "config", env = "PGCOURIER_CONFIG", global = true, value_name = "FILE")]
    config_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start here: run the daemon on DATABASE_URL, or on a private PostgreSQL under ./.pgcourier/
    /// (its URL is written to DATA_DIR/database_url while it runs, for the other commands).
    Up {
        #[command(flatten)]
        settings: Config,
    },
    /// Run the daemon against DATABASE_URL (migrates first). Logging: RUST_LOG (default info).
    Run {
        #[command(flatten)]
        settings: Config,
    },
    /// Apply the schema migrations and triggers to DATABASE_URL.
    Migrate,
    /// Queue health per channel and state, message counts and the newest dead letters.
    Status,
    /// Ask the local daemon's /ready (at PGCOURIER_HTTP_ADDR; 0.0.0.0 is asked on 127.0.0.1):
    /// exit 0 when it answers ready, 1 with the reason otherwise (the container's HEALTHCHECK).
    Health {
        /// How long to wait for the answer.
        #[arg(long, default_value = "5s")]
        timeout: String,
    },
    /// One message with its timeline, by id or public id (every tenant's, unless --tenant).
    Show {
        /// The message's id (et_messages.id) or public id (the API's messageId).
        message: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// API keys for the HTTP surface (the key is printed once, at creation or rotation).
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Tenants: create, list, deactivate, activate (the platform key's /v1/tenants does the same).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Its slug: lower-case letters, digits, _ and - (at most 63).
        id: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Settings as a JSON object.
        #[arg(long, default_value = "{}")]
        settings: String,
    },
    /// List every tenant.
    List,
    /// Deactivate a tenant: its API keys are refused (403) until it is activated again.
    Deactivate { id: String },
    /// Activate a deactivated tenant.
    Activate { id: String },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Create a key for a tenant, or a platform key (--platform), and print it (it is never shown again).
    Create {
        #[arg(long, required_unless_present = "platform", conflicts_with = "platform")]
        tenant: Option<String>,
        /// A platform key: no tenant; administers every tenant under /v1/tenants (and nothing else).
        #[arg(long)]
        platform: bool,
        /// Comma-separated: send, read, admin.
        #[arg(long, default_value = "send,read")]
        scopes: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Expire after this long (e.g. 90d, 12h); never when absent.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List a tenant's keys (prefix, scopes, expiry, revocation, last use).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key by its prefix.
    Revoke {
        #[arg(long)]
        tenant: String,
        prefix: String,
    },
    /// Replace a key by a new one (printed once) with the same name, scopes and expiry.
    Rotate {
        /// The key's tenant; absent for a platform key.
        #[arg(long)]
        tenant: Option<String>,
        prefix: String,
        /// How long the old key keeps working beside the new one (e.g. 1h; at most 7d). Default: stops at once.
        #[arg(long, default_value = "0s")]
        overlap: String,
    },
}

/// DATABASE_URL, else the URL a running `pgcourier up` wrote; and how to name it in errors.
fn database(config: &Config) -> anyhow::Result<(tokio_postgres::Config, String)> {
    let url: DatabaseUrl = config.database().map_err(anyhow::Error::msg)?;
    let origin = url.origin();
    let parsed = url.url.parse().with_context(|| format!("{origin} is not a valid PostgreSQL connection string"))?;
    Ok((parsed, origin))
}

async fn connect(config: &Config) -> anyhow::Result<tokio_postgres::Client> {
    let (db, origin) = database(config)?;
    db::connect(&db).await.with_context(|| format!("connecting to {origin}"))
}

/// A token cancelled by the first SIGINT or SIGTERM.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        }
        t.cancel();
    });
    token
}

/// Exit 0, or print the error as one line (`error: ...`, its causes `: `-separated, no
/// backtrace) and exit 1. (Usage errors are clap's, exit 2.)
fn main() -> std::process::ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => return parse_error(e),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime");
    match runtime.block_on(run(cli, &matches)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", telemetry::one_line(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

/// clap checks the settings of `run` and `up` as it parses, those from the environment too: a
/// bad variable is a configuration error (one line naming it, exit 1) as in the other commands,
/// not a usage error.
fn parse_error(e: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue) {
        if let Err(bad) = Config::from_env() {
            eprintln!("error: {bad}");
            return std::process::ExitCode::FAILURE;
        }
    }
    e.exit()
}

async fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let file = cli.config_file.as_deref().map(ConfigFile::read).transpose()?;
    // `run` and `up` take the settings as flags too; the other commands from the environment and the file
    let flags = matches.subcommand().filter(|(name, _)| matches!(*name, "run" | "up")).map(|(_, m)| m);
    let config = Config::resolve(flags, |k| std::env::var(k).ok(), file.as_ref())?;
    telemetry::init(config.log_format);
    match cli.command {
        Command::Migrate => {
            let mut client = connect(&config).await?;
            let report = db::migrate::migrate(&mut client).await?;
            for m in &report.applied {
                println!("applied {m}");
            }
            if report.applied.is_empty() {
                println!("schema is current");
            }
            println!("triggers {}", if report.triggers_applied { "applied" } else { "already current" });
        }
        Command::Status => {
            let client = connect(&config).await?;
            print!("{}", status::render(&client).await?);
        }
        Command::Health { timeout } => {
            let timeout = humantime::parse_duration(&timeout).with_context(|| format!("--timeout {timeout:?}"))?;
            let addr = config.http_addr.context("PGCOURIER_HTTP_ADDR is off: the daemon serves no /ready to ask")?;
            println!("{}", status::health(addr, timeout).await?);
        }
        Command::Show { message, tenant } => {
            let client = connect(&config).await?;
            match pgcourier::show::render(&client, &message, tenant.as_deref()).await? {
                Some(report) => print!("{report}"),
                None => anyhow::bail!(
                    "no message {message:?} (an id or a public id){}",
                    tenant.map(|t| format!(" for tenant {t}")).unwrap_or_default()
                ),
            }
        }
        Command::Run { .. } => {
            let (db, _) = database(&config)?;
            daemon::run(config, db, shutdown_on_signals()).await?;
        }
        Command::Up { .. } => up(config).await?,
        Command::Apikey { command } => {
            let client = connect(&config).await?;
            apikey(&client, command).await?;
        }
        Command::Tenant { command } => {
            let client = connect(&config).await?;
            tenant(&client, command).await?;
        }
    }
    Ok(())
}

/// Write a secret file readable by its owner only.
fn write_private(path: &std::path::Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{content}")?;
    Ok(())
}

async fn apikey(client: &tokio_postgres::Client, command: ApikeyCommand) -> anyhow::Result<()> {
    use pgcourier::db::apikeys::{self, Scope};
    match command {
        ApikeyCommand::Create { tenant, platform, scopes, name, expires_in } => {
            let expires_at = match expires_in {
                Some(d) => Some(chrono::Utc::now() + humantime::parse_duration(&d).with_context(|| format!("--expires-in {d:?}"))?),
                None => None,
            };
            let Some(tenant) = tenant.filter(|_| !platform) else {
                let key = apikeys::create_platform(client, &name, expires_at).await?;
                println!("{}", key.key);
                eprintln!("platform key {} created; store it now, it is not shown again", key.prefix);
                return Ok(());
            };
            let scopes = scopes
                .split(',')
                .map(|s| Scope::parse(s.trim()).with_context(|| format!("--scopes: {s:?} is not one of send, read, admin")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let key = apikeys::create(client, &tenant, &name, &scopes, expires_at).await?;
            println!("{}", key.key);
            eprintln!("key {} for tenant {tenant} created; store it now, it is not shown again", key.prefix);
        }
        ApikeyCommand::List { tenant } => {
            println!("{:<10} {:<16} {:<18} {:<22} {:<22} last used", "prefix", "name", "scopes", "expires", "revoked");
            let when = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or("-".into());
            for (_, name, prefix, scopes, expires, revoked, used) in apikeys::list(client, &tenant).await? {
                println!("{prefix:<10} {name:<16} {:<18} {:<22} {:<22} {}", scopes.join(","), when(expires), when(revoked), when(used));
            }
        }
        ApikeyCommand::Revoke { tenant, prefix } => {
            if apikeys::revoke(client, &tenant, &prefix).await? {
                println!("revoked {prefix}");
            } else {
                anyhow::bail!("no live key {prefix} for tenant {tenant}");
            }
        }
        ApikeyCommand::Rotate { tenant, prefix, overlap } => {
            let overlap = humantime::parse_duration(&overlap).with_context(|| format!("--overlap {overlap:?}"))?;
            let r = apikeys::rotate(client, tenant.as_deref(), &prefix, overlap, "cli").await?;
            println!("{}", r.new.key);
            eprintln!(
                "key {} replaces {prefix} (which stops at {}); store it now, it is not shown again",
                r.new.prefix,
                r.old_until.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
    }
    Ok(())
}

async fn tenant(client: &tokio_postgres::Client, command: TenantCommand) -> anyhow::Result<()> {
    use pgcourier::db::tenants::{self, TenantChanges};
    let set_active = |active| TenantChanges { active: Some(active), ..Default::default() };
    match command {
        TenantCommand::Create { id, name, settings } => {
            let settings: serde_json::Value = serde_json::from_str(&settings).with_context(|| "--settings is not JSON")?;
            anyhow::ensure!(settings.is_object(), "--settings must be a JSON object");
            match tenants::create_tenant(client, &id, &name, &settings, "cli").await? {
                Some(t) => println!("tenant {} created", t.id),
                None => anyhow::bail!("tenant {id} exists"),
            }
        }
        TenantCommand::List => {
            println!("{:<24} {:<8} name", "id", "active");
            for t in tenants::list_tenants(client, None, None, i64::MAX).await? {
                println!("{:<24} {:<8} {}", t.id, t.active, t.name);
            }
        }
        TenantCommand::Deactivate { id } => {
            tenants::update_tenant(client, &id, &set_active(false), "cli").await?.with_context(|| format!("no tenant {id}"))?;
            println!("tenant {id} deactivated: its API keys are refused until `pgcourier tenant activate {id}`");
        }
        TenantCommand::Activate { id } => {
            tenants::update_tenant(client, &id, &set_active(true), "cli").await?.with_context(|| format!("no tenant {id}"))?;
            println!("tenant {id} activated");
        }
    }
    Ok(())
}

/// `pgcourier up`: the embedded default a new user starts with.
async fn up(mut config: Config) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let cluster = match &config.database_url {
        Some(_) => None,
        None => {
            println!("starting a private PostgreSQL under {} ...", data_dir.display());
            let c =
                cluster::Cluster::start(cluster::ClusterConfig { data_dir: data_dir.clone(), port: None, pg_bin: config.pg_bin.clone() })
                    .await?;
            config.database_url = Some(c.url());
            Some(c)
        }
    };
    // for `status`, `apikey`, `migrate` and `run` in another terminal (removed when `up` stops)
    let url_file = cluster.as_ref().map(|_| data_dir.join(pgcourier::config::UP_URL_FILE));
    if let Some(file) = &url_file {
        let _ = std::fs::remove_file(file);
        write_private(file, config.database_url.as_deref().unwrap_or_default())?;
    }
    let (db, _) = database(&config)?;
    let mut client = db::connect(&db).await.context("connecting to the database")?;
    db::migrate::migrate(&mut client).await?;
    let outbox = data_dir.join("outbox");
    let demo = db::demo::ensure(&client, &outbox.to_string_lossy()).await?;
    let key_file = data_dir.join("demo-api-key");
    if !key_file.exists() {
        use pgcourier::db::apikeys::{self, Scope};
        let key = apikeys::create(&client, "demo", "pgcourier up", &[Scope::Send, Scope::Read, Scope::Admin], None).await?;
        write_private(&key_file, &key.key)?;
    }
    drop(client);
    let url = config.database_url.clone().unwrap_or_default();
    let others = match &url_file {
        Some(file) => format!(
            "From this directory, `pgcourier status`, `apikey` and `migrate` use this database (its URL is in {}).\n\n",
            file.display()
        ),
        None => String::new(),
    };
    let demo_key = std::fs::read_to_string(&key_file).unwrap_or_default().trim().to_owned();
    let console_on = config.console;
    // the console's address and the demo key to sign in with (this is the demo tenant of a
    // private development cluster: the key is printed here, never logged)
    let console_line = move |http: Option<std::net::SocketAddr>| match http {
        Some(a) if console_on => format!(
            "The operator console is at http://{}/console; sign in with the demo tenant's key:\n\n  {demo_key}\n\n",
            if a.ip().is_unspecified() { std::net::SocketAddr::new([127, 0, 0, 1].into(), a.port()) } else { a }
        ),
        _ => String::new(),
    };
    let banner = move |http: Option<std::net::SocketAddr>| {
        println!(
            "\npgcourier is up. Send a first message from another terminal:\n\n  \
             psql '{url}' -c \"INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text) \
             VALUES ('demo', {}, 'outbound', ARRAY['you@example.com'], 'Hello', 'It works')\"\n\n\
             The .eml lands in {}; watch its lifecycle with:\n\n  \
             psql '{url}' -c \"SELECT * FROM et_thread_timeline\"\n\n\
             A chat message to the log session ({}) is written to this terminal.\n\n\
             The HTTP API listens on {}; the demo tenant's API key is in {}:\n\n  \
             curl -s -H \"x-api-key: $(cat {})\" -H 'content-type: application/json' \\\n    \
             -d '{{\"to\": [\"you@example.com\"], \"subject\": \"Hi\", \"textBody\": \"Sent over HTTP\", \"channelSessionId\": {}}}' \\\n    \
             http://{}/v1/messages\n\n\
             {}\
             {}Ctrl-C stops everything.\n",
            demo.email_session,
            outbox.display(),
            demo.chat_session,
            http.map(|a| a.to_string()).unwrap_or_else(|| "(off)".into()),
            key_file.display(),
            key_file.display(),
            demo.email_session,
            http.map(|a| a.to_string()).unwrap_or_else(|| "127.0.0.1:8080".into()),
            console_line(http),
            others,
        );
    };
    // the banner once the HTTP surface listens (never, when its address is taken: then the
    // daemon returns that error at once)
    let handles = daemon::Handles::default();
    let (bound, http_on) = (handles.http_addr.clone(), config.http_addr.is_some());
    let announce = tokio::spawn(async move {
        while http_on && bound.get().is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        banner(bound.get().copied());
    });
    let result = daemon::run_with(config, db, shutdown_on_signals(), handles).await;
    announce.abort();
    if let Some(file) = &url_file {
        let _ = std::fs::remove_file(file);
    }
    if let Some(c) = cluster {
        println!("stopping the private PostgreSQL ...");
        c.stop().await?;
    }
    result?;
    Ok(())
}
