//! The outbound queue's SQL: claim, record outcomes, release, rescue, next due time.
//!
//! A claim is one CTE that locks ready rows with `SKIP LOCKED`, leases them and moves their
//! messages to `sending`; outcomes are written in batches with `unnest`, fenced on the lease
//! (`leased_by` and the attempt number) so a daemon whose lease expired cannot overwrite a newer
//! attempt. No transaction stays open while a provider is called.

use crate::domain::breaker::BreakerState;
use crate::domain::outcome::{ProviderResponse, SuppressReason};
use crate::domain::vocab::{Channel, Status};
use crate::rows::{Attachment, SessionRow};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use std::time::Duration;
use tokio_postgres::Row;
use uuid::Uuid;

/// One leased message, with everything needed to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub tenant_id: String,
    pub id: i64,
    pub public_id: Uuid,
    /// This attempt's number (1-based); the fence for recording its outcome.
    pub attempt: i32,
    pub max_attempts: i32,
    /// An earlier attempt may already have delivered this message (its outcome is unknown).
    pub possible_duplicate: bool,
    pub session: SessionRow,
    /// The session's active fallback of the same channel, used while its breaker is open.
    pub fallback: Option<SessionRow>,
    pub sender: String,
    pub recipients: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub reply_to: Option<String>,
    pub subject: Option<String>,
    pub body_text: Option<String>,
    pub body_html: Option<String>,
    pub variables: Value,
    pub metadata: Value,
    /// The stored Message-ID (email) or provider id.
    pub external_message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// Recipients that went on the suppression list after the message was queued.
    pub suppressed_now: Vec<String>,
    /// The message's files (loaded after the claim, only for messages that have some).
    pub attachments: Vec<Attachment>,
    /// Files whose content was dropped after the retention period (their names): the message
    /// cannot be sent as written. The triggers keep such a message from being queued again, so
    /// this is only a guard.
    pub dropped_attachments: Vec<String>,
}

