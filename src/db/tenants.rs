//! The SQL of tenant administration (`/v1/tenants`, the platform operator's routes): tenants
//! (create, read, list, change name / settings / active) and their channel sessions (create,
//! read, list, change, disable). Settings and session config change by JSON Merge Patch
//! (`et_jsonb_merge_patch`, triggers/090_tenants_and_keys.sql); the session triggers
//! (triggers/050_sessions.sql) check addresses and fallbacks. Every change records its actor.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, GenericClient, Row};

/// A tenant as the API shows it.
#[derive(Debug, Clone)]
pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub settings: Value,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const TENANT_COLS: &str = "id, name, settings, active, created_at, updated_at";

fn tenant(r: &Row) -> TenantRow {
    TenantRow { id: r.get(0), name: r.get(1), settings: r.get(2), active: r.get(3), created_at: r.get(4), updated_at: r.get(5) }
}

/// A new tenant; `None` when the id is taken.
pub async fn create_tenant(
    c: &impl GenericClient,
    id: &str,
    name: &str,
    settings: &Value,
    actor: &str,
) -> Result<Option<TenantRow>, Error> {
    let row = c
        .query_opt(
            &format!(
                "INSERT INTO et_tenants (id, name, settings, updated_by) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO NOTHING RETURNING {TENANT_COLS}"
            ),
            &[&id, &name, settings, &actor],
        )
        .await?;
    Ok(row.as_ref().map(tenant))
}

pub async fn get_tenant(c: &impl GenericClient, id: &str) -> Result<Option<TenantRow>, Error> {
    Ok(c.query_opt(&format!("SELECT {TENANT_COLS} FROM et_tenants WHERE id = $1"), &[&id]).await?.as_ref().map(tenant))
}

/// Tenants in id order after `after` (keyset), at most `limit`; only active or inactive ones
/// when `active` is given.
pub async fn list_tenants(c: &impl GenericClient, active: Option<bool>, after: Option<&str>, limit: i64) -> Result<Vec<TenantRow>, Error> {
    let rows = c
        .query(
            &format!(
                "SELECT {TENANT_COLS} FROM et_tenants
                  WHERE ($1::boolean IS NULL OR active = $1) AND ($2::text IS NULL OR id > $2)
                  ORDER BY id LIMIT $3"
            ),
            &[&active, &after, &limit],
        )
        .await?;
    Ok(rows.iter().map(tenant).collect())
}

/// What a tenant update changes (absent = unchanged).
#[derive(Debug, Clone, Default)]
pub struct TenantChanges {
    pub name: Option<String>,
    /// A JSON Merge Patch of `settings`.
    pub settings: Option<Value>,
    pub active: Option<bool>,
}

/// Apply `changes`; `None` when there is no such tenant.
pub async fn update_tenant(c: &impl GenericClient, id: &str, changes: &TenantChanges, actor: &str) -> Result<Option<TenantRow>, Error> {
    let row = c
        .query_opt(
            &format!(
                "UPDATE et_tenants SET name = coalesce($2, name),
                        settings = CASE WHEN $3::jsonb IS NULL THEN settings ELSE et_jsonb_merge_patch(settings, $3) END,
                        active = coalesce($4, active), updated_at = now(), updated_by = $5
                  WHERE id = $1 RETURNING {TENANT_COLS}"
            ),
            &[&id, &changes.name, &changes.settings, &changes.active, &actor],
        )
        .await?;
    Ok(row.as_ref().map(tenant))
}

/// A channel session as the API shows it (`credentials_ref` is a name, never a secret).
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: i64,
    pub tenant_id: String,
    pub channel: String,
    pub provider: String,
    pub address: String,
    pub name: String,
    pub config: Value,
    pub credentials_ref: Option<String>,
    pub requires_approval: bool,
    pub status: String,
    pub max_attempts: i32,
    pub fallback_session_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SESSION_COLS: &str = "id, tenant_id, channel, provider, address, name, config, credentials_ref, requires_approval, status, \
                            max_attempts, fallback_session_id, created_at, updated_at";

fn session(r: &Row) -> SessionRow {
    SessionRow {
        id: r.get(0),
        tenant_id: r.get(1),
        channel: r.get(2),
        provider: r.get(3),
        address: r.get(4),
        name: r.get(5),
        config: r.get(6),
        credentials_ref: r.get(7),
        requires_approval: r.get(8),
        status: r.get(9),
        max_attempts: r.get(10),
        fallback_session_id: r.get(11),
        created_at: r.get(12),
        updated_at: r.get(13),
    }
}

