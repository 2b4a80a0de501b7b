//! The private PostgreSQL cluster that `pgcourier up` starts when `DATABASE_URL` is not set.
//!
//! It owns everything under its data directory (default `./.pgcourier`):
//! - `data/`: the PGDATA of a dev cluster (`initdb` once: superuser `postgres`, trust auth, UTF8),
//! - `port`: the TCP port chosen on first start, reused by later starts,
//! - `postgres.log`: the server log (its tail is quoted when start fails),
//! - `.s.PGSQL.<port>`: the Unix socket (none if that path would be too long); TCP listens on 127.0.0.1 only.
//!
//! Binaries come from [`ClusterConfig::pg_bin`] (`PGCOURIER_PG_BIN` for `up`), else `pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/*/bin`, else `/usr/local/pgsql/bin`. PostgreSQL refuses to run as root, so as root the
//! data directory is chowned to the `postgres` OS user and the tools run through `runuser` (or `su`); the data
//! directory must then be reachable by that user (not under `/root`), which is checked with a clear error.
//! A server we start is stopped by [`Cluster::stop`] or on drop; one found already running is left alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;

const FIRST_PORT: u16 = 5433;
const DATABASE: &str = "pgcourier";
const OS_USER: &str = "postgres";

/// Where the cluster lives and which port it listens on.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The directory holding `data/`, `port` and `postgres.log`, e.g. `./.pgcourier`.
    pub data_dir: PathBuf,
    /// `None`: the port remembered in `data_dir/port`, else 5433 if free, else the first free port above.
    pub port: Option<u16>,
    /// The directory holding `initdb` and `pg_ctl`; `None`: searched (see the module documentation).
    pub pg_bin: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { data_dir: PathBuf::from(".pgcourier"), port: None, pg_bin: None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl) found; searched {searched}. Install PostgreSQL \
             (e.g. `apt install postgresql`), set PGCOURIER_PG_BIN to the directory holding initdb and pg_ctl, \
             or set DATABASE_URL to use an existing server"
    )]
    BinariesNotFound { searched: String },
    #[error(
        "running as root, but PostgreSQL refuses to run as root and there is no `postgres` OS user to run \
             it as; create one (`useradd --system postgres`), run pgcourier as a normal user, or set DATABASE_URL"
    )]
    NoPostgresUser,
    #[error("the `postgres` OS user cannot write to {}: as root, pgcourier runs PostgreSQL as `postgres`, which \
             needs search (x) permission on every parent directory. Put the data directory somewhere it can reach \
             (e.g. /var/lib/pgcourier or /tmp/pgcourier, not under /root), run as a normal user, or set DATABASE_URL",
            path.display())]
    Unreachable { path: PathBuf },
    #[error(
        "port {0} on 127.0.0.1 is already in use; pick another port, leave it unset to choose a free one, \
             or stop whatever listens there"
    )]
    PortInUse(u16),
    #[error("no free TCP port on 127.0.0.1 from 5433 upward; free one or set DATABASE_URL")]
    NoFreePort,
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("could not run {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error(
        "{step} failed ({status}). {detail}\nFix the cause above, remove the data directory to start over, \
             or set DATABASE_URL to use an existing server"
    )]
    Failed { step: String, status: String, detail: String },
    #[error("PostgreSQL on port {port} does not accept connections: {source}; see {}", log.display())]
    Connect { port: u16, log: PathBuf, source: tokio_postgres::Error },
    #[error("could not create database `pgcourier` on port {port}: {source}")]
    CreateDatabase { port: u16, source: tokio_postgres::Error },
}

/// A running PostgreSQL server on 127.0.0.1 with a `pgcourier` database.
#[derive(Debug)]
pub struct Cluster {
    data_dir: PathBuf,
    port: u16,
    pg: Runner,
    /// We started the server, so we stop it; a server found running is not ours.
    owned: bool,
    stopped: bool,
}

