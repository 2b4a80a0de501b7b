//! The daemon under test, as its own process (as in production), and what it costs in memory.
//!
//! The bench binary re-executes itself (`std::env::current_exe()`) with the hidden flag
//! `--daemon-child`: that process runs only `pgcourier::daemon`, configured from its
//! environment exactly like `pgcourier run` (`DATABASE_URL`, `PGCOURIER_*`; see
//! [`crate::setup::DaemonSettings::env`]), without a log subscriber unless `--log`. It prints
//! `ready` on stdout once its LISTEN connection is up, stops gracefully on SIGTERM / SIGINT,
//! and also stops when its stdin closes (the parent died), so it never outlives the benchmark.
//!
//! The parent samples `/proc/<pid>/status` every 50 ms (`VmRSS`) and reads `VmHWM` (the
//! kernel's resident-set high-water mark since the process started) for the peak.

use crate::setup::{BenchDb, DaemonSettings};
use anyhow::Context;
use pgcourier::config::Config;
use pgcourier::daemon::{self, Handles};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

/// The hidden flag that turns the bench binary into the daemon.
pub const FLAG: &str = "--daemon-child";

/// The child side: run the daemon until SIGTERM / SIGINT or until stdin closes.
pub async fn run_child(log: bool) -> anyhow::Result<()> {
    let config = Config::from_env().context("daemon configuration")?;
    if log {
        pgcourier::telemetry::init(config.log_format);
    }
    let url = config.database_url.clone().context("DATABASE_URL is not set")?;
    let database: tokio_postgres::Config = url.parse().context("DATABASE_URL")?;
    let token = CancellationToken::new();
    let on_signal = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        on_signal.cancel();
    });
    // A plain thread, not tokio's stdin: a blocked read there would hold up the runtime's exit.
    let orphaned = token.clone();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 64];
        while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
        orphaned.cancel();
    });
    let handles = Handles::default();
    let task = tokio::spawn(daemon::run_with(config, database, token, handles.clone()));
    while !handles.listener.connected.load(Ordering::SeqCst) && !task.is_finished() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if !task.is_finished() {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()?;
    }
    task.await.context("the daemon task panicked")?.context("the daemon failed")?;
    Ok(())
}

/// Resident memory of the daemon process.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// `VmHWM`: peak resident set since the process started, MiB.
    pub peak_rss_mib: f64,
    /// The largest `VmRSS` seen by the 50 ms sampler, MiB.
    pub max_sampled_rss_mib: f64,
    pub samples: u64,
}

/// A running daemon process; [`ChildDaemon::stop`] ends it with SIGTERM (so does dropping it).
pub struct ChildDaemon {
    child: Child,
    pid: u32,
    /// Held open: the child stops when it closes.
    _stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    max_rss_kib: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    sampler: tokio::task::JoinHandle<()>,
    pub started: Instant,
}

impl ChildDaemon {
    /// Start the daemon process for `db` (it migrates, i.e. checks the schema, then claims).
    pub async fn spawn(db: &BenchDb, settings: &DaemonSettings) -> anyhow::Result<ChildDaemon> {
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let mut cmd = Command::new(exe);
        cmd.arg(FLAG);
        if settings.log {
            cmd.arg("--log");
        }
        // Only what we set: an outer PGCOURIER_* must not change what is measured.
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PGCOURIER_")) {
            cmd.env_remove(k);
        }
        cmd.envs(settings.env(db));
        cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::inherit());
        let started = Instant::now();
        let mut child = cmd.spawn().context("starting the daemon process")?;
        let pid = child.id().context("the daemon process has no pid")?;
        let stdin = child.stdin.take().context("daemon stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("daemon stdout")?).lines();
        let (max_rss_kib, samples) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let sampler = tokio::spawn(sample(pid, max_rss_kib.clone(), samples.clone()));
        Ok(ChildDaemon { child, pid, _stdin: stdin, stdout, max_rss_kib, samples, sampler, started })
    }

    /// Wait for the child's `ready` (its LISTEN connection is up); returns the time since spawn.
    pub async fn ready(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let line = tokio::time::timeout(timeout, self.stdout.next_line())
            .await
            .with_context(|| format!("the daemon was not ready within {timeout:?}"))?
            .context("reading the daemon's stdout")?;
        match line.as_deref() {
            Some("ready") => Ok(self.started.elapsed()),
            _ => {
                self.check_alive()?;
                anyhow::bail!("the daemon said {line:?} instead of ready")
            }
        }
    }

    /// An error if the daemon process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => anyhow::bail!("the daemon process exited on its own ({status}); run with --log to see why"),
        }
    }

    /// The daemon process's id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The memory figures so far.
    pub fn memory(&self) -> Memory {
        let hwm = read_status(self.pid).map(|s| s.hwm_kib).unwrap_or(0);
        let max = self.max_rss_kib.load(Ordering::Relaxed);
        Memory {
            peak_rss_mib: hwm.max(max) as f64 / 1024.0,
            max_sampled_rss_mib: max as f64 / 1024.0,
            samples: self.samples.load(Ordering::Relaxed),
        }
    }

    /// SIGTERM, wait for the graceful stop (SIGKILL after 30 s); returns the memory figures
    /// read just before the signal. A non-zero exit is an error.
    pub async fn stop(mut self) -> anyhow::Result<Memory> {
        let memory = self.memory();
        self.sampler.abort();
        terminate(self.pid);
        let status = match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                self.child.kill().await?;
                anyhow::bail!("the daemon did not stop within 30 s of SIGTERM (killed)");
            }
        };
        anyhow::ensure!(status.success(), "the daemon process ended with {status}");
        Ok(memory)
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        self.sampler.abort();
        if matches!(self.child.try_wait(), Ok(None)) {
            terminate(self.pid);
        }
    }
}

/// SIGTERM to `pid`.
fn terminate(pid: u32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    const SIGTERM: i32 = 15;
    // SAFETY: kill(2) takes plain integers; `pid` is our own child, not yet reaped.
    unsafe { kill(pid as i32, SIGTERM) };
}

/// CPU seconds (user + system) process `pid` has used so far, from `/proc/<pid>/stat`; `None`
/// when it is gone or unreadable.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    extern "C" {
        fn sysconf(name: i32) -> i64;
    }
    const SC_CLK_TCK: i32 = 2;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the command (which may hold spaces) in parentheses: state is field 3,
    // utime field 14, stime field 15
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf(3) takes and returns plain integers.
    let hz = unsafe { sysconf(SC_CLK_TCK) };
    Some(ticks as f64 / hz.max(1) as f64)
}

struct Status {
    rss_kib: u64,
    hwm_kib: u64,
}

fn read_status(pid: u32) -> Option<Status> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(Status { rss_kib: field("VmRSS:")?, hwm_kib: field("VmHWM:")? })
}

/// Every 50 ms: the largest VmRSS so far, until the process is gone.
async fn sample(pid: u32, max_rss_kib: Arc<AtomicU64>, samples: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        let Some(s) = read_status(pid) else { return };
        max_rss_kib.fetch_max(s.rss_kib, Ordering::Relaxed);
        samples.fetch_add(1, Ordering::Relaxed);
    }
}
