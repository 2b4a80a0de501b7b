//! `retention`: does pruning keep the tables bounded, keep up with the drain, and leave the
//! drain as fast as without it?
//!
//! 1. History: `--retention-days` (14) days of sent messages, `--retention-per-day` (25,000) a
//!    day, each with its three events, in daily partitions (as a database partitioned that long
//!    ago would hold them): a day at a time, one bulk insert with triggers, the two status changes
//!    the daemon makes, then the day's messages and events moved back (triggers off). The tenant
//!    keeps 7 days (`message_retention_days`, `event_retention_days`).
//! 2. `--retention-rounds` (3) rounds of two drains of `--drain-messages`, by daemons that run
//!    maintenance every second (`PGCOURIER_MAINTENANCE_INTERVAL=1s`): first with periods of
//!    3,650 days (nothing to prune: the control), then with the 7-day periods (the leader prunes
//!    while it sends). Alternating, so that neither kind always follows the other: one drain
//!    against one other moves by more than the 5% judged here on these machines, and a drain
//!    that follows a drain finds dead queue rows and a larger table. Each kind's rate is its
//!    messages over its drains' total time.
//! 3. After the last pruning drain its daemon goes on until nothing older than the window is
//!    left; table sizes and live rows are sampled every second (seconds from the first pruning
//!    drain's start).
//! 4. Checked: every drained message sent with its full history, nothing older than the window
//!    left, nothing inside it lost (messages and events of the kept days counted before and after).

use crate::child::ChildDaemon;
use crate::setup::{BenchDb, DaemonSettings, QUEUE_SETTLED, SENDER, TENANT};
use serde::Serialize;
use std::time::{Duration, Instant};

pub struct Params {
    pub days: usize,
    pub per_day: usize,
    pub drain: usize,
    /// Rounds of a control drain and a pruning drain.
    pub rounds: usize,
    pub daemon: DaemonSettings,
}

/// Messages deleted so far, as the statistics count them (each statement its own transaction,
/// so its own snapshot of them).
const DELETED_SQL: &str = "SELECT n_tup_del FROM pg_stat_user_tables WHERE relid = 'et_messages'::regclass";

/// The window the tenant keeps, in days.
const WINDOW_DAYS: i32 = 7;

/// Sizes and live rows at one moment (live rows as the statistics count them: a `count(*)` of
/// 10M rows every second would load the machine it measures; the first and last are exact).
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the pruning daemon started.
    pub at_s: f64,
    pub messages: i64,
    pub events: i64,
    pub messages_mb: f64,
    pub events_mb: f64,
    pub event_partitions: i64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub days: usize,
    pub per_day: usize,
    pub history_load_s: f64,
    pub drain_messages: usize,
    pub rounds: usize,
    /// msgs/s of each control drain (nothing to prune), in order.
    pub control_runs_msgs_per_s: Vec<f64>,
    /// msgs/s of each drain while the pruner runs, in order.
    pub pruning_runs_msgs_per_s: Vec<f64>,
    /// All control drains' messages over their total time: the target's base.
    pub control_msgs_per_s: f64,
    /// All pruning drains' messages over their total time.
    pub pruning_msgs_per_s: f64,
    /// From the first pruning daemon's start until nothing older than the window was left
    /// (the control drains between included).
    pub prune_s: f64,
    /// The pruning drains' total length, and messages past the window deleted in them (the
    /// pruner throttled: sends were due).
    pub pruning_drain_s: f64,
    pub pruned_while_draining: i64,
    /// Messages deleted per second while sends were due, and after (nothing due: full speed).
    pub throttled_msgs_per_s: f64,
    pub unthrottled_msgs_per_s: f64,
    /// What the history's own rate needs: `per_day` a day pruned, per second.
    pub needed_msgs_per_s: f64,
    /// Messages deleted by the pruner, and per second of `prune_s`.
    pub pruned_messages: i64,
    pub pruned_messages_per_s: f64,
    pub samples: Vec<Sample>,
    /// What is wrong (empty: every check passed).
    pub problems: Vec<String>,
}

async fn sample(db: &BenchDb, t0: Instant, exact: bool) -> anyhow::Result<Sample> {
    let counts = match exact {
        true => "(SELECT count(*) FROM et_messages), (SELECT count(*) FROM et_message_events),",
        false => {
            "(SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'et_messages'::regclass),
                  (SELECT coalesce(sum(n_live_tup), 0)::int8 FROM pg_stat_user_tables s JOIN pg_inherits i ON i.inhrelid = s.relid
                    WHERE i.inhparent = 'et_message_events'::regclass),"
        }
    };
    let r = db
        .client
        .query_one(
            &format!(
                "SELECT {counts}
                    (pg_total_relation_size('et_messages') / 1048576.0)::float8,
                    ((SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits
                       WHERE inhparent = 'et_message_events'::regclass) / 1048576.0)::float8,
                    (SELECT count(*) FROM pg_inherits WHERE inhparent = 'et_message_events'::regclass)"
            ),
            &[],
        )
        .await?;
    Ok(Sample {
        at_s: t0.elapsed().as_secs_f64(),
        messages: r.get(0),
        events: r.get(1),
        messages_mb: r.get(2),
        events_mb: r.get(3),
        event_partitions: r.get(4),
    })
}

