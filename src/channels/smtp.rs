//! Provider `smtp`: lettre's async SMTP client on pooled connections. Session config: `host`, `port`,
//! `tls` (`none` | `starttls` | `tls`, default `starttls`), `timeout_ms` (setting up a connection: connect, greeting,
//! EHLO, STARTTLS, AUTH; default 30 s), `pool_size` (at most this many connections, default 8; further sends wait for
//! one); credentials (`user:password`) from the secret named by `credentials_ref`.
//!
//! The sockets are ours, with `TCP_NODELAY`, handed to lettre's [`AsyncSmtpConnection`], which speaks SMTP; a
//! deadpool pool holds them. lettre's own `AsyncSmtpTransport` (0.11) can do neither: it leaves Nagle's algorithm on
//! while writing the message and the closing `.` as two writes, so every message waited for the server's delayed ACK
//! (~40 ms); and its pool takes a connection back in a spawned task, so the next send often found it empty, opened a
//! connection, and closed one later because the pool was full (figures in BENCHMARKS.md).
//!
//! Classification: 4xx, connection errors and timeouts are transient; 5xx is permanent, and
//! 5.1.1–5.1.3 (no such mailbox / bad address) also suppress the address as `hard_bounce`. A send
//! that broke without the server's answer may have been delivered (see [`classify`]).

use super::{email, Answer, Channel, Outbound, Receipt, SendError};
use crate::domain::outcome::{ErrorClass, SuppressReason};
use async_trait::async_trait;
use deadpool::managed::{Manager, Metrics, Pool, PoolError, QueueMode, RecycleError, RecycleResult};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
#[allow(deprecated)] // lettre's own TLS upgrade for implicit TLS; see `Implicit`
use lettre::transport::smtp::client::AsyncNetworkStream;
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::{SMTP_PORT, SUBMISSIONS_PORT, SUBMISSION_PORT};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

/// A pooled connection idle this long is checked with NOOP before use (the server may have closed it).
const VERIFY_AFTER_IDLE: Duration = Duration::from_secs(1);
/// Connections idle this long are closed with QUIT (lettre's pool default), checked every `IDLE_TIMEOUT / 4`.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Smtp {
    pool: Pool<Connector>,
}

impl Smtp {
    pub fn new(config: &serde_json::Value, secret: Option<String>) -> Result<Smtp, SendError> {
        let get = |k: &str| config.get(k);
        let host = get("host").and_then(|v| v.as_str()).ok_or_else(|| SendError::permanent("provider smtp needs config.host"))?.to_owned();
        let tls_params = || TlsParameters::new(host.clone()).map_err(|e| SendError::permanent(format!("smtp config: {e}")));
        let (security, default_port) = match get("tls").and_then(|v| v.as_str()).unwrap_or("starttls") {
            "none" => (Security::None, SMTP_PORT),
            "starttls" => (Security::StartTls(tls_params()?), SUBMISSION_PORT),
            "tls" => (Security::Implicit(tls_params()?), SUBMISSIONS_PORT),
            other => return Err(SendError::permanent(format!("smtp config.tls {other:?}: expected none, starttls or tls"))),
        };
        let port = match get("port").and_then(|v| v.as_u64()) {
            Some(port) => u16::try_from(port).map_err(|_| SendError::permanent(format!("smtp config.port {port} is not a port")))?,
            None => default_port,
        };
        let timeout = Duration::from_millis(get("timeout_ms").and_then(|v| v.as_u64()).unwrap_or(30_000));
        let pool_size = get("pool_size").and_then(|v| v.as_u64()).unwrap_or(8).max(1) as usize;
        let credentials = match secret {
            Some(secret) => {
                let (user, pass) = secret.split_once(':').ok_or_else(|| SendError::permanent("the smtp secret must be user:password"))?;
                Some(Credentials::new(user.to_owned(), pass.to_owned()))
            }
            None => None,
        };
        let connector = Connector { host, port, security, timeout, hello: ClientId::default(), credentials };
        // Lifo: under light load the warmest connections are reused and the others age out.
        let pool = Pool::builder(connector)
            .max_size(pool_size)
            .queue_mode(QueueMode::Lifo)
            .build()
            .map_err(|e| SendError::permanent(format!("smtp pool: {e}")))?;
        spawn_idle_reaper(&pool);
        Ok(Smtp { pool })
    }
}

