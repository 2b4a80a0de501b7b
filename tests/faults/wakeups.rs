//! Wake-ups: one NOTIFY for a huge transaction, delivery by polling alone, and every row of a
//! mixed load claimed promptly after its commit while the daemon goes busy and idle.

use crate::outbox::{self, settled, sink_quiet};
use crate::smtp_sink::SmtpSink;
use crate::support::TestDb;
use crate::support::{send, smtp_session, spawn};
use crate::tally::{note, Copies, Tally};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::{AsyncMessage, GenericClient};

/// Issue 15 Deliver 9 / DESIGN "NOTIFY contract": 50,000 rows in one transaction (one INSERT ...
/// SELECT generate_series) with a daemon listening and a 60 s poll interval, so the drain can only
/// start from the wake-up. Provider `log` (no sink: copies are counted from the attempts); a
/// connection of our own LISTENs on `et_outbound` and counts the notifications: one.
pub async fn one_50000_row_transaction() {
    const N: i32 = 50_000;
    let db = TestDb::new().await;
    let (_, log) = db.seed_acme().await;
    let (listen, mut conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.expect("a LISTEN connection");
    let notified = Arc::new(AtomicUsize::new(0));
    let counter = notified.clone();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if matches!(&m, AsyncMessage::Notification(n) if n.channel() == "et_outbound") {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    listen.batch_execute("LISTEN et_outbound").await.unwrap();
    let daemon = spawn(&db, &[("PGCOURIER_POLL_INTERVAL", "60s")]);
    daemon.listening().await;
    let t0 = Instant::now();
    db.client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
             SELECT 'acme', $1, 'outbound', ARRAY['+1555' || lpad(i::text, 7, '0')], 'Your code is ' || i
               FROM generate_series(1, $2::int) i",
            &[&log, &N],
        )
        .await
        .expect("one 50,000-row INSERT");
    let insert = t0.elapsed();
    let committed = Instant::now();
    let started =
        outbox::wait(&db.client, "SELECT EXISTS (SELECT 1 FROM et_messages WHERE delivery_status = 'sent')", Duration::from_secs(10)).await;
    let first = committed.elapsed();
    let done = settled(&db.client, "true", Duration::from_secs(90)).await;
    let drain = committed.elapsed();
    daemon.stop().await;
    let notifications = notified.load(Ordering::SeqCst);
    note(format!(
        "50,000-row transaction: insert {:.1} s; first sent {:.2} s after commit; settled {done} {:.1} s after commit ({:.0} msgs/s); \
         NOTIFYs on et_outbound {notifications}",
        insert.as_secs_f64(),
        first.as_secs_f64(),
        drain.as_secs_f64(),
        N as f64 / drain.as_secs_f64()
    ));
    let tally =
        Tally::count("one 50,000-row transaction (log provider: copies = attempts not given back)", &db.client, "true", Copies::Attempts)
            .await;
    drop(listen);
    assert!(started, "nothing sent 10 s after the commit: the wake-up was lost (poll interval 60 s)");
    assert!(done, "not every message reached a final status within 90 s — {}", tally.line());
    tally.assert_clean();
    assert_eq!(notifications, 1, "one NOTIFY for the whole transaction");
}

/// Issue 15 Deliver 9: wake-ups disabled, polling alone. `PGCOURIER_LISTEN=off` (the switch the
/// lead adds; today unknown and ignored) with a 500 ms poll interval: no LISTEN connection, no
/// `et_listeners` row, and messages still go out, each within the poll interval (+ 700 ms).
pub async fn polling_alone() {
    const POLL: Duration = Duration::from_millis(500);
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    let daemon = spawn(&db, &[("PGCOURIER_LISTEN", "off"), ("PGCOURIER_POLL_INTERVAL", "500ms")]);
    // a first message and the daemon's start-up behind us
    send(&db, session, "first@example.com").await;
    let warmed = outbox::sink_reaches(&sink, 1, Duration::from_secs(10)).await;
    let mut latencies = Vec::new();
    for i in 0..5 {
        // idle long enough that a busy daemon's short polling has ended
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let before = sink.count();
        send(&db, session, &format!("p{i}@example.com")).await;
        let committed = Instant::now();
        if outbox::sink_reaches(&sink, before + 1, Duration::from_secs(5)).await {
            latencies.push(sink.messages()[before].at.saturating_duration_since(committed));
        }
    }
    crate::support::send_many(&db, session, "bulk", 200).await;
    let done = settled(&db.client, "true", Duration::from_secs(20)).await;
    sink_quiet(&sink, Duration::from_millis(300), Duration::from_secs(3)).await;
    let listener_connected = daemon.handles.listener.connected.load(Ordering::SeqCst);
    let listen_sessions = db
        .count(&format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND application_name = 'pgcourier listener'", db.name))
        .await;
    let registered = db.count("SELECT count(*) FROM et_listeners").await;
    daemon.stop().await;
    let ms: Vec<u128> = latencies.iter().map(|d| d.as_millis()).collect();
    note(format!(
        "polling alone (PGCOURIER_LISTEN=off, 500 ms poll): latencies {ms:?} ms; listener connected {listener_connected}, \
         LISTEN sessions {listen_sessions}, et_listeners rows {registered}"
    ));
    let tally = Tally::count("wake-ups disabled, polling alone (206 msgs)", &db.client, "true", Copies::Sink(sink.message_ids())).await;
    assert!(warmed && done, "not every message was delivered by polling — {}", tally.line());
    tally.assert_clean();
    assert!(
        !listener_connected && listen_sessions == 0 && registered == 0,
        "PGCOURIER_LISTEN=off must leave LISTEN off: listener connected {listener_connected}, {listen_sessions} LISTEN session(s), \
         {registered} et_listeners row(s)"
    );
    assert_eq!(latencies.len(), 5, "every single message arrived within 5 s: {ms:?}");
    assert!(latencies.iter().all(|d| *d <= POLL + Duration::from_millis(700)), "each within the poll interval: {ms:?} ms");
}

/// Rounds of the mixed load in [`every_row_claimed_within_250_ms_of_its_commit`].
const ROUNDS: u32 = 5;
/// The busy part of a round: inserts from every loader.
const BUSY: Duration = Duration::from_millis(600);
/// The quiet part of a round: long enough for a busy daemon to go idle.
const QUIET: Duration = Duration::from_millis(2500);
/// A row is claimed within this of its commit.
const BOUND: Duration = Duration::from_millis(250);

/// One committed transaction of the load: its messages, what kind of write it was, and the
/// wall clock when its COMMIT returned to the client.
struct Commit {
    ids: Vec<i64>,
    kind: &'static str,
    at: DateTime<Utc>,
}

/// `n` rows in one statement on `session`, to recipients `first`, `first + 1`, ... (mod 1,000,
/// so rows share threads as real traffic does); their ids.
async fn insert(client: &impl GenericClient, session: i64, first: i32, n: i32) -> Vec<i64> {
    client
        .query(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
             SELECT 'acme', $1, 'outbound', ARRAY['+1555' || lpad((($2::int + i) % 1000)::text, 7, '0')], 'Your code is ' || i
               FROM generate_series(1, $3::int) i
             RETURNING id",
            &[&session, &first, &n],
        )
        .await
        .expect("insert messages")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A loader: in the busy part of every round, single rows and short transactions (one to three
/// rows, COMMIT 0–30 ms after the INSERT), 0–30 ms apart; and in every third round (its turn) a
/// burst at some moment: one or two 50–500-row statements in a row. About 1,000 rows/s in all
/// with three loaders, within what the daemon claims and sends on a loaded 2-core machine, so
/// the latency is the wake-up's and not a backlog's.
async fn mixed_loader(db: Arc<TestDb>, session: i64, start: Instant, turn: u32, seed: u64) -> Vec<Commit> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut client = db.connect().await;
    let mut commits = Vec::new();
    let mut next = (seed % 1000) as i32;
    for round in 0..ROUNDS {
        let begin = start + (BUSY + QUIET) * round;
        let mut burst_at = (round % 3 == turn).then(|| begin + BUSY.mul_f64(rng.gen_range(0.0..0.8)));
        tokio::time::sleep_until(begin.into()).await;
        while Instant::now() < begin + BUSY {
            if burst_at.is_some_and(|at| Instant::now() >= at) {
                burst_at = None;
                for _ in 0..rng.gen_range(1..=2) {
                    let n = rng.gen_range(50..=500);
                    let ids = insert(&client, session, next, n).await;
                    commits.push(Commit { ids, kind: "burst", at: Utc::now() });
                    next += n;
                }
            } else if rng.gen_bool(0.6) {
                let ids = insert(&client, session, next, 1).await;
                commits.push(Commit { ids, kind: "single row", at: Utc::now() });
                next += 1;
            } else {
                let n = rng.gen_range(1..=3);
                let tx = client.transaction().await.expect("BEGIN");
                let ids = insert(&tx, session, next, n).await;
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=30))).await;
                tx.commit().await.expect("COMMIT");
                commits.push(Commit { ids, kind: "short transaction", at: Utc::now() });
                next += n;
            }
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=30))).await;
        }
    }
    commits
}

