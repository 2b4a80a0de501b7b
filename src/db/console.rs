//! The SQL of the operator console (`src/console/`): its sign-in sessions, the cheap reads
//! behind its overview and the breakers of its sessions page (its conversation list is in
//! [`super::console_threads`]). Its message, thread and dead-letter pages and its actions use the API's
//! own queries and functions ([`crate::db::api`]).
//!
//! Every read here is bounded whatever the table sizes: counts come from the counters that the
//! message triggers keep (`et_message_counts`, `et_message_minutes`), the queue view reads only
//! rows in flight, and the dead-letter count stops at [`COUNT_CAP`].

use crate::db::apikeys::{judge, Authenticated, Rejected, KEY_STATE};
use crate::domain::vocab::{Channel, Direction, Provider, Status};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};
use tokio_postgres::Error;

/// Counts that could be large are taken up to this and shown as "10,000+".
pub const COUNT_CAP: i64 = 10_000;

/// The SHA-256 of a session token: what the table holds instead of the token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Open a session for key `key_id` until `expires_at`.
pub async fn open_session(c: &impl GenericClient, token: &str, key_id: i64, expires_at: DateTime<Utc>) -> Result<(), Error> {
    c.execute(
        "INSERT INTO et_console_sessions (token_sha256, api_key_id, expires_at) VALUES ($1, $2, $3)",
        &[&token_hash(token), &key_id, &expires_at],
    )
    .await?;
    Ok(())
}

/// A live session: who it acts as now (its key re-judged), and what it is looking at.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub key: Result<Authenticated, Rejected>,
    /// A platform session's chosen tenant.
    pub viewing_tenant: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// The unexpired session of `token`, its key judged as the API judges keys. Touches
/// `last_seen_at` at most once a minute.
pub async fn find_session(c: &impl GenericClient, token: &str) -> Result<Option<SessionRow>, Error> {
    let hash = token_hash(token);
    let row = c
        .query_opt(
            &format!(
                "SELECT {KEY_STATE}, s.viewing_tenant, s.expires_at, s.last_seen_at < now() - interval '1 minute'
                   FROM et_console_sessions s
                   JOIN et_api_keys k ON k.id = s.api_key_id
                   LEFT JOIN et_tenants t ON t.id = k.tenant_id
                  WHERE s.token_sha256 = $1 AND s.expires_at > now()"
            ),
            &[&hash],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    if row.get::<_, bool>(9) {
        c.execute("UPDATE et_console_sessions SET last_seen_at = now() WHERE token_sha256 = $1", &[&hash]).await?;
    }
    Ok(Some(SessionRow { key: judge(&row), viewing_tenant: row.get(7), expires_at: row.get(8) }))
}

/// Sign out: the session is gone.
pub async fn close_session(c: &impl GenericClient, token: &str) -> Result<(), Error> {
    c.execute("DELETE FROM et_console_sessions WHERE token_sha256 = $1", &[&token_hash(token)]).await?;
    Ok(())
}

/// A platform session's tenant switcher (`None`: all tenants). False when there is no such tenant.
pub async fn view_tenant(c: &impl GenericClient, token: &str, tenant: Option<&str>) -> Result<bool, Error> {
    let n = c
        .execute(
            "UPDATE et_console_sessions SET viewing_tenant = $2
              WHERE token_sha256 = $1 AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM et_tenants WHERE id = $2))",
            &[&token_hash(token), &tenant],
        )
        .await?;
    Ok(n == 1)
}

/// Delete expired sessions, up to `batch`; how many (the maintenance task).
pub async fn delete_expired_sessions(c: &impl GenericClient, batch: i64) -> Result<u64, Error> {
    c.execute(
        "DELETE FROM et_console_sessions WHERE token_sha256 IN
           (SELECT token_sha256 FROM et_console_sessions WHERE expires_at <= now() ORDER BY expires_at LIMIT $1)",
        &[&batch],
    )
    .await
}

/// Delete chart minutes older than two days, up to `batch`; how many (the maintenance task).
pub async fn delete_old_minutes(c: &impl GenericClient, batch: i64) -> Result<u64, Error> {
    c.execute(
        "DELETE FROM et_message_minutes WHERE ctid = ANY (ARRAY(
           SELECT ctid FROM et_message_minutes WHERE minute < now() - interval '2 days' LIMIT $1))",
        &[&batch],
    )
    .await
}

