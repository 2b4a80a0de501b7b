//! All SQL that the daemon runs lives under this module (and in `sql/`, `triggers/`).

pub mod analyze;
pub mod api;
pub mod apikeys;
pub mod audit;
pub mod console;
pub mod console_threads;
pub mod demo;
pub mod error;
pub mod health;
pub mod inbound;
pub mod insights;
pub mod leader;
pub mod listener;
pub mod migrate;
pub mod ops;
pub mod outbound;
pub mod pooler;
pub mod primary;
pub mod provider_inbound;
pub mod retention;
pub mod show;
pub mod suppressions;
pub mod tenants;
pub mod webhooks;

pub use error::DbError;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// A pool of connections to the database named by `config`. A connection whose server turns
/// read-only (a failover: see [`primary`]) is closed and never handed out again.
pub fn pool(config: tokio_postgres::Config, size: usize) -> Result<Pool, deadpool_postgres::BuildError> {
    let manager = Manager::from_connect(config, primary::Writable, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager).max_size(size).build()
}

/// A pool of connections through a transaction-mode pooler: [`pooler`] turns the client's named
/// statements into unnamed ones, re-parsed in each `Sync` batch.
pub fn pool_through_pooler(config: tokio_postgres::Config, size: usize) -> Result<Pool, deadpool_postgres::BuildError> {
    let manager = Manager::from_connect(config, pooler::ThroughPooler, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager).max_size(size).build()
}

/// One connection outside any pool (migrations, LISTEN), its driver task spawned.
pub async fn connect(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "database connection closed");
        }
    });
    Ok(client)
}
