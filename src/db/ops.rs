//! SQL behind the operations endpoints: the readiness ping and the gauges `/metrics` reads
//! from the database at scrape time.
//!
//! Every query here is a tenant-agnostic aggregate (the scrape is an operator's view of the
//! whole installation), cheap, and runs in one read-only transaction under a statement timeout,
//! so a slow database makes a scrape fail fast rather than pile up.

use crate::domain::breaker::BreakerState;
use crate::domain::vocab::{Channel, QueueState, Status};
use tokio_postgres::Client;

/// Above this many rows (the planner's estimate), `pgcourier_messages` is not computed: the
/// `GROUP BY` over `et_messages` would scan the whole table on every scrape. The outcome counter
/// `pgcourier_messages_total` (recorded by the dispatcher) covers the rate at any size.
pub const MESSAGES_GAUGE_MAX_ROWS: f64 = 1_000_000.0;

/// How long one scrape's queries may take in total, per statement.
const SCRAPE_STATEMENT_TIMEOUT: &str = "5s";

/// `SELECT 1`: the database answers.
pub async fn ping(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.query_one("SELECT 1", &[]).await.map(|_| ())
}

/// Queue depth of one (channel, state).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueDepth {
    pub channel: Channel,
    pub state: QueueState,
    pub depth: i64,
}

/// A circuit breaker as the daemons last reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    pub tenant_id: String,
    pub session_id: i64,
    pub state: BreakerState,
}

/// Messages of one (tenant, channel, delivery_status).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageCount {
    pub tenant_id: String,
    pub channel: Channel,
    pub status: Status,
    pub count: i64,
}

/// Everything `/metrics` reads from the database.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Every (channel with a session) × (every [`QueueState`]), zero when empty, so the
    /// series do not vanish when a queue drains.
    pub queue_depth: Vec<QueueDepth>,
    /// Per channel with a session: seconds the oldest due `ready` row has waited (0 when none).
    pub oldest_ready_secs: Vec<(Channel, f64)>,
    pub breakers: Vec<Breaker>,
    /// Rows in the dead-letter queue.
    pub dead_letters: i64,
    /// The planner's estimate of `et_messages` rows (or the statistics' live-row count, when
    /// larger: a freshly loaded table may not have been analysed yet).
    pub messages_estimate: f64,
    /// `None` when `messages_estimate` is over [`MESSAGES_GAUGE_MAX_ROWS`].
    pub messages: Option<Vec<MessageCount>>,
}

const QUEUE: &str = r#"
WITH channels AS (SELECT DISTINCT channel FROM et_channel_sessions),
     states (state) AS (SELECT unnest($1::text[])),
     q AS (SELECT channel, state, sum(depth)::bigint AS depth, max(oldest_ready_age) AS oldest
             FROM et_queue_health GROUP BY channel, state)
SELECT c.channel, s.state, coalesce(q.depth, 0)::bigint,
       coalesce(extract(epoch FROM q.oldest), 0)::float8
  FROM channels c CROSS JOIN states s
  LEFT JOIN q ON q.channel = c.channel AND q.state = s.state
 ORDER BY c.channel, s.state
"#;

const MESSAGES_ESTIMATE: &str = r#"
SELECT greatest(c.reltuples, coalesce(s.n_live_tup, 0))::float8
  FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE c.oid = 'et_messages'::regclass
"#;

/// Read every gauge in one read-only transaction.
pub async fn gauges(client: &mut Client) -> Result<Gauges, tokio_postgres::Error> {
    let tx = client.build_transaction().read_only(true).start().await?;
    tx.batch_execute(&format!("SET LOCAL statement_timeout = '{SCRAPE_STATEMENT_TIMEOUT}'")).await?;

    let mut g = Gauges::default();
    for r in tx.query(QUEUE, &[&&QueueState::ALL[..]]).await? {
        let (channel, state): (Channel, QueueState) = (r.try_get(0)?, r.try_get(1)?);
        if state == QueueState::Ready {
            g.oldest_ready_secs.push((channel, r.get(3)));
        }
        g.queue_depth.push(QueueDepth { channel, state, depth: r.get(2) });
    }
    g.breakers = tx
        .query("SELECT tenant_id, channel_session_id, breaker_state FROM et_session_health ORDER BY tenant_id, channel_session_id", &[])
        .await?
        .iter()
        .map(|r| Ok(Breaker { tenant_id: r.get(0), session_id: r.get(1), state: r.try_get(2)? }))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    g.dead_letters = tx.query_one("SELECT count(*) FROM et_outbound_queue WHERE state = 'dead'", &[]).await?.get(0);
    g.messages_estimate = tx.query_one(MESSAGES_ESTIMATE, &[]).await?.get(0);
    if g.messages_estimate < MESSAGES_GAUGE_MAX_ROWS {
        let rows = tx
            .query("SELECT tenant_id, channel, delivery_status, count(*) FROM et_messages GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", &[])
            .await?;
        g.messages = Some(
            rows.iter()
                .map(|r| Ok(MessageCount { tenant_id: r.get(0), channel: r.try_get(1)?, status: r.try_get(2)?, count: r.get(3) }))
                .collect::<Result<_, tokio_postgres::Error>>()?,
        );
    }
    tx.commit().await?;
    Ok(g)
}