impl Cluster {
    /// Initialise the cluster if needed, start it (or reuse a running one) and create `pgcourier`.
    pub async fn start(cfg: ClusterConfig) -> Result<Cluster, ClusterError> {
        let started = Instant::now();
        let bin = find_bin_dir(cfg.pg_bin.as_deref())?;
        std::fs::create_dir_all(&cfg.data_dir).map_err(io(&cfg.data_dir))?;
        let data_dir = cfg.data_dir.canonicalize().map_err(io(&cfg.data_dir))?;
        let pgdata = data_dir.join("data");
        let pg = Runner { bin, as_postgres: running_as_root(), runuser: on_path("runuser") };
        if pg.as_postgres {
            if !Command::new("id").args(["-u", OS_USER]).output().is_ok_and(|o| o.status.success()) {
                return Err(ClusterError::NoPostgresUser);
            }
            let mut chown = Command::new("chown");
            chown.arg("-R").arg(format!("{OS_USER}:")).arg(&data_dir);
            succeed("chown -R", chown).await?;
            if !pg.exec("test", &["-w".into(), path_arg(&data_dir)], &data_dir).await?.status.success() {
                return Err(ClusterError::Unreachable { path: data_dir });
            }
        }
        if !pgdata.join("PG_VERSION").is_file() {
            tracing::info!(dir = %pgdata.display(), "initialising a private PostgreSQL cluster");
            let args = ["-D", &path_arg(&pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"];
            pg.run_ok("initdb", &args.map(String::from), &data_dir).await?;
        }
        let mut cluster = Cluster { data_dir, port: 0, pg, owned: false, stopped: false };
        if let Some(port) = cluster.running_port().await? {
            tracing::info!(port, "reusing the PostgreSQL server already running on this data directory");
            cluster.port = port;
        } else {
            cluster.port = choose_port(cfg.port, &cluster.data_dir.join("port"))?;
            let port_file = cluster.data_dir.join("port");
            std::fs::write(&port_file, format!("{}\n", cluster.port)).map_err(io(&port_file))?;
            cluster.pg_ctl_start().await?;
            cluster.owned = true; // from here on, dropping `cluster` stops the server
        }
        cluster.ensure_database().await?;
        tracing::info!(port = cluster.port, elapsed = ?started.elapsed(), "private PostgreSQL cluster ready");
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:PORT/pgcourier` (trust authentication, no password).
    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stop the server (`pg_ctl stop -m fast`, waiting for it to exit) if we started it.
    pub async fn stop(mut self) -> Result<(), ClusterError> {
        self.stopped = true;
        if !self.owned || !self.pgdata().join("postmaster.pid").exists() {
            return Ok(());
        }
        self.pg.run_ok("pg_ctl", &self.stop_args(), &self.data_dir).await.map(drop)
    }

    /// A crash and a restart, for fault tests: `pg_ctl stop -m immediate` (no shutdown checkpoint,
    /// every client cut off, crash recovery at the next start), nothing listening for `down`, then
    /// the same start as [`Cluster::start`] (port and options kept). That is `pg_ctl restart -m
    /// immediate` with the time the server is away made explicit.
    pub async fn restart_immediate(&self, down: Duration) -> Result<(), ClusterError> {
        self.stop_immediate().await?;
        tokio::time::sleep(down).await;
        self.pg_ctl_start().await
    }

    /// A crash, for fault tests: `pg_ctl stop -m immediate` (no shutdown checkpoint, every client
    /// cut off). The server stays down.
    pub async fn stop_immediate(&self) -> Result<(), ClusterError> {
        let args = ["-D", &path_arg(&self.pgdata()), "-m", "immediate", "-w", "-t", "60", "stop"].map(String::from);
        self.pg.run_ok("pg_ctl", &args, &self.data_dir).await.map(drop)
    }

    /// A streaming replica of this cluster, for failover tests: `pg_basebackup -R` (a standby
    /// with `primary_conninfo` pointing here) through a new physical replication slot `slot`,
    /// into `cfg.data_dir`, then started as [`Cluster::start`] starts a cluster (as a hot
    /// standby: read-only until [`Cluster::promote`]). The primary must allow replication
    /// connections from 127.0.0.1 (initdb's defaults do: `wal_level = replica`, trust).
    pub async fn replica(&self, cfg: ClusterConfig, slot: &str) -> Result<Cluster, ClusterError> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(io(&cfg.data_dir))?;
        let data_dir = cfg.data_dir.canonicalize().map_err(io(&cfg.data_dir))?;
        if self.pg.as_postgres {
            let mut chown = Command::new("chown");
            chown.arg("-R").arg(format!("{OS_USER}:")).arg(&data_dir);
            succeed("chown -R", chown).await?;
        }
        let (pgdata, port) = (path_arg(&data_dir.join("data")), self.port.to_string());
        let args = [
            "-D",
            &pgdata,
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "-C",
            "-S",
            slot,
            "--no-sync",
        ];
        self.pg.run_ok("pg_basebackup", &args.map(String::from), &data_dir).await?;
        Cluster::start(ClusterConfig { data_dir, pg_bin: Some(self.pg.bin.clone()), ..cfg }).await
    }

    /// `pg_ctl promote`: a standby becomes a primary (waits until it takes writes).
    pub async fn promote(&self) -> Result<(), ClusterError> {
        let args = ["-D", &path_arg(&self.pgdata()), "-w", "-t", "60", "promote"].map(String::from);
        self.pg.run_ok("pg_ctl", &args, &self.data_dir).await.map(drop)
    }

    fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn pgdata(&self) -> PathBuf {
        self.data_dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.join("postgres.log")
    }

    fn stop_args(&self) -> Vec<String> {
        ["-D", &path_arg(&self.pgdata()), "-m", "fast", "-w", "-t", "60", "stop"].map(String::from).to_vec()
    }

    /// The port of a server already running on this data directory (line 4 of `postmaster.pid`).
    async fn running_port(&self) -> Result<Option<u16>, ClusterError> {
        let pid_file = self.pgdata().join("postmaster.pid");
        if !pid_file.is_file() {
            return Ok(None);
        }
        let status = ["status", "-D", &path_arg(&self.pgdata())].map(String::from);
        if !self.pg.exec(&self.pg.tool("pg_ctl"), &status, &self.data_dir).await?.status.success() {
            return Ok(None); // stale pid file: pg_ctl start copes with it
        }
        let text = std::fs::read_to_string(&pid_file).map_err(io(&pid_file))?;
        Ok(text.lines().nth(3).and_then(|l| l.trim().parse().ok()))
    }

    async fn pg_ctl_start(&self) -> Result<(), ClusterError> {
        // pg_ctl runs `-o` through /bin/sh, hence the quoting. A Unix socket path is limited to 107 bytes.
        let dir = path_arg(&self.data_dir);
        let sockets = if dir.len() + 16 <= 107 { shell_quote(&dir) } else { "''".to_string() };
        let opts = format!("-p {} -k {sockets} -c listen_addresses=127.0.0.1", self.port);
        let (pgdata, log) = (path_arg(&self.pgdata()), path_arg(&self.log_path()));
        let args = ["-D", &pgdata, "-l", &log, "-w", "-t", "60", "-o", &opts, "start"].map(String::from);
        tracing::info!(port = self.port, log = %log, "starting private PostgreSQL");
        match self.pg.run_ok("pg_ctl", &args, &self.data_dir).await {
            Ok(_) => Ok(()),
            Err(ClusterError::Failed { step, status, detail }) => {
                let tail = log_tail(&self.log_path(), 20);
                Err(ClusterError::Failed { step, status, detail: format!("{detail}\nLast lines of {log}:\n{tail}") })
            }
            Err(e) => Err(e),
        }
    }

    async fn ensure_database(&self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match connect(&self.url_for("postgres")).await {
                Ok(client) => break client,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(source) => return Err(ClusterError::Connect { port: self.port, log: self.log_path(), source }),
            }
        };
        let db_err = |source| ClusterError::CreateDatabase { port: self.port, source };
        let exists = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DATABASE]).await;
        if exists.map_err(db_err)?.is_none() {
            match client.batch_execute(&format!("CREATE DATABASE {DATABASE}")).await {
                Err(e) if e.code() != Some(&SqlState::DUPLICATE_DATABASE) => return Err(db_err(e)),
                _ => tracing::info!("created database {DATABASE}"),
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.stopped || !self.owned {
            return;
        }
        match self.pg.command(&self.pg.tool("pg_ctl"), &self.stop_args(), &self.data_dir).output() {
            Ok(o) if o.status.success() => tracing::info!(port = self.port, "stopped private PostgreSQL"),
            Ok(o) => tracing::warn!(stderr = %String::from_utf8_lossy(&o.stderr), "pg_ctl stop failed"),
            Err(e) => tracing::warn!(error = %e, "could not run pg_ctl stop"),
        }
    }
}

/// Runs PostgreSQL tools, as the `postgres` OS user when we are root.
#[derive(Debug, Clone)]
struct Runner {
    bin: PathBuf,
    as_postgres: bool,
    runuser: bool,
}

impl Runner {
    fn tool(&self, name: &str) -> String {
        path_arg(&self.bin.join(name))
    }

