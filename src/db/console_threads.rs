//! The console's conversation reads: a tenant's threads newest activity first (keyset pages,
//! filtered by handling and session) with each one's insight, and
//! the addressing of a human reply on a thread. One thread's page, its messages and the handoff
//! use the API's own SQL ([`crate::db::api`]); the reply is inserted by the API's
//! [`crate::db::api::insert_message`].

use crate::domain::vocab::{Channel, Handling, ThreadState};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Error;

/// A thread's last activity: its newest message, else its creation. No index serves this order:
/// an index led by `tenant_id` on et_threads is what the insert trigger's generic plan for the
/// thread lookup (tenant, session, contact) picks while the table has no statistics, and it kept
/// that plan for a whole 50,000-row insert (a scan per row). A tenant's list sorts its threads.
const ACTIVITY: &str = "coalesce(greatest(t.last_inbound_at, t.last_outbound_at), t.created_at)";

/// One row of the conversation list.
#[derive(Debug, Clone)]
pub struct ThreadListRow {
    pub id: i64,
    pub channel_session_id: i64,
    /// The session's name, else its address (what an operator recognises).
    pub session: String,
    pub channel: Channel,
    pub contact: String,
    pub subject: Option<String>,
    pub handling: Handling,
    /// Who last changed the handling (an API key, the console, the inbound worker).
    pub handling_by: Option<String>,
    pub state: ThreadState,
    pub message_count: i32,
    /// The list's order and cursor.
    pub last_activity: DateTime<Utc>,
    /// The CRM insight, when the insights worker has written one.
    pub summary: Option<String>,
    pub label: Option<String>,
    pub next_step: Option<String>,
    pub follow_up_at: Option<DateTime<Utc>>,
}

/// What the conversation list shows.
#[derive(Debug, Clone, Default)]
pub struct ThreadFilter {
    pub handling: Option<Handling>,
    pub session: Option<i64>,
    /// Threads strictly older (activity, id) than this: the previous page's last row.
    pub after: Option<(DateTime<Utc>, i64)>,
    pub limit: i64,
}

/// A page of `tenant`'s threads, newest activity first.
pub async fn list_threads(c: &impl GenericClient, tenant: &str, f: &ThreadFilter) -> Result<Vec<ThreadListRow>, Error> {
    let (after_at, after_id) = f.after.map_or((None, None), |(at, id)| (Some(at), Some(id)));
    let keyset = if f.after.is_some() {
        format!("({ACTIVITY}, t.id) < ($4::timestamptz, $5::bigint)")
    } else {
        "$4::timestamptz IS NULL AND $5::bigint IS NULL".to_owned()
    };
    let sql = format!(
        "SELECT t.id, t.channel_session_id, coalesce(nullif(s.name, ''), s.address), t.channel, t.contact, t.subject, t.handling,
                t.handling_by, t.state, t.message_count, {ACTIVITY}, i.summary, i.label, i.next_step, i.follow_up_at
           FROM et_threads t
           JOIN et_channel_sessions s ON s.tenant_id = t.tenant_id AND s.id = t.channel_session_id
           LEFT JOIN et_thread_insights i ON i.tenant_id = t.tenant_id AND i.thread_id = t.id
          WHERE t.tenant_id = $1 AND ($2::text IS NULL OR t.handling = $2) AND ($3::bigint IS NULL OR t.channel_session_id = $3)
            AND {keyset}
          ORDER BY {ACTIVITY} DESC, t.id DESC
          LIMIT $6"
    );
    let rows = c.query(&sql, &[&tenant, &f.handling, &f.session, &after_at, &after_id, &f.limit]).await?;
    rows.iter()
        .map(|r| {
            Ok(ThreadListRow {
                id: r.get(0),
                channel_session_id: r.get(1),
                session: r.get(2),
                channel: r.try_get(3)?,
                contact: r.get(4),
                subject: r.get(5),
                handling: r.try_get(6)?,
                handling_by: r.get(7),
                state: r.try_get(8)?,
                message_count: r.get(9),
                last_activity: r.get(10),
                summary: r.get(11),
                label: r.get(12),
                next_step: r.get(13),
                follow_up_at: r.get(14),
            })
        })
        .collect()
}

/// How a reply on a thread is addressed: as the inbound worker addresses its automatic replies
/// (src/db/inbound.rs `APPLY`): to the thread's contact on its session, answering the newest
/// message that has an id to answer (inbound first), `Re:` its subject on email.
#[derive(Debug, Clone)]
pub struct ReplyTarget {
    pub session_id: i64,
    pub channel: Channel,
    pub contact: String,
    /// `et_reply_subject` of the answered message's subject (email only).
    pub subject: Option<String>,
    /// The answered message's Message-ID / provider id (`et_reply_ids`: only one that fits a header line).
    pub in_reply_to: Option<String>,
}

/// The reply addressing of `tenant`'s thread `thread`; `None`: no such thread for this tenant.
pub async fn reply_target(c: &impl GenericClient, tenant: &str, thread: i64) -> Result<Option<ReplyTarget>, Error> {
    // each lateral walks et_messages_thread_recent backwards and stops at the first match
    let row = c
        .query_opt(
            "SELECT t.channel_session_id, t.channel, t.contact,
                    CASE WHEN t.channel = 'email' THEN et_reply_subject(coalesce(i.subject, o.subject, t.subject)) END,
                    (et_reply_ids(ARRAY[coalesce(i.external_message_id, o.external_message_id)]))[1]
               FROM et_threads t
               LEFT JOIN LATERAL (SELECT m.subject, m.external_message_id FROM et_messages m
                                   WHERE m.tenant_id = t.tenant_id AND m.thread_id = t.id AND m.direction = 'inbound'
                                     AND m.external_message_id IS NOT NULL
                                   ORDER BY m.created_at DESC, m.id DESC LIMIT 1) i ON true
               LEFT JOIN LATERAL (SELECT m.subject, m.external_message_id FROM et_messages m
                                   WHERE m.tenant_id = t.tenant_id AND m.thread_id = t.id AND m.external_message_id IS NOT NULL
                                   ORDER BY m.created_at DESC, m.id DESC LIMIT 1) o ON i.external_message_id IS NULL
              WHERE t.tenant_id = $1 AND t.id = $2",
            &[&tenant, &thread],
        )
        .await?;
    row.map(|r| {
        Ok(ReplyTarget { session_id: r.get(0), channel: r.try_get(1)?, contact: r.get(2), subject: r.get(3), in_reply_to: r.get(4) })
    })
    .transpose()
}
