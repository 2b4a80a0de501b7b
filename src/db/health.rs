//! Read-only reports for operators: queue health and message counts (`pgcourier status`).

use crate::domain::breaker::BreakerState;
use crate::domain::vocab::{Channel, Direction, Provider, QueueState, Status};

/// One row of `et_queue_health`.
#[derive(Debug, Clone)]
pub struct QueueHealth {
    pub tenant_id: String,
    pub channel: Channel,
    pub provider: Provider,
    pub state: QueueState,
    pub depth: i64,
    pub due: i64,
    /// Seconds the oldest due row has waited.
    pub oldest_ready_secs: Option<f64>,
    pub expired_leases: i64,
}

pub async fn queue_health(client: &tokio_postgres::Client) -> Result<Vec<QueueHealth>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT tenant_id, channel, provider, state, depth, due,
                    extract(epoch FROM oldest_ready_age)::float8, expired_leases
               FROM et_queue_health ORDER BY tenant_id, channel, provider, state",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(QueueHealth {
                tenant_id: r.get(0),
                channel: r.try_get(1)?,
                provider: r.try_get(2)?,
                state: r.try_get(3)?,
                depth: r.get(4),
                due: r.get(5),
                oldest_ready_secs: r.get(6),
                expired_leases: r.get(7),
            })
        })
        .collect()
}

/// Messages per (direction, delivery_status).
pub async fn status_counts(client: &tokio_postgres::Client) -> Result<Vec<(Direction, Status, i64)>, tokio_postgres::Error> {
    let rows = client.query("SELECT direction, delivery_status, count(*) FROM et_messages GROUP BY 1, 2 ORDER BY 1, 2", &[]).await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.get(2)))).collect()
}

/// The newest dead letters: (message id, tenant, recipients, last error).
pub async fn dead_letters(
    client: &tokio_postgres::Client,
    limit: i64,
) -> Result<Vec<(i64, String, Vec<String>, Option<String>)>, tokio_postgres::Error> {
    let rows = client
        .query("SELECT message_id, tenant_id, recipients, last_error FROM et_dead_letters ORDER BY dead_since DESC LIMIT $1", &[&limit])
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())
}

/// Sessions whose circuit breaker is not closed: (tenant, session, state, failure rate, since, reporter).
pub async fn open_breakers(
    client: &tokio_postgres::Client,
) -> Result<Vec<(String, i64, BreakerState, Option<f64>, String, String)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT tenant_id, channel_session_id, breaker_state, failure_rate, to_char(since, 'YYYY-MM-DD HH24:MI:SS'), reported_by
               FROM et_session_health WHERE breaker_state <> 'closed' ORDER BY since",
            &[],
        )
        .await?;
    rows.iter().map(|r| Ok((r.get(0), r.get(1), r.try_get(2)?, r.get(3), r.get(4), r.get(5)))).collect()
}
