//! Tenant status webhooks: endpoint CRUD (always scoped by tenant), the delivery worker's claim
//! and its batched outcomes, and an endpoint's recent deliveries.
//!
//! Deliveries are created by the `et_message_events` trigger (`triggers/080_webhooks.sql`).
//! A claim is one CTE (`FOR UPDATE SKIP LOCKED`, at most a few rows per endpoint so one slow
//! endpoint cannot take every slot) that leases the rows by pushing `run_at` forward and counts
//! the attempt; outcomes are written in one statement, fenced on that attempt number, and keep the
//! endpoints' consecutive-failure counts (disabling an endpoint that answered 410 Gone or failed
//! too often: the endpoint trigger then retires its pending deliveries).

use crate::domain::vocab::DeliveryState;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

/// An endpoint as the API shows it (never with its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: i64,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub failure_count: i32,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the secret was last rotated.
    pub secret_rotated_at: Option<DateTime<Utc>>,
    /// Until when the secret before the last rotation still signs (None: only the current one).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

const ENDPOINT_COLUMNS: &str =
    "id, url, events, description, enabled, failure_count, disabled_reason, disabled_at, created_at, updated_at, \
     secret_rotated_at, CASE WHEN previous_secret_expires_at > now() THEN previous_secret_expires_at END";

fn endpoint(r: &tokio_postgres::Row) -> Endpoint {
    Endpoint {
        id: r.get(0),
        url: r.get(1),
        events: r.get(2),
        description: r.get(3),
        enabled: r.get(4),
        failure_count: r.get(5),
        disabled_reason: r.get(6),
        disabled_at: r.get(7),
        created_at: r.get(8),
        updated_at: r.get(9),
        secret_rotated_at: r.get(10),
        previous_secret_expires_at: r.get(11),
    }
}

/// Insert an endpoint; the trigger validates the URL shape and the event types (an endpoint
/// created disabled gets the reason `created disabled`).
pub async fn create(
    client: &impl GenericClient,
    tenant_id: &str,
    url: &str,
    events: &[String],
    description: &str,
    enabled: bool,
    secret: &str,
) -> Result<Endpoint, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO et_webhook_endpoints (tenant_id, url, events, description, enabled, secret)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ENDPOINT_COLUMNS}"
    );
    let row = client.query_one(&sql, &[&tenant_id, &url, &events, &description, &enabled, &secret]).await?;
    Ok(endpoint(&row))
}

pub async fn list(client: &impl GenericClient, tenant_id: &str) -> Result<Vec<Endpoint>, tokio_postgres::Error> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM et_webhook_endpoints WHERE tenant_id = $1 ORDER BY id");
    Ok(client.query(&sql, &[&tenant_id]).await?.iter().map(endpoint).collect())
}

pub async fn get(client: &impl GenericClient, tenant_id: &str, id: i64) -> Result<Option<Endpoint>, tokio_postgres::Error> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM et_webhook_endpoints WHERE tenant_id = $1 AND id = $2");
    Ok(client.query_opt(&sql, &[&tenant_id, &id]).await?.as_ref().map(endpoint))
}

/// Whether endpoint `id` exists for a tenant other than `tenant_id` (a cross-tenant attempt).
pub async fn exists_elsewhere(client: &impl GenericClient, tenant_id: &str, id: i64) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT EXISTS (SELECT 1 FROM et_webhook_endpoints WHERE id = $1 AND tenant_id <> $2)", &[&id, &tenant_id])
        .await?;
    Ok(row.get(0))
}

/// The fields a PATCH may change; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    /// Recorded as the reason when this change disables the endpoint.
    pub disabled_reason: Option<String>,
}

pub async fn update(
    client: &impl GenericClient,
    tenant_id: &str,
    id: i64,
    changes: &Changes,
) -> Result<Option<Endpoint>, tokio_postgres::Error> {
    let sql = format!(
        "UPDATE et_webhook_endpoints
            SET url = coalesce($3, url), events = coalesce($4, events), description = coalesce($5, description),
                enabled = coalesce($6, enabled),
                disabled_reason = CASE WHEN enabled AND $6 = false THEN coalesce($7, disabled_reason) ELSE disabled_reason END
          WHERE tenant_id = $1 AND id = $2
         RETURNING {ENDPOINT_COLUMNS}"
    );
    let row = client
        .query_opt(
            &sql,
            &[&tenant_id, &id, &changes.url, &changes.events, &changes.description, &changes.enabled, &changes.disabled_reason],
        )
        .await?;
    Ok(row.as_ref().map(endpoint))
}

