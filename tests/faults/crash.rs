//! The daemon or its database going away mid-drain: SIGKILL of the real binary, every connection
//! terminated, a private cluster crashed and restarted.

use crate::outbox::{self, settled, sink_quiet, sink_reaches};
use crate::smtp_sink::{Reply, SmtpSink};
use crate::support::TestDb;
use crate::support::{send_many, smtp_session, spawn};
use crate::tally::{note, Copies, Tally};
use pgcourier::cluster::{Cluster, ClusterConfig};
use pgcourier::daemon::Handles;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The pgcourier binary as a child process; killed (SIGKILL) if still running when dropped.
pub(crate) struct Daemon(Child);

impl Daemon {
    pub(crate) fn start(url: &str, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgcourier"));
        cmd.arg("run").env("DATABASE_URL", url).env("PGCOURIER_HTTP_ADDR", "off").env("RUST_LOG", "error");
        cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon(cmd.spawn().expect("start the pgcourier binary"))
    }

    /// Still running (not exited)?
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// SIGKILL, and reap it (bounded).
    async fn kill(mut self) {
        self.0.kill().expect("SIGKILL");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.0.try_wait().expect("wait for the daemon").is_none() {
            assert!(Instant::now() < deadline, "the killed daemon did not exit");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Issue 15 Deliver 9: the real binary SIGKILLed three times mid-drain (3,000 messages, a sink
/// taking 5 ms a message), restarted each time. Sends in flight at a kill may have been delivered:
/// their next attempt must be flagged `possible_duplicate`; nothing lost, nothing sent twice unflagged.
pub async fn sigkill_three_times_mid_drain() {
    const N: i32 = 3000;
    let db = TestDb::new().await;
    let sink = SmtpSink::with_rule(|_, _| Reply::Delay(Duration::from_millis(5))).await;
    let session = smtp_session(&db, &sink, serde_json::json!({ "concurrency": 16, "pool_size": 16 })).await;
    send_many(&db, session, "k", N).await;
    let t0 = Instant::now();
    let env = [("PGCOURIER_LEASE", "3s"), ("PGCOURIER_RESCUE_INTERVAL", "200ms"), ("PGCOURIER_SHUTDOWN_TIMEOUT", "5s")];
    let mut daemon = Daemon::start(&db.url, &env);
    let mut kills = Vec::new();
    for (k, at) in [600usize, 1300, 2000].into_iter().enumerate() {
        if !sink_reaches(&sink, at, Duration::from_secs(25)).await {
            break;
        }
        let leased = db.count("SELECT count(*) FROM et_outbound_queue WHERE state = 'leased'").await;
        daemon.kill().await;
        kills.push(format!("kill {} at {} received, {leased} leased, {:.1} s", k + 1, sink.count(), t0.elapsed().as_secs_f64()));
        daemon = Daemon::start(&db.url, &env);
    }
    let done = settled(&db.client, "true", Duration::from_secs(40)).await;
    note(format!("SIGKILL x3: {}; settled {done} after {:.1} s", kills.join("; "), t0.elapsed().as_secs_f64()));
    sink_quiet(&sink, Duration::from_millis(500), Duration::from_secs(5)).await;
    drop(daemon);
    let tally = Tally::count("SIGKILL of the daemon three times (3,000 msgs)", &db.client, "true", Copies::Sink(sink.message_ids())).await;
    assert_eq!(kills.len(), 3, "the drain did not reach the three kill points: {kills:?} — {}", tally.line());
    assert!(done, "not every message reached a final status — {}", tally.line());
    tally.assert_clean();
}

/// Issue 15 Deliver 9: every connection of the (in-process) daemon terminated with
/// `pg_terminate_backend` five times during a drain of 3,000 messages, a 5 s lease.
pub async fn every_connection_terminated_five_times() {
    const N: i32 = 3000;
    let db = TestDb::new().await;
    let sink = SmtpSink::with_rule(|_, _| Reply::Delay(Duration::from_millis(2))).await;
    let session = smtp_session(&db, &sink, serde_json::json!({ "concurrency": 16, "pool_size": 16 })).await;
    send_many(&db, session, "t", N).await;
    let t0 = Instant::now();
    let daemon = spawn(&db, &[("PGCOURIER_LEASE", "5s"), ("PGCOURIER_RESCUE_INTERVAL", "200ms")]);
    let mut rounds = Vec::new();
    for at in [300usize, 800, 1300, 1800, 2300] {
        if !sink_reaches(&sink, at, Duration::from_secs(25)).await {
            break;
        }
        let killed = db
            .count("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
            .await;
        rounds.push(format!("{killed} at {}", sink.count()));
    }
    let done = settled(&db.client, "true", Duration::from_secs(40)).await;
    note(format!(
        "connections terminated (count at sink count): {}; settled {done} after {:.1} s",
        rounds.join(", "),
        t0.elapsed().as_secs_f64()
    ));
    sink_quiet(&sink, Duration::from_millis(500), Duration::from_secs(5)).await;
    daemon.stop().await;
    let tally =
        Tally::count("every daemon connection terminated five times (3,000 msgs)", &db.client, "true", Copies::Sink(sink.message_ids()))
            .await;
    assert_eq!(rounds.len(), 5, "the drain did not reach the five termination points: {rounds:?} — {}", tally.line());
    assert!(done, "not every message reached a final status — {}", tally.line());
    tally.assert_clean();
}

/// Removes a directory when dropped (declared before the cluster in it, so dropped after it).
pub(crate) struct TempDir(pub(crate) PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Issue 15 §3 / Deliver 2: a private cluster (as `pgcourier up` starts) crashed with `pg_ctl
/// stop -m immediate` and started again after 3 s (~3.5–4 s away in all), twice, during a drain of
/// 3,000 messages with a 5 s lease. The outcome writer must keep what was delivered: a restart of a
/// few seconds, shorter than the lease, re-sends nothing (not even flagged).
pub async fn cluster_restarted_immediate_twice() {
    const N: i32 = 3000;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let tmp = TempDir(PathBuf::from(format!("/tmp/pgcourier-faults-{}-{nanos}", std::process::id())));
    let t_init = Instant::now();
    let cluster =
        Cluster::start(ClusterConfig { data_dir: tmp.0.join("pgc"), ..ClusterConfig::default() }).await.expect("a private cluster");
    let url = cluster.url();
    note(format!("cluster restart: private cluster on port {} ready in {:.1} s", cluster.port(), t_init.elapsed().as_secs_f64()));
    let mut client = outbox::connect(&url, Duration::from_secs(10)).await;
    pgcourier::db::migrate::migrate(&mut client).await.expect("migrate the cluster's database");
    // A postmaster crash (not an OS crash) loses nothing in the page cache: fsync off keeps the
    // end-of-recovery checkpoint short on a slow disk, so the restart stays "a few seconds".
    client.batch_execute("ALTER SYSTEM SET fsync = off").await.expect("fsync off");
    client.batch_execute("SELECT pg_reload_conf()").await.expect("reload");
    let sink = SmtpSink::with_rule(|_, _| Reply::Delay(Duration::from_millis(2))).await;
    let session = outbox::smtp_session(&client, "acme", &sink, serde_json::json!({ "concurrency": 16, "pool_size": 16 })).await;
    outbox::queue(&client, "acme", session, "c", N).await;

    let env: HashMap<String, String> = [
        ("DATABASE_URL", url.as_str()),
        ("PGCOURIER_LEASE", "5s"),
        ("PGCOURIER_RESCUE_INTERVAL", "200ms"),
        ("PGCOURIER_POLL_INTERVAL", "1s"),
        ("PGCOURIER_SHUTDOWN_TIMEOUT", "10s"),
        ("PGCOURIER_HTTP_ADDR", "off"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = pgcourier::config::Config::from_lookup(|k| env.get(k).cloned()).expect("daemon config");
    let token = CancellationToken::new();
    let database: tokio_postgres::Config = url.parse().unwrap();
    let t0 = Instant::now();
    let daemon = tokio::spawn(pgcourier::daemon::run_with(config, database, token.clone(), Handles::default()));

    let (mut restarts, mut away) = (Vec::new(), Vec::new());
    for at in [700usize, 1800] {
        if !sink_reaches(&sink, at, Duration::from_secs(30)).await {
            break;
        }
        let before = sink.count();
        let t = Instant::now();
        cluster.restart_immediate(Duration::from_secs(3)).await.expect("pg_ctl stop -m immediate, start");
        away.push(t.elapsed());
        restarts.push(format!("at {before} received: {:.1} s away", t.elapsed().as_secs_f64()));
    }
    let client = outbox::connect(&url, Duration::from_secs(20)).await;
    let done = settled(&client, "true", Duration::from_secs(40)).await;
    note(format!("cluster restarts: {}; settled {done} after {:.1} s", restarts.join("; "), t0.elapsed().as_secs_f64()));
    sink_quiet(&sink, Duration::from_millis(500), Duration::from_secs(5)).await;
    token.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(15), daemon).await;
    let tally = Tally::count(
        "private cluster restarted -m immediate twice (3,000 msgs, 5 s lease)",
        &client,
        "true",
        Copies::Sink(sink.message_ids()),
    )
    .await;
    drop(client);
    cluster.stop().await.expect("stop the private cluster");
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "the daemon did not stop cleanly: {stopped:?}");
    assert_eq!(restarts.len(), 2, "the drain did not reach both restart points: {restarts:?} — {}", tally.line());
    assert!(done, "not every message reached a final status — {}", tally.line());
    tally.assert_clean();
    // Away for less than the lease, the daemon still holds every lease it had: not even a
    // flagged re-send is excused.
    if away.iter().all(|a| *a < Duration::from_secs(5)) {
        assert_eq!(tally.multi, 0, "a restart shorter than the lease re-sends nothing — {}", tally.line());
    } else {
        note(format!("a restart took longer than the 5 s lease ({away:?}): flagged re-sends allowed"));
    }
}
