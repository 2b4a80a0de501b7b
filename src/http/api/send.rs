//! `POST /v1/messages`: validate what the database cannot (base64, idempotency key agreement,
//! priority and time formats), then insert the message and its attachments in one
//! transaction and let the triggers validate, thread, suppress, gate and queue it.

use super::input::{self, JsonBody, MESSAGE_FIELDS};
use super::limits;
use super::views::{ErrorBody, SendResponse};
use crate::db::api::{self as db, NewMessage, NoSession, SessionChoice};
use crate::db::apikeys::Scope;
use crate::domain::vocab::{Channel, Status};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::responses::{Authenticated, JsonBodyErrors, TooManyRequests};
use crate::http::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// One address, or several.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Addresses {
    One(String),
    Many(Vec<String>),
}

impl Addresses {
    fn into_vec(self) -> Vec<String> {
        match self {
            Addresses::One(a) => vec![a],
            Addresses::Many(v) => v,
        }
    }
}

/// `"a@b.c"`, `"Name <a@b.c>"` or `{"email": "a@b.c", "name": "Name"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Address {
    Plain(String),
    Named(NamedAddress),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedAddress {
    pub email: String,
    pub name: Option<String>,
}

impl Address {
    fn into_string(self) -> String {
        match self {
            Address::Plain(a) => a,
            Address::Named(NamedAddress { email, name: Some(name) }) if !name.trim().is_empty() => {
                format!("{} <{}>", name.trim(), email.trim())
            }
            Address::Named(NamedAddress { email, .. }) => email,
        }
    }
}

/// `"high"`, `"normal"`, `"low"`, or 1 (highest) to 4 (its schema: `limits`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Priority {
    Named(String),
    Level(i64),
}

/// The priority names and their levels (4 is the lowest level, without a name).
pub const PRIORITY_NAMES: [(&str, i64); 3] = [("high", 1), ("normal", 2), ("low", 3)];

/// A file to send with the message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttachmentIn {
    /// 1 to 255 characters, no slashes.
    #[schema(min_length = 1, max_length = 255)]
    pub filename: String,
    /// A MIME type; `application/octet-stream` when absent.
    pub content_type: Option<String>,
    /// The file, base64-encoded (also accepted as `content`).
    #[serde(alias = "content")]
    pub content_base64: String,
}

/// A message to send. Either `channelSessionId` or `channel` picks the session (default: the
/// tenant's single active email session).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendRequest {
    /// Recipients (at least one): email addresses, E.164 numbers or chat ids.
    #[schema(schema_with = limits::to, required = true)]
    pub to: Option<Addresses>,
    #[schema(schema_with = limits::cc)]
    pub cc: Option<Addresses>,
    #[schema(schema_with = limits::bcc)]
    pub bcc: Option<Addresses>,
    /// Defaults to the session's address. Otherwise the session's address, or (email) an address
    /// at one of the tenant's `allowed_sender_domains` or a subdomain of it (the session's domain
    /// when the tenant lists none): the insert trigger's rule, `et_sender_refusal`.
    pub from: Option<Address>,
    pub reply_to: Option<Address>,
    #[schema(schema_with = limits::subject)]
    pub subject: Option<String>,
    /// Email only.
    #[schema(schema_with = limits::body)]
    pub html_body: Option<String>,
    /// Derived from `htmlBody` when absent (email).
    #[schema(schema_with = limits::body)]
    pub text_body: Option<String>,
    /// Handlebars variables rendered into subject and bodies at send time.
    #[schema(value_type = Option<Object>)]
    pub variables: Option<Map<String, Value>>,
    pub attachments: Option<Vec<AttachmentIn>>,
    #[schema(schema_with = limits::metadata)]
    pub metadata: Option<Map<String, Value>>,
    pub priority: Option<Priority>,
    /// RFC 3339; not sent before then.
    #[schema(format = DateTime)]
    pub scheduled_at: Option<String>,
    pub channel_session_id: Option<i64>,
    pub channel: Option<Channel>,
    /// The Message-ID (email) or provider id this message answers (at most 985 octets).
    #[schema(max_length = 985)]
    pub in_reply_to: Option<String>,
    /// Same as the `Idempotency-Key` header (both may be given only if equal).
    #[schema(min_length = 1, max_length = 255)]
    pub idempotency_key: Option<String>,
}

const HINTS: &[(&str, &str)] = &[
    ("to", "must be an address or an array of addresses"),
    ("cc", "must be an address or an array of addresses"),
    ("bcc", "must be an address or an array of addresses"),
    ("from", "must be an address or an object {\"email\", \"name\"}"),
    ("replyTo", "must be an address or an object {\"email\", \"name\"}"),
    ("priority", "must be high, normal or low, or a number from 1 to 4"),
];

/// Base64 with or without padding, line breaks ignored.
const BASE64: GeneralPurpose =
    GeneralPurpose::new(&base64::alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));

