//! Retry policy: full-jitter exponential backoff, a pure function of (attempt, random draw).
//!
//! `delay = rand(0, min(cap, base · 2^(attempt-1)))`, never shorter than a provider's own
//! retry hint (`Retry-After`, Telegram's `retry_after`).

use std::time::Duration;

/// How one channel session retries. Defaults: base 1 s, cap 10 min, 5 attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry waits up to this long.
    pub base: Duration,
    /// No retry waits longer than this (unless the provider asks for longer).
    pub cap: Duration,
    /// Attempts in all, the first one included; then the message fails (dead letter).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { base: Duration::from_secs(1), cap: Duration::from_secs(600), max_attempts: 5 }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this delay.
    RetryAfter(Duration),
    /// Give up: attempts are exhausted.
    GiveUp,
}

impl RetryPolicy {
    /// The decision after attempt number `attempt` (1-based) failed transiently.
    /// `unit` is a uniform random draw in `[0, 1)`; `hint` is the provider's own delay, if any.
    pub fn after_failure(&self, attempt: u32, unit: f64, hint: Option<Duration>) -> RetryDecision {
        if attempt >= self.max_attempts {
            return RetryDecision::GiveUp;
        }
        let exp = self.base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(31)));
        let ceiling = exp.min(self.cap);
        let jittered = ceiling.mul_f64(unit.clamp(0.0, 1.0));
        RetryDecision::RetryAfter(match hint {
            Some(h) if h > jittered => h,
            _ => jittered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RetryPolicy = RetryPolicy { base: Duration::from_secs(1), cap: Duration::from_secs(60), max_attempts: 5 };

    #[test]
    fn full_jitter_stays_within_the_exponential_ceiling() {
        assert_eq!(P.after_failure(1, 0.0, None), RetryDecision::RetryAfter(Duration::ZERO));
        assert_eq!(P.after_failure(1, 0.5, None), RetryDecision::RetryAfter(Duration::from_millis(500)));
        assert_eq!(P.after_failure(3, 0.5, None), RetryDecision::RetryAfter(Duration::from_secs(2)));
        // capped: attempt 4 would be 8 s, cap is 60 s; attempt 40 is capped
        let big = RetryPolicy { max_attempts: 100, ..P };
        assert_eq!(big.after_failure(40, 0.999_999, None), RetryDecision::RetryAfter(Duration::from_secs(60).mul_f64(0.999_999)));
    }

    #[test]
    fn gives_up_at_max_attempts() {
        assert!(matches!(P.after_failure(4, 0.5, None), RetryDecision::RetryAfter(_)));
        assert_eq!(P.after_failure(5, 0.5, None), RetryDecision::GiveUp);
    }

    #[test]
    fn a_provider_hint_is_a_floor() {
        let hint = Some(Duration::from_secs(30));
        assert_eq!(P.after_failure(1, 0.5, hint), RetryDecision::RetryAfter(Duration::from_secs(30)));
        assert_eq!(P.after_failure(1, 0.5, Some(Duration::from_millis(1))), RetryDecision::RetryAfter(Duration::from_millis(500)));
    }
}
