//! Scenario `peer`: graphile-worker's no-op job drain on the same PostgreSQL, for the ratio
//! pgcourier drain msgs/s ÷ graphile-worker's best jobs/s.
//!
//! Runs `bench/peer/graphile.sh --jobs N` (found from this crate's manifest directory, so it
//! works from any clone; it creates and drops its own databases on `DATABASE_URL`'s server and
//! installs graphile-worker with npm on first use). Its progress is relayed to our stderr; its
//! stdout is one JSON line with `best_jobs_per_s`, `best_concurrency`, `version` and the runs, kept
//! whole in the report. Without the script or without `node` the peer is "not run" (with the
//! reason), not a failure; a script that fails is.
//!
//! The same script run also measures graphile-worker's enqueue as our `ingest` measures our
//! inserts (`--enqueue-jobs`, `--enqueue-single-jobs`, `--enqueue-connections`): `add_jobs` of
//! the bulk row count in one call, and `add_job` one job per transaction from the same number
//! of connections, closed loop, the same count in all. `main` passes ingest's counts, so the
//! ratios compare like with like.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// What the peer is asked to run.
pub struct Params {
    /// Jobs per drain run.
    pub jobs: usize,
    /// Skip the default-settings drain run.
    pub skip_default: bool,
    /// Jobs in the one `add_jobs` call (our bulk ingest's rows).
    pub enqueue_jobs: usize,
    /// `add_job` calls in all (our single-row ingest's rows).
    pub enqueue_single_jobs: usize,
    /// Connections calling `add_job` (our single-row ingest's connections).
    pub enqueue_connections: usize,
}

/// graphile-worker's `add_jobs` of many jobs in one call.
#[derive(Debug, Serialize, Deserialize)]
pub struct BulkEnqueue {
    pub jobs: usize,
    pub seconds: f64,
    pub jobs_per_s: f64,
}

/// graphile-worker's `add_job`, one job per transaction from several connections.
#[derive(Debug, Serialize, Deserialize)]
pub struct SingleEnqueue {
    pub connections: usize,
    pub jobs: usize,
    pub seconds: f64,
    pub jobs_per_s: f64,
}

/// The enqueue measurements of the script's run.
#[derive(Debug, Serialize, Deserialize)]
pub struct Enqueue {
    pub add_jobs_bulk: BulkEnqueue,
    pub add_job_single: SingleEnqueue,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub ran: bool,
    /// Why it did not run.
    pub reason: Option<String>,
    pub script: String,
    pub jobs: usize,
    pub version: Option<String>,
    pub best_jobs_per_s: Option<f64>,
    pub best_concurrency: Option<u64>,
    pub seconds: f64,
    /// Enqueue alone, no worker running (None when the script gave none).
    pub enqueue: Option<Enqueue>,
    /// The script's JSON line as printed.
    pub output: Option<serde_json::Value>,
}

pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peer/graphile.sh")
}

pub async fn run(p: &Params) -> anyhow::Result<Report> {
    let (script, jobs) = (script(), p.jobs);
    let mut report = Report {
        ran: false,
        reason: None,
        script: script.display().to_string(),
        jobs,
        version: None,
        best_jobs_per_s: None,
        best_concurrency: None,
        seconds: 0.0,
        enqueue: None,
        output: None,
    };
    if !script.is_file() {
        report.reason = Some(format!("{} does not exist", script.display()));
        return Ok(report);
    }
    let has_node = std::process::Command::new("node").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !has_node.is_ok_and(|s| s.success()) {
        report.reason = Some("node (Node.js) is not on PATH".to_owned());
        return Ok(report);
    }
    eprintln!("peer: {} --jobs {jobs}", script.display());
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg(&script).arg("--jobs").arg(jobs.to_string());
    for (flag, n) in [
        ("--enqueue-jobs", p.enqueue_jobs),
        ("--enqueue-single-jobs", p.enqueue_single_jobs),
        ("--enqueue-connections", p.enqueue_connections),
    ] {
        cmd.arg(flag).arg(n.to_string());
    }
    if p.skip_default {
        cmd.arg("--skip-default");
    }
    cmd.env("DATABASE_URL", crate::setup::admin_url()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let t = std::time::Instant::now();
    let mut child = cmd.spawn().context("running graphile.sh")?;
    // Its progress, passed on as it comes; the last lines are kept for an error message.
    let stderr = child.stderr.take().context("graphile.sh stderr")?;
    let relay = tokio::spawn(async move {
        let (mut lines, mut tail) = (BufReader::new(stderr).lines(), std::collections::VecDeque::new());
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{line}");
            tail.push_back(line);
            if tail.len() > 5 {
                tail.pop_front();
            }
        }
        Vec::from(tail).join(" | ")
    });
    let out = child.wait_with_output().await.context("running graphile.sh")?;
    let tail = relay.await.unwrap_or_default();
    report.seconds = t.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "graphile.sh ended with {}: {tail}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).context("graphile.sh printed nothing on stdout")?;
    let json: serde_json::Value = serde_json::from_str(line).with_context(|| format!("graphile.sh printed {line:?}, not JSON"))?;
    report.best_jobs_per_s = json["best_jobs_per_s"].as_f64();
    anyhow::ensure!(report.best_jobs_per_s.is_some_and(|r| r > 0.0), "graphile.sh gave no best_jobs_per_s: {line}");
    report.best_concurrency = json["best_concurrency"].as_u64();
    report.version = json["version"].as_str().map(str::to_owned);
    let enqueue = json.get("enqueue").context("graphile.sh gave no enqueue figures")?;
    report.enqueue = Some(Enqueue::deserialize(enqueue).with_context(|| format!("graphile.sh's enqueue figures: {enqueue}"))?);
    report.output = Some(json);
    report.ran = true;
    Ok(report)
}
