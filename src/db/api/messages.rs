//! Message reads (one, its events and attachments, a filtered page), all scoped by tenant;
//! `message_elsewhere` only answers yes / no for the security log.

use super::MessageRef;
use crate::domain::vocab::{Channel, Direction, Provider, Status};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};
use uuid::Uuid;

/// One message as the API shows it.
#[derive(Debug, Clone)]
pub struct MessageRow {
    pub id: i64,
    pub public_id: Uuid,
    pub direction: Direction,
    pub channel: Channel,
    pub channel_session_id: i64,
    pub status: Status,
    /// The provider of the session that sent it (its fallback, when the send went there), else
    /// of the session that will.
    pub provider: Option<Provider>,
    pub thread_id: i64,
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub reply_to: Option<String>,
    pub subject: Option<String>,
    pub priority: i16,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub error_class: Option<String>,
    pub external_message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub idempotency_key: Option<String>,
    pub metadata: Value,
    pub suppressed_recipients: Vec<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub approved_by: Option<String>,
    pub approved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The message this one is a corrected copy of, and the copy this one was resent as.
    pub resent_from: Option<i64>,
    pub resent_as: Option<i64>,
    /// Only when the query asked for bodies.
    pub body_text: Option<String>,
    pub body_html: Option<String>,
    /// What was sent where rendering changed it (NULL: sent as written); with both bodies only.
    pub rendered_subject: Option<String>,
    pub rendered_text: Option<String>,
    pub rendered_html: Option<String>,
}

const MESSAGE_COLS: &str = "m.id, m.public_id, m.direction, m.channel, m.channel_session_id, m.delivery_status, m.thread_id,
    m.sender, m.recipients, m.cc, m.bcc, m.reply_to, m.subject, m.priority::smallint AS priority, m.attempts, m.last_error, m.error_class,
    m.external_message_id, m.in_reply_to, m.idempotency_key, m.metadata, m.suppressed_recipients, m.scheduled_at,
    m.sent_at, m.approved_by, m.approved_at, m.created_at, m.updated_at, m.resent_from, m.resent_as,
    (SELECT cs.provider FROM et_channel_sessions cs
      WHERE cs.tenant_id = m.tenant_id
        AND cs.id = CASE WHEN m.metadata #>> '{delivery,via_fallback_session}' ~ '^[0-9]{1,18}$'
                         THEN (m.metadata #>> '{delivery,via_fallback_session}')::bigint
                         ELSE m.channel_session_id END) AS provider";

/// Which bodies a read returns.
#[derive(Debug, Clone, Copy)]
pub(super) enum Bodies {
    None,
    Text,
    Both,
}

pub(super) fn cols(bodies: Bodies) -> String {
    let extra = match bodies {
        Bodies::None => "NULL::text AS body_text, NULL::text AS body_html",
        Bodies::Text => "m.body_text, NULL::text AS body_html",
        Bodies::Both => "m.body_text, m.body_html, m.rendered_subject, m.rendered_text, m.rendered_html",
    };
    let extra = match bodies {
        Bodies::Both => extra.to_owned(),
        _ => format!("{extra}, NULL::text AS rendered_subject, NULL::text AS rendered_text, NULL::text AS rendered_html"),
    };
    format!("{MESSAGE_COLS}, {extra}")
}

/// One message row; an error (never a panic) if a value is not on its list.
pub(super) fn message(r: &Row) -> Result<MessageRow, Error> {
    Ok(MessageRow {
        id: r.get("id"),
        public_id: r.get("public_id"),
        direction: r.try_get("direction")?,
        channel: r.try_get("channel")?,
        channel_session_id: r.get("channel_session_id"),
        status: r.try_get("delivery_status")?,
        provider: r.try_get("provider")?,
        thread_id: r.get("thread_id"),
        sender: r.get("sender"),
        recipients: r.get("recipients"),
        cc: r.get("cc"),
        bcc: r.get("bcc"),
        reply_to: r.get("reply_to"),
        subject: r.get("subject"),
        priority: r.get("priority"),
        attempts: r.get("attempts"),
        last_error: r.get("last_error"),
        error_class: r.get("error_class"),
        external_message_id: r.get("external_message_id"),
        in_reply_to: r.get("in_reply_to"),
        idempotency_key: r.get("idempotency_key"),
        metadata: r.get("metadata"),
        suppressed_recipients: r.get("suppressed_recipients"),
        scheduled_at: r.get("scheduled_at"),
        sent_at: r.get("sent_at"),
        approved_by: r.get("approved_by"),
        approved_at: r.get("approved_at"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
        resent_from: r.get("resent_from"),
        resent_as: r.get("resent_as"),
        body_text: r.get("body_text"),
        body_html: r.get("body_html"),
        rendered_subject: r.get("rendered_subject"),
        rendered_text: r.get("rendered_text"),
        rendered_html: r.get("rendered_html"),
    })
}

/// A message of `tenant`, with its bodies.
pub async fn find_message(c: &impl GenericClient, tenant: &str, m: MessageRef) -> Result<Option<MessageRow>, Error> {
    let row = match m {
        MessageRef::Id(id) => {
            c.query_opt(&format!("SELECT {} FROM et_messages m WHERE m.tenant_id = $1 AND m.id = $2", cols(Bodies::Both)), &[&tenant, &id])
                .await?
        }
        MessageRef::Public(p) => {
            c.query_opt(
                &format!("SELECT {} FROM et_messages m WHERE m.tenant_id = $1 AND m.public_id = $2", cols(Bodies::Both)),
                &[&tenant, &p],
            )
            .await?
        }
    };
    row.as_ref().map(message).transpose()
}

/// The bigint id of a message of `tenant`.
pub async fn message_id(c: &impl GenericClient, tenant: &str, m: MessageRef) -> Result<Option<i64>, Error> {
    let row = match m {
        MessageRef::Id(id) => c.query_opt("SELECT id FROM et_messages WHERE tenant_id = $1 AND id = $2", &[&tenant, &id]).await?,
        MessageRef::Public(p) => c.query_opt("SELECT id FROM et_messages WHERE tenant_id = $1 AND public_id = $2", &[&tenant, &p]).await?,
    };
    Ok(row.map(|r| r.get(0)))
}

/// Whether a message with this reference exists for a tenant other than `tenant` (to log a
/// denied attempt; never shown to the caller).
pub async fn message_elsewhere(c: &impl GenericClient, tenant: &str, m: MessageRef) -> Result<bool, Error> {
    let row = match m {
        MessageRef::Id(id) => {
            c.query_one("SELECT EXISTS (SELECT 1 FROM et_messages WHERE id = $2 AND tenant_id <> $1)", &[&tenant, &id]).await?
        }
        // per tenant, so the (tenant_id, public_id) index answers it
        MessageRef::Public(p) => {
            c.query_one(
                "SELECT EXISTS (SELECT 1 FROM et_tenants t WHERE t.id <> $1
                                   AND EXISTS (SELECT 1 FROM et_messages m WHERE m.tenant_id = t.id AND m.public_id = $2))",
                &[&tenant, &p],
            )
            .await?
        }
    };
    Ok(row.get(0))
}

/// One audit event of a message.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub from_status: Option<String>,
    pub to_status: String,
    pub actor: String,
    pub detail: Value,
    pub at: DateTime<Utc>,
}

