//! The `pgcourier` command line: parse, build config, call into the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use pgcourier::config::Config;
use pgcourier::{cluster, daemon, db, status, telemetry};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "pgcourier", version, about = "A Postgres-native messaging daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start here: run the daemon on DATABASE_URL, or on a private PostgreSQL under ./.pgcourier/.
    Up {
        /// Where the private cluster and the demo outbox live.
        #[arg(long, default_value = ".pgcourier")]
        data_dir: PathBuf,
    },
    /// Run the daemon against DATABASE_URL (migrates first).
    Run,
    /// Apply the schema migrations and triggers to DATABASE_URL.
    Migrate,
    /// Queue health per channel and state, message counts and the newest dead letters.
    Status,
    /// API keys for the HTTP surface (the key is printed once, at creation).
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Create a key for a tenant and print it (it is never shown again).
    Create {
        #[arg(long)]
        tenant: String,
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
}

fn database(config: &Config) -> anyhow::Result<tokio_postgres::Config> {
    let url = config.database_url.as_deref().context("DATABASE_URL is not set")?;
    url.parse().context("DATABASE_URL is not a valid PostgreSQL connection string")
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
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", telemetry::one_line(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    match cli.command {
        Command::Migrate => {
            let mut client = db::connect(&database(&config)?).await.context("connecting to DATABASE_URL")?;
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
            let client = db::connect(&database(&config)?).await.context("connecting to DATABASE_URL")?;
            print!("{}", status::render(&client).await?);
        }
        Command::Run => {
            let db = database(&config)?;
            daemon::run(config, db, shutdown_on_signals()).await?;
        }
        Command::Up { data_dir } => up(config, data_dir).await?,
        Command::Apikey { command } => {
            let client = db::connect(&database(&config)?).await.context("connecting to DATABASE_URL")?;
            apikey(&client, command).await?;
        }
    }
    Ok(())
}

/// Write a secret file readable by its owner only.
fn write_private(path: &std::path::Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{content}")?;
    Ok(())
}

async fn apikey(client: &tokio_postgres::Client, command: ApikeyCommand) -> anyhow::Result<()> {
    use pgcourier::db::apikeys::{self, Scope};
    match command {
        ApikeyCommand::Create { tenant, scopes, name, expires_in } => {
            let scopes = scopes
                .split(',')
                .map(|s| Scope::parse(s.trim()).with_context(|| format!("--scopes: {s:?} is not one of send, read, admin")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let expires_at = match expires_in {
                Some(d) => Some(chrono::Utc::now() + humantime::parse_duration(&d).with_context(|| format!("--expires-in {d:?}"))?),
                None => None,
            };
            let key = apikeys::create(client, &tenant, &name, &scopes, expires_at).await?;
            println!("{}", key.key);
            eprintln!("key {} for tenant {tenant} created; store it now, it is not shown again", key.prefix);
        }
        ApikeyCommand::List { tenant } => {
            println!("{:<10} {:<16} {:<18} {:<22} {:<22} {}", "prefix", "name", "scopes", "expires", "revoked", "last used");
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
    }
    Ok(())
}

/// `pgcourier up`: the embedded default a new user starts with.
async fn up(mut config: Config, data_dir: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let cluster = match &config.database_url {
        Some(_) => None,
        None => {
            println!("starting a private PostgreSQL under {} ...", data_dir.display());
            let c = cluster::Cluster::start(cluster::ClusterConfig { data_dir: data_dir.clone(), port: None }).await?;
            config.database_url = Some(c.url());
            Some(c)
        }
    };
    let db = database(&config)?;
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
             Ctrl-C stops everything.\n",
            demo.email_session,
            outbox.display(),
            demo.chat_session,
            http.map(|a| a.to_string()).unwrap_or_else(|| "(off)".into()),
            key_file.display(),
            key_file.display(),
            demo.email_session,
            http.map(|a| a.to_string()).unwrap_or_else(|| "127.0.0.1:8080".into()),
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
    if let Some(c) = cluster {
        println!("stopping the private PostgreSQL ...");
        c.stop().await?;
    }
    result?;
    Ok(())
}
