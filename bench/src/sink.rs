//! A lean SMTP sink for the benchmark, on 127.0.0.1 port 0.
//!
//! It speaks just enough ESMTP for lettre's pooled client without TLS: EHLO (advertising
//! PIPELINING, 8BITMIME and SIZE), HELO, MAIL, RCPT, DATA (dot-unstuffed), RSET, NOOP, QUIT;
//! everything is answered 250. For each accepted message it keeps only what the benchmark
//! needs: the [`Instant`] the final `.` line was read and the `Message-ID` header value. The
//! body is read and thrown away.
//!
//! Speed: one 64 KiB buffered reader and one reused line buffer per connection (no allocation
//! per line), and replies are gathered and written only when no more pipelined input is
//! already buffered (plus before waiting for the message content after `354`).
//!
//! Like any ordinary server, it leaves the kernel's delayed ACKs on. With `quickack` (the
//! `--sink-quickack` flag, Linux only, a diagnostic) it re-arms `TCP_QUICKACK` whenever it has
//! consumed all input, so a client that sends a message as two small writes with Nagle's
//! algorithm on (lettre: the content, then `\r\n.\r\n`) no longer waits for a delayed ACK.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// When the end of its DATA was read (just before the 250 is written).
    pub at: Instant,
    /// The `Message-ID` header value as sent (`<uuid@domain>`), or empty if it had none.
    pub message_id: String,
}

struct State {
    quickack: bool,
    arrivals: Mutex<Vec<Arrival>>,
    accepted: watch::Sender<usize>,
    connections: AtomicUsize,
}

/// A running sink; it stops (with all its connections) when dropped.
pub struct Sink {
    pub addr: SocketAddr,
    state: Arc<State>,
    server: JoinHandle<()>,
}

impl Sink {
    pub async fn start(quickack: bool) -> io::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            quickack,
            arrivals: Mutex::new(Vec::with_capacity(32 * 1024)),
            accepted: watch::channel(0).0,
            connections: AtomicUsize::new(0),
        });
        let st = Arc::clone(&state);
        let server = tokio::spawn(async move {
            let mut sessions = JoinSet::new(); // aborted with this task
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        st.connections.fetch_add(1, Ordering::Relaxed);
                        let st = Arc::clone(&st);
                        // An I/O error (the client hung up) just ends that session.
                        sessions.spawn(async move { serve(stream, &st).await.ok() });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await, // e.g. EMFILE
                }
                while sessions.try_join_next().is_some() {}
            }
        });
        Ok(Sink { addr, state, server })
    }

    /// Messages accepted so far.
    pub fn count(&self) -> usize {
        *self.state.accepted.borrow()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// A copy of every arrival so far, in acceptance order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.state.arrivals.lock().unwrap().clone()
    }

    /// Wait until at least `n` messages were accepted; false on timeout.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.state.accepted.subscribe();
        let arrived = matches!(tokio::time::timeout(timeout, rx.wait_for(|&c| c >= n)).await, Ok(Ok(_)));
        arrived
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const EHLO: &[u8] = b"250-bench-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 52428800\r\n";
const OK: &[u8] = b"250 2.0.0 Ok\r\n";

