//! The outbound dispatcher: claim a batch, send each message outside any transaction (bounded
//! in total and per session), hand outcomes to one writer that records them in batches.
//!
//! It loops without sleeping while claims come back full. While work keeps arriving it stays
//! marked busy and looks again every [`BUSY_POLL`], and it keeps doing so for [`BUSY_LINGER`]
//! after the last claim that found work: under a steady trickle inserts then send no NOTIFY at
//! all (a NOTIFY serialises committing transactions cluster-wide). Once idle that long it drops
//! the mark and claims once more. An insert decides whether to notify when it runs, not when it
//! commits: a transaction that read the mark before it went may commit after that last claim,
//! with no NOTIFY to come. So the dispatcher then claims again each time some of the
//! transactions in progress when the mark went have ended (any that read the mark is among
//! them), and only once none is left waits for a NOTIFY, the next scheduled row falling due, or
//! the poll interval, whichever comes first. On shutdown it stops claiming, lets started sends
//! finish (up to the shutdown timeout) and gives back the leases of sends that never started.
//!
//! Every claimed row's lease is held in [`Leases`] and renewed by [`lease::keep`] until its
//! outcome is recorded. A send starts only while at least half a lease is left; a send still
//! running when its lease runs out (renewals failed: the database is away) or is lost is
//! abandoned, so the rescuer never hands out a row whose send is still running. Either way the
//! row's next attempt is flagged as a possible duplicate, and counted when it is claimed.

use super::breakers::Breakers;
use super::fair::{Budgets, Loads};
use super::outcomes::{self, Finished};
use super::render;
use crate::channels::{Outbound, Receipt, Registry, SendError};
use crate::config::Config;
use crate::db::outbound::{self as q, Claimed, LeaseKey, OutcomeRow, Released};
use crate::db::DbError;
use crate::domain::breaker::{Admit, State};
use crate::domain::outcome::{decide, Decision};
use crate::domain::retry::RetryPolicy;
use crate::domain::vocab::{Provider, Status};
use crate::lease::{self, Leases};
use crate::rows::SessionRow;
use deadpool_postgres::Pool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// While busy, how soon the dispatcher looks for new work after a claim that was not full.
const BUSY_POLL: Duration = Duration::from_millis(5);
/// How long the dispatcher stays busy (polling every [`BUSY_POLL`], inserts not notifying) after
/// the last claim that found work: long enough to span the gaps of a steady load, short enough
/// that an idle daemon soon goes back to waiting on LISTEN (at most 200 empty claims per burst).
const BUSY_LINGER: Duration = Duration::from_secs(1);
/// How long to wait before claiming again after `failures` failed claims in a row: from
/// [`BUSY_POLL`] doubling up to the poll interval, so one failure costs the waiting rows a few
/// milliseconds and a database that stays away is asked at the poll interval.
pub fn claim_backoff(failures: u32, poll_interval: Duration) -> Duration {
    let doubled = BUSY_POLL.saturating_mul(1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX));
    doubled.min(poll_interval)
}

/// A send starts only while at least this share of its lease is left (renewals keep it above
/// two thirds while the database answers); a message whose lease ran down while it waited is
/// given back unsent.
const LEASE_START_BY: f64 = 0.5;
/// How long a busy mark lasts unless refreshed (a daemon that dies stops suppressing NOTIFYs
/// after this); it is refreshed once half of it has passed.
const BUSY_TTL: Duration = Duration::from_secs(2);
/// While transactions that may have read a deleted mark are still open, how often the dispatcher
/// looks whether one has ended, at most: from [`BUSY_POLL`], doubling while none ends, so a
/// session left idle in a transaction costs a few queries a second.
const HANDOVER_POLL: Duration = Duration::from_millis(50);

/// This daemon's entry in `et_dispatch_busy`: set while claims find work, so inserts skip their
/// NOTIFY; deleted when a claim comes back empty.
struct BusyMark {
    worker: String,
    /// When the mark was last written (None: no mark stands).
    written: Option<Instant>,
    /// When a claim last found work: the mark stands until [`BUSY_LINGER`] after it.
    last_work: Option<Instant>,
    /// The transactions in progress when the mark was deleted that have not ended yet: any of
    /// them may have read the mark and will commit without a NOTIFY.
    handing_over: Vec<i64>,
}

impl BusyMark {
    fn new(worker: &str) -> BusyMark {
        BusyMark { worker: worker.to_owned(), written: None, last_work: None, handing_over: Vec::new() }
    }

