//! Schema migrations (`sql/V*.sql`, embedded with refinery) and the trigger files
//! (`triggers/*.sql`, `CREATE OR REPLACE`, applied after every migration run).
//!
//! Safe with many daemons starting at once: everything runs under one advisory lock, and the
//! trigger files are re-applied only when their checksum changed (replacing a trigger takes a
//! lock on `et_messages`, which a busy database should not pay on every start).

use tokio_postgres::Client;

mod embedded {
    refinery::embed_migrations!("sql");
}

/// The trigger files, in the order they are applied (the file name order).
pub const TRIGGER_FILES: &[(&str, &str)] = &[
    ("010_addresses.sql", include_str!("../../triggers/010_addresses.sql")),
    ("015_templates.sql", include_str!("../../triggers/015_templates.sql")),
    ("020_message_insert.sql", include_str!("../../triggers/020_message_insert.sql")),
    ("030_message_update.sql", include_str!("../../triggers/030_message_update.sql")),
    ("035_message_keys.sql", include_str!("../../triggers/035_message_keys.sql")),
    ("040_operator_functions.sql", include_str!("../../triggers/040_operator_functions.sql")),
    ("050_sessions.sql", include_str!("../../triggers/050_sessions.sql")),
    ("060_attachments.sql", include_str!("../../triggers/060_attachments.sql")),
    ("070_rate_limits.sql", include_str!("../../triggers/070_rate_limits.sql")),
    ("080_webhooks.sql", include_str!("../../triggers/080_webhooks.sql")),
];

/// Arbitrary but fixed: the advisory lock key that serialises migrations.
const MIGRATION_LOCK: i64 = 0x7067_636f_7572_6965; // "pgcourie"

/// What a migration run did.
#[derive(Debug, Default)]
pub struct MigrateReport {
    /// Names of the versioned migrations applied by this run (empty when already current).
    pub applied: Vec<String>,
    /// Whether the trigger files were (re)applied.
    pub triggers_applied: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration failed: {0}")]
    Refinery(#[from] refinery::Error),
    #[error("applying triggers/{file} failed: {source}")]
    Trigger { file: &'static str, source: tokio_postgres::Error },
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

/// Bring the database to the current schema and triggers.
pub async fn migrate(client: &mut Client) -> Result<MigrateReport, MigrateError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let result = migrate_locked(client).await;
    // Unlock even after a failure; if the connection itself is gone the lock went with it.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
    result
}

async fn migrate_locked(client: &mut Client) -> Result<MigrateReport, MigrateError> {
    let report = embedded::migrations::runner().run_async(client).await?;
    let applied = report.applied_migrations().iter().map(|m| m.to_string()).collect();
    let triggers_applied = apply_triggers(client).await?;
    Ok(MigrateReport { applied, triggers_applied })
}

/// The versioned migrations this binary carries, as `V{n}__{name}`.
pub fn known_migrations() -> Vec<String> {
    embedded::migrations::runner().get_migrations().iter().map(|m| m.to_string()).collect()
}

/// Whether every migration this binary knows is applied and the triggers are current
/// (what `/ready` and `pgcourier status` report).
pub async fn is_current(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let applied: i64 = match client.query_one("SELECT count(*) FROM refinery_schema_history", &[]).await {
        Ok(row) => row.get(0),
        Err(_) => return Ok(false),
    };
    if applied < known_migrations().len() as i64 {
        return Ok(false);
    }
    let row = client
        .query_one("SELECT EXISTS (SELECT 1 FROM et_meta WHERE key = 'triggers_md5' AND value = md5($1))", &[&all_triggers()])
        .await?;
    Ok(row.get(0))
}

fn all_triggers() -> String {
    TRIGGER_FILES.iter().map(|(_, sql)| *sql).collect::<Vec<_>>().join("\n")
}

async fn apply_triggers(client: &mut Client) -> Result<bool, MigrateError> {
    let all = all_triggers();
    let current: bool =
        client.query_one("SELECT EXISTS (SELECT 1 FROM et_meta WHERE key = 'triggers_md5' AND value = md5($1))", &[&all]).await?.get(0);
    if current {
        return Ok(false);
    }
    let tx = client.transaction().await?;
    for (file, sql) in TRIGGER_FILES {
        tx.batch_execute(sql).await.map_err(|source| MigrateError::Trigger { file, source })?;
    }
    tx.execute(
        "INSERT INTO et_meta (key, value) VALUES ('triggers_md5', md5($1))
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&all],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
