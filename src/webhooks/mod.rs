//! The webhook worker: delivers tenant status events (created by the `et_message_events`
//! trigger, `triggers/080_webhooks.sql`) to the tenants' endpoints, signed the Standard Webhooks
//! way ([`sign`]), at least once.
//!
//! Every poll interval (500 ms) it claims due deliveries ([`crate::db::webhooks::claim`]: a CTE
//! with `SKIP LOCKED`, a lease that pushes `run_at` forward, a few rows per endpoint at most) up
//! to its free delivery slots, sends each in its own task ([`deliver`]), and writes the outcomes
//! in batches fenced on the attempt number. A 2xx is delivered; 410 Gone disables the endpoint at
//! once; anything else is retried with full-jitter backoff (the receiver's `Retry-After` as a
//! floor, up to the cap) until the attempts are exhausted, then the delivery is dead and the
//! endpoint's consecutive-failure count grows; at the threshold the endpoint is disabled.
//! Every delivery re-checks the URL against the SSRF guard ([`crate::egress`]).
//!
//! A rotated secret signs along with the new one until its rollover window ends (the claim
//! returns it only until then); about once a minute the worker erases the secrets whose window
//! has passed.
//!
//! Safe with several daemons (claims skip locked rows; a worker that dies leaves its leases to
//! expire). On shutdown it stops claiming and waits for in-flight requests up to the shutdown
//! timeout; unfinished ones are retried after their lease.
//!
//! Settings: `PGCOURIER_WEBHOOK_*` in [`Config`] (the SSRF allowance is the daemon-wide
//! `PGCOURIER_NETWORK_ALLOW`, see [`crate::egress`]).

pub mod deliver;
pub mod sign;

use crate::config::Config;
use crate::db::webhooks::{self as q, Claimed, Outcome, Verdict};
use crate::domain::retry::{RetryDecision, RetryPolicy};
use deadpool_postgres::Pool;
use deliver::{Attempt, Sender};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the worker delivers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address classes the operator allows besides public ones.
    pub allow: crate::domain::network::Allow,
    /// Claim at least this often.
    pub poll: Duration,
    /// One request's timeout (connect, send, answer).
    pub timeout: Duration,
    /// Backoff and attempts per delivery.
    pub retry: RetryPolicy,
    /// Dead deliveries in a row that disable an endpoint.
    pub disable_after: i32,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// Deliveries claimed at once.
    pub batch: usize,
    /// Deliveries of one endpoint claimed at once.
    pub per_endpoint: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allow: crate::domain::network::Allow::NONE,
            poll: Duration::from_millis(500),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy { base: Duration::from_secs(10), cap: Duration::from_secs(6 * 3600), max_attempts: 8 },
            disable_after: 20,
            max_in_flight: 64,
            batch: 64,
            per_endpoint: 8,
        }
    }
}

impl Settings {
    /// The daemon's webhook settings (`PGCOURIER_WEBHOOK_*`, see [`Config`]).
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            allow: config.network_allow,
            poll: config.webhook_poll,
            timeout: config.webhook_timeout,
            retry: RetryPolicy {
                base: config.webhook_retry_base,
                cap: config.webhook_retry_cap,
                max_attempts: config.webhook_max_attempts,
            },
            disable_after: i32::try_from(config.webhook_disable_after).unwrap_or(i32::MAX),
            ..Settings::default()
        }
    }
}

/// Run the webhook worker until `shutdown` (settings from `config`); `wake` is notified on
/// `et_webhooks` (new deliveries), besides polling.
pub async fn run(pool: Pool, config: Config, wake: Arc<tokio::sync::Notify>, shutdown: CancellationToken) {
    let settings = Settings::from_config(&config);
    run_with(pool, config, settings, wake, shutdown).await
}