/// One SMTP session; returns on QUIT, end of stream or an I/O error.
async fn serve(stream: TcpStream, st: &State) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let ack_fd = st.quickack.then(|| stream.as_raw_fd());
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    out.extend_from_slice(b"220 bench-sink ESMTP\r\n");
    let (mut in_mail, mut rcpts) = (false, 0usize);
    loop {
        // Pipelining: answer a burst of commands with one write, once the burst is consumed.
        if r.buffer().is_empty() && !out.is_empty() {
            w.write_all(&out).await?;
            out.clear();
        }
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        ack_if_drained(&r, ack_fd);
        let cmd = trim_eol(&line);
        let verb = cmd.get(..4).unwrap_or(cmd);
        let is = |v: &[u8]| verb.eq_ignore_ascii_case(v) && (cmd.len() == 4 || cmd[4] == b' ');
        if is(b"EHLO") {
            (in_mail, rcpts) = (false, 0);
            out.extend_from_slice(EHLO);
        } else if is(b"HELO") {
            out.extend_from_slice(b"250 bench-sink\r\n");
        } else if is(b"MAIL") {
            (in_mail, rcpts) = (true, 0);
            out.extend_from_slice(OK);
        } else if is(b"RCPT") {
            if in_mail {
                rcpts += 1;
                out.extend_from_slice(OK);
            } else {
                out.extend_from_slice(b"503 5.5.1 need MAIL first\r\n");
            }
        } else if is(b"DATA") {
            if !in_mail || rcpts == 0 {
                out.extend_from_slice(b"554 5.5.1 no valid recipients\r\n");
                continue;
            }
            out.extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
            w.write_all(&out).await?;
            out.clear();
            let message_id = read_data(&mut r, &mut line, ack_fd).await?;
            let at = Instant::now();
            {
                let mut arrivals = st.arrivals.lock().unwrap();
                arrivals.push(Arrival { at, message_id });
                st.accepted.send_replace(arrivals.len());
            }
            (in_mail, rcpts) = (false, 0);
            out.extend_from_slice(OK);
        } else if is(b"RSET") {
            (in_mail, rcpts) = (false, 0);
            out.extend_from_slice(OK);
        } else if is(b"NOOP") {
            out.extend_from_slice(OK);
        } else if is(b"QUIT") {
            out.extend_from_slice(b"221 2.0.0 Bye\r\n");
            return w.write_all(&out).await;
        } else {
            out.extend_from_slice(b"502 5.5.2 command not recognized\r\n");
        }
    }
}

/// Read the message content up to the lone `.` line and return its Message-ID (unfolded,
/// trimmed; empty if absent). Lines are dot-unstuffed; only the header block is looked at.
async fn read_data(r: &mut BufReader<OwnedReadHalf>, line: &mut Vec<u8>, ack_fd: Option<RawFd>) -> io::Result<String> {
    let mut in_headers = true;
    let mut capturing = false;
    let mut message_id = String::new();
    loop {
        line.clear();
        if r.read_until(b'\n', line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        ack_if_drained(r, ack_fd);
        let content = trim_eol(line);
        if content == b"." {
            return Ok(message_id.trim().to_owned());
        }
        if !in_headers {
            continue;
        }
        let content = content.strip_prefix(b".").unwrap_or(content); // dot-unstuffing
        if content.is_empty() {
            in_headers = false;
        } else if content[0] == b' ' || content[0] == b'\t' {
            if capturing {
                message_id.push_str(&String::from_utf8_lossy(content)); // RFC 5322 unfolding
            }
        } else {
            capturing = false;
            const NAME: &[u8] = b"message-id:";
            if message_id.is_empty() && content.len() >= NAME.len() && content[..NAME.len()].eq_ignore_ascii_case(NAME) {
                message_id = String::from_utf8_lossy(&content[NAME.len()..]).into_owned();
                capturing = true;
            }
        }
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// With `--sink-quickack`: once everything received is consumed (we are about to wait for the
/// client), acknowledge at once instead of after the delayed-ACK timer.
fn ack_if_drained(r: &BufReader<OwnedReadHalf>, ack_fd: Option<RawFd>) {
    if let Some(fd) = ack_fd.filter(|_| r.buffer().is_empty()) {
        quickack(fd);
    }
}

#[cfg(target_os = "linux")]
fn quickack(fd: RawFd) {
    use std::ffi::{c_int, c_void};
    extern "C" {
        fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: u32) -> c_int;
    }
    const IPPROTO_TCP: c_int = 6;
    const TCP_QUICKACK: c_int = 12;
    let one: c_int = 1;
    // SAFETY: `fd` is the open socket of the session calling us, and the option value is a
    // c_int that outlives the call; a failure only means the ACK stays delayed.
    unsafe { setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, (&one as *const c_int).cast(), std::mem::size_of::<c_int>() as u32) };
}

#[cfg(not(target_os = "linux"))]
fn quickack(_fd: RawFd) {}
