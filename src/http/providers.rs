//! Provider webhooks: where Twilio, WhatsApp Cloud, Telegram and in-house bridges deliver
//! inbound messages and delivery statuses. One route per provider and session,
//! `/v1/providers/{provider}/{session_id}`, so the session (and so the tenant) is known from the
//! path. No API key: each provider proves itself with its own signature, checked over the raw
//! request before anything is parsed or written (constant-time comparisons).
//!
//! Common rules: an unknown session, or a session of another provider, is 404; a missing or
//! wrong signature is 401, a security event (`bad_webhook_signature`, actor = the provider
//! name, tenant = the session's) and nothing written; a session whose webhook secret is not
//! configured is 503 `not_configured`. Inbound rows are inserted with `ON CONFLICT DO NOTHING`
//! on the inbound dedupe index, so a provider's retry of the same message is a harmless 200.
//! Rows are validated by the same triggers as SQL inserts. Every failure is the JSON error body.
//! Operator guide: `docs/channels/inbound_webhooks.md`.

mod http_bridge;
mod telegram;
mod twilio;
mod whatsapp_cloud;

use super::{error::ApiError, AppState};
use crate::db::{apikeys, provider_inbound::WebhookSession};
use crate::domain::vocab::{self, Provider};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{any, get, post};
use axum::Router;

/// Webhook bodies larger than this are refused with 413 (a bridge batch of 1,000 messages fits).
pub const MAX_WEBHOOK_BODY: usize = 4 * 1024 * 1024;

/// The providers with an inbound route; the route's name is the session's `provider`.
const ROUTED: [Provider; 4] = [Provider::Twilio, Provider::WhatsappCloud, Provider::TelegramBot, Provider::HttpBridge];

fn route_of(p: Provider) -> String {
    format!("/v1/providers/{p}/{{session_id}}")
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(&route_of(Provider::Twilio), post(twilio::receive).fallback(method_not_allowed))
        .route(&route_of(Provider::WhatsappCloud), get(whatsapp_cloud::verify).post(whatsapp_cloud::receive).fallback(method_not_allowed))
        .route(&route_of(Provider::TelegramBot), post(telegram::receive).fallback(method_not_allowed))
        .route(&route_of(Provider::HttpBridge), post(http_bridge::receive).fallback(method_not_allowed))
        .route("/v1/providers/{provider}/{session_id}", any(unknown_provider))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY))
}

crate::http::responses::error_responses! {
    /// What every provider route can refuse: 400, 401, 404, 413, 503.
    ProviderErrors {
        "400" => "The body is malformed, or the database refused a message (named in error.field); nothing was written",
        "401" => "The provider's signature is missing or wrong (recorded as a security event); nothing was written",
        "404" => "No session of this provider with this id",
        "413" => "The body is over 4 MiB",
        "503" => "The session cannot check this provider's signature (its secret is not configured), or the database is unavailable",
    }
}

/// The OpenAPI paths and schemas of these routes (to merge into the API's document).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(twilio::receive, whatsapp_cloud::verify, whatsapp_cloud::receive, telegram::receive, http_bridge::receive),
    tags((name = "providers", description = "Inbound messages and delivery statuses from providers, checked by each provider's own signature (no API key)"))
)]
pub struct ProvidersDoc;

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this provider route does not take this method")
}

async fn unknown_provider() -> ApiError {
    ApiError::not_found(&format!("provider route ({})", vocab::one_of(&ROUTED.map(Provider::as_str))))
}

/// What the webhook routes say about their provider.
impl Provider {
    /// Written to `pgcourier.actor`, so the audit trail says who delivered the row.
    fn actor(self) -> String {
        format!("provider:{self}")
    }

    fn count(self, outcome: &'static str, n: u64) {
        if n > 0 {
            metrics::counter!("pgcourier_provider_webhooks_total", "provider" => self.as_str(), "outcome" => outcome).increment(n);
        }
    }
}

/// The session named by the path, if it is one of `provider`'s; else 404.
async fn load_session(client: &tokio_postgres::Client, provider: Provider, raw_id: &str) -> Result<WebhookSession, ApiError> {
    let id: i64 = raw_id.parse().map_err(|_| ApiError::not_found("channel session"))?;
    match crate::db::provider_inbound::session(client, id).await.map_err(ApiError::internal)? {
        Some(s) if s.provider == provider => Ok(s),
        _ => Err(ApiError::not_found("channel session")),
    }
}

/// The preamble every provider webhook runs before it reads the body: a connection, the session
/// the path names (404 unless it is one of `provider`'s), and the provider's own check of the
/// request. `check` answers `Ok(Ok(value))` when the request is the provider's, `Ok(Err(reason))`
/// for a missing or wrong signature (then 401 and a security event, nothing written), or `Err`
/// when the session cannot check one (503 `not_configured`).
async fn verified<T>(
    state: &AppState,
    provider: Provider,
    session_id: &str,
    path: &str,
    check: impl FnOnce(&WebhookSession) -> Result<Result<T, &'static str>, ApiError>,
) -> Result<(deadpool_postgres::Object, WebhookSession, T), ApiError> {
    let client = state.pool.get().await?;
    let session = load_session(&client, provider, session_id).await?;
    match check(&session)? {
        Ok(value) => Ok((client, session, value)),
        Err(reason) => Err(refuse(&client, provider, &session, "bad_webhook_signature", reason, path).await),
    }
}

