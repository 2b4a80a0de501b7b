//! The insights worker's SQL: claim threads whose insight is due, load their bounded histories,
//! write insights fenced on the claimed due marker, and fire or clear due follow-ups.
//!
//! Insights: the claim is one short statement (a CTE locking with `SKIP LOCKED`, so concurrent
//! claims by several daemons take disjoint threads and never wait on a thread an insert is
//! writing); no transaction stays open while an insight is computed (an LLM call may take
//! seconds). The write is one transaction per batch that locks the claimed threads, upserts the
//! insights of the threads whose `insights_due_at` still equals the claimed value, and clears the
//! marker only where the thread's `updated_at` is also unchanged: a message inserted during the
//! recompute bumps `updated_at` (the insert trigger keeps an existing marker), so the thread stays
//! due and is recomputed after the debounce.
//!
//! Follow-ups: one transaction per batch claims due threads (`SKIP LOCKED`), inserts the drafts,
//! the `followup.due` audit events and the `et_followups` notifications, and clears the follow-up.

use crate::domain::decision::{HistoryMessage, Insight};
use crate::domain::vocab::{Channel, DecidedBy, Handling};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// Characters of a message's text loaded into a history (an insight needs the gist, not 2 MiB).
pub const TEXT_CHARS: i32 = 8_000;

/// A thread claimed for an insight recompute, with what the summarizers need besides the messages.
#[derive(Debug, Clone)]
pub struct DueThread {
    pub tenant_id: String,
    pub thread_id: i64,
    /// `insights_due_at` as claimed: the fence for writing.
    pub due_at: DateTime<Utc>,
    /// `updated_at` as claimed: the fence for clearing the marker.
    pub updated_at: DateTime<Utc>,
    pub channel: Channel,
    pub contact: String,
    pub subject: Option<String>,
    pub handling: Handling,
    pub message_count: i32,
    pub inbound_count: i32,
    pub outbound_count: i32,
    pub follow_up_at: Option<DateTime<Utc>>,
    pub follow_up_note: Option<String>,
    /// The tenant's `settings.insights` (`llm` selects the LLM summarizer).
    pub insights_mode: Option<String>,
    /// The tenant's `settings.llm` (JSON null when absent).
    pub llm_settings: Value,
}

