//! Part of scenario `drain`: the floor under the drain. What the lifecycle must write to send a
//! message, with nothing else: no trigger, no daemon, no provider, no rendering.
//!
//! Trigger-less copies of `et_messages` (same columns, generated columns, CHECKs, indexes and
//! fillfactor), `et_outbound_queue` and `et_message_events` get the drain's backlog. The message,
//! its queue row and its `queued` event go in one statement, as ingest's lifecycle-rows floor
//! writes them. Then `connections` connections drain the copies in batches of `batch`, the
//! daemon's own shape, each batch in two autocommit statements:
//! - the claim: lock ready queue rows (`FOR UPDATE SKIP LOCKED`), lease them, move their
//!   messages to `sending`, write the `queued → sending` events, and return what a send needs;
//! - the outcome: delete the queue rows, move the messages to `sent`, write the `sending → sent`
//!   events.
//!
//! The clock runs from the first claim to the last outcome. Afterwards every copy row is
//! checked: all `sent`, no queue row left, three events per message.
//!
//! graphile-worker writes one narrow update and one delete per job; the lifecycle writes the
//! message twice, two events, a queue update and a queue delete. This rate, against the peer's in
//! the same run, says what ratio the full lifecycle could reach at best on this machine.

use crate::setup::{BenchDb, ROW_VALUES, TENANT};
use anyhow::Context;
use serde::Serialize;
use std::time::Instant;

pub struct Params {
    /// Messages in the backlog (the drain's count).
    pub messages: usize,
    /// Connections draining at once.
    pub connections: usize,
    /// Messages per claim (the daemon's batch).
    pub batch: usize,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub messages: usize,
    pub connections: usize,
    pub batch: usize,
    /// The backlog's insert: message, queue row and event, one statement.
    pub insert_s: f64,
    /// First claim → last outcome.
    pub drain_s: f64,
    pub msgs_per_s: f64,
    /// CPU seconds the draining connections' backends used (from `/proc`, as the drain's
    /// `cpu.postgres_s`): steadier than the wall time on a shared machine.
    pub postgres_cpu_s: f64,
}

const TABLES: &str = "
    CREATE TABLE floor_messages (LIKE et_messages INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS INCLUDING INDEXES)
      WITH (fillfactor = 50);
    CREATE TABLE floor_queue (LIKE et_outbound_queue INCLUDING ALL);
    CREATE TABLE floor_events (LIKE et_message_events INCLUDING ALL);";

/// $1 the worker, $2 the batch.
const CLAIM: &str = "
    WITH c AS (
        SELECT q.tenant_id, q.message_id FROM floor_queue q
         WHERE q.state = 'ready' AND q.run_at <= now()
         ORDER BY q.priority, q.run_at
         LIMIT $2
           FOR UPDATE SKIP LOCKED
    ), q AS (
        UPDATE floor_queue q
           SET state = 'leased', leased_by = $1, lease_expires_at = now() + interval '60 seconds',
               attempts = q.attempts + 1, updated_at = now()
          FROM c WHERE q.tenant_id = c.tenant_id AND q.message_id = c.message_id
        RETURNING q.tenant_id, q.message_id
    ), m AS (
        UPDATE floor_messages m
           SET delivery_status = 'sending', attempts = m.attempts + 1, updated_at = now()
          FROM q WHERE m.tenant_id = q.tenant_id AND m.id = q.message_id
        RETURNING m.tenant_id, m.id, m.sender, m.recipients, m.subject, m.body_text, m.body_html, m.external_message_id
    ), e AS (
        INSERT INTO floor_events (tenant_id, message_id, from_status, to_status, actor)
        SELECT m.tenant_id, m.id, 'queued', 'sending', $1 FROM m
    )
    SELECT m.id, m.sender, m.recipients, m.subject, m.body_text, m.body_html, m.external_message_id FROM m";

/// $1 the worker, $2 the claimed ids.
const OUTCOME: &str = "
    WITH dq AS (
        DELETE FROM floor_queue q
         WHERE q.tenant_id = $3 AND q.message_id = ANY ($2::bigint[]) AND q.state = 'leased' AND q.leased_by = $1
        RETURNING q.tenant_id, q.message_id
    ), m AS (
        UPDATE floor_messages m
           SET delivery_status = 'sent', sent_at = now(), updated_at = now()
          FROM dq WHERE m.tenant_id = dq.tenant_id AND m.id = dq.message_id
        RETURNING m.tenant_id, m.id
    )
    INSERT INTO floor_events (tenant_id, message_id, from_status, to_status, actor)
    SELECT m.tenant_id, m.id, 'sending', 'sent', $1 FROM m";

