//! The one error the database layer fails with: no connection from the pool, or a statement
//! that failed. Callers ask [`DbError::is_transient`] whether trying again later can help
//! (the connection dropped, the server is restarting or read-only after a failover, a
//! serialization failure or deadlock) or whether the statement itself is wrong for this
//! database (a constraint, a missing privilege, a bug), which no retry fixes.

use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The pool could not hand out a connection (the server is down or every connection stayed
    /// busy past the wait).
    #[error("no database connection ({0})")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed, or its connection broke while it ran.
    #[error(transparent)]
    Query(#[from] tokio_postgres::Error),
}

impl DbError {
    /// Trying again later may succeed: a broken or refused connection, a server shutting down,
    /// starting or read-only (a demoted primary), too many connections, a serialization failure,
    /// a deadlock, a lock or statement timeout.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Pool(deadpool_postgres::PoolError::Backend(e)) => query_is_transient(e),
            DbError::Pool(deadpool_postgres::PoolError::Timeout(_)) => true,
            // closed by our own shutdown, or misconfigured: waiting does not help
            DbError::Pool(_) => false,
            DbError::Query(e) => query_is_transient(e),
        }
    }

    /// The statement cannot succeed as it is: retrying it unchanged is pointless.
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }

    /// The server's SQLSTATE, when the server answered with an error.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            DbError::Pool(deadpool_postgres::PoolError::Backend(e)) | DbError::Query(e) => e.code(),
            DbError::Pool(_) => None,
        }
    }
}

fn query_is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // no SQLSTATE: the connection itself failed (refused, reset, timed out)
        None => e.as_db_error().is_none(),
        Some(code) => {
            let code = code.code();
            // 08: connection exceptions; 53: insufficient resources (too many connections,
            // out of memory or disk); 57P0x: shutdown, crash shutdown, cannot connect now
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P0")
                || [
                    SqlState::T_R_SERIALIZATION_FAILURE.code(),
                    SqlState::T_R_DEADLOCK_DETECTED.code(),
                    SqlState::LOCK_NOT_AVAILABLE.code(),
                    SqlState::QUERY_CANCELED.code(),
                    // a primary demoted by a failover answers writes with this until the pool
                    // reconnects to the new primary
                    SqlState::READ_ONLY_SQL_TRANSACTION.code(),
                    SqlState::ADMIN_SHUTDOWN.code(),
                ]
                .contains(&code)
        }
    }
}
