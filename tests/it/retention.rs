//! Retention (triggers/098_retention.sql, src/maintenance.rs): each kind of history leaves after
//! its tenant's period and nothing still moving is touched; the audit trail's daily partitions
//! are made ahead and dropped whole; the leader daemon runs it all on its maintenance pass.

use crate::support::daemon::{spawn, until};
use crate::support::db::TestDb;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SECS: Duration = Duration::from_secs(10);

/// Insert an outbound message of `tenant` (queued, or `status` as its first status).
async fn message(db: &TestDb, tenant: &str, session: i64, status: &str) -> i64 {
    let scheduled = if status == "queued" { "now() + interval '1 year'" } else { "NULL" };
    db.client
        .query_one(
            &format!(
                "INSERT INTO et_messages (tenant_id, channel_session_id, direction, delivery_status, recipients, subject, body_text, scheduled_at)
                 VALUES ($1, $2, 'outbound', $3, ARRAY['ann@example.com'], 'Hello', 'Body', {scheduled}) RETURNING id"
            ),
            &[&tenant, &session, &status],
        )
        .await
        .unwrap()
        .get(0)
}

/// An outbound message of acme on session `$1`, due now (nothing scheduled); its id.
const DUE_NOW: &str = "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
                       VALUES ('acme', $1, 'outbound', ARRAY['ann@example.com'], 'Hi', 'Now') RETURNING id";

/// Insert an outbound message of acme due now (nothing scheduled).
async fn due_now(db: &TestDb, session: i64) -> i64 {
    db.client.query_one(DUE_NOW, &[&session]).await.unwrap().get(0)
}

/// Take a queued message through `statuses` the way the daemon does (its queue row leaves when
/// it is sent, and turns dead when it fails).
async fn walk(db: &TestDb, id: i64, statuses: &[&str]) {
    for s in statuses {
        db.client.execute("UPDATE et_messages SET delivery_status = $2 WHERE id = $1", &[&id, s]).await.unwrap();
        match *s {
            "sent" | "cancelled" => {
                db.client.execute("DELETE FROM et_outbound_queue WHERE message_id = $1", &[&id]).await.unwrap();
            }
            "failed" => {
                db.client.execute("UPDATE et_outbound_queue SET state = 'dead' WHERE message_id = $1", &[&id]).await.unwrap();
            }
            _ => {}
        }
    }
}