    /// A mark stands and a claim found work less than [`BUSY_LINGER`] ago: keep polling.
    fn lingering(&self) -> bool {
        self.written.is_some() && self.last_work.is_some_and(|at| at.elapsed() < BUSY_LINGER)
    }

    /// A claim found work: write or refresh the mark (at most every BUSY_TTL / 2).
    async fn claimed(&mut self, pool: &Pool) {
        self.last_work = Some(Instant::now());
        if self.written.is_some_and(|at| at.elapsed() < BUSY_TTL / 2) {
            return;
        }
        let result: Result<(), DbError> = async {
            let client = pool.get().await?;
            Ok(q::mark_busy(&client, &self.worker, BUSY_TTL).await?)
        }
        .await;
        match result {
            Ok(()) => {
                self.written = Some(Instant::now());
                // inserts skip their NOTIFY again; the next deletion looks at what is open then
                self.handing_over.clear();
            }
            // without the mark inserts keep notifying: slower, never wrong
            Err(e) => tracing::debug!(error = %e, "could not mark the dispatcher busy"),
        }
    }

    /// A claim came back empty: delete the mark. True if one stood (then claim once more).
    async fn went_idle(&mut self, pool: &Pool) -> bool {
        if self.written.is_none() {
            return false;
        }
        let result: Result<_, DbError> = async {
            let client = pool.get().await?;
            Ok(q::clear_busy(&client, &self.worker).await?)
        }
        .await;
        match result {
            Ok(open) => self.handing_over = open,
            // the mark expires by itself within BUSY_TTL
            Err(e) => tracing::warn!(error = %e, "could not clear the dispatcher's busy mark"),
        }
        self.written = None;
        true
    }

    /// Wait until one of the transactions in [`BusyMark::handing_over`] has ended (its rows, if
    /// any, can be claimed now), looking every [`BUSY_POLL`] and less often, up to
    /// [`HANDOVER_POLL`], while none does; or until `wake`, `shutdown` or `wait` has passed (the
    /// next scheduled row falls due, or the poll interval).
    async fn one_ended(&mut self, pool: &Pool, wake: &Notify, shutdown: &CancellationToken, wait: Duration) {
        let until = Instant::now() + wait;
        let mut every = BUSY_POLL;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wake.notified() => return,
                _ = tokio::time::sleep_until(until) => return,
                _ = tokio::time::sleep(every) => {}
            }
            let result: Result<_, DbError> = async {
                let client = pool.get().await?;
                Ok(q::still_running(&client, &self.handing_over).await?)
            }
            .await;
            match result {
                Ok(open) if open.len() == self.handing_over.len() => every = (every * 2).min(HANDOVER_POLL),
                Ok(open) => {
                    self.handing_over = open;
                    return;
                }
                Err(e) => {
                    // claim once more and leave the rest to NOTIFYs and the poll interval
                    tracing::warn!(error = %e, "could not look up the transactions open when the busy mark went");
                    self.handing_over.clear();
                    return;
                }
            }
        }
    }
}

pub struct Dispatcher {
    pool: Pool,
    config: Config,
    /// Provider adapters per session.
    registry: Arc<Registry>,
    /// Per-session concurrency limits.
    session_slots: Mutex<HashMap<i64, Arc<Semaphore>>>,
    /// Per-session circuit breakers (this daemon's view).
    breakers: Breakers,
    /// Woken by `et_outbound` notifications and the rescuer.
    wake: Arc<Notify>,
    /// The leases of claimed rows until their outcomes are recorded.
    leases: Arc<Leases<LeaseKey>>,
    /// What each session holds and may still claim (fair share between sessions).
    loads: Loads,
}

impl Dispatcher {
    pub fn new(pool: Pool, config: Config, wake: Arc<Notify>) -> Dispatcher {
        let leases = Arc::new(Leases::new(config.lease));
        let loads = Loads::new(config.session_concurrency, config.max_in_flight);
        let allow = config.network_allow;
        Dispatcher {
            pool,
            config,
            registry: Arc::new(Registry::new(allow)),
            session_slots: Mutex::default(),
            breakers: Breakers::default(),
            wake,
            leases,
            loads,
        }
    }

    /// Sends at once on `m`'s session: its `config.concurrency`, else the daemon default.
    fn concurrency(&self, m: &Claimed) -> usize {
        m.session.config.get("concurrency").and_then(|v| v.as_u64()).map(|v| v.max(1) as usize).unwrap_or(self.config.session_concurrency)
    }

