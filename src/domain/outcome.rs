//! Error classes and the one place that turns a send attempt's result into what happens next.
//!
//! Adapters classify (an SMTP 451 is transient, a Telegram 403 suppresses); [`decide`] decides
//! (retry with backoff, fail and dead-letter, suppress the address).

use super::retry::{RetryDecision, RetryPolicy};
use super::vocab::vocabulary;
use std::time::Duration;

vocabulary! {
    /// Why an address goes on the suppression list (`et_suppressions.reason`, a CHECK list).
    pub enum SuppressReason: "suppression reason" {
        HardBounce = "hard_bounce",
        Complaint = "complaint",
        Unsubscribed = "unsubscribed",
        Blocked = "blocked",
        Manual = "manual",
    }
}

/// How a failed attempt is classified at the adapter edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try again later (4xx, connection errors, timeouts, 5xx from HTTP providers).
    Transient { retry_after: Option<Duration> },
    /// The provider throttled us; try again no sooner than it asks.
    RateLimited { retry_after: Option<Duration> },
    /// Will never succeed as written (5xx SMTP, invalid number, missing credentials).
    Permanent,
    /// Permanent, and the recipient address goes on the suppression list.
    Suppress { reason: SuppressReason, address: Option<String> },
    /// The message itself cannot be sent as stored (an address the adapter cannot use, a
    /// template written past the insert trigger, content the channel cannot carry): permanent,
    /// and the provider was never asked. A corrected copy can be sent instead.
    Invalid,
}

impl ErrorClass {
    /// The spelling stored in `et_messages.error_class`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorClass::Transient { .. } => "transient",
            ErrorClass::RateLimited { .. } => "rate_limited",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Suppress { .. } => "suppress",
            ErrorClass::Invalid => "validation",
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, ErrorClass::Transient { .. } | ErrorClass::RateLimited { .. })
    }

    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }
}

/// How the provider answered an attempt (seed 003's provider response `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    /// Accepted.
    Ok,
    /// Refused, for now (a 4xx SMTP reply, an HTTP 5xx) or for good.
    Rejected,
    /// Throttled: the attempt is retried no sooner than the provider asked.
    RateLimited,
    /// No answer: the connection failed, broke or timed out (the message may have arrived).
    Unknown,
}

/// The provider's answer to one attempt, kept on the message (`provider_response`) and on the
/// attempt's event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ProviderResponse {
    pub status: ResponseStatus,
    /// The provider's code: an SMTP reply code, an HTTP status, a provider error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// What pgcourier makes of the answer, in a sentence.
    pub message: String,
    /// The answer as received, at most [`RAW_MAX`] characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

/// The most characters of a provider's answer kept in `raw` (seed 003).
pub const RAW_MAX: usize = 1024;

impl ProviderResponse {
    /// The answer to an accepted attempt.
    pub fn accepted(code: Option<String>, raw: Option<String>) -> Self {
        ProviderResponse { status: ResponseStatus::Ok, code, message: "accepted".to_owned(), raw: raw.map(cut) }
    }

    /// The answer to a failed attempt, or None when the provider was never asked (the message
    /// was invalid). Without a code or raw answer the provider did not answer: `unknown`.
    pub fn failed(class: &ErrorClass, code: Option<String>, raw: Option<String>, message: &str) -> Option<Self> {
        let status = match class {
            ErrorClass::Invalid => return None,
            ErrorClass::RateLimited { .. } => ResponseStatus::RateLimited,
            _ if code.is_none() && raw.is_none() => ResponseStatus::Unknown,
            _ => ResponseStatus::Rejected,
        };
        Some(ProviderResponse { status, code, message: cut(message.to_owned()), raw: raw.map(cut) })
    }
}

/// At most [`RAW_MAX`] characters.
fn cut(s: String) -> String {
    if s.chars().count() <= RAW_MAX {
        s
    } else {
        s.chars().take(RAW_MAX).collect()
    }
}

/// What happens to a message after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Delivered.
    Sent,
    /// Back to the queue, due after this delay.
    Retry(Duration),
    /// Failed for good: `failed` + dead queue row; `suppress` names an address to suppress.
    Fail { suppress: Option<(SuppressReason, Option<String>)> },
}

/// Decide what follows attempt `attempt` (1-based) whose result was `failure` (None = success).
/// `unit` is a uniform random draw in `[0, 1)` for the jitter.
pub fn decide(failure: Option<&ErrorClass>, attempt: u32, policy: &RetryPolicy, unit: f64) -> Decision {
    match failure {
        None => Decision::Sent,
        Some(ErrorClass::Transient { retry_after } | ErrorClass::RateLimited { retry_after }) => {
            match policy.after_failure(attempt, unit, *retry_after) {
                RetryDecision::RetryAfter(d) => Decision::Retry(d),
                RetryDecision::GiveUp => Decision::Fail { suppress: None },
            }
        }
        Some(ErrorClass::Permanent | ErrorClass::Invalid) => Decision::Fail { suppress: None },
        Some(ErrorClass::Suppress { reason, address }) => Decision::Fail { suppress: Some((*reason, address.clone())) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_fails_at_once_transient_retries_until_exhausted() {
        let p = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
        assert_eq!(decide(None, 1, &p, 0.3), Decision::Sent);
        assert_eq!(decide(Some(&ErrorClass::Permanent), 1, &p, 0.3), Decision::Fail { suppress: None });
        let t = ErrorClass::Transient { retry_after: None };
        assert!(matches!(decide(Some(&t), 1, &p, 0.3), Decision::Retry(_)));
        assert!(matches!(decide(Some(&t), 2, &p, 0.3), Decision::Retry(_)));
        assert_eq!(decide(Some(&t), 3, &p, 0.3), Decision::Fail { suppress: None });
        let s = ErrorClass::Suppress { reason: SuppressReason::HardBounce, address: Some("a@x.io".into()) };
        assert_eq!(decide(Some(&s), 1, &p, 0.3), Decision::Fail { suppress: Some((SuppressReason::HardBounce, Some("a@x.io".into()))) });
    }

    #[test]
    fn provider_responses_say_who_answered() {
        let ok = ProviderResponse::accepted(Some("250".into()), Some("2.0.0 queued".into()));
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            serde_json::json!({"status": "ok", "code": "250", "message": "accepted", "raw": "2.0.0 queued"})
        );
        assert_eq!(ProviderResponse::failed(&ErrorClass::Invalid, None, None, "bad address"), None, "the provider was never asked");
        let t = ErrorClass::Transient { retry_after: None };
        assert_eq!(ProviderResponse::failed(&t, None, None, "connection reset").unwrap().status, ResponseStatus::Unknown);
        assert_eq!(ProviderResponse::failed(&t, Some("451".into()), None, "try later").unwrap().status, ResponseStatus::Rejected);
        let r = ErrorClass::RateLimited { retry_after: None };
        let long = "x".repeat(5000);
        let limited = ProviderResponse::failed(&r, Some("429".into()), Some(long.clone()), &long).unwrap();
        assert_eq!((limited.status, limited.raw.unwrap().len(), limited.message.len()), (ResponseStatus::RateLimited, RAW_MAX, RAW_MAX));
        assert_eq!(decide(Some(&ErrorClass::Invalid), 1, &RetryPolicy::default(), 0.5), Decision::Fail { suppress: None });
    }

    #[test]
    fn rate_limits_honour_the_provider_hint() {
        let p = RetryPolicy::default();
        let r = ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(42)) };
        assert_eq!(decide(Some(&r), 1, &p, 0.0), Decision::Retry(Duration::from_secs(42)));
    }
}
