//! What the API answers: messages, their events and attachments, threads and insights, and the
//! error body, as camelCase JSON with OpenAPI schemas.

use crate::db::api::{AttachmentRow, EventRow, InsightRow, MessageRow, ThreadRow};
use crate::domain::vocab::{Channel, DecidedBy, Direction, Handling, Provider, Status, ThreadState};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// The JSON body of every refused request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `invalid_field`, `bad_request`, `unauthorized`, `forbidden`,
    /// `not_found`, `method_not_allowed`, `conflict`, `payload_too_large`,
    /// `unsupported_media_type`, `header_too_large`, `unavailable`, `not_configured`, `internal`.
    pub code: String,
    pub message: String,
    /// The request field at fault (`to`, `attachments[0].contentBase64`, a query parameter).
    pub field: Option<String>,
}

/// The answer to `POST /v1/messages`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendResponse {
    /// The public id (use it in `GET /v1/messages/{id}`).
    pub message_id: Uuid,
    /// The internal bigint id (also accepted wherever `{id}` is).
    pub id: i64,
    /// `queued`, `pending_approval` or `suppressed` when new; the current status on a replay.
    pub status: Status,
    pub thread_id: i64,
    /// Recipients dropped because they are on the tenant's suppression list.
    pub suppressed_recipients: Vec<String>,
}

/// One message.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub message_id: Uuid,
    pub id: i64,
    pub direction: Direction,
    pub channel: Channel,
    pub channel_session_id: i64,
    /// The delivery status (outbound or inbound lifecycle).
    pub status: Status,
    /// The provider of the session that sent it (its fallback session's, when the send went
    /// there), or of the session that will.
    pub provider: Option<Provider>,
    pub thread_id: i64,
    pub from: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub reply_to: Option<String>,
    pub subject: Option<String>,
    /// 1 (high) to 4; 2 is normal.
    #[schema(minimum = 1, maximum = 4)]
    pub priority: i16,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub error_class: Option<String>,
    /// The provider's id, or the RFC 5322 Message-ID of an email.
    pub external_message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub idempotency_key: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub suppressed_recipients: Vec<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub approved_by: Option<String>,
    pub approved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The id of the message this one is a corrected copy of (`POST /v1/messages/{id}/resend`).
    pub resent_from: Option<i64>,
    /// The id of the corrected copy this message was resent as.
    pub resent_as: Option<i64>,
    /// In single-message and thread reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_body: Option<String>,
    /// In single-message reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html_body: Option<String>,
    /// What was sent, where rendering the variables changed the content (single-message reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendered: Option<RenderedView>,
    /// In single-message reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<AttachmentView>>,
    /// The audit trail, oldest first (single-message reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventView>>,
}

/// The content as sent, field by field: null where it was sent as written (no variables, or
/// rendering left it unchanged), so `coalesce(rendered, written)` is what went out.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenderedView {
    pub subject: Option<String>,
    /// Also set when the text was derived from the HTML body.
    pub text_body: Option<String>,
    pub html_body: Option<String>,
}

impl MessageView {
    /// The single-message read: with the rendered content (`m` read with both bodies).
    pub fn detailed(mut m: MessageRow) -> Self {
        let rendered =
            RenderedView { subject: m.rendered_subject.take(), text_body: m.rendered_text.take(), html_body: m.rendered_html.take() };
        MessageView { rendered: Some(rendered), ..MessageView::from(m) }
    }
}

impl From<MessageRow> for MessageView {
    fn from(m: MessageRow) -> Self {
        MessageView {
            message_id: m.public_id,
            id: m.id,
            direction: m.direction,
            channel: m.channel,
            channel_session_id: m.channel_session_id,
            status: m.status,
            provider: m.provider,
            thread_id: m.thread_id,
            from: m.sender,
            to: m.recipients,
            cc: m.cc,
            bcc: m.bcc,
            reply_to: m.reply_to,
            subject: m.subject,
            priority: m.priority,
            attempts: m.attempts,
            last_error: m.last_error,
            error_class: m.error_class,
            external_message_id: m.external_message_id,
            in_reply_to: m.in_reply_to,
            idempotency_key: m.idempotency_key,
            metadata: m.metadata,
            suppressed_recipients: m.suppressed_recipients,
            scheduled_at: m.scheduled_at,
            sent_at: m.sent_at,
            approved_by: m.approved_by,
            approved_at: m.approved_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
            resent_from: m.resent_from,
            resent_as: m.resent_as,
            text_body: m.body_text,
            html_body: m.body_html,
            rendered: None,
            attachments: None,
            events: None,
        }
    }
}