    fn slots_for(&self, m: &Claimed) -> Arc<Semaphore> {
        let limit = self.concurrency(m);
        let mut slots = self.session_slots.lock().expect("slots lock");
        slots.entry(m.session.id).or_insert_with(|| Arc::new(Semaphore::new(limit))).clone()
    }

    /// Run until `shutdown`, then drain as described in the module docs.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        // Each finished send travels with its in-flight permit, which the writer drops only once
        // the outcome is recorded: leased-but-unrecorded rows stay bounded by max_in_flight, so a
        // slow database slows claiming instead of letting leases pile up and expire.
        let (tx, rx) = mpsc::unbounded_channel::<(Finished, OwnedSemaphorePermit)>();
        let writer = tokio::spawn(outcomes::write(this.pool.clone(), this.config.worker_id.clone(), this.leases.clone(), rx));
        // renewals go on until the last outcome is recorded, after shutdown too
        let keeper_stop = CancellationToken::new();
        let keeper = tokio::spawn(lease::keep(this.leases.clone(), "send", renewer(&this), keeper_stop.clone()));
        let in_flight = Arc::new(Semaphore::new(this.config.max_in_flight));
        let sends = TaskTracker::new();
        let worker = this.config.worker_id.as_str();
        let mut busy = BusyMark::new(worker);
        // claims failed in a row (the database away, a statement cancelled): sets the backoff
        let mut claim_failures = 0u32;

