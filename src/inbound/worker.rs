//! The inbound worker: woken by `et_inbound` (and polling), claims `received` rows into
//! `inbound_processing`, loads each thread's history, decides (rules or llm, per tenant
//! `settings.decider`), and applies the batch in one transaction. A thread in `human` handling
//! is never auto-answered. Failed decisions go to `inbound_error` with the reason and are retried
//! with backoff up to `PGCOURIER_INBOUND_MAX_ATTEMPTS`; claims of a dead daemon are rescued.
//!
//! Pipelined: while a full batch that only local deciders (rules) handle is applied, the next
//! batch is already being claimed and loaded on another connection, so the database works on two
//! statements at once. Batches are applied strictly one after the other, and applying locks the
//! batch's threads first: an answer to a thread that a human handles by then (an operator's
//! handoff, a takeover in the batch before) becomes a takeover. Network (LLM) batches start no
//! prefetch: its rows would wait out the slow batch with their lease running.
//!
//! Each batch logs its phases (`claim_ms`, `load_ms`, `decide_ms`, `apply_ms`).
//!
//! Claims are leases ([`Leases`]): renewed in one statement every third of a lease until the
//! batch is applied, so a slow decider (an LLM answering in seconds, a thousand rows at 8 calls at
//! once) never has its rows rescued and decided again by another daemon. A decision whose claim
//! was lost meanwhile is not applied.

use super::llm::LlmDecider;
use super::rules::{Rule, RulesDecider};
use super::Decider;
use crate::config::Config;
use crate::db::inbound::{self as q, Applied, ClaimFence, ClaimedInbound};
use crate::domain::decision::{DecideError, Decided, Decision, ThreadHistory};
use crate::domain::network::Allow;
use crate::domain::vocab::{DecidedBy, Handling, Status};
use crate::lease::{self, Leases};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Messages of history a decider sees.
const HISTORY_DEPTH: i64 = 50;
/// LLM calls in flight at once per batch.
const LLM_CONCURRENCY: usize = 8;
/// Why a message of a human-handled thread is not answered.
const HUMAN_HANDLED: &str = "the thread is handled by a human";

type Error = crate::db::DbError;

/// The claims in progress: (tenant, message id) → fence.
type Claims = Leases<(String, i64), DateTime<Utc>>;

pub async fn run(pool: Pool, config: Config, wake: Arc<Notify>, shutdown: CancellationToken) {
    let claims: Arc<Claims> = Arc::new(Leases::new(config.lease));
    let keeper_stop = CancellationToken::new();
    let keeper = tokio::spawn(lease::keep(claims.clone(), "inbound", renewer(pool.clone()), keeper_stop.clone()));
    work(&pool, &config, &claims, &wake, &shutdown).await;
    keeper_stop.cancel();
    let _ = keeper.await;
}

/// The keeper's renewal: one statement for every claim in progress.
fn renewer(pool: Pool) -> impl Fn(Vec<ClaimFence>) -> lease::Renewal<(String, i64), DateTime<Utc>> {
    move |held| {
        let pool = pool.clone();
        Box::pin(async move {
            let client = pool.get().await?;
            Ok(q::renew(&client, &held).await?)
        })
    }
}

async fn work(pool: &Pool, config: &Config, claims: &Claims, wake: &Notify, shutdown: &CancellationToken) {
    let mut last_upkeep = Instant::now() - config.rescue_interval;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        if let Err(e) = drain(pool, config, claims, shutdown).await {
            tracing::warn!(error = %e, "inbound pass failed");
        }
        if last_upkeep.elapsed() >= config.rescue_interval.min(Duration::from_secs(1)) {
            last_upkeep = Instant::now();
            if let Err(e) = upkeep(pool, config).await {
                tracing::warn!(error = %e, "inbound upkeep failed");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(config.poll_interval.min(Duration::from_secs(1))) => {}
        }
    }
}

/// Rescue expired claims and send errored decisions back for another try.
async fn upkeep(pool: &Pool, config: &Config) -> Result<(), Error> {
    let mut client = pool.get().await?;
    let rescued = q::rescue(&mut client, config.lease).await?;
    let retried = q::retry_errors(&mut client, config.inbound_max_attempts as i32, config.inbound_retry_base).await?;
    if rescued + retried > 0 {
        tracing::info!(rescued, retried, "inbound messages back to received");
    }
    Ok(())
}

/// A claimed batch with what deciding it needs, and how long claiming and loading took.
struct Loaded {
    claimed: Vec<ClaimedInbound>,
    histories: HashMap<i64, ThreadHistory>,
    deciders: HashMap<String, Result<Arc<dyn Decider>, DecideError>>,
    /// When the claim was sent: its leases run from then.
    claimed_at: tokio::time::Instant,
    claim_time: Duration,
    load_time: Duration,
}