/// [`run`] with explicit settings.
pub async fn run_with(pool: Pool, config: Config, settings: Settings, wake: Arc<tokio::sync::Notify>, shutdown: CancellationToken) {
    let sender = match Sender::new(settings.allow, settings.timeout) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "webhook worker: cannot build its HTTP client; webhooks are not delivered");
            return;
        }
    };
    // a lease outlives the request it covers
    let lease = config.lease.max(settings.timeout + Duration::from_secs(5));
    let slots = Arc::new(Semaphore::new(settings.max_in_flight));
    let tasks = TaskTracker::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let mut pending: Vec<Outcome> = Vec::new();
    tracing::info!(allow = ?settings.allow, "webhook worker started");
    let mut forgotten_at: Option<tokio::time::Instant> = None;
    loop {
        while let Ok(o) = rx.try_recv() {
            pending.push(o);
        }
        record(&pool, &mut pending, settings.disable_after).await;
        if forgotten_at.is_none_or(|at| at.elapsed() >= FORGET_EVERY) {
            forgotten_at = Some(tokio::time::Instant::now());
            forget_expired_secrets(&pool).await;
        }
        if shutdown.is_cancelled() {
            break;
        }
        let free = slots.available_permits().min(settings.batch);
        let mut full = false;
        if free > 0 {
            match claim(&pool, free as i64, settings.per_endpoint, lease).await {
                Ok(claimed) => {
                    full = claimed.len() == free;
                    for delivery in claimed {
                        let Ok(permit) = slots.clone().acquire_owned().await else { break };
                        let (sender, tx, retry) = (sender.clone(), tx.clone(), settings.retry);
                        tasks.spawn(async move {
                            let outcome = attempt(&sender, &delivery, &retry).await;
                            let _ = tx.send(outcome);
                            drop(permit);
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhook claim failed"),
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(settings.poll) => {}
            _ = wake.notified() => {}
            Some(o) = rx.recv() => pending.push(o),
        }
    }
    tasks.close();
    if tokio::time::timeout(config.shutdown_timeout, tasks.wait()).await.is_err() {
        tracing::warn!("webhook requests still in flight at shutdown; they are retried after their lease");
    }
    while let Ok(o) = rx.try_recv() {
        pending.push(o);
    }
    record(&pool, &mut pending, settings.disable_after).await;
    tracing::info!("webhook worker stopped");
}

/// How often the worker erases secrets whose rollover window has passed.
const FORGET_EVERY: Duration = Duration::from_secs(60);

async fn forget_expired_secrets(pool: &Pool) {
    let result: Result<u64, crate::db::DbError> = async {
        let client = pool.get().await?;
        Ok(q::forget_expired_secrets(&client).await?)
    }
    .await;
    match result {
        Ok(0) => {}
        Ok(n) => tracing::info!(endpoints = n, "webhook secrets past their rollover window erased"),
        Err(e) => tracing::warn!(error = %e, "erasing expired webhook secrets failed; trying again later"),
    }
}

async fn claim(pool: &Pool, limit: i64, per_endpoint: i64, lease: Duration) -> Result<Vec<Claimed>, crate::db::DbError> {
    let client = pool.get().await?;
    Ok(q::claim(&client, limit, per_endpoint, lease).await?)
}

/// Write `pending`; on failure keep them for the next round (the leases cover them meanwhile).
async fn record(pool: &Pool, pending: &mut Vec<Outcome>, disable_after: i32) {
    if pending.is_empty() {
        return;
    }
    let result: Result<_, crate::db::DbError> = async {
        let client = pool.get().await?;
        Ok(q::record(&client, pending, disable_after).await?)
    }
    .await;
    match result {
        Ok(_) => pending.clear(),
        Err(e) => {
            tracing::warn!(error = %e, outcomes = pending.len(), "recording webhook outcomes failed; trying again");
            // never hold more than a lease's worth of stale outcomes
            if pending.len() > 10_000 {
                pending.clear();
            }
        }
    }
}

/// Send one delivery and decide what becomes of it.
async fn attempt(sender: &Sender, delivery: &Claimed, retry: &RetryPolicy) -> Outcome {
    let now = chrono::Utc::now().timestamp();
    let started = std::time::Instant::now();
    let result = sender.attempt(delivery, now).await;
    let took = started.elapsed().as_secs_f64();
    let (verdict, status, error) = verdict(&result, delivery.attempts, retry, rand::random::<f64>());
    let outcome = match verdict {
        Verdict::Delivered => "delivered",
        Verdict::Retry(_) => "retry",
        Verdict::Dead => "dead",
        Verdict::Gone => "gone",
    };
    metrics::counter!("pgcourier_webhook_attempts_total", "outcome" => outcome).increment(1);
    metrics::histogram!(crate::telemetry::WEBHOOK_DURATION, "outcome" => outcome).record(took);
    tracing::debug!(tenant = %delivery.tenant_id, endpoint = delivery.endpoint_id, event_id = %delivery.event_id,
                    event = %delivery.event_type, attempt = delivery.attempts, outcome, ?status, "webhook attempt");
    Outcome { tenant_id: delivery.tenant_id.clone(), id: delivery.id, attempts: delivery.attempts, verdict, status, error }
}

/// The verdict on attempt number `attempts` (1-based): `unit` is a uniform draw in `[0, 1)`.
pub fn verdict(result: &Attempt, attempts: i32, retry: &RetryPolicy, unit: f64) -> (Verdict, Option<i32>, Option<String>) {
    match result {
        Attempt::Delivered { status } => (Verdict::Delivered, Some(*status as i32), None),
        Attempt::Gone => (Verdict::Gone, Some(410), Some("HTTP 410 Gone: the endpoint asked for no more deliveries".into())),
        Attempt::Failed { status, error, retry_after } => {
            let hint = retry_after.map(|h| h.min(retry.cap));
            let verdict = match retry.after_failure(attempts.max(1) as u32, unit, hint) {
                RetryDecision::RetryAfter(d) => Verdict::Retry(d),
                RetryDecision::GiveUp => Verdict::Dead,
            };
            (verdict, status.map(|s| s as i32), Some(error.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RetryPolicy = RetryPolicy { base: Duration::from_secs(10), cap: Duration::from_secs(60), max_attempts: 3 };

    fn failed(retry_after: Option<u64>) -> Attempt {
        Attempt::Failed { status: Some(500), error: "HTTP 500".into(), retry_after: retry_after.map(Duration::from_secs) }
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(&Attempt::Delivered { status: 204 }, 1, &P, 0.5).0, Verdict::Delivered);
        assert_eq!(verdict(&Attempt::Gone, 1, &P, 0.5).0, Verdict::Gone);
        assert_eq!(verdict(&failed(None), 1, &P, 0.5).0, Verdict::Retry(Duration::from_secs(5)));
        assert_eq!(verdict(&failed(None), 3, &P, 0.5).0, Verdict::Dead);
        // Retry-After is a floor, but never beyond the cap
        assert_eq!(verdict(&failed(Some(30)), 1, &P, 0.5).0, Verdict::Retry(Duration::from_secs(30)));
        assert_eq!(verdict(&failed(Some(86_400 * 365)), 1, &P, 0.5).0, Verdict::Retry(Duration::from_secs(60)));
    }

    #[test]
    fn settings_from_the_configuration() {
        let env = |k: &str| match k {
            "PGCOURIER_NETWORK_ALLOW" => Some("loopback".into()),
            "PGCOURIER_WEBHOOK_RETRY_BASE" => Some("50ms".into()),
            "PGCOURIER_WEBHOOK_MAX_ATTEMPTS" => Some("3".into()),
            _ => None,
        };
        let s = Settings::from_config(&Config::from_lookup(env).unwrap());
        assert!(s.allow.loopback && !s.allow.private);
        assert_eq!(s.retry.base, Duration::from_millis(50));
        assert_eq!(s.retry.max_attempts, 3);
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert_eq!((s.poll, s.retry.cap, s.disable_after), (Duration::from_millis(500), Duration::from_secs(6 * 3600), 20));
        assert!(Config::from_lookup(|k| (k == "PGCOURIER_NETWORK_ALLOW").then(|| "all".into())).is_err());
    }
}