/// The claim, with `{limit}` written in by [`claim`] rather than bound: with `LIMIT $n` the
/// planner costs the generic plan for a tenth of the queue, so the statement never settled on it
/// and every claim would be planned again (a tenth of the claim's time). Parameters: $1 the
/// worker, $2 the lease in seconds, $3/$4 the sessions with a budget of their own and those
/// budgets, $5 the budget of every other session (see [`crate::outbound::fair`]).
const CLAIM: &str = r#"
WITH b AS (
    -- the sessions with due work, one probe of et_outbound_queue_ready_by_session each (a loose
    -- index scan), with their budgets
    SELECT s.session_id, coalesce(k.budget, $5) AS budget
      FROM (WITH RECURSIVE s(session_id) AS (
                SELECT (SELECT q.channel_session_id FROM et_outbound_queue q
                         WHERE q.state = 'ready' AND q.run_at <= now()
                         ORDER BY q.channel_session_id LIMIT 1)
                UNION ALL
                SELECT (SELECT q.channel_session_id FROM et_outbound_queue q
                         WHERE q.state = 'ready' AND q.run_at <= now() AND q.channel_session_id > s.session_id
                         ORDER BY q.channel_session_id LIMIT 1)
                  FROM s WHERE s.session_id IS NOT NULL)
            SELECT session_id FROM s WHERE session_id IS NOT NULL) s
      LEFT JOIN unnest($3::bigint[], $4::int[]) AS k(session_id, budget) ON k.session_id = s.session_id
), c AS (
    -- each session's best rows up to its budget, then the best {limit} of those: a claim reads
    -- about the budgets' worth of index entries however long the queue is
    SELECT x.*
      FROM b CROSS JOIN LATERAL (
            SELECT q.tenant_id, q.message_id, q.channel_session_id, q.priority, q.run_at, q.maybe_delivered
              FROM et_outbound_queue q
             WHERE q.channel_session_id = b.session_id AND q.state = 'ready' AND q.run_at <= now()
             ORDER BY q.priority, q.run_at
             LIMIT b.budget
               FOR UPDATE OF q SKIP LOCKED) x
     ORDER BY x.priority, x.run_at
     LIMIT {limit}
), cs AS (
    SELECT c.*, s.status AS session_status, m.delivery_status,
           (s.config->>'rate_per_second')::float8 AS rps, (s.config->>'rate_per_minute')::float8 AS rpm
      FROM c
      JOIN et_channel_sessions s ON s.tenant_id = c.tenant_id AND s.id = c.channel_session_id
      JOIN et_messages m ON m.tenant_id = c.tenant_id AND m.id = c.message_id
), parked AS (
    -- a paused or disabled session's messages wait, looked at again every 30 s (no attempt spent)
    UPDATE et_outbound_queue q SET run_at = now() + interval '30 seconds', updated_at = now()
      FROM cs
     WHERE cs.session_status <> 'active' AND cs.delivery_status = 'queued'
       AND q.tenant_id = cs.tenant_id AND q.message_id = cs.message_id
), orphaned AS (
    -- a queue row whose message a DBA moved on by hand: nothing to send, kept as a dead letter
    UPDATE et_outbound_queue q
       SET state = 'dead', last_error = format('message is %s, not queued: nothing was sent', cs.delivery_status),
           updated_at = now()
      FROM cs
     WHERE cs.delivery_status <> 'queued' AND q.tenant_id = cs.tenant_id AND q.message_id = cs.message_id
), r AS (
    SELECT cs.*, row_number() OVER (PARTITION BY cs.tenant_id, cs.channel_session_id ORDER BY cs.priority, cs.run_at) AS rn
      FROM cs
     WHERE cs.session_status = 'active' AND cs.delivery_status = 'queued'
), g AS (
    -- rate-limited sessions: lease no more than their token buckets allow, defer the rest
    SELECT x.tenant_id, x.channel_session_id, t.granted, t.wait_ms
      FROM (SELECT tenant_id, channel_session_id, count(*)::int AS n, max(rps) AS rps, max(rpm) AS rpm
              FROM r WHERE rps > 0 OR rpm > 0 GROUP BY tenant_id, channel_session_id) x
     CROSS JOIN LATERAL et_take_tokens(x.tenant_id, x.channel_session_id, x.n, x.rps, x.rpm) t
), kept AS (
    SELECT r.tenant_id, r.message_id, r.maybe_delivered
      FROM r LEFT JOIN g ON g.tenant_id = r.tenant_id AND g.channel_session_id = r.channel_session_id
     WHERE g.granted IS NULL OR r.rn <= g.granted
), deferred AS (
    UPDATE et_outbound_queue q
       SET run_at = now() + make_interval(secs => g.wait_ms / 1000.0), updated_at = now()
      FROM r JOIN g ON g.tenant_id = r.tenant_id AND g.channel_session_id = r.channel_session_id
     WHERE r.rn > g.granted AND q.tenant_id = r.tenant_id AND q.message_id = r.message_id
       -- decided once: without it the join probed the queue for every claimed row before
       -- finding no rate-limited session (1.8 ms per claim of 500)
       AND EXISTS (SELECT 1 FROM g)
), q AS (
    UPDATE et_outbound_queue q
       SET state = 'leased', leased_by = $1, lease_expires_at = now() + make_interval(secs => $2),
           attempts = q.attempts + 1, maybe_delivered = false, updated_at = now()
      FROM kept c
     WHERE q.tenant_id = c.tenant_id AND q.message_id = c.message_id
 RETURNING q.tenant_id, q.message_id, q.attempts, q.max_attempts, c.maybe_delivered
), m AS (
    -- an attempt after one whose outcome nobody knows is counted (and its event flagged by the
    -- update trigger) as a possible duplicate
    UPDATE et_messages m
       SET delivery_status = 'sending', attempts = m.attempts + 1,
           possible_duplicates = m.possible_duplicates + q.maybe_delivered::int, provider_response = NULL, updated_at = now()
      FROM q
     WHERE m.tenant_id = q.tenant_id AND m.id = q.message_id
 -- the lease's numbers travel with the row: joining m back to q below was a nested loop over
 -- two CTE scans (quadratic: 500 rows, 250,000 comparisons, ~230 ms per claim)
 RETURNING m.*, q.attempts AS lease_attempt, q.max_attempts AS lease_max_attempts, q.maybe_delivered AS possible_duplicate
)
SELECT m.tenant_id, m.id, m.public_id, m.lease_attempt AS attempts, m.lease_max_attempts AS max_attempts, m.possible_duplicate,
       s.id AS session_id, s.channel, s.provider, s.address, s.config, s.credentials_ref, s.updated_at AS session_updated_at,
       fb.id AS fb_id, fb.provider AS fb_provider, fb.address AS fb_address, fb.config AS fb_config,
       fb.credentials_ref AS fb_credentials_ref, fb.updated_at AS fb_updated_at,
       m.sender, m.recipients, m.cc, m.bcc, m.reply_to, m.subject, m.body_text, m.body_html,
       m.variables, m.metadata, m.external_message_id, m.in_reply_to, m."references",
       -- (one index probe per row when the tenant suppresses nobody on the channel, the usual
       -- case, instead of unnesting and hashing the recipients against an empty list)
       CASE WHEN EXISTS (SELECT 1 FROM et_suppressions x WHERE x.tenant_id = m.tenant_id AND x.channel = m.channel)
            THEN ARRAY(SELECT r FROM unnest(m.recipients || m.cc || m.bcc) r
                        WHERE EXISTS (SELECT 1 FROM et_suppressions x
                                       WHERE x.tenant_id = m.tenant_id AND x.channel = m.channel
                                         AND x.address = et_contact(m.channel, r)
                                         AND (x.expires_at IS NULL OR x.expires_at > now())))
            ELSE '{}'::text[] END AS suppressed_now,
       EXISTS (SELECT 1 FROM et_attachments a WHERE a.tenant_id = m.tenant_id AND a.message_id = m.id) AS has_attachments
  FROM m
  JOIN et_channel_sessions s ON s.tenant_id = m.tenant_id AND s.id = m.channel_session_id
  LEFT JOIN et_channel_sessions fb ON fb.tenant_id = s.tenant_id AND fb.id = s.fallback_session_id
                                  AND fb.channel = s.channel AND fb.status = 'active'