        while !shutdown.is_cancelled() {
            let free = in_flight.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    permit = in_flight.clone().acquire_owned() => drop(permit),
                }
                continue;
            }
            // a full batch, else the largest power of two that is free: the claim's LIMIT is
            // part of its statement (see db::outbound::claim), so few distinct values
            let want = if free >= this.config.batch_size { this.config.batch_size } else { 1 << free.ilog2() };
            // (before the claim: the lease runs from the claim's now())
            let claimed_at = Instant::now();
            let batch = match this.claim(want).await {
                Ok(batch) => {
                    claim_failures = 0;
                    batch
                }
                Err(e) => {
                    // Soon at first: rows committed meanwhile may have sent no NOTIFY (the busy
                    // mark stands until its TTL), so a one-off failure must not cost them a poll.
                    claim_failures += 1;
                    let backoff = claim_backoff(claim_failures, this.config.poll_interval);
                    tracing::warn!(error = %e, failures = claim_failures, ?backoff, "claim failed; claiming again after a backoff");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = this.wake.notified() => continue,
                        _ = tokio::time::sleep(backoff) => continue,
                    }
                }
            };
            let full = batch.len() == want;
            let claimed_any = !batch.is_empty();
            for m in batch {
                this.leases.hold((m.tenant_id.clone(), m.id, m.attempt), (), claimed_at);
                let permit = in_flight.clone().try_acquire_owned().expect("claimed no more than the free permits");
                let span = tracing::info_span!("send", public_id = %m.public_id, tenant = %m.tenant_id, attempt = m.attempt);
                let (this, tx, shutdown) = (this.clone(), tx.clone(), shutdown.clone());
                sends.spawn(
                    async move {
                        let session = m.session.id;
                        let finished = this.send_one(m, &shutdown).await;
                        if this.loads.finished(session) {
                            // the session used its whole budget: its next row is waiting
                            this.wake.notify_one();
                        }
                        let _ = tx.send((finished, permit));
                    }
                    .instrument(span),
                );
            }
            if full {
                busy.claimed(&this.pool).await;
                continue;
            }
            if claimed_any {
                busy.claimed(&this.pool).await;
            }
            if busy.lingering() {
                // Work is arriving (or did a moment ago): stay marked busy, so inserts skip their
                // NOTIFY, and look again soon.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(BUSY_POLL) => continue,
                }
            }
            if busy.went_idle(&this.pool).await {
                // Inserts made while the mark stood sent no NOTIFY: claim once more before sleeping.
                continue;
            }
            if !busy.handing_over.is_empty() {
                // Neither will the transactions that read the mark and commit after that claim:
                // claim again each time some of those open when it went have ended. (The snapshot
                // is the cluster's: transactions of other databases are waited for too.)
                let wait = this.until_next_due().await;
                busy.one_ended(&this.pool, &this.wake, &shutdown, wait).await;
                continue;
            }
            let wait = this.until_next_due().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = this.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }

        busy.went_idle(&this.pool).await;
        sends.close();
        let timeout = this.config.shutdown_timeout;
        if tokio::time::timeout(timeout, sends.wait()).await.is_err() {
            tracing::warn!(
                in_flight = sends.len(),
                ?timeout,
                "sends still running at the shutdown timeout; their leases will expire and be rescued"
            );
        }
        drop(tx);
        let _ = writer.await;
        keeper_stop.cancel();
        let _ = keeper.await;
        tracing::info!(worker, "dispatcher stopped");
    }

    /// Claim up to `want` rows, each session within its budget (see [`super::fair`]).
    async fn claim(&self, want: usize) -> Result<Vec<Claimed>, DbError> {
        let client = self.pool.get().await?;
        let budgets = self.loads.budgets();
        let Budgets { sessions, budgets: per_session, unknown } = &budgets;
        let batch = q::claim_within(&client, &self.config.worker_id, want, self.config.lease, sessions, per_session, *unknown).await?;
        let mut taken: HashMap<i64, (usize, usize)> = HashMap::new();
        for m in &batch {
            taken.entry(m.session.id).or_insert((0, self.concurrency(m))).0 += 1;
        }
        for (session, (n, concurrency)) in taken {
            self.loads.claimed(session, concurrency, n, &budgets);
        }
        Ok(batch)
    }

    /// How long to sleep before the next scheduled row is due (at most the poll interval).
    async fn until_next_due(&self) -> Duration {
        let poll = self.config.poll_interval;
        let Ok(client) = self.pool.get().await else {
            return poll;
        };
        match q::next_due(&client).await {
            Ok(Some(at)) => (at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO).min(poll),
            _ => poll,
        }
    }

    /// Send one claimed message and decide its outcome (or give it back if shutdown came first,
    /// if its lease ran below [`LEASE_START_BY`] before the send could start, or if its
    /// session's breaker is open and there is no fallback; or drop it if its lease ran out
    /// during the send).
    async fn send_one(&self, m: Claimed, shutdown: &CancellationToken) -> Finished {
        let key: LeaseKey = (m.tenant_id.clone(), m.id, m.attempt);
        if m.possible_duplicate {
            tracing::warn!("an earlier attempt may have delivered this message: this attempt is flagged possible_duplicate");
            metrics::counter!("pgcourier_possible_duplicates_total", "channel" => m.session.channel.as_str(), "tenant" => m.tenant_id.clone())
                .increment(1);
        }
        let slots = self.slots_for(&m);
        let start_by = self.config.lease.mul_f64(LEASE_START_BY);
        let _slot = tokio::select! {
            biased;
            slot = slots.acquire_owned() => slot.expect("session semaphore never closes"),
            _ = shutdown.cancelled() => return Finished::Release(released(&m, None, "released unstarted at shutdown")),
            _ = self.leases.below(&key, start_by) => return self.unstarted(&m, key),
        };
        if self.leases.time_left(&key).is_none_or(|left| left <= start_by) {
            return self.unstarted(&m, key);
        }
        let all = m.recipients.len() + m.cc.len() + m.bcc.len();
        if !m.suppressed_now.is_empty() && m.suppressed_now.len() >= all {
            tracing::info!(suppressed = ?m.suppressed_now, "every recipient is suppressed; not sending");
            return self.finish(&m, m.session.provider, row(&m, Status::Suppressed, None, None));
        }
        let via = match self.route(&m) {
            Ok(via) => via,
            Err(deferred) => return Finished::Release(deferred),
        };
        let started = Instant::now();
        let (result, rendered) = match render::outbound(&m) {
            Err(e) => (Err(e), None),
            Ok(out) => match self.deliver(via, &out, &key, started).await {
                Some(result) => (result, Some(out)),
                None => return Finished::Dropped(key),
            },
        };
        let provider_failed = matches!(&result, Err(e) if e.class.is_transient());
        if let Some(change) = self.breakers.record(via, std::time::Instant::now(), provider_failed) {
            self.report(m.tenant_id.clone(), via.id, change);
        }
        self.loads.sent(m.session.id, started.elapsed());
        metrics::histogram!("pgcourier_send_duration_seconds", "provider" => via.provider.as_str()).record(started.elapsed().as_secs_f64());
        let mut outcome = self.outcome(&m, via, result, started.elapsed().as_millis() as u64);
        if let Some(out) = rendered {
            // kept only where rendering changed what was written (NULL: sent as written), so a
            // message without variables is not stored twice and its update can stay on its page
            outcome.rendered_subject = out.subject.filter(|s| m.subject.as_ref() != Some(s));
            outcome.rendered_text = out.text.filter(|t| m.body_text.as_ref() != Some(t));
            outcome.rendered_html = out.html.filter(|h| m.body_html.as_ref() != Some(h));
        }
        self.finish(&m, via.provider, outcome)
    }

    /// The session to send through: the message's own, or its fallback while the own session's
    /// breaker is open; with neither admitted, the message is given back until the breaker's
    /// next probe.
    fn route<'m>(&self, m: &'m Claimed) -> Result<&'m SessionRow, Released> {
        let retry_in = match self.breakers.admit(&m.session, std::time::Instant::now()) {
            Admit::Allow | Admit::Probe => return Ok(&m.session),
            Admit::Deny { retry_in } => retry_in,
        };
        match &m.fallback {
            Some(fb) if matches!(self.breakers.admit(fb, std::time::Instant::now()), Admit::Allow | Admit::Probe) => {
                tracing::info!(session = m.session.id, fallback = fb.id, "circuit open: sending via the fallback session");
                Ok(fb)
            }
            _ => {
                tracing::info!(session = m.session.id, retry_in_ms = retry_in.as_millis() as u64, "circuit open: deferred");
                let at = chrono::Utc::now() + chrono::Duration::from_std(retry_in).unwrap_or(chrono::Duration::zero());
                Err(released(m, Some(at), "circuit breaker open"))
            }
        }
    }

    /// Hand the rendered message to the session's channel, racing the lease: `None` when the
    /// lease ran out first. Past that point the row may be handed to another claim, so the send
    /// is abandoned; whether the provider got the message is unknown, and the rescuer flags the
    /// next attempt.
    async fn deliver(&self, via: &SessionRow, out: &Outbound, key: &LeaseKey, started: Instant) -> Option<Result<Receipt, SendError>> {
        let send = async {
            match self.registry.get(via) {
                Ok(channel) => channel.send(out).await,
                Err(e) => Err(e),
            }
        };
        tokio::select! {
            r = send => Some(r),
            _ = self.leases.run_out(key) => {
                tracing::warn!(elapsed_ms = started.elapsed().as_millis() as u64,
                               "the lease ran out during the send (renewals failed); send abandoned");
                metrics::counter!("pgcourier_sends_abandoned_total", "provider" => via.provider.as_str()).increment(1);
                None
            }
        }
    }

    /// The row to record for a finished send: sent with the provider's receipt (and the fallback
    /// session that carried it, if one did), or the failure's retry or final failure.
    fn outcome(&self, m: &Claimed, via: &SessionRow, result: Result<Receipt, SendError>, elapsed_ms: u64) -> OutcomeRow {
        match result {
            Ok(receipt) => {
                tracing::info!(elapsed_ms, provider = %via.provider, session = via.id, "sent");
                let mut r = row(m, Status::Sent, None, None);
                r.provider_response = Some(receipt.response());
                r.external_id = receipt.external_id;
                r.delivery = receipt.detail;
                if via.id != m.session.id {
                    let mut detail = r.delivery.take().unwrap_or_else(|| serde_json::json!({}));
                    detail["via_fallback_session"] = via.id.into();
                    r.delivery = Some(detail);
                }
                r
            }
            Err(e) => {
                metrics::counter!("pgcourier_provider_errors_total", "provider" => via.provider.as_str(), "class" => e.class.as_str())
                    .increment(1);
                let mut r = self.failed(m, &e, elapsed_ms);
                r.provider_response = e.response();
                r
            }
        }
    }

    /// Count the outcome (by the provider that carried it) and hand it to the writer.
    fn finish(&self, m: &Claimed, provider: Provider, outcome: OutcomeRow) -> Finished {
        metrics::counter!("pgcourier_messages_total", "status" => outcome.status.as_str(), "channel" => m.session.channel.as_str(),
                          "provider" => provider.as_str(), "tenant" => m.tenant_id.clone())
        .increment(1);
        Finished::Outcome(outcome)
    }

    /// A send that could not start: its lease is lost (nothing to write; the row is no longer
    /// ours) or ran low because renewals failed (given back unsent).
    fn unstarted(&self, m: &Claimed, key: LeaseKey) -> Finished {
        match self.leases.time_left(&key) {
            None => {
                tracing::warn!("the lease was lost before the send started; not sending");
                Finished::Dropped(key)
            }
            Some(left) => {
                tracing::warn!(left_ms = left.as_millis() as u64, "the lease could not be renewed; released unsent");
                Finished::Release(released(m, None, "released unsent: the lease could not be renewed"))
            }
        }
    }

    /// Write a breaker state change to `et_session_health`, off the send path.
    fn report(&self, tenant_id: String, session_id: i64, change: (State, f64)) {
        let (pool, worker) = (self.pool.clone(), self.config.worker_id.clone());
        tracing::warn!(session = session_id, state = change.0.as_str(), failure_rate = change.1, "circuit breaker changed state");
        tokio::spawn(async move {
            let result: Result<_, DbError> = async {
                let client = pool.get().await?;
                Ok(q::report_breaker(&client, &tenant_id, session_id, change.0.kind(), change.1, &worker).await?)
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "could not record the breaker state");
            }
        });
    }

    fn failed(&self, m: &Claimed, e: &SendError, elapsed_ms: u64) -> OutcomeRow {
        let policy = retry_policy(m);
        let detail: String = e.detail.chars().take(2000).collect();
        match decide(Some(&e.class), m.attempt as u32, &policy, rand::random::<f64>()) {
            Decision::Retry(delay) => {
                tracing::warn!(elapsed_ms, error = %detail, class = e.class.as_str(), retry_in_ms = delay.as_millis() as u64, "send failed; will retry");
                let mut r = row(m, Status::Queued, Some(detail), Some(e.class.as_str()));
                r.maybe_delivered = e.possibly_delivered;
                r.run_at = Some(chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX));
                r
            }
            Decision::Fail { suppress } => {
                let reason = if e.class.is_transient() {
                    format!("{detail} (attempt {} of {}: giving up)", m.attempt, policy.max_attempts)
                } else {
                    detail
                };
                tracing::error!(elapsed_ms, error = %reason, class = e.class.as_str(), "send failed for good");
                let mut r = row(m, Status::Failed, Some(reason), Some(e.class.as_str()));
                r.maybe_delivered = e.possibly_delivered;
                if let Some((why, address)) = suppress {
                    let address = address.or_else(|| m.recipients.first().cloned());
                    if let Some(address) = address {
                        // (normalised by the SQL rule, as recipients are: the bare address)
                        r.suppress = Some((m.session.channel, address, why));
                    }
                }
                r
            }
            Decision::Sent => unreachable!("a failure never decides Sent"),
        }
    }
}