fn parse_request(body: Map<String, Value>) -> Result<SendRequest, ApiError> {
    // (kept for naming the attachment at fault, not the whole array)
    let attachments = body.get("attachments").cloned();
    input::json::<SendRequest>(body, HINTS).map_err(|e| {
        if e.field.as_deref() == Some("attachments") {
            if let Some(Value::Array(items)) = &attachments {
                for (i, item) in items.iter().enumerate() {
                    if let Err(inner) = input::element::<AttachmentIn>("attachments", i, item) {
                        return inner;
                    }
                }
            }
        }
        e
    })
}

fn priority(p: Option<Priority>) -> Result<Option<i16>, ApiError> {
    let level = match p {
        None => return Ok(None),
        Some(Priority::Named(n)) => {
            let n = n.trim().to_ascii_lowercase();
            PRIORITY_NAMES.iter().find(|(name, _)| *name == n).map_or(0, |(_, level)| *level)
        }
        Some(Priority::Level(l)) => l,
    };
    if !(1..=4).contains(&level) {
        return Err(ApiError::field("priority", "must be high, normal or low, or a number from 1 to 4"));
    }
    Ok(Some(level as i16))
}

/// The key from the header and / or the body; both present must agree.
fn idempotency_key(headers: &HeaderMap, body: Option<String>) -> Result<Option<String>, ApiError> {
    let header = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            Some(v.to_str().map_err(|_| ApiError::field("idempotencyKey", "the Idempotency-Key header must be visible ASCII"))?.to_owned())
        }
    };
    let key = match (header, body) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::field(
                "idempotencyKey",
                "the Idempotency-Key header and the idempotencyKey field differ; send one, or both equal",
            ))
        }
        (h, b) => h.or(b),
    };
    if let Some(k) = &key {
        if k.trim().is_empty() || k.chars().count() > 255 {
            return Err(ApiError::field("idempotencyKey", "must be 1 to 255 characters"));
        }
    }
    Ok(key)
}

/// The trace id a caller passes along: `X-Trace-Id` as it is, else the trace-id of a W3C
/// `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`). Kept as `metadata.trace_id` unless the body's
/// metadata names one.
fn trace_id(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    if let Some(v) = headers.get("x-trace-id") {
        let id = v.to_str().ok().map(str::trim).filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()));
        return match id {
            Some(id) => Ok(Some(id.to_owned())),
            None => Err(ApiError::field("X-Trace-Id", "must be 1 to 128 visible ASCII characters")),
        };
    }
    let Some(v) = headers.get("traceparent") else { return Ok(None) };
    let parts: Vec<&str> = v.to_str().unwrap_or_default().trim().split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match parts.as_slice() {
        [version, trace, parent, flags, ..]
            if hex(version, 2)
                && *version != "ff"
                && hex(trace, 32)
                && hex(parent, 16)
                && hex(flags, 2)
                && trace.bytes().any(|b| b != b'0') =>
        {
            Ok(Some((*trace).to_owned()))
        }
        _ => Err(ApiError::field(
            "traceparent",
            "must be a W3C traceparent: 00-<32 lowercase hex trace id>-<16 hex parent id>-<2 hex flags>",
        )),
    }
}

/// 429 for a tenant send limit, counted per tenant and limit.
fn over_limit(tenant: &str, over: db::OverLimit) -> ApiError {
    metrics::counter!("pgcourier_send_limit_refusals_total", "tenant" => tenant.to_owned(), "limit" => over.limit.clone()).increment(1);
    let message = format!(
        "{}: this tenant may send {} messages per {}; retry in {} s",
        over.limit,
        over.max,
        over.limit.trim_start_matches("max_per_"),
        over.retry_after
    );
    ApiError::too_many(&over.limit, message, over.retry_after.max(1) as u64)
}

/// The attachments' content decoded, each with its filename and MIME type (the type defaults to
/// `application/octet-stream`); a bad one is named by its index.
fn decode_attachments(attachments: Option<Vec<AttachmentIn>>) -> Result<Vec<(String, String, Vec<u8>)>, ApiError> {
    let mut files = Vec::new();
    for (i, a) in attachments.into_iter().flatten().enumerate() {
        let cleaned: String = a.content_base64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let content = BASE64
            .decode(cleaned.as_bytes())
            .map_err(|e| ApiError::field(format!("attachments[{i}].contentBase64"), format!("is not valid base64 ({e})")))?;
        let content_type = a.content_type.unwrap_or_else(|| "application/octet-stream".to_owned());
        files.push((a.filename, content_type, content));
    }
    Ok(files)
}

/// Which session the request names: its id, else its channel's single active session, else the
/// tenant's single active email session.
fn session_choice(req: &SendRequest) -> SessionChoice {
    match (req.channel_session_id, req.channel) {
        (Some(id), _) => SessionChoice::Id(id),
        (None, Some(ch)) => SessionChoice::Channel(ch),
        (None, None) => SessionChoice::Channel(Channel::Email),
    }
}