impl Loaded {
    /// Every tenant of the batch decides without the network.
    fn local(&self) -> bool {
        self.deciders.values().all(|d| d.as_ref().map_or(true, |d| d.is_local()))
    }
}

/// Claim up to `limit` rows and load their threads' histories, settings and rules.
async fn claim_and_load(pool: Pool, limit: i64, allow: Allow) -> Result<Loaded, Error> {
    let client = pool.get().await?;
    let claimed_at = tokio::time::Instant::now();
    let claimed = q::claim(&client, limit).await?;
    let claim_time = claimed_at.elapsed();
    let mut loaded =
        Loaded { claimed, histories: HashMap::new(), deciders: HashMap::new(), claimed_at, claim_time, load_time: Duration::ZERO };
    if !loaded.claimed.is_empty() {
        load(&client, &mut loaded, allow).await?;
    }
    Ok(loaded)
}

async fn load(client: &deadpool_postgres::Client, loaded: &mut Loaded, allow: Allow) -> Result<(), Error> {
    let started = Instant::now();
    let (histories, settings) = q::histories(client, &loaded.claimed, HISTORY_DEPTH).await?;
    let tenants: Vec<&str> = settings.keys().map(String::as_str).collect();
    loaded.deciders = deciders(&q::rules(client, &tenants).await?, &settings, allow);
    loaded.histories = histories;
    loaded.load_time = started.elapsed();
    Ok(())
}

/// Claim → decide → apply until a claim comes back short.
///
/// While a full batch decided locally is applied, the next one is claimed and loaded on another
/// connection. Its histories may then predate the previous batch's takeovers; that is harmless
/// for the rules (they read the message, and [`apply`] turns answers to threads that are human by
/// then into takeovers), and a prefetched batch with a network decider has its histories loaded
/// again, so a model always sees the thread as it is. A claimed batch is always finished, even
/// when shutdown is requested meanwhile (its rows would otherwise wait for the lease).
async fn drain(pool: &Pool, config: &Config, claims: &Claims, shutdown: &CancellationToken) -> Result<(), Error> {
    let limit = config.inbound_batch as i64;
    let mut prefetched: Option<JoinHandle<Result<Loaded, Error>>> = None;
    loop {
        let mut loaded = match prefetched.take() {
            Some(next) => {
                // the prefetch task is never aborted: a join error is its panic, passed on
                let mut loaded = next.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
                if !loaded.claimed.is_empty() && !loaded.local() {
                    load(&pool.get().await?, &mut loaded, config.network_allow).await?;
                }
                loaded
            }
            None => claim_and_load(pool.clone(), limit, config.network_allow).await?,
        };
        if loaded.claimed.is_empty() {
            return Ok(());
        }
        for c in &loaded.claimed {
            claims.hold((c.tenant_id.clone(), c.id), c.fence, loaded.claimed_at);
        }
        let full = loaded.claimed.len() >= config.inbound_batch;
        if full && loaded.local() && !shutdown.is_cancelled() {
            prefetched = Some(tokio::spawn(claim_and_load(pool.clone(), limit, config.network_allow)));
        }
        let result = batch(pool, config, claims, &mut loaded).await;
        for c in &loaded.claimed {
            claims.forget(&(c.tenant_id.clone(), c.id));
        }
        result?;
        if prefetched.is_none() && (!full || shutdown.is_cancelled()) {
            return Ok(());
        }
    }
}