/// The claim (public so that a test can check its plan on unanalysed tables).
///
/// Plan-robust without statistics (a fresh bulk load; autovacuum may be off): it walks the due
/// threads through `et_threads_insights_due_id` from the pass's cursor, and the "newest inbound
/// decided" probe can only use `et_messages_inbound_undecided`, which holds nothing but the
/// undecided inbound rows (without it an unanalysed `et_messages` is probed through the inbound
/// dedupe index on `tenant_id` alone, every message of the tenant per due thread).
pub const CLAIM: &str = r#"
WITH c AS (
    SELECT th.tenant_id, th.id
      FROM et_threads th
     WHERE th.insights_due_at IS NOT NULL
       AND (th.insights_due_at, th.id) > (coalesce($5::timestamptz, '-infinity'), coalesce($6::bigint, 0))
       AND (th.updated_at <= now() - make_interval(secs => $1)
            OR th.insights_due_at <= now() - make_interval(secs => $2))
       AND th.id <> ALL ($3::bigint[])
       -- not while another daemon computes it
       AND (th.insights_lease_expires_at IS NULL OR th.insights_lease_expires_at < now())
       -- wait (up to the starvation bound) for the newest inbound message's decision, so the
       -- insight carries its label and next step instead of "awaiting decision"
       AND (th.insights_due_at <= now() - make_interval(secs => $2)
            OR NOT EXISTS (SELECT 1 FROM et_messages m
                            WHERE m.tenant_id = th.tenant_id AND m.thread_id = th.id
                              AND m.created_at >= th.last_inbound_at
                              AND m.inbound_state IN ('received', 'inbound_processing')))
     ORDER BY th.insights_due_at, th.id
     LIMIT $4
       FOR NO KEY UPDATE OF th SKIP LOCKED
), l AS (
    -- leased for the computation (updated_at, the write's fence, is left alone)
    UPDATE et_threads th SET insights_leased_by = $7, insights_lease_expires_at = now() + make_interval(secs => $8)
      FROM c
     WHERE th.tenant_id = c.tenant_id AND th.id = c.id
 RETURNING th.*
)
SELECT th.tenant_id, th.id, th.insights_due_at, th.updated_at, th.channel, th.contact, th.subject, th.handling,
       th.message_count, th.inbound_count, th.outbound_count, th.follow_up_at, th.follow_up_note,
       te.settings->>'insights' AS insights_mode, coalesce(te.settings->'llm', 'null'::jsonb) AS llm
  FROM l th
  JOIN et_tenants te ON te.id = th.tenant_id
"#;

/// Where a pass of claims has got to in claim order (`insights_due_at`, thread id): the next claim
/// of the pass starts after it, so a pass reads each due thread once however many batches it
/// takes, and a thread claimed earlier in the pass (still due if a message arrived meanwhile) is
/// not claimed again before the next pass.
pub type Cursor = (DateTime<Utc>, i64);

/// The cursor after `claimed` (the last thread in claim order), or `after` when nothing was claimed.
pub fn cursor_after(after: Option<Cursor>, claimed: &[DueThread]) -> Option<Cursor> {
    claimed.iter().map(|t| (t.due_at, t.thread_id)).max().or(after)
}

/// Claim up to `limit` threads whose insight is due, in `insights_due_at` order after `after`
/// (None: from the start): quiet for `debounce`, or due for more than 10 × `debounce` (a thread
/// that never goes quiet is not starved). `exclude` are thread ids this daemon is backing off from.
/// The threads are leased to `worker` for `lease` (see [`renew`], [`release`]); threads another
/// daemon holds are skipped.
pub async fn claim_due(
    client: &impl GenericClient,
    debounce: Duration,
    exclude: &[i64],
    after: Option<Cursor>,
    limit: i64,
    (worker, lease): (&str, Duration),
) -> Result<Vec<DueThread>, tokio_postgres::Error> {
    let quiet = debounce.as_secs_f64();
    let starved = quiet * 10.0;
    let (after_due, after_id) = (after.map(|a| a.0), after.map(|a| a.1));
    let rows = client.query(CLAIM, &[&quiet, &starved, &exclude, &limit, &after_due, &after_id, &worker, &lease.as_secs_f64()]).await?;
    rows.iter()
        .map(|r| {
            Ok(DueThread {
                tenant_id: r.get(0),
                thread_id: r.get(1),
                due_at: r.get(2),
                updated_at: r.get(3),
                channel: r.try_get(4)?,
                contact: r.get(5),
                subject: r.get(6),
                handling: r.try_get(7)?,
                message_count: r.get(8),
                inbound_count: r.get(9),
                outbound_count: r.get(10),
                follow_up_at: r.get(11),
                follow_up_note: r.get(12),
                insights_mode: r.get(13),
                llm_settings: r.get(14),
            })
        })
        .collect()
}

/// Extend `worker`'s leases on `threads` to `lease` from now; returns the threads still held.
pub async fn renew(
    client: &impl GenericClient,
    worker: &str,
    threads: &[(String, i64)],
    lease: Duration,
) -> Result<Vec<(String, i64)>, tokio_postgres::Error> {
    let tenants: Vec<&str> = threads.iter().map(|t| t.0.as_str()).collect();
    let ids: Vec<i64> = threads.iter().map(|t| t.1).collect();
    let rows = client
        .query(
            "UPDATE et_threads th SET insights_lease_expires_at = now() + make_interval(secs => $4)
               FROM unnest($2::text[], $3::bigint[]) AS w(tenant_id, id)
              WHERE th.tenant_id = w.tenant_id AND th.id = w.id AND th.id = ANY ($3) AND th.insights_leased_by = $1
          RETURNING th.tenant_id, th.id",
            &[&worker, &tenants, &ids, &lease.as_secs_f64()],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Give up `worker`'s leases on `threads` (their batch is written, or failed).
pub async fn release(client: &impl GenericClient, worker: &str, threads: &[(String, i64)]) -> Result<u64, tokio_postgres::Error> {
    let tenants: Vec<&str> = threads.iter().map(|t| t.0.as_str()).collect();
    let ids: Vec<i64> = threads.iter().map(|t| t.1).collect();
    client
        .execute(
            "UPDATE et_threads th SET insights_leased_by = NULL, insights_lease_expires_at = NULL
               FROM unnest($2::text[], $3::bigint[]) AS w(tenant_id, id)
              WHERE th.tenant_id = w.tenant_id AND th.id = w.id AND th.id = ANY ($3) AND th.insights_leased_by = $1",
            &[&worker, &tenants, &ids],
        )
        .await
}

/// One message of a history, with the decision label the inbound worker stored on it.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub message: HistoryMessage,
    /// `metadata.decision.label` (inbound messages the inbound worker decided).
    pub decision_label: Option<String>,
}

const HISTORIES: &str = r#"
SELECT w.thread_id, h.id, h.direction, h.delivery_status, h.sender, h.subject, h.text, h.html, h.label, h.created_at
  FROM unnest($1::text[], $2::bigint[]) AS w(tenant_id, thread_id)
 CROSS JOIN LATERAL (
    SELECT m.id, m.direction, m.delivery_status, m.sender, m.subject,
           left(coalesce(m.body_text, m.rendered_text), $4) AS text,
           CASE WHEN m.body_text IS NULL AND m.rendered_text IS NULL THEN left(m.body_html, $4 * 4) END AS html,
           nullif(btrim(m.metadata->'decision'->>'label'), '') AS label,
           m.created_at
      FROM et_messages m
     WHERE m.tenant_id = w.tenant_id AND m.thread_id = w.thread_id
     ORDER BY m.created_at DESC, m.id DESC
     LIMIT $3
 ) h
 ORDER BY w.thread_id, h.created_at, h.id
"#;

/// The newest `depth` messages of each thread, oldest first, in one query. Text is `body_text`,
/// else `rendered_text`, else the text of `body_html`, else empty.
pub async fn histories(
    client: &impl GenericClient,
    threads: &[(&str, i64)],
    depth: i64,
) -> Result<HashMap<i64, Vec<HistoryRow>>, tokio_postgres::Error> {
    let tenants: Vec<&str> = threads.iter().map(|t| t.0).collect();
    let ids: Vec<i64> = threads.iter().map(|t| t.1).collect();
    let rows = client.query(HISTORIES, &[&tenants, &ids, &depth, &TEXT_CHARS]).await?;
    let mut out: HashMap<i64, Vec<HistoryRow>> = HashMap::new();
    for r in &rows {
        let text = match (r.get::<_, Option<String>>(6), r.get::<_, Option<String>>(7)) {
            (Some(t), _) => t,
            (None, Some(html)) => html_text(&html),
            (None, None) => String::new(),
        };
        out.entry(r.get(0)).or_default().push(HistoryRow {
            message: HistoryMessage {
                id: r.get(1),
                direction: r.try_get(2)?,
                delivery_status: r.try_get(3)?,
                sender: r.get(4),
                subject: r.get(5),
                text,
                created_at: r.get(9),
            },
            decision_label: r.get(8),
        });
    }
    Ok(out)
}

fn html_text(html: &str) -> String {
    let text = html2text::from_read(html.as_bytes(), 10_000).unwrap_or_else(|_| html.to_owned());
    text.chars().take(TEXT_CHARS as usize).collect()
}

/// A computed insight, ready to write.
#[derive(Debug, Clone)]
pub struct Computed {
    pub tenant_id: String,
    pub thread_id: i64,
    pub due_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub insight: Insight,
    /// The newest message of the history the insight was computed from.
    pub source_message_id: Option<i64>,
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Insights upserted (their thread was still due with the claimed marker).
    pub written: Vec<i64>,
    /// Threads whose marker was cleared (nothing changed on them since the claim).
    pub cleared: Vec<i64>,
}

const LOCK_FOR_WRITE: &str = r#"
SELECT th.id, th.insights_due_at IS NOT DISTINCT FROM v.due_at AS still_due, th.updated_at = v.fence AS unchanged
  FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::timestamptz[]) AS v(tenant_id, thread_id, due_at, fence)
  JOIN et_threads th ON th.tenant_id = v.tenant_id AND th.id = v.thread_id AND th.id = ANY ($2)
 ORDER BY th.id
   FOR NO KEY UPDATE OF th
"#;

const UPSERT: &str = r#"
INSERT INTO et_thread_insights AS i
       (tenant_id, thread_id, summary, label, next_step, follow_up_at, decided_by, model, source_message_id, updated_at)
SELECT v.tenant_id, v.thread_id, v.summary, v.label, v.next_step, v.follow_up_at, v.decided_by, v.model, v.source_message_id, now()
  FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::text[], $9::bigint[])
       AS v(tenant_id, thread_id, summary, label, next_step, follow_up_at, decided_by, model, source_message_id)