/// Move a message and everything about it `days` into the past (triggers off, as a restore of old
/// history would be).
async fn backdate(db: &TestDb, id: i64, days: i32) {
    let mut c = db.connect().await;
    let tx = c.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL session_replication_role = replica").await.unwrap();
    for sql in [
        "UPDATE et_messages SET created_at = created_at - make_interval(days => $2), updated_at = updated_at - make_interval(days => $2) WHERE id = $1",
        "UPDATE et_message_events SET created_at = created_at - make_interval(days => $2) WHERE message_id = $1",
        "UPDATE et_outbound_queue SET updated_at = updated_at - make_interval(days => $2), created_at = created_at - make_interval(days => $2) WHERE message_id = $1",
        "UPDATE et_webhook_deliveries SET created_at = created_at - make_interval(days => $2) WHERE payload -> 'data' ->> 'id' = $1::bigint::text",
    ] {
        tx.execute(sql, &[&id, &days]).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// `n` finished (cancelled) messages of acme on `session`, made `days` old (triggers off, as a
/// restore of old history would be); their ids.
async fn expired_messages(db: &TestDb, session: i64, n: i32, days: i32) -> Vec<i64> {
    let ids = db
        .client
        .query(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, delivery_status, recipients, body_text)
             SELECT 'acme', $1, 'outbound', 'pending_approval', ARRAY['ann@example.com'], 'x' FROM generate_series(1, $2)
             RETURNING id",
            &[&session, &n],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect::<Vec<i64>>();
    db.client.execute("UPDATE et_messages SET delivery_status = 'cancelled' WHERE id = ANY($1)", &[&ids]).await.unwrap();
    let mut c = db.connect().await;
    let tx = c.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL session_replication_role = replica").await.unwrap();
    tx.execute(
        "UPDATE et_messages SET created_at = now() - make_interval(days => $2), updated_at = now() - make_interval(days => $2)
          WHERE id = ANY($1)",
        &[&ids, &days],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    ids
}

/// The partitioned audit trail as it is after months: the first (legacy) partition gone, and one
/// day's partition `days` ago for each of `days` (named `et_message_events_p_old<days>`).
async fn old_days(db: &TestDb, days: &[i32]) {
    let mut sql = "ALTER TABLE et_message_events DETACH PARTITION et_message_events_p_legacy;
                   DROP TABLE et_message_events_p_legacy;"
        .to_owned();
    for d in days {
        sql += &format!(
            "CREATE TABLE et_message_events_p_old{d} PARTITION OF et_message_events
               FOR VALUES FROM (date_trunc('day', now() - interval '{d} days')) TO (date_trunc('day', now() - interval '{} days'));",
            d - 1
        );
    }
    db.client.batch_execute(&sql).await.unwrap();
}

/// Tenant acme keeping messages and events 30 days, and the audit trail with a day `days` ago for
/// each of `days` ([`old_days`]); the database and acme's email session.
async fn thirty_days_and_old_days(days: &[i32]) -> (TestDb, i64) {
    let db = TestDb::new().await;
    let (acme, _) = db.seed_acme().await;
    db.client
        .batch_execute("UPDATE et_tenants SET settings = '{\"event_retention_days\": 30, \"message_retention_days\": 30}'")
        .await
        .unwrap();
    old_days(&db, days).await;
    (db, acme)
}

/// How many of [`old_days`]' days are left.
const OLD_LEFT: &str = "SELECT count(*) FROM et_event_partitions() WHERE name LIKE 'et_message_events_p_old%'";

async fn exists(db: &TestDb, id: i64) -> bool {
    db.count(&format!("SELECT count(*) FROM et_messages WHERE id = {id}")).await == 1
}

async fn pass(db: &TestDb) {
    let pool = pgcourier::db::pool(db.url.parse().unwrap(), 1).unwrap();
    pgcourier::maintenance::pass(&pool, &mut Default::default(), &CancellationToken::new()).await.unwrap();
}

#[tokio::test]
async fn each_kind_of_history_leaves_after_its_tenants_period_and_nothing_still_moving_is_touched() {
    let db = TestDb::new().await;
    let (acme, _) = db.seed_acme().await;
    db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('beta', 'Beta')").await.unwrap();
    let beta = db.session("beta", "email", "file", "beta@beta.example").await;
    db.client
        .batch_execute(
            "UPDATE et_tenants SET settings = '{\"message_retention_days\": 30, \"dead_letter_retention_days\": 10,
                                               \"webhook_delivery_retention_days\": 5, \"security_event_retention_days\": 20}'
              WHERE id = 'acme';
             INSERT INTO et_webhook_endpoints (tenant_id, url, secret)
             VALUES ('acme', 'https://hooks.example/x', 'whsec_' || repeat('A', 32))",
        )
        .await
        .unwrap();

    let sent_old = message(&db, "acme", acme, "queued").await;
    let sent_recent = message(&db, "acme", acme, "queued").await;
    let cancelled_old = message(&db, "acme", acme, "queued").await;
    let dead_old = message(&db, "acme", acme, "queued").await;
    let dead_recent = message(&db, "acme", acme, "queued").await;
    let pending_old = message(&db, "acme", acme, "pending_approval").await;
    let scheduled_old = message(&db, "acme", acme, "queued").await;
    let beta_sent = message(&db, "beta", beta, "queued").await;
    let sent_today = message(&db, "acme", acme, "queued").await;
    for id in [sent_old, sent_recent, beta_sent, sent_today] {
        walk(&db, id, &["sending", "sent"]).await;
    }
    walk(&db, cancelled_old, &["cancelled"]).await;
    for id in [dead_old, dead_recent] {
        walk(&db, id, &["sending", "failed"]).await;
    }
    // the thread's insight names the message that goes
    db.client
        .execute(
            "INSERT INTO et_thread_insights (tenant_id, thread_id, summary, source_message_id)
             SELECT tenant_id, thread_id, 'asked for an invoice', id FROM et_messages WHERE id = $1",
            &[&sent_old],
        )
        .await
        .unwrap();
    for (id, days) in [
        (sent_old, 31),
        (sent_recent, 29),
        (cancelled_old, 31),
        (dead_old, 11),
        (dead_recent, 9),
        (pending_old, 400),
        (scheduled_old, 400),
        (beta_sent, 31),
    ] {
        backdate(&db, id, days).await;
    }
    db.client
        .batch_execute(
            "UPDATE et_webhook_deliveries SET state = 'delivered';
             INSERT INTO et_security_events (tenant_id, actor, action, created_at) VALUES
               ('acme', 'test', 'old', now() - interval '21 days'), ('acme', 'test', 'recent', now() - interval '19 days'),
               (NULL, 'test', 'system, recent', now() - interval '300 days'), (NULL, 'test', 'system, old', now() - interval '366 days')",
        )
        .await
        .unwrap();
    let threads = db.count("SELECT count(*) FROM et_threads").await;
    let deliveries_of_gone = db
        .count(&format!(
            "SELECT count(*) FROM et_webhook_deliveries WHERE payload -> 'data' ->> 'id' IN ('{sent_old}', '{cancelled_old}', '{dead_old}')"
        ))
        .await;
    assert!(deliveries_of_gone > 0, "the endpoint got deliveries to prune");

    pass(&db).await;

    for (id, kept, what) in [
        (sent_old, false, "sent 31 days ago (30)"),
        (sent_recent, true, "sent 29 days ago"),
        (cancelled_old, false, "cancelled 31 days ago"),
        (dead_old, false, "dead letter of 11 days (10)"),
        (dead_recent, true, "dead letter of 9 days"),
        (pending_old, true, "pending approval: still moving"),
        (scheduled_old, true, "scheduled: still moving"),
        (beta_sent, true, "beta keeps 90 days (the default)"),
    ] {
        assert_eq!(exists(&db, id).await, kept, "{what}");
        let events = db.count(&format!("SELECT count(*) FROM et_message_events WHERE message_id = {id}")).await;
        assert_eq!(events > 0, kept, "{what}: its events go with it ({events})");
    }
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_outbound_queue WHERE message_id = {dead_old}")).await, 0, "the dead queue row");
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_outbound_queue WHERE message_id = {scheduled_old}")).await, 1);
    // what a thread keeps: its row, and its insight without the reference
    assert_eq!(db.count("SELECT count(*) FROM et_threads").await, threads);
    assert_eq!(
        db.count("SELECT count(*) FROM et_thread_insights WHERE summary = 'asked for an invoice' AND source_message_id IS NULL").await,
        1
    );
    // the console's counters follow: acme has two sent messages left, beta one
    assert_eq!(
        db.count("SELECT coalesce(sum(n), 0)::bigint FROM et_message_counts WHERE tenant_id = 'acme' AND delivery_status = 'sent'").await,
        2
    );
    assert_eq!(
        db.count("SELECT coalesce(sum(n), 0)::bigint FROM et_message_counts WHERE tenant_id = 'beta' AND delivery_status = 'sent'").await,
        1
    );
    // webhook deliveries older than 5 days went (those of every message backdated past it)
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_deliveries WHERE created_at < now() - interval '5 days'").await, 0);
    assert!(
        db.count(&format!("SELECT count(*) FROM et_webhook_deliveries WHERE payload -> 'data' ->> 'id' = '{sent_today}'")).await > 0,
        "recent deliveries stay"
    );
    let security: Vec<String> =
        db.client.query("SELECT action FROM et_security_events ORDER BY action", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(security, ["recent", "system, recent"]);

    // a second pass finds nothing more
    let before = db.count("SELECT count(*) FROM et_messages").await;
    pass(&db).await;
    assert_eq!(db.count("SELECT count(*) FROM et_messages").await, before);
}

#[tokio::test]
async fn message_batches_are_bounded_and_a_tenant_with_a_shorter_event_period_loses_only_its_events() {
    let db = TestDb::new().await;
    let (acme, _) = db.seed_acme().await;
    let ids = expired_messages(&db, acme, 2500, 100).await;
    let mut c = db.connect().await;
    // one call deletes at most its limit; the pass goes on until a batch comes back short
    let n: i32 = db.client.query_one("SELECT et_prune_messages(1000)", &[]).await.unwrap().get(0);
    assert_eq!(n, 1000);
    pass(&db).await;
    assert_eq!(db.count("SELECT count(*) FROM et_messages").await, 0, "{} messages", ids.len());
    assert_eq!(db.count("SELECT count(*) FROM et_message_events").await, 0);

    // events alone: acme keeps them 1 day, beta 90; acme's messages stay (their own period)
    db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('beta', 'Beta')").await.unwrap();
    let beta = db.session("beta", "email", "file", "beta@beta.example").await;
    db.client.batch_execute("UPDATE et_tenants SET settings = '{\"event_retention_days\": 1}' WHERE id = 'acme'").await.unwrap();
    let a = message(&db, "acme", acme, "pending_approval").await;
    let b = message(&db, "beta", beta, "pending_approval").await;
    let tx = c.transaction().await.unwrap();
    tx.batch_execute(
        "SET LOCAL session_replication_role = replica; UPDATE et_message_events SET created_at = created_at - interval '2 days'",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    pass(&db).await;
    assert!(exists(&db, a).await && exists(&db, b).await);
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_message_events WHERE message_id = {a}")).await, 0);
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_message_events WHERE message_id = {b}")).await, 1);
}

#[tokio::test]
async fn event_partitions_are_made_ahead_moved_out_of_the_default_and_dropped_whole_when_expired() {
    let db = TestDb::new().await;
    let (acme, _) = db.seed_acme().await;
    db.client.batch_execute("UPDATE et_tenants SET settings = '{\"event_retention_days\": 30}'").await.unwrap();
    pass(&db).await;
    // today and the next seven days have their partition
    let uncovered = "SELECT count(*) FROM generate_series(0, 7) d
                      WHERE NOT EXISTS (SELECT 1 FROM et_event_partitions() p
                                         WHERE p.upper_bound > now() + make_interval(days => d)
                                           AND p.name <> 'et_message_events_default'
                                           AND (p.name = 'et_message_events_p_legacy'
                                                OR p.upper_bound - interval '1 day' <= now() + make_interval(days => d)))";
    assert_eq!(db.count(uncovered).await, 0);

    // history from long ago: the partitioned table as it is after months, old days included
    let id = message(&db, "acme", acme, "pending_approval").await;
    old_days(&db, &[40, 20]).await;
    let event = |days: i32| {
        format!(
            "INSERT INTO et_message_events (tenant_id, message_id, to_status, actor, created_at)
             VALUES ('acme', {id}, 'pending_approval', 'test', now() - interval '{days} days')"
        )
    };
    for days in [40, 20, 35] {
        db.client.batch_execute(&event(days)).await.unwrap();
    }
    // a day the daemons did not make in time (they were down): its events wait in the default
    let last = db.client.query_one("SELECT max(name) FROM et_event_partitions() WHERE name ~ '_p_[0-9]{8}$'", &[]).await.unwrap();
    let last: String = last.get(0);
    db.client.batch_execute(&format!("DROP TABLE {last}")).await.unwrap();
    db.client
        .batch_execute(&format!(
            "INSERT INTO et_message_events (tenant_id, message_id, to_status, actor, created_at)
             VALUES ('acme', {id}, 'pending_approval', 'ahead', now() + interval '7 days')"
        ))
        .await
        .unwrap();
    assert_eq!(db.count("SELECT count(*) FROM et_message_events_default").await, 2, "the 35-day-old event and the one ahead");

    pass(&db).await;
    let names: Vec<String> =
        db.client.query("SELECT name FROM et_event_partitions()", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert!(!names.contains(&"et_message_events_p_old40".to_owned()), "40 days > 30: dropped whole: {names:?}");
    assert!(names.contains(&"et_message_events_p_old20".to_owned()), "{names:?}");
    assert!(names.contains(&last), "the missing day made again: {names:?}");
    assert_eq!(db.count("SELECT count(*) FROM et_message_events_default").await, 0, "moved to its day, or expired");
    let actors: Vec<String> = db
        .client
        .query(&format!("SELECT actor || '@' || tableoid::regclass FROM et_message_events WHERE message_id = {id} AND actor <> 'trigger' ORDER BY created_at"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actors.len(), 2, "{actors:?}");
    assert_eq!(actors[1], format!("ahead@{last}"), "{actors:?}");
}

#[tokio::test]
async fn expired_days_are_dropped_one_per_call_oldest_first_and_a_busy_trail_is_left_for_later() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    db.client.batch_execute("UPDATE et_tenants SET settings = '{\"event_retention_days\": 30}'").await.unwrap();
    old_days(&db, &[40, 35, 20]).await;
    let drop_one =
        || async { db.client.query_one("SELECT et_event_partition_drop_expired()", &[]).await.unwrap().get::<_, Option<String>>(0) };

    // a transaction that read the audit trail holds a lock the drop needs: the drop gives up
    // within its 50 ms lock wait instead of queueing every status change behind it
    let mut reader = db.connect().await;
    let tx = reader.transaction().await.unwrap();
    tx.query_one("SELECT count(*) FROM et_message_events", &[]).await.unwrap();
    let t = std::time::Instant::now();
    assert_eq!(drop_one().await, None);
    assert!(t.elapsed() < Duration::from_secs(2), "gave up after {:?}", t.elapsed());
    tx.commit().await.unwrap();

    // then one day per call (each its own transaction), the oldest first; the day inside the
    // period stays
    assert_eq!(drop_one().await.as_deref(), Some("et_message_events_p_old40"));
    assert_eq!(db.count("SELECT count(*) FROM et_event_partitions() WHERE name = 'et_message_events_p_old35'").await, 1);
    assert_eq!(drop_one().await.as_deref(), Some("et_message_events_p_old35"));
    assert_eq!(drop_one().await, None);
    assert_eq!(db.count("SELECT count(*) FROM et_event_partitions() WHERE name = 'et_message_events_p_old20'").await, 1);
}

#[tokio::test]
async fn retention_settings_are_whole_days_and_a_refusal_names_the_setting() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    for bad in ["-1", "2.5", "\"30d\"", "36501", "null"] {
        let key = "dead_letter_retention_days";
        let r = db.client.batch_execute(&format!("UPDATE et_tenants SET settings = '{{\"{key}\": {bad}}}' WHERE id = 'acme'")).await;
        if bad == "null" {
            // a JSON null is not a number either
            let e = r.expect_err(bad);
            assert!(e.as_db_error().unwrap().message().contains(key), "{e}");
            continue;
        }
        let e = r.expect_err(bad);
        let d = e.as_db_error().unwrap();
        assert_eq!((d.code().code(), d.constraint()), ("23514", Some("et_tenants_retention_settings")), "{bad}: {e}");
        assert!(d.message().contains(&format!("settings.{key}")) && d.message().contains("0 to 36500"), "{}", d.message());
    }
    db.client
        .batch_execute("UPDATE et_tenants SET settings = '{\"message_retention_days\": 7, \"event_retention_days\": 0}'")
        .await
        .unwrap();
    let days: i32 =
        db.client.query_one("SELECT et_retention_days(settings, 'message_retention_days') FROM et_tenants", &[]).await.unwrap().get(0);
    assert_eq!(days, 7);
    let days: i32 = db
        .client
        .query_one("SELECT et_retention_days(settings, 'webhook_delivery_retention_days') FROM et_tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(days, 30, "the default");
}

#[tokio::test]
async fn the_leader_daemon_prunes_on_its_maintenance_pass() {
    let db = TestDb::new().await;
    let (acme, _) = db.seed_acme().await;
    let daemon = spawn(&db, &[("PGCOURIER_MAINTENANCE_INTERVAL", "200ms")]);
    let id = message(&db, "acme", acme, "queued").await;
    walk(&db, id, &["cancelled"]).await;
    backdate(&db, id, 91).await;
    until(&db, &format!("SELECT NOT EXISTS (SELECT 1 FROM et_messages WHERE id = {id})"), SECS).await;
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_message_events WHERE message_id = {id}")).await, 0);
    daemon.stop().await;
}

/// The first pass runs as leadership is won, not an interval later: with an hour between passes,
/// history already past its period goes within seconds of the start, and again within seconds of
/// a hand-over to a second daemon.
#[tokio::test]
async fn a_new_leader_runs_its_first_pass_at_once() {
    let db = TestDb::new().await;
    let (acme, _) = db.seed_acme().await;
    let expired = |n: usize| {
        let db = &db;
        async move {
            let mut ids = Vec::new();
            for _ in 0..n {
                let id = message(db, "acme", acme, "queued").await;
                walk(db, id, &["cancelled"]).await;
                backdate(db, id, 91).await;
                ids.push(id);
            }
            ids
        }
    };
    let first = expired(1).await[0];
    let hourly = [("PGCOURIER_MAINTENANCE_INTERVAL", "1h")];
    let a = spawn(&db, &hourly);
    until(&db, &format!("SELECT NOT EXISTS (SELECT 1 FROM et_messages WHERE id = {first})"), SECS).await;

    // a second daemon stands by; once the first stops, it leads and prunes at once
    let b = spawn(&db, &hourly);
    let second = expired(1).await[0];
    assert!(exists(&db, second).await, "the leader's next pass is an hour away");
    a.stop().await;
    until(&db, &format!("SELECT NOT EXISTS (SELECT 1 FROM et_messages WHERE id = {second})"), SECS).await;
    b.stop().await;
}

/// While sends are due the pruner slows down ([`pgcourier::db::retention::work_due`]): the probe
/// sees a due queue row and a waiting inbound row, and nothing once they are handled.
#[tokio::test]
async fn the_pruner_sees_when_work_is_due() {
    let db = TestDb::new().await;
    let (acme, wa) = db.seed_acme().await;
    let pool = pgcourier::db::pool(db.url.parse().unwrap(), 1).unwrap();
    let due = || async { pgcourier::db::retention::work_due(&pool.get().await.unwrap()).await.unwrap() };
    assert!(!due().await, "an empty database has nothing due");
    let later = message(&db, "acme", acme, "queued").await;
    assert!(!due().await, "a send scheduled a year ahead is not due");
    let now = due_now(&db, acme).await;
    assert!(due().await, "a send due now");
    walk(&db, now, &["sending", "sent"]).await;
    walk(&db, later, &["cancelled"]).await;
    assert!(!due().await, "nothing due once it is sent");

    let inbound = crate::webhooks::inbound(&db, wa, "wamid.1").await;
    assert!(due().await, "an inbound message waiting for its decision");
    walk(&db, inbound, &["inbound_processing", "inbound_ai_replied"]).await;
    assert!(!due().await, "nothing due once it is decided");
}

/// A day's drop stops the whole audit trail for a moment, so while a send is due the leader
/// drops one expired day, then one a minute (`maintenance::BUSY_DAY_SPACING`); with nothing due
/// the rest go at once.
#[tokio::test]
async fn while_a_send_is_due_a_pass_drops_one_expired_day_and_leaves_the_rest_for_later() {
    let (db, acme) = thirty_days_and_old_days(&[40, 35, 32]).await;
    let expired = message(&db, "acme", acme, "queued").await;
    walk(&db, expired, &["cancelled"]).await;
    backdate(&db, expired, 40).await;
    // a send due now, and no daemon to take it
    let due = due_now(&db, acme).await;

    let pool = pgcourier::db::pool(db.url.parse().unwrap(), 1).unwrap();
    let mut days = pgcourier::maintenance::DayDrops::default();
    let t = std::time::Instant::now();
    pgcourier::maintenance::pass(&pool, &mut days, &CancellationToken::new()).await.unwrap();
    assert_eq!(db.count(OLD_LEFT).await, 2, "one day dropped, the oldest");
    assert_eq!(db.count("SELECT count(*) FROM et_event_partitions() WHERE name = 'et_message_events_p_old40'").await, 0);
    assert!(t.elapsed() < Duration::from_secs(10), "the pass does not wait for the next day's turn: {:?}", t.elapsed());
    pgcourier::maintenance::pass(&pool, &mut days, &CancellationToken::new()).await.unwrap();
    assert_eq!(db.count(OLD_LEFT).await, 2, "the next day waits its minute while the send is due");
    assert!(!exists(&db, expired).await, "the throttled batches go on meanwhile: the expired message is gone");

    walk(&db, due, &["sending", "sent"]).await;
    pgcourier::maintenance::pass(&pool, &mut days, &CancellationToken::new()).await.unwrap();
    assert_eq!(db.count(OLD_LEFT).await, 0, "nothing due: the rest go at once");
}

/// Days left behind while a send was due go as soon as nothing is due, in the same pass: the
/// message batches that follow offer them again, so that they are not deleted row by row with
/// their messages while they wait for the next pass.
#[tokio::test]
async fn days_left_while_a_send_was_due_go_between_the_batches_once_it_is_sent() {
    let (db, acme) = thirty_days_and_old_days(&[40, 35]).await;
    // three batches of expired messages (`Prune::Messages` takes 1,000 at a time)
    expired_messages(&db, acme, 2500, 40).await;
    let due = due_now(&db, acme).await;

    let pool = pgcourier::db::pool(db.url.parse().unwrap(), 2).unwrap();
    let running = tokio::spawn(async move {
        let mut days = pgcourier::maintenance::DayDrops::default();
        pgcourier::maintenance::pass(&pool, &mut days, &CancellationToken::new()).await.unwrap();
    });
    // the pass starts while the send is due: one day goes, then the first batch of messages
    until(&db, "SELECT count(*) <= 1500 FROM et_messages WHERE created_at < now() - interval '30 days'", SECS).await;
    assert_eq!(db.count(OLD_LEFT).await, 1, "while the send is due, one day goes and the other waits");
    // the send goes out during the throttled batches' rest
    walk(&db, due, &["sending", "sent"]).await;
    running.await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM et_messages WHERE created_at < now() - interval '30 days'").await, 0);
    assert_eq!(db.count(OLD_LEFT).await, 0, "the waiting day went between the batches, in the same pass");
}

/// A day made while an application's insert is routing its `created` event to the default
/// partition (the day had begun without its partition: daemons down, or a database migrated the
/// day before) must not fail that insert: PostgreSQL's ATTACH PARTITION lets inserts run on
/// beside it, and one that chose the default partition before the attach committed is refused
/// after it ("violates partition constraint"), so making a day that has begun first locks the
/// inserts out.
#[tokio::test]
async fn a_day_made_while_an_insert_routes_to_the_default_partition_takes_that_insert() {
    let db = TestDb::new().await;
    let (acme, _) = db.seed_acme().await;
    old_days(&db, &[]).await;
    let today = "SELECT et_event_partition_name((now() AT TIME ZONE 'UTC')::date)";
    let today: String = db.client.query_one(today, &[]).await.unwrap().get(0);

    // the leader makes today's partition; its transaction is still open
    let mut leader = db.connect().await;
    let made = leader.transaction().await.unwrap();
    let n: i32 = made.query_one("SELECT et_event_partitions_make_ahead(0)", &[]).await.unwrap().get(0);
    assert_eq!(n, 1, "today's partition made");
    // an application inserts meanwhile, and waits for it
    let app = db.connect().await;
    let pid: i32 = app.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let insert = tokio::spawn(async move { app.query_one(DUE_NOW, &[&acme]).await.map(|r| r.get::<_, i64>(0)) });
    until(&db, &format!("SELECT coalesce(bool_or(wait_event_type = 'Lock'), false) FROM pg_stat_activity WHERE pid = {pid}"), SECS).await;
    made.commit().await.unwrap();

    let id = insert.await.unwrap().expect("the insert goes on once the day is made");
    let event = format!("SELECT tableoid::regclass::text FROM et_message_events WHERE message_id = {id}");
    let part: String = db.client.query_one(&event, &[]).await.unwrap().get(0);
    assert_eq!(part, today, "its event is in today's partition");
}
