//! Scenario `inbound`: how fast one daemon decides a backlog of inbound messages with the rules
//! decider, answers them, and writes every thread's insight.
//!
//! A `whatsapp` session with provider `log` (auto-replies are sent at once) and the tenant's
//! rules: the three built-in takeovers (human / complaint / refund; a tenant's own rules replace
//! the defaults, so they are listed first), an auto-reply for opening hours and a follow-up for
//! "call me back". N inbound rows from T distinct senders (so T threads) are inserted in ONE
//! statement while no daemon runs; each thread gets one message per round: every fifth thread
//! asks for a human halfway, the rest is a rotation of opening-hours questions, call-back
//! requests and plain thank-yous (no rule: no action). Then one daemon process starts and the
//! clock runs from its spawn until no inbound row is `received` or `inbound_processing`
//! (msgs/s), and, separately, until every thread has an `et_thread_insights` row. Afterwards:
//! outcomes per status, replies created and sent, and that every row was claimed exactly once.

use crate::child::{ChildDaemon, Memory};
use crate::setup::{ms, BenchDb, DaemonSettings, QUEUE_SETTLED, TENANT};
use anyhow::Context;
use serde::Serialize;
use std::time::Duration;

pub struct Params {
    pub messages: usize,
    pub threads: usize,
    pub daemon: DaemonSettings,
}

/// Final inbound statuses.
#[derive(Debug, Serialize)]
pub struct Outcomes {
    pub ai_replied: i64,
    pub human_takeover: i64,
    pub follow_up: i64,
    pub no_action: i64,
    pub error: i64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub messages: usize,
    pub threads: usize,
    pub daemon: DaemonSettings,
    pub bulk_insert_s: f64,
    /// Daemon spawn → its LISTEN connection is up.
    pub ready_ms: f64,
    /// Daemon spawn → no inbound row left `received` / `inbound_processing`.
    pub decided_s: f64,
    pub msgs_per_s: f64,
    /// Daemon spawn → every thread has an insight (None: not within the time limit).
    pub insights_s: Option<f64>,
    pub insights: i64,
    pub outcomes: Outcomes,
    pub replies_created: i64,
    pub replies_sent: i64,
    /// Inbound rows answered by more than one reply (extra replies counted).
    pub duplicate_replies: i64,
    /// `→inbound_processing` events per inbound row beyond one (a row decided twice).
    pub extra_claims: i64,
    pub memory: Memory,
}

impl Report {
    /// What must not happen: an errored decision, a row decided or answered twice, a reply
    /// not sent, a thread without its insight.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.outcomes.error > 0 {
            p.push(format!("inbound: {} rows in inbound_error", self.outcomes.error));
        }
        if self.extra_claims > 0 || self.duplicate_replies > 0 {
            p.push(format!("inbound: {} extra claims, {} duplicate replies", self.extra_claims, self.duplicate_replies));
        }
        if self.replies_sent != self.replies_created {
            p.push(format!("inbound: {} of {} replies sent", self.replies_sent, self.replies_created));
        }
        if self.insights < self.threads as i64 {
            p.push(format!("inbound: {} of {} threads have an insight", self.insights, self.threads));
        }
        p
    }
}

const RULES: &str = r"
INSERT INTO et_inbound_rules (tenant_id, position, pattern, action, reply_template, follow_up_after, label) VALUES
  ('bench', 1, '\m(human|agent|real person|representative|operator)\M', 'human_takeover', NULL, NULL, 'human_request'),
  ('bench', 2, '\m(complaint|complain|unacceptable|terrible service)\M', 'human_takeover', NULL, NULL, 'complaint'),
  ('bench', 3, '\m(refund|money back|chargeback|reimburse)\M', 'human_takeover', NULL, NULL, 'refund'),
  ('bench', 4, 'opening hours|open today', 'auto_reply', 'Hello {{contact}}, we are open 9 to 17.', NULL, 'hours'),
  ('bench', 5, 'call me back', 'follow_up', NULL, '1 day', 'call_back')";

/// Message `i` is on thread `t = i % T` in round `r = i / T` (one message per thread per round).
/// Every fifth thread asks for a human in round 5 (its later messages stay with the human);
/// otherwise the kind rotates with `(r + t) % 10`: two opening-hours questions, one call-back
/// request and seven thank-yous in ten.
const INSERT: &str = "
INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, body_text)
SELECT $1, $2, 'inbound', 'bench.' || i, '+1666' || lpad(t::text, 7, '0'),
       CASE WHEN t % 5 = 0 AND r = 5 THEN 'Can I talk to a human, please? (' || i || ')'
            WHEN (r + t) % 10 IN (1, 4) THEN 'Hi! What are your opening hours? (' || i || ')'
            WHEN (r + t) % 10 = 7 THEN 'Please call me back tomorrow (' || i || ')'
            ELSE 'Thanks, that is all for now (' || i || ')' END
  FROM generate_series(0, $3::bigint - 1) i, LATERAL (SELECT i % $4::bigint AS t, i / $4::bigint AS r) k";

