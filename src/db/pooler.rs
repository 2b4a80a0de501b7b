//! The pool's connections through a transaction-mode pooler (`PGCOURIER_DB_POOLER=transaction`,
//! e.g. PgBouncer with `pool_mode = transaction`).
//!
//! tokio-postgres runs every statement as a *named* prepared statement: `Parse(sN)`,
//! `Describe`, `Sync`, and later, in another round trip, `Bind(sN)`, `Execute`, `Sync`; the
//! pool's `prepare_cached` keeps `sN` for the life of the connection. A transaction pooler hands
//! the client another server connection after every `Sync` outside a transaction, where `sN`
//! does not exist ("prepared statement \"s3\" does not exist") or already exists under another
//! client's statement ("prepared statement \"s3\" already exists"). PgBouncer before 1.21 has no
//! protocol-level prepared statement support at all.
//!
//! So in that mode each pool connection talks to the pooler through [`relay`], which rewrites
//! the extended query protocol in flight: a named `Parse` becomes an unnamed one (its text and
//! parameter types remembered), and a `Bind` or `Describe` of a named statement is preceded by
//! an unnamed `Parse` of the remembered text in the same `Sync` batch, which the pooler keeps on
//! one server connection; the `ParseComplete` answering an added `Parse` is dropped on the way
//! back. `Close` of a named statement closes the unnamed one. The client (and every statement in
//! `src/db`) is unchanged; the cost is a parse per execution (no plan reuse across executions),
//! and nothing at all in the default mode, which connects directly.

use bytes::{Buf, BufMut, BytesMut};
use deadpool_postgres::Connect;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, Error, NoTls};

/// Connects the pool through [`relay`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ThroughPooler;

impl Connect for ThroughPooler {
    fn connect(&self, config: &Config) -> Pin<Box<dyn Future<Output = Result<(Client, JoinHandle<()>), Error>> + Send + '_>> {
        let config = config.clone();
        Box::pin(async move {
            let (app, relay_end) = tokio::io::duplex(64 * 1024);
            match open(&config).await {
                Ok(server) => {
                    tokio::spawn(relay(relay_end, server));
                }
                Err(e) => {
                    // reported by the client as it writes its startup message
                    let (client, connection) = config.connect_raw(Failed(Some(e)), NoTls).await?;
                    drop(connection);
                    return Ok((client, tokio::spawn(async {})));
                }
            }
            let (client, connection) = config.connect_raw(app, NoTls).await?;
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "database connection (through the pooler) closed");
                }
            });
            Ok((client, task))
        })
    }
}

