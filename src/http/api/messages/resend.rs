//! `POST /v1/messages/{id}/resend`: a corrected copy of a message that did not go out (failed,
//! rejected, cancelled or suppressed), through `et_resend`: the copy is inserted like any new
//! message (every check of the insert trigger applies) and linked both ways
//! (`resentFrom` / `resentAs`).

use super::super::input::{self, JsonBody, MESSAGE_FIELDS};
use super::super::send::{Address, Addresses, Priority};
use super::super::views::{ErrorBody, MessageView};
use super::{detailed, resolve};
use crate::db::api as db;
use crate::db::apikeys::Scope;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// What to change in the copy; every field left out is copied from the original (content,
/// variables, metadata, attachments, session, in-reply-to), and `null` clears an optional one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct ResendRequest {
    to: Option<Addresses>,
    cc: Option<Addresses>,
    bcc: Option<Addresses>,
    /// The session's address when null.
    from: Option<Address>,
    reply_to: Option<Address>,
    subject: Option<String>,
    text_body: Option<String>,
    html_body: Option<String>,
    /// Replaces the original's variables.
    #[schema(value_type = Option<Object>)]
    variables: Option<Map<String, Value>>,
    /// Replaces the original's metadata.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
    priority: Option<Priority>,
    /// RFC 3339; the original's is kept only while it is still ahead.
    #[schema(format = DateTime)]
    scheduled_at: Option<String>,
    /// An idempotency key for the copy (the original's is not copied: it is the original's).
    idempotency_key: Option<String>,
}

const HINTS: &[(&str, &str)] = &[
    ("to", "must be an address or an array of addresses"),
    ("cc", "must be an address or an array of addresses"),
    ("bcc", "must be an address or an array of addresses"),
    ("from", "must be an address or an object {\"email\", \"name\"}"),
    ("replyTo", "must be an address or an object {\"email\", \"name\"}"),
    ("priority", "must be high, normal or low, or a number from 1 to 4"),
];

/// `"a@b.c"` or `{"email", "name"}` as the one string the column holds.
fn address(v: Value) -> Value {
    match v {
        Value::Object(o) => {
            let email = o.get("email").and_then(Value::as_str).unwrap_or("").trim().to_owned();
            match o.get("name").and_then(Value::as_str).map(str::trim).filter(|n| !n.is_empty()) {
                Some(name) => Value::String(format!("{name} <{email}>")),
                None => Value::String(email),
            }
        }
        other => other,
    }
}

/// The request (already checked against [`ResendRequest`]) as `et_resend`'s changes: keyed by
/// column, values as the columns take them.
fn changes(body: Map<String, Value>) -> Result<Value, ApiError> {
    let mut out = Map::new();
    for (k, v) in body {
        let (column, value) = match k.as_str() {
            "to" => ("recipients", v),
            "cc" | "bcc" => (if k == "cc" { "cc" } else { "bcc" }, v),
            "from" => ("sender", address(v)),
            "replyTo" => ("reply_to", address(v)),
            "subject" => ("subject", v),
            "textBody" => ("body_text", v),
            "htmlBody" => ("body_html", v),
            "variables" => ("variables", v),
            "metadata" => ("metadata", v),
            "idempotencyKey" => ("idempotency_key", v),
            "priority" => {
                let level = match &v {
                    Value::Null => 2,
                    Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                        "high" => 1,
                        "normal" => 2,
                        "low" => 3,
                        _ => return Err(ApiError::field("priority", HINTS[5].1)),
                    },
                    n => n.as_i64().filter(|l| (1..=4).contains(l)).ok_or_else(|| ApiError::field("priority", HINTS[5].1))?,
                };
                ("priority", json!(level))
            }
            "scheduledAt" => match v {
                Value::String(s) => ("scheduled_at", json!(input::timestamp("scheduledAt", &s, false)?.to_rfc3339())),
                other => ("scheduled_at", other),
            },
            _ => return Err(ApiError::field(k.as_str(), "unknown field")),
        };
        out.insert(column.to_owned(), value);
    }
    Ok(Value::Object(out))
}

/// A refusal of `et_resend` itself (the message's state, a second resend) is 409; a refusal of
/// the corrected copy by the insert trigger is 400 naming the request field; of a copied
/// attachment (the tenant's limits changed since), 400 naming `attachments`.
fn refused(e: tokio_postgres::Error) -> ApiError {
    let (code, message, table) = match e.as_db_error() {
        Some(d) => (d.code().code().to_owned(), d.message().to_owned(), d.table().map(str::to_owned)),
        None => return ApiError::from_db(e),
    };
    match (code.as_str(), table.as_deref()) {
        ("23514", None) if message.starts_with("et_resend:") => ApiError::conflict(message),
        ("P0002", _) => ApiError::not_found("message"),
        (_, Some("et_attachments")) => input::db_error(
            e,
            &[("content", "attachments"), ("filename", "attachments"), ("content_type", "attachments"), ("message_id", "attachments")],
        ),
        _ => input::db_error(e, MESSAGE_FIELDS),
    }
}

/// Resend a message that did not go out (failed, rejected, cancelled, suppressed) as a
/// corrected copy (et_resend). The copy is a new message, validated like any other.
#[utoipa::path(
    post,
    path = "/v1/messages/{id}/resend",
    tag = "messages",
    params(("id" = String, Path, description = "The original's public uuid or bigint id")),
    request_body(content = ResendRequest, description = "The fields to change; `{}` resends the content as it was"),
    responses(
        (status = 201, description = "The corrected copy (resentFrom names the original)", body = MessageView),
        (status = 400, description = "A field is invalid, or the corrected message is refused (named in error.field)", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown, expired or revoked one", body = ErrorBody),
        (status = 403, description = "The key lacks the send scope, or the tenant is not active", body = ErrorBody),
        (status = 404, description = "No such message for this tenant", body = ErrorBody),
        (status = 409, description = "The message went out or may still go out, was already resent, its attachments' content was dropped after the retention period, or the idempotency key is taken", body = ErrorBody),
        (status = 413, description = "The body is larger than PGCOURIER_HTTP_MAX_BODY", body = ErrorBody),
        (status = 415, description = "A body that is not declared JSON (content-type: application/json)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn resend(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<JsonBody, ApiError>,
) -> Result<(StatusCode, Json<MessageView>), ApiError> {
    caller.require(&state, Scope::Send).await?;
    let body = body?.0;
    let _: ResendRequest = input::json(body.clone(), HINTS)?;
    let changes = changes(body)?;
    let original = resolve(&state, &caller, &id).await?;
    let client = state.pool.get().await?;
    let tenant = &caller.0.tenant_id;
    let actor = format!("apikey:{}", caller.0.prefix);
    let copy =
        db::resend(&client, tenant, original, &changes, &actor).await.map_err(refused)?.ok_or_else(|| ApiError::not_found("message"))?;
    Ok((StatusCode::CREATED, Json(detailed(&client, tenant, copy).await?)))
}
