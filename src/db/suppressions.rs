//! A tenant's suppression list: read it (keyset pages, newest first), add and remove through
//! the SQL functions `et_suppress` / `et_unsuppress` (triggers/045_suppressions.sql), which
//! normalise the address, record the actor and log every change. Always scoped by tenant.

use crate::domain::outcome::SuppressReason;
use crate::domain::vocab::Channel;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

/// One suppression, with its hard-bounce count and its source message's public id.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    pub id: i64,
    pub channel: Channel,
    pub address: String,
    pub reason: SuppressReason,
    pub detail: Option<String>,
    pub message_id: Option<Uuid>,
    pub hard_bounces: i32,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// The columns of [`Suppression`], from `s` (a row of `et_suppressions` or of `et_suppress`).
const COLUMNS: &str = "s.id, s.channel, s.address, s.reason, s.detail, m.public_id, coalesce(b.hard_bounces, 0), s.expires_at,
                       s.created_at, s.created_by";

/// The joins of [`COLUMNS`] for `s` of tenant `$1`.
const JOINS: &str = "LEFT JOIN et_messages m ON m.tenant_id = $1 AND m.id = s.source_message_id
                     LEFT JOIN et_bounce_counts b ON b.tenant_id = $1 AND b.channel = s.channel AND b.address = s.address";

fn suppression(r: &tokio_postgres::Row) -> Suppression {
    Suppression {
        id: r.get(0),
        channel: r.get(1),
        address: r.get(2),
        reason: r.get(3),
        detail: r.get(4),
        message_id: r.get(5),
        hard_bounces: r.get(6),
        expires_at: r.get(7),
        created_at: r.get(8),
        created_by: r.get(9),
    }
}

/// What `GET /v1/suppressions` filters on.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub channel: Option<Channel>,
    pub reason: Option<SuppressReason>,
    /// The address starts with this (case-insensitive).
    pub address_prefix: Option<String>,
    /// Rows with a smaller id than this (the previous page's last).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// A page of the tenant's suppressions, newest first.
pub async fn list(client: &impl GenericClient, tenant_id: &str, f: &ListFilter) -> Result<Vec<Suppression>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM et_suppressions s {JOINS}
          WHERE s.tenant_id = $1 AND ($2::text IS NULL OR s.channel = $2) AND ($3::text IS NULL OR s.reason = $3)
            AND ($4::text IS NULL OR starts_with(lower(s.address), lower($4))) AND ($5::bigint IS NULL OR s.id < $5)
          ORDER BY s.id DESC LIMIT $6"
    );
    let rows = client.query(&sql, &[&tenant_id, &f.channel, &f.reason, &f.address_prefix, &f.before_id, &f.limit]).await?;
    Ok(rows.iter().map(suppression).collect())
}

/// The tenant's suppression of `address` (normalised first: an invalid one is refused naming
/// `address`, a refusal like the insert trigger's), if there is one.
pub async fn get(
    client: &impl GenericClient,
    tenant_id: &str,
    channel: Channel,
    address: &str,
) -> Result<Option<Suppression>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM et_suppressions s {JOINS}
          WHERE s.tenant_id = $1 AND s.channel = $2 AND s.address = et_suppression_address($2, $3)"
    );
    Ok(client.query_opt(&sql, &[&tenant_id, &channel, &address]).await?.as_ref().map(suppression))
}

/// What to suppress, and why.
#[derive(Debug, Clone)]
pub struct NewSuppression<'a> {
    pub channel: Channel,
    pub address: &'a str,
    pub reason: SuppressReason,
    pub detail: Option<&'a str>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Suppress an address as `actor` (`et_suppress`); returns the suppression and whether this
/// call created it (false: it was there already and is left as it was).
pub async fn suppress(
    client: &impl GenericClient,
    tenant_id: &str,
    new: &NewSuppression<'_>,
    actor: &str,
) -> Result<(Suppression, bool), tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS}, s.created
           FROM et_suppress($1, $2, $3, $4, $5, $6, $7) s {JOINS}"
    );
    let row = client.query_one(&sql, &[&tenant_id, &new.channel, &new.address, &new.reason, &actor, &new.detail, &new.expires_at]).await?;
    Ok((suppression(&row), row.get(10)))
}

/// Remove a suppression as `actor` (`et_unsuppress`: logged, the address's hard-bounce count
/// reset); returns whether there was one.
pub async fn unsuppress(
    client: &impl GenericClient,
    tenant_id: &str,
    channel: Channel,
    address: &str,
    actor: &str,
    note: &str,
) -> Result<bool, tokio_postgres::Error> {
    let row = client.query_one("SELECT et_unsuppress($1, $2, $3, $4, $5)", &[&tenant_id, &channel, &address, &actor, &note]).await?;
    Ok(row.get(0))
}