/// Why no session carries the request, as a 400 naming the field the caller should change.
fn no_session(req: &SendRequest, why: NoSession) -> ApiError {
    let ch = req.channel.unwrap_or(Channel::Email);
    let field = if req.channel.is_some() { "channel" } else { "channelSessionId" };
    match why {
        NoSession::UnknownId => ApiError::field(
            "channelSessionId",
            format!("no channel session {} for this tenant", req.channel_session_id.unwrap_or_default()),
        ),
        NoSession::NoneActive => ApiError::field(field, format!("this tenant has no active {ch} session; name one with channelSessionId")),
        NoSession::Ambiguous(n) => {
            ApiError::field(field, format!("this tenant has {n} active {ch} sessions; name one with channelSessionId"))
        }
    }
}

/// The row to insert. The sender rule (the session address, or an allowed sender domain) is the
/// insert trigger's (`et_sender_refusal`): a refused `from` comes back as a 400 naming `from`.
fn new_message(
    req: SendRequest,
    tenant_id: String,
    session_id: i64,
    idempotency_key: Option<String>,
    priority: Option<i16>,
    scheduled_at: Option<chrono::DateTime<chrono::Utc>>,
) -> NewMessage {
    NewMessage {
        tenant_id,
        session_id,
        channel: req.channel,
        sender: req.from.map(Address::into_string),
        recipients: req.to.map(Addresses::into_vec).unwrap_or_default(),
        cc: req.cc.map(Addresses::into_vec).unwrap_or_default(),
        bcc: req.bcc.map(Addresses::into_vec).unwrap_or_default(),
        reply_to: req.reply_to.map(Address::into_string),
        subject: req.subject,
        body_text: req.text_body,
        body_html: req.html_body,
        variables: req.variables.map(Value::Object),
        metadata: req.metadata.map(Value::Object),
        priority,
        scheduled_at,
        in_reply_to: req.in_reply_to,
        idempotency_key,
    }
}

/// Send a message: 201 when created, 200 with the original on an idempotent replay.
#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "messages",
    request_body = SendRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key returns the original message")),
    responses(
        (status = 201, description = "Created", body = SendResponse),
        (status = 200, description = "Replay of an idempotency key: the original message", body = SendResponse),
        (status = 409, description = "Another request with this idempotency key is being written; retry", body = ErrorBody),
        Authenticated, JsonBodyErrors, TooManyRequests,
    ),
    security(("api_key" = []))
)]
pub async fn send_message(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<(StatusCode, Json<SendResponse>), ApiError> {
    caller.require(&state, Scope::Send).await?;
    let mut req = parse_request(body?.0)?;
    let key = idempotency_key(&headers, req.idempotency_key.take())?;
    let priority = priority(req.priority.take())?;
    let scheduled_at = req.scheduled_at.as_deref().map(|s| input::timestamp("scheduledAt", s, false)).transpose()?;
    let files = decode_attachments(req.attachments.take())?;
    if let Some(id) = trace_id(&headers)? {
        req.metadata.get_or_insert_with(Map::new).entry("trace_id").or_insert(Value::String(id));
    }
    let tenant = caller.0.tenant_id.clone();

    let mut client = state.pool.get().await?;
    let tx = client.transaction().await.map_err(ApiError::internal)?;
    crate::db::audit::set_actor(&tx, &format!("apikey:{}", caller.0.prefix)).await.map_err(ApiError::internal)?;
    let session = db::pick_session(&tx, &tenant, &session_choice(&req)).await.map_err(ApiError::internal)?;
    if let (Err(NoSession::UnknownId), Some(id)) = (&session, req.channel_session_id) {
        // another tenant's session is a cross-tenant attempt: logged, answered like an unknown one
        caller.foreign_session(&state, id).await;
    }
    let session_id = session.map_err(|why| no_session(&req, why))?.id;
    let new = new_message(req, tenant.clone(), session_id, key, priority, scheduled_at);
    let ins = db::insert_message(&tx, &new).await.map_err(|e| input::db_error(e, MESSAGE_FIELDS))?;
    // a replay of an idempotency key is not a new send: it neither counts nor is refused
    if ins.created {
        if let Some(over) = db::take_send_quota(&tx, &tenant, 1).await.map_err(ApiError::internal)? {
            return Err(over_limit(&tenant, over)); // the transaction rolls back: nothing written, nothing counted
        }
    }
    // a fully suppressed message is kept for the record but never sent: no content to attach
    if ins.created && ins.status != Status::Suppressed {
        for (i, (filename, content_type, content)) in files.iter().enumerate() {
            db::insert_attachment(&tx, &tenant, ins.id, filename, content_type, content)
                .await
                .map_err(|e| input::attachment_error(e, i))?;
        }
    }
    tx.commit().await.map_err(|e| input::db_error(e, MESSAGE_FIELDS))?;
    let status = if ins.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        Json(SendResponse {
            message_id: ins.public_id,
            id: ins.id,
            status: ins.status,
            thread_id: ins.thread_id,
            suppressed_recipients: ins.suppressed_recipients,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_named_or_numbered() {
        assert_eq!(priority(Some(Priority::Named("High".into()))).unwrap(), Some(1));
        assert_eq!(priority(Some(Priority::Level(4))).unwrap(), Some(4));
        assert!(priority(Some(Priority::Level(5))).is_err());
        assert!(priority(Some(Priority::Named("urgent".into()))).is_err());
    }
}
