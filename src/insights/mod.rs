//! The insights worker: the only writer of `et_thread_insights`, and the follow-up timer.
//!
//! Every `max(debounce / 2, 250ms)` it claims threads whose insight is due (the message-insert
//! trigger marks a thread due and bumps its `updated_at`; a thread is taken once it has been quiet
//! for `PGCOURIER_INSIGHTS_DEBOUNCE`, or once it has been due for 10 × the debounce, so a burst
//! costs one recompute and a never-quiet thread is not starved), loads each thread's newest
//! [`HISTORY_DEPTH`] messages in one query, computes the insight per tenant (`settings.insights =
//! "llm"` → [`LlmDecider`], anything else → [`rules`]), and writes the batch in one transaction
//! fenced on the claimed marker (see [`crate::db::insights`]). A failed LLM call writes nothing:
//! the thread stays due and this daemon tries it again after the debounce (doubling up to 5
//! minutes). Then due follow-ups are fired or cleared ([`followups`]).
//!
//! Safe with several daemons: a claim leases its threads (`insights_leased_by`, renewed by
//! [`lease::keep`] while the batch computes, given back when it is written), so another daemon
//! skips them and a slow LLM summary is paid for once; writes are fenced on the claimed marker,
//! and only a thread with no change since the claim is cleared.

pub mod followups;
pub mod rules;

use crate::config::Config;
use crate::db::insights::{self as q, Computed, DueThread, HistoryRow};
use crate::domain::decision::{DecideError, Insight, ThreadHistory};
use crate::domain::vocab::DecidedBy;
use crate::inbound::llm::LlmDecider;
use crate::inbound::Summarizer;
use crate::lease::{self, Leases};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Threads claimed at once.
pub const BATCH: i64 = 100;
/// Messages of history an insight is computed from (the newest ones).
pub const HISTORY_DEPTH: i64 = 50;
/// LLM calls in flight at once.
const LLM_CONCURRENCY: usize = 8;
/// Full batches drained per tick before the follow-ups get their turn.
const MAX_BATCHES_PER_TICK: usize = 50;
/// The longest this daemon waits before retrying a thread whose summarizer failed.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

type Error = crate::db::DbError;

/// What a summarizer gets to know about a thread: its bounded history plus the state the
/// [`ThreadHistory`] does not carry.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub history: ThreadHistory,
    /// `metadata.decision.label` of each message of `history.messages` (same order).
    pub decision_labels: Vec<Option<String>>,
    /// The thread's counters (the history is bounded; these are not).
    pub message_count: i32,
    pub inbound_count: i32,
    pub outbound_count: i32,
    /// The thread's scheduled follow-up.
    pub follow_up_at: Option<DateTime<Utc>>,
}

impl Snapshot {
    fn new(t: &DueThread, rows: Vec<HistoryRow>) -> Snapshot {
        let (messages, decision_labels) = rows.into_iter().map(|r| (r.message, r.decision_label)).unzip();
        Snapshot {
            history: ThreadHistory {
                tenant_id: t.tenant_id.clone(),
                thread_id: t.thread_id,
                channel: t.channel,
                contact: t.contact.clone(),
                subject: t.subject.clone(),
                handling: t.handling,
                messages,
            },
            decision_labels,
            message_count: t.message_count,
            inbound_count: t.inbound_count,
            outbound_count: t.outbound_count,
            follow_up_at: t.follow_up_at,
        }
    }

    /// The newest message's id: the insight's `source_message_id`.
    pub fn source_message_id(&self) -> Option<i64> {
        self.history.messages.last().map(|m| m.id)
    }
}

/// Run until `shutdown`.
pub async fn run(pool: Pool, config: Config, shutdown: CancellationToken) {
    let every = (config.insights_debounce / 2).max(Duration::from_millis(250));
    let mut worker = Worker::new(&config);
    let keeper_stop = CancellationToken::new();
    let keeper = tokio::spawn(lease::keep(worker.leases.clone(), "insights", renewer(pool.clone(), &config), keeper_stop.clone()));
    let mut tick = crate::every::Every::new(every);
    tracing::debug!(debounce = ?config.insights_debounce, every = ?every, "insights worker started");
    while tick.next(&shutdown).await {
        let pass = async {
            worker.insights(&pool).await;
            followups::pass(&pool, &config.worker_id).await;
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = pass => {}
        }
    }
    keeper_stop.cancel();
    let _ = keeper.await;
}

/// A thread's lease key: (tenant, thread id).
type ThreadKey = (String, i64);

