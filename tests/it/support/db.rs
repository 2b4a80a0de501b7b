//! A fresh, migrated database per test on a real PostgreSQL.
//!
//! The server is `DATABASE_URL` when set, else the local one on 127.0.0.1:5432 (user postgres).
//! Each [`TestDb`] creates `test_<uuid>` as a copy of the migrated template database (migrated
//! once per schema, not once per test) and drops it `WITH (FORCE)` when dropped: the
//! database-per-run helper the benchmark uses too, [`pgcourier_testdb`].

use pgcourier_testdb::FreshDb;
use tokio_postgres::{Client, Config};

pub struct TestDb {
    /// Database name, `test_<uuid>`.
    pub name: String,
    /// Connection settings for this database (for pools, daemons and extra connections).
    pub config: Config,
    /// A connection string to this database, for child processes.
    pub url: String,
    /// A ready connection, for the test's own SQL.
    pub client: Client,
    /// The database itself, dropped with this.
    fresh: FreshDb,
}

/// A connection, or the test fails saying how to get a server.
async fn connect(url: &str) -> Client {
    pgcourier_testdb::connect(url).await.unwrap_or_else(|e| panic!("{e:#}"))
}

impl TestDb {
    /// A new database with the schema and triggers applied: a copy of the template database,
    /// which the first call in this process finds or builds ([`pgcourier_testdb::template`]).
    pub async fn new() -> TestDb {
        TestDb::create(FreshDb::migrated("test").await).await
    }

    /// A new database with nothing in it (for migration tests).
    pub async fn empty() -> TestDb {
        TestDb::create(FreshDb::empty("test").await).await
    }

    async fn create(fresh: anyhow::Result<FreshDb>) -> TestDb {
        let fresh = fresh.unwrap_or_else(|e| panic!("a database for the test: {e:#}"));
        let config: Config = fresh.url.parse().expect("test database url");
        let client = connect(&fresh.url).await;
        TestDb { name: fresh.name.clone(), config, url: fresh.url.clone(), client, fresh }
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
        // Drop runs inside the test's runtime: drop_blocking uses a thread with its own.
        if let Err(e) = self.fresh.drop_blocking() {
            eprintln!("warning: could not drop test database {}: {e:#}", self.name);
        }
    }
}