    fn command(&self, program: &str, args: &[String], cwd: &Path) -> Command {
        let mut cmd = if !self.as_postgres {
            let mut c = Command::new(program);
            c.args(args);
            c
        } else if self.runuser {
            let mut c = Command::new("runuser");
            c.args(["-u", OS_USER, "--", program]).args(args);
            c
        } else {
            let words = std::iter::once(program).chain(args.iter().map(String::as_str));
            let line: Vec<String> = words.map(shell_quote).collect();
            let mut c = Command::new("su");
            c.args([OS_USER, "-s", "/bin/sh", "-c", &line.join(" ")]);
            c
        };
        cmd.current_dir(cwd);
        cmd
    }

    /// Run `program` (as `postgres` when root); only failing to spawn is an error.
    async fn exec(&self, program: &str, args: &[String], cwd: &Path) -> Result<Output, ClusterError> {
        output(program, self.command(program, args, cwd)).await
    }

    /// Run a PostgreSQL tool and fail with its output unless it succeeds.
    async fn run_ok(&self, tool: &str, args: &[String], cwd: &Path) -> Result<Output, ClusterError> {
        succeed(&format!("{tool} {}", args.join(" ")), self.command(&self.tool(tool), args, cwd)).await
    }
}

async fn output(program: &str, cmd: Command) -> Result<Output, ClusterError> {
    let spawn = |source| ClusterError::Spawn { program: program.to_string(), source };
    tokio::process::Command::from(cmd).output().await.map_err(spawn)
}

async fn succeed(step: &str, cmd: Command) -> Result<Output, ClusterError> {
    let out = output(step.split(' ').next().unwrap_or(step), cmd).await?;
    if out.status.success() {
        return Ok(out);
    }
    let detail = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Err(ClusterError::Failed { step: step.to_string(), status: out.status.to_string(), detail: detail.trim().into() })
}

/// `pg_bin` (`PGCOURIER_PG_BIN`), else `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`, else /usr/local/pgsql/bin.
fn find_bin_dir(pg_bin: Option<&Path>) -> Result<PathBuf, ClusterError> {
    let usable = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = pg_bin.map(Path::to_path_buf) {
        return match usable(&dir) {
            true => Ok(dir),
            false => Err(ClusterError::BinariesNotFound { searched: format!("PGCOURIER_PG_BIN={}", dir.display()) }),
        };
    }
    let mut candidates = Vec::new();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version: Option<Vec<u32>> = name.split('.').map(|p| p.parse().ok()).collect();
            Some((version?, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    candidates.extend(versions.into_iter().rev().map(|(_, dir)| dir));
    candidates.push(PathBuf::from("/usr/local/pgsql/bin"));
    candidates.iter().find(|d| usable(d)).cloned().ok_or_else(|| ClusterError::BinariesNotFound {
        searched: "PGCOURIER_PG_BIN (unset), `pg_config --bindir`, /usr/lib/postgresql/*/bin, /usr/local/pgsql/bin".into(),
    })
}

fn choose_port(wanted: Option<u16>, port_file: &Path) -> Result<u16, ClusterError> {
    if let Some(port) = wanted {
        return if port_free(port) { Ok(port) } else { Err(ClusterError::PortInUse(port)) };
    }
    if let Some(port) = std::fs::read_to_string(port_file).ok().and_then(|s| s.trim().parse().ok()) {
        if port_free(port) {
            return Ok(port);
        }
        tracing::warn!(port, "the remembered port is taken; choosing another");
    }
    (FIRST_PORT..=u16::MAX).find(|&p| port_free(p)).ok_or(ClusterError::NoFreePort)
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read: {e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Removes the temp dir last (declared first), after any cluster in it has been dropped.
    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    async fn select_one(url: &str) -> tokio_postgres::Client {
        let client = connect(url).await.expect("connect to url()");
        let row = client.query_one("SELECT 1", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 1);
        client
    }

    #[tokio::test]
    async fn starts_reuses_and_stops_a_private_cluster() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let tmp = TempDir(PathBuf::from(format!("/tmp/pgcourier-cluster-test-{}-{nanos}", std::process::id())));
        let cfg = |port| ClusterConfig { data_dir: tmp.0.join("pgc"), port, ..ClusterConfig::default() };
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();

        // First start: initdb, explicit port.
        let t = Instant::now();
        let cluster = Cluster::start(cfg(Some(free))).await.expect("first start");
        eprintln!("first start (initdb) took {:?}", t.elapsed());
        assert_eq!(cluster.port(), free);
        assert_ne!(cluster.port(), 5432);
        assert_eq!(cluster.url(), format!("postgres://postgres@127.0.0.1:{free}/pgcourier"));
        let client = select_one(&cluster.url()).await;
        client.batch_execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('hello')").await.unwrap();
        drop(client);

        // A second start on the running data dir reuses the server and does not stop it on drop.
        let borrowed = Cluster::start(cfg(None)).await.expect("start on a running cluster");
        assert_eq!(borrowed.port(), free);
        drop(borrowed);
        select_one(&cluster.url()).await;
        cluster.stop().await.expect("stop");

        // Restart with `port: None`: the remembered port and the data are reused.
        let t = Instant::now();
        let cluster = Cluster::start(cfg(None)).await.expect("second start");
        eprintln!("second start (reuse) took {:?}", t.elapsed());
        assert_eq!(cluster.port(), free);
        let client = select_one(&cluster.url()).await;
        let v: String = client.query_one("SELECT v FROM kept", &[]).await.unwrap().get(0);
        assert_eq!(v, "hello");
        drop(client);
        let pid_file = cluster.data_dir().join("data/postmaster.pid");
        let pid = std::fs::read_to_string(&pid_file).unwrap().lines().next().unwrap().to_string();
        cluster.stop().await.expect("second stop");

        assert!(!pid_file.exists(), "postmaster.pid left behind");
        // pg_ctl removes the pid file just before the postmaster exits; allow it a moment (zombies count as gone).
        let alive = || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!alive(), "postmaster {pid} still running");
        assert!(port_free(free), "port {free} still in use");
    }
}