/// The tenants, for a platform session's switcher: (id, name, active).
pub async fn tenants(c: &impl GenericClient) -> Result<Vec<(String, String, bool)>, Error> {
    let rows = c.query("SELECT id, name, active FROM et_tenants ORDER BY id", &[]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

/// Messages of one session in one direction and status.
#[derive(Debug, Clone)]
pub struct StateCount {
    pub tenant_id: String,
    pub session_id: i64,
    pub session_name: String,
    pub channel: Channel,
    pub provider: Provider,
    pub direction: Direction,
    pub status: Status,
    pub count: i64,
}

/// Every nonzero count, of one tenant or (`None`) of all, from the counters.
pub async fn state_counts(c: &impl GenericClient, tenant: Option<&str>) -> Result<Vec<StateCount>, Error> {
    let rows = c
        .query(
            "SELECT c.tenant_id, c.channel_session_id, coalesce(nullif(s.name, ''), s.address), s.channel, s.provider,
                    c.direction, c.delivery_status, sum(c.n)::bigint
               FROM et_message_counts c
               JOIN et_channel_sessions s ON s.tenant_id = c.tenant_id AND s.id = c.channel_session_id
              WHERE ($1::text IS NULL OR c.tenant_id = $1)
              GROUP BY 1, 2, 3, 4, 5, 6, 7
             HAVING sum(c.n) <> 0
              ORDER BY 1, 2, 6, 7",
            &[&tenant],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(StateCount {
                tenant_id: r.get(0),
                session_id: r.get(1),
                session_name: r.get(2),
                channel: r.try_get(3)?,
                provider: r.try_get(4)?,
                direction: r.try_get(5)?,
                status: r.try_get(6)?,
                count: r.get(7),
            })
        })
        .collect()
}

/// Sent and failed per minute over the last hour, oldest first, every minute present.
pub async fn last_hour(c: &impl GenericClient, tenant: Option<&str>) -> Result<Vec<(DateTime<Utc>, i64, i64)>, Error> {
    let rows = c
        .query(
            "SELECT g.minute, coalesce(sum(m.sent), 0)::bigint, coalesce(sum(m.failed), 0)::bigint
               FROM generate_series(date_trunc('minute', now()) - interval '59 minutes', date_trunc('minute', now()),
                                    interval '1 minute') g (minute)
               LEFT JOIN et_message_minutes m ON m.minute = g.minute AND ($1::text IS NULL OR m.tenant_id = $1)
              GROUP BY g.minute ORDER BY g.minute",
            &[&tenant],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

/// What the overview shows beside the counts.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Seconds the oldest due queue row has waited (0: none waiting).
    pub oldest_ready_secs: f64,
    /// Dead letters, up to [`COUNT_CAP`].
    pub dead_letters: i64,
    /// Leases past their expiry (the rescuer returns them).
    pub expired_leases: i64,
    /// Queued messages whose time has not come (scheduled_at, or a retry's backoff).
    pub scheduled: i64,
    /// Sessions whose breaker is not closed: (tenant, session id, state).
    pub open_breakers: Vec<(String, i64, String)>,
    /// Daemons registered as listening.
    pub daemons: i64,
}

pub async fn health(c: &impl GenericClient, tenant: Option<&str>) -> Result<Health, Error> {
    let q = c
        .query_one(
            "SELECT coalesce(extract(epoch FROM max(oldest_ready_age)), 0)::float8, coalesce(sum(expired_leases), 0)::bigint,
                    coalesce(sum(depth - due) FILTER (WHERE state = 'ready'), 0)::bigint
               FROM et_queue_health WHERE $1::text IS NULL OR tenant_id = $1",
            &[&tenant],
        )
        .await?;
    let dead = c
        .query_one(
            "SELECT count(*) FROM (SELECT 1 FROM et_outbound_queue
                                    WHERE state = 'dead' AND ($1::text IS NULL OR tenant_id = $1) LIMIT $2) d",
            &[&tenant, &COUNT_CAP],
        )
        .await?;
    let breakers = c
        .query(
            "SELECT tenant_id, channel_session_id, breaker_state FROM et_session_health
              WHERE breaker_state <> 'closed' AND ($1::text IS NULL OR tenant_id = $1) ORDER BY 1, 2",
            &[&tenant],
        )
        .await?;
    let daemons = c.query_one("SELECT count(*) FROM et_listeners WHERE listening_until > now()", &[]).await?;
    Ok(Health {
        oldest_ready_secs: q.get(0),
        expired_leases: q.get(1),
        scheduled: q.get(2),
        dead_letters: dead.get(0),
        open_breakers: breakers.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect(),
        daemons: daemons.get(0),
    })
}

/// A session's circuit breaker as the daemons last reported it (`et_session_health`).
#[derive(Debug, Clone)]
pub struct Breaker {
    pub session_id: i64,
    pub state: crate::domain::breaker::BreakerState,
    /// The error rate that opened it, when it is open.
    pub failure_rate: Option<f64>,
    pub since: DateTime<Utc>,
    /// The daemon that reported it.
    pub reported_by: String,
}

/// The breakers of `tenant`'s sessions (a row per session a daemon has reported on).
pub async fn breakers(c: &impl GenericClient, tenant: &str) -> Result<Vec<Breaker>, Error> {
    let rows = c
        .query(
            "SELECT channel_session_id, breaker_state, failure_rate, since, reported_by FROM et_session_health
              WHERE tenant_id = $1 ORDER BY channel_session_id",
            &[&tenant],
        )
        .await?;
    rows.iter()
        .map(|r| Ok(Breaker { session_id: r.get(0), state: r.try_get(1)?, failure_rate: r.get(2), since: r.get(3), reported_by: r.get(4) }))
        .collect()
}

/// The live stream's one query per tick: a fingerprint of the tenant's counts (it changes when
/// any message of the tenant changes status or arrives), and the counts by status.
pub async fn live_counts(c: &impl GenericClient, tenant: Option<&str>) -> Result<Vec<(Status, i64)>, Error> {
    let rows = c
        .query(
            "SELECT delivery_status, sum(n)::bigint FROM et_message_counts
              WHERE ($1::text IS NULL OR tenant_id = $1) GROUP BY 1 HAVING sum(n) <> 0 ORDER BY 1",
            &[&tenant],
        )
        .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.get(1)))).collect()
}

