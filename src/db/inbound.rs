//! The inbound worker's SQL: claim `received` rows into `inbound_processing`, load thread
//! histories, apply decisions (status, reply row, handling, follow-up) in one transaction fenced
//! on the claim, return expired claims and retry errored decisions with backoff.
//!
//! Every statement is set-based (one per batch, arrays in, `unnest` out) and prepared once per
//! connection. A batch reaches its `et_messages` / `et_threads` rows through an `id = ANY ($ids)`
//! index condition, so the plan reads those rows and no others whatever the statistics say about
//! how many rows are in flight. (Joining the batch to the table let the planner hash the whole
//! table per claim, or, trusting a fence test it thought matched one row, scan the table and
//! compare every row with every batch entry: linear in the table, quadratic in the batch.)
//!
//! Applying is one transaction of two statements: [`lock_threads`] locks the batch's threads in
//! id order (the order the insert trigger locks them in, so the two cannot deadlock) and reads
//! their handling, the caller turns answers to threads a human now handles into takeovers, and
//! [`apply`] writes statuses, replies and threads.

use crate::domain::decision::{HistoryMessage, ThreadHistory};
use crate::domain::vocab::{Handling, Status};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// One claimed inbound message.
#[derive(Debug, Clone)]
pub struct ClaimedInbound {
    pub tenant_id: String,
    pub id: i64,
    pub thread_id: i64,
    /// `updated_at` as set by the claim: the fence for applying the decision.
    pub fence: DateTime<Utc>,
    pub attempts: i32,
}

/// Claim up to `limit` `received` rows, oldest first (`SKIP LOCKED`: concurrent claims take
/// disjoint rows). The rows are reached through `id = ANY (...)`: joining the claimed set back
/// to `et_messages` let the planner hash the whole table once per claim.
pub async fn claim(client: &impl GenericClient, limit: i64) -> Result<Vec<ClaimedInbound>, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(
            "WITH c AS MATERIALIZED (
                 SELECT tenant_id, id FROM et_messages
                  WHERE inbound_state = 'received'
                  ORDER BY created_at
                  LIMIT $1
                    FOR UPDATE SKIP LOCKED
             )
             UPDATE et_messages m
                SET delivery_status = 'inbound_processing', attempts = m.attempts + 1, updated_at = clock_timestamp()
              WHERE m.id = ANY (ARRAY(SELECT c.id FROM c))
                AND EXISTS (SELECT FROM c WHERE c.tenant_id = m.tenant_id AND c.id = m.id)
          RETURNING m.tenant_id, m.id, m.thread_id, m.updated_at, m.attempts",
        )
        .await?;
    let rows = client.query(&stmt, &[&limit]).await?;
    let mut claimed: Vec<ClaimedInbound> = rows
        .iter()
        .map(|r| ClaimedInbound { tenant_id: r.get(0), id: r.get(1), thread_id: r.get(2), fence: r.get(3), attempts: r.get(4) })
        .collect();
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

/// Thread histories (newest `depth` messages up to the newest claimed one, oldest first) and
/// tenant settings, keyed by thread id.
pub async fn histories(
    client: &impl GenericClient,
    claimed: &[ClaimedInbound],
    depth: i64,
) -> Result<(HashMap<i64, ThreadHistory>, HashMap<String, Value>), tokio_postgres::Error> {
    let mut threads: Vec<(&str, i64)> = claimed.iter().map(|c| (c.tenant_id.as_str(), c.thread_id)).collect();
    threads.sort();
    threads.dedup();
    let tenants: Vec<&str> = threads.iter().map(|t| t.0).collect();
    let ids: Vec<i64> = threads.iter().map(|t| t.1).collect();
    let (mut out, settings) = threads_and_settings(client, &tenants, &ids).await?;
    add_recent_messages(client, &tenants, &ids, depth, &mut out).await?;
    Ok((out, settings))
}

