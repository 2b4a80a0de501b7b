//! This daemon's circuit breakers, one per session, configured from the session's `config`
//! (`breaker_failure_rate`, `breaker_min_requests`, `breaker_window_ms`, `breaker_cooldown_ms`).

use crate::domain::breaker::{Admit, Breaker, BreakerConfig, State};
use crate::rows::SessionRow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Breakers {
    by_session: Mutex<HashMap<i64, Breaker>>,
}

fn config(session: &SessionRow) -> BreakerConfig {
    let c = &session.config;
    let d = BreakerConfig::default();
    let ms = |k: &str| c.get(k).and_then(|v| v.as_u64()).map(Duration::from_millis);
    BreakerConfig {
        failure_rate: c.get("breaker_failure_rate").and_then(|v| v.as_f64()).unwrap_or(d.failure_rate),
        min_requests: c.get("breaker_min_requests").and_then(|v| v.as_u64()).map(|v| v as usize).unwrap_or(d.min_requests),
        window: ms("breaker_window_ms").unwrap_or(d.window),
        cooldown: ms("breaker_cooldown_ms").unwrap_or(d.cooldown),
    }
}

impl Breakers {
    fn with<T>(&self, session: &SessionRow, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut all = self.by_session.lock().expect("breakers lock");
        let wanted = config(session);
        let b = all.entry(session.id).or_insert_with(|| Breaker::new(wanted));
        if b.config() != wanted {
            *b = Breaker::new(wanted); // the operator changed the session's settings
        }
        f(b)
    }

    pub fn admit(&self, session: &SessionRow, now: Instant) -> Admit {
        self.with(session, |b| b.admit(now))
    }

    /// Count an outcome; returns (new state, failure rate) when the state changed.
    pub fn record(&self, session: &SessionRow, now: Instant, provider_failed: bool) -> Option<(State, f64)> {
        self.with(session, |b| b.record(now, provider_failed).map(|state| (state, b.failure_rate())))
    }
}
