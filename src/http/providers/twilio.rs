//! `POST /v1/providers/twilio/{session_id}`: Twilio's incoming-message webhook (SMS, and
//! WhatsApp through Twilio) and its status callbacks, form-encoded.
//!
//! Signature (`X-Twilio-Signature`): base64(HMAC-SHA1(auth token, URL + every POST parameter,
//! sorted by name, as name followed by value, no separators)), where URL is the full URL Twilio
//! called, query string included. Behind a proxy the Host header is not that URL, so it comes
//! from, in order: session `config.webhook_url` (the URL exactly as given to Twilio), session
//! `config.public_base_url` or the daemon's `PGCOURIER_PUBLIC_URL` + the request's path and
//! query, else `X-Forwarded-Proto`/`X-Forwarded-Host`/`Host`. As Twilio's own libraries do, the
//! URL is also tried with the scheme's default port added or removed.
//!
//! The auth token is the session's secret (`credentials_ref`: `ACxxx:token`, or the token
//! alone); a session that sends with an API key (`SKxxx:secret`) names the auth token with
//! `config.auth_token_ref`.
//!
//! A request with `MessageStatus` (other than `received`/`receiving`) is a status callback:
//! the status goes into `metadata.delivery` of the outbound row with that `MessageSid`;
//! anything else is an inbound message (`external_message_id` = `MessageSid`, `sender` = `From`
//! without `whatsapp:`, `body_text` = `Body`). The answer is an empty TwiML `<Response/>`.
//!
//! Sources: https://www.twilio.com/docs/usage/security#validating-requests ;
//! twilio-node `lib/webhooks/webhooks.ts` (`getExpectedTwilioSignature`, port variants);
//! https://www.twilio.com/docs/messaging/guides/webhook-request (parameters).

use super::{config_secret, constant_time_eq, not_configured, parse_form, refused_row, resolve_secret, verified, Provider, ProviderErrors};
use crate::db::provider_inbound::{self, Inserted, NewInbound, ProviderStatus, WebhookSession};
use crate::http::{error::ApiError, AppState};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Map, Value};

const PROVIDER: Provider = Provider::Twilio;

/// Twilio's incoming-message webhook and status callbacks (form-encoded, `X-Twilio-Signature`).
#[utoipa::path(
    post, path = "/v1/providers/twilio/{session_id}", tag = "providers",
    params(
        ("session_id" = String, Path, description = "The twilio session's id"),
        ("x-twilio-signature" = Option<String>, Header, description = "base64(HMAC-SHA1(auth token, URL + sorted POST parameters))"),
    ),
    request_body(content = Object, content_type = "application/x-www-form-urlencoded", description = "Twilio's webhook parameters (MessageSid, From, Body, MessageStatus, ...)"),
    responses((status = 200, description = "An empty TwiML answer", content_type = "text/xml", body = String), ProviderErrors),
    security(())
)]
pub async fn receive(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (mut client, session, params) = verified(&state, PROVIDER, &session_id, uri.path(), |session| {
        let token = auth_token(session)?;
        let params = parse_form(&body);
        let presented = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("");
        if presented.is_empty() {
            return Ok(Err("missing_signature"));
        }
        let urls = signed_urls(&session.config, state.config.public_url.as_deref(), &headers, &uri);
        if !signature_matches(&token, &urls, &params, presented) {
            tracing::info!(session_id = session.id, url = %urls[0], "twilio signature mismatch: if the token is right, set config.webhook_url to the exact URL configured at Twilio");
            return Ok(Err("signature_mismatch"));
        }
        Ok(Ok(params))
    })
    .await?;
    // the database stores no NUL character: refuse it naming the parameter
    if let Some((k, _)) = params.iter().find(|(k, v)| k.contains('\0') || v.contains('\0')) {
        return Err(ApiError::field(k.replace('\0', "\\u0000"), crate::http::api::input::NUL_RULE));
    }
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());

    let status = get("MessageStatus").or(get("SmsStatus"));
    if let Some(status) = status.filter(|s| !matches!(*s, "received" | "receiving")) {
        let sid = get("MessageSid").or(get("SmsSid")).ok_or_else(|| ApiError::field("MessageSid", "a status callback needs MessageSid"))?;
        let mut extra = Map::new();
        if let Some(m) = get("ErrorMessage") {
            extra.insert("error_message".into(), json!(m));
        }
        let update = ProviderStatus {
            external_message_id: sid.to_owned(),
            status: status.to_owned(),
            error_code: get("ErrorCode").map(str::to_owned),
            extra: Value::Object(extra),
            provider_at: None,
        };
        let matched =
            provider_inbound::record_status(&mut client, &PROVIDER.actor(), &session, &update).await.map_err(ApiError::from_db)?;
        if !matched {
            tracing::debug!(
                session_id = session.id,
                sid,
                status,
                "twilio status for a message this session did not send (or not yet recorded)"
            );
        }
        PROVIDER.count(if matched { "status" } else { "status_unmatched" }, 1);
        return Ok(twiml());
    }

    let message = inbound(&params)?;
    match provider_inbound::insert_all(&mut client, &PROVIDER.actor(), &session, std::slice::from_ref(&message))
        .await
        .map_err(ApiError::internal)?
    {
        Ok(done) => {
            PROVIDER.count(if matches!(done[0], Inserted::Duplicate) { "duplicate" } else { "inserted" }, 1);
            Ok(twiml())
        }
        Err((_, e)) => Err(refused_row(e, None, &[("sender", "From"), ("body_text", "Body"), ("external_message_id", "MessageSid")])),
    }
}