pub async fn events(c: &impl GenericClient, tenant: &str, message_id: i64) -> Result<Vec<EventRow>, Error> {
    let rows = c
        .query(
            "SELECT from_status, to_status, actor, detail, created_at FROM et_message_events
              WHERE tenant_id = $1 AND message_id = $2 ORDER BY id",
            &[&tenant, &message_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| EventRow { from_status: r.get(0), to_status: r.get(1), actor: r.get(2), detail: r.get(3), at: r.get(4) })
        .collect())
}

/// An attachment's metadata (not its content).
#[derive(Debug, Clone)]
pub struct AttachmentRow {
    pub id: i64,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i32,
    /// When the content was dropped after the retention period (`None`: it is stored).
    pub content_dropped_at: Option<DateTime<Utc>>,
}

pub async fn attachments(c: &impl GenericClient, tenant: &str, message_id: i64) -> Result<Vec<AttachmentRow>, Error> {
    let rows = c
        .query(
            "SELECT id, filename, content_type, size_bytes, content_dropped_at FROM et_attachments
              WHERE tenant_id = $1 AND message_id = $2 ORDER BY id",
            &[&tenant, &message_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AttachmentRow {
            id: r.get(0),
            filename: r.get(1),
            content_type: r.get(2),
            size_bytes: r.get(3),
            content_dropped_at: r.get(4),
        })
        .collect())
}

