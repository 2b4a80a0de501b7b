//! The inbound worker: woken by `et_inbound` (and polling), claims `received` rows into
//! `inbound_processing`, loads each thread's history, decides (rules or llm, per tenant
//! `settings.decider`), and applies the batch in one transaction. A thread in `human` handling
//! is never auto-answered. Failed decisions go to `inbound_error` with the reason and are retried
//! with backoff up to `PGCOURIER_INBOUND_MAX_ATTEMPTS`; claims of a dead daemon are rescued.

use super::llm::LlmDecider;
use super::rules::{Rule, RulesDecider};
use super::Decider;
use crate::config::Config;
use crate::db::inbound::{self as q, Applied, ClaimedInbound};
use crate::domain::decision::{DecideError, Decided, Decision, ThreadHistory};
use deadpool_postgres::Pool;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Messages of history a decider sees.
const HISTORY_DEPTH: i64 = 50;
/// LLM calls in flight at once per batch.
const LLM_CONCURRENCY: usize = 8;

type Error = Box<dyn std::error::Error + Send + Sync>;

pub async fn run(pool: Pool, config: Config, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut last_upkeep = Instant::now() - config.rescue_interval;
    loop {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match pass(&pool, &config).await {
                Ok(n) if n as usize >= config.inbound_batch => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "inbound pass failed");
                    break;
                }
            }
        }
        if last_upkeep.elapsed() >= config.rescue_interval.min(Duration::from_secs(1)) {
            last_upkeep = Instant::now();
            if let Err(e) = upkeep(&pool, &config).await {
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

/// One claim → decide → apply round; returns how many messages were claimed.
async fn pass(pool: &Pool, config: &Config) -> Result<u64, Error> {
    let mut client = pool.get().await?;
    let claimed = q::claim(&client, config.inbound_batch as i64).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let started = Instant::now();
    let (histories, settings) = q::histories(&client, &claimed, HISTORY_DEPTH).await?;
    let tenants: Vec<&str> = settings.keys().map(String::as_str).collect();
    let deciders = deciders(&q::rules(&client, &tenants).await?, &settings);
    let decided = decide_all(&claimed, &histories, &deciders).await;
    let items: Vec<Applied> = claimed.iter().zip(decided).map(|(c, d)| applied(c, d)).collect();
    match q::apply(&mut client, &config.worker_id, &items).await {
        Ok((done, replies)) => {
            tracing::info!(claimed = claimed.len(), done, replies, elapsed_ms = started.elapsed().as_millis() as u64, "inbound batch decided");
        }
        Err(e) => {
            // One row the database refuses (e.g. a reply over the channel's limit) must not block
            // the others: apply one by one, and record the refusal on the row that caused it.
            tracing::warn!(error = %e, "applying the batch failed; applying one by one");
            for item in items {
                if let Err(e) = q::apply(&mut client, &config.worker_id, std::slice::from_ref(&item)).await {
                    let reason = format!("applying the decision failed: {}", e.as_db_error().map(|d| d.message()).unwrap_or(&e.to_string()));
                    let failed = applied_error(&item, &reason);
                    q::apply(&mut client, &config.worker_id, &[failed]).await?;
                }
            }
        }
    }
    Ok(claimed.len() as u64)
}

/// The decider of each tenant in the batch: `settings.decider = 'llm'` or the rules (the
/// tenant's own from `et_inbound_rules`, else the defaults).
fn deciders(rules: &[q::RuleRow], settings: &HashMap<String, Value>) -> HashMap<String, Result<Arc<dyn Decider>, DecideError>> {
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
            let decider: Result<Arc<dyn Decider>, DecideError> = match s.get("decider").and_then(Value::as_str) {
                Some("llm") => llm_decider(s).map(|d| Arc::new(d) as Arc<dyn Decider>),
                _ => Ok(match by_tenant.remove(tenant) {
                    Some(rules) => Arc::new(RulesDecider::new(rules)),
                    None => Arc::new(RulesDecider::defaults()),
                }),
            };
            (tenant.clone(), decider)
        })
        .collect()
}

fn llm_decider(settings: &Value) -> Result<LlmDecider, DecideError> {
    let llm = settings.get("llm").cloned().unwrap_or(Value::Null);
    let key = match llm.get("api_key_ref").and_then(Value::as_str) {
        Some(r) => {
            let var = crate::channels::secret_env_name(r);
            Some(std::env::var(&var).map_err(|_| DecideError::new(format!("llm api_key_ref {r:?}: {var} is not set")))?)
        }
        None => None,
    };
    LlmDecider::new(&llm, key)
}

/// Decide every claimed message, in claim order. A thread handed to a human, or taken over by an
/// earlier message of this batch, is not asked: the message goes straight to takeover.
async fn decide_all(
    claimed: &[ClaimedInbound],
    histories: &HashMap<i64, ThreadHistory>,
    deciders: &HashMap<String, Result<Arc<dyn Decider>, DecideError>>,
) -> Vec<Result<Decided, DecideError>> {
    let mut human: HashSet<i64> = histories.values().filter(|h| h.handling == "human").map(|h| h.thread_id).collect();
    let mut out: Vec<Option<Result<Decided, DecideError>>> = vec![None; claimed.len()];
    let mut pending = Vec::new();
    for (i, c) in claimed.iter().enumerate() {
        let Some(h) = histories.get(&c.thread_id) else {
            out[i] = Some(Err(DecideError::new("thread not found")));
            continue;
        };
        if human.contains(&c.thread_id) {
            out[i] = Some(Ok(Decided {
                decision: Decision::HumanTakeover { reason: "the thread is handled by a human".into() },
                reason: "the thread is handled by a human".into(),
                label: None,
                decided_by: "rules",
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
            metrics::counter!("pgcourier_inbound_decisions_total", "kind" => d.decision.status().trim_start_matches("inbound_")).increment(1);
            let decision = json!({
                "kind": d.decision.status().trim_start_matches("inbound_"),
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
                fence: c.fence,
                status: d.decision.status(),
                reply,
                follow_up,
                decision,
                error: None,
            }
        }
        Err(e) => {
            metrics::counter!("pgcourier_inbound_decisions_total", "kind" => "error").increment(1);
            tracing::warn!(message = c.id, attempt = c.attempts, error = %e.reason, "inbound decision failed");
            Applied {
                tenant_id: c.tenant_id.clone(),
                message_id: c.id,
                fence: c.fence,
                status: "inbound_error",
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
        status: "inbound_error",
        reply: None,
        follow_up: None,
        decision: json!({ "kind": "error", "reason": reason }),
        error: Some(reason.to_owned()),
        ..item.clone()
    }
}
