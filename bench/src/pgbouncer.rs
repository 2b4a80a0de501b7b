//! `--pooler`: the drain with the daemon's pool directly on PostgreSQL (`direct`), through the
//! daemon's own pooler relay alone (`relay`: `PGCOURIER_DB_POOLER=transaction` with
//! `DATABASE_URL` still PostgreSQL itself), or through the relay and a private PgBouncer in
//! `pool_mode = transaction` in front of the benchmark database (`pgbouncer`), as
//! `tests/it/pooler.rs` starts one: Debian's `pgbouncer` (1.18), run as the `postgres` user when
//! the bench runs as root (PgBouncer refuses root), its files in a temporary folder, stopped
//! when dropped. It has as many server connections as the daemon's pool
//! (`default_pool_size = --db-pool-size`), so the only difference from `relay` is the hop.
//!
//! In both relay modes the daemon's LISTEN connection and leader lock go to the database itself
//! (`PGCOURIER_LISTEN_URL`), and the database gets `jit = off` (`ALTER DATABASE`): the daemon
//! sends no session settings through a pooler, and README "Poolers" tells operators to set it so.

use crate::setup::BenchDb;
use anyhow::Context;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the daemon's pool connects (`--pooler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooler {
    /// The pool on PostgreSQL, named prepared statements (the default mode).
    Direct,
    /// PGCOURIER_DB_POOLER=transaction, the pool still on PostgreSQL: the relay's cost alone.
    Relay,
    /// The relay and a private PgBouncer in transaction mode in front of PostgreSQL.
    Pgbouncer,
}

impl Pooler {
    pub fn as_str(self) -> &'static str {
        match self {
            Pooler::Direct => "direct",
            Pooler::Relay => "relay",
            Pooler::Pgbouncer => "pgbouncer",
        }
    }
}

/// How the daemon reaches `db` in one mode; holds the PgBouncer (if any) while it lives.
pub struct Route {
    /// DATABASE_URL for the pool when it goes through the relay (`None`: direct).
    pub pool_url: Option<String>,
    bouncer: Option<Bouncer>,
}

impl Route {
    /// Prepare `db` for `mode` (and start PgBouncer for `pgbouncer`, with `pool_size` server
    /// connections).
    pub async fn open(db: &BenchDb, mode: Pooler, pool_size: usize) -> anyhow::Result<Route> {
        if mode == Pooler::Direct {
            return Ok(Route { pool_url: None, bouncer: None });
        }
        db.client
            .batch_execute("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET jit = off', current_database()); END $$")
            .await
            .context("ALTER DATABASE ... SET jit = off")?;
        if mode == Pooler::Relay {
            return Ok(Route { pool_url: Some(db.url().to_owned()), bouncer: None });
        }
        let bouncer = Bouncer::start(db.url(), pool_size).await?;
        Ok(Route { pool_url: Some(bouncer.url.clone()), bouncer: Some(bouncer) })
    }

    /// CPU seconds the PgBouncer process has used so far (`None` without one).
    pub fn pgbouncer_cpu_seconds(&self) -> Option<f64> {
        let pid = std::fs::read_to_string(self.bouncer.as_ref()?.dir.join("pgbouncer.pid")).ok()?;
        crate::child::cpu_seconds(pid.trim().parse().ok()?)
    }
}

/// A PgBouncer in transaction mode in front of one database; stopped when dropped.
struct Bouncer {
    child: Child,
    dir: PathBuf,
    /// The benchmark database through PgBouncer.
    url: String,
}

impl Bouncer {
    async fn start(db_url: &str, pool_size: usize) -> anyhow::Result<Bouncer> {
        let config: tokio_postgres::Config = db_url.parse().context("the benchmark database's URL")?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "127.0.0.1".to_owned(),
        };
        let server_port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("postgres").to_owned();
        let dbname = config.get_dbname().context("the benchmark URL names no database")?.to_owned();
        let password = config.get_password().map(|p| format!(" password={}", String::from_utf8_lossy(p))).unwrap_or_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("pgcourier-bench-pgbouncer-{dbname}"));
        std::fs::create_dir_all(&dir)?;
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={host} port={server_port} user={user}{password}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
                 listen_port = {port}\nunix_socket_dir =\nauth_type = any\npool_mode = transaction\ndefault_pool_size = {pool_size}\n\
                 max_client_conn = 200\nignore_startup_parameters = extra_float_digits\nlogfile = {log}\npidfile = {pid}\n",
                log = dir.join("pgbouncer.log").display(),
                pid = dir.join("pgbouncer.pid").display(),
            ),
        )?;
        let root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false);
        let mut cmd = if root {
            let chown = Command::new("chown").args(["-R", "postgres"]).arg(&dir).status()?;
            anyhow::ensure!(chown.success(), "chown -R postgres {} failed", dir.display());
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "pgbouncer"]);
            c
        } else {
            Command::new("pgbouncer")
        };
        let child =
            cmd.arg(&ini).stdout(Stdio::null()).stderr(Stdio::null()).spawn().context(
                "cannot start pgbouncer: install Debian's pgbouncer package (apt-get install --no-install-recommends pgbouncer)",
            )?;
        let url = format!("postgres://{user}@127.0.0.1:{port}/{dbname}");
        let bouncer = Bouncer { child, dir, url };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio_postgres::connect(&bouncer.url, tokio_postgres::NoTls).await.is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(bouncer.dir.join("pgbouncer.log")).unwrap_or_default();
                anyhow::bail!("pgbouncer never accepted a connection; its log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("pgbouncer: transaction mode on 127.0.0.1:{port}, {pool_size} server connections");
        Ok(bouncer)
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        // runuser passes SIGTERM on to pgbouncer; the pid file names pgbouncer itself
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