async fn set_window(db: &BenchDb, days: i32) -> anyhow::Result<()> {
    db.client
        .execute(
            "UPDATE et_tenants SET settings = settings || jsonb_build_object('message_retention_days', $1::int, 'event_retention_days', $1::int)",
            &[&days],
        )
        .await?;
    Ok(())
}

/// The history: `days` days of sent messages in daily partitions, `per_day` a day; how long
/// making it took.
async fn history(db: &BenchDb, session: i64, p: &Params) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let days = p.days as i32;
    // the partitions of a database partitioned `days` ago: one per past day (the new database's
    // empty first partition goes), then today and the week ahead
    db.client
        .batch_execute(&format!(
            "DO $$ DECLARE d int; BEGIN
               ALTER TABLE et_message_events DETACH PARTITION et_message_events_p_legacy;
               DROP TABLE et_message_events_p_legacy;
               FOR d IN REVERSE {days} .. 1 LOOP
                 EXECUTE format('CREATE TABLE %I PARTITION OF et_message_events FOR VALUES FROM (%L) TO (%L)',
                                et_event_partition_name(current_date - d),
                                (current_date - d)::timestamp AT TIME ZONE 'UTC', (current_date - d + 1)::timestamp AT TIME ZONE 'UTC');
               END LOOP;
             END $$;
             SELECT et_event_partitions_upkeep();"
        ))
        .await?;
    // a day at a time, so that no statement holds more than a day's rows (10M messages in one
    // statement would keep transition tables of 10M rows)
    for day in 1..=days {
        db.bulk_outbound(session, p.per_day).await?;
        // sent the way the daemon sends them (each change audited), then moved back `day` days
        // less 6 hours, so that none sits on the window's edge; their events move with them
        // (triggers off: this is a restore of old history)
        db.client
            .batch_execute(&format!(
                "UPDATE et_messages SET delivery_status = 'sending', attempts = 1 WHERE {today} AND delivery_status = 'queued';
                 UPDATE et_messages SET delivery_status = 'sent', sent_at = now() WHERE {today} AND delivery_status = 'sending';
                 DELETE FROM et_outbound_queue;
                 BEGIN;
                 SET LOCAL session_replication_role = replica;
                 UPDATE et_messages SET created_at = created_at - {shift}, updated_at = updated_at - {shift}, sent_at = sent_at - {shift}
                  WHERE {today};
                 UPDATE et_message_events SET created_at = created_at - {shift} WHERE created_at > now() - interval '1 hour';
                 COMMIT;",
                shift = format!("(interval '{day} days' - interval '6 hours')"),
                // along the (tenant_id, created_at) index: the older days are not read again
                today = format!("tenant_id = '{TENANT}' AND created_at > now() - interval '1 hour'"),
            ))
            .await?;
        eprintln!("retention: day {day} of {days} made ({:.0} s so far)", t.elapsed().as_secs_f64());
    }
    // (one statement each: VACUUM refuses to run in the implicit transaction of a batch)
    db.client.batch_execute("VACUUM ANALYZE et_messages").await?;
    db.client.batch_execute("VACUUM ANALYZE et_message_events").await?;
    Ok(t.elapsed())
}

/// One drain of `n` fresh messages by a daemon that prunes on `maintenance_interval`; its
/// seconds, the daemon, and when it started.
async fn drain(db: &BenchDb, session: i64, n: usize, daemon: &DaemonSettings) -> anyhow::Result<(f64, ChildDaemon, Instant)> {
    db.client.batch_execute("CHECKPOINT").await.ok();
    db.bulk_outbound(session, n).await?;
    let mut d = ChildDaemon::spawn(db, daemon).await?;
    let t0 = d.started;
    d.ready(Duration::from_secs(30)).await?;
    let done = db.until_or_fail(QUEUE_SETTLED, &mut d, Duration::from_secs(60) + Duration::from_millis(n as u64 * 5)).await?;
    Ok((done.duration_since(t0).as_secs_f64(), d, t0))
}