pub async fn run(db: &BenchDb, p: &Params) -> anyhow::Result<Report> {
    anyhow::ensure!(p.connections > 0 && p.batch > 0, "the drain floor needs connections and a batch");
    // The session is only a key value here: nothing is sent.
    let session = db.smtp_session(9, 1, 1).await?;
    db.client.batch_execute(TABLES).await.context("creating the trigger-less copies")?;
    let t = Instant::now();
    let inserted = db
        .client
        .execute(
            &format!(
                "WITH m AS (INSERT INTO floor_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text,
                                                        id, channel, thread_id, delivery_status, sender, external_message_id)
                            SELECT $1, $2, 'outbound', {ROW_VALUES}, g, 'email', 1, 'queued', 'noreply@bench.example',
                                   '<' || g || '@bench.example>'
                              FROM generate_series(1, $3::int) g
                            RETURNING tenant_id, id, channel_session_id, priority),
                      q AS (INSERT INTO floor_queue (tenant_id, message_id, channel_session_id, priority, run_at, max_attempts)
                            SELECT m.tenant_id, m.id, m.channel_session_id, m.priority, now(), 5 FROM m)
                 INSERT INTO floor_events (tenant_id, message_id, from_status, to_status, actor)
                 SELECT m.tenant_id, m.id, NULL, 'queued', 'bench' FROM m"
            ),
            &[&TENANT, &session, &(p.messages as i32)],
        )
        .await
        .context("the floor's backlog")?;
    let insert_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(inserted as usize == p.messages, "the floor's backlog: {inserted} rows, expected {}", p.messages);
    db.client.batch_execute("ANALYZE floor_messages, floor_queue, floor_events").await?;
    let _ = db.client.batch_execute("CHECKPOINT").await;

    let mut workers = Vec::with_capacity(p.connections);
    for w in 0..p.connections {
        let client = db.connect().await?;
        let claim = client.prepare(CLAIM).await.context("preparing the floor's claim")?;
        let outcome = client.prepare(OUTCOME).await.context("preparing the floor's outcome")?;
        let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
        workers.push((format!("floor-{w}"), client, claim, outcome, pid as u32));
    }
    let batch = p.batch as i64;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(p.connections);
    for (worker, client, claim, outcome, pid) in workers {
        tasks.push(tokio::spawn(async move {
            loop {
                let rows = client.query(&claim, &[&worker, &batch]).await?;
                if rows.is_empty() {
                    // (the connection stays open until its backend's CPU time is read)
                    return anyhow::Ok((Instant::now(), client, pid));
                }
                let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
                client.execute(&outcome, &[&worker, &ids, &TENANT]).await?;
            }
        }));
    }
    let mut last = start;
    let mut done = Vec::with_capacity(p.connections);
    for t in tasks {
        let (at, client, pid) = t.await.context("a floor worker panicked")?.context("the floor's drain")?;
        last = last.max(at);
        done.push((client, pid));
    }
    let drain_s = last.duration_since(start).as_secs_f64();
    let postgres_cpu_s = done.iter().filter_map(|(_, pid)| crate::child::cpu_seconds(*pid)).sum();
    drop(done);

    let checked = db
        .client
        .query_one(
            "SELECT (SELECT count(*) FROM floor_messages WHERE delivery_status = 'sent' AND sent_at IS NOT NULL AND attempts = 1),
                    (SELECT count(*) FROM floor_queue), (SELECT count(*) FROM floor_events)",
            &[],
        )
        .await?;
    let (sent, left, events): (i64, i64, i64) = (checked.get(0), checked.get(1), checked.get(2));
    anyhow::ensure!(
        sent as usize == p.messages && left == 0 && events as usize == 3 * p.messages,
        "the floor's drain: {sent} sent once, {left} queue rows left, {events} events (expected {}, 0, {})",
        p.messages,
        3 * p.messages
    );
    eprintln!("drain floor: {} messages in {drain_s:.2} s from {} connections", p.messages, p.connections);
    Ok(Report {
        messages: p.messages,
        connections: p.connections,
        batch: p.batch,
        insert_s,
        drain_s,
        msgs_per_s: p.messages as f64 / drain_s,
        postgres_cpu_s,
    })
}