/// One status change of a message.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// The status entered.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status left (null for the first event).
    pub from: Option<String>,
    /// Who did it: a daemon worker, `apikey:<prefix>`, a database user.
    pub actor: String,
    #[schema(value_type = Object)]
    pub detail: Value,
    pub timestamp: DateTime<Utc>,
}

impl From<EventRow> for EventView {
    fn from(e: EventRow) -> Self {
        EventView { kind: e.to_status, from: e.from_status, actor: e.actor, detail: e.detail, timestamp: e.at }
    }
}

/// An attachment's metadata. Its content is kept for the tenant's retention period after the
/// message is final (`attachment_retention_days`, default 30), then dropped: the metadata stays
/// and `contentDropped` says so.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentView {
    pub id: i64,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i32,
    /// The content was dropped after the retention period (the message cannot be retried or resent).
    pub content_dropped: bool,
    /// When it was dropped; null while the content is stored.
    pub content_dropped_at: Option<DateTime<Utc>>,
}

impl From<AttachmentRow> for AttachmentView {
    fn from(a: AttachmentRow) -> Self {
        AttachmentView {
            id: a.id,
            filename: a.filename,
            content_type: a.content_type,
            size_bytes: a.size_bytes,
            content_dropped: a.content_dropped_at.is_some(),
            content_dropped_at: a.content_dropped_at,
        }
    }
}

/// A page of `GET /v1/messages`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    pub messages: Vec<MessageView>,
    /// Pass as `cursor` for the next page (the same filters apply); null on the last page.
    pub next_cursor: Option<String>,
}

/// The answer to a bulk retry.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkRetryResponse {
    /// How many failed messages were queued again.
    pub queued: i32,
    /// True when `queued` reached the request's `limit`: more may match; send it again.
    pub limit_reached: bool,
}

/// A conversation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadView {
    pub id: i64,
    pub channel_session_id: i64,
    pub channel: Channel,
    /// The peer: email address, E.164 number or chat id.
    pub contact: String,
    pub subject: Option<String>,
    pub external_thread_key: Option<String>,
    /// `ai` (may be auto-answered) or `human`.
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

impl From<ThreadRow> for ThreadView {
    fn from(t: ThreadRow) -> Self {
        ThreadView {
            id: t.id,
            channel_session_id: t.channel_session_id,
            channel: t.channel,
            contact: t.contact,
            subject: t.subject,
            external_thread_key: t.external_thread_key,
            handling: t.handling,
            handling_by: t.handling_by,
            handling_at: t.handling_at,
            state: t.state,
            message_count: t.message_count,
            inbound_count: t.inbound_count,
            outbound_count: t.outbound_count,
            last_inbound_at: t.last_inbound_at,
            last_outbound_at: t.last_outbound_at,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// What the insights worker concluded about a thread.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsightView {
    pub summary: Option<String>,
    pub label: Option<String>,
    pub next_step: Option<String>,
    pub follow_up_at: Option<DateTime<Utc>>,
    pub decided_by: Option<DecidedBy>,
    pub model: Option<String>,
    pub source_message_id: Option<i64>,
    pub updated_at: DateTime<Utc>,
}

impl From<InsightRow> for InsightView {
    fn from(i: InsightRow) -> Self {
        InsightView {
            summary: i.summary,
            label: i.label,
            next_step: i.next_step,
            follow_up_at: i.follow_up_at,
            decided_by: i.decided_by,
            model: i.model,
            source_message_id: i.source_message_id,
            updated_at: i.updated_at,
        }
    }
}

/// `GET /v1/threads/{id}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadDetail {
    pub thread: ThreadView,
    /// The newest 100 messages, oldest first.
    pub messages: Vec<MessageView>,
    /// Null until the insights worker has looked at the thread.
    pub insight: Option<InsightView>,
}