/// An empty TwiML answer: nothing to send back.
fn twiml() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/xml")], "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>").into_response()
}

/// The auth token that signs this session's webhooks.
fn auth_token(session: &WebhookSession) -> Result<String, ApiError> {
    if session.config.get("auth_token_ref").and_then(Value::as_str).is_some_and(|r| !r.trim().is_empty()) {
        return config_secret(session, "auth_token_ref");
    }
    let Some(reference) = session.credentials_ref.as_deref().filter(|r| !r.trim().is_empty()) else {
        return Err(not_configured(session, "credentials_ref is not set: the Twilio auth token signs the webhooks"));
    };
    let secret = resolve_secret(session, reference, "credentials_ref")?;
    match secret.split_once(':') {
        Some((sid, token)) if sid.starts_with("AC") && !token.is_empty() => Ok(token.to_owned()),
        Some(_) => Err(not_configured(
            session,
            "the secret is not `AccountSid:AuthToken` (an API key cannot check signatures): set config.auth_token_ref to a secret holding the auth token",
        )),
        None => Ok(secret),
    }
}

/// The inbound row for an incoming-message webhook.
fn inbound(params: &[(String, String)]) -> Result<NewInbound, ApiError> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let sid =
        get("MessageSid").or(get("SmsMessageSid")).ok_or_else(|| ApiError::field("MessageSid", "an incoming message needs MessageSid"))?;
    let from = get("From").ok_or_else(|| ApiError::field("From", "an incoming message needs From"))?;
    let sender = from.strip_prefix("whatsapp:").unwrap_or(from).to_owned();
    let num_media: usize = get("NumMedia").and_then(|n| n.parse().ok()).unwrap_or(0).min(10);
    let media: Vec<Value> = (0..num_media)
        .map(|i| json!({ "url": get(&format!("MediaUrl{i}")), "content_type": get(&format!("MediaContentType{i}")) }))
        .collect();
    let mut twilio = Map::new();
    for (key, name) in [
        ("MessageSid", "message_sid"),
        ("AccountSid", "account_sid"),
        ("MessagingServiceSid", "messaging_service_sid"),
        ("To", "to"),
        ("NumSegments", "num_segments"),
        ("ProfileName", "profile_name"),
        ("WaId", "wa_id"),
        ("Latitude", "latitude"),
        ("Longitude", "longitude"),
        ("FromCity", "from_city"),
        ("FromCountry", "from_country"),
    ] {
        if let Some(v) = get(key) {
            twilio.insert(name.into(), json!(v));
        }
    }
    if !media.is_empty() {
        twilio.insert("media".into(), Value::Array(media));
    }
    let body_text = match get("Body") {
        Some(body) => Some(body.to_owned()),
        None if num_media > 0 => {
            let types: Vec<&str> = (0..num_media).filter_map(|i| get(&format!("MediaContentType{i}"))).collect();
            Some(super::note("media", Some(&types.join(", "))))
        }
        None => match (get("Latitude"), get("Longitude")) {
            (Some(lat), Some(lon)) => Some(super::note("location", Some(&format!("{lat},{lon}")))),
            _ => None,
        },
    };
    Ok(NewInbound {
        external_message_id: sid.to_owned(),
        sender,
        subject: None,
        body_text,
        in_reply_to: get("OriginalRepliedMessageSid").map(str::to_owned),
        metadata: json!({ "twilio": twilio }),
    })
}

/// The URL(s) Twilio may have signed: see the module doc.
fn signed_urls(config: &Value, public_url: Option<&str>, headers: &HeaderMap, uri: &Uri) -> Vec<String> {
    let text = |v: Option<&str>| v.map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let url = if let Some(url) = text(config.get("webhook_url").and_then(Value::as_str)) {
        url
    } else if let Some(base) = text(config.get("public_base_url").and_then(Value::as_str)).or(text(public_url)) {
        format!("{}{path}", base.trim_end_matches('/'))
    } else {
        let first = |name: &str| text(headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next()));
        let proto = first("x-forwarded-proto").unwrap_or_else(|| "http".into());
        let host = first("x-forwarded-host").or_else(|| first("host")).unwrap_or_else(|| "localhost".into());
        format!("{proto}://{host}{path}")
    };
    let mut urls = vec![url.clone()];
    urls.extend(toggle_default_port(&url));
    urls
}