#[async_trait]
impl Channel for Smtp {
    async fn send(&self, msg: &Outbound) -> Result<Receipt, SendError> {
        let m = email::build(msg)?;
        let mut conn = self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => e,
            other => SendError::transient(format!("smtp pool: {other}")),
        })?;
        // Dirty until the reply to the final `.` is read: a send cancelled half-way must not leave a connection with
        // unread replies in the pool (the next message would read them as its own).
        conn.clean = false;
        let sent = conn.smtp.send(m.envelope(), &m.formatted()).await;
        // After an error reply lettre has sent QUIT and marked the connection broken; it is not reused.
        conn.clean = !conn.smtp.has_broken();
        match sent {
            Ok(reply) => {
                let answer = Answer { code: Some(reply.code().to_string()), raw: Some(reply.message().collect::<Vec<_>>().join(" ")) };
                Ok(Receipt { external_id: msg.message_id.clone(), detail: None, answer })
            }
            Err(e) => Err(classify(&e, msg)),
        }
    }
}

/// How a connection is secured: `tls` = `none` / `starttls` (required) / `tls` (implicit, from the first byte).
enum Security {
    None,
    StartTls(TlsParameters),
    Implicit(TlsParameters),
}

/// Opens and vets the pooled connections (deadpool's [`Manager`]).
struct Connector {
    host: String,
    port: u16,
    security: Security,
    timeout: Duration,
    hello: ClientId,
    credentials: Option<Credentials>,
}

/// A pooled connection; `clean` is false while a message transaction is under way.
struct Conn {
    smtp: AsyncSmtpConnection,
    clean: bool,
}

impl Connector {
    /// The TCP connection, with Nagle's algorithm off: SMTP is a sequence of write-then-wait-for-the-reply, and
    /// lettre writes the message content and the final `.` separately, so Nagle would hold the `.` until the
    /// server's (delayed) ACK of the content.
    async fn tcp(&self) -> std::io::Result<TcpStream> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }

    async fn open(&self) -> Result<AsyncSmtpConnection, SendError> {
        let tcp = self.tcp().await.map_err(|e| SendError::transient(format!("smtp connect to {}:{}: {e}", self.host, self.port)))?;
        let stream: Box<dyn AsyncTokioStream> = match &self.security {
            Security::Implicit(tls) => {
                #[allow(deprecated)]
                let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
                stream.upgrade_tls(tls.clone()).await.map_err(|e| setup_error(&e))?;
                Box::new(Implicit(stream.compat()))
            }
            _ => Box::new(tcp),
        };
        let mut smtp = AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await.map_err(|e| setup_error(&e))?;
        if let Security::StartTls(tls) = &self.security {
            smtp.starttls(tls.clone(), &self.hello).await.map_err(|e| setup_error(&e))?;
        }
        if let Some(credentials) = &self.credentials {
            smtp.auth(DEFAULT_MECHANISMS, credentials).await.map_err(|e| setup_error(&e))?;
        }
        Ok(smtp)
    }
}

impl Manager for Connector {
    type Type = Conn;
    type Error = SendError;

    async fn create(&self) -> Result<Conn, SendError> {
        match tokio::time::timeout(self.timeout, self.open()).await {
            Ok(smtp) => Ok(Conn { smtp: smtp?, clean: true }),
            Err(_) => Err(SendError::transient(format!("smtp: no session with {}:{} within {:?}", self.host, self.port, self.timeout))),
        }
    }