/// An endpoint's fields, all of them: what a PUT writes.
#[derive(Debug, Clone)]
pub struct Replacement {
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// Recorded as the reason when this change disables the endpoint.
    pub disabled_reason: Option<String>,
}

/// Replace every field of an endpoint (its secret and bookkeeping stay).
pub async fn replace(
    client: &impl GenericClient,
    tenant_id: &str,
    id: i64,
    r: &Replacement,
) -> Result<Option<Endpoint>, tokio_postgres::Error> {
    let sql = format!(
        "UPDATE et_webhook_endpoints
            SET url = $3, events = $4, description = $5, enabled = $6,
                disabled_reason = CASE WHEN enabled AND NOT $6 THEN coalesce($7, disabled_reason) ELSE disabled_reason END
          WHERE tenant_id = $1 AND id = $2
         RETURNING {ENDPOINT_COLUMNS}"
    );
    let row = client.query_opt(&sql, &[&tenant_id, &id, &r.url, &r.events, &r.description, &r.enabled, &r.disabled_reason]).await?;
    Ok(row.as_ref().map(endpoint))
}

/// Rotate an endpoint's secret to `secret` through `et_webhook_rotate_secret` (the secret it
/// replaces signs along for `rollover`); `None` when the tenant has no such endpoint.
pub async fn rotate_secret(
    client: &impl GenericClient,
    tenant_id: &str,
    id: i64,
    actor: &str,
    rollover: Duration,
    secret: &str,
) -> Result<Option<Endpoint>, tokio_postgres::Error> {
    let rotated = client
        .execute(
            "SELECT et_webhook_rotate_secret($1, $2, $3, $4::float8 * interval '1 second', $5)",
            &[&tenant_id, &id, &actor, &rollover.as_secs_f64(), &secret],
        )
        .await;
    match rotated {
        Ok(_) => get(client, tenant_id, id).await,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::NO_DATA_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Erase the secrets whose rollover window has passed; how many.
pub async fn forget_expired_secrets(client: &impl GenericClient) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "UPDATE et_webhook_endpoints SET previous_secret = NULL, previous_secret_expires_at = NULL
              WHERE previous_secret_expires_at <= now()",
            &[],
        )
        .await
}

/// Delete an endpoint and its deliveries; whether it existed.
pub async fn delete(client: &impl GenericClient, tenant_id: &str, id: i64) -> Result<bool, tokio_postgres::Error> {
    Ok(client.execute("DELETE FROM et_webhook_endpoints WHERE tenant_id = $1 AND id = $2", &[&tenant_id, &id]).await? == 1)
}

/// One delivery as the API shows it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub state: DeliveryState,
    pub attempts: i32,
    pub run_at: DateTime<Utc>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub payload: serde_json::Value,
    /// The delivery this one repeats, when someone asked for it again.
    pub redelivery_of: Option<i64>,
    /// Who asked for this redelivery.
    pub requested_by: Option<String>,
}

const DELIVERY_COLUMNS: &str =
    "id, event_id, event_type, state, attempts, run_at, last_status, last_error, created_at, delivered_at, payload, redelivery_of, requested_by";

/// An endpoint's newest deliveries, newest first.
pub async fn deliveries(
    client: &impl GenericClient,
    tenant_id: &str,
    endpoint_id: i64,
    limit: i64,
) -> Result<Vec<Delivery>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM et_webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2 ORDER BY id DESC LIMIT $3"
            ),
            &[&tenant_id, &endpoint_id, &limit],
        )
        .await?;
    rows.iter().map(delivery).collect()
}

fn delivery(r: &tokio_postgres::Row) -> Result<Delivery, tokio_postgres::Error> {
    Ok(Delivery {
        id: r.get(0),
        event_id: r.get(1),
        event_type: r.get(2),
        state: r.try_get(3)?,
        attempts: r.get(4),
        run_at: r.get(5),
        last_status: r.get(6),
        last_error: r.get(7),
        created_at: r.get(8),
        delivered_at: r.get(9),
        payload: r.get(10),
        redelivery_of: r.get(11),
        requested_by: r.get(12),
    })
}