/// A console job's progress.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub actor: String,
    pub filter: serde_json::Value,
    /// running, done or stopped.
    pub state: String,
    pub done: i32,
    pub refused: i32,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Start a job of `tenant`; its id.
pub async fn start_job(c: &impl GenericClient, tenant: &str, kind: &str, actor: &str, filter: &serde_json::Value) -> Result<i64, Error> {
    let row = c
        .query_one(
            "INSERT INTO et_console_jobs (tenant_id, kind, actor, filter) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&tenant, &kind, &actor, filter],
        )
        .await?;
    Ok(row.get(0))
}

/// Add a batch's counts to a job; `finished` sets its final state and note.
pub async fn job_progress(
    c: &impl GenericClient,
    tenant: &str,
    id: i64,
    done: i32,
    refused: i32,
    note: Option<&str>,
    finished: Option<&str>,
) -> Result<(), Error> {
    c.execute(
        "UPDATE et_console_jobs SET done = done + $3, refused = refused + $4, note = coalesce($5, note),
                state = coalesce($6, state), updated_at = now()
          WHERE tenant_id = $1 AND id = $2",
        &[&tenant, &id, &done, &refused, &note, &finished],
    )
    .await?;
    Ok(())
}

/// One job of `tenant`.
pub async fn job(c: &impl GenericClient, tenant: &str, id: i64) -> Result<Option<Job>, Error> {
    let row = c
        .query_opt(
            "SELECT id, actor, filter, state, done, refused, note, created_at, updated_at FROM et_console_jobs
              WHERE tenant_id = $1 AND id = $2",
            &[&tenant, &id],
        )
        .await?;
    Ok(row.map(|r| Job {
        id: r.get(0),
        actor: r.get(1),
        filter: r.get(2),
        state: r.get(3),
        done: r.get(4),
        refused: r.get(5),
        note: r.get(6),
        created_at: r.get(7),
        updated_at: r.get(8),
    }))
}