/// Decide and apply one loaded batch.
async fn batch(pool: &Pool, config: &Config, claims: &Claims, loaded: &mut Loaded) -> Result<(), Error> {
    let started = Instant::now();
    let claimed = &loaded.claimed;
    let decided = decide_all(claimed, &loaded.histories, &loaded.deciders).await;
    // each decision under its claim's current fence (no renewal moves it until applied); a
    // claim lost meanwhile is not applied
    let _settled = claims.settle().await;
    let items: Vec<Applied> = claimed
        .iter()
        .zip(decided)
        .filter_map(|(c, d)| {
            let fence = claims.value(&(c.tenant_id.clone(), c.id));
            if fence.is_none() {
                tracing::warn!(message = c.id, "the claim was lost while deciding; the decision is dropped");
            }
            fence.map(|fence| Applied { fence, ..applied(c, d) })
        })
        .collect();
    let decide_time = started.elapsed();

    let started = Instant::now();
    let mut client = pool.get().await?;
    let (done, replies) = match apply(&mut client, &config.worker_id, items.clone()).await {
        Ok(r) => r,
        Err(e) => {
            // One row the database refuses (e.g. a reply over the channel's limit) must not block
            // the others: apply one by one, and record the refusal on the row that caused it.
            tracing::warn!(error = %e, "applying the batch failed; applying one by one");
            let (mut done, mut replies) = (0, 0);
            for item in items {
                let r = match apply(&mut client, &config.worker_id, vec![item.clone()]).await {
                    Ok(r) => r,
                    Err(e) => {
                        let reason =
                            format!("applying the decision failed: {}", e.as_db_error().map(|d| d.message()).unwrap_or(&e.to_string()));
                        apply(&mut client, &config.worker_id, vec![applied_error(&item, &reason)]).await?
                    }
                };
                done += r.0;
                replies += r.1;
            }
            (done, replies)
        }
    };
    tracing::info!(
        claimed = claimed.len(),
        done,
        replies,
        claim_ms = loaded.claim_time.as_millis() as u64,
        load_ms = loaded.load_time.as_millis() as u64,
        decide_ms = decide_time.as_millis() as u64,
        apply_ms = started.elapsed().as_millis() as u64,
        "inbound batch decided"
    );
    Ok(())
}

/// Apply a batch in one transaction: lock its threads, turn answers to threads a human handles
/// by now into takeovers, write. Counts the decisions once they are committed.
async fn apply(client: &mut deadpool_postgres::Client, worker: &str, mut items: Vec<Applied>) -> Result<(i64, i64), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let threads: Vec<(&str, i64)> = items.iter().map(|a| (a.tenant_id.as_str(), a.thread_id)).collect();
    let handling = q::lock_threads(&tx, &threads).await?;
    for item in &mut items {
        if handling.get(&item.thread_id) == Some(&Handling::Human)
            && !matches!(item.status, Status::InboundError | Status::InboundHumanTakeover)
        {
            *item = handed_to_human(item);
        }
    }
    let r = q::apply(&tx, worker, &items).await?;
    tx.commit().await?;
    for item in &items {
        metrics::counter!("pgcourier_inbound_decisions_total", "kind" => kind(item.status)).increment(1);
    }
    Ok(r)
}

/// `inbound_human_takeover` → `human_takeover`, `inbound_error` → `error`.
fn kind(status: Status) -> &'static str {
    match status {
        Status::InboundAiReplied => "ai_replied",
        Status::InboundHumanTakeover => "human_takeover",
        Status::InboundFollowUp => "follow_up",
        Status::InboundNoAction => "no_action",
        _ => "error",
    }
}

/// An answer (reply, follow-up, nothing) to a thread an operator or an earlier batch handed to a
/// human after the decision was made: a takeover, as if the thread had been human when decided
/// (`decided_by` and `model` say who was asked).
fn handed_to_human(item: &Applied) -> Applied {
    let mut decision = item.decision.clone();
    if let Some(d) = decision.as_object_mut() {
        d.insert("kind".into(), json!("human_takeover"));
        d.insert("reason".into(), json!(HUMAN_HANDLED));
        d.insert("label".into(), Value::Null);
    }
    Applied { status: Status::InboundHumanTakeover, reply: None, follow_up: None, decision, ..item.clone() }
}

/// The decider of each tenant in the batch: `settings.decider = 'llm'` or the rules (the
/// tenant's own from `et_inbound_rules`, else the defaults). The LLM's `base_url` passes the SSRF
/// guard with `allow`.
fn deciders(
    rules: &[q::RuleRow],
    settings: &HashMap<String, Value>,
    allow: Allow,
) -> HashMap<String, Result<Arc<dyn Decider>, DecideError>> {
    let mut by_tenant: HashMap<String, Vec<Rule>> = HashMap::new();
    for (tenant, id, pattern, action, template, follow, label) in rules {
        match Rule::parse(*id, pattern, action, template.clone(), *follow, label.clone()) {
            Ok(rule) => by_tenant.entry(tenant.clone()).or_default().push(rule),
            Err(e) => tracing::warn!(tenant = %tenant, error = %e, "skipping an unusable inbound rule"),
        }
    }
    settings
        .iter()
        .map(|(tenant, s)| {
            let decider: Result<Arc<dyn Decider>, DecideError> = match s.get("decider").and_then(Value::as_str).and_then(|d| d.parse().ok())
            {
                Some(DecidedBy::Llm) => llm_decider(s, allow).map(|d| Arc::new(d) as Arc<dyn Decider>),
                _ => Ok(match by_tenant.remove(tenant) {
                    Some(rules) => Arc::new(RulesDecider::new(rules)),
                    None => Arc::new(RulesDecider::defaults()),
                }),
            };
            (tenant.clone(), decider)
        })
        .collect()
}

