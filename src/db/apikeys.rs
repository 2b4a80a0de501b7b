//! API keys: create (the key is returned once), authenticate by prefix + SHA-256, list, revoke;
//! and the security log of denied attempts.

use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

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

/// An authenticated caller.
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

async fn require_tenant(client: &tokio_postgres::Client, tenant_id: &str) -> Result<(), KeyError> {
    let found = client.query_opt("SELECT 1 FROM et_tenants WHERE id = $1", &[&tenant_id]).await?;
    found.map(|_| ()).ok_or_else(|| KeyError::UnknownTenant(tenant_id.to_owned()))
}

pub async fn create(
    client: &tokio_postgres::Client,
    tenant_id: &str,
    name: &str,
    scopes: &[Scope],
    expires_at: Option<DateTime<Utc>>,
) -> Result<NewKey, KeyError> {
    let (prefix, key) = generate();
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let id: i64 = client
        .query_one(
            "INSERT INTO et_api_keys (tenant_id, name, prefix, key_sha256, scopes, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[&tenant_id, &name, &prefix, &sha256(&key), &scopes, &expires_at],
        )
        .await
        .map_err(|e| unknown_tenant(e, tenant_id))?
        .get(0);
    Ok(NewKey { id, prefix, key })
}

/// Why a presented key was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Unknown,
    Expired,
    Revoked,
}

/// The principal for `key`, or why not. Touches `last_used_at` at most once a minute.
pub async fn authenticate(client: &tokio_postgres::Client, key: &str) -> Result<Result<Principal, Rejected>, tokio_postgres::Error> {
    let Some(prefix) = key.strip_prefix("pgc_").and_then(|r| r.split('_').next()).filter(|p| p.len() == 8) else {
        return Ok(Err(Rejected::Unknown));
    };
    let Some(row) = client
        .query_opt(
            "SELECT tenant_id, id, key_sha256, scopes, expires_at <= now(), revoked_at IS NOT NULL,
                    last_used_at IS NULL OR last_used_at < now() - interval '1 minute'
               FROM et_api_keys WHERE prefix = $1",
            &[&prefix],
        )
        .await?
    else {
        return Ok(Err(Rejected::Unknown));
    };
    let stored: Vec<u8> = row.get(2);
    if stored != sha256(key) {
        return Ok(Err(Rejected::Unknown));
    }
    if row.get::<_, bool>(5) {
        return Ok(Err(Rejected::Revoked));
    }
    if row.get::<_, Option<bool>>(4) == Some(true) {
        return Ok(Err(Rejected::Expired));
    }
    let principal = Principal { tenant_id: row.get(0), key_id: row.get(1), prefix: prefix.to_owned(), scopes: row.get(3) };
    if row.get::<_, bool>(6) {
        client
            .execute(
                "UPDATE et_api_keys SET last_used_at = now() WHERE tenant_id = $1 AND id = $2",
                &[&principal.tenant_id, &principal.key_id],
            )
            .await?;
    }
    Ok(Ok(principal))
}

/// (id, name, prefix, scopes, expires_at, revoked_at, last_used_at) of a tenant's keys.
pub type KeyRow = (i64, String, String, Vec<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

pub async fn list(client: &tokio_postgres::Client, tenant_id: &str) -> Result<Vec<KeyRow>, KeyError> {
    require_tenant(client, tenant_id).await?;
    let rows = client
        .query(
            "SELECT id, name, prefix, scopes, expires_at, revoked_at, last_used_at FROM et_api_keys WHERE tenant_id = $1 ORDER BY id",
            &[&tenant_id],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6))).collect())
}

/// Revoke by prefix (as printed by `list`); returns whether a live key was revoked.
pub async fn revoke(client: &tokio_postgres::Client, tenant_id: &str, prefix: &str) -> Result<bool, KeyError> {
    require_tenant(client, tenant_id).await?;
    Ok(client
        .execute(
            "UPDATE et_api_keys SET revoked_at = now() WHERE tenant_id = $1 AND prefix = $2 AND revoked_at IS NULL",
            &[&tenant_id, &prefix],
        )
        .await?
        == 1)
}

/// Record a denied attempt.
pub async fn security_event(
    client: &tokio_postgres::Client,
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