ON CONFLICT (tenant_id, thread_id) DO UPDATE
   SET summary = excluded.summary, label = excluded.label, next_step = excluded.next_step,
       follow_up_at = excluded.follow_up_at, decided_by = excluded.decided_by, model = excluded.model,
       source_message_id = excluded.source_message_id, updated_at = excluded.updated_at
"#;

const CLEAR: &str = r#"
UPDATE et_threads th
   SET insights_due_at = NULL
  FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::timestamptz[]) AS v(tenant_id, thread_id, due_at, fence)
 WHERE th.tenant_id = v.tenant_id AND th.id = v.thread_id AND th.id = ANY ($2)
   AND th.insights_due_at = v.due_at AND th.updated_at = v.fence
RETURNING th.id
"#;

/// Write computed insights in one transaction: lock the threads (in id order, like the insert
/// trigger), upsert the insight of every thread still due with the claimed marker (another daemon
/// may have written a newer one meanwhile), and clear the marker of those not changed since the
/// claim.
pub async fn write(client: &mut deadpool_postgres::Client, items: &[Computed]) -> Result<Written, tokio_postgres::Error> {
    if items.is_empty() {
        return Ok(Written::default());
    }
    let tx = client.transaction().await?;
    let tenants: Vec<&str> = items.iter().map(|c| c.tenant_id.as_str()).collect();
    let ids: Vec<i64> = items.iter().map(|c| c.thread_id).collect();
    let due: Vec<DateTime<Utc>> = items.iter().map(|c| c.due_at).collect();
    let fence: Vec<DateTime<Utc>> = items.iter().map(|c| c.updated_at).collect();
    let locked = tx.query(LOCK_FOR_WRITE, &[&tenants, &ids, &due, &fence]).await?;
    let mut still_due = std::collections::HashSet::new();
    let mut unchanged = std::collections::HashSet::new();
    for r in &locked {
        let id: i64 = r.get(0);
        if r.get::<_, bool>(1) {
            still_due.insert(id);
            if r.get::<_, Option<bool>>(2) == Some(true) {
                unchanged.insert(id);
            }
        }
    }
    let keep: Vec<&Computed> = items.iter().filter(|c| still_due.contains(&c.thread_id)).collect();
    if !keep.is_empty() {
        let tenants: Vec<&str> = keep.iter().map(|c| c.tenant_id.as_str()).collect();
        let ids: Vec<i64> = keep.iter().map(|c| c.thread_id).collect();
        let summary: Vec<String> = keep.iter().map(|c| clean(&c.insight.summary)).collect();
        let label: Vec<Option<String>> = keep.iter().map(|c| c.insight.label.as_deref().map(clean)).collect();
        let next: Vec<Option<String>> = keep.iter().map(|c| c.insight.next_step.as_deref().map(clean)).collect();
        let follow: Vec<Option<DateTime<Utc>>> = keep.iter().map(|c| c.insight.follow_up_at).collect();
        let by: Vec<DecidedBy> = keep.iter().map(|c| c.insight.decided_by).collect();
        let model: Vec<Option<String>> = keep.iter().map(|c| c.insight.model.as_deref().map(clean)).collect();
        let source: Vec<Option<i64>> = keep.iter().map(|c| c.source_message_id).collect();
        tx.execute(UPSERT, &[&tenants, &ids, &summary, &label, &next, &follow, &by, &model, &source]).await?;
    }
    let clear: Vec<&Computed> = keep.iter().copied().filter(|c| unchanged.contains(&c.thread_id)).collect();
    let mut cleared = Vec::new();
    if !clear.is_empty() {
        let tenants: Vec<&str> = clear.iter().map(|c| c.tenant_id.as_str()).collect();
        let ids: Vec<i64> = clear.iter().map(|c| c.thread_id).collect();
        let due: Vec<DateTime<Utc>> = clear.iter().map(|c| c.due_at).collect();
        let fence: Vec<DateTime<Utc>> = clear.iter().map(|c| c.updated_at).collect();
        cleared = tx.query(CLEAR, &[&tenants, &ids, &due, &fence]).await?.iter().map(|r| r.get(0)).collect();
    }
    tx.commit().await?;
    Ok(Written { written: keep.iter().map(|c| c.thread_id).collect(), cleared })
}

