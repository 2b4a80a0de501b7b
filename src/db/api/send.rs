//! The SQL of `POST /v1/messages`: pick the session, insert the message
//! idempotently (`ON CONFLICT` on the idempotency index) and its attachments.

use crate::domain::vocab::{Channel, Status};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};
use uuid::Uuid;

/// Which session to send on, as the caller named it.
#[derive(Debug, Clone)]
pub enum SessionChoice {
    Id(i64),
    /// The tenant's single active session of this channel.
    Channel(Channel),
}

/// The session picked for a send.
#[derive(Debug, Clone)]
pub struct SendSession {
    pub id: i64,
    pub channel: Channel,
    pub address: String,
}

/// Why no session could be picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoSession {
    /// No such session id for this tenant.
    UnknownId,
    /// No active session of that channel.
    NoneActive,
    /// Several active sessions of that channel.
    Ambiguous(i64),
}

pub async fn pick_session(c: &impl GenericClient, tenant: &str, choice: &SessionChoice) -> Result<Result<SendSession, NoSession>, Error> {
    const COLS: &str = "SELECT cs.id, cs.channel, cs.address, count(*) OVER () FROM et_channel_sessions cs";
    let rows = match choice {
        SessionChoice::Id(id) => c.query(&format!("{COLS} WHERE cs.tenant_id = $1 AND cs.id = $2"), &[&tenant, id]).await?,
        SessionChoice::Channel(ch) => {
            c.query(
                &format!("{COLS} WHERE cs.tenant_id = $1 AND cs.channel = $2 AND cs.status = 'active' ORDER BY cs.id LIMIT 1"),
                &[&tenant, ch],
            )
            .await?
        }
    };
    let Some(r) = rows.first() else {
        return Ok(Err(match choice {
            SessionChoice::Id(_) => NoSession::UnknownId,
            SessionChoice::Channel(_) => NoSession::NoneActive,
        }));
    };
    let n: i64 = r.get(3);
    if n > 1 {
        return Ok(Err(NoSession::Ambiguous(n)));
    }
    Ok(Ok(SendSession { id: r.get(0), channel: r.try_get(1)?, address: r.get(2) }))
}

/// An outbound message as the API writes it; the triggers validate and default the rest.
#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    pub tenant_id: String,
    pub session_id: i64,
    /// When the caller named a channel: the trigger checks it against the session.
    pub channel: Option<Channel>,
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub reply_to: Option<String>,
    pub subject: Option<String>,
    pub body_text: Option<String>,
    pub body_html: Option<String>,
    pub variables: Option<Value>,
    pub metadata: Option<Value>,
    pub priority: Option<i16>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub in_reply_to: Option<String>,
    pub idempotency_key: Option<String>,
}

/// The outcome of an insert: the row, and whether this call created it (false: a replay).
#[derive(Debug, Clone)]
pub struct Inserted {
    pub created: bool,
    pub id: i64,
    pub public_id: Uuid,
    pub status: Status,
    pub thread_id: i64,
    pub suppressed_recipients: Vec<String>,
}

const INSERTED_COLS: &str = "id, public_id, delivery_status, thread_id, suppressed_recipients";

fn inserted(r: &Row, created: bool) -> Result<Inserted, Error> {
    Ok(Inserted { created, id: r.get(0), public_id: r.get(1), status: r.try_get(2)?, thread_id: r.get(3), suppressed_recipients: r.get(4) })
}

/// Insert `m`; with an idempotency key, a row that already holds it (same tenant) is returned
/// instead (`created = false`). `ON CONFLICT` makes two concurrent identical requests safe: the
/// second waits for the first and then finds its row.
pub async fn insert_message(c: &impl GenericClient, m: &NewMessage) -> Result<Inserted, Error> {
    let sql = format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, channel, direction, sender, recipients, cc, bcc, reply_to,
                                  subject, body_text, body_html, variables, metadata, priority, scheduled_at, in_reply_to,
                                  idempotency_key)
         VALUES ($1, $2, $3, 'outbound', $4, $5, $6, $7, $8, $9, $10, $11, coalesce($12, '{{}}'::jsonb),
                 coalesce($13, '{{}}'::jsonb), coalesce($14, 2::smallint), $15, $16, $17)
         ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING {INSERTED_COLS}"
    );
    let params: [&(dyn ToSql + Sync); 17] = [
        &m.tenant_id,
        &m.session_id,
        &m.channel,
        &m.sender,
        &m.recipients,
        &m.cc,
        &m.bcc,
        &m.reply_to,
        &m.subject,
        &m.body_text,
        &m.body_html,
        &m.variables,
        &m.metadata,
        &m.priority,
        &m.scheduled_at,
        &m.in_reply_to,
        &m.idempotency_key,
    ];
    if let Some(r) = c.query_opt(&sql, &params).await? {
        return inserted(&r, true);
    }
    // A conflict: the key is taken (a new statement sees the row the other insert committed).
    let r = c
        .query_one(
            &format!("SELECT {INSERTED_COLS} FROM et_messages WHERE tenant_id = $1 AND idempotency_key = $2"),
            &[&m.tenant_id, &m.idempotency_key],
        )
        .await?;
    inserted(&r, false)
}

/// Add one attachment to a message inserted in this transaction (the trigger enforces limits).
pub async fn insert_attachment(
    c: &impl GenericClient,
    tenant: &str,
    message_id: i64,
    filename: &str,
    content_type: &str,
    content: &[u8],
) -> Result<(), Error> {
    c.execute(
        "INSERT INTO et_attachments (tenant_id, message_id, filename, content_type, content) VALUES ($1, $2, $3, $4, $5)",
        &[&tenant, &message_id, &filename, &content_type, &content],
    )
    .await?;
    Ok(())
}

/// A tenant send limit the request went over (`et_take_send_quota`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    /// `max_per_minute`, `max_per_hour` or `max_per_day`.
    pub limit: String,
    pub max: i32,
    /// Seconds until the limit's window ends.
    pub retry_after: i32,
}

/// Count `count` new messages against the tenant's send limits, in the caller's transaction;
/// the first limit now exceeded, if any (the caller rolls back).
pub async fn take_send_quota(c: &impl GenericClient, tenant: &str, count: i32) -> Result<Option<OverLimit>, Error> {
    let row = c.query_opt("SELECT limit_name, max_sends, retry_after_s FROM et_take_send_quota($1, $2)", &[&tenant, &count]).await?;
    Ok(row.map(|r| OverLimit { limit: r.get(0), max: r.get(1), retry_after: r.get(2) }))
}