/// The session's retry policy: `config.retry_base_ms` / `retry_cap_ms`, attempts from the queue.
fn retry_policy(m: &Claimed) -> RetryPolicy {
    let ms = |k: &str| m.session.config.get(k).and_then(|v| v.as_u64()).map(Duration::from_millis);
    let d = RetryPolicy::default();
    RetryPolicy {
        base: ms("retry_base_ms").unwrap_or(d.base),
        cap: ms("retry_cap_ms").unwrap_or(d.cap),
        max_attempts: m.max_attempts.max(1) as u32,
    }
}

/// The keeper's renewal: one statement for every lease the dispatcher holds.
fn renewer(this: &Arc<Dispatcher>) -> impl Fn(Vec<(LeaseKey, ())>) -> lease::Renewal<LeaseKey, ()> {
    let (pool, worker, lease) = (this.pool.clone(), this.config.worker_id.clone(), this.config.lease);
    move |held| {
        let (pool, worker) = (pool.clone(), worker.clone());
        Box::pin(async move {
            let keys: Vec<LeaseKey> = held.into_iter().map(|(k, ())| k).collect();
            let client = pool.get().await?;
            let kept = q::renew(&client, &worker, &keys, lease).await?;
            Ok(kept.into_iter().map(|k| (k, ())).collect())
        })
    }
}

fn released(m: &Claimed, run_at: Option<chrono::DateTime<chrono::Utc>>, reason: &'static str) -> Released {
    Released { tenant_id: m.tenant_id.clone(), message_id: m.id, attempt: m.attempt, run_at, reason }
}

fn row(m: &Claimed, status: Status, error: Option<String>, class: Option<&'static str>) -> OutcomeRow {
    OutcomeRow { error, error_class: class, ..OutcomeRow::bare(m.tenant_id.clone(), m.id, m.attempt, status) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_claim_is_tried_again_soon_then_at_the_poll_interval() {
        let poll = Duration::from_secs(1);
        assert_eq!(claim_backoff(1, poll), Duration::from_millis(5));
        assert_eq!(claim_backoff(2, poll), Duration::from_millis(10));
        assert_eq!(claim_backoff(8, poll), Duration::from_millis(640));
        assert_eq!(claim_backoff(9, poll), poll);
        assert_eq!(claim_backoff(u32::MAX, poll), poll);
    }
}
