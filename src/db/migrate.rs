//! Schema migrations (`sql/V*.sql`, embedded with refinery) and the trigger files
//! (`triggers/*.sql`, `CREATE OR REPLACE`, applied after every migration run).
//!
//! `sql/V1__baseline.sql` is the schema as it stands (docs/schema.sql is its pg_dump); migrations
//! are append-only from there. It replaced the unreleased `V1__schema` .. `V22__claim_by_session`,
//! whose result it reproduces exactly: a database migrated by those has its history rewritten to
//! the baseline's row before refinery runs ([`SQUASHED`]).
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
    ("045_suppressions.sql", include_str!("../../triggers/045_suppressions.sql")),
    ("050_sessions.sql", include_str!("../../triggers/050_sessions.sql")),
    ("060_attachments.sql", include_str!("../../triggers/060_attachments.sql")),
    ("070_rate_limits.sql", include_str!("../../triggers/070_rate_limits.sql")),
    ("080_webhooks.sql", include_str!("../../triggers/080_webhooks.sql")),
    ("090_tenants_and_keys.sql", include_str!("../../triggers/090_tenants_and_keys.sql")),
    ("095_message_counts.sql", include_str!("../../triggers/095_message_counts.sql")),
    ("098_retention.sql", include_str!("../../triggers/098_retention.sql")),
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
    adopt_squashed_history(client).await?;
    let report = embedded::migrations::runner().run_async(client).await?;
    let applied = report.applied_migrations().iter().map(|m| m.to_string()).collect();
    let triggers_applied = apply_triggers(client).await?;
    Ok(MigrateReport { applied, triggers_applied })
}

/// The history that `V1__baseline` replaced: (version, name, refinery checksum) of `sql/V1__schema.sql`
/// .. `sql/V22__claim_by_session.sql` as refinery recorded them (they are in git history before
/// the squash). A database migrated by exactly these has the baseline's schema (the pg_dump of
/// both is identical, comments aside), so its 22 rows are replaced by the baseline's one; refinery
/// would otherwise refuse the database (V1 changed, V2..V22 missing).
pub const SQUASHED: &[(i32, &str, &str)] = &[
    (1, "schema", "14931092468190748561"),
    (2, "views", "5994898591646133107"),
    (3, "attachments", "2252951075437615318"),
    (4, "session_limits", "8587852966388866152"),
    (5, "inbound", "4475665400655615625"),
    (6, "api_keys", "8026795523010748993"),
    (7, "webhooks", "219308974611801577"),
    (8, "row_level_security", "15701174324650485753"),
    (9, "message_list_index", "94339938642116481"),
    (10, "dispatch_busy", "18220062711117276079"),
    (11, "inbound_perf", "7538649387651261353"),
    (12, "hot_status_updates", "16096875696299335573"),
    (13, "insights_perf", "10389904037042452392"),
    (14, "wakeup_listeners", "17736953441219765255"),
    (15, "drain_hot", "3643150300169194927"),
    (16, "lean_foreign_keys", "7662135907255657430"),
    (17, "lease_expiry_index", "17099770317695254586"),
    (18, "trigger_kept_keys", "1691428655206714785"),
    (19, "checks_by_domain", "1293195282200256348"),
    (20, "door_rules", "5310298664546806126"),
    (21, "possible_duplicates", "8135949493178498672"),
    (22, "claim_by_session", "8595364930221449542"),
];

/// Replace a [`SQUASHED`] history by the baseline's row (kept: when the schema was reached, the
/// `applied_on` of V22), and add the baseline's `COMMENT ON`s (the only thing it has that V1..V22
/// had not), in one transaction. Any other history is left to refinery.
async fn adopt_squashed_history(client: &mut Client) -> Result<bool, MigrateError> {
    let tx = client.transaction().await?;
    let has_history: bool = tx.query_one("SELECT to_regclass('refinery_schema_history') IS NOT NULL", &[]).await?.get(0);
    if !has_history {
        return Ok(false);
    }
    let rows = tx.query("SELECT version, name, checksum FROM refinery_schema_history ORDER BY version", &[]).await?;
    let history: Vec<(i32, Option<String>, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let squashed = history.len() == SQUASHED.len()
        && history.iter().zip(SQUASHED).all(|((v, n, c), (sv, sn, sc))| v == sv && n.as_deref() == Some(*sn) && c.as_deref() == Some(*sc));
    if !squashed {
        return Ok(false);
    }
    let runner = embedded::migrations::runner();
    let baseline = runner.get_migrations().iter().find(|m| m.version() == 1).expect("V1__baseline is embedded");
    let applied_on: Option<String> = tx.query_one("SELECT applied_on FROM refinery_schema_history WHERE version = 22", &[]).await?.get(0);
    tx.execute("DELETE FROM refinery_schema_history", &[]).await?;
    tx.execute(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (1, $1, $2, $3)",
        &[&baseline.name(), &applied_on, &baseline.checksum().to_string()],
    )
    .await?;
    for comment in comment_statements(baseline.sql().unwrap_or_default()) {
        tx.batch_execute(&comment).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// The `COMMENT ON` statements of a migration: each starts a line and ends with the first line
/// that ends in `;` (how `sql/V1__baseline.sql` writes them).
fn comment_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current: Option<String> = None;
    for line in sql.lines() {
        if current.is_none() && line.starts_with("COMMENT ON ") {
            current = Some(String::new());
        }
        if let Some(statement) = current.as_mut() {
            statement.push_str(line);
            statement.push('\n');
            if line.trim_end().ends_with(';') {
                statements.extend(current.take());
            }
        }
    }
    statements
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
