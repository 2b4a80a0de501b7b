//! One delivery attempt: sign the payload, POST it, classify the answer. No SQL here.
//!
//! The client follows no redirects (a 3xx is a failure: the tenant should update the URL, and a
//! redirect must not lead the daemon past the SSRF guard), uses no proxy, gives up after the
//! request timeout, and resolves names through [`GuardedResolver`]; IP literals are checked
//! before connecting.

use super::sign;
use crate::db::webhooks::Claimed;
use crate::domain::network::Allow;
use crate::egress::{self, Refused};
use std::time::Duration;

/// What the endpoint made of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// A 2xx.
    Delivered { status: u16 },
    /// 410 Gone: the receiver wants nothing more from us.
    Gone,
    /// Anything else: another status, a timeout, a refused connection, a refused address.
    Failed {
        status: Option<u16>,
        error: String,
        /// The receiver's `Retry-After`, in seconds, when it sent one.
        retry_after: Option<Duration>,
    },
}

/// Sends signed webhook requests.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow: Allow,
}

/// Characters of a failed answer's body kept in `last_error`.
const BODY_EXCERPT: usize = 200;

impl Sender {
    pub fn new(allow: Allow, timeout: Duration) -> Result<Sender, reqwest::Error> {
        let client = egress::client_builder(allow)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("pgcourier-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Sender { client, allow })
    }

    /// POST `delivery` to its endpoint, signed at `timestamp` (unix seconds).
    pub async fn attempt(&self, delivery: &Claimed, timestamp: i64) -> Attempt {
        let failed = |error: String| Attempt::Failed { status: None, error, retry_after: None };
        if let Err(refused) = self.check_literal(&delivery.url) {
            return failed(format!("url refused: {refused}"));
        }
        // serialised once: the bytes signed are the bytes sent
        let body = match serde_json::to_vec(&delivery.payload) {
            Ok(b) => b,
            Err(e) => return failed(format!("payload: {e}")),
        };
        let id = delivery.event_id.to_string();
        // during a rollover window the secret a rotation replaced signs as well
        let secrets = std::iter::once(delivery.secret.as_str()).chain(delivery.previous_secret.as_deref());
        let signature = match sign::signatures(secrets, &id, timestamp, &body) {
            Ok(s) => s,
            Err(e) => return failed(e.to_string()),
        };
        let sent = self
            .client
            .post(&delivery.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return failed(describe(&e)),
        };
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Attempt::Delivered { status };
        }
        if status == 410 {
            return Attempt::Gone;
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, std::time::SystemTime::now()));
        let excerpt = excerpt(&mut response).await;
        let reason = response.status().canonical_reason().unwrap_or("");
        let error = if excerpt.is_empty() { format!("HTTP {status} {reason}") } else { format!("HTTP {status} {reason}: {excerpt}") };
        Attempt::Failed { status: Some(status), error, retry_after }
    }

    /// Scheme, credentials and IP-literal hosts (names are checked by the resolver).
    fn check_literal(&self, url: &str) -> Result<(), Refused> {
        egress::check_literal(url, &self.allow).map(|_| ())
    }
}

/// A `Retry-After` value (RFC 9110 §10.2.3) as a delay from `now`: delay-seconds, or an
/// HTTP-date in any of its three forms (IMF-fixdate, RFC 850, asctime). A date already past is
/// no delay; anything else is ignored.
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The first characters of a failed answer's body, without reading more than needed.
async fn excerpt(response: &mut reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < BODY_EXCERPT * 4 {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(BODY_EXCERPT).collect::<String>().trim().to_owned()
}

/// A transport error with its causes (the guard's refusal among them), never the URL's query.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    if let Some(refused) = egress::refusal_in(e) {
        return format!("url refused: {refused}");
    }
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !causes.contains(&text) {
            causes.push(text);
        }
        source = s.source();
    }
    if causes.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {}", causes.join(": "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn retry_after_as_seconds_or_any_http_date() {
        // Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example, seen 37 seconds earlier
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777 - 37);
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        for form in ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            assert_eq!(retry_after(form, now), Some(Duration::from_secs(37)), "{form}");
        }
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", SystemTime::now()), Some(Duration::ZERO), "past: no delay");
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }
}
