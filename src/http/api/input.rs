//! Turning request input into typed values with errors that name the field: JSON bodies
//! ([`JsonBody`]: declared JSON or 415, within the size limit or 413, an object without NUL
//! characters or 400; then unknown, missing or mistyped fields), query strings
//! ([`QueryParams`]: no NUL characters), path ids, timestamps, and database refusals whose
//! column names are mapped to the API's field names.
//!
//! NUL (`\u0000`) is valid JSON and a valid percent-escape, but PostgreSQL can store it neither
//! in `text` nor in `jsonb`: it is refused here, once, for every route, naming the field
//! (`subject`, `metadata.foo`, `attachments[0].filename`, the query parameter's name).

use crate::http::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// What a NUL character gets.
pub const NUL_RULE: &str = "contains a NUL character (\\u0000), which cannot be stored";

/// The body bytes, or 413 / 400 as a JSON error.
pub fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than this server accepts (PGCOURIER_HTTP_MAX_BODY bytes)",
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", r.body_text())
        }
    })
}

/// `application/json`, or any `application/…+json` (`merge-patch+json`, `vnd.x+json`), with
/// or without parameters.
fn declares_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn unsupported_media_type(headers: &HeaderMap) -> ApiError {
    let given = match headers.get(header::CONTENT_TYPE) {
        Some(v) => format!("content-type {:?}", String::from_utf8_lossy(v.as_bytes())),
        None => "no content-type".to_owned(),
    };
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("the body must be JSON sent with content-type: application/json ({given})"),
    )
}

/// A JSON object body: declared JSON (else 415), within the body limit (else 413), valid JSON
/// and an object (else 400 `body`), without NUL characters (else 400 naming the field). An
/// empty body is `{}`. Take it as `Result<JsonBody, ApiError>` to check the caller's scope
/// before its refusals.
pub struct JsonBody(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !declares_json(req.headers()) {
            return Err(unsupported_media_type(req.headers()));
        }
        let bytes = body(Bytes::from_request(req, state).await)?;
        object(&bytes).map(JsonBody)
    }
}

/// [`JsonBody`] for routes whose body is optional (the actions): no body at all needs no
/// content type and is `{}`; a body must be declared JSON like any other.
pub struct OptionalJsonBody(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for OptionalJsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = declares_json(req.headers());
        let headers = req.headers().clone();
        let bytes = body(Bytes::from_request(req, state).await)?;
        if !json && !bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(unsupported_media_type(&headers));
        }
        object(&bytes).map(OptionalJsonBody)
    }
}

/// Bytes → a JSON object without NUL characters (an empty body is `{}`).
fn object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ApiError::field("body", format!("is not valid JSON ({e})")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::field("body", "must be a JSON object"));
    };
    for (k, v) in &map {
        no_nul(v, k)?;
        if k.contains('\0') {
            return Err(ApiError::field("body", format!("the field name {k:?} {NUL_RULE}")));
        }
    }
    Ok(map)
}

/// 400 naming the first string in `v` (or key of one of its objects) that holds a NUL
/// character; `path` is `v`'s own field path (`metadata`, `[2]`, or empty for a whole body).
pub fn no_nul(v: &Value, path: &str) -> Result<(), ApiError> {
    match find_nul(v) {
        None => Ok(()),
        Some((inner, key)) => {
            let field = format!("{path}{inner}");
            let field = field.strip_prefix('.').unwrap_or(&field);
            let field = if field.is_empty() { "body" } else { field };
            Err(match key {
                Some(k) => ApiError::field(field, format!("the key {k:?} {NUL_RULE}")),
                None => ApiError::field(field, NUL_RULE),
            })
        }
    }
}

/// Where in `v` a NUL sits: the path below `v` (`.a.b[1]`), and the key when a key holds it.
/// (serde_json parses at most 128 levels deep, so the recursion is bounded.)
fn find_nul(v: &Value) -> Option<(String, Option<String>)> {
    match v {
        Value::String(s) if s.contains('\0') => Some((String::new(), None)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, x)| find_nul(x).map(|(p, k)| (format!("[{i}]{p}"), k))),
        Value::Object(map) => map.iter().find_map(|(k, x)| {
            if k.contains('\0') {
                return Some((String::new(), Some(k.clone())));
            }
            find_nul(x).map(|(p, key)| (format!(".{k}{p}"), key))
        }),
        _ => None,
    }
}

/// The query string's `(name, value)` pairs, in order: malformed is 400 `query`; a NUL
/// character is 400 naming the parameter. Take it as `Result<QueryParams, ApiError>` to check
/// the caller's scope first.
pub struct QueryParams(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(params) =
            Query::<Vec<(String, String)>>::from_request_parts(parts, state).await.map_err(|e| ApiError::field("query", e.body_text()))?;
        for (k, v) in &params {
            if k.contains('\0') {
                return Err(ApiError::field("query", format!("the parameter name {k:?} {NUL_RULE}")));
            }
            if v.contains('\0') {
                return Err(ApiError::field(k.as_str(), NUL_RULE));
            }
        }
        Ok(QueryParams(params))
    }
}