/// PostgreSQL text cannot hold NUL; a model's answer might.
fn clean(s: &str) -> String {
    s.replace('\0', "")
}

/// A due follow-up, claimed (its thread row is locked until the transaction ends).
#[derive(Debug, Clone)]
pub struct DueFollowUp {
    pub tenant_id: String,
    pub thread_id: i64,
    pub due_at: DateTime<Utc>,
    /// The message the event is written on: `follow_up_message_id`, else the thread's newest.
    pub message_id: Option<i64>,
    /// The contact wrote after the follow-up was set: cleared without firing.
    pub answered: bool,
    /// The tenant's `settings.follow_up_draft`, when it is a non-blank text.
    pub draft: Option<String>,
}

const CLAIM_FOLLOW_UPS: &str = r#"
WITH c AS (
    SELECT th.tenant_id, th.id
      FROM et_threads th
     WHERE th.follow_up_at <= now()
     ORDER BY th.follow_up_at
     LIMIT $1
       FOR NO KEY UPDATE OF th SKIP LOCKED
)
SELECT th.tenant_id, th.id, th.follow_up_at, coalesce(fm.id, lm.id),
       coalesce(th.last_inbound_at > th.follow_up_set_at, false) AS answered,
       CASE WHEN jsonb_typeof(te.settings->'follow_up_draft') = 'string'
             AND btrim(te.settings->>'follow_up_draft') <> '' THEN te.settings->>'follow_up_draft' END AS draft
  FROM c
  JOIN et_threads th ON th.tenant_id = c.tenant_id AND th.id = c.id
  JOIN et_tenants te ON te.id = th.tenant_id
  LEFT JOIN et_messages fm ON fm.tenant_id = th.tenant_id AND fm.id = th.follow_up_message_id
  LEFT JOIN LATERAL (
      SELECT m.id FROM et_messages m
       WHERE m.tenant_id = th.tenant_id AND m.thread_id = th.id
       ORDER BY m.created_at DESC, m.id DESC
       LIMIT 1
  ) lm ON fm.id IS NULL
 ORDER BY th.follow_up_at