const DECIDED: &str = "SELECT NOT EXISTS (SELECT 1 FROM et_messages WHERE direction = 'inbound' AND delivery_status = 'received')
                          AND NOT EXISTS (SELECT 1 FROM et_messages WHERE direction = 'inbound' AND delivery_status = 'inbound_processing')";

pub async fn run(db: &BenchDb, p: &Params) -> anyhow::Result<Report> {
    anyhow::ensure!(p.threads > 0 && p.messages >= p.threads, "--inbound-threads must be positive and at most --inbound-messages");
    let session = db.log_session("whatsapp", "+15550000000").await?;
    db.client.batch_execute(RULES).await.context("creating the inbound rules")?;
    let t = std::time::Instant::now();
    let (n, threads) = (p.messages as i64, p.threads as i64);
    let inserted = db.client.execute(INSERT, &[&TENANT, &session, &n, &threads]).await.context("bulk inbound insert")?;
    let bulk_insert = t.elapsed();
    anyhow::ensure!(inserted as i64 == n, "inserted {inserted} inbound rows, expected {n}");
    let made = db.count("SELECT count(*) FROM et_threads").await?;
    anyhow::ensure!(made == threads, "{made} threads, expected {threads}");
    eprintln!("inbound: {n} rows on {threads} threads in {:.2} s; starting the daemon", bulk_insert.as_secs_f64());

    let mut daemon = ChildDaemon::spawn(db, &p.daemon).await?;
    let t0 = daemon.started;
    let ready = daemon.ready(Duration::from_secs(30)).await?;
    let limit = Duration::from_secs(60) + Duration::from_millis(p.messages as u64 * 5);
    let decided = db.until_or_fail(DECIDED, &mut daemon, limit).await?.duration_since(t0);
    eprintln!("inbound: {n} decided in {:.2} s; waiting for the insights", decided.as_secs_f64());
    let all_insights = format!("SELECT count(*) >= {threads} FROM et_thread_insights");
    let insights_at = db.until(&all_insights, &mut daemon, limit).await?;
    db.until(QUEUE_SETTLED, &mut daemon, Duration::from_secs(30)).await?;
    let memory = daemon.stop().await?;

    let o = db
        .client
        .query_one(
            "SELECT count(*) FILTER (WHERE delivery_status = 'inbound_ai_replied'),
                    count(*) FILTER (WHERE delivery_status = 'inbound_human_takeover'),
                    count(*) FILTER (WHERE delivery_status = 'inbound_follow_up'),
                    count(*) FILTER (WHERE delivery_status = 'inbound_no_action'),
                    count(*) FILTER (WHERE delivery_status = 'inbound_error')
               FROM et_messages WHERE direction = 'inbound'",
            &[],
        )
        .await?;
    let r = db
        .client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE delivery_status = 'sent'),
                    count(*) - count(DISTINCT metadata->>'auto_reply_to')
               FROM et_messages WHERE direction = 'outbound'",
            &[],
        )
        .await?;
    let claims = db
        .count(
            "SELECT count(*) FROM et_message_events e JOIN et_messages m ON m.tenant_id = e.tenant_id AND m.id = e.message_id
              WHERE m.direction = 'inbound' AND e.to_status = 'inbound_processing'",
        )
        .await?;
    Ok(Report {
        messages: p.messages,
        threads: p.threads,
        daemon: p.daemon.clone(),
        bulk_insert_s: bulk_insert.as_secs_f64(),
        ready_ms: ms(ready),
        decided_s: decided.as_secs_f64(),
        msgs_per_s: n as f64 / decided.as_secs_f64(),
        insights_s: insights_at.map(|at| at.duration_since(t0).as_secs_f64()),
        insights: db.count("SELECT count(*) FROM et_thread_insights").await?,
        outcomes: Outcomes { ai_replied: o.get(0), human_takeover: o.get(1), follow_up: o.get(2), no_action: o.get(3), error: o.get(4) },
        replies_created: r.get(0),
        replies_sent: r.get(1),
        duplicate_replies: r.get(2),
        extra_claims: claims - n,
        memory,
    })
}
