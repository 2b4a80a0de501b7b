//! The insights worker (being written).

use crate::config::Config;
use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

/// Run until `shutdown`.
pub async fn run(_pool: Pool, _config: Config, shutdown: CancellationToken) {
    shutdown.cancelled().await;
}
