//! What every scenario stands on: a fresh migrated database `bench_<uuid>` (dropped
//! `WITH (FORCE)` afterwards), the tenant and SMTP session, and an in-process daemon.

use anyhow::Context;
use pgcourier::config::Config;
use pgcourier::daemon::{self, DaemonError, Handles};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The tenant every scenario writes as, and its sender address.
pub const TENANT: &str = "bench";
pub const SENDER: &str = "Bench <noreply@bench.example>";

/// The SQL values of every benchmark row, from `g` (a generate_series number): recipients
/// (1,000 distinct, so 1,000 threads), subject and a short text body.
pub const ROW_VALUES: &str =
    "ARRAY['r' || (g % 1000) || '@example.com'], 'Benchmark ' || g, 'Hello from the pgcourier benchmark, message ' || g || '.'";

/// The server the benchmark creates its databases on: `DATABASE_URL`, else the local one.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
}

pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {url} (set DATABASE_URL to a server where this user may CREATE DATABASE)"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// `url` with its database name replaced by `db` (keeps any `?query`).
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{db}{query}")
}

/// A fresh database; call [`BenchDb::drop_database`] when done (the scenario runner does,
/// whether the scenario succeeded, failed or was interrupted).
pub struct BenchDb {
    pub name: String,
    pub url: String,
    /// A ready connection for the scenario's own SQL.
    pub client: Client,
    admin_url: String,
}

impl BenchDb {
    /// `CREATE DATABASE bench_<uuid>` and migrate it.
    pub async fn create() -> anyhow::Result<BenchDb> {
        let admin_url = admin_url();
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&admin_url).await?;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.context("CREATE DATABASE for the benchmark")?;
        let url = with_database(&admin_url, &name);
        let db = BenchDb { client: connect(&url).await?, name, url, admin_url };
        let mut migrating = connect(&db.url).await?;
        if let Err(e) = pgcourier::db::migrate::migrate(&mut migrating).await {
            db.drop_database().await;
            return Err(e).context("migrating the benchmark database");
        }
        Ok(db)
    }

    pub async fn connect(&self) -> anyhow::Result<Client> {
        connect(&self.url).await
    }

    /// `DROP DATABASE ... WITH (FORCE)`; a failure is reported on stderr, not returned.
    pub async fn drop_database(self) {
        let BenchDb { name, admin_url, client, .. } = self;
        drop(client);
        let result = match connect(&admin_url).await {
            Ok(admin) => admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            eprintln!("warning: could not drop benchmark database {name}: {e:#}");
        }
    }

    /// Tenant [`TENANT`] and one `email`/`smtp` session pointing at `port`; returns its id.
    pub async fn smtp_session(&self, port: u16, pool_size: usize, concurrency: usize) -> anyhow::Result<i64> {
        self.client
            .execute("INSERT INTO et_tenants (id, name) VALUES ($1, 'Benchmark') ON CONFLICT DO NOTHING", &[&TENANT])
            .await?;
        let config = serde_json::json!({
            "host": "127.0.0.1", "port": port, "tls": "none", "timeout_ms": 10_000,
            "pool_size": pool_size, "concurrency": concurrency,
        });
        let row = self
            .client
            .query_one(
                "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config)
                 VALUES ($1, 'email', 'smtp', $2, $3) RETURNING id",
                &[&TENANT, &SENDER, &config],
            )
            .await
            .context("creating the SMTP session")?;
        Ok(row.get(0))
    }

    /// Count rows of a query that returns one bigint.
    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        Ok(self.client.query_one(sql, &[]).await.with_context(|| sql.to_owned())?.get(0))
    }
}

/// Daemon settings the benchmark controls (the rest are the library defaults).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DaemonSettings {
    pub batch_size: usize,
    pub max_in_flight: usize,
    pub db_pool_size: usize,
    pub poll_interval: String,
}

/// An in-process daemon; cancelled when dropped, stopped and awaited by [`Daemon::stop`].
pub struct Daemon {
    token: CancellationToken,
    task: Option<JoinHandle<Result<(), DaemonError>>>,
    handles: Handles,
}

impl Daemon {
    pub fn spawn(db: &BenchDb, settings: &DaemonSettings) -> anyhow::Result<Daemon> {
        let env: HashMap<&str, String> = HashMap::from([
            ("DATABASE_URL", db.url.clone()),
            ("PGCOURIER_POLL_INTERVAL", settings.poll_interval.clone()),
            ("PGCOURIER_SHUTDOWN_TIMEOUT", "10s".to_owned()),
            ("PGCOURIER_BATCH_SIZE", settings.batch_size.to_string()),
            ("PGCOURIER_MAX_IN_FLIGHT", settings.max_in_flight.to_string()),
            ("PGCOURIER_POOL_SIZE", settings.db_pool_size.to_string()),
            ("PGCOURIER_WORKER_ID", "bench".to_owned()),
        ]);
        let config = Config::from_lookup(|k| env.get(k).cloned()).context("daemon configuration")?;
        let database: tokio_postgres::Config = db.url.parse().context("benchmark database url")?;
        let (token, handles) = (CancellationToken::new(), Handles::default());
        let task = tokio::spawn(daemon::run_with(config, database, token.clone(), handles.clone()));
        Ok(Daemon { token, task: Some(task), handles })
    }

    /// Wait until the daemon's LISTEN connection is up.
    pub async fn listening(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.handles.listener.connected.load(Ordering::SeqCst) {
            if self.task.as_ref().is_some_and(|t| t.is_finished()) {
                anyhow::bail!("the daemon stopped before its listener connected");
            }
            anyhow::ensure!(Instant::now() < deadline, "the daemon's listener did not connect within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Cancel, wait for a graceful stop, and surface the daemon's own error if it had one.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.token.cancel();
        let task = self.task.take().expect("stopped once");
        task.await.context("the daemon task panicked")?.context("the daemon failed")?;
        Ok(())
    }

    /// The daemon's error if it has already stopped on its own.
    pub async fn check_alive(&mut self) -> anyhow::Result<()> {
        if self.task.as_ref().is_some_and(|t| t.is_finished()) {
            let task = self.task.take().expect("checked above");
            task.await.context("the daemon task panicked")?.context("the daemon failed")?;
            anyhow::bail!("the daemon stopped on its own");
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Milliseconds, for reports.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[test]
fn with_database_replaces_only_the_name() {
    assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
    assert_eq!(with_database("postgres://u@h/db?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
}