/// A new session's columns; `None` leaves the table's default.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    pub channel: String,
    pub provider: String,
    pub address: String,
    pub name: Option<String>,
    pub config: Option<Value>,
    pub credentials_ref: Option<String>,
    pub requires_approval: Option<bool>,
    pub status: Option<String>,
    pub max_attempts: Option<i32>,
    pub fallback_session_id: Option<i64>,
}

pub async fn create_session(c: &impl GenericClient, tenant: &str, s: &NewSession, actor: &str) -> Result<SessionRow, Error> {
    let row = c
        .query_one(
            &format!(
                "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, name, config, credentials_ref,
                                                  requires_approval, status, max_attempts, fallback_session_id, updated_by)
                 VALUES ($1, $2, $3, $4, coalesce($5, ''), coalesce($6, '{{}}'::jsonb), $7, coalesce($8, false),
                         coalesce($9, 'active'), coalesce($10, 5), $11, $12)
                 RETURNING {SESSION_COLS}"
            ),
            &[
                &tenant,
                &s.channel,
                &s.provider,
                &s.address,
                &s.name,
                &s.config,
                &s.credentials_ref,
                &s.requires_approval,
                &s.status,
                &s.max_attempts,
                &s.fallback_session_id,
                &actor,
            ],
        )
        .await?;
    Ok(session(&row))
}

pub async fn get_session(c: &impl GenericClient, tenant: &str, id: i64) -> Result<Option<SessionRow>, Error> {
    let row =
        c.query_opt(&format!("SELECT {SESSION_COLS} FROM et_channel_sessions WHERE tenant_id = $1 AND id = $2"), &[&tenant, &id]).await?;
    Ok(row.as_ref().map(session))
}

pub async fn list_sessions(c: &impl GenericClient, tenant: &str) -> Result<Vec<SessionRow>, Error> {
    let rows = c.query(&format!("SELECT {SESSION_COLS} FROM et_channel_sessions WHERE tenant_id = $1 ORDER BY id"), &[&tenant]).await?;
    Ok(rows.iter().map(session).collect())
}

/// What a session update changes: absent = unchanged; `Some(None)` clears a nullable column.
#[derive(Debug, Clone, Default)]
pub struct SessionChanges {
    pub address: Option<String>,
    pub name: Option<String>,
    /// A JSON Merge Patch of `config`.
    pub config: Option<Value>,
    pub credentials_ref: Option<Option<String>>,
    pub requires_approval: Option<bool>,
    pub status: Option<String>,
    pub max_attempts: Option<i32>,
    pub fallback_session_id: Option<Option<i64>>,
}

/// Apply `changes`; `None` when the tenant has no such session.
pub async fn update_session(
    c: &impl GenericClient,
    tenant: &str,
    id: i64,
    ch: &SessionChanges,
    actor: &str,
) -> Result<Option<SessionRow>, Error> {
    let set_ref = ch.credentials_ref.is_some();
    let credentials_ref = ch.credentials_ref.clone().flatten();
    let set_fallback = ch.fallback_session_id.is_some();
    let fallback = ch.fallback_session_id.flatten();
    let params: [&(dyn ToSql + Sync); 13] = [
        &tenant,
        &id,
        &ch.address,
        &ch.name,
        &ch.config,
        &set_ref,
        &credentials_ref,
        &ch.requires_approval,
        &ch.status,
        &ch.max_attempts,
        &set_fallback,
        &fallback,
        &actor,
    ];
    let row = c
        .query_opt(
            &format!(
                "UPDATE et_channel_sessions SET
                        address = coalesce($3, address), name = coalesce($4, name),
                        config = CASE WHEN $5::jsonb IS NULL THEN config ELSE et_jsonb_merge_patch(config, $5) END,
                        credentials_ref = CASE WHEN $6 THEN $7 ELSE credentials_ref END,
                        requires_approval = coalesce($8, requires_approval), status = coalesce($9, status),
                        max_attempts = coalesce($10, max_attempts),
                        fallback_session_id = CASE WHEN $11 THEN $12 ELSE fallback_session_id END,
                        updated_by = $13
                  WHERE tenant_id = $1 AND id = $2 RETURNING {SESSION_COLS}"
            ),
            &params,
        )
        .await?;
    Ok(row.as_ref().map(session))
}

/// Whether session `id` exists for another tenant than `tenant` (only for the security log: the
/// caller still answers as if it did not exist).
pub async fn session_elsewhere(c: &impl GenericClient, tenant: &str, id: i64) -> Result<bool, Error> {
    Ok(c.query_opt("SELECT 1 FROM et_channel_sessions WHERE id = $1 AND tenant_id <> $2", &[&id, &tenant]).await?.is_some())
}
