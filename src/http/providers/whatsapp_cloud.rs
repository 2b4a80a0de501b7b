//! `/v1/providers/whatsapp_cloud/{session_id}`: Meta's WhatsApp Cloud API webhook.
//!
//! `GET` is the subscription check: `hub.mode=subscribe` and `hub.verify_token` equal to the
//! secret named by session `config.verify_token_ref` → 200 with `hub.challenge` as text/plain;
//! anything else → 403 (and a security event).
//!
//! `POST` carries `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`, the app
//! secret named by `config.app_secret_ref`. The payload is
//! `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{
//!   "metadata":{"phone_number_id"},"contacts":[..],"messages":[..],"statuses":[..]}}]}]}`:
//! each `messages[]` item becomes an inbound row (`external_message_id` = wamid, `sender` =
//! `+` and `from`, `body_text` = the text, the caption, or a note such as `[image]`, the type
//! and its object in `metadata.whatsapp`), each `statuses[]` item goes into
//! `metadata.delivery` of the outbound row with that wamid. Changes for another
//! `phone_number_id` than the session's `config.phone_number_id` are skipped (one Meta app may
//! serve several numbers). Once the signature is valid the answer is 200, also for rows a
//! trigger refused (logged): Meta retries non-200 answers for days.
//!
//! Sources: https://developers.facebook.com/docs/graph-api/webhooks/getting-started
//! (verification requests, X-Hub-Signature-256); https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components
//! (messages, statuses, errors).

use super::{
    config_secret, constant_time_eq, hmac_sha256_matches, load_session, parse_form, refuse, sha256_header, verified, Provider,
    ProviderErrors,
};
use crate::db::provider_inbound::{self, Inserted, NewInbound, ProviderStatus};
use crate::http::{error::ApiError, AppState};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

const PROVIDER: Provider = Provider::WhatsappCloud;

/// The subscription handshake: `hub.challenge` back when the verify token matches.
#[utoipa::path(
    get, path = "/v1/providers/whatsapp_cloud/{session_id}", tag = "providers",
    params(
        ("session_id" = String, Path, description = "The whatsapp_cloud session's id"),
        ("hub.mode" = Option<String>, Query, description = "subscribe"),
        ("hub.verify_token" = Option<String>, Query, description = "The secret named by config.verify_token_ref"),
        ("hub.challenge" = Option<String>, Query, description = "Echoed back"),
    ),
    responses(
        (status = 200, description = "The challenge", content_type = "text/plain", body = String),
        (status = 400, description = "hub.challenge is missing", body = crate::http::api::views::ErrorBody),
        (status = 403, description = "hub.mode is not subscribe, or the verify token is wrong", body = crate::http::api::views::ErrorBody),
        (status = 404, description = "No whatsapp_cloud session with this id", body = crate::http::api::views::ErrorBody),
        (status = 503, description = "The session's verify token is not configured, or the database is unavailable", body = crate::http::api::views::ErrorBody),
    ),
    security(())
)]
pub async fn verify(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let client = state.pool.get().await?;
    let session = load_session(&client, PROVIDER, &session_id).await?;
    let expected = config_secret(&session, "verify_token_ref")?;
    let params = parse_form(query.unwrap_or_default().as_bytes());
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let token_ok = get("hub.verify_token").is_some_and(|t| constant_time_eq(t.as_bytes(), expected.as_bytes()));
    if get("hub.mode") != Some("subscribe") || !token_ok {
        let reason = if token_ok { "mode_not_subscribe" } else { "wrong_verify_token" };
        let _ = refuse(&client, PROVIDER, &session, "bad_webhook_verify_token", reason, uri.path()).await;
        return Err(ApiError::forbidden("hub.mode must be subscribe and hub.verify_token must match the session's verify token"));
    }
    let challenge = get("hub.challenge").ok_or_else(|| ApiError::field("hub.challenge", "the verification request needs hub.challenge"))?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], challenge.to_owned()).into_response())
}

/// What a delivery of changes did.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhatsappReceipt {
    pub inserted: u64,
    pub duplicates: u64,
    /// Messages the database refused (logged; Meta is still answered 200).
    pub refused: u64,
    pub statuses: u64,
    pub statuses_matched: u64,
}