fn llm_decider(settings: &Value, allow: Allow) -> Result<LlmDecider, DecideError> {
    let llm = settings.get("llm").cloned().unwrap_or(Value::Null);
    let key = match llm.get("api_key_ref").and_then(Value::as_str) {
        Some(r) => {
            let var = crate::channels::secret_env_name(r);
            Some(std::env::var(&var).map_err(|_| DecideError::new(format!("llm api_key_ref {r:?}: {var} is not set")))?)
        }
        None => None,
    };
    LlmDecider::new(&llm, key, allow)
}

/// Decide every claimed message, in claim order. A thread handed to a human, or taken over by an
/// earlier message of this batch, is not asked: the message goes straight to takeover.
async fn decide_all(
    claimed: &[ClaimedInbound],
    histories: &HashMap<i64, ThreadHistory>,
    deciders: &HashMap<String, Result<Arc<dyn Decider>, DecideError>>,
) -> Vec<Result<Decided, DecideError>> {
    let mut human: HashSet<i64> = histories.values().filter(|h| h.handling == Handling::Human).map(|h| h.thread_id).collect();
    let mut out: Vec<Option<Result<Decided, DecideError>>> = vec![None; claimed.len()];
    let mut pending = Vec::new();
    for (i, c) in claimed.iter().enumerate() {
        let Some(h) = histories.get(&c.thread_id) else {
            out[i] = Some(Err(DecideError::new("thread not found")));
            continue;
        };
        if human.contains(&c.thread_id) {
            out[i] = Some(Ok(Decided {
                decision: Decision::HumanTakeover { reason: HUMAN_HANDLED.into() },
                reason: HUMAN_HANDLED.into(),
                label: None,
                decided_by: DecidedBy::Rules,
                model: None,
            }));
            continue;
        }
        let decider = match deciders.get(&c.tenant_id) {
            Some(Ok(d)) => d.clone(),
            Some(Err(e)) => {
                out[i] = Some(Err(e.clone()));
                continue;
            }
            None => {
                out[i] = Some(Err(DecideError::new("tenant settings not found")));
                continue;
            }
        };
        // History up to and including this message.
        let mut upto = h.clone();
        upto.messages.retain(|m| m.id <= c.id);
        if decider.is_local() {
            let d = decider.decide(&upto).await;
            if matches!(&d, Ok(Decided { decision: Decision::HumanTakeover { .. }, .. })) {
                human.insert(c.thread_id);
            }
            out[i] = Some(d);
        } else {
            pending.push((i, decider, upto));
        }
    }
    // Network deciders: a bounded number of calls at once.
    for chunk in pending.chunks(LLM_CONCURRENCY) {
        let results = futures_util::future::join_all(chunk.iter().map(|(_, d, h)| d.decide(h))).await;
        for ((i, _, _), r) in chunk.iter().zip(results) {
            out[*i] = Some(r);
        }
    }
    out.into_iter().map(|r| r.unwrap_or_else(|| Err(DecideError::new("not decided")))).collect()
}

fn applied(c: &ClaimedInbound, d: Result<Decided, DecideError>) -> Applied {
    match d {
        Ok(d) => {
            let decision = json!({
                "kind": kind(d.decision.status()),
                "reason": d.reason, "label": d.label, "decided_by": d.decided_by, "model": d.model,
            });
            let (reply, follow_up) = match &d.decision {
                Decision::AutoReply { body } => (Some(body.clone()), None),
                Decision::FollowUp { at, note } => (None, Some((*at, note.clone()))),
                _ => (None, None),
            };
            Applied {
                tenant_id: c.tenant_id.clone(),
                message_id: c.id,
                thread_id: c.thread_id,
                fence: c.fence,
                status: d.decision.status(),
                reply,
                follow_up,
                decision,
                error: None,
            }
        }
        Err(e) => {
            tracing::warn!(message = c.id, attempt = c.attempts, error = %e.reason, "inbound decision failed");
            Applied {
                tenant_id: c.tenant_id.clone(),
                message_id: c.id,
                thread_id: c.thread_id,
                fence: c.fence,
                status: Status::InboundError,
                reply: None,
                follow_up: None,
                decision: json!({ "kind": "error", "reason": e.reason, "attempt": c.attempts }),
                error: Some(e.reason),
            }
        }
    }
}

fn applied_error(item: &Applied, reason: &str) -> Applied {
    Applied {
        status: Status::InboundError,
        reply: None,
        follow_up: None,
        decision: json!({ "kind": "error", "reason": reason }),
        error: Some(reason.to_owned()),
        ..item.clone()
    }
}
