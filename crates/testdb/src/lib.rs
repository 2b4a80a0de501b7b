//! A fresh PostgreSQL database per run, for pgcourier's integration tests (`tests/it/support`)
//! and its benchmark (`bench/`).
//!
//! The server is `DATABASE_URL` when set, else the local one on 127.0.0.1:5432 (user postgres);
//! the user must be allowed to `CREATE DATABASE`. A [`FreshDb`] is `<prefix>_<uuid>` on that
//! server: a copy of the migrated template database ([`template`], migrated once per schema, not
//! once per database), or empty. Whoever creates one drops it `WITH (FORCE)` when done
//! ([`FreshDb::drop_database`], or [`FreshDb::drop_blocking`] from a `Drop`).

pub mod template;

use anyhow::Context;
use tokio_postgres::{Client, NoTls};

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server's admin database, where databases are created and dropped: `DATABASE_URL`
/// unless unset or blank, else [`DEFAULT_ADMIN_URL`].
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database name replaced by `db` (keeps any `?query`).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{db}{query}")
}

/// A connection to `url`, driven on the current runtime; the error says how to get a server.
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.with_context(|| {
        format!(
            "cannot reach PostgreSQL at {url}\n\
             Set DATABASE_URL to a server where this user may CREATE DATABASE, or start the local one:\n\
             pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
    })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A database of its own on the server of [`admin_url`]. Not dropped by going out of scope:
/// call [`FreshDb::drop_database`] or [`FreshDb::drop_blocking`].
#[derive(Debug)]
pub struct FreshDb {
    /// `<prefix>_<uuid>`.
    pub name: String,
    /// A connection string to this database.
    pub url: String,
    /// The admin database's connection string, to drop this one afterwards.
    admin_url: String,
}

impl FreshDb {
    /// `<prefix>_<uuid>` with the schema and triggers applied: a copy of the template
    /// database, which the first call in this process finds or builds ([`template`]).
    pub async fn migrated(prefix: &str) -> anyhow::Result<FreshDb> {
        let admin_url = admin_url();
        let template = template::template(&admin_url).await?;
        FreshDb::create(prefix, admin_url, &format!("TEMPLATE {template}")).await
    }

    /// `<prefix>_<uuid>` with nothing in it (for migration tests).
    pub async fn empty(prefix: &str) -> anyhow::Result<FreshDb> {
        FreshDb::create(prefix, admin_url(), "").await
    }

    async fn create(prefix: &str, admin_url: String, options: &str) -> anyhow::Result<FreshDb> {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&admin_url).await?;
        admin.batch_execute(&format!("CREATE DATABASE {name} {options}")).await.with_context(|| format!("CREATE DATABASE {name}"))?;
        let url = with_database(&admin_url, &name);
        Ok(FreshDb { name, url, admin_url })
    }

    /// `DROP DATABASE ... WITH (FORCE)`: connections still open to it are ended.
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        let admin = connect(&self.admin_url).await?;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await?;
        Ok(())
    }

    /// [`FreshDb::drop_database`] from synchronous code, also inside a runtime (a `Drop` in a
    /// test): on a thread of its own with its own runtime, waited for.
    pub fn drop_blocking(&self) -> anyhow::Result<()> {
        std::thread::scope(|s| {
            s.spawn(|| tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(self.drop_database()))
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the thread dropping {} panicked", self.name)))
        })
    }
}

#[test]
fn with_database_replaces_only_the_name() {
    assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
    assert_eq!(with_database("postgres://u@h/db?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
    assert_eq!(with_database("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
}