/// The threads (`tenants[i]`, `ids[i]`) without their messages, keyed by id, and their
/// tenants' settings, keyed by tenant.
async fn threads_and_settings(
    client: &impl GenericClient,
    tenants: &[&str],
    ids: &[i64],
) -> Result<(HashMap<i64, ThreadHistory>, HashMap<String, Value>), tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(
            // settings in a subquery, not a join: with et_tenants in the join, the generic plan (from
            // the 6th execution) on unanalysed tables probed et_threads by tenant_id alone, once per
            // claimed message over all the tenant's threads
            "SELECT t.tenant_id, t.id, t.channel, t.contact, t.subject, t.handling,
                    (SELECT te.settings FROM et_tenants te WHERE te.id = t.tenant_id)
               FROM unnest($1::text[], $2::bigint[]) AS w(tenant_id, thread_id)
               JOIN et_threads t ON t.tenant_id = w.tenant_id AND t.id = w.thread_id AND t.id = ANY ($2)",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenants, &ids]).await?;
    let mut out = HashMap::new();
    let mut settings = HashMap::new();
    for r in &rows {
        let id: i64 = r.get(1);
        settings.insert(r.get::<_, String>(0), r.get::<_, Value>(6));
        out.insert(
            id,
            ThreadHistory {
                tenant_id: r.get(0),
                thread_id: id,
                channel: r.try_get(2)?,
                contact: r.get(3),
                subject: r.get(4),
                handling: r.try_get(5)?,
                messages: Vec::new(),
            },
        );
    }
    Ok((out, settings))
}

/// Each thread's newest `depth` messages, oldest first, into `out`.
async fn add_recent_messages(
    client: &impl GenericClient,
    tenants: &[&str],
    ids: &[i64],
    depth: i64,
    out: &mut HashMap<i64, ThreadHistory>,
) -> Result<(), tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(
            "SELECT w.thread_id, h.id, h.direction, h.delivery_status, h.sender, h.subject, h.text, h.created_at
               FROM unnest($1::text[], $2::bigint[]) AS w(tenant_id, thread_id)
              CROSS JOIN LATERAL (
                    SELECT m.id, m.direction, m.delivery_status, m.sender, m.subject,
                           coalesce(m.body_text, m.rendered_text, m.body_html, '') AS text, m.created_at
                      FROM et_messages m
                     WHERE m.tenant_id = w.tenant_id AND m.thread_id = w.thread_id
                     ORDER BY m.created_at DESC, m.id DESC
                     LIMIT $3) h
              ORDER BY w.thread_id, h.created_at, h.id",
        )
        .await?;
    for r in client.query(&stmt, &[&tenants, &ids, &depth]).await? {
        let thread: i64 = r.get(0);
        if let Some(h) = out.get_mut(&thread) {
            h.messages.push(HistoryMessage {
                id: r.get(1),
                direction: r.try_get(2)?,
                delivery_status: r.try_get(3)?,
                sender: r.get(4),
                subject: r.get(5),
                text: r.get(6),
                created_at: r.get(7),
            });
        }
    }
    Ok(())
}

/// A decision ready to apply.
#[derive(Debug, Clone)]
pub struct Applied {
    pub tenant_id: String,
    pub message_id: i64,
    pub thread_id: i64,
    pub fence: DateTime<Utc>,
    /// The inbound status to end in.
    pub status: Status,
    pub reply: Option<String>,
    pub follow_up: Option<(DateTime<Utc>, String)>,
    /// Stored in the message's `metadata.decision`.
    pub decision: Value,
    /// For `inbound_error`: why.
    pub error: Option<String>,
}