"#;

/// One claimed row; an error (never a panic) if a channel or provider is not on its list.
fn claimed(row: &Row) -> Result<Claimed, tokio_postgres::Error> {
    Ok(Claimed {
        tenant_id: row.get("tenant_id"),
        id: row.get("id"),
        public_id: row.get("public_id"),
        attempt: row.get("attempts"),
        max_attempts: row.get("max_attempts"),
        possible_duplicate: row.get("possible_duplicate"),
        session: SessionRow {
            id: row.get("session_id"),
            channel: row.try_get("channel")?,
            provider: row.try_get("provider")?,
            address: row.get("address"),
            config: row.get("config"),
            credentials_ref: row.get("credentials_ref"),
            updated_at: row.get("session_updated_at"),
        },
        fallback: match row.get::<_, Option<i64>>("fb_id") {
            Some(id) => Some(SessionRow {
                id,
                channel: row.try_get("channel")?,
                provider: row.try_get("fb_provider")?,
                address: row.get("fb_address"),
                config: row.get("fb_config"),
                credentials_ref: row.get("fb_credentials_ref"),
                updated_at: row.get("fb_updated_at"),
            }),
            None => None,
        },
        sender: row.get("sender"),
        recipients: row.get("recipients"),
        cc: row.get("cc"),
        bcc: row.get("bcc"),
        reply_to: row.get("reply_to"),
        subject: row.get("subject"),
        body_text: row.get("body_text"),
        body_html: row.get("body_html"),
        variables: row.get("variables"),
        metadata: row.get("metadata"),
        external_message_id: row.get("external_message_id"),
        in_reply_to: row.get("in_reply_to"),
        references: row.get("references"),
        suppressed_now: row.get("suppressed_now"),
        attachments: Vec::new(),
        dropped_attachments: Vec::new(),
    })
}