/// The query's `(name, value)` pairs into `T` (a struct of optional fields that denies unknown
/// ones, as its `IntoParams` documents them): a parameter given twice, unknown, or not of its
/// type is 400 naming it; `hints` give a friendlier rule than serde's for a parameter.
pub fn query<T: DeserializeOwned>(params: &[(String, String)], hints: &[(&str, &str)]) -> Result<T, ApiError> {
    let mut seen = std::collections::HashSet::new();
    if let Some((k, _)) = params.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        return Err(ApiError::field(k.as_str(), "is given more than once"));
    }
    let parse = |pairs: &[(String, String)]| {
        let encoded = serde_urlencoded::to_string(pairs).expect("string pairs always encode");
        serde_urlencoded::from_str::<T>(&encoded).map_err(|e| e.to_string())
    };
    let message = match parse(params) {
        Ok(t) => return Ok(t),
        Err(m) => m,
    };
    if let Some(k) = quoted(&message, "unknown field `") {
        let expected = message.split_once(", expected ").map(|(_, rest)| rest.replace('`', "")).unwrap_or_default();
        return Err(ApiError::field(k, format!("unknown parameter (expected {expected})")));
    }
    for pair in params {
        if let Err(m) = parse(std::slice::from_ref(pair)) {
            let (k, v) = pair;
            let rule = hints.iter().find(|(f, _)| f == k).map(|(_, h)| format!("{v:?} {h}")).unwrap_or(m);
            return Err(ApiError::field(k.as_str(), rule));
        }
    }
    Err(ApiError::field("query", message))
}

/// Deserialize a JSON object body into `T` (every field of `T` optional or defaulted, unknown
/// fields denied). A refusal names the field at fault; `hints` give a friendlier rule for
/// fields whose serde error says little (untagged enums).
pub fn json<T: DeserializeOwned>(map: Map<String, Value>, hints: &[(&str, &str)]) -> Result<T, ApiError> {
    let value = Value::Object(map);
    match T::deserialize(&value) {
        Ok(t) => Ok(t),
        Err(e) => {
            let Value::Object(map) = &value else { unreachable!("built as an object") };
            Err(blame::<T>(map, &e.to_string(), hints))
        }
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
/// column → field) and the message's `table.column:` prefix rewritten to match; a refusal of
/// the caller's tenant (`tenant_id`: not active) is 403. SQL check
/// failures that are not about a named field keep their status and message.
pub fn db_error(e: tokio_postgres::Error, fields: &[(&str, &str)]) -> ApiError {
    let mut err = ApiError::from_db(e);
    let Some(col) = err.field.clone() else {
        return err;
    };
    let message = err.message.trim_start_matches("et_messages.").trim_start_matches("et_attachments.").to_owned();
    let rest = message.strip_prefix(&format!("{col}:")).map(str::trim_start).unwrap_or(&message).to_owned();
    // the tenant is the API key's, never a request field: a refusal of it (inactive) is 403
    if col == "tenant_id" && err.status == StatusCode::BAD_REQUEST {
        return ApiError::forbidden(rest);
    }
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
    let mut err =
        db_error(e, &[("content", &content), ("filename", &filename), ("content_type", &content_type), ("message_id", "attachments")]);
    if err.field.as_deref() == Some(content.as_str()) && err.status == StatusCode::BAD_REQUEST {
        err.status = StatusCode::PAYLOAD_TOO_LARGE;
        err.code = "payload_too_large";
    }
    err
}

/// A page size parameter: a whole number from 1 to `max`, or 400 naming `limit`.
pub fn limit(v: &str, max: i64) -> Result<i64, ApiError> {
    v.parse()
        .ok()
        .filter(|l| (1..=max).contains(l))
        .ok_or_else(|| ApiError::field("limit", format!("{v:?} is not a number from 1 to {max}")))
}

/// A keyset page from rows fetched with `limit + 1`: at most `limit` rows, and the cursor of the
/// last one when more follow (None on the last page).
pub fn page<T>(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(cursor_of) } else { None };
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nul_field(v: Value, path: &str) -> Option<String> {
        no_nul(&v, path).err().and_then(|e| e.field)
    }

    #[test]
    fn a_nul_is_named_by_its_path() {
        assert_eq!(nul_field(json!("a\u{0}"), "subject").as_deref(), Some("subject"));
        assert_eq!(nul_field(json!({ "a": { "b": [1, "\u{0}"] } }), "metadata").as_deref(), Some("metadata.a.b[1]"));
        assert_eq!(nul_field(json!({ "k\u{0}": 1 }), "metadata").as_deref(), Some("metadata"));
        assert_eq!(nul_field(json!([{ "text": "\u{0}" }]), "").as_deref(), Some("[0].text"));
        assert_eq!(nul_field(json!({ "text": "\u{0}" }), "").as_deref(), Some("text"));
        assert_eq!(nul_field(json!("\u{0}"), "").as_deref(), Some("body"));
        assert_eq!(nul_field(json!({ "a": ["fine", 1, null, { "b": "ok" }] }), "x"), None);
    }

    #[test]
    fn json_is_application_json_or_a_json_suffix() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            declares_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!with("text/json+xml"));
        assert!(!declares_json(&HeaderMap::new()));
    }
}
