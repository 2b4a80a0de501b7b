//! Connections that must reach a writable primary (the pool, the leader election, LISTEN), and
//! how they survive a failover.
//!
//! With a multi-host `DATABASE_URL` and `target_session_attrs=read-write`, tokio-postgres tries
//! each host in turn and keeps the first whose `SHOW transaction_read_only` says `off`: a new
//! connection always reaches the primary of the moment. A connection opened earlier may outlive
//! that: its server may be fenced (`default_transaction_read_only = on`, reloaded) or demoted, and
//! every write on it then fails with SQLSTATE 25006 (`read_only_sql_transaction`) for as long as
//! it lives. Since PostgreSQL 14 a server reports `default_transaction_read_only` and
//! `in_hot_standby` to its clients whenever they change (`ParameterStatus`), with the answer to
//! the next statement: the driver of each such connection ([`drive`]) watches them and ends the
//! connection as soon as the server says it is read-only. Its client then reports
//! `is_closed()`, the pool discards it at the next checkout (deadpool recycles no closed client)
//! and opens a new one through the multi-host string, which finds the new primary; the statement
//! that met the read-only server failed with 25006 or a closed connection, both transient
//! ([`super::DbError::is_transient`]), so its caller retries. A server that is gone altogether
//! closes its connections by itself.

use deadpool_postgres::Connect;
use futures_util::future::BoxFuture;
use std::task::Poll;
use tokio::task::JoinHandle;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, Error, NoTls, Socket};

/// The parameters a server reports (PostgreSQL 14 and later) that say it takes no writes.
const READ_ONLY_PARAMETERS: &[&str] = &["default_transaction_read_only", "in_hot_standby"];

/// Whether the server of `connection` has said it is read-only.
pub fn reports_read_only<S, T>(connection: &Connection<S, T>) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    READ_ONLY_PARAMETERS.iter().any(|p| connection.parameter(p) == Some("on"))
}

/// Run `connection` until it ends, or until its server reports itself read-only: then drop it,
/// which closes the socket and makes its client report closed.
pub async fn drive(mut connection: Connection<Socket, NoTlsStream>, what: &'static str) {
    let ended = std::future::poll_fn(|cx| loop {
        let polled = connection.poll_message(cx);
        if reports_read_only(&connection) {
            return Poll::Ready(Some("the server is read-only now (fenced, demoted or a standby)".to_owned()));
        }
        match polled {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(e.to_string())),
            Poll::Ready(Some(Ok(AsyncMessage::Notice(n)))) => tracing::debug!(notice = %n.message(), "database notice"),
            Poll::Ready(Some(Ok(_))) => {} // no notifications on these connections
        }
    })
    .await;
    match ended {
        Some(reason) => tracing::info!(connection = what, %reason, "database connection dropped"),
        None => tracing::debug!(connection = what, "database connection closed"),
    }
}

/// One connection to the primary outside any pool (the leader election), its driver spawned.
pub async fn connect(config: &Config, what: &'static str) -> Result<Client, Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(drive(connection, what));
    Ok(client)
}

/// How the pool opens its connections: through [`drive`], so that one whose server turns
/// read-only is closed and discarded.
#[derive(Debug, Clone, Copy, Default)]
pub struct Writable;

impl Connect for Writable {
    fn connect(&self, config: &Config) -> BoxFuture<'_, Result<(Client, JoinHandle<()>), Error>> {
        let config = config.clone();
        Box::pin(async move {
            let (client, connection) = config.connect(NoTls).await?;
            Ok((client, tokio::spawn(drive(connection, "pool"))))
        })
    }
}