/// An application that inserts a row in the busy part of every round and commits in the quiet
/// part, later in each round: at 20 % of the quiet in the first, 90 % in the last (plus `lag`),
/// so it commits sometimes while the daemon is still busy and sometimes after it went idle.
async fn slow_loader(db: Arc<TestDb>, session: i64, start: Instant, lag: Duration, seed: u64) -> Vec<Commit> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut client = db.connect().await;
    let mut commits = Vec::new();
    for round in 0..ROUNDS {
        let begin = start + (BUSY + QUIET) * round;
        tokio::time::sleep_until((begin + BUSY.mul_f64(rng.gen_range(0.0..0.9))).into()).await;
        let tx = client.transaction().await.expect("BEGIN");
        let ids = insert(&tx, session, (seed % 1000) as i32 + round as i32, 1).await;
        let share = 0.2 + 0.7 * round as f64 / (ROUNDS - 1) as f64;
        tokio::time::sleep_until((begin + BUSY + QUIET.mul_f64(share) + lag).into()).await;
        tx.commit().await.expect("COMMIT");
        commits.push(Commit { ids, kind: "slow transaction", at: Utc::now() });
    }
    commits
}

/// Issue 20 item 4 ("the latency tail"): with the poll interval at 60 s, every row of a mixed
/// load is claimed within 250 ms of its commit; a row that missed its wake-up would wait for the
/// poll. Provider `log`, so the claim is the whole story.
///
/// Five rounds, each 600 ms of inserts from three connections ([`mixed_loader`]: single rows,
/// short transactions and bursts) and then 2.5 s of quiet in which a busy daemon goes idle. Four
/// more connections ([`slow_loader`]) each insert one row in the busy part of every round and
/// commit in the quiet part, later in each round (from 20 % to 90 % of it): early rounds commit
/// while the daemon is still busy (inserts skip their NOTIFY), later ones after it went idle
/// (it waits for one), each transaction having read the busy mark at its INSERT.
///
/// A row's latency: its first `sending` event's `created_at` (the claiming statement's `now()`)
/// − the wall clock when its COMMIT returned to the client (one host, one clock). The case also
/// requires that the daemon went idle (no fresh `et_dispatch_busy` mark) in some quiet part, or
/// the load never reached the handover it is about.
pub async fn every_row_claimed_within_250_ms_of_its_commit() {
    let db = Arc::new(TestDb::new().await);
    let (_, log) = db.seed_acme().await;
    let daemon = spawn(&db, &[("PGCOURIER_POLL_INTERVAL", "60s")]);
    daemon.listening().await;
    // the daemon's statements and ours prepared, its first drain behind it
    let warm = insert(&db.client, log, 0, 20).await;
    assert!(settled(&db.client, "true", Duration::from_secs(10)).await, "the 20 warm-up messages were not sent");

    let seed: u64 = rand::random();
    let start = Instant::now() + Duration::from_millis(1500);
    let mut loaders = Vec::new();
    for c in 0..3 {
        loaders.push(tokio::spawn(mixed_loader(db.clone(), log, start, c as u32, seed.wrapping_add(c))));
    }
    for k in 0..4 {
        let lag = Duration::from_millis(30 * k);
        loaders.push(tokio::spawn(slow_loader(db.clone(), log, start, lag, seed.wrapping_add(10 + k))));
    }
    // whether the daemon went idle (its busy mark gone) in each quiet part
    let mut idle_rounds = 0;
    for round in 0..ROUNDS {
        let quiet = start + (BUSY + QUIET) * round + BUSY;
        tokio::time::sleep_until(quiet.into()).await;
        let mut idle = false;
        while Instant::now() < quiet + QUIET {
            idle |= db.count("SELECT count(*) FROM et_dispatch_busy WHERE busy_until > now()").await == 0;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        idle_rounds += idle as u32;
    }
    let mut commits = Vec::new();
    for l in loaders {
        commits.extend(l.await.expect("a loader panicked"));
    }
    let ids: Vec<i64> = commits.iter().flat_map(|c| c.ids.iter().copied()).collect();
    let claimed_sql = format!(
        "SELECT count(DISTINCT message_id) = {} FROM et_message_events WHERE to_status = 'sending' AND message_id <> ALL('{{{}}}'::bigint[])",
        ids.len(),
        warm.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    );
    // a row that missed its wake-up waits 60 s: 3 s after the last commit it has missed it
    outbox::wait(&db.client, &claimed_sql, Duration::from_secs(3)).await;
    let claims: HashMap<i64, DateTime<Utc>> = db
        .client
        .query(
            "SELECT message_id, min(created_at) FROM et_message_events WHERE to_status = 'sending' AND message_id = ANY($1) GROUP BY 1",
            &[&ids],
        )
        .await
        .expect("claim times")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    daemon.stop().await;

    // (latency ms, kind) per row; None: not claimed
    let mut latencies: Vec<(f64, &str)> = Vec::new();
    let mut unclaimed: HashMap<&str, usize> = HashMap::new();
    for c in &commits {
        for id in &c.ids {
            match claims.get(id) {
                Some(at) => latencies.push(((*at - c.at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0, c.kind)),
                None => *unclaimed.entry(c.kind).or_default() += 1,
            }
        }
    }
    latencies.sort_by(|a, b| a.0.total_cmp(&b.0));
    let at =
        |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).map_or(f64::NAN, |l| l.0);
    let mut late: HashMap<&str, usize> = HashMap::new();
    for (ms, kind) in &latencies {
        if *ms > BOUND.as_secs_f64() * 1000.0 {
            *late.entry(kind).or_default() += 1;
        }
    }
    let worst: Vec<String> = latencies.iter().rev().take(5).map(|(ms, kind)| format!("{ms:.0} ms ({kind})")).collect();
    let transactions: HashMap<&str, usize> = commits.iter().fold(HashMap::new(), |mut m, c| {
        *m.entry(c.kind).or_default() += 1;
        m
    });
    let figures = format!(
        "mixed load, poll 60 s (seed {seed}): {} rows in {} transactions {transactions:?}; commit → claim p50 {:.1} ms, p99 {:.1} ms, \
         max {:.1} ms; over {BOUND:?}: {late:?}; not claimed 3 s after the last commit: {unclaimed:?}; worst: {}; \
         daemon idle in {idle_rounds} of {ROUNDS} quiet parts",
        ids.len(),
        commits.len(),
        at(0.5),
        at(0.99),
        at(1.0),
        worst.join(", ")
    );
    note(figures.clone());
    assert!(idle_rounds > 0, "the daemon never went idle between rounds, so the load never reached a handover: {figures}");
    assert!(unclaimed.is_empty() && late.is_empty(), "every row claimed within {BOUND:?} of its commit: {figures}");
}