/// Messages and statuses, signed with the app secret (`X-Hub-Signature-256`).
#[utoipa::path(
    post, path = "/v1/providers/whatsapp_cloud/{session_id}", tag = "providers",
    params(
        ("session_id" = String, Path, description = "The whatsapp_cloud session's id"),
        ("x-hub-signature-256" = Option<String>, Header, description = "sha256=<hex HMAC-SHA256(app secret, raw body)>"),
    ),
    request_body(content = Object, content_type = "application/json", description = "A WhatsApp Business Account webhook payload"),
    responses((status = 200, description = "Processed (also when the database refused a message: logged)", body = WhatsappReceipt), ProviderErrors),
    security(())
)]
pub async fn receive(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (mut client, session, ()) = verified(&state, PROVIDER, &session_id, uri.path(), |session| {
        let secret = config_secret(session, "app_secret_ref")?;
        let presented = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok()).unwrap_or("");
        Ok(match sha256_header(presented) {
            _ if presented.trim().is_empty() => Err("missing_signature"),
            None => Err("malformed_signature"),
            Some(digest) if !hmac_sha256_matches(secret.as_bytes(), &[&body], &digest) => Err("signature_mismatch"),
            Some(_) => Ok(()),
        })
    })
    .await?;
    // (no NUL check here: a message the database refuses is logged and counted, never a 4xx)
    let payload: Value = serde_json::from_slice(&body).map_err(|e| ApiError::field("body", format!("not JSON: {e}")))?;
    let own_number = match session.config.get("phone_number_id") {
        Some(Value::String(s)) => Some(s.trim().to_owned()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let mut messages = Vec::new();
    let mut statuses = Vec::new();
    let mut skipped = 0usize;
    for value in changes(&payload) {
        let number = value.pointer("/metadata/phone_number_id").and_then(Value::as_str);
        if let (Some(own), Some(number)) = (own_number.as_deref(), number) {
            if own != number {
                skipped += 1;
                continue;
            }
        }
        let contacts = value.get("contacts").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for m in value.get("messages").and_then(Value::as_array).into_iter().flatten() {
            messages.extend(inbound(m, contacts));
        }
        for s in value.get("statuses").and_then(Value::as_array).into_iter().flatten() {
            statuses.extend(status(s));
        }
    }
    if skipped > 0 {
        tracing::debug!(session_id = session.id, skipped, "whatsapp changes for other phone numbers skipped");
    }
    let actor = PROVIDER.actor();
    let (mut inserted, mut duplicates, mut refused) = (0u64, 0u64, 0u64);
    if !messages.is_empty() {
        let results = provider_inbound::insert_each(&mut client, &actor, &session, &messages).await.map_err(ApiError::internal)?;
        for (m, r) in messages.iter().zip(results) {
            match r {
                Ok(Inserted::New { .. }) => inserted += 1,
                Ok(Inserted::Duplicate) => duplicates += 1,
                Err(e) => {
                    refused += 1;
                    tracing::warn!(session_id = session.id, wamid = %m.external_message_id, error = %crate::telemetry::one_line(&e), "whatsapp message refused by the database");
                }
            }
        }
    }
    let mut matched = 0u64;
    for s in &statuses {
        if provider_inbound::record_status(&mut client, &actor, &session, s).await.map_err(ApiError::internal)? {
            matched += 1;
        }
    }
    PROVIDER.count("inserted", inserted);
    PROVIDER.count("duplicate", duplicates);
    PROVIDER.count("refused", refused);
    PROVIDER.count("status", matched);
    PROVIDER.count("status_unmatched", statuses.len() as u64 - matched);
    Ok(Json(WhatsappReceipt { inserted, duplicates, refused, statuses: statuses.len() as u64, statuses_matched: matched }).into_response())
}

/// Every `entry[].changes[].value`.
fn changes(payload: &Value) -> impl Iterator<Item = &Value> {
    payload
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|e| e.get("changes").and_then(Value::as_array).into_iter().flatten())
        .filter_map(|c| c.get("value"))
}

