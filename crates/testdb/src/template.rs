//! The migrated template database that every [`crate::FreshDb::migrated`] copies
//! (`CREATE DATABASE test_<uuid> TEMPLATE pgc_template_<hash>`), so that a test run (a benchmark
//! run) migrates once, not once per test (per scenario).
//!
//! - **Named after what it holds**: `<hash>` covers the embedded migrations, the trigger files
//!   and the migration code (`src/db/migrate.rs`). A changed schema gets a new template; a stale
//!   one is never used.
//! - **Built once, race-free**: under an advisory lock on the admin database (every test binary
//!   and process, the benchmark, every worktree on the same server), under the name
//!   `pgc_building_<hash>`, and renamed only when complete: a half-built template is never
//!   visible. A builder that died leaves a `pgc_building_*` database, dropped by the next builder.
//! - **Never connected to**: `CREATE DATABASE ... TEMPLATE` fails while any session is connected
//!   to the template. The build connection is closed and its backend awaited before the rename,
//!   and the template is `ALLOW_CONNECTIONS false` from then on.
//! - **Old templates are dropped when nobody uses them**: each process holds a shared advisory
//!   lock named after its template's hash, on one connection, for as long as it runs. A builder
//!   drops another `pgc_template_*` only when it can take that lock exclusively, so a test run
//!   of another schema (another worktree, another branch) on the same server keeps its template.

use crate::{connect, with_database};
use anyhow::Context;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;
use tokio_postgres::Client;

/// What this process's databases copy, found or built by the first that asks.
static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// Serialises builders (on the admin database, where every test process connects).
const BUILD_LOCK: i64 = 0x7067_635f_7465_6d70; // "pgc_temp"

const PREFIX: &str = "pgc_template_";
const BUILDING: &str = "pgc_building_";

mod embedded {
    // The same files the library embeds (checked against `known_migrations()` below).
    refinery::embed_migrations!("../../sql");
}

/// The name of the template database for this build's schema, built if missing. After a
/// failure the next call tries again.
pub async fn template(admin_url: &str) -> anyhow::Result<&'static str> {
    TEMPLATE
        .get_or_try_init(|| async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let admin_url = admin_url.to_owned();
            // Its own thread and runtime: the connection that holds the "in use" lock must
            // outlive the test (and runtime) that happened to ask first.
            std::thread::Builder::new()
                .name("pgc-template".into())
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = tx.send(Err(e.into()));
                            return;
                        }
                    };
                    rt.block_on(async move {
                        let holder = match connect(&admin_url).await {
                            Ok(holder) => holder,
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                return;
                            }
                        };
                        let found = find_or_build(&holder, &admin_url).await;
                        let built = found.is_ok();
                        let _ = tx.send(found);
                        if built {
                            // Keep `holder`, and with it the shared lock, until the process exits.
                            std::future::pending::<()>().await;
                        }
                        // (after a failure `holder` closes here, and every lock it took with it)
                    })
                })
                .context("spawning the template thread")?;
            rx.await.context("the template thread ended without an answer")?.context("the template database")
        })
        .await
        .map(String::as_str)
}