/// Lock the threads of a batch (`FOR NO KEY UPDATE`, in id order) for the rest of the
/// transaction; returns thread id → `handling` as of now.
pub async fn lock_threads(client: &impl GenericClient, threads: &[(&str, i64)]) -> Result<HashMap<i64, Handling>, tokio_postgres::Error> {
    let mut threads = threads.to_vec();
    threads.sort_by_key(|t| t.1);
    threads.dedup();
    let tenants: Vec<&str> = threads.iter().map(|t| t.0).collect();
    let ids: Vec<i64> = threads.iter().map(|t| t.1).collect();
    let stmt = client
        .prepare_cached(
            "SELECT t.id, t.handling
               FROM unnest($1::text[], $2::bigint[]) AS w(tenant_id, thread_id)
               JOIN et_threads t ON t.tenant_id = w.tenant_id AND t.id = w.thread_id AND t.id = ANY ($2)
              ORDER BY t.id
                FOR NO KEY UPDATE OF t",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenants, &ids]).await?;
    rows.iter().map(|r| Ok((r.get(0), r.try_get(1)?))).collect()
}

const APPLY: &str = r#"
WITH d AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::timestamptz[], $7::text[],
                         $8::jsonb[], $9::text[])
        AS d(tenant_id, id, fence, status, reply, follow_at, follow_note, decision, error)
), done AS (
    -- Fenced on the claim: a row rescued (and maybe claimed again) meanwhile is left alone; a
    -- concurrent change is re-checked on the newest row version. The rows are reached through
    -- `id = ANY ($2)`, and the fence is hidden in a CASE so it cannot steer the plan.
    UPDATE et_messages m
       SET delivery_status = d.status, last_error = d.error,
           metadata = m.metadata || jsonb_build_object('decision', d.decision), updated_at = now()
      FROM d
     WHERE m.tenant_id = d.tenant_id AND m.id = d.id AND m.id = ANY ($2)
       AND CASE WHEN m.delivery_status = 'inbound_processing' AND m.updated_at = d.fence THEN true ELSE false END
 RETURNING m.tenant_id, m.id, m.thread_id, m.channel_session_id, m.channel, m.sender, m.subject, m.external_message_id,
           m."references", d.status, d.reply, d.follow_at, d.follow_note
), per_thread AS (
    -- one update per thread (a statement must not update a row twice): a takeover anywhere in the
    -- batch sticks, the newest follow-up wins
    SELECT f.tenant_id, f.thread_id,
           bool_or(f.status = 'inbound_human_takeover') AS takeover,
           (array_agg(f.id ORDER BY f.id DESC) FILTER (WHERE f.status = 'inbound_follow_up'))[1] AS follow_id,
           (array_agg(f.follow_at ORDER BY f.id DESC) FILTER (WHERE f.status = 'inbound_follow_up'))[1] AS follow_at,
           (array_agg(f.follow_note ORDER BY f.id DESC) FILTER (WHERE f.status = 'inbound_follow_up'))[1] AS follow_note
      FROM done f GROUP BY f.tenant_id, f.thread_id
), threads AS (
    UPDATE et_threads t
       SET handling = CASE WHEN p.takeover THEN 'human' ELSE t.handling END,
           handling_by = CASE WHEN p.takeover AND t.handling <> 'human' THEN $10 ELSE t.handling_by END,
           handling_at = CASE WHEN p.takeover AND t.handling <> 'human' THEN now() ELSE t.handling_at END,
           follow_up_at = CASE WHEN p.follow_id IS NOT NULL THEN p.follow_at ELSE t.follow_up_at END,
           follow_up_note = CASE WHEN p.follow_id IS NOT NULL THEN p.follow_note ELSE t.follow_up_note END,
           follow_up_set_at = CASE WHEN p.follow_id IS NOT NULL THEN now() ELSE t.follow_up_set_at END,
           follow_up_message_id = coalesce(p.follow_id, t.follow_up_message_id),
           -- the decision changes what the thread's insight says
           insights_due_at = coalesce(t.insights_due_at, now()),
           updated_at = now()
      FROM per_thread p
     WHERE t.tenant_id = p.tenant_id AND t.id = p.thread_id
), replies AS (
    INSERT INTO et_messages (tenant_id, channel_session_id, direction, thread_id, recipients, subject, body_text,
                             in_reply_to, "references", metadata)
    SELECT f.tenant_id, f.channel_session_id, 'outbound', f.thread_id, ARRAY[f.sender],
           CASE WHEN f.channel = 'email' THEN et_reply_subject(f.subject) END,
           f.reply, (et_reply_ids(ARRAY[f.external_message_id]))[1],
           CASE WHEN f.channel = 'email' AND f.external_message_id IS NOT NULL
                THEN et_reply_ids(f."references" || f.external_message_id) ELSE '{}' END,
           jsonb_build_object('auto_reply_to', f.id)
      FROM done f
     WHERE f.status = 'inbound_ai_replied' AND f.reply IS NOT NULL
     ORDER BY f.id
 RETURNING id
)
SELECT (SELECT count(*) FROM done), (SELECT count(*) FROM replies)
"#;

