//! A circuit breaker per channel session, as plain data with the clock passed in.
//!
//! Closed: every send goes through; outcomes are counted over a sliding window. When at least
//! `min_requests` outcomes are in the window and the share of provider failures (transient and
//! rate-limit errors; a permanent error about one message says nothing about the provider) reaches
//! `failure_rate`, the breaker opens. Open: nothing goes to the session until `cooldown` has
//! passed; then one send is let through as a probe (half-open): success closes the breaker,
//! failure opens it again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    pub failure_rate: f64,
    pub min_requests: usize,
    pub window: Duration,
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failure_rate: 0.5, min_requests: 10, window: Duration::from_secs(60), cooldown: Duration::from_secs(30) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open { until: Instant },
    /// The cooldown passed and one probe is in flight.
    HalfOpen,
}

impl State {
    /// The spelling in `et_session_health.breaker_state`.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open { .. } => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// May a send go to the session now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Allow,
    /// Allowed as the half-open probe: its outcome decides.
    Probe,
    /// Not now; ask again after this long.
    Deny { retry_in: Duration },
}

#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
    /// (when, provider failure?) of recent outcomes while closed.
    window: VecDeque<(Instant, bool)>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Breaker {
        Breaker { config, state: State::Closed, window: VecDeque::new() }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    /// The failure share in the current window.
    pub fn failure_rate(&self) -> f64 {
        if self.window.is_empty() {
            return 0.0;
        }
        self.window.iter().filter(|(_, failed)| *failed).count() as f64 / self.window.len() as f64
    }

    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed => Admit::Allow,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen;
                Admit::Probe
            }
            State::Open { until } => Admit::Deny { retry_in: until - now },
            State::HalfOpen => Admit::Deny { retry_in: self.config.cooldown.min(Duration::from_secs(1)) },
        }
    }

    /// Count one outcome; returns the new state when it changed.
    pub fn record(&mut self, now: Instant, provider_failed: bool) -> Option<State> {
        let before = self.state;
        match self.state {
            State::HalfOpen => {
                self.window.clear();
                self.state = if provider_failed { State::Open { until: now + self.config.cooldown } } else { State::Closed };
            }
            State::Open { .. } => {} // late results of sends started before it opened
            State::Closed => {
                self.window.push_back((now, provider_failed));
                while let Some(&(at, _)) = self.window.front() {
                    if now.duration_since(at) > self.config.window {
                        self.window.pop_front();
                    } else {
                        break;
                    }
                }
                if self.window.len() >= self.config.min_requests && self.failure_rate() >= self.config.failure_rate {
                    self.state = State::Open { until: now + self.config.cooldown };
                }
            }
        }
        (std::mem::discriminant(&before) != std::mem::discriminant(&self.state)).then_some(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig { failure_rate: 0.5, min_requests: 4, window: Duration::from_secs(10), cooldown: Duration::from_secs(5) }
    }

    #[test]
    fn opens_at_the_threshold_probes_after_cooldown_and_closes_on_success() {
        let t = Instant::now();
        let mut b = Breaker::new(cfg());
        assert_eq!(b.record(t, true), None);
        assert_eq!(b.record(t, false), None);
        assert_eq!(b.record(t, true), None, "3 outcomes: below min_requests");
        assert!(matches!(b.record(t, false), Some(State::Open { .. })), "2/4 failed = 50%");
        assert_eq!(b.admit(t + Duration::from_secs(1)), Admit::Deny { retry_in: Duration::from_secs(4) });
        assert_eq!(b.admit(t + Duration::from_secs(5)), Admit::Probe);
        assert!(matches!(b.admit(t + Duration::from_secs(5)), Admit::Deny { .. }), "one probe at a time");
        assert_eq!(b.record(t + Duration::from_secs(6), false), Some(State::Closed));
        assert_eq!(b.admit(t + Duration::from_secs(6)), Admit::Allow);
    }

    #[test]
    fn a_failed_probe_reopens_and_old_outcomes_leave_the_window() {
        let t = Instant::now();
        let mut b = Breaker::new(cfg());
        for _ in 0..4 {
            b.record(t, true);
        }
        assert_eq!(b.admit(t + Duration::from_secs(5)), Admit::Probe);
        assert!(matches!(b.record(t + Duration::from_secs(5), true), Some(State::Open { .. })));
        let mut c = Breaker::new(cfg());
        c.record(t, true);
        c.record(t, true);
        // eleven seconds later the two failures are out of the window
        for i in 0..4 {
            assert_eq!(c.record(t + Duration::from_secs(11 + i), false), None);
        }
        assert_eq!(c.state(), State::Closed);
    }
}