/// The keeper's renewal: one statement for every thread this worker computes.
fn renewer(pool: Pool, config: &Config) -> impl Fn(Vec<(ThreadKey, ())>) -> lease::Renewal<ThreadKey, ()> {
    let (worker, lease) = (config.worker_id.clone(), config.lease);
    move |held| {
        let (pool, worker) = (pool.clone(), worker.clone());
        Box::pin(async move {
            let threads: Vec<(String, i64)> = held.into_iter().map(|(k, ())| k).collect();
            let client = pool.get().await?;
            let kept = q::renew(&client, &worker, &threads, lease).await?;
            Ok(kept.into_iter().map(|k| (k, ())).collect())
        })
    }
}

/// A thread this daemon will not retry before `at`.
struct Backoff {
    failures: u32,
    at: Instant,
}

/// A tenant's LLM summarizer, rebuilt when its settings (or its secret) change.
struct CachedLlm {
    settings: Value,
    key: Option<String>,
    summarizer: Arc<dyn Summarizer>,
}

struct Worker {
    debounce: Duration,
    /// This daemon's name on its thread leases.
    worker_id: String,
    /// The leases of the batch being computed.
    leases: Arc<Leases<(String, i64)>>,
    backoff: HashMap<i64, Backoff>,
    llm: HashMap<String, CachedLlm>,
    /// The SSRF allowance the LLM's `base_url` is checked with.
    allow: crate::domain::network::Allow,
}

/// How one thread's insight is computed.
enum Method {
    Rules,
    Llm(Arc<dyn Summarizer>),
    /// The tenant wants the LLM but it cannot be built (bad settings, missing secret).
    Broken(DecideError),
}

impl Worker {
    fn new(config: &Config) -> Worker {
        Worker {
            debounce: config.insights_debounce,
            worker_id: config.worker_id.clone(),
            leases: Arc::new(Leases::new(config.lease)),
            backoff: HashMap::new(),
            llm: HashMap::new(),
            allow: config.network_allow,
        }
    }