/// Apply decisions inside the caller's transaction, after [`lock_threads`] (the caller has
/// already turned answers to human-handled threads into takeovers); returns (messages applied,
/// replies queued). Decisions whose claim was lost (rescued meanwhile) are skipped.
pub async fn apply(client: &impl GenericClient, worker: &str, items: &[Applied]) -> Result<(i64, i64), tokio_postgres::Error> {
    let tenants: Vec<&str> = items.iter().map(|a| a.tenant_id.as_str()).collect();
    let ids: Vec<i64> = items.iter().map(|a| a.message_id).collect();
    let fences: Vec<DateTime<Utc>> = items.iter().map(|a| a.fence).collect();
    let status: Vec<Status> = items.iter().map(|a| a.status).collect();
    let reply: Vec<Option<&str>> = items.iter().map(|a| a.reply.as_deref()).collect();
    let follow_at: Vec<Option<DateTime<Utc>>> = items.iter().map(|a| a.follow_up.as_ref().map(|f| f.0)).collect();
    let follow_note: Vec<Option<&str>> = items.iter().map(|a| a.follow_up.as_ref().map(|f| f.1.as_str())).collect();
    let decision: Vec<&Value> = items.iter().map(|a| &a.decision).collect();
    let error: Vec<Option<&str>> = items.iter().map(|a| a.error.as_deref()).collect();
    let stmt = client.prepare_cached(APPLY).await?;
    let row =
        client.query_one(&stmt, &[&tenants, &ids, &fences, &status, &reply, &follow_at, &follow_note, &decision, &error, &worker]).await?;
    Ok((row.get(0), row.get(1)))
}

/// Claims not renewed for `lease` go back to `received` (their daemon died mid-decision). After
/// a database restart, claims are left to their daemons for a lease (they renew them as soon as
/// they reconnect).
pub async fn rescue(client: &mut deadpool_postgres::Client, lease: Duration) -> Result<u64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    super::audit::set_reason(&tx, "lease expired").await?;
    let n = tx
        .execute(
            "UPDATE et_messages SET delivery_status = 'received', updated_at = now()
              WHERE inbound_state = 'inbound_processing'
                AND inbound_touched_at < now() - make_interval(secs => $1)
                AND pg_postmaster_start_time() < now() - make_interval(secs => $1)",
            &[&lease.as_secs_f64()],
        )
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// One inbound claim: (tenant, message id) and its fence (`updated_at` as the claim or the last
/// renewal set it).
pub type ClaimFence = ((String, i64), DateTime<Utc>);

/// Renew claims still in `inbound_processing` under their fences, in one statement: each gets a
/// new `updated_at` (its lease runs from it), returned as its new fence. Claims not returned
/// were rescued or decided elsewhere meanwhile.
pub async fn renew(client: &impl GenericClient, claims: &[ClaimFence]) -> Result<Vec<ClaimFence>, tokio_postgres::Error> {
    let tenants: Vec<&str> = claims.iter().map(|c| c.0 .0.as_str()).collect();
    let ids: Vec<i64> = claims.iter().map(|c| c.0 .1).collect();
    let fences: Vec<DateTime<Utc>> = claims.iter().map(|c| c.1).collect();
    let stmt = client
        .prepare_cached(
            "UPDATE et_messages m SET updated_at = clock_timestamp()
               FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS w(tenant_id, id, fence)
              WHERE m.id = ANY ($2) AND m.tenant_id = w.tenant_id AND m.id = w.id AND m.updated_at = w.fence
                AND m.inbound_state = 'inbound_processing'
          RETURNING m.tenant_id, m.id, m.updated_at",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenants, &ids, &fences]).await?;
    Ok(rows.iter().map(|r| ((r.get(0), r.get(1)), r.get(2))).collect())
}

/// Errored decisions with attempts left go back to `received` after `base · 2^(attempts-1)`.
pub async fn retry_errors(client: &mut deadpool_postgres::Client, max_attempts: i32, base: Duration) -> Result<u64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    super::audit::set_reason(&tx, "automatic retry").await?;
    let n = tx
        .execute(
            "UPDATE et_messages SET delivery_status = 'received', updated_at = now()
              WHERE inbound_state = 'inbound_error' AND attempts < $1
                AND inbound_touched_at < now() - make_interval(secs => least(600, $2 * 2 ^ greatest(attempts - 1, 0)))",
            &[&max_attempts, &base.as_secs_f64()],
        )
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// The tenants' enabled rules: (tenant, id, pattern, action, reply_template, follow-up seconds, label).
pub type RuleRow = (String, i64, String, String, Option<String>, Option<f64>, Option<String>);

pub async fn rules(client: &impl GenericClient, tenants: &[&str]) -> Result<Vec<RuleRow>, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(
            "SELECT tenant_id, id, pattern, action, reply_template, extract(epoch FROM follow_up_after)::float8, label
               FROM et_inbound_rules WHERE tenant_id = ANY ($1) AND enabled ORDER BY tenant_id, position, id",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenants]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6))).collect())
}