pub async fn run(db: &BenchDb, p: &Params) -> anyhow::Result<Report> {
    let session = db.log_session("email", SENDER).await?;
    set_window(db, 3650).await?;
    let history_load = history(db, session, p).await?;
    // along the (tenant_id, created_at) index; the loop below asks only whether one is left
    let past_window = format!("tenant_id = '{TENANT}' AND created_at < now() - interval '{WINDOW_DAYS} days'");
    let expired_sql = format!("SELECT count(*) FROM et_messages WHERE {past_window}");
    let any_expired_sql = format!("SELECT count(*) FROM (SELECT 1 FROM et_messages WHERE {past_window} LIMIT 1) one");
    let expired = db.count(&expired_sql).await?;
    let kept_events_sql = format!(
        "SELECT count(*) FROM et_message_events e JOIN et_messages m ON m.tenant_id = e.tenant_id AND m.id = e.message_id
          WHERE m.created_at >= now() - interval '{WINDOW_DAYS} days' AND m.created_at < now() - interval '1 hour'"
    );
    let kept_messages_sql = format!(
        "SELECT count(*) FROM et_messages WHERE created_at >= now() - interval '{WINDOW_DAYS} days' AND created_at < now() - interval '1 hour'"
    );
    let (kept_messages, kept_events) = (db.count(&kept_messages_sql).await?, db.count(&kept_events_sql).await?);
    let start = sample(db, Instant::now(), true).await?;
    eprintln!("retention: history of {} messages ({expired} past the window) made in {:.0} s", start.messages, history_load.as_secs_f64());

    anyhow::ensure!(p.rounds > 0, "--retention-rounds must be at least 1");
    let daemon = DaemonSettings { maintenance_interval: Some("1s".to_owned()), ..p.daemon.clone() };
    let deleted_before = db.count(DELETED_SQL).await?;
    let (mut control_runs, mut pruning_runs) = (Vec::new(), Vec::new());
    let (mut control_s, mut pruning_drain_s) = (0.0, 0.0);
    let mut first_pruning_start = None;
    let mut last = None;
    for round in 1..=p.rounds {
        set_window(db, 3650).await?;
        let (s, d, _) = drain(db, session, p.drain, &daemon).await?;
        d.stop().await?;
        control_s += s;
        control_runs.push(p.drain as f64 / s);
        set_window(db, WINDOW_DAYS).await?;
        let (s, d, t0) = drain(db, session, p.drain, &daemon).await?;
        first_pruning_start.get_or_insert(t0);
        pruning_drain_s += s;
        pruning_runs.push(p.drain as f64 / s);
        eprintln!(
            "retention: round {round} of {}: drain with nothing to prune {:.0} msgs/s, while pruning {:.0} msgs/s",
            p.rounds,
            control_runs[round - 1],
            pruning_runs[round - 1]
        );
        if round < p.rounds {
            d.stop().await?;
        } else {
            last = Some(d);
        }
    }
    let (Some(mut d), Some(t0)) = (last, first_pruning_start) else { anyhow::bail!("no pruning drain ran") };
    let drained = p.rounds as f64 * p.drain as f64;
    let (control, pruning) = (drained / control_s, drained / pruning_drain_s);
    let pruned_while_draining = expired - db.count(&expired_sql).await?;
    let mut samples = vec![Sample { at_s: 0.0, ..start }];
    // at the pruner's full speed (about 10,000 msgs/s here) with room to spare
    let limit = Duration::from_secs(600 + expired as u64 / 1000);
    let deadline = Instant::now() + limit;
    let mut last_sample = Instant::now() - Duration::from_secs(1);
    loop {
        if last_sample.elapsed() >= Duration::from_secs(1) {
            samples.push(sample(db, t0, false).await?);
            last_sample = Instant::now();
        }
        // the exact question only once the statistics count enough deletes: asked every time,
        // its walk over the index's dead entries loaded the machine it measures
        let deleted = db.count(DELETED_SQL).await? - deleted_before;
        let left = if deleted >= expired { db.count(&any_expired_sql).await? } else { 1 };
        let old_days = db
            .count(&format!("SELECT count(*) FROM et_event_partitions() WHERE upper_bound <= now() - interval '{WINDOW_DAYS} days'"))
            .await?;
        if left == 0 && old_days == 0 {
            break;
        }
        d.check_alive()?;
        if Instant::now() >= deadline {
            let left = db.count(&expired_sql).await?;
            anyhow::bail!("the pruner left {left} messages and {old_days} days past the window after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let prune_s = t0.elapsed().as_secs_f64();
    samples.push(sample(db, t0, true).await?);
    d.stop().await?;

    let mut problems = Vec::new();
    let sent =
        db.count("SELECT count(*) FROM et_messages WHERE created_at >= now() - interval '1 hour' AND delivery_status = 'sent'").await?;
    if sent as usize != 2 * p.rounds * p.drain {
        problems.push(format!("retention: {sent} of {} drained messages sent", 2 * p.rounds * p.drain));
    }
    let (m, e) = (db.count(&kept_messages_sql).await?, db.count(&kept_events_sql).await?);
    if (m, e) != (kept_messages, kept_events) {
        problems.push(format!("retention: inside the window {kept_messages} messages / {kept_events} events before, {m} / {e} after"));
    }
    Ok(Report {
        days: p.days,
        per_day: p.per_day,
        history_load_s: history_load.as_secs_f64(),
        drain_messages: p.drain,
        rounds: p.rounds,
        control_runs_msgs_per_s: control_runs,
        pruning_runs_msgs_per_s: pruning_runs,
        control_msgs_per_s: control,
        pruning_msgs_per_s: pruning,
        prune_s,
        pruned_messages: expired,
        pruned_messages_per_s: expired as f64 / prune_s,
        pruning_drain_s,
        pruned_while_draining,
        throttled_msgs_per_s: pruned_while_draining as f64 / pruning_drain_s,
        unthrottled_msgs_per_s: (expired - pruned_while_draining) as f64 / (prune_s - pruning_drain_s).max(0.001),
        needed_msgs_per_s: p.per_day as f64 / 86_400.0,
        samples,
        problems,
    })
}