/// Lease up to `limit` due messages for `worker` for `lease`, moving them to `sending`, with no
/// per-session budget (each session may fill the claim).
pub async fn claim(
    client: &impl GenericClient,
    worker: &str,
    limit: usize,
    lease: Duration,
) -> Result<Vec<Claimed>, tokio_postgres::Error> {
    claim_within(client, worker, limit, lease, &[], &[], limit as i32).await
}

/// Lease up to `limit` due messages for `worker` for `lease`, moving them to `sending`, at most
/// `budgets[i]` of session `sessions[i]` and `others` of any other session. Each distinct `limit`
/// is a statement of its own, prepared once per connection: callers keep to a handful of values
/// (the dispatcher: its batch size, else a power of two).
pub async fn claim_within(
    client: &impl GenericClient,
    worker: &str,
    limit: usize,
    lease: Duration,
    sessions: &[i64],
    budgets: &[i32],
    others: i32,
) -> Result<Vec<Claimed>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(&CLAIM.replace("{limit}", &limit.to_string())).await?;
    let rows = client.query(&stmt, &[&worker, &lease.as_secs_f64(), &sessions, &budgets, &others]).await?;
    let mut batch: Vec<Claimed> = rows.iter().map(claimed).collect::<Result<_, _>>()?;
    let with_files: Vec<usize> = rows.iter().enumerate().filter(|(_, r)| r.get::<_, bool>("has_attachments")).map(|(i, _)| i).collect();
    if !with_files.is_empty() {
        let tenants: Vec<&str> = with_files.iter().map(|&i| batch[i].tenant_id.as_str()).collect();
        let ids: Vec<i64> = with_files.iter().map(|&i| batch[i].id).collect();
        let files = client
            .query(
                "SELECT a.message_id, a.filename, a.content_type, a.content
                   FROM unnest($1::text[], $2::bigint[]) AS w(tenant_id, message_id)
                   JOIN et_attachments a ON a.tenant_id = w.tenant_id AND a.message_id = w.message_id
                  ORDER BY a.message_id, a.id",
                &[&tenants, &ids],
            )
            .await?;
        for f in files {
            let id: i64 = f.get(0);
            if let Some(m) = batch.iter_mut().find(|m| m.id == id) {
                match f.get::<_, Option<Vec<u8>>>(3) {
                    Some(content) => m.attachments.push(Attachment { filename: f.get(1), content_type: f.get(2), content }),
                    None => m.dropped_attachments.push(f.get(1)),
                }
            }
        }
    }
    Ok(batch)
}

/// The final state of one attempt, as written to the database.
#[derive(Debug, Clone)]
pub struct OutcomeRow {
    pub tenant_id: String,
    pub message_id: i64,
    /// The attempt this outcome belongs to (the lease fence).
    pub attempt: i32,
    /// `sent`, `queued` (retry at `run_at`), `failed` or `suppressed`.
    pub status: Status,
    pub run_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub error_class: Option<&'static str>,
    pub external_id: Option<String>,
    pub rendered_subject: Option<String>,
    pub rendered_text: Option<String>,
    pub rendered_html: Option<String>,
    /// (channel, address, reason) to report to `et_report_address` (a hard bounce is counted
    /// toward the tenant's threshold; other reasons suppress at once).
    pub suppress: Option<(Channel, String, SuppressReason)>,
    /// The provider's extra detail, merged into `metadata` under `delivery`.
    pub delivery: Option<Value>,
    /// A failed attempt that may still have reached the provider (the connection broke after
    /// the message was handed over): the next attempt is flagged as a possible duplicate.
    pub maybe_delivered: bool,
    /// The provider's answer to this attempt (None: the provider was never asked).
    pub provider_response: Option<ProviderResponse>,
}