/// Why a redelivery was not made.
#[derive(Debug, thiserror::Error)]
pub enum RedeliverError {
    /// No such delivery of this endpoint for this tenant.
    #[error("no such delivery")]
    NotFound,
    /// The delivery is still pending, or the endpoint is disabled (the database's reason).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

/// Deliver `delivery_id` of endpoint `endpoint_id` again, as `actor` (`et_webhook_redeliver`):
/// the new delivery, due now.
pub async fn redeliver(
    client: &impl GenericClient,
    tenant_id: &str,
    endpoint_id: i64,
    delivery_id: i64,
    actor: &str,
) -> Result<Delivery, RedeliverError> {
    let made = client.query_one("SELECT et_webhook_redeliver($1, $2, $3, $4)", &[&tenant_id, &endpoint_id, &delivery_id, &actor]).await;
    let id: i64 = match made {
        Ok(row) => row.get(0),
        Err(e) => {
            return Err(match e.as_db_error().map(|d| (d.code().clone(), d.message().to_owned())) {
                Some((SqlState::NO_DATA_FOUND, _)) => RedeliverError::NotFound,
                Some((SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE, message)) => RedeliverError::Refused(message),
                _ => e.into(),
            })
        }
    };
    let row = client
        .query_one(&format!("SELECT {DELIVERY_COLUMNS} FROM et_webhook_deliveries WHERE tenant_id = $1 AND id = $2"), &[&tenant_id, &id])
        .await?;
    Ok(delivery(&row)?)
}

/// A claimed delivery, with what it takes to send it.
#[derive(Clone)]
pub struct Claimed {
    pub tenant_id: String,
    pub id: i64,
    pub endpoint_id: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub payload: serde_json::Value,
    /// The attempt this claim is (1 = first); the fence for its outcome.
    pub attempts: i32,
    pub url: String,
    /// The endpoint's `whsec_` signing secret.
    pub secret: String,
    /// The secret a rotation replaced, while its rollover window lasts: it signs as well.
    pub previous_secret: Option<String>,
}

impl std::fmt::Debug for Claimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimed")
            .field("tenant_id", &self.tenant_id)
            .field("id", &self.id)
            .field("endpoint_id", &self.endpoint_id)
            .field("event_id", &self.event_id)
            .field("event_type", &self.event_type)
            .field("attempts", &self.attempts)
            .field("url", &self.url)
            .field("secret", &"[redacted]")
            .field("previous_secret", &self.previous_secret.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

const CLAIM: &str = r#"
WITH cand AS (
    SELECT r.tenant_id, r.id,
           row_number() OVER (PARTITION BY r.tenant_id, r.endpoint_id ORDER BY r.run_at, r.id) AS rn
      FROM (SELECT tenant_id, id, endpoint_id, run_at FROM et_webhook_deliveries
             WHERE state = 'ready' AND run_at <= now()
             ORDER BY run_at LIMIT $1::bigint * 4) r
), c AS (
    SELECT d.tenant_id, d.id
      FROM et_webhook_deliveries d
      JOIN cand ON cand.tenant_id = d.tenant_id AND cand.id = d.id
     WHERE cand.rn <= $2::bigint AND d.state = 'ready' AND d.run_at <= now()
     ORDER BY d.run_at
     LIMIT $1::bigint
       FOR UPDATE OF d SKIP LOCKED
)
UPDATE et_webhook_deliveries d
   SET attempts = d.attempts + 1, run_at = now() + $3::float8 * interval '1 millisecond'
  FROM c, et_webhook_endpoints e
 WHERE d.tenant_id = c.tenant_id AND d.id = c.id
   AND e.tenant_id = d.tenant_id AND e.id = d.endpoint_id
RETURNING d.tenant_id, d.id, d.endpoint_id, d.event_id, d.event_type, d.payload, d.attempts, e.url, e.secret,
          CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END
"#;

/// Claim up to `limit` due deliveries (at most `per_endpoint` of any one endpoint), leased for
/// `lease`: a worker that dies mid-request leaves them to be retried once the lease passes.
pub async fn claim(
    client: &impl GenericClient,
    limit: i64,
    per_endpoint: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, tokio_postgres::Error> {
    let lease_ms = lease.as_millis() as f64;
    let rows = client.query(CLAIM, &[&limit, &per_endpoint, &lease_ms]).await?;
    Ok(rows
        .iter()
        .map(|r| Claimed {
            tenant_id: r.get(0),
            id: r.get(1),
            endpoint_id: r.get(2),
            event_id: r.get(3),
            event_type: r.get(4),
            payload: r.get(5),
            attempts: r.get(6),
            url: r.get(7),
            secret: r.get(8),
            previous_secret: r.get(9),
        })
        .collect())
}

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// A 2xx: done.
    Delivered,
    /// Failed; try again after this long.
    Retry(Duration),
    /// Failed and out of attempts: dead, and the endpoint's failure count grows.
    Dead,
    /// 410 Gone: dead, and the endpoint is disabled at once.
    Gone,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Delivered => "delivered",
            Verdict::Retry(_) => "retry",
            Verdict::Dead => "dead",
            Verdict::Gone => "gone",
        }
    }
}