    /// Drain the due threads (full batches back to back, each thread at most once per tick: each
    /// claim of the tick walks on from where the previous one stopped, see [`q::Cursor`]).
    async fn insights(&mut self, pool: &Pool) {
        let mut cursor = None;
        for _ in 0..MAX_BATCHES_PER_TICK {
            match self.batch(pool, &mut cursor).await {
                Ok(n) if n as i64 >= BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "insights pass failed");
                    break;
                }
            }
        }
    }

    /// Claim, compute and write one batch; returns the number of threads claimed.
    async fn batch(&mut self, pool: &Pool, cursor: &mut Option<q::Cursor>) -> Result<usize, Error> {
        let now = Instant::now();
        self.backoff.retain(|_, b| b.at + MAX_RETRY_DELAY > now);
        let exclude: Vec<i64> = self.backoff.iter().filter(|(_, b)| b.at > now).map(|(id, _)| *id).collect();

        let client = pool.get().await?;
        let claimed_at = tokio::time::Instant::now();
        let claimed = q::claim_due(&client, self.debounce, &exclude, *cursor, BATCH, (&self.worker_id, self.leases.lease())).await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        *cursor = q::cursor_after(*cursor, &claimed);
        let held: Vec<(String, i64)> = claimed.iter().map(|t| (t.tenant_id.clone(), t.thread_id)).collect();
        for key in &held {
            self.leases.hold(key.clone(), (), claimed_at);
        }
        let result = self.compute_and_write(pool, client, &claimed).await;
        for key in &held {
            self.leases.forget(key);
        }
        // given back whatever happened: a failed thread waits out this daemon's backoff, not the lease
        match pool.get().await {
            Ok(client) => {
                if let Err(e) = q::release(&client, &self.worker_id, &held).await {
                    tracing::warn!(error = %e, "could not give back the insight leases; they run out by themselves");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not give back the insight leases; they run out by themselves"),
        }
        result?;
        Ok(claimed.len())
    }

    /// Compute and write the insights of a claimed batch.
    async fn compute_and_write(&mut self, pool: &Pool, client: deadpool_postgres::Client, claimed: &[DueThread]) -> Result<(), Error> {
        let keys: Vec<(&str, i64)> = claimed.iter().map(|t| (t.tenant_id.as_str(), t.thread_id)).collect();
        let mut histories = q::histories(&client, &keys, HISTORY_DEPTH).await?;
        // no connection is held while summarizers run
        drop(client);

        let snapshots: Vec<Snapshot> =
            claimed.iter().map(|t| Snapshot::new(t, histories.remove(&t.thread_id).unwrap_or_default())).collect();
        // a thread with no message left has nothing for a model to read: the rules say so
        let methods: Vec<Method> = claimed
            .iter()
            .zip(&snapshots)
            .map(|(t, s)| if s.history.messages.is_empty() { Method::Rules } else { self.method(t) })
            .collect();
        let mut results: Vec<Option<Result<Insight, DecideError>>> = vec![None; claimed.len()];
        let mut remote = Vec::new();
        for (i, method) in methods.iter().enumerate() {
            match method {
                Method::Rules => results[i] = Some(Ok(rules::summarize(&snapshots[i]))),
                Method::Broken(e) => results[i] = Some(Err(e.clone())),
                Method::Llm(s) => remote.push((i, s.clone())),
            }
        }
        let calls: Vec<_> = remote
            .into_iter()
            .map(|(i, s)| {
                let history = snapshots[i].history.clone();
                async move { (i, s.summarize(&history).await) }
            })
            .collect();
        let answers: Vec<(usize, Result<Insight, DecideError>)> =
            futures_util::stream::iter(calls).buffer_unordered(LLM_CONCURRENCY).collect().await;
        for (i, answer) in answers {
            results[i] = Some(answer.map(|insight| merge_llm(insight, &snapshots[i])));
        }

        let mut computed = Vec::new();
        let mut failed = 0usize;
        for ((t, snap), result) in claimed.iter().zip(&snapshots).zip(results) {
            match result.expect("every claimed thread has a result") {
                Ok(insight) => computed.push(Computed {
                    tenant_id: t.tenant_id.clone(),
                    thread_id: t.thread_id,
                    due_at: t.due_at,
                    updated_at: t.updated_at,
                    insight,
                    source_message_id: snap.source_message_id(),
                }),
                Err(e) => {
                    failed += 1;
                    let delay = self.failed(t.thread_id);
                    tracing::warn!(tenant = %t.tenant_id, thread = t.thread_id, error = %e, retry_in = ?delay,
                                   "insight not computed; the thread stays due");
                }
            }
        }
        let mut client = pool.get().await?;
        let written = q::write(&mut client, &computed).await?;
        for id in &written.written {
            self.backoff.remove(id);
        }
        tracing::debug!(
            claimed = claimed.len(),
            written = written.written.len(),
            cleared = written.cleared.len(),
            failed,
            "insights batch"
        );
        Ok(())
    }

    /// Record a failure of `thread`; returns how long this daemon waits before trying it again.
    fn failed(&mut self, thread: i64) -> Duration {
        let failures = self.backoff.get(&thread).map_or(0, |b| b.failures) + 1;
        let delay = self.debounce.saturating_mul(1u32 << (failures - 1).min(16)).min(MAX_RETRY_DELAY.max(self.debounce));
        self.backoff.insert(thread, Backoff { failures, at: Instant::now() + delay });
        delay
    }

    /// The summarizer for a claimed thread's tenant.
    fn method(&mut self, t: &DueThread) -> Method {
        if t.insights_mode.as_deref().and_then(|m| m.trim().parse().ok()) != Some(DecidedBy::Llm) {
            return Method::Rules;
        }
        let key = match t.llm_settings.get("api_key_ref").and_then(Value::as_str).filter(|r| !r.trim().is_empty()) {
            None => None,
            Some(reference) => {
                let var = crate::channels::secret_env_name(reference);
                match std::env::var(&var) {
                    Ok(v) if !v.is_empty() => Some(v),
                    _ => {
                        return Method::Broken(DecideError::new(format!(
                            "settings.llm.api_key_ref {reference:?}: secret {var} is not set in the daemon's environment"
                        )))
                    }
                }
            }
        };
        if let Some(c) = self.llm.get(&t.tenant_id) {
            if c.settings == t.llm_settings && c.key == key {
                return Method::Llm(c.summarizer.clone());
            }
        }
        match LlmDecider::new(&t.llm_settings, key.clone(), self.allow) {
            Ok(d) => {
                let summarizer: Arc<dyn Summarizer> = Arc::new(d);
                self.llm.insert(t.tenant_id.clone(), CachedLlm { settings: t.llm_settings.clone(), key, summarizer: summarizer.clone() });
                Method::Llm(summarizer)
            }
            Err(e) => {
                self.llm.remove(&t.tenant_id);
                Method::Broken(e)
            }
        }
    }
}

/// An LLM insight completed by the thread's facts: the scheduled follow-up wins over the model's
/// guess, and what the model left empty comes from the rules.
fn merge_llm(mut insight: Insight, snap: &Snapshot) -> Insight {
    let facts = rules::summarize(snap);
    insight.follow_up_at = snap.follow_up_at.or(insight.follow_up_at);
    if insight.summary.trim().is_empty() {
        insight.summary = facts.summary;
    }
    insight.label = insight.label.filter(|l| !l.trim().is_empty()).or(facts.label);
    insight.next_step = insight.next_step.filter(|l| !l.trim().is_empty()).or(facts.next_step);
    insight.decided_by = DecidedBy::Llm;
    insight
}