/// One `messages[]` item as an inbound row (`None` without an id or a sender).
fn inbound(m: &Value, contacts: &[Value]) -> Option<NewInbound> {
    let id = m.get("id").and_then(Value::as_str).filter(|s| !s.is_empty())?;
    let from = m.get("from").and_then(Value::as_str).filter(|s| !s.is_empty())?;
    let kind = m.get("type").and_then(Value::as_str).unwrap_or("unknown");
    let object = m.get(kind);
    let str_at = |path: &str| m.pointer(path).and_then(Value::as_str).filter(|s| !s.is_empty());
    let body_text = match kind {
        "text" => str_at("/text/body").map(str::to_owned),
        "button" => str_at("/button/text").map(str::to_owned),
        "interactive" => str_at("/interactive/button_reply/title").or(str_at("/interactive/list_reply/title")).map(str::to_owned),
        "reaction" => Some(super::note("reaction", str_at("/reaction/emoji"))),
        "location" => {
            let place = [str_at("/location/name"), str_at("/location/address")].into_iter().flatten().collect::<Vec<_>>().join(", ");
            let coords = match (m.pointer("/location/latitude"), m.pointer("/location/longitude")) {
                (Some(lat), Some(lon)) => format!("{lat},{lon}"),
                _ => String::new(),
            };
            let detail = [place, coords].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
            Some(super::note("location", Some(&detail)))
        }
        _ => object.and_then(|o| o.get("caption")).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned).or_else(|| {
            let name = object.and_then(|o| o.get("filename")).and_then(Value::as_str);
            Some(super::note(kind, name))
        }),
    };
    let mut whatsapp = Map::new();
    whatsapp.insert("type".into(), json!(kind));
    if kind != "text" {
        if let Some(o) = object {
            whatsapp.insert(kind.into(), o.clone());
        }
    }
    if let Some(ts) = str_at("/timestamp") {
        whatsapp.insert("timestamp".into(), json!(ts));
    }
    if let Some(name) =
        contacts.iter().find(|c| c.get("wa_id").and_then(Value::as_str) == Some(from)).and_then(|c| c.pointer("/profile/name"))
    {
        whatsapp.insert("profile_name".into(), name.clone());
    }
    if let Some(ctx) = m.get("context") {
        whatsapp.insert("context".into(), ctx.clone());
    }
    Some(NewInbound {
        external_message_id: id.to_owned(),
        sender: format!("+{}", from.trim_start_matches('+')),
        subject: None,
        body_text,
        in_reply_to: str_at("/context/id").map(str::to_owned),
        metadata: json!({ "whatsapp": whatsapp }),
    })
}

/// One `statuses[]` item (`None` without an id or a status).
fn status(s: &Value) -> Option<ProviderStatus> {
    let id = s.get("id").and_then(Value::as_str).filter(|v| !v.is_empty())?;
    let status = s.get("status").and_then(Value::as_str).filter(|v| !v.is_empty())?;
    let error = s.pointer("/errors/0");
    let mut extra = Map::new();
    if let Some(title) = error.and_then(|e| e.get("title").or(e.get("message"))) {
        extra.insert("error_title".into(), title.clone());
    }
    if let Some(r) = s.get("recipient_id") {
        extra.insert("recipient_id".into(), r.clone());
    }
    if let Some(p) = s.get("pricing") {
        extra.insert("pricing".into(), p.clone());
    }
    let provider_at = s
        .get("timestamp")
        .and_then(|t| t.as_str().and_then(|t| t.parse::<i64>().ok()).or(t.as_i64()))
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0));
    Some(ProviderStatus {
        external_message_id: id.to_owned(),
        status: status.to_owned(),
        error_code: error.and_then(|e| e.get("code")).map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned)),
        extra: Value::Object(extra),
        provider_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_of_every_kind_have_a_text() {
        let contacts = [json!({ "wa_id": "15551234567", "profile": { "name": "Ann" } })];
        let text =
            json!({ "from": "15551234567", "id": "wamid.1", "type": "text", "text": { "body": "Hi" }, "context": { "id": "wamid.0" } });
        let m = inbound(&text, &contacts).unwrap();
        assert_eq!((m.sender.as_str(), m.body_text.as_deref(), m.in_reply_to.as_deref()), ("+15551234567", Some("Hi"), Some("wamid.0")));
        assert_eq!(m.metadata["whatsapp"]["profile_name"], "Ann");
        let image = json!({ "from": "1555", "id": "w2", "type": "image", "image": { "id": "MEDIA", "mime_type": "image/jpeg" } });
        let m = inbound(&image, &[]).unwrap();
        assert_eq!(m.body_text.as_deref(), Some("[image]"));
        assert_eq!(m.metadata["whatsapp"]["image"]["id"], "MEDIA");
        let doc = json!({ "from": "1555", "id": "w3", "type": "document", "document": { "caption": "the invoice" } });
        assert_eq!(inbound(&doc, &[]).unwrap().body_text.as_deref(), Some("the invoice"));
        let button = json!({ "from": "1555", "id": "w4", "type": "interactive", "interactive": { "type": "button_reply", "button_reply": { "id": "b", "title": "Yes" } } });
        assert_eq!(inbound(&button, &[]).unwrap().body_text.as_deref(), Some("Yes"));
        assert!(inbound(&json!({ "id": "w5" }), &[]).is_none());
    }

    #[test]
    fn statuses_keep_the_error_code_and_time() {
        let s = json!({ "id": "wamid.9", "status": "failed", "timestamp": "1700000000", "recipient_id": "1555",
                        "errors": [{ "code": 131026, "title": "Message undeliverable" }] });
        let s = status(&s).unwrap();
        assert_eq!(s.error_code.as_deref(), Some("131026"));
        assert_eq!(s.extra["error_title"], "Message undeliverable");
        assert_eq!(s.provider_at.unwrap().timestamp(), 1_700_000_000);
    }
}