"#;

/// Claim up to `limit` due follow-ups inside `tx` (locked until it ends; `SKIP LOCKED`).
pub async fn claim_follow_ups(tx: &deadpool_postgres::Transaction<'_>, limit: i64) -> Result<Vec<DueFollowUp>, tokio_postgres::Error> {
    let rows = tx.query(CLAIM_FOLLOW_UPS, &[&limit]).await?;
    Ok(rows
        .iter()
        .map(|r| DueFollowUp {
            tenant_id: r.get(0),
            thread_id: r.get(1),
            due_at: r.get(2),
            message_id: r.get(3),
            answered: r.get(4),
            draft: r.get(5),
        })
        .collect())
}

const INSERT_DRAFTS: &str = r#"
INSERT INTO et_messages (tenant_id, channel_session_id, direction, thread_id, recipients, subject, body_text,
                         delivery_status, in_reply_to, "references", metadata)
SELECT th.tenant_id, th.channel_session_id, 'outbound', th.id, ARRAY[th.contact],
       CASE WHEN th.channel = 'email' THEN et_reply_subject(coalesce(m.subject, th.subject)) END,
       d.body, 'pending_approval',
       CASE WHEN th.channel = 'email' THEN (et_reply_ids(ARRAY[m.external_message_id]))[1] END,
       CASE WHEN th.channel = 'email' AND m.external_message_id IS NOT NULL
            THEN et_reply_ids(m."references" || m.external_message_id) ELSE '{}' END,
       jsonb_build_object('follow_up_for', d.message_id)
  FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[]) AS d(tenant_id, thread_id, message_id, body)
  JOIN et_threads th ON th.tenant_id = d.tenant_id AND th.id = d.thread_id
  LEFT JOIN et_messages m ON m.tenant_id = d.tenant_id AND m.id = d.message_id
