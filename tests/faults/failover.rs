//! Failover (issue 19 item 3): a primary and a synchronous streaming replica (two private
//! clusters), the real daemon on a multi-host URL with `target_session_attrs=read-write`, and an
//! application inserting a message per transaction through the same URL. Mid-drain the primary
//! is stopped (`-m immediate`) and the replica promoted, once after fencing the primary
//! (read-only: its sessions answer 25006) and once without. The daemon, never restarted, must
//! move to the new primary by itself (pool, leader lock, LISTEN) and finish with nothing lost and
//! nothing sent twice unflagged; every insert the application saw commit must be there.

use crate::crash::{Daemon, TempDir};
use crate::outbox::{self, settled, sink_quiet, sink_reaches};
use crate::smtp_sink::{Reply, SmtpSink};
use crate::tally::{note, Copies, Tally};
use pgcourier::cluster::{Cluster, ClusterConfig};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// An application sending through the multi-host URL: one message per transaction, each with its
/// own idempotency key, every 10 ms until `stop`. A failed insert is retried (same key, `ON
/// CONFLICT DO NOTHING`: its commit may have happened) on a new connection; the keys whose commit
/// was acknowledged are returned.
fn application(url: String, session: i64, stop: CancellationToken) -> tokio::task::JoinHandle<(Vec<String>, usize)> {
    tokio::spawn(async move {
        let (mut acked, mut failures, mut i) = (Vec::new(), 0usize, 0u32);
        let mut client: Option<Client> = None;
        while !stop.is_cancelled() {
            let key = format!("app-{i}");
            let c = match &client {
                Some(c) if !c.is_closed() => c,
                _ => match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                    Ok((c, conn)) => {
                        tokio::spawn(conn);
                        client.insert(c)
                    }
                    Err(_) => {
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
            };
            let insert = c
                .execute(
                    "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text, idempotency_key)
                     VALUES ('acme', $1, 'outbound', ARRAY[$2 || '@example.com'], 'From the app', 'Body', $2)
                     ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
                    &[&session, &key],
                )
                .await;
            match insert {
                Ok(_) => {
                    acked.push(key);
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(_) => {
                    // 25006 from a fenced primary, or the connection is gone: a new one
                    failures += 1;
                    client = None;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        (acked, failures)
    })
}

/// A primary and its streaming replica (two private clusters under one temporary directory,
/// dropped last), migrated, with `n` messages queued on an SMTP session at a sink taking 5 ms a
/// message. Replication is asynchronous until a case says otherwise.
struct Pair {
    _tmp: TempDir,
    primary: Cluster,
    standby: Cluster,
    client: Client,
    sink: SmtpSink,
    session: i64,
}

async fn pair(n: i32) -> Pair {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let _tmp = TempDir(PathBuf::from(format!("/tmp/pgcourier-failover-{}-{nanos}", std::process::id())));
    let primary =
        Cluster::start(ClusterConfig { data_dir: _tmp.0.join("primary"), ..ClusterConfig::default() }).await.expect("the primary");
    let client = outbox::connect(&primary.url(), Duration::from_secs(10)).await;
    // fsync off (a postmaster crash loses nothing in the page cache; the standby's copy is what
    // counts here): in the base backup's postgresql.auto.conf, so the standby has it too
    alter_system(&client, "fsync = off").await;
    let mut migrating = outbox::connect(&primary.url(), Duration::from_secs(10)).await;
    pgcourier::db::migrate::migrate(&mut migrating).await.expect("migrate the primary");
    drop(migrating);
    let sink = SmtpSink::with_rule(|_, _| Reply::Delay(Duration::from_millis(5))).await;
    let session = outbox::smtp_session(&client, "acme", &sink, serde_json::json!({ "concurrency": 16, "pool_size": 16 })).await;
    outbox::queue(&client, "acme", session, "f", n).await;

    let standby = primary
        .replica(ClusterConfig { data_dir: _tmp.0.join("standby"), ..ClusterConfig::default() }, "pgcourier_standby")
        .await
        .expect("a streaming replica (pg_basebackup -R)");
    Pair { _tmp, primary, standby, client, sink, session }
}

/// `ALTER SYSTEM SET {setting}` and a reload (two statements: ALTER SYSTEM takes no transaction block).
async fn alter_system(client: &Client, setting: &str) {
    client.batch_execute(&format!("ALTER SYSTEM SET {setting}")).await.unwrap_or_else(|e| panic!("ALTER SYSTEM SET {setting}: {e}"));
    client.batch_execute("SELECT pg_reload_conf()").await.expect("pg_reload_conf()");
}

/// The daemon's connections to the server of `client`, by application name (pool, leader, listener).
async fn daemon_connections(client: &Client) -> Vec<String> {
    let rows = client
        .query(
            "SELECT application_name FROM pg_stat_activity
              WHERE datname = current_database() AND application_name LIKE 'pgcourier %' ORDER BY 1",
            &[],
        )
        .await
        .expect("pg_stat_activity");
    rows.iter().map(|r| r.get(0)).collect()
}

/// At 1,000 received the primary is fenced (`default_transaction_read_only = on`, reloaded: its
/// sessions now answer writes with 25006 and report themselves read-only), and the daemon must
/// drop its pool and leader connections to it; then it is stopped and the standby promoted.
pub async fn primary_fenced_stopped_and_replica_promoted() {
    failover(true).await
}

/// At 1,000 received the primary is stopped (`-m immediate`) with no warning, commits in flight,
/// and the standby promoted.
pub async fn primary_crashed_and_replica_promoted() {
    failover(false).await
}

/// Asynchronous replication, as the README describes it: what the old primary committed after
/// the standby's last received WAL is gone after the promotion. Here the standby stops receiving
/// (`primary_conninfo = ''`) before the daemon starts, so every claim and outcome of the drain
/// before the failover is lost: the new primary has every message `queued`, never tried, and
/// the daemon sends again, unflagged, each one delivered before the failover. The case asserts
/// exactly that (nothing lost, the re-sends unflagged: DUP = what the sink had at the stop, or
/// more with sends in flight), the behaviour that a synchronous standby rules out.
pub async fn asynchronous_replica_promoted_resends_unflagged() {
    const N: i32 = 1000;
    let Pair { _tmp, primary, standby, client, sink, session: _ } = pair(N).await;
    let caught_up = outbox::wait(
        &client,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE state = 'streaming' AND replay_lsn >= pg_current_wal_lsn())",
        Duration::from_secs(20),
    )
    .await;
    assert!(caught_up, "the standby did not catch up within 20 s");
    let replica = outbox::connect(&standby.url(), Duration::from_secs(10)).await;
    alter_system(&replica, "primary_conninfo = ''").await;
    let cut = outbox::wait(&client, "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_replication)", Duration::from_secs(20)).await;
    assert!(cut, "the standby kept streaming");
    drop(replica);

    let url =
        format!("postgres://postgres@127.0.0.1:{},127.0.0.1:{}/pgcourier?target_session_attrs=read-write", primary.port(), standby.port());
    let env = [("PGCOURIER_LEASE", "10s"), ("PGCOURIER_RESCUE_INTERVAL", "200ms"), ("PGCOURIER_POLL_INTERVAL", "1s")];
    let t0 = Instant::now();
    let mut daemon = Daemon::start(&url, &env);
    let reached = sink_reaches(&sink, 300, Duration::from_secs(30)).await;
    assert!(reached, "the drain did not reach 300 received before the failover ({} received)", sink.count());
    drop(client);
    primary.stop_immediate().await.expect("pg_ctl stop -m immediate (the primary)");
    let at_stop = sink.count();
    standby.promote().await.expect("pg_ctl promote (the standby)");
    let client = outbox::connect(&standby.url(), Duration::from_secs(10)).await;
    let done = settled(&client, "true", Duration::from_secs(40)).await;
    note(format!(
        "asynchronous standby cut off before the drain; primary stopped at {at_stop} received; settled {done} after {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    sink_quiet(&sink, Duration::from_millis(500), Duration::from_secs(5)).await;
    let alive = daemon.alive();
    drop(daemon);
    let tally = Tally::count(
        "failover to an asynchronous standby that missed the drain (1,000 msgs; re-sends expected, unflagged)",
        &client,
        "true",
        Copies::Sink(sink.message_ids()),
    )
    .await;
    drop(client);
    standby.stop().await.expect("stop the promoted standby");
    primary.stop().await.expect("the old primary is down");
    assert!(alive, "the daemon exited during the failover");
    assert!(done, "not every message reached a final status — {}", tally.line());
    assert_eq!(tally.lost, 0, "LOST — {}", tally.line());
    // The standby knows nothing of the old claims, so the re-sends go unflagged. A few may be
    // flagged all the same. The daemon claims a row again on the new primary under the same
    // lease key (worker, message, attempt) as a send whose outcome it is still trying to record;
    // if it gives that outcome up first, the key is forgotten, the new claim is dropped unsent,
    // its lease expires and the rescue flags the next attempt, itself a re-send. So a flag must
    // be owned by a copy that was in fact received again.
    assert!(tally.flagged as usize <= tally.multi, "a flag on a message received once — {}", tally.line());
    assert!(tally.dup >= at_stop, "every message delivered before the failover is sent again, unflagged — {}", tally.line());
}

/// 3,000 messages queued (and the application's, ~100 a second) at a sink taking 5 ms each,
/// synchronous replication to the standby, a 10 s lease; the failover at 1,000 received. The
/// daemon (never restarted) must reconnect to the new primary through the multi-host URL, its
/// leader lock and LISTEN with it, and finish: LOST 0, DUP 0 beyond flagged attempts.
async fn failover(fence: bool) {
    const N: i32 = 3000;
    let what = if fence { "fenced, stopped -m immediate" } else { "stopped -m immediate, unfenced" };
    let Pair { _tmp, primary, standby, client, sink, session } = pair(N).await;
    let t_init = Instant::now();
    // synchronous from here on: a commit returns once the standby has flushed it. Set after the
    // base backup, so the standby, once promoted, does not wait for a standby of its own.
    alter_system(&client, "synchronous_standby_names = '*'").await;
    let streaming = outbox::wait(
        &client,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'sync')
            AND current_setting('synchronous_standby_names') = '*'",
        Duration::from_secs(20),
    )
    .await;
    assert!(streaming, "the standby did not stream synchronously within 20 s");
    note(format!(
        "failover: primary on {}, standby on {}, streaming synchronously {:.1} s after the base backup",
        primary.port(),
        standby.port(),
        t_init.elapsed().as_secs_f64()
    ));

    let url =
        format!("postgres://postgres@127.0.0.1:{},127.0.0.1:{}/pgcourier?target_session_attrs=read-write", primary.port(), standby.port());
    let env = [
        ("PGCOURIER_LEASE", "10s"),
        ("PGCOURIER_RESCUE_INTERVAL", "200ms"),
        ("PGCOURIER_POLL_INTERVAL", "1s"),
        ("PGCOURIER_SHUTDOWN_TIMEOUT", "5s"),
    ];
    let t0 = Instant::now();
    let mut daemon = Daemon::start(&url, &env);
    let app_stop = CancellationToken::new();
    let app = application(url.clone(), session, app_stop.clone());
    let reached = sink_reaches(&sink, 1000, Duration::from_secs(30)).await;
    assert!(reached, "the drain did not reach 1,000 received before the failover ({} received)", sink.count());

    if fence {
        // 1. Fence the primary, as a failover manager does before promoting: every session of it now
        // answers writes with 25006 (and reports itself read-only). The daemon must drop its
        // connections to it, the leader's included, without being restarted.
        let before = daemon_connections(&client).await;
        let at_fence = sink.count();
        let t_fence = Instant::now();
        alter_system(&client, "default_transaction_read_only = on").await;
        let dropped = outbox::wait(
            &client,
            "SELECT count(*) FILTER (WHERE application_name LIKE 'pgcourier leader %') = 0
                AND count(*) FILTER (WHERE application_name LIKE 'pgcourier all %') = 0
           FROM pg_stat_activity WHERE datname = current_database()",
            Duration::from_secs(15),
        )
        .await;
        let after = daemon_connections(&client).await;
        note(format!(
            "fenced at {at_fence} received: the daemon's connections to the read-only primary went from {} to {} ({:?}) in {:.1} s",
            before.len(),
            after.len(),
            after,
            t_fence.elapsed().as_secs_f64()
        ));
        assert!(dropped, "the daemon kept pool or leader connections to the read-only primary: {after:?} (before: {before:?})");
    }

    // 2. Stop the old primary hard and promote the standby.
    drop(client);
    let t_stop = Instant::now();
    primary.stop_immediate().await.expect("pg_ctl stop -m immediate (the primary)");
    standby.promote().await.expect("pg_ctl promote (the standby)");
    let at_promote = sink.count();
    let promoted_after = t_stop.elapsed();
    let client = outbox::connect(&standby.url(), Duration::from_secs(10)).await;
    // recovered: the daemon claims and records outcomes on the new primary (events written after
    // the promotion), not merely finishes sends it had claimed before
    let last: i64 = client.query_one("SELECT coalesce(max(id), 0) FROM et_message_events", &[]).await.expect("last event").get(0);
    let resumed = outbox::wait(
        &client,
        &format!(
            "SELECT EXISTS (SELECT 1 FROM et_message_events WHERE id > {last} AND to_status = 'sending')
                AND EXISTS (SELECT 1 FROM et_message_events WHERE id > {last} AND to_status = 'sent')"
        ),
        Duration::from_secs(30),
    )
    .await;
    let recovered = t_stop.elapsed();
    assert!(resumed, "the daemon did not claim and record on the new primary within 30 s ({} received)", sink.count());
    // the application keeps writing for a second on the new primary, then stops
    tokio::time::sleep(Duration::from_secs(1)).await;
    app_stop.cancel();
    let (acked, app_failures) = app.await.expect("the application task");
    let kept: i64 = client
        .query_one("SELECT count(*) FROM et_messages WHERE tenant_id = 'acme' AND idempotency_key = ANY($1)", &[&acked])
        .await
        .expect("count the application's messages")
        .get(0);
    note(format!(
        "the application's inserts: {} acknowledged, {kept} of them on the new primary; {app_failures} failed tries (retried)",
        acked.len()
    ));
    let led = outbox::wait(
        &client,
        &format!(
            "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                             WHERE l.locktype = 'advisory' AND l.granted AND l.classid::int8 = {} AND l.objid::int8 = {}
                               AND a.application_name LIKE 'pgcourier leader %')",
            pgcourier::db::leader::LEADER_LOCK >> 32,
            pgcourier::db::leader::LEADER_LOCK & 0xffff_ffff
        ),
        Duration::from_secs(10),
    )
    .await;
    let listening = outbox::wait(
        &client,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'pgcourier listener')",
        Duration::from_secs(40),
    )
    .await;
    let done = settled(&client, "true", Duration::from_secs(40)).await;
    note(format!(
        "stopped and promoted in {:.1} s at {at_promote} received; claims and outcomes on the new primary {:.1} s after the stop; leader on the new \
         primary {led}, LISTEN on it {listening}; settled {done} after {:.1} s in all",
        promoted_after.as_secs_f64(),
        recovered.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    ));
    sink_quiet(&sink, Duration::from_millis(500), Duration::from_secs(5)).await;
    let alive = daemon.alive();
    drop(daemon);
    let tally = Tally::count(
        &format!("failover: primary {what}, synchronous standby promoted (3,000 msgs + the application's)"),
        &client,
        "true",
        Copies::Sink(sink.message_ids()),
    )
    .await;
    drop(client);
    standby.stop().await.expect("stop the promoted standby");
    primary.stop().await.expect("the old primary is down");
    assert!(alive, "the daemon exited during the failover");
    assert_eq!(kept as usize, acked.len(), "inserts acknowledged by the old primary are missing on the new one (synchronous replication)");
    assert!(tally.expected >= N as usize + acked.len(), "messages were lost with the old primary — {}", tally.line());
    assert!(done, "not every message reached a final status — {}", tally.line());
    tally.assert_clean();
    assert!(led, "the leader lock was not taken again on the new primary");
    assert!(listening, "the LISTEN connection did not come back on the new primary");
}
