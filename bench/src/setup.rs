//! What every scenario stands on: a fresh migrated database `bench_<uuid>` (from
//! [`pgcourier_testdb`], as the tests' databases; dropped `WITH (FORCE)` afterwards), the tenant and its sessions (`smtp` to the sink, `log`), the
//! daemon's settings, polling the database until a condition holds, and the database clock.

use crate::child::ChildDaemon;
use anyhow::Context;
use pgcourier_testdb::FreshDb;
pub use pgcourier_testdb::{admin_url, connect};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_postgres::Client;

/// The tenant every scenario writes as, and its sender address.
pub const TENANT: &str = "bench";
pub const SENDER: &str = "Bench <noreply@bench.example>";

/// The SQL values of every benchmark row, from `g` (a generate_series number): recipients
/// (1,000 distinct, so 1,000 threads), subject and a short text body.
pub const ROW_VALUES: &str =
    "ARRAY['r' || (g % 1000) || '@example.com'], 'Benchmark ' || g, 'Hello from the pgcourier benchmark, message ' || g || '.'";

/// A fresh database; call [`BenchDb::drop_database`] when done (the scenario runner does,
/// whether the scenario succeeded, failed or was interrupted).
pub struct BenchDb {
    /// A ready connection for the scenario's own SQL.
    pub client: Client,
    db: FreshDb,
}

impl BenchDb {
    /// `CREATE DATABASE bench_<uuid>` as a copy of the migrated template.
    pub async fn create() -> anyhow::Result<BenchDb> {
        let db = FreshDb::migrated("bench").await.context("a database for the benchmark")?;
        match connect(&db.url).await {
            Ok(client) => Ok(BenchDb { client, db }),
            Err(e) => {
                let _ = db.drop_database().await;
                Err(e)
            }
        }
    }

    /// A connection string to this database.
    pub fn url(&self) -> &str {
        &self.db.url
    }

    pub async fn connect(&self) -> anyhow::Result<Client> {
        connect(self.url()).await
    }

    /// `DROP DATABASE ... WITH (FORCE)`; a failure is reported on stderr, not returned.
    pub async fn drop_database(self) {
        let BenchDb { client, db } = self;
        drop(client);
        if let Err(e) = db.drop_database().await {
            eprintln!("warning: could not drop benchmark database {}: {e:#}", db.name);
        }
    }

    /// Tenant [`TENANT`] (once).
    async fn tenant(&self) -> anyhow::Result<()> {
        self.client
            .execute("INSERT INTO et_tenants (id, name) VALUES ($1, 'Benchmark') ON CONFLICT DO NOTHING", &[&TENANT])
            .await
            .context("creating the tenant")?;
        Ok(())
    }

    /// Tenant [`TENANT`] and one `email`/`smtp` session pointing at `port`; returns its id.
    pub async fn smtp_session(&self, port: u16, pool_size: usize, concurrency: usize) -> anyhow::Result<i64> {
        let config = serde_json::json!({
            "host": "127.0.0.1", "port": port, "tls": "none", "timeout_ms": 10_000,
            "pool_size": pool_size, "concurrency": concurrency,
        });
        self.session("email", "smtp", SENDER, &config).await
    }

    /// Tenant [`TENANT`] and one session on `channel` with provider `log` (accepts every message
    /// at once, zero latency), default config; returns its id.
    pub async fn log_session(&self, channel: &str, address: &str) -> anyhow::Result<i64> {
        self.session(channel, "log", address, &serde_json::json!({})).await
    }

    async fn session(&self, channel: &str, provider: &str, address: &str, config: &serde_json::Value) -> anyhow::Result<i64> {
        self.tenant().await?;
        let row = self
            .client
            .query_one(
                "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[&TENANT, &channel, &provider, &address, config],
            )
            .await
            .with_context(|| format!("creating the {channel}/{provider} session"))?;
        Ok(row.get(0))
    }

    /// The backlog: `n` outbound rows on `session` in ONE `INSERT ... SELECT generate_series`
    /// (triggers and all), checked to be queued; returns how long the statement took.
    pub async fn bulk_outbound(&self, session: i64, n: usize) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let inserted = self
            .client
            .execute(
                &format!(
                    "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
                     SELECT $1, $2, 'outbound', {ROW_VALUES} FROM generate_series(1, $3::int) g"
                ),
                &[&TENANT, &session, &(n as i32)],
            )
            .await
            .context("bulk insert")?;
        let took = t.elapsed();
        anyhow::ensure!(inserted as usize == n, "inserted {inserted} rows, expected {n}");
        let queued = self.count("SELECT count(*) FROM et_outbound_queue WHERE state = 'ready'").await?;
        anyhow::ensure!(queued as usize == n, "{queued} rows queued, expected {n}");
        Ok(took)
    }

    /// `status=count ...` of every message, for error messages.
    pub async fn statuses(&self) -> anyhow::Result<String> {
        let rows = self.client.query("SELECT delivery_status, count(*) FROM et_messages GROUP BY 1 ORDER BY 1", &[]).await?;
        Ok(rows.iter().map(|r| format!("{}={}", r.get::<_, String>(0), r.get::<_, i64>(1))).collect::<Vec<_>>().join(" "))
    }

    /// Poll `sql` (one boolean) every 50 ms until it is true; returns the instant it was seen
    /// true, or `None` once `timeout` has passed. Fails when `daemon` stops on its own.
    pub async fn until(&self, sql: &str, daemon: &mut ChildDaemon, timeout: Duration) -> anyhow::Result<Option<Instant>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.client.query_one(sql, &[]).await.with_context(|| sql.to_owned())?.get::<_, bool>(0) {
                return Ok(Some(Instant::now()));
            }
            daemon.check_alive()?;
            if Instant::now() > deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// [`BenchDb::until`], where a timeout is an error naming the statuses.
    pub async fn until_or_fail(&self, sql: &str, daemon: &mut ChildDaemon, timeout: Duration) -> anyhow::Result<Instant> {
        match self.until(sql, daemon, timeout).await? {
            Some(at) => Ok(at),
            None => anyhow::bail!("not reached within {timeout:?}: {sql} (statuses: {})", self.statuses().await?),
        }
    }

    /// Count rows of a query that returns one bigint.
    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        Ok(self.client.query_one(sql, &[]).await.with_context(|| sql.to_owned())?.get(0))
    }
}

