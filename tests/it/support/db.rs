//! A fresh, migrated database per test on a real PostgreSQL.
//!
//! The server is `DATABASE_URL` when set, else the local one on 127.0.0.1:5432 (user postgres).
//! Each [`TestDb`] creates `test_<uuid>` as a copy of the migrated template database
//! ([`super::template`], migrated once per schema, not once per test) and drops it
//! `WITH (FORCE)` when dropped.

use tokio_postgres::{Client, Config, NoTls};

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TestDb {
    /// Database name, `test_<uuid>`.
    pub name: String,
    /// Connection settings for this database (for pools, daemons and extra connections).
    pub config: Config,
    /// A connection string to this database, for child processes.
    pub url: String,
    /// A ready connection, for the test's own SQL.
    pub client: Client,
    /// The admin database's connection string, to drop this one afterwards.
    admin_url: String,
}

pub(super) fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database name replaced by `db` (keeps any `?query`).
pub(super) fn with_database(url: &str, db: &str) -> String {
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

pub(super) async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach PostgreSQL at {url}: {e}\n\
             Set DATABASE_URL to a server where this user may CREATE DATABASE, or start the local one:\n\
             pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
    });
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

impl TestDb {
    /// A new database with the schema and triggers applied: a copy of the template database,
    /// which the first call in this process finds or builds ([`super::template`]).
    pub async fn new() -> TestDb {
        let admin_url = admin_url();
        let template = super::template::template(&admin_url).await;
        TestDb::create(admin_url, &format!("TEMPLATE {template}")).await
    }

    /// A new database with nothing in it (for migration tests).
    pub async fn empty() -> TestDb {
        TestDb::create(admin_url(), "").await
    }

    async fn create(admin_url: String, options: &str) -> TestDb {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&admin_url).await;
        admin.batch_execute(&format!("CREATE DATABASE {name} {options}")).await.expect("CREATE DATABASE for the test");
        let url = with_database(&admin_url, &name);
        let config: Config = url.parse().expect("test database url");
        let client = connect(&url).await;
        TestDb { name, config, url, client, admin_url }
    }

    /// Another connection to this database.
    pub async fn connect(&self) -> Client {
        connect(&self.url).await
    }

    /// Seed tenant `acme` with an email session (id returned first) and a whatsapp session.
    pub async fn seed_acme(&self) -> (i64, i64) {
        self.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('acme', 'Acme')").await.unwrap();
        let email = self.session("acme", "email", "file", "Acme <noreply@acme.example>").await;
        let wa = self.session("acme", "whatsapp", "log", "+15550000000").await;
        (email, wa)
    }

    /// Insert a channel session and return its id.
    pub async fn session(&self, tenant: &str, channel: &str, provider: &str, address: &str) -> i64 {
        self.client
            .query_one(
                "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address)
                 VALUES ($1, $2, $3, $4) RETURNING id",
                &[&tenant, &channel, &provider, &address],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Count rows of a query that returns one bigint.
    pub async fn count(&self, sql: &str) -> i64 {
        self.client.query_one(sql, &[]).await.unwrap().get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; use a thread with its own runtime.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let admin = connect(&admin_url).await;
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}

#[test]
fn with_database_replaces_only_the_name() {
    assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
    assert_eq!(with_database("postgres://u@h/db?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
    assert_eq!(with_database("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
}
