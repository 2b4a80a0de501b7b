//! `POST /v1/providers/http_bridge/{session_id}`: inbound messages from an in-house bridge (a
//! Baileys/WhatsApp-Web server, an IMAP poller, an SMS modem).
//!
//! Body: one message `{"id", "from", "text", "subject"?, "inReplyTo"?, "metadata"?}` or an array
//! of up to 1,000. Headers: `X-Pgcourier-Timestamp` (unix seconds; refused when more than 5
//! minutes from our clock: replay protection) and `X-Pgcourier-Signature:
//! sha256=<hex HMAC-SHA256(secret, "{timestamp}.{raw body}")>`, the secret named by session
//! `config.webhook_secret_ref`. A batch is all or nothing: the first message a trigger refuses
//! makes the answer a 400 naming it (`[3].from`) and nothing is written. A message whose `id`
//! was received before is reported as a duplicate, not written again.
//!
//! Answer: `200 {"received": n, "inserted": k, "duplicates": d, "messages": [{"id",
//! "publicId" (null for a duplicate), "duplicate"}]}`.

use super::{config_secret, hmac_sha256_matches, refused_row, sha256_header, verified, Provider, ProviderErrors};
use crate::db::provider_inbound::{self, Inserted, NewInbound};
use crate::http::{error::ApiError, AppState};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

const PROVIDER: Provider = Provider::HttpBridge;

/// How far the bridge's clock may be from ours, in seconds.
pub const MAX_SKEW_SECS: i64 = 300;

/// Messages per request.
pub const MAX_BATCH: usize = 1000;

/// What a bridge's delivery did: counts, and each message's fate in the order sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct BridgeReceipt {
    pub received: usize,
    pub inserted: usize,
    pub duplicates: usize,
    pub messages: Vec<BridgeMessage>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BridgeMessage {
    /// The bridge's message id.
    pub id: String,
    /// The new row's public id; null for a duplicate.
    pub public_id: Option<uuid::Uuid>,
    pub duplicate: bool,
}

