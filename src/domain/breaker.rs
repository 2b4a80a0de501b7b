//! A circuit breaker per channel session, as plain data with the clock passed in.
//!
//! Closed: every send goes through; outcomes are counted over a sliding window. When at least
//! `min_requests` outcomes are in the window and the share of provider failures (transient and
//! rate-limit errors; a permanent error about one message says nothing about the provider) reaches
//! `failure_rate`, the breaker opens. Open: nothing goes to the session until `cooldown` has
//! passed; then one send is let through as a probe (half-open): success closes the breaker,
//! failure opens it again.

use super::vocab::vocabulary;
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
    Open {
        until: Instant,
    },
    /// The cooldown passed and one probe is in flight.
    HalfOpen,
}

vocabulary! {
    /// What `et_session_health.breaker_state` says of a session's breaker (a CHECK list).
    pub enum BreakerState: "breaker_state" {
        Closed = "closed",
        Open = "open",
        HalfOpen = "half_open",
    }
}

impl State {
    /// The state as reported in `et_session_health.breaker_state`.
    pub fn kind(&self) -> BreakerState {
        match self {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen => BreakerState::HalfOpen,
        }
    }

    /// The spelling in `et_session_health.breaker_state`.
    pub fn as_str(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// May a send go to the session now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Allow,
    /// Allowed as the half-open probe: its outcome decides.
    Probe,
    /// Not now; ask again after this long.
    Deny {
        retry_in: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
    /// Recent outcomes while closed, counted per time slot of [`SLOTS`]th of the window (a slot
    /// leaves the window whole), so that recording costs the same at 10 or 10,000 sends a second
    /// and memory stays bounded: one entry per outcome, re-counted per outcome, cost 8% of the
    /// machine's CPU at 12,000 sends/s.
    window: VecDeque<Slot>,
    /// Outcomes and provider failures in `window`.
    total: u64,
    failed: u64,
}

/// Outcomes counted from `start` for one slot's length.
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: Instant,
    total: u64,
    failed: u64,
}

/// Time slots per window: outcomes leave the window up to 1/SLOTS of it late.
const SLOTS: u32 = 60;

impl Breaker {
    pub fn new(config: BreakerConfig) -> Breaker {
        Breaker { config, state: State::Closed, window: VecDeque::new(), total: 0, failed: 0 }
    }

    fn clear(&mut self) {
        self.window.clear();
        (self.total, self.failed) = (0, 0);
    }

    /// Count one outcome at `now` and forget the slots that left the window.
    fn count(&mut self, now: Instant, failed: bool) {
        let slot_len = self.config.window / SLOTS;
        match self.window.back_mut() {
            Some(slot) if now.saturating_duration_since(slot.start) < slot_len => {
                slot.total += 1;
                slot.failed += failed as u64;
            }
            _ => self.window.push_back(Slot { start: now, total: 1, failed: failed as u64 }),
        }
        self.total += 1;
        self.failed += failed as u64;
        while let Some(slot) = self.window.front() {
            if now.saturating_duration_since(slot.start) > self.config.window {
                self.total -= slot.total;
                self.failed -= slot.failed;
                self.window.pop_front();
            } else {
                break;
            }
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    /// The failure share in the current window.
    pub fn failure_rate(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.failed as f64 / self.total as f64
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
                self.clear();
                self.state = if provider_failed { State::Open { until: now + self.config.cooldown } } else { State::Closed };
            }
            State::Open { .. } => {} // late results of sends started before it opened
            State::Closed => {
                self.count(now, provider_failed);
                if self.total >= self.config.min_requests as u64 && self.failure_rate() >= self.config.failure_rate {
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

    #[test]
    fn many_outcomes_keep_a_bounded_window_with_exact_totals() {
        let t = Instant::now();
        let mut b = Breaker::new(cfg());
        // 100,000 outcomes over 20 s (one in ten a failure): only the last window's slots stay
        for i in 0..100_000u32 {
            b.record(t + Duration::from_micros(200 * i as u64), i % 10 == 0);
        }
        assert!(b.window.len() <= SLOTS as usize + 1, "{} slots", b.window.len());
        let (total, failed) = b.window.iter().fold((0, 0), |(n, f), s| (n + s.total, f + s.failed));
        assert_eq!((b.total, b.failed), (total, failed), "running totals match the slots");
        assert!((49_000..=51_000).contains(&b.total), "about 10 s of 5,000/s: {}", b.total);
        assert!((b.failure_rate() - 0.1).abs() < 0.001, "{}", b.failure_rate());
        assert_eq!(b.state(), State::Closed);
    }
}