    async fn recycle(&self, conn: &mut Conn, metrics: &Metrics) -> RecycleResult<SendError> {
        if !conn.clean || conn.smtp.has_broken() {
            return Err(RecycleError::message("interrupted or broken"));
        }
        if metrics.last_used() >= VERIFY_AFTER_IDLE && !conn.smtp.test_connected().await {
            return Err(RecycleError::message("no reply to NOOP"));
        }
        Ok(())
    }
}

/// Close connections idle for [`IDLE_TIMEOUT`] politely (QUIT); the task ends with the pool.
fn spawn_idle_reaper(pool: &Pool<Connector>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let weak = pool.weak();
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(IDLE_TIMEOUT / 4).await;
            let Some(pool) = weak.upgrade() else { return };
            let idle = pool.retain(|_, metrics| metrics.last_used() < IDLE_TIMEOUT).removed;
            drop(pool);
            for mut conn in idle {
                conn.smtp.abort().await; // QUIT, then close
            }
        }
    });
}

/// A connection-setup failure: a 5xx (e.g. 535 authentication failed) is permanent, anything else transient.
fn setup_error(e: &lettre::transport::smtp::Error) -> SendError {
    let detail = format!("smtp session setup: {e}");
    if e.is_permanent() {
        SendError::permanent(detail)
    } else {
        SendError::transient(detail)
    }
}

/// Transient or permanent from the SMTP reply; 5.1.1–5.1.3 suppress the rejected address.
fn classify(e: &lettre::transport::smtp::Error, msg: &Outbound) -> SendError {
    let detail = e.to_string();
    let class = if e.is_permanent() {
        if ["5.1.1", "5.1.2", "5.1.3"].iter().any(|code| detail.contains(code)) {
            ErrorClass::Suppress { reason: SuppressReason::HardBounce, address: rejected_address(&detail, msg) }
        } else {
            ErrorClass::Permanent
        }
    } else {
        // 4xx replies, connection failures, timeouts, TLS hiccups: try again later.
        ErrorClass::Transient { retry_after: None }
    };
    // Without an answer from the server (the connection broke or timed out) the message may have
    // been handed over whole: lettre does not say in which step it failed, so any such failure
    // counts, and the retry is flagged as a possible duplicate.
    let answered = e.is_response() || e.is_transient() || e.is_permanent() || e.is_client();
    let answer = match e.status() {
        Some(code) => Answer { code: Some(code.to_string()), raw: Some(detail.clone()) },
        None => Answer::default(),
    };
    SendError::new(class, detail).possibly_delivered(!answered).answered(answer)
}

/// The address a 5.1.x reply names (`<user@host>`), else the only recipient.
fn rejected_address(detail: &str, msg: &Outbound) -> Option<String> {
    let named = detail.split('<').skip(1).filter_map(|s| s.split_once('>').map(|(a, _)| a.to_lowercase())).find(|a| a.contains('@'));
    let all: Vec<&String> = msg.to.iter().chain(&msg.cc).chain(&msg.bcc).collect();
    named.or_else(|| (all.len() == 1).then(|| bare(all[0])))
}

fn bare(addr: &str) -> String {
    match addr.rsplit_once('<') {
        Some((_, rest)) => rest.trim_end_matches('>').trim().to_lowercase(),
        None => addr.trim().to_lowercase(),
    }
}

/// An implicit-TLS stream (lettre's TLS over our TCP socket) as the tokio stream lettre's connection takes.
/// lettre reports such a connection as not encrypted, which only matters to STARTTLS, never used on it.
#[allow(deprecated)]
#[derive(Debug)]
struct Implicit(Compat<AsyncNetworkStream>);

impl AsyncTokioStream for Implicit {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().peer_addr()
    }
}

impl AsyncRead for Implicit {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Implicit {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sockets_have_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = serde_json::json!({ "host": "127.0.0.1", "port": listener.local_addr().unwrap().port(), "tls": "none" });
        let smtp = Smtp::new(&config, None).unwrap();
        let tcp = smtp.pool.manager().tcp().await.unwrap();
        assert!(tcp.nodelay().unwrap(), "TCP_NODELAY must be set on SMTP connections");
    }
}