/// One attempt's outcome, fenced on the claimed attempt number.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub tenant_id: String,
    pub id: i64,
    pub attempts: i32,
    pub verdict: Verdict,
    /// The HTTP status, when there was an answer.
    pub status: Option<i32>,
    pub error: Option<String>,
}

const RECORD: &str = r#"
WITH o AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[], $4::text[], $5::int[], $6::text[], $7::float8[])
        AS o(tenant_id, id, attempts, verdict, status, error, delay_ms)
), d AS (
    UPDATE et_webhook_deliveries d
       SET state = CASE o.verdict WHEN 'delivered' THEN 'delivered' WHEN 'retry' THEN 'ready' ELSE 'dead' END,
           run_at = CASE WHEN o.verdict = 'retry' THEN now() + o.delay_ms * interval '1 millisecond' ELSE now() END,
           last_status = o.status,
           last_error = o.error,
           delivered_at = CASE WHEN o.verdict = 'delivered' THEN now() END
      FROM o
     WHERE d.tenant_id = o.tenant_id AND d.id = o.id AND d.attempts = o.attempts AND d.state = 'ready'
    RETURNING d.tenant_id, d.endpoint_id, o.verdict
), s AS (
    SELECT tenant_id, endpoint_id,
           bool_or(verdict = 'delivered') AS ok,
           count(*) FILTER (WHERE verdict = 'dead') AS dead,
           bool_or(verdict = 'gone') AS gone,
           count(*) AS recorded
      FROM d GROUP BY tenant_id, endpoint_id
), e AS (
    UPDATE et_webhook_endpoints e
       SET failure_count = CASE WHEN s.ok THEN 0 ELSE e.failure_count + s.dead END,
           enabled = e.enabled AND NOT s.gone AND (s.ok OR e.failure_count + s.dead < $8::bigint),
           disabled_reason = CASE
               WHEN NOT e.enabled THEN e.disabled_reason
               WHEN s.gone THEN 'the endpoint answered 410 Gone'
               WHEN NOT s.ok AND e.failure_count + s.dead >= $8::bigint
                 THEN format('%s deliveries in a row failed', e.failure_count + s.dead)
               ELSE e.disabled_reason END
      FROM s
     WHERE e.tenant_id = s.tenant_id AND e.id = s.endpoint_id
       AND (s.gone OR s.dead > 0 OR (s.ok AND e.failure_count > 0))
    RETURNING 1
)
SELECT coalesce((SELECT sum(recorded) FROM s), 0)::bigint
"#;

/// Write a batch of outcomes; returns how many were still ours to write (a delivery whose lease
/// passed and was claimed again, or whose endpoint was disabled meanwhile, is left alone).
/// An endpoint is disabled after `disable_after` dead deliveries in a row.
pub async fn record(client: &impl GenericClient, outcomes: &[Outcome], disable_after: i32) -> Result<i64, tokio_postgres::Error> {
    if outcomes.is_empty() {
        return Ok(0);
    }
    let tenants: Vec<&str> = outcomes.iter().map(|o| o.tenant_id.as_str()).collect();
    let ids: Vec<i64> = outcomes.iter().map(|o| o.id).collect();
    let attempts: Vec<i32> = outcomes.iter().map(|o| o.attempts).collect();
    let verdicts: Vec<&str> = outcomes.iter().map(|o| o.verdict.as_str()).collect();
    let statuses: Vec<Option<i32>> = outcomes.iter().map(|o| o.status).collect();
    let errors: Vec<Option<&str>> = outcomes.iter().map(|o| o.error.as_deref()).collect();
    let delays: Vec<f64> = outcomes
        .iter()
        .map(|o| match o.verdict {
            Verdict::Retry(d) => d.as_millis() as f64,
            _ => 0.0,
        })
        .collect();
    let row =
        client.query_one(RECORD, &[&tenants, &ids, &attempts, &verdicts, &statuses, &errors, &delays, &(disable_after as i64)]).await?;
    Ok(row.get(0))
}
