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
}

impl ErrorClass {
    /// The spelling stored in `et_messages.error_class`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorClass::Transient { .. } => "transient",
            ErrorClass::RateLimited { .. } => "rate_limited",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Suppress { .. } => "suppress",
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, ErrorClass::Transient { .. } | ErrorClass::RateLimited { .. })
    }

    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
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
        Some(ErrorClass::Permanent) => Decision::Fail { suppress: None },
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
    fn rate_limits_honour_the_provider_hint() {
        let p = RetryPolicy::default();
        let r = ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(42)) };
        assert_eq!(decide(Some(&r), 1, &p, 0.0), Decision::Retry(Duration::from_secs(42)));
    }
}