/// Daemon settings the benchmark controls (the rest are the library defaults); the child
/// daemon process gets them as `PGCOURIER_*` variables (see [`crate::child`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DaemonSettings {
    pub batch_size: usize,
    pub max_in_flight: usize,
    pub db_pool_size: usize,
    pub poll_interval: String,
    /// PGCOURIER_HTTP_ADDR: `127.0.0.1:0` (a port nobody else holds) unless a scenario talks to
    /// the HTTP surface and needs to know its port.
    pub http_addr: String,
    /// `--log`: the child installs the daemon's log subscriber (stderr).
    #[serde(skip)]
    pub log: bool,
    /// `PGCOURIER_DB_POOLER=transaction` with the pool on this URL (PostgreSQL itself, or a
    /// PgBouncer in front of it: see [`crate::pgbouncer`]); LISTEN and the leader lock then go
    /// to the database directly (`PGCOURIER_LISTEN_URL`). `None`: the pool connects directly.
    #[serde(skip)]
    pub pool_url: Option<String>,
    /// PGCOURIER_MAINTENANCE_INTERVAL (the retention scenario prunes every second); `None`: the default.
    pub maintenance_interval: Option<String>,
}

impl DaemonSettings {
    /// The daemon's environment for `db`.
    pub fn env(&self, db: &BenchDb) -> Vec<(&'static str, String)> {
        let mut env = match &self.pool_url {
            None => vec![("DATABASE_URL", db.url().to_owned())],
            Some(url) => vec![
                ("DATABASE_URL", url.clone()),
                ("PGCOURIER_DB_POOLER", "transaction".to_owned()),
                ("PGCOURIER_LISTEN_URL", db.url().to_owned()),
            ],
        };
        env.extend([
            ("PGCOURIER_POLL_INTERVAL", self.poll_interval.clone()),
            ("PGCOURIER_SHUTDOWN_TIMEOUT", "10s".to_owned()),
            ("PGCOURIER_BATCH_SIZE", self.batch_size.to_string()),
            ("PGCOURIER_MAX_IN_FLIGHT", self.max_in_flight.to_string()),
            ("PGCOURIER_POOL_SIZE", self.db_pool_size.to_string()),
            ("PGCOURIER_WORKER_ID", "bench".to_owned()),
            // The HTTP surface runs as in production.
            ("PGCOURIER_HTTP_ADDR", self.http_addr.clone()),
        ]);
        if let Some(every) = &self.maintenance_interval {
            env.push(("PGCOURIER_MAINTENANCE_INTERVAL", every.clone()));
        }
        env
    }
}

/// How far the database's clock is ahead of ours, in milliseconds (`clock_timestamp()` against
/// the midpoint of the round trip with the shortest of a few tries). Zero on one host, in
/// principle; measured so that a remote `DATABASE_URL` stays honest.
pub async fn db_clock_offset_ms(client: &Client) -> anyhow::Result<f64> {
    let mut best: Option<(f64, f64)> = None;
    for _ in 0..7 {
        let before = epoch_ms(SystemTime::now());
        let row = client.query_one("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8", &[]).await?;
        let after = epoch_ms(SystemTime::now());
        let (db, rtt): (f64, f64) = (row.get(0), after - before);
        if best.is_none_or(|(_, r)| rtt < r) {
            best = Some((db - (before + after) / 2.0, rtt));
        }
    }
    Ok(best.expect("seven tries").0)
}

/// Milliseconds since the Unix epoch.
pub fn epoch_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
}

/// True once no outbound queue row is ready or leased: every outcome is recorded (rows that
/// failed for good stay `dead`). Cheap (the two partial indexes; a lease is a row with
/// `lease_expires_at` set), unlike counting `et_messages`.
pub const QUEUE_SETTLED: &str = "SELECT NOT EXISTS (SELECT 1 FROM et_outbound_queue WHERE state = 'ready')
                                    AND NOT EXISTS (SELECT 1 FROM et_outbound_queue WHERE lease_expires_at IS NOT NULL)";

/// Milliseconds, for reports.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
