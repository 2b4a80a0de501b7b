//! API keys: create (the key is returned once), authenticate by prefix + SHA-256, list, rotate,
//! revoke; and the security log of denied attempts.
//!
//! A tenant key acts for its tenant with the scopes `send`, `read`, `admin`. A platform key
//! (`tenant_id` NULL, the single scope `platform`, created only by the CLI) acts for the operator
//! on every tenant through `/v1/tenants` and nothing else. Rotation makes a new key with the old
//! one's name, scopes and expiry; the old one stops at once or after an overlap
//! (`et_api_key_rotate`, triggers/090_tenants_and_keys.sql). A key of a deactivated tenant is
//! refused ([`Rejected::TenantInactive`]).

use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Send,
    Read,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "send" => Some(Scope::Send),
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// The scope of a platform key (its only one).
pub const PLATFORM_SCOPE: &str = "platform";

/// An authenticated tenant key.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant_id: String,
    pub key_id: i64,
    pub prefix: String,
    pub scopes: Vec<String>,
}

impl Principal {
    /// `admin` implies every scope.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| s == scope.as_str() || s == "admin")
    }
}

/// An authenticated platform key.
#[derive(Debug, Clone)]
pub struct PlatformKey {
    pub key_id: i64,
    pub prefix: String,
}

/// Whoever a presented key belongs to.
#[derive(Debug, Clone)]
pub enum Authenticated {
    Tenant(Principal),
    Platform(PlatformKey),
}

/// A freshly created key: `key` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: i64,
    pub prefix: String,
    pub key: String,
}

fn sha256(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// `pgc_<prefix>_<secret>`: 8 hex characters to find the row, 256 random bits to prove it.
fn generate() -> (String, String) {
    let prefix = hex::encode(rand::random::<[u8; 4]>());
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    (prefix.clone(), format!("pgc_{prefix}_{secret}"))
}

/// Why a key could not be created, listed or revoked.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("unknown tenant {0}")]
    UnknownTenant(String),
    #[error("no key {0}")]
    UnknownKey(String),
    /// The key exists but cannot be rotated (revoked, expired, already rotated): the reason.
    #[error("{0}")]
    NotLive(String),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

/// 23503 on `et_api_keys`: its only foreign key is the tenant.
fn unknown_tenant(e: tokio_postgres::Error, tenant_id: &str) -> KeyError {
    if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) {
        return KeyError::UnknownTenant(tenant_id.to_owned());
    }
    KeyError::Db(e)
}

async fn require_tenant(client: &impl GenericClient, tenant_id: &str) -> Result<(), KeyError> {
    let found = client.query_opt("SELECT 1 FROM et_tenants WHERE id = $1", &[&tenant_id]).await?;
    found.map(|_| ()).ok_or_else(|| KeyError::UnknownTenant(tenant_id.to_owned()))
}

/// A tenant key, created by the command line (`created_by` = `cli`).
pub async fn create(
    client: &impl GenericClient,
    tenant_id: &str,
    name: &str,
    scopes: &[Scope],
    expires_at: Option<DateTime<Utc>>,
) -> Result<NewKey, KeyError> {
    create_as(client, tenant_id, name, scopes, expires_at, "cli").await
}

/// A tenant key, created by `actor` (`apikey:<prefix>` through the API).
pub async fn create_as(
    client: &impl GenericClient,
    tenant_id: &str,
    name: &str,
    scopes: &[Scope],
    expires_at: Option<DateTime<Utc>>,
    actor: &str,
) -> Result<NewKey, KeyError> {
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    insert(client, Some(tenant_id), name, &scopes, expires_at, actor).await.map_err(|e| unknown_tenant(e, tenant_id))
}

/// A platform key (no tenant, scope `platform`): only the command line makes one.
pub async fn create_platform(client: &impl GenericClient, name: &str, expires_at: Option<DateTime<Utc>>) -> Result<NewKey, KeyError> {
    Ok(insert(client, None, name, &[PLATFORM_SCOPE], expires_at, "cli").await?)
}

async fn insert(
    client: &impl GenericClient,
    tenant_id: Option<&str>,
    name: &str,
    scopes: &[&str],
    expires_at: Option<DateTime<Utc>>,
    actor: &str,
) -> Result<NewKey, tokio_postgres::Error> {
    let (prefix, key) = generate();
    let id: i64 = client
        .query_one(
            "INSERT INTO et_api_keys (tenant_id, name, prefix, key_sha256, scopes, expires_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[&tenant_id, &name, &prefix, &sha256(&key), &scopes, &expires_at, &actor],
        )
        .await?
        .get(0);
    Ok(NewKey { id, prefix, key })
}

/// A rotated key's replacement: the key (shown once) and what it took over.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub new: NewKey,
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When the old key stops working (now, or the end of the overlap).
    pub old_until: DateTime<Utc>,
}

/// Rotate the live key `prefix` of `tenant_id` (`None`: a platform key): the new key (shown
/// once) replaces it; the old one stops now, or after `overlap` (at most 7 days).
pub async fn rotate(
    client: &impl GenericClient,
    tenant_id: Option<&str>,
    prefix: &str,
    overlap: std::time::Duration,
    actor: &str,
) -> Result<Rotated, KeyError> {
    let (new_prefix, key) = generate();
    let overlap = format!("{} milliseconds", overlap.as_millis());
    let id: i64 = client
        .query_one(
            "SELECT et_api_key_rotate($1, $2, $3, $4, $5::text::interval, $6)",
            &[&tenant_id, &prefix, &new_prefix, &sha256(&key), &overlap, &actor],
        )
        .await
        .map_err(|e| match e.code() {
            Some(c) if *c == tokio_postgres::error::SqlState::NO_DATA_FOUND => KeyError::UnknownKey(prefix.to_owned()),
            Some(c) if *c == tokio_postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE => {
                KeyError::NotLive(e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default())
            }
            _ => KeyError::Db(e),
        })?
        .get(0);
    // (a statement of its own: a CTE around the function would not see the row it inserts)
    let row = client
        .query_one(
            "SELECT n.id, n.name, n.scopes, n.expires_at, o.revoked_at FROM et_api_keys n JOIN et_api_keys o ON o.replaced_by = n.id
              WHERE n.id = $1",
            &[&id],
        )
        .await?;
    Ok(Rotated {
        new: NewKey { id: row.get(0), prefix: new_prefix, key },
        name: row.get(1),
        scopes: row.get(2),
        expires_at: row.get(3),
        old_until: row.get(4),
    })
}