impl OutcomeRow {
    /// An outcome with its status alone: no error, no provider id, nothing rendered or suppressed.
    pub fn bare(tenant_id: String, message_id: i64, attempt: i32, status: Status) -> OutcomeRow {
        OutcomeRow {
            tenant_id,
            message_id,
            attempt,
            status,
            run_at: None,
            error: None,
            error_class: None,
            external_id: None,
            rendered_subject: None,
            rendered_text: None,
            rendered_html: None,
            suppress: None,
            delivery: None,
            maybe_delivered: false,
            provider_response: None,
        }
    }
}

const RECORD: &str = r#"
WITH o AS (
    SELECT * FROM unnest($2::text[], $3::bigint[], $4::int[], $5::text[], $6::timestamptz[], $7::text[], $8::text[],
                         $9::text[], $10::text[], $11::text[], $12::text[], $13::jsonb[], $14::bool[], $15::jsonb[])
        AS o(tenant_id, message_id, attempt, status, run_at, error, error_class, external_id, r_subject, r_text, r_html, delivery,
             maybe, response)
), dq AS (
    -- the fence (this worker's lease, this attempt) sits in the DELETE and the UPDATE themselves,
    -- so a row re-leased meanwhile is rechecked and skipped without locking it first; each
    -- returns the outcome with the row (joining two CTEs afterwards would be a nested loop)
    DELETE FROM et_outbound_queue q USING o
     WHERE q.tenant_id = o.tenant_id AND q.message_id = o.message_id AND o.status IN ('sent', 'suppressed')
       AND q.state = 'leased' AND q.leased_by = $1 AND q.attempts = o.attempt
 RETURNING o.*
), uq AS (
    UPDATE et_outbound_queue q
       SET state = CASE WHEN o.status = 'queued' THEN 'ready' ELSE 'dead' END,
           run_at = coalesce(o.run_at, q.run_at), leased_by = NULL, lease_expires_at = NULL,
           last_error = o.error, maybe_delivered = o.maybe, updated_at = now()
      FROM o
     WHERE q.tenant_id = o.tenant_id AND q.message_id = o.message_id AND o.status NOT IN ('sent', 'suppressed')
       AND q.state = 'leased' AND q.leased_by = $1 AND q.attempts = o.attempt
 RETURNING o.*
), f AS (
    SELECT * FROM dq UNION ALL SELECT * FROM uq
), um AS (
    UPDATE et_messages m
       SET delivery_status = f.status,
           sent_at = CASE WHEN f.status = 'sent' THEN now() ELSE m.sent_at END,
           external_message_id = coalesce(f.external_id, m.external_message_id),
           last_error = f.error, error_class = f.error_class, provider_response = f.response,
           rendered_subject = coalesce(f.r_subject, m.rendered_subject),
           rendered_text = coalesce(f.r_text, m.rendered_text),
           rendered_html = coalesce(f.r_html, m.rendered_html),
           metadata = CASE WHEN f.delivery IS NULL THEN m.metadata
                           ELSE m.metadata || jsonb_build_object('delivery', f.delivery) END,
           updated_at = now()
      FROM f
     WHERE m.tenant_id = f.tenant_id AND m.id = f.message_id
 RETURNING m.id
)
SELECT count(*) FROM um
"#;

/// The suppressing failures of a batch, through the SQL rule (triggers/045_suppressions.sql): a
/// hard bounce is counted and suppresses at the tenant's threshold, the other reasons at once;
/// the actor is this worker. Only outcomes that held their lease count (their message is now
/// `failed`), so a rescued attempt's bounce is not counted twice.
const SUPPRESS: &str = r#"
SELECT et_report_address(r.tenant_id, r.channel, r.address, r.reason, $7, r.message_id, r.detail)
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])
       AS r(tenant_id, channel, address, reason, message_id, detail)
 WHERE EXISTS (SELECT 1 FROM et_messages m WHERE m.tenant_id = r.tenant_id AND m.id = r.message_id AND m.delivery_status = 'failed')