/// Inbound messages from an in-house bridge (one, or a batch of up to 1,000), signed with the
/// session's secret.
#[utoipa::path(
    post, path = "/v1/providers/http_bridge/{session_id}", tag = "providers",
    params(
        ("session_id" = String, Path, description = "The http_bridge session's id"),
        ("x-pgcourier-timestamp" = Option<String>, Header, description = "Unix seconds, within 5 minutes of the daemon's clock"),
        ("x-pgcourier-signature" = Option<String>, Header, description = "sha256=<hex HMAC-SHA256(secret, \"{timestamp}.{raw body}\")>"),
    ),
    request_body(content = Object, content_type = "application/json",
        description = "{\"id\", \"from\", \"text\", \"subject\"?, \"inReplyTo\"?, \"metadata\"?}, or an array of up to 1,000 of them"),
    responses((status = 200, description = "Written (duplicates reported, not written again)", body = BridgeReceipt), ProviderErrors),
    security(())
)]
pub async fn receive(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<BridgeReceipt>, ApiError> {
    let (mut client, session, ()) = verified(&state, PROVIDER, &session_id, uri.path(), |session| {
        let secret = config_secret(session, "webhook_secret_ref")?;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("");
        Ok(check(&secret, header("x-pgcourier-timestamp"), header("x-pgcourier-signature"), &body, chrono::Utc::now().timestamp()))
    })
    .await?;
    let payload: Value = super::parse_json(&body)?;
    let (items, batch) = match payload {
        Value::Array(items) => (items, true),
        one @ Value::Object(_) => (vec![one], false),
        _ => return Err(ApiError::field("body", "a message object or an array of them")),
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::field("body", format!("1 to {MAX_BATCH} messages per request, not {}", items.len())));
    }
    let rows = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            message(item).map_err(|(field, rule)| {
                let field = match (batch, field) {
                    (true, "") => format!("[{i}]"),
                    (true, f) => format!("[{i}].{f}"),
                    (false, "") => "body".to_owned(),
                    (false, f) => f.to_owned(),
                };
                ApiError::field(field, rule)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let done = provider_inbound::insert_all(&mut client, &PROVIDER.actor(), &session, &rows).await.map_err(ApiError::internal)?;
    let done = done.map_err(|(i, e)| {
        refused_row(
            e,
            batch.then_some(i),
            &[("sender", "from"), ("body_text", "text"), ("external_message_id", "id"), ("in_reply_to", "inReplyTo")],
        )
    })?;
    let inserted = done.iter().filter(|d| matches!(d, Inserted::New { .. })).count();
    PROVIDER.count("inserted", inserted as u64);
    PROVIDER.count("duplicate", (done.len() - inserted) as u64);
    let messages = rows
        .iter()
        .zip(&done)
        .map(|(row, d)| match d {
            Inserted::New { public_id, .. } => {
                BridgeMessage { id: row.external_message_id.clone(), public_id: Some(*public_id), duplicate: false }
            }
            Inserted::Duplicate => BridgeMessage { id: row.external_message_id.clone(), public_id: None, duplicate: true },
        })
        .collect();
    Ok(Json(BridgeReceipt { received: rows.len(), inserted, duplicates: rows.len() - inserted, messages }))
}

/// The timestamp is within [`MAX_SKEW_SECS`] of `now` and the signature signs
/// `"{timestamp}.{body}"`; else the reason.
fn check(secret: &str, timestamp: &str, signature: &str, body: &[u8], now: i64) -> Result<(), &'static str> {
    if signature.is_empty() {
        return Err("missing_signature");
    }
    if timestamp.is_empty() {
        return Err("missing_timestamp");
    }
    let ts: i64 = timestamp.parse().map_err(|_| "malformed_timestamp")?;
    if (now - ts).abs() > MAX_SKEW_SECS {
        return Err("stale_timestamp");
    }
    let digest = sha256_header(signature).ok_or("malformed_signature")?;
    if !hmac_sha256_matches(secret.as_bytes(), &[timestamp.as_bytes(), b".", body], &digest) {
        return Err("signature_mismatch");
    }
    Ok(())
}

/// One message of the body, or (field, rule).
fn message(item: &Value) -> Result<NewInbound, (&'static str, String)> {
    let Value::Object(o) = item else { return Err(("", "each message is a JSON object".into())) };
    let text = |k: &'static str, required: bool| -> Result<Option<String>, (&'static str, String)> {
        match o.get(k) {
            None | Some(Value::Null) if !required => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            Some(Value::String(_)) if !required => Ok(None),
            Some(Value::Number(n)) if k == "id" => Ok(Some(n.to_string())),
            None | Some(Value::Null) => Err((k, "is required".into())),
            _ => Err((k, "must be a non-empty string".into())),
        }
    };
    let id = text("id", true)?.unwrap_or_default();
    if id.len() > 1000 {
        return Err(("id", "at most 1000 characters".into()));
    }
    let from = text("from", true)?.unwrap_or_default();
    let body = text("text", false)?;
    let subject = text("subject", false)?;
    if body.is_none() && subject.is_none() {
        return Err(("text", "is required (or a subject)".into()));
    }
    let metadata = match o.get("metadata") {
        None | Some(Value::Null) => json!({}),
        Some(m @ Value::Object(_)) => m.clone(),
        Some(_) => return Err(("metadata", "must be a JSON object".into())),
    };
    Ok(NewInbound { external_message_id: id, sender: from, subject, body_text: body, in_reply_to: text("inReplyTo", false)?, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};

    fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}.").as_bytes());
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures_and_timestamps_are_checked() {
        let body = br#"{"id":"1"}"#;
        let now = 1_700_000_000;
        let sig = sign("s3cret", "1700000000", body);
        assert_eq!(check("s3cret", "1700000000", &sig, body, now), Ok(()));
        assert_eq!(check("s3cret", "1700000000", &sig, body, now + 300), Ok(()));
        assert_eq!(check("s3cret", "1700000000", &sig, body, now + 301), Err("stale_timestamp"));
        assert_eq!(check("other", "1700000000", &sig, body, now), Err("signature_mismatch"));
        assert_eq!(check("s3cret", "1700000001", &sig, body, now), Err("signature_mismatch"));
        assert_eq!(check("s3cret", "1700000000", "", body, now), Err("missing_signature"));
        assert_eq!(check("s3cret", "", &sig, body, now), Err("missing_timestamp"));
        assert_eq!(check("s3cret", "soon", &sig, body, now), Err("malformed_timestamp"));
    }

    #[test]
    fn messages_need_an_id_a_sender_and_text() {
        let m = message(&json!({ "id": 7, "from": "+15551234567", "text": "hi", "inReplyTo": "x", "metadata": { "a": 1 } })).unwrap();
        assert_eq!((m.external_message_id.as_str(), m.in_reply_to.as_deref()), ("7", Some("x")));
        assert_eq!(message(&json!({ "from": "a", "text": "b" })).unwrap_err().0, "id");
        assert_eq!(message(&json!({ "id": "1", "text": "b" })).unwrap_err().0, "from");
        assert_eq!(message(&json!({ "id": "1", "from": "a" })).unwrap_err().0, "text");
        assert_eq!(message(&json!({ "id": "1", "from": "a", "text": "b", "metadata": [] })).unwrap_err().0, "metadata");
    }
}