/// The same URL with the scheme's default port added (when absent) or removed (when present).
fn toggle_default_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    let (host, port) = match hostport.rfind(':') {
        Some(i) if !hostport[i..].contains(']') => (&hostport[..i], Some(&hostport[i + 1..])),
        _ => (hostport, None),
    };
    match port {
        Some(p) if p == default => Some(format!("{scheme}://{userinfo}{host}{tail}")),
        Some(_) => None,
        None => Some(format!("{scheme}://{userinfo}{host}:{default}{tail}")),
    }
}

/// Does `presented` sign these parameters for one of `urls`? `None` when HMAC-SHA1 is not
/// available in this build.
fn signature_matches(token: &str, urls: &[String], params: &[(String, String)], presented: &str) -> bool {
    let mut sorted = params.to_vec();
    sorted.sort();
    sorted.dedup();
    let tail: String = sorted.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]).collect();
    let mut matched = false;
    for url in urls {
        let mac = hmac_sha1(token.as_bytes(), format!("{url}{tail}").as_bytes());
        let expected = base64::engine::general_purpose::STANDARD.encode(mac);
        matched |= constant_time_eq(expected.as_bytes(), presented.as_bytes());
    }
    matched
}

/// HMAC-SHA1 of `data` under `key`: Twilio's signature algorithm.
fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn the_signed_url_prefers_config_then_public_url_then_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "internal:8080".parse().unwrap());
        let u = uri("/v1/providers/twilio/7?x=1");
        let exact = json!({ "webhook_url": "https://hooks.example.com/twilio?s=7" });
        assert_eq!(signed_urls(&exact, Some("https://ignored"), &headers, &u)[0], "https://hooks.example.com/twilio?s=7");
        let base = json!({ "public_base_url": "https://hooks.example.com/" });
        assert_eq!(signed_urls(&base, Some("https://ignored"), &headers, &u)[0], "https://hooks.example.com/v1/providers/twilio/7?x=1");
        assert_eq!(
            signed_urls(&json!({}), Some("https://pub.example.com"), &headers, &u)[0],
            "https://pub.example.com/v1/providers/twilio/7?x=1"
        );
        assert_eq!(signed_urls(&json!({}), None, &headers, &u), vec!["http://internal:8080/v1/providers/twilio/7?x=1".to_string()]);
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        headers.insert("x-forwarded-host", "edge.example.com".parse().unwrap());
        assert_eq!(signed_urls(&json!({}), None, &headers, &u)[0], "https://edge.example.com/v1/providers/twilio/7?x=1");
    }

    #[test]
    fn default_ports_are_tried_both_ways() {
        assert_eq!(toggle_default_port("https://a.example/x?y=1").as_deref(), Some("https://a.example:443/x?y=1"));
        assert_eq!(toggle_default_port("https://a.example:443/x").as_deref(), Some("https://a.example/x"));
        assert_eq!(toggle_default_port("http://u:p@a.example/x").as_deref(), Some("http://u:p@a.example:80/x"));
        assert_eq!(toggle_default_port("http://[::1]:80/x").as_deref(), Some("http://[::1]/x"));
        assert_eq!(toggle_default_port("https://a.example:8443/x"), None);
    }

    #[test]
    fn signatures_match_twilios_documented_example() {
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .rev()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2".to_string();
        assert!(signature_matches("12345", std::slice::from_ref(&url), &params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        assert!(!signature_matches("12346", std::slice::from_ref(&url), &params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        let with_port = toggle_default_port(&url).unwrap();
        assert!(signature_matches("12345", &[with_port, url], &params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
    }

    #[test]
    fn inbound_whatsapp_media_without_body_gets_a_note() {
        let params: Vec<(String, String)> = [
            ("MessageSid", "MM1"),
            ("From", "whatsapp:+15551234567"),
            ("Body", ""),
            ("NumMedia", "1"),
            ("MediaContentType0", "image/jpeg"),
            ("MediaUrl0", "https://api.twilio.com/m/1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let m = inbound(&params).unwrap();
        assert_eq!(m.sender, "+15551234567");
        assert_eq!(m.body_text.as_deref(), Some("[media: image/jpeg]"));
        assert_eq!(m.metadata["twilio"]["media"][0]["url"], "https://api.twilio.com/m/1");
        assert_eq!(inbound(&[]).unwrap_err().field.as_deref(), Some("MessageSid"));
    }
}