/// The hash of everything that decides what a migrated database contains.
fn schema_text() -> anyhow::Result<String> {
    let runner = embedded::migrations::runner();
    let mut migrations: Vec<_> = runner.get_migrations().iter().collect();
    migrations.sort_by_key(|m| m.version());
    let names: Vec<String> = migrations.iter().map(|m| m.to_string()).collect();
    anyhow::ensure!(
        sorted(names) == sorted(pgcourier::db::migrate::known_migrations()),
        "pgcourier-testdb embeds other migrations than the library (rebuild it)"
    );
    let mut text = String::new();
    for m in migrations {
        text.push_str(&format!("migration {m}\n{}\n", m.sql().unwrap_or_default()));
    }
    for (file, sql) in pgcourier::db::migrate::TRIGGER_FILES {
        text.push_str(&format!("trigger {file}\n{sql}\n"));
    }
    text.push_str("migrate.rs\n");
    text.push_str(include_str!("../../../src/db/migrate.rs"));
    Ok(text)
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

/// The advisory lock key of a template, from the 16 hex digits of its hash.
fn key(hash: &str) -> Option<i64> {
    u64::from_str_radix(hash, 16).ok().filter(|_| hash.len() == 16).map(|k| k as i64)
}

async fn exists(admin: &Client, name: &str) -> anyhow::Result<bool> {
    Ok(admin.query_one("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", &[&name]).await?.get(0))
}

async fn find_or_build(holder: &Client, admin_url: &str) -> anyhow::Result<String> {
    let hash: String = holder.query_one("SELECT left(md5($1), 16)", &[&schema_text()?]).await?.get(0);
    let name = format!("{PREFIX}{hash}");
    // In use by this process from now on: nobody drops it.
    holder.execute("SELECT pg_advisory_lock_shared($1)", &[&key(&hash).context("md5 gave no 16 hex digits")?]).await?;
    if exists(holder, &name).await? {
        return Ok(name); // complete: only a finished template carries this name
    }
    holder.execute("SELECT pg_advisory_lock($1)", &[&BUILD_LOCK]).await?;
    if !exists(holder, &name).await? {
        drop_leftovers(holder).await?;
        build(holder, admin_url, &hash, &name).await?;
        drop_unused_templates(holder, &name).await?;
    }
    holder.execute("SELECT pg_advisory_unlock($1)", &[&BUILD_LOCK]).await?;
    Ok(name)
}

async fn build(admin: &Client, admin_url: &str, hash: &str, name: &str) -> anyhow::Result<()> {
    let building = format!("{BUILDING}{hash}");
    admin.batch_execute(&format!("CREATE DATABASE {building}")).await.context("CREATE DATABASE for the template")?;
    let mut client = connect(&with_database(admin_url, &building)).await?;
    let report = pgcourier::db::migrate::migrate(&mut client).await.context("migrating the template database")?;
    anyhow::ensure!(
        sorted(report.applied) == sorted(pgcourier::db::migrate::known_migrations()),
        "not every migration was applied to the template"
    );
    anyhow::ensure!(report.triggers_applied, "the trigger files were not applied to the template");
    drop(client);
    // The backend exits after the client is gone; until then the rename (and any copy) fails.
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin.query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", &[&building]).await?.get::<_, i64>(0) > 0 {
        anyhow::ensure!(Instant::now() < deadline, "the template's build connection never went away");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {building} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true;
             ALTER DATABASE {building} RENAME TO {name}"
        ))
        .await
        .context("publishing the template database")?;
    Ok(())
}

/// Half-built templates of builders that died (a live builder would hold the build lock).
async fn drop_leftovers(admin: &Client) -> anyhow::Result<()> {
    let rows = admin.query("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", &[&BUILDING]).await?;
    for row in rows {
        let db: String = row.get(0);
        drop_database(admin, &db).await;
    }
    Ok(())
}

/// Templates of other schemas whose processes have all exited.
async fn drop_unused_templates(admin: &Client, current: &str) -> anyhow::Result<()> {
    let rows = admin.query("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", &[&PREFIX]).await?;
    for row in rows {
        let db: String = row.get(0);
        let Some(key) = key(&db[PREFIX.len()..]).filter(|_| db != current) else { continue };
        let free: bool = admin.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).await?.get(0);
        if free {
            drop_database(admin, &db).await;
            admin.execute("SELECT pg_advisory_unlock($1)", &[&key]).await?;
        }
    }
    Ok(())
}

async fn drop_database(admin: &Client, db: &str) {
    // (two statements: DROP DATABASE refuses to run in the implicit transaction of a batch)
    let dropped = async {
        admin.batch_execute(&format!("ALTER DATABASE {db} WITH IS_TEMPLATE false")).await?;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await
    };
    if let Err(e) = dropped.await {
        eprintln!("warning: could not drop the old template database {db}: {e}");
    }
}

#[test]
fn template_keys_come_from_16_hex_digits() {
    assert_eq!(key("00000000000000ff"), Some(255));
    assert_eq!(key("ffffffffffffffff"), Some(-1));
    assert_eq!(key("123"), None);
    assert_eq!(key("zzzzzzzzzzzzzzzz"), None);
}