/// The secret named by `config[key]` (a reference resolved from `PGCOURIER_SECRET_<REF>`).
fn config_secret(session: &WebhookSession, key: &str) -> Result<String, ApiError> {
    let reference = session.config.get(key).and_then(|v| v.as_str()).map(str::trim).filter(|s| !s.is_empty());
    match reference {
        Some(r) => resolve_secret(session, r, &format!("config.{key}")),
        None => Err(not_configured(session, &format!("config.{key} is not set: it names the secret this webhook is checked with"))),
    }
}

fn resolve_secret(session: &WebhookSession, reference: &str, what: &str) -> Result<String, ApiError> {
    let var = crate::channels::secret_env_name(reference);
    match std::env::var(&var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(not_configured(session, &format!("{what} {reference:?}: secret {var} is not set in the daemon's environment"))),
    }
}

/// 503: the session cannot check this provider's signature (logged for the operator).
fn not_configured(session: &WebhookSession, problem: &str) -> ApiError {
    tracing::warn!(tenant = %session.tenant_id, session_id = session.id, provider = %session.provider, "provider webhook refused: {problem}");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_configured",
        format!("session {} cannot check this webhook's signature: {problem}", session.id),
    )
}

/// 401 for a missing or wrong signature, after recording a security event for the session's
/// tenant. `reason` is `missing_signature`, `signature_mismatch`, `stale_timestamp`, ...
async fn refuse(
    client: &tokio_postgres::Client,
    provider: Provider,
    session: &WebhookSession,
    action: &str,
    reason: &str,
    path: &str,
) -> ApiError {
    provider.count("unauthorized", 1);
    tracing::warn!(tenant = %session.tenant_id, session_id = session.id, provider = provider.as_str(), reason, "provider webhook refused");
    let detail = serde_json::json!({ "session_id": session.id, "reason": reason, "path": path });
    if let Err(e) = apikeys::security_event(client, Some(&session.tenant_id), provider.as_str(), action, &detail).await {
        tracing::error!(error = %crate::telemetry::one_line(&e), "could not record a security event");
    }
    ApiError::unauthorized(format!("{provider} webhook refused: {}", reason.replace('_', " ")))
}

/// Equal contents, in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// HMAC-SHA256 of `data` under `key`, checked against `expected` in constant time.
fn hmac_sha256_matches(key: &[u8], data: &[&[u8]], expected: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else { return false };
    for part in data {
        mac.update(part);
    }
    mac.verify_slice(expected).is_ok()
}

/// `sha256=<hex>` → the digest bytes.
fn sha256_header(value: &str) -> Option<Vec<u8>> {
    let hex_part = value.trim().strip_prefix("sha256=")?;
    hex::decode(hex_part).ok().filter(|d| d.len() == 32)
}

/// `application/x-www-form-urlencoded` (or a query string) → its pairs, in order, decoded
/// (`+` is a space, `%XX` a byte; invalid UTF-8 is replaced).
fn parse_form(input: &[u8]) -> Vec<(String, String)> {
    fn decode(part: &[u8]) -> String {
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < part.len() => {
                    match std::str::from_utf8(&part[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    input
        .split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|b| *b == b'=') {
            Some(eq) => (decode(&p[..eq]), decode(&p[eq + 1..])),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// A trigger's refusal of row `index` of a batch as a 400 naming the request's field
/// (`columns` maps et_messages columns to the provider's field names).
fn refused_row(e: tokio_postgres::Error, index: Option<usize>, columns: &[(&str, &str)]) -> ApiError {
    let mut err = ApiError::from_db(e);
    if let Some(column) = err.field.take() {
        let name = columns.iter().find(|(c, _)| *c == column).map_or(column.as_str(), |(_, f)| *f);
        err.field = Some(match index {
            Some(i) => format!("[{i}].{name}"),
            None => name.to_owned(),
        });
    }
    err
}

/// A provider's signed JSON body, parsed: 400 `body` when it is not JSON, 400 naming the field
/// (`[3].text`, `message.text`) when a string holds a NUL character, which the database cannot
/// store (checked after the signature, like everything else in the body).
fn parse_json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let value = serde_json::from_slice(body).map_err(|e| ApiError::field("body", format!("not JSON: {e}")))?;
    super::api::input::no_nul(&value, "")?;
    Ok(value)
}

/// A short note for a message without text: `[image]`, `[document: invoice.pdf]`.
fn note(kind: &str, detail: Option<&str>) -> String {
    match detail.filter(|d| !d.is_empty()) {
        Some(d) => format!("[{kind}: {d}]"),
        None => format!("[{kind}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_like_browsers_encode() {
        let pairs = parse_form(b"Body=Hello+there%21&From=whatsapp%3A%2B15551234567&Empty=&Flag&Bad=%zz%4");
        assert_eq!(
            pairs,
            vec![
                ("Body".into(), "Hello there!".into()),
                ("From".into(), "whatsapp:+15551234567".into()),
                ("Empty".into(), String::new()),
                ("Flag".into(), String::new()),
                ("Bad".into(), "%zz%4".into()),
            ]
        );
        assert_eq!(parse_form(b"a=%C3%A9"), vec![("a".into(), "é".into())]);
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn sha256_headers_need_the_prefix_and_32_bytes() {
        let hex = "ab".repeat(32);
        assert_eq!(sha256_header(&format!("sha256={hex}")).map(|d| d.len()), Some(32));
        assert!(sha256_header(&hex).is_none());
        assert!(sha256_header("sha256=abcd").is_none());
        assert!(sha256_header("sha256=zz").is_none());
    }
}
