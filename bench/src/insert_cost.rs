//! Scenario `insert-cost`: CPU instructions one prepared one-row insert into `et_messages` costs
//! PostgreSQL, counted by callgrind with `bench/profile/one-row-instructions.sh` (a private
//! cluster it creates and removes itself; never the shared server). Counted, not timed, so the
//! figure does not move with the machine's load.
//!
//! The script migrates its cluster with this binary (`--migrate-with`: it runs
//! `bench --migrate-child`, the library's migrations on `DATABASE_URL`), so no separate
//! `pgcourier` build is needed. It needs valgrind, psql, python3 and root (the cluster runs as
//! the `postgres` user); without them the figure is "not measured" with the reason and the
//! command to run, not a failure. A script that runs and fails is a failure.

use anyhow::Context;
use serde::Serialize;
use std::path::PathBuf;
use std::process::Stdio;

#[derive(Debug, Serialize)]
pub struct Report {
    pub ran: bool,
    /// Why it did not run.
    pub reason: Option<String>,
    pub script: String,
    /// Instructions per one-row insert transaction.
    pub instructions: Option<u64>,
    /// The PostgreSQL version the script counted on.
    pub postgres: Option<String>,
    pub seconds: f64,
}

pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("profile/one-row-instructions.sh")
}

/// The hidden `--migrate-child`: migrate `DATABASE_URL` and exit.
pub async fn migrate_child() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    let mut client = crate::setup::connect(&url).await?;
    pgcourier::db::migrate::migrate(&mut client).await.context("migrating")?;
    Ok(())
}

/// Whether `program args` runs and exits 0.
fn succeeds(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// What the script needs that is missing here, if anything.
fn missing() -> Option<String> {
    let script = script();
    if !script.is_file() {
        return Some(format!("{} does not exist", script.display()));
    }
    for tool in ["valgrind", "psql", "python3"] {
        if !succeeds(tool, &["--version"]) {
            return Some(format!("{tool} is not on PATH"));
        }
    }
    let uid = std::process::Command::new("id").arg("-u").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if uid.as_deref() != Some("0") {
        return Some("not root (the script's private cluster runs as the postgres user)".to_owned());
    }
    None
}

pub async fn run() -> anyhow::Result<Report> {
    let script = script();
    let mut report =
        Report { ran: false, reason: None, script: script.display().to_string(), instructions: None, postgres: None, seconds: 0.0 };
    if let Some(why) = missing() {
        report.reason = Some(why);
        return Ok(report);
    }
    let me = std::env::current_exe().context("the bench binary's path")?;
    eprintln!("insert-cost: {} (callgrind; a minute or two)", script.display());
    let t = std::time::Instant::now();
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .arg("--migrate-with")
        .arg(&me)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running one-row-instructions.sh")?;
    report.seconds = t.elapsed().as_secs_f64();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "one-row-instructions.sh ended with {}: {}", out.status, stderr.trim());
    let (instructions, postgres) = figure(&stdout)?;
    (report.instructions, report.postgres, report.ran) = (Some(instructions), postgres, true);
    eprintln!("insert-cost: {instructions} instructions per one-row insert");
    Ok(report)
}

/// The count and PostgreSQL's version from the script's line
/// "one single-row insert: 812345 instructions (callgrind, PostgreSQL 15.20)".
fn figure(stdout: &str) -> anyhow::Result<(u64, Option<String>)> {
    let line = stdout.lines().find(|l| l.starts_with("one single-row insert:")).with_context(|| format!("no figure in {stdout:?}"))?;
    let count = line.split_whitespace().nth(3).context("no figure")?;
    let count = count.parse().with_context(|| format!("{count:?} is not a count, in {line:?}"))?;
    Ok((count, line.rsplit_once("PostgreSQL ").map(|(_, v)| v.trim_end_matches(')').to_owned())))
}

#[test]
fn reads_the_scripts_figure() {
    let out = "one single-row insert: 2517559 instructions (callgrind, PostgreSQL 15.20)\n";
    assert_eq!(figure(out).unwrap(), (2_517_559, Some("15.20".to_owned())));
    assert!(figure("nothing").is_err());
}