"#;

/// Write a batch of outcomes for `worker`'s leases; returns how many still held their lease
/// (the others were rescued and re-claimed meanwhile, and are left alone).
pub async fn record(client: &mut deadpool_postgres::Client, worker: &str, rows: &[OutcomeRow]) -> Result<u64, tokio_postgres::Error> {
    let col = |f: fn(&OutcomeRow) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    let tenant: Vec<&str> = rows.iter().map(|r| r.tenant_id.as_str()).collect();
    let ids: Vec<i64> = rows.iter().map(|r| r.message_id).collect();
    let attempts: Vec<i32> = rows.iter().map(|r| r.attempt).collect();
    let status: Vec<Status> = rows.iter().map(|r| r.status).collect();
    let run_at: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.run_at).collect();
    let error = col(|r| r.error.clone());
    let class: Vec<Option<&str>> = rows.iter().map(|r| r.error_class).collect();
    let ext = col(|r| r.external_id.clone());
    let subj = col(|r| r.rendered_subject.clone());
    let text = col(|r| r.rendered_text.clone());
    let html = col(|r| r.rendered_html.clone());
    let delivery: Vec<Option<Value>> = rows.iter().map(|r| r.delivery.clone()).collect();
    let maybe: Vec<bool> = rows.iter().map(|r| r.maybe_delivered).collect();
    let response: Vec<Option<Value>> =
        rows.iter().map(|r| r.provider_response.as_ref().and_then(|p| serde_json::to_value(p).ok())).collect();

    let tx = client.transaction().await?;
    let stmt = tx.prepare_cached(RECORD).await?;
    let held: i64 = tx
        .query_one(
            &stmt,
            &[&worker, &tenant, &ids, &attempts, &status, &run_at, &error, &class, &ext, &subj, &text, &html, &delivery, &maybe, &response],
        )
        .await?
        .get(0);
    let sup: Vec<&OutcomeRow> = rows.iter().filter(|r| r.suppress.is_some()).collect();
    if !sup.is_empty() {
        let s = |f: fn(&OutcomeRow) -> String| sup.iter().map(|r| f(r)).collect::<Vec<_>>();
        let ids: Vec<i64> = sup.iter().map(|r| r.message_id).collect();
        let channels: Vec<Channel> = sup.iter().filter_map(|r| r.suppress.as_ref()).map(|s| s.0).collect();
        let reasons: Vec<SuppressReason> = sup.iter().filter_map(|r| r.suppress.as_ref()).map(|s| s.2).collect();
        tx.execute(
            SUPPRESS,
            &[
                &s(|r| r.tenant_id.clone()),
                &channels,
                &s(|r| r.suppress.as_ref().unwrap().1.clone()),
                &reasons,
                &ids,
                &s(|r| r.error.clone().unwrap_or_default()),
                &worker,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(held as u64)
}

/// A lease given back unstarted.
#[derive(Debug, Clone)]
pub struct Released {
    pub tenant_id: String,
    pub message_id: i64,
    /// The lease fence.
    pub attempt: i32,
    /// When the message is due again (None: at once).
    pub run_at: Option<DateTime<Utc>>,
    /// Why, on the audit event (`released unstarted at shutdown`, `circuit breaker open`).
    pub reason: &'static str,
}

/// Give back leases this worker took but never started: the attempt does not count.
pub async fn release(client: &mut deadpool_postgres::Client, worker: &str, leases: &[Released]) -> Result<u64, tokio_postgres::Error> {
    let Some(first) = leases.first() else { return Ok(0) };
    let tenant: Vec<&str> = leases.iter().map(|l| l.tenant_id.as_str()).collect();
    let ids: Vec<i64> = leases.iter().map(|l| l.message_id).collect();
    let attempts: Vec<i32> = leases.iter().map(|l| l.attempt).collect();
    let run_at: Vec<Option<DateTime<Utc>>> = leases.iter().map(|l| l.run_at).collect();
    let tx = client.transaction().await?;
    super::audit::set_reason(&tx, first.reason).await?;
    let n = tx
        .execute(
            r#"
WITH o AS (SELECT * FROM unnest($2::text[], $3::bigint[], $4::int[], $5::timestamptz[]) AS o(tenant_id, message_id, attempt, run_at)),
q AS (
    UPDATE et_outbound_queue q
       SET state = 'ready', leased_by = NULL, lease_expires_at = NULL, attempts = q.attempts - 1,
           run_at = coalesce(o.run_at, now()), updated_at = now()
      FROM o
     WHERE q.tenant_id = o.tenant_id AND q.message_id = o.message_id
       AND q.state = 'leased' AND q.leased_by = $1 AND q.attempts = o.attempt
 RETURNING q.tenant_id, q.message_id
)
UPDATE et_messages m SET delivery_status = 'queued', attempts = m.attempts - 1, updated_at = now()
  FROM q WHERE m.tenant_id = q.tenant_id AND m.id = q.message_id"#,
            &[&worker, &tenant, &ids, &attempts, &run_at],
        )
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// Report a session's circuit breaker state (for `pgcourier status` and metrics).
pub async fn report_breaker(
    client: &impl GenericClient,
    tenant_id: &str,
    session_id: i64,
    state: BreakerState,
    failure_rate: f64,
    worker: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO et_session_health (tenant_id, channel_session_id, breaker_state, failure_rate, since, reported_by)
             VALUES ($1, $2, $3, $4, now(), $5)
             ON CONFLICT (tenant_id, channel_session_id) DO UPDATE
                SET breaker_state = excluded.breaker_state, failure_rate = excluded.failure_rate,
                    since = excluded.since, reported_by = excluded.reported_by",
            &[&tenant_id, &session_id, &state, &failure_rate, &worker],
        )
        .await?;
    Ok(())
}

/// Return expired leases to the queue (or to the dead letters when attempts are exhausted).
/// The expired attempt counts, and since its send may have reached the provider, the next
/// attempt is flagged as a possible duplicate. Leases that ran out while the database was down
/// are left to their daemons for `grace` after it started again (they renew them as soon as they
/// reconnect), so a short restart re-sends nothing. Safe with many daemons: SKIP LOCKED.
pub async fn rescue(client: &mut deadpool_postgres::Client, limit: i64, grace: Duration) -> Result<u64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    super::audit::set_reason(&tx, "lease expired").await?;
    let n = tx
        .execute(
            r#"
WITH x AS (
    SELECT tenant_id, message_id FROM et_outbound_queue
     WHERE state = 'leased' AND lease_expires_at < now()
       AND pg_postmaster_start_time() < now() - make_interval(secs => $2)
     ORDER BY lease_expires_at
     LIMIT $1
       FOR UPDATE SKIP LOCKED
), q AS (
    UPDATE et_outbound_queue q
       SET state = CASE WHEN q.attempts >= q.max_attempts THEN 'dead' ELSE 'ready' END,
           run_at = now(), leased_by = NULL, lease_expires_at = NULL, maybe_delivered = true,
           last_error = format('lease of %s expired during attempt %s (it may have been delivered)', q.leased_by, q.attempts),
           updated_at = now()
      FROM x
     WHERE q.tenant_id = x.tenant_id AND q.message_id = x.message_id
 RETURNING q.tenant_id, q.message_id, q.state, q.last_error
)
UPDATE et_messages m
   SET delivery_status = CASE WHEN q.state = 'dead' THEN 'failed' ELSE 'queued' END,
       last_error = q.last_error, error_class = 'transient', updated_at = now()
  FROM q
 WHERE m.tenant_id = q.tenant_id AND m.id = q.message_id AND m.delivery_status = 'sending'"#,
            &[&limit, &grace.as_secs_f64()],
        )
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// One lease of [`renew`]: (tenant, message, attempt).
pub type LeaseKey = (String, i64, i32);

/// Extend `worker`'s leases on `keys` to `lease` from now, in one statement; returns the keys
/// still held (the others were rescued or changed by an operator). An expired lease that nobody
/// rescued yet is renewed too: it is still this attempt's.
pub async fn renew(
    client: &impl GenericClient,
    worker: &str,
    keys: &[LeaseKey],
    lease: Duration,
) -> Result<Vec<LeaseKey>, tokio_postgres::Error> {
    let tenants: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let ids: Vec<i64> = keys.iter().map(|k| k.1).collect();
    let attempts: Vec<i32> = keys.iter().map(|k| k.2).collect();
    let stmt = client
        .prepare_cached(
            "UPDATE et_outbound_queue q SET lease_expires_at = now() + make_interval(secs => $5)
               FROM unnest($2::text[], $3::bigint[], $4::int[]) AS o(tenant_id, message_id, attempt)
              WHERE q.tenant_id = o.tenant_id AND q.message_id = o.message_id
                AND q.state = 'leased' AND q.leased_by = $1 AND q.attempts = o.attempt
          RETURNING q.tenant_id, q.message_id, q.attempts",
        )
        .await?;
    let rows = client.query(&stmt, &[&worker, &tenants, &ids, &attempts, &lease.as_secs_f64()]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

/// When the next ready row falls due (None: nothing ready).
pub async fn next_due(client: &impl GenericClient) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    let stmt = client.prepare_cached("SELECT min(run_at) FROM et_outbound_queue WHERE state = 'ready'").await?;
    Ok(client.query_one(&stmt, &[]).await?.get(0))
}

/// Mark `worker` as draining until `ttl` from now: while a mark is fresh the message triggers
/// skip their NOTIFY (see `et_dispatch_busy` in `sql/V1__baseline.sql`).
pub async fn mark_busy(client: &impl GenericClient, worker: &str, ttl: Duration) -> Result<(), tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO et_dispatch_busy (worker_id, busy_until) VALUES ($1, now() + make_interval(secs => $2))
             ON CONFLICT (worker_id) DO UPDATE SET busy_until = excluded.busy_until",
        )
        .await?;
    client.execute(&stmt, &[&worker, &ttl.as_secs_f64()]).await?;
    Ok(())
}

/// Remove `worker`'s mark: inserts notify again. Returns the transactions in progress once it
/// is gone (the in-progress ids of a snapshot taken after the delete committed): a transaction
/// that read the mark, and so will commit without a NOTIFY, is among them or has committed.
pub async fn clear_busy(client: &impl GenericClient, worker: &str) -> Result<Vec<i64>, tokio_postgres::Error> {
    let stmt = client.prepare_cached("DELETE FROM et_dispatch_busy WHERE worker_id = $1").await?;
    client.execute(&stmt, &[&worker]).await?;
    // (a statement of its own: the DELETE's transaction must have committed before the snapshot)
    let stmt =
        client.prepare_cached("SELECT coalesce(array_agg(x::text::bigint), '{}') FROM pg_snapshot_xip(pg_current_snapshot()) x").await?;
    Ok(client.query_one(&stmt, &[]).await?.get(0))
}

/// Which of the transactions `xids` (from [`clear_busy`]) are still in progress.
pub async fn still_running(client: &impl GenericClient, xids: &[i64]) -> Result<Vec<i64>, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(
            "SELECT coalesce(array_agg(x), '{}') FROM unnest($1::bigint[]) x WHERE pg_xact_status(x::text::xid8) = 'in progress'",
        )
        .await?;
    Ok(client.query_one(&stmt, &[&xids]).await?.get(0))
}
