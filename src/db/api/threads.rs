//! Thread reads (the thread, its newest messages, its insight) and `et_handoff`.

use super::messages::{cols, message, Bodies, MessageRow};
use crate::domain::vocab::{Channel, DecidedBy, Handling, ThreadState};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Error;

/// A conversation.
#[derive(Debug, Clone)]
pub struct ThreadRow {
    pub id: i64,
    pub channel_session_id: i64,
    pub channel: Channel,
    pub contact: String,
    pub subject: Option<String>,
    pub external_thread_key: Option<String>,
    pub handling: Handling,
    pub handling_by: Option<String>,
    pub handling_at: Option<DateTime<Utc>>,
    pub state: ThreadState,
    pub message_count: i32,
    pub inbound_count: i32,
    pub outbound_count: i32,
    pub last_inbound_at: Option<DateTime<Utc>>,
    pub last_outbound_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn find_thread(c: &impl GenericClient, tenant: &str, id: i64) -> Result<Option<ThreadRow>, Error> {
    let row = c
        .query_opt(
            "SELECT id, channel_session_id, channel, contact, subject, external_thread_key, handling, handling_by, handling_at,
                    state, message_count, inbound_count, outbound_count, last_inbound_at, last_outbound_at, created_at, updated_at
               FROM et_threads WHERE tenant_id = $1 AND id = $2",
            &[&tenant, &id],
        )
        .await?;
    row.map(|r| {
        Ok(ThreadRow {
            id: r.get(0),
            channel_session_id: r.get(1),
            channel: r.try_get(2)?,
            contact: r.get(3),
            subject: r.get(4),
            external_thread_key: r.get(5),
            handling: r.try_get(6)?,
            handling_by: r.get(7),
            handling_at: r.get(8),
            state: r.try_get(9)?,
            message_count: r.get(10),
            inbound_count: r.get(11),
            outbound_count: r.get(12),
            last_inbound_at: r.get(13),
            last_outbound_at: r.get(14),
            created_at: r.get(15),
            updated_at: r.get(16),
        })
    })
    .transpose()
}

pub async fn thread_elsewhere(c: &impl GenericClient, tenant: &str, id: i64) -> Result<bool, Error> {
    Ok(c.query_one("SELECT EXISTS (SELECT 1 FROM et_threads WHERE id = $2 AND tenant_id <> $1)", &[&tenant, &id]).await?.get(0))
}

/// The newest `limit` messages of a thread, oldest first, with their text bodies.
pub async fn thread_messages(c: &impl GenericClient, tenant: &str, thread: i64, limit: i64) -> Result<Vec<MessageRow>, Error> {
    let sql = format!(
        "SELECT * FROM (SELECT {} FROM et_messages m WHERE m.tenant_id = $1 AND m.thread_id = $2
                         ORDER BY m.created_at DESC, m.id DESC LIMIT $3) s
          ORDER BY s.created_at, s.id",
        cols(Bodies::Text)
    );
    c.query(&sql, &[&tenant, &thread, &limit]).await?.iter().map(message).collect()
}

/// What the insights worker concluded about a thread.
#[derive(Debug, Clone)]
pub struct InsightRow {
    pub summary: Option<String>,
    pub label: Option<String>,
    pub next_step: Option<String>,
    pub follow_up_at: Option<DateTime<Utc>>,
    pub decided_by: Option<DecidedBy>,
    pub model: Option<String>,
    pub source_message_id: Option<i64>,
    pub updated_at: DateTime<Utc>,
}

pub async fn thread_insight(c: &impl GenericClient, tenant: &str, thread: i64) -> Result<Option<InsightRow>, Error> {
    let row = c
        .query_opt(
            "SELECT summary, label, next_step, follow_up_at, decided_by, model, source_message_id, updated_at
               FROM et_thread_insights WHERE tenant_id = $1 AND thread_id = $2",
            &[&tenant, &thread],
        )
        .await?;
    row.map(|r| {
        Ok(InsightRow {
            summary: r.get(0),
            label: r.get(1),
            next_step: r.get(2),
            follow_up_at: r.get(3),
            decided_by: r.try_get(4)?,
            model: r.get(5),
            source_message_id: r.get(6),
            updated_at: r.get(7),
        })
    })
    .transpose()
}

/// `et_handoff` on a thread of `tenant`; `Ok(None)`: no such thread for this tenant.
pub async fn handoff(c: &impl GenericClient, tenant: &str, thread: i64, handling: Handling, actor: &str) -> Result<Option<String>, Error> {
    let row = c
        .query_opt(
            "SELECT et_handoff(t.id, $3, $4) FROM et_threads t WHERE t.tenant_id = $1 AND t.id = $2",
            &[&tenant, &thread, &handling, &actor],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
