//! Due follow-ups. A decision (or an operator) schedules one on a thread: `et_threads.follow_up_at`
//! with a note, when it was set and on which message. When it comes due it is claimed (`SKIP
//! LOCKED`, safe with several daemons) and either
//!
//! - cleared silently, when the contact wrote after it was set (`last_inbound_at >
//!   follow_up_set_at`: answered in time), or
//! - fired once: a `followup.due` event on the message (status unchanged, actor = this daemon),
//!   `NOTIFY et_followups '<tenant_id>'`, and, when the tenant's `settings.follow_up_draft` is a
//!   text, an outbound draft to the contact in `pending_approval` (it waits for `et_approve`) —
//!   then cleared.
//!
//! One transaction per batch. A draft the insert trigger refuses (say, an invalid contact) does
//! not hold the batch back: drafts are retried one by one in savepoints, and the event of a
//! follow-up whose draft was refused says why in `detail.draft_error`.

use crate::db::insights::{self as q, DueFollowUp, Outcome};
use deadpool_postgres::Pool;

/// Follow-ups claimed at once.
pub const BATCH: i64 = 100;
/// Full batches handled per tick.
const MAX_BATCHES_PER_TICK: usize = 50;

type Error = crate::db::DbError;

/// Fire or clear every due follow-up (bounded per call); errors are logged.
pub async fn pass(pool: &Pool, worker: &str) {
    for _ in 0..MAX_BATCHES_PER_TICK {
        match batch(pool, worker).await {
            Ok(n) if n as i64 >= BATCH => continue,
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "follow-up pass failed");
                break;
            }
        }
    }
}

/// One batch in one transaction; returns the number of follow-ups claimed.
async fn batch(pool: &Pool, worker: &str) -> Result<usize, Error> {
    let mut client = pool.get().await?;
    let mut tx = client.transaction().await?;
    let due = q::claim_follow_ups(&tx, BATCH).await?;
    if due.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let mut outcomes: Vec<Outcome<'_>> =
        due.iter().map(|d| Outcome { due: d, fire: !d.answered, draft_id: None, draft_error: None }).collect();

    let wanted: Vec<usize> = (0..outcomes.len()).filter(|&i| outcomes[i].fire && outcomes[i].due.draft.is_some()).collect();
    if !wanted.is_empty() {
        let items: Vec<&DueFollowUp> = wanted.iter().map(|&i| outcomes[i].due).collect();
        let sp = tx.savepoint("follow_up_drafts").await?;
        match q::insert_drafts(&sp, &items).await {
            Ok(ids) => {
                sp.commit().await?;
                for &i in &wanted {
                    outcomes[i].draft_id = ids.get(&outcomes[i].due.thread_id).copied();
                }
            }
            Err(_) => {
                sp.rollback().await?;
                for &i in &wanted {
                    let sp = tx.savepoint("follow_up_draft").await?;
                    match q::insert_drafts(&sp, &[outcomes[i].due]).await {
                        Ok(ids) => {
                            sp.commit().await?;
                            outcomes[i].draft_id = ids.get(&outcomes[i].due.thread_id).copied();
                        }
                        Err(e) => {
                            sp.rollback().await?;
                            let reason = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| e.to_string());
                            tracing::warn!(tenant = %outcomes[i].due.tenant_id, thread = outcomes[i].due.thread_id,
                                           error = %reason, "follow-up draft refused; the follow-up fires without it");
                            outcomes[i].draft_error = Some(reason);
                        }
                    }
                }
            }
        }
    }

    let events = q::fire(&tx, worker, &outcomes).await?;
    tx.commit().await?;
    let fired = outcomes.iter().filter(|o| o.fire).count();
    let drafts = outcomes.iter().filter(|o| o.draft_id.is_some()).count();
    tracing::info!(fired, events, drafts, answered = outcomes.len() - fired, "follow-ups due");
    Ok(due.len())
}
