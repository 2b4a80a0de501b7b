//! The rescuer: on a timer, leases past expiry go back to `ready` (or to the dead letters when
//! their attempts are used up), their next attempt flagged as a possible duplicate. Leases that
//! ran out while the database was down wait `grace` after it started (see
//! [`crate::db::outbound::rescue`]). Safe with many daemons: rows are taken with SKIP LOCKED.

use crate::db::outbound as q;
use deadpool_postgres::Pool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub async fn run(pool: Pool, every: Duration, grace: Duration, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut tick = crate::every::Every::new(every);
    while tick.next(&shutdown).await {
        match rescue(&pool, grace).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(rescued = n, "expired leases returned to the queue");
                wake.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "rescuer pass failed"),
        }
    }
}

async fn rescue(pool: &Pool, grace: Duration) -> Result<u64, crate::db::DbError> {
    let mut client = pool.get().await?;
    Ok(q::rescue(&mut client, 1000, grace).await?)
}