RETURNING thread_id, id
"#;

/// Insert follow-up drafts (`pending_approval`, waiting for an operator's `et_approve`) for
/// `items`; returns thread id → draft message id. One statement: a refused row refuses them all.
pub async fn insert_drafts(client: &impl GenericClient, items: &[&DueFollowUp]) -> Result<HashMap<i64, i64>, tokio_postgres::Error> {
    let tenants: Vec<&str> = items.iter().map(|f| f.tenant_id.as_str()).collect();
    let ids: Vec<i64> = items.iter().map(|f| f.thread_id).collect();
    let messages: Vec<Option<i64>> = items.iter().map(|f| f.message_id).collect();
    let bodies: Vec<Option<&str>> = items.iter().map(|f| f.draft.as_deref()).collect();
    let rows = client.query(INSERT_DRAFTS, &[&tenants, &ids, &messages, &bodies]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

const FIRE: &str = r#"
WITH f AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bool[], $5::bigint[], $6::text[])
        AS f(tenant_id, thread_id, message_id, fire, draft_id, draft_error)
), ev AS (
    INSERT INTO et_message_events (tenant_id, message_id, from_status, to_status, actor, detail)
    SELECT m.tenant_id, m.id, m.delivery_status, m.delivery_status, $7,
           jsonb_strip_nulls(jsonb_build_object(
               'event', 'followup.due', 'thread_id', th.id, 'note', th.follow_up_note, 'due_at', th.follow_up_at,
               'draft_message_id', f.draft_id, 'draft_error', f.draft_error))
      FROM f
      JOIN et_threads th ON th.tenant_id = f.tenant_id AND th.id = f.thread_id
      JOIN et_messages m ON m.tenant_id = f.tenant_id AND m.id = f.message_id
     WHERE f.fire
    RETURNING 1
), n AS (
    SELECT pg_notify('et_followups', x.tenant_id) FROM (SELECT DISTINCT tenant_id FROM f WHERE f.fire) x
), cl AS (
    -- the insight's follow-up date and next step change: recompute it
    UPDATE et_threads th
       SET follow_up_at = NULL, follow_up_note = NULL, follow_up_set_at = NULL, follow_up_message_id = NULL,
           insights_due_at = coalesce(th.insights_due_at, now())
      FROM f
     WHERE th.tenant_id = f.tenant_id AND th.id = f.thread_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM ev), (SELECT count(*) FROM n), (SELECT count(*) FROM cl)
"#;

/// One claimed follow-up's outcome.
#[derive(Debug, Clone)]
pub struct Outcome<'a> {
    pub due: &'a DueFollowUp,
    pub fire: bool,
    pub draft_id: Option<i64>,
    pub draft_error: Option<String>,
}

/// Write the `followup.due` events (on the follow-up's message, status unchanged, actor
/// `worker`), one `et_followups` NOTIFY per tenant with a fired follow-up, and clear every
/// claimed follow-up. Returns the number of events written.
pub async fn fire(client: &impl GenericClient, worker: &str, outcomes: &[Outcome<'_>]) -> Result<i64, tokio_postgres::Error> {
    let tenants: Vec<&str> = outcomes.iter().map(|o| o.due.tenant_id.as_str()).collect();
    let ids: Vec<i64> = outcomes.iter().map(|o| o.due.thread_id).collect();
    let messages: Vec<Option<i64>> = outcomes.iter().map(|o| o.due.message_id).collect();
    let fire: Vec<bool> = outcomes.iter().map(|o| o.fire).collect();
    let drafts: Vec<Option<i64>> = outcomes.iter().map(|o| o.draft_id).collect();
    let errors: Vec<Option<&str>> = outcomes.iter().map(|o| o.draft_error.as_deref()).collect();
    let row = client.query_one(FIRE, &[&tenants, &ids, &messages, &fire, &drafts, &errors, &worker]).await?;
    Ok(row.get(0))
}
