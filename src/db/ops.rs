//! SQL behind the operations endpoints: the readiness ping and the gauges `/metrics` reads
//! from the database at scrape time.
//!
//! Every query here is a tenant-agnostic aggregate (the scrape is an operator's view of the
//! whole installation), cheap, and runs in one read-only transaction under a statement timeout,
//! so a slow database makes a scrape fail fast rather than pile up.

use crate::domain::breaker::BreakerState;
use crate::domain::vocab::{Channel, QueueState, Status};
use tokio_postgres::Client;

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
    /// Messages per tenant, channel and status, from the counters the message triggers keep
    /// (`et_message_counts`): exact, and as cheap at a billion rows as at ten.
    pub messages: Vec<MessageCount>,
    /// Per pgcourier table: (name, live rows, dead rows, bytes with indexes and TOAST), from the
    /// statistics collector: what bloat and retention watch.
    pub tables: Vec<TableSize>,
}

/// One table's size as the server's statistics see it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSize {
    pub table: String,
    pub live_rows: i64,
    pub dead_rows: i64,
    pub bytes: i64,
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

const MESSAGES: &str = r#"
SELECT c.tenant_id, s.channel, c.delivery_status, sum(c.n)::bigint
  FROM et_message_counts c
  JOIN et_channel_sessions s ON s.tenant_id = c.tenant_id AND s.id = c.channel_session_id
 GROUP BY 1, 2, 3 HAVING sum(c.n) <> 0 ORDER BY 1, 2, 3
"#;

const TABLES: &str = r#"
SELECT s.relname::text, s.n_live_tup, s.n_dead_tup, pg_total_relation_size(s.relid)
  FROM pg_stat_user_tables s
 WHERE s.schemaname = current_schema() AND s.relname LIKE 'et\_%'
 ORDER BY 1
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
    g.messages = tx
        .query(MESSAGES, &[])
        .await?
        .iter()
        .map(|r| Ok(MessageCount { tenant_id: r.get(0), channel: r.try_get(1)?, status: r.try_get(2)?, count: r.get(3) }))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    g.tables = tx
        .query(TABLES, &[])
        .await?
        .iter()
        .map(|r| TableSize { table: r.get(0), live_rows: r.get(1), dead_rows: r.get(2), bytes: r.get(3) })
        .collect();
    tx.commit().await?;
    Ok(g)
}
