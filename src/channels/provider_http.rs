//! What an HTTP provider's answer means, shared by the HTTP adapters (and the LLM decider):
//! `Retry-After`, error texts with their causes, bounded excerpts for `last_error`.

use super::SendError;
use crate::domain::network::Allow;
use crate::egress;
use std::time::Duration;

/// The HTTP client of a provider whose `config.{field}` is `url`: the SSRF guard's client
/// ([`egress::client_builder`]: names resolved and checked at every connection, no redirects, no
/// proxy), after checking an IP-literal host here (reqwest connects to those without resolving).
/// A refusal is permanent and names the field.
pub fn guarded_client(provider: &str, field: &str, url: &str, allow: Allow, timeout: Duration) -> Result<reqwest::Client, SendError> {
    egress::check_literal(url, &allow).map_err(|refused| SendError::permanent(format!("{provider} config.{field} {url:?} {refused}")))?;
    egress::client_builder(allow)
        .timeout(timeout)
        .user_agent(concat!("pgcourier/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SendError::permanent(format!("{provider}: cannot build the HTTP client: {e}")))
}

/// `Retry-After` from the headers, as seconds or an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?)
}

/// A `Retry-After` value: delay-seconds or an HTTP date (RFC 2822 form).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().ok()
}

/// Whether a failed request may still have reached the provider: anything but a failure to
/// connect (or to build the request) happened after the request was, at least in part, sent.
pub fn may_have_arrived(e: &reqwest::Error) -> bool {
    !e.is_connect() && !e.is_builder()
}

/// A request that got no answer. Refused by the egress guard (the URL's name resolved to an
/// address the operator does not allow): permanent, nothing was sent. Otherwise transient, and
/// possibly delivered when the request may have gone out ([`may_have_arrived`]).
pub fn unanswered(detail: String, e: &reqwest::Error) -> SendError {
    if egress::refusal_in(e).is_some() {
        return SendError::permanent(detail);
    }
    SendError::transient(detail).possibly_delivered(may_have_arrived(e))
}

/// At most `max` characters of `s`, with `…` when cut.
pub fn excerpt(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    format!("{}…", s.chars().take(max).collect::<String>())
}

/// A reqwest error with its causes (e.g. "error sending request: connection refused").
/// Pass `e.without_url()` when the URL holds a secret.
pub fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms_and_excerpts() {
        assert_eq!(parse_retry_after(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None, "a date in the past is no delay");
        assert!(parse_retry_after("soon").is_none());
        assert_eq!(excerpt("abcdef", 3), "abc…");
        assert_eq!(excerpt("abc", 3), "abc");
    }
}
