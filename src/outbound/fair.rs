//! Fair share of a daemon's sends between sessions.
//!
//! A claim takes from each session with due work at most that session's budget: what it can
//! send within [`HORIZON`] at its concurrency and its recent send time, less what this daemon
//! already holds of it. A saturated or slow session (a newsletter on a slow relay) therefore
//! holds a few seconds' worth of claimed rows, not the daemon's whole in-flight capacity, and the
//! rest of its queue stays ready; another session's message is claimed by the next claim and
//! sent on its own slots. Across sessions a claim takes the best rows by priority, then due time.
//! When a send of a session that used its whole budget finishes, the dispatcher is woken to
//! claim that session's next row at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How far ahead a session's claimed rows may reach: it holds what it can send in this time.
pub const HORIZON: Duration = Duration::from_secs(1);

/// Weight of the newest send time in a session's running average.
const ALPHA: f64 = 0.2;

/// What this daemon knows of one session's load.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Claimed rows whose sends have not finished.
    held: usize,
    /// Sends at once (`config.concurrency`, else the daemon default).
    concurrency: usize,
    /// Running average of a send's time in seconds (None: nothing sent yet).
    avg_send: Option<f64>,
    /// The last claim gave the session its whole budget: more may be waiting.
    capped: bool,
}

/// The most rows a session may hold: its concurrency times the sends each slot completes within
/// [`HORIZON`] (at least two rounds, at most `most`, the daemon's in-flight capacity); two rounds
/// while its send time is unknown.
pub fn cap(concurrency: usize, avg_send: Option<f64>, most: usize) -> usize {
    let rounds = match avg_send {
        None => 2.0,
        Some(secs) => (HORIZON.as_secs_f64() / secs.max(1e-6)).ceil().max(2.0),
    };
    ((concurrency as f64 * rounds).min(most as f64) as usize).max(1)
}

/// Per-session loads of one dispatcher.
pub struct Loads {
    /// Concurrency of sessions that do not set their own.
    default_concurrency: usize,
    /// The dispatcher's in-flight capacity: no session holds more.
    most: usize,
    sessions: Mutex<HashMap<i64, Load>>,
}

/// The budgets of a claim: per known session, and for sessions this daemon has not seen yet.
pub struct Budgets {
    pub sessions: Vec<i64>,
    pub budgets: Vec<i32>,
    pub unknown: i32,
}

impl Loads {
    pub fn new(default_concurrency: usize, most: usize) -> Loads {
        Loads { default_concurrency, most, sessions: Mutex::default() }
    }

    /// What each session may still take in the next claim.
    pub fn budgets(&self) -> Budgets {
        let sessions = self.lock();
        let mut out = Budgets {
            sessions: Vec::with_capacity(sessions.len()),
            budgets: Vec::with_capacity(sessions.len()),
            unknown: cap(self.default_concurrency, None, self.most) as i32,
        };
        for (id, l) in sessions.iter() {
            out.sessions.push(*id);
            out.budgets.push(cap(l.concurrency, l.avg_send, self.most).saturating_sub(l.held) as i32);
        }
        out
    }

    /// A claim returned `taken` rows of `session` (concurrency `concurrency`) under `budgets`.
    pub fn claimed(&self, session: i64, concurrency: usize, taken: usize, budgets: &Budgets) {
        let budget = budgets.sessions.iter().position(|s| *s == session).map_or(budgets.unknown, |i| budgets.budgets[i]);
        let mut sessions = self.lock();
        let l = sessions.entry(session).or_insert(Load { held: 0, concurrency, avg_send: None, capped: false });
        l.held += taken;
        l.concurrency = concurrency;
        l.capped = taken >= budget.max(0) as usize;
    }

    /// A send of `session` took `took`.
    pub fn sent(&self, session: i64, took: Duration) {
        if let Some(l) = self.lock().get_mut(&session) {
            let secs = took.as_secs_f64();
            l.avg_send = Some(l.avg_send.map_or(secs, |avg| avg + ALPHA * (secs - avg)));
        }
    }

    /// A claimed row of `session` is done with (sent, failed, given back). True when the session
    /// had used its whole budget: claim again now, its next row is waiting.
    pub fn finished(&self, session: i64) -> bool {
        let mut sessions = self.lock();
        let Some(l) = sessions.get_mut(&session) else { return false };
        l.held = l.held.saturating_sub(1);
        std::mem::take(&mut l.capped)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Load>> {
        self.sessions.lock().expect("loads lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_concurrency_and_send_time() {
        assert_eq!(cap(16, None, 500), 32, "two rounds while the send time is unknown");
        assert_eq!(cap(16, Some(0.2), 500), 80, "a second's worth at 0.2 s a send");
        assert_eq!(cap(16, Some(3.0), 500), 32, "never less than two rounds");
        assert_eq!(cap(16, Some(0.00002), 1000), 1000, "a fast session may fill the daemon");
    }

    #[test]
    fn budgets_shrink_with_held_rows_and_capped_sessions_wake_the_dispatcher() {
        let loads = Loads::new(16, 500);
        let b = loads.budgets();
        assert_eq!((b.sessions.len(), b.unknown), (0, 32));
        loads.claimed(7, 16, 32, &b);
        loads.sent(7, Duration::from_millis(200));
        let b = loads.budgets();
        assert_eq!(b.budgets, vec![80 - 32]);
        assert!(loads.finished(7), "it had used its budget");
        assert!(!loads.finished(7), "woken once");
        loads.claimed(7, 16, 3, &b);
        assert!(!loads.finished(7), "3 of 48: not capped");
    }
}
