//! The statements of the leader election ([`crate::leader`]): a session-level advisory lock held
//! by one daemon on its own connection, and who holds it (for `pgcourier status`).

/// Arbitrary but fixed: the advisory lock whose holder runs the periodic work.
pub const LEADER_LOCK: i64 = 0x7067_636c_6561_6472; // "pgcleadr"

/// Take the leader lock if nobody holds it; true when this connection holds it now.
pub async fn try_lead(client: &tokio_postgres::Client) -> Result<bool, tokio_postgres::Error> {
    Ok(client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK]).await?.get(0))
}

/// Whether this connection still holds the leader lock (also proves the connection is alive).
pub async fn holds(client: &tokio_postgres::Client) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
                              AND classid::int8 = $1 AND objid::int8 = $2 AND objsubid = 1)",
            &[&(LEADER_LOCK >> 32), &(LEADER_LOCK & 0xffff_ffff)],
        )
        .await?;
    Ok(row.get(0))
}

/// Give the lock up (on shutdown; a closed connection gives it up too).
pub async fn resign(client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    client.execute("SELECT pg_advisory_unlock($1)", &[&LEADER_LOCK]).await.map(|_| ())
}

/// The daemons connected now, by the application name their connections carry
/// (`pgcourier <role> <worker id>` for the pools, `pgcourier leader <worker id>` for the
/// election): name, connections, and whether that connection holds the leader lock.
pub async fn daemons(client: &tokio_postgres::Client) -> Result<Vec<(String, i64, bool)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.application_name, count(*)::int8,
                    bool_or(EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted
                                      AND l.classid::int8 = $1 AND l.objid::int8 = $2 AND l.objsubid = 1))
               FROM pg_stat_activity a
              WHERE a.datname = current_database() AND a.application_name LIKE 'pgcourier %'
              GROUP BY 1 ORDER BY 1",
            &[&(LEADER_LOCK >> 32), &(LEADER_LOCK & 0xffff_ffff)],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}
