//! The leases this daemon holds on claimed work, and the loop that keeps them.
//!
//! A claim leases its rows for `PGCOURIER_LEASE`; once a lease runs out the rescuer (of any
//! daemon) hands the row to a new claim. So a daemon must either finish and record its work
//! within the lease or keep the lease alive. [`Leases`] remembers, per claimed row, the latest
//! moment this daemon can be sure the lease is still its own (its local deadline, counted from
//! just before the claim or renewal was sent, so it is never later than the database's own);
//! [`keep`] renews every held lease in one statement every third of a lease. The workers bound
//! every step after the claim by that deadline: work starts only while at least half a lease is
//! left, work in progress is abandoned when the deadline passes (the row's next attempt is then
//! flagged as a possible duplicate by the rescuer), and a row whose renewal comes back without it
//! (rescued, or changed by an operator) is dropped at once. Slow work is therefore never handed
//! to a second worker while it runs, however long it takes, as long as the database answers.
//!
//! Used by the outbound dispatcher (a lease per send) and the inbound worker (a lease per
//! decision, whose fence value changes with each renewal: hence the value kept per key).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Leases held by one worker: key → local deadline and the value the renewal fences on.
pub struct Leases<K, V = ()> {
    /// How long a lease lasts from its claim or last renewal.
    lease: Duration,
    /// The leases still believed held. A key is absent once recorded, released or lost.
    held: Mutex<HashMap<K, Held<V>>>,
    /// Held by a renewal from its snapshot to its result, and by [`Leases::settle`]: a writer
    /// that fences on the values never races a renewal that changes them.
    renewing: tokio::sync::Mutex<()>,
}

struct Held<V> {
    /// The last moment the lease is surely ours.
    deadline: Instant,
    /// What the database fences this lease on (e.g. the inbound claim's `updated_at`).
    value: V,
}

impl<K: Eq + Hash + Clone, V: Clone> Leases<K, V> {
    pub fn new(lease: Duration) -> Leases<K, V> {
        Leases { lease, held: Mutex::default(), renewing: tokio::sync::Mutex::default() }
    }

    /// Hold off renewals while the caller reads fence values and writes under them.
    pub async fn settle(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.renewing.lock().await
    }

    /// The configured lease length.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Record a lease claimed by a statement sent at `since`.
    pub fn hold(&self, key: K, value: V, since: Instant) {
        self.lock().insert(key, Held { deadline: since + self.lease, value });
    }