/// A stream to the first host of `config` that answers (TCP or a Unix socket directory).
async fn open(config: &Config) -> std::io::Result<Box<dyn Stream>> {
    let ports = config.get_ports();
    let mut last = std::io::Error::new(std::io::ErrorKind::InvalidInput, "no host in the connection string");
    for (i, host) in config.get_hosts().iter().enumerate() {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let attempt = async {
            Ok::<Box<dyn Stream>, std::io::Error>(match host {
                Host::Tcp(name) => {
                    let s = tokio::net::TcpStream::connect((name.as_str(), port)).await?;
                    s.set_nodelay(true)?;
                    Box::new(s)
                }
                Host::Unix(dir) => Box::new(tokio::net::UnixStream::connect(dir.join(format!(".s.PGSQL.{port}"))).await?),
            })
        };
        let result = match config.get_connect_timeout() {
            Some(t) => tokio::time::timeout(*t, attempt).await.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
            None => attempt.await,
        };
        match result {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A stream that fails with a connect error, so that the client reports it as its own.
struct Failed(Option<std::io::Error>);

impl Failed {
    fn error(&mut self) -> std::io::Error {
        self.0.take().unwrap_or_else(|| std::io::ErrorKind::NotConnected.into())
    }
}

impl AsyncRead for Failed {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Err(self.error()))
    }
}

impl AsyncWrite for Failed {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Err(self.error()))
    }
    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Err(self.error()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What both directions share: per `Sync` batch sent and not yet answered by `ReadyForQuery`,
/// whether each `Parse` in it was added by the relay (its `ParseComplete` is dropped).
#[derive(Default)]
struct Batches {
    pending: VecDeque<VecDeque<bool>>,
}

/// Relay between the client (`app`) and the pooler (`server`) until either closes.
async fn relay(app: tokio::io::DuplexStream, server: Box<dyn Stream>) {
    let batches = Arc::new(Mutex::new(Batches { pending: VecDeque::from([VecDeque::new()]) }));
    let (mut app_read, mut app_write) = tokio::io::split(app);
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let up = {
        let batches = batches.clone();
        async move {
            let mut frontend = Frontend::default();
            let mut input = BytesMut::with_capacity(8192);
            loop {
                if app_read.read_buf(&mut input).await? == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                let out = frontend.rewrite(&mut input, &batches);
                server_write.write_all(&out).await?;
            }
        }
    };
    let down = async move {
        let mut started = false;
        let mut input = BytesMut::with_capacity(8192);
        loop {
            if server_read.read_buf(&mut input).await? == 0 {
                return Ok::<(), std::io::Error>(());
            }
            let out = filter_backend(&mut input, &batches, &mut started);
            app_write.write_all(&out).await?;
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// The client side of the rewrite: the statements it named, and which one the unnamed
/// statement holds in the current `Sync` batch.
#[derive(Default)]
struct Frontend {
    started: bool,
    /// name → (query text, parameter type oids as sent)
    statements: HashMap<Vec<u8>, (Vec<u8>, Vec<u8>)>,
    /// The named statement (or `Some(empty)`: the client's own unnamed one) the unnamed slot
    /// holds since the last `Sync`.
    unnamed: Option<Vec<u8>>,
}

fn cstr(body: &[u8]) -> (&[u8], &[u8]) {
    let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
    (&body[..end], body.get(end + 1..).unwrap_or(&[]))
}

fn message(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(body);
}

fn parse_body(name: &[u8], query: &[u8], types: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(name.len() + query.len() + types.len() + 2);
    b.extend_from_slice(name);
    b.push(0);
    b.extend_from_slice(query);
    b.push(0);
    b.extend_from_slice(types);
    b
}

impl Frontend {
    /// Rewrite every whole message in `input` (the rest stays for the next read).
    fn rewrite(&mut self, input: &mut BytesMut, batches: &Mutex<Batches>) -> BytesMut {
        let mut out = BytesMut::with_capacity(input.len() + 64);
        if !self.started {
            // the startup message: no tag, length first
            if input.len() < 4 {
                return out;
            }
            let len = i32::from_be_bytes(input[..4].try_into().expect("4 bytes")) as usize;
            if input.len() < len {
                return out;
            }
            out.put_slice(&input.split_to(len));
            self.started = true;
        }
        let mut batches = batches.lock().expect("relay batches");
        while input.len() >= 5 {
            let len = i32::from_be_bytes(input[1..5].try_into().expect("4 bytes")) as usize;
            if input.len() < 1 + len {
                break;
            }
            let tag = input[0];
            input.advance(5);
            let body = input.split_to(len - 4);
            let current = batches.pending.back_mut().expect("an open batch");
            match tag {
                b'P' => {
                    let (name, rest) = cstr(&body);
                    let (query, types) = cstr(rest);
                    if !name.is_empty() {
                        self.statements.insert(name.to_vec(), (query.to_vec(), types.to_vec()));
                    }
                    message(&mut out, b'P', &parse_body(b"", query, types));
                    current.push_back(false);
                    self.unnamed = Some(name.to_vec());
                }
                b'B' => {
                    let (portal, rest) = cstr(&body);
                    let (name, rest) = cstr(rest);
                    if !name.is_empty() {
                        self.hold(name, &mut out, current);
                    }
                    let mut b = Vec::with_capacity(body.len());
                    b.extend_from_slice(portal);
                    b.push(0);
                    b.push(0);
                    b.extend_from_slice(rest);
                    message(&mut out, b'B', &b);
                }
                b'D' if body.first() == Some(&b'S') => {
                    let (name, _) = cstr(&body[1..]);
                    if !name.is_empty() {
                        self.hold(name, &mut out, current);
                    }
                    message(&mut out, b'D', b"S\0");
                }
                b'C' if body.first() == Some(&b'S') => {
                    let (name, _) = cstr(&body[1..]);
                    if !name.is_empty() {
                        self.statements.remove(name);
                        self.unnamed = None;
                    }
                    message(&mut out, b'C', b"S\0");
                }
                b'S' | b'Q' | b'F' => {
                    message(&mut out, tag, &body);
                    batches.pending.push_back(VecDeque::new());
                    self.unnamed = None;
                }
                _ => message(&mut out, tag, &body),
            }
        }
        out
    }

    /// Make the unnamed statement `name`'s, adding its `Parse` when it is not already.
    fn hold(&mut self, name: &[u8], out: &mut BytesMut, current: &mut VecDeque<bool>) {
        if self.unnamed.as_deref() == Some(name) {
            return;
        }
        if let Some((query, types)) = self.statements.get(name) {
            message(out, b'P', &parse_body(b"", query, types));
            current.push_back(true);
            self.unnamed = Some(name.to_vec());
        }
        // an unknown name goes on as unnamed, and the server's error names no statement the
        // client could confuse: it answers as for a missing statement
    }
}

/// The server side: drop the `ParseComplete` of each added `Parse`, move to the next batch on
/// `ReadyForQuery`, forget a batch's remaining parses after an error (the server skips to `Sync`).
fn filter_backend(input: &mut BytesMut, batches: &Mutex<Batches>, started: &mut bool) -> BytesMut {
    let mut out = BytesMut::with_capacity(input.len());
    let mut batches = batches.lock().expect("relay batches");
    while input.len() >= 5 {
        let len = i32::from_be_bytes(input[1..5].try_into().expect("4 bytes")) as usize;
        if input.len() < 1 + len {
            break;
        }
        let whole = input.split_to(1 + len);
        match whole[0] {
            // the first ReadyForQuery ends the startup, which no batch asked for
            b'Z' if !*started => *started = true,
            b'Z' => {
                batches.pending.pop_front();
                if batches.pending.is_empty() {
                    batches.pending.push_back(VecDeque::new());
                }
            }
            // every ParseComplete takes its Parse off the batch; the relay's own are dropped
            b'1' if *started && batches.pending.front_mut().and_then(|b| b.pop_front()) == Some(true) => continue,
            b'E' if *started => {
                if let Some(b) = batches.pending.front_mut() {
                    b.clear();
                }
            }
            _ => {}
        }
        out.put_slice(&whole);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let len = i32::from_be_bytes(b[1..5].try_into().unwrap()) as usize;
            out.push((b[0], b[5..1 + len].to_vec()));
            b = &b[1 + len..];
        }
        out
    }

    fn frame(tag: u8, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        message(&mut b, tag, body);
        b
    }

    /// A prepare then, in a later batch, an execution of the named statement: the name is gone
    /// from the wire, the execution's batch re-parses the text, and its ParseComplete is dropped.
    #[test]
    fn named_statements_become_unnamed_and_are_reparsed_in_the_batch_that_runs_them() {
        let batches = Mutex::new(Batches { pending: VecDeque::from([VecDeque::new()]) });
        let mut front = Frontend { started: true, ..Frontend::default() };
        let mut input = frame(b'P', &parse_body(b"s7", b"SELECT $1::int8", &[0, 0]));
        input.extend_from_slice(&frame(b'D', b"Ss7\0"));
        input.extend_from_slice(&frame(b'S', b""));
        let out = messages(&front.rewrite(&mut input, &batches));
        assert_eq!(out[0], (b'P', parse_body(b"", b"SELECT $1::int8", &[0, 0])));
        assert_eq!(out[1], (b'D', b"S\0".to_vec()), "described unnamed, in the batch of its parse");
        let mut input = frame(b'B', b"\0s7\0rest");
        input.extend_from_slice(&frame(b'E', b"\0\0\0\0\0"));
        input.extend_from_slice(&frame(b'S', b""));
        let out = messages(&front.rewrite(&mut input, &batches));
        assert_eq!(out.iter().map(|(t, _)| *t).collect::<Vec<_>>(), b"PBES");
        assert_eq!(out[0].1, parse_body(b"", b"SELECT $1::int8", &[0, 0]));
        assert_eq!(out[1].1, b"\0\0rest".to_vec());
        assert_eq!(batches.lock().unwrap().pending, [vec![false], vec![true], vec![]].map(VecDeque::from));

        // the server's answers: startup's ReadyForQuery, the prepare's, then the execution's
        let mut started = false;
        let mut back = frame(b'Z', b"I");
        for (tag, body) in
            [(b'1', &b""[..]), (b't', b"\0\0"), (b'n', b""), (b'Z', b"I"), (b'1', b""), (b'2', b""), (b'C', b"SELECT 1\0"), (b'Z', b"I")]
        {
            back.extend_from_slice(&frame(tag, body));
        }
        let tags: Vec<u8> = messages(&filter_backend(&mut back, &batches, &mut started)).iter().map(|(t, _)| *t).collect();
        assert_eq!(tags, b"Z1tnZ2CZ", "the added parse's ParseComplete is dropped, the client's kept");
        assert_eq!(batches.lock().unwrap().pending, [VecDeque::new()]);

        // a Close of the named statement closes the unnamed one and forgets the text
        let mut input = frame(b'C', b"Ss7\0");
        let out = messages(&front.rewrite(&mut input, &batches));
        assert_eq!(out[0], (b'C', b"S\0".to_vec()));
        assert!(front.statements.is_empty());
    }

    /// After an error the server skips to Sync: the batch's remaining added parses never answer.
    #[test]
    fn an_error_ends_the_batch_s_expected_parses() {
        let batches = Mutex::new(Batches { pending: VecDeque::from([VecDeque::from([true, true]), VecDeque::from([true])]) });
        let mut started = true;
        let mut back = frame(b'E', b"SERROR\0\0");
        back.extend_from_slice(&frame(b'Z', b"I"));
        back.extend_from_slice(&frame(b'1', b""));
        let tags: Vec<u8> = messages(&filter_backend(&mut back, &batches, &mut started)).iter().map(|(t, _)| *t).collect();
        assert_eq!(tags, b"EZ", "the next batch's added ParseComplete is still recognised");
    }
}
