//! Turning request input into typed values with errors that name the field: JSON bodies
//! (unknown, missing or mistyped fields), path ids, timestamps, and database refusals whose
//! column names are mapped to the API's field names.

use crate::http::error::ApiError;
use crate::http::MAX_BODY_BYTES;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The body bytes, or 413 / 400 as a JSON error.
pub fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("the request body is over {MAX_BODY_BYTES} bytes"))
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", r.body_text())
        }
    })
}

/// Parse a JSON object body into `T` (every field of `T` optional or defaulted, unknown fields
/// denied). An empty body is `{}`. A refusal names the field at fault; `hints` give a friendlier
/// rule for fields whose serde error says little (untagged enums).
pub fn json<T: DeserializeOwned>(bytes: &[u8], hints: &[(&str, &str)]) -> Result<T, ApiError> {
    let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(bytes).map_err(|e| ApiError::field("body", format!("is not valid JSON ({e})")))?
    };
    let Value::Object(map) = &value else {
        return Err(ApiError::field("body", "must be a JSON object"));
    };
    match serde_json::from_value::<T>(value.clone()) {
        Ok(t) => Ok(t),
        Err(e) => Err(blame::<T>(map, &e.to_string(), hints)),
    }
}

/// The text between the first pair of backticks after `lead`, if `message` starts with it.
fn quoted<'a>(message: &'a str, lead: &str) -> Option<&'a str> {
    message.strip_prefix(lead)?.split('`').next()
}

/// Which field made the whole object fail: serde names unknown and missing fields; for a type
/// error, deserialize the object one field at a time until one fails on its own.
fn blame<T: DeserializeOwned>(map: &Map<String, Value>, message: &str, hints: &[(&str, &str)]) -> ApiError {
    // (a nested object's unknown or missing field is found by the per-field pass below)
    if let Some(f) = quoted(message, "unknown field `").filter(|f| map.contains_key(*f)) {
        let expected = message.split_once(", ").map(|(_, rest)| rest).unwrap_or("");
        return ApiError::field(f, format!("unknown field ({expected})"));
    }
    // what an object with no fields at all fails with: a required top-level field
    let empty = serde_json::from_value::<T>(Value::Object(Map::new())).err().map(|e| e.to_string());
    if let Some(f) = quoted(message, "missing field `").filter(|_| empty.as_deref() == Some(message)) {
        return ApiError::field(f, "is required");
    }
    for (k, v) in map {
        let one = Value::Object(Map::from_iter([(k.clone(), v.clone())]));
        if let Err(e) = serde_json::from_value::<T>(one) {
            let m = e.to_string();
            if Some(&m) == empty.as_ref() {
                continue;
            }
            let rule = hints.iter().find(|(f, _)| f == k).map(|(_, h)| h.to_string()).unwrap_or(m);
            return ApiError::field(k.as_str(), rule);
        }
    }
    ApiError::field("body", message.to_owned())
}

/// Deserialize one array element, naming it `field[i]` (and its own fields) when it fails.
pub fn element<T: DeserializeOwned>(field: &str, i: usize, value: &Value) -> Result<T, ApiError> {
    let Value::Object(map) = value else {
        return Err(ApiError::field(format!("{field}[{i}]"), "must be an object"));
    };
    serde_json::from_value::<T>(value.clone()).map_err(|e| {
        let inner = blame::<T>(map, &e.to_string(), &[]);
        let sub = inner.field.unwrap_or_default();
        let rule = inner.message.split_once(": ").map(|(_, r)| r.to_owned()).unwrap_or(inner.message);
        ApiError::field(format!("{field}[{i}].{sub}"), rule)
    })
}

/// An RFC 3339 timestamp (a bare `YYYY-MM-DD` date is midnight UTC when `dates` allows it).
pub fn timestamp(field: &str, v: &str, dates: bool) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    if dates {
        if let Ok(d) = NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d") {
            return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
        }
    }
    Err(ApiError::field(field, format!("{v:?} is not an RFC 3339 timestamp like 2026-02-25T12:00:00Z")))
}

/// A refusal from the database, with its column renamed to the API's field (`fields` maps
/// column → field) and the message's `table.column:` prefix rewritten to match. SQL check
/// failures that are not about a named field keep their status and message.
pub fn db_error(e: tokio_postgres::Error, fields: &[(&str, &str)]) -> ApiError {
    let mut err = ApiError::from_db(e);
    let Some(col) = err.field.clone() else {
        return err;
    };
    let message = err.message.trim_start_matches("et_messages.").trim_start_matches("et_attachments.").to_owned();
    let rest = message.strip_prefix(&format!("{col}:")).map(str::trim_start).unwrap_or(&message).to_owned();
    match fields.iter().find(|(c, _)| *c == col) {
        Some((_, api)) => {
            err.message = format!("{api}: {rest}");
            err.field = Some((*api).to_owned());
        }
        None => err.message = message,
    }
    err
}

/// The column → API field map of an outbound message.
pub const MESSAGE_FIELDS: &[(&str, &str)] = &[
    ("recipients", "to"),
    ("cc", "cc"),
    ("bcc", "bcc"),
    ("sender", "from"),
    ("reply_to", "replyTo"),
    ("subject", "subject"),
    ("body_text", "textBody"),
    ("body_html", "htmlBody"),
    ("variables", "variables"),
    ("metadata", "metadata"),
    ("priority", "priority"),
    ("channel", "channel"),
    ("channel_session_id", "channelSessionId"),
    ("scheduled_at", "scheduledAt"),
    ("in_reply_to", "inReplyTo"),
    ("idempotency_key", "idempotencyKey"),
];

/// A refused attachment insert: size limits are 413, anything else 400, naming `attachments[i]…`.
pub fn attachment_error(e: tokio_postgres::Error, i: usize) -> ApiError {
    let content = format!("attachments[{i}].contentBase64");
    let filename = format!("attachments[{i}].filename");
    let content_type = format!("attachments[{i}].contentType");
    let mut err = db_error(e, &[("content", &content), ("filename", &filename), ("content_type", &content_type), ("message_id", "attachments")]);
    if err.field.as_deref() == Some(content.as_str()) && err.status == StatusCode::BAD_REQUEST {
        err.status = StatusCode::PAYLOAD_TOO_LARGE;
        err.code = "payload_too_large";
    }
    err
}