    /// Forget a lease (its outcome is recorded, or it was given back).
    pub fn forget(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Time left on the lease; None when it is no longer held (lost, or forgotten).
    pub fn time_left(&self, key: &K) -> Option<Duration> {
        self.lock().get(key).map(|h| h.deadline.saturating_duration_since(Instant::now()))
    }

    /// The value the lease is fenced on, while it is held.
    pub fn value(&self, key: &K) -> Option<V> {
        self.lock().get(key).map(|h| h.value.clone())
    }

    /// Every held lease with its fence value.
    pub fn snapshot(&self) -> Vec<(K, V)> {
        self.lock().iter().map(|(k, h)| (k.clone(), h.value.clone())).collect()
    }

    /// A renewal of `asked`, sent at `sent_at`, kept the leases in `kept` (with their new fence
    /// values): they run for a lease from `sent_at`; the other asked keys are lost. Keys taken
    /// after the renewal's snapshot are left alone. Returns how many leases were lost.
    pub fn renewed(&self, sent_at: Instant, asked: &[K], kept: Vec<(K, V)>) -> usize {
        let mut held = self.lock();
        let mut kept: HashMap<K, V> = kept.into_iter().collect();
        let mut lost = 0;
        for key in asked {
            match kept.remove(key) {
                Some(value) => {
                    if let Some(h) = held.get_mut(key) {
                        h.deadline = sent_at + self.lease;
                        h.value = value;
                    }
                }
                None => {
                    if held.remove(key).is_some() {
                        lost += 1;
                    }
                }
            }
        }
        lost
    }

    /// Resolves once the lease on `key` has run out or is lost.
    pub async fn run_out(&self, key: &K) {
        self.below(key, Duration::ZERO).await
    }

    /// Resolves once at most `left` is left on the lease on `key`, or it is lost.
    pub async fn below(&self, key: &K, left: Duration) {
        // polled, so that a loss reported by a renewal is noticed within a quarter lease
        let step = (self.lease / 4).max(Duration::from_millis(10));
        loop {
            match self.time_left(key) {
                None => return,
                Some(now_left) if now_left <= left => return,
                Some(now_left) => tokio::time::sleep((now_left - left).min(step)).await,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Held<V>>> {
        self.held.lock().expect("leases lock")
    }
}

/// One renewal as a worker passes it to [`keep`]: the leases asked for in, those still held out.
pub type Renewal<K, V> = futures_util::future::BoxFuture<'static, Result<Vec<(K, V)>, crate::db::DbError>>;

/// Renew every lease in `leases` each third of a lease until `stop`, with `renew` (one statement
/// for all of them; it returns the leases still held, with their new fence values). A failed
/// renewal changes nothing: deadlines keep running down, and the next renewal tries again.
pub async fn keep<K, V, F, Fut, E>(leases: Arc<Leases<K, V>>, what: &'static str, renew: F, stop: CancellationToken)
where
    K: Eq + Hash + Clone,
    V: Clone,
    F: Fn(Vec<(K, V)>) -> Fut,
    Fut: Future<Output = Result<Vec<(K, V)>, E>>,
    E: std::fmt::Display,
{
    let every = (leases.lease() / 3).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let _renewing = leases.settle().await;
        let held = leases.snapshot();
        if held.is_empty() {
            continue;
        }
        let asked: Vec<K> = held.iter().map(|(k, _)| k.clone()).collect();
        let sent_at = Instant::now();
        match renew(held).await {
            Ok(kept) => {
                let lost = leases.renewed(sent_at, &asked, kept);
                metrics::counter!("pgcourier_lease_renewals_total", "work" => what).increment(asked.len() as u64);
                if lost > 0 {
                    metrics::counter!("pgcourier_leases_lost_total", "work" => what).increment(lost as u64);
                    tracing::warn!(work = what, lost, "leases lost (rescued or changed meanwhile); their work is dropped");
                }
            }
            Err(e) => tracing::warn!(work = what, error = %e, held = asked.len(), "renewing leases failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn renewals_move_deadlines_and_drop_lost_keys() {
        let leases: Leases<i64, u8> = Leases::new(Duration::from_secs(3));
        let t0 = Instant::now();
        leases.hold(1, 0, t0);
        leases.hold(2, 0, t0);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(leases.time_left(&1), Some(Duration::from_secs(1)));
        let lost = leases.renewed(Instant::now(), &[1, 2], vec![(1, 7)]);
        assert_eq!(lost, 1);
        assert_eq!(leases.time_left(&1), Some(Duration::from_secs(3)));
        assert_eq!(leases.value(&1), Some(7));
        assert_eq!(leases.time_left(&2), None, "a key the renewal did not keep is lost");
        // a key taken after the renewal's snapshot is left alone
        leases.hold(3, 0, Instant::now());
        assert_eq!(leases.renewed(Instant::now(), &[1], vec![(1, 8)]), 0);
        assert!(leases.time_left(&3).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn run_out_resolves_at_the_deadline_or_on_loss() {
        let leases: Arc<Leases<i64>> = Arc::new(Leases::new(Duration::from_secs(4)));
        leases.hold(1, (), Instant::now());
        let start = Instant::now();
        leases.run_out(&1).await;
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        leases.hold(2, (), Instant::now());
        let l = leases.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            l.forget(&2);
        });
        let start = Instant::now();
        leases.run_out(&2).await;
        assert!(start.elapsed() <= Duration::from_secs(2), "a lost lease is noticed within a quarter lease");
    }
}