/// One attachment's file name and content (`None` once dropped after the retention period), of
/// a message of `tenant`.
pub async fn attachment_content(
    c: &impl GenericClient,
    tenant: &str,
    message_id: i64,
    attachment_id: i64,
) -> Result<Option<(String, Option<Vec<u8>>)>, Error> {
    let row = c
        .query_opt(
            "SELECT filename, content FROM et_attachments WHERE tenant_id = $1 AND message_id = $2 AND id = $3",
            &[&tenant, &message_id, &attachment_id],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Filters of `GET /v1/messages` (already validated).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Any of these statuses (empty: any).
    pub statuses: Vec<Status>,
    pub direction: Option<Direction>,
    pub thread_id: Option<i64>,
    pub channel: Option<Channel>,
    /// A recipient in `to`, compared as contacts (`et_contacts_of`: case, display names, phone
    /// number formatting).
    pub recipient: Option<String>,
    /// created_at >= from.
    pub from: Option<DateTime<Utc>>,
    /// created_at < until (exclusive).
    pub until: Option<DateTime<Utc>>,
    /// metadata.category equals this.
    pub category: Option<String>,
    /// metadata.tags holds every one of these.
    pub tags: Vec<String>,
    /// Sent from this channel session.
    pub session: Option<i64>,
    /// The sender contains this, ignoring case.
    pub sender: Option<String>,
    /// The subject contains this, ignoring case.
    pub subject: Option<String>,
    /// Keyset: rows strictly after this (created_at, id) in (created_at desc, id desc) order.
    pub after: Option<(DateTime<Utc>, i64)>,
    pub offset: i64,
    pub limit: i64,
}

/// `%text%` for ILIKE, with the pattern characters in `text` taken literally.
fn like_pattern(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

/// A page of messages, newest first: a backward walk of et_messages_tenant_created (tenant,
/// created_at, id) from the cursor or the range's end, the other filters checked on the way.
pub async fn list_messages(c: &impl GenericClient, tenant: &str, f: &ListFilter) -> Result<Vec<MessageRow>, Error> {
    fn push<'a>(params: &mut Vec<&'a (dyn ToSql + Sync)>, p: &'a (dyn ToSql + Sync)) -> usize {
        params.push(p);
        params.len()
    }
    let statuses: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
    let tags = serde_json::Value::from(f.tags.clone());
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&tenant];
    let mut conds = vec!["m.tenant_id = $1".to_owned()];
    if !statuses.is_empty() {
        conds.push(format!("m.delivery_status = ANY (${}::text[])", push(&mut params, &statuses)));
    }
    if let Some(d) = &f.direction {
        conds.push(format!("m.direction = ${}", push(&mut params, d)));
    }
    if let Some(t) = &f.thread_id {
        conds.push(format!("m.thread_id = ${}", push(&mut params, t)));
    }
    if let Some(ch) = &f.channel {
        conds.push(format!("m.channel = ${}", push(&mut params, ch)));
    }
    if let Some(to) = &f.recipient {
        let n = push(&mut params, to);
        conds.push(format!(
            "EXISTS (SELECT 1 FROM unnest(m.recipients) r
                      WHERE et_contact_of_normalized(m.channel, r) = ANY ((SELECT et_contacts_of(${n}::text))::text[]))"
        ));
    }
    if let Some(from) = &f.from {
        conds.push(format!("m.created_at >= ${}", push(&mut params, from)));
    }
    if let Some(until) = &f.until {
        conds.push(format!("m.created_at < ${}", push(&mut params, until)));
    }
    if let Some(cat) = &f.category {
        conds.push(format!("m.metadata ->> 'category' = ${}::text", push(&mut params, cat)));
    }
    if !f.tags.is_empty() {
        conds.push(format!("m.metadata -> 'tags' @> ${}::jsonb", push(&mut params, &tags)));
    }
    if let Some(session) = &f.session {
        conds.push(format!("m.channel_session_id = ${}", push(&mut params, session)));
    }
    let sender = f.sender.as_deref().map(like_pattern);
    if let Some(sender) = &sender {
        conds.push(format!("m.sender ILIKE ${}", push(&mut params, sender)));
    }
    let subject = f.subject.as_deref().map(like_pattern);
    if let Some(subject) = &subject {
        conds.push(format!("m.subject ILIKE ${}", push(&mut params, subject)));
    }
    if let Some((at, id)) = &f.after {
        let (a, b) = (push(&mut params, at), push(&mut params, id));
        conds.push(format!("(m.created_at, m.id) < (${a}, ${b})"));
    }
    let l = push(&mut params, &f.limit);
    let o = push(&mut params, &f.offset);
    let sql = format!(
        "SELECT {} FROM et_messages m WHERE {} ORDER BY m.created_at DESC, m.id DESC LIMIT ${l} OFFSET ${o}",
        cols(Bodies::None),
        conds.join(" AND ")
    );
    let rows = c.query(&sql, &params).await?;
    rows.iter().map(message).collect()
}