/// Why a presented key was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Unknown,
    Expired,
    Revoked,
    /// A tenant key whose tenant is deactivated (`et_tenants.active` false).
    TenantInactive,
}

/// Who `key` belongs to, or why it is refused. Touches `last_used_at` at most once a minute.
pub async fn authenticate(client: &impl GenericClient, key: &str) -> Result<Result<Authenticated, Rejected>, tokio_postgres::Error> {
    let Some(prefix) = key.strip_prefix("pgc_").and_then(|r| r.split('_').next()).filter(|p| p.len() == 8) else {
        return Ok(Err(Rejected::Unknown));
    };
    let Some(row) = client
        .query_opt(
            &format!(
                "SELECT {KEY_STATE}, k.key_sha256, k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute'
                   FROM et_api_keys k LEFT JOIN et_tenants t ON t.id = k.tenant_id WHERE k.prefix = $1"
            ),
            &[&prefix],
        )
        .await?
    else {
        return Ok(Err(Rejected::Unknown));
    };
    let stored: Vec<u8> = row.get(7);
    if stored != sha256(key) {
        return Ok(Err(Rejected::Unknown));
    }
    let judged = judge(&row);
    if judged.is_ok() && row.get::<_, bool>(8) {
        let key_id: i64 = row.get(1);
        client.execute("UPDATE et_api_keys SET last_used_at = now() WHERE id = $1", &[&key_id]).await?;
    }
    Ok(judged)
}

/// The columns [`judge`] reads, first in a query over
/// `et_api_keys k LEFT JOIN et_tenants t ON t.id = k.tenant_id`.
pub(crate) const KEY_STATE: &str = "k.tenant_id, k.id, k.prefix, k.scopes, k.expires_at <= now(), k.revoked_at <= now(), t.active";

/// Whether a found key may act now, and as whom: the one rule for the API's keys and the
/// console's sessions (which re-check the key they were opened with on every request).
pub(crate) fn judge(row: &tokio_postgres::Row) -> Result<Authenticated, Rejected> {
    if row.get::<_, Option<bool>>(5) == Some(true) {
        return Err(Rejected::Revoked);
    }
    if row.get::<_, Option<bool>>(4) == Some(true) {
        return Err(Rejected::Expired);
    }
    let tenant: Option<String> = row.get(0);
    let (key_id, prefix): (i64, String) = (row.get(1), row.get(2));
    if tenant.is_some() && row.get::<_, Option<bool>>(6) != Some(true) {
        return Err(Rejected::TenantInactive);
    }
    Ok(match tenant {
        Some(tenant_id) => Authenticated::Tenant(Principal { tenant_id, key_id, prefix, scopes: row.get(3) }),
        None => Authenticated::Platform(PlatformKey { key_id, prefix }),
    })
}

/// (id, name, prefix, scopes, expires_at, revoked_at, last_used_at) of a tenant's keys.
pub type KeyRow = (i64, String, String, Vec<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

pub async fn list(client: &impl GenericClient, tenant_id: &str) -> Result<Vec<KeyRow>, KeyError> {
    require_tenant(client, tenant_id).await?;
    let rows = client
        .query(
            "SELECT id, name, prefix, scopes, expires_at, revoked_at, last_used_at FROM et_api_keys WHERE tenant_id = $1 ORDER BY id",
            &[&tenant_id],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6))).collect())
}

/// Revoke by prefix (as printed by `list`) from the command line; returns whether a key that
/// still worked was revoked.
pub async fn revoke(client: &impl GenericClient, tenant_id: &str, prefix: &str) -> Result<bool, KeyError> {
    require_tenant(client, tenant_id).await?;
    revoke_as(client, Some(tenant_id), prefix, "cli").await
}

/// Revoke the key `prefix` of `tenant_id` (`None`: a platform key) now, as `actor`.
pub async fn revoke_as(client: &impl GenericClient, tenant_id: Option<&str>, prefix: &str, actor: &str) -> Result<bool, KeyError> {
    Ok(client.query_one("SELECT et_api_key_revoke($1, $2, $3)", &[&tenant_id, &prefix, &actor]).await?.get(0))
}

/// Whether `prefix` names a key of another tenant than `tenant_id` (for the security log).
pub async fn key_elsewhere(client: &impl GenericClient, tenant_id: &str, prefix: &str) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_opt("SELECT 1 FROM et_api_keys WHERE prefix = $1 AND tenant_id IS DISTINCT FROM $2", &[&prefix, &tenant_id])
        .await?
        .is_some())
}

/// Record a denied attempt.
pub async fn security_event(
    client: &impl GenericClient,
    tenant_id: Option<&str>,
    actor: &str,
    action: &str,
    detail: &serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO et_security_events (tenant_id, actor, action, detail) VALUES ($1, $2, $3, $4)",
            &[&tenant_id, &actor, &action, detail],
        )
        .await?;
    Ok(())
}
