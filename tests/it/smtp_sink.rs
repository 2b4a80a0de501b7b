//! A small real SMTP server (an RFC 5321 subset) for integration tests, on 127.0.0.1 port 0.
//!
//! Enough for lettre's pooled `AsyncSmtpTransport` without TLS: EHLO/HELO, AUTH PLAIN/LOGIN
//! (always 235), MAIL, RCPT, DATA (dot-unstuffed), RSET, NOOP, QUIT. Commands are read line by
//! line, so pipelined clients work too. A [`Reply`] rule can make the sink fail deliveries. Its tests also
//! check pgcourier's `smtp` adapter on it: the pool bound and a cancelled send.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// A running SMTP server; it stops (with all its connections) when dropped.
pub struct SmtpSink {
    /// Where it listens (127.0.0.1, an ephemeral port).
    pub addr: SocketAddr,
    state: Arc<State>,
    server: JoinHandle<()>,
}

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The MAIL FROM path, without angle brackets (empty for the null sender).
    pub mail_from: String,
    /// The accepted RCPT TO paths, without angle brackets, in order.
    pub rcpt_to: Vec<String>,
    /// The message as received: headers and body, dot-unstuffed, CRLF kept. It includes the CRLF
    /// before the final "." line, so a body that already ended in CRLF (lettre) ends in CRLF CRLF.
    pub data: String,
    /// When the sink accepted it (after any [`Reply::Delay`]).
    pub at: Instant,
}

impl Received {
    /// Value of the first header named `name` (case-insensitive), unfolded, or None.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut found: Option<String> = None;
        for line in self.data.lines() {
            if line.is_empty() {
                break;
            } // end of the header block
            if line.starts_with([' ', '\t']) {
                if let Some(v) = found.as_mut() {
                    v.push_str(line)
                } // RFC 5322 unfolding: drop the CRLF, keep WSP
            } else if found.is_some() {
                break;
            } else if let Some((_, v)) = line.split_once(':').filter(|(n, _)| n.trim().eq_ignore_ascii_case(name)) {
                found = Some(v.to_owned());
            }
        }
        found.map(|v| v.trim().to_owned())
    }
}

/// How the sink answers a message transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `250` to the end of DATA.
    Accept,
    /// `451 4.3.0` to the end of DATA (a transient failure).
    Temp451,
    /// `550 5.1.1 <addr>: Recipient address rejected: User unknown` to every RCPT TO.
    Reject550_511,
    /// `554 5.7.1 rejected` to the end of DATA (a permanent failure).
    Reject554,
    /// Wait this long after the end of DATA, then record the message and answer `250` (it is
    /// recorded even if the client gave up meanwhile, like a slow MTA that still delivers).
    Delay(Duration),
    /// Read the whole DATA, record the message as received (it counts in [`SmtpSink::messages`]:
    /// an MTA that has the data may well deliver it), then reset the connection (RST) without
    /// answering, so the client cannot know whether the message was taken.
    ResetAfterData,
}

type Rule = dyn Fn(&[String], usize) -> Reply + Send + Sync;

struct State {
    rule: Box<Rule>,
    messages: Mutex<Vec<Received>>,
    auth_users: Mutex<Vec<String>>,
    connections: AtomicUsize,
    attempts: AtomicUsize,
    transactions: AtomicUsize,
    resets: AtomicUsize,
    accepted: watch::Sender<usize>,
}

/// The envelope of the transaction in progress on one connection.
struct Txn {
    from: String,
    rcpts: Vec<String>,
    decision: Option<Reply>,
}

impl SmtpSink {
    /// Start accepting everything.
    pub async fn start() -> SmtpSink {
        Self::with_rule(|_, _| Reply::Accept).await
    }

    /// Start with a rule deciding how each message transaction is answered.
    ///
    /// The rule is called exactly once per transaction, when its first RCPT TO arrives, with the
    /// recipients known at that point (that first address: SMTP clients wait for each RCPT reply)
    /// and `n`, the 0-based index of this transaction among all transactions the sink has seen on
    /// all connections (i.e. how many times the rule was called before). Sequentially, `n` counts
    /// every earlier message: accepted, rejected at DATA, and rejected at RCPT alike.
    /// [`Reply::Reject550_511`] is answered to that RCPT TO (and any later one in the transaction);
    /// any other reply is kept and answered to the end of DATA.
    pub async fn with_rule(rule: impl Fn(&[String], usize) -> Reply + Send + Sync + 'static) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the SMTP sink");
        let addr = listener.local_addr().expect("SMTP sink address");
        let (messages, auth_users, accepted) = (Mutex::default(), Mutex::default(), watch::channel(0).0);
        let (connections, attempts, transactions) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
        let resets = AtomicUsize::new(0);
        let state = Arc::new(State { rule: Box::new(rule), messages, auth_users, connections, attempts, transactions, resets, accepted });
        let st = Arc::clone(&state);
        let server = tokio::spawn(async move {
            let mut sessions = JoinSet::new(); // dropped (aborting them all) with this task
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        st.connections.fetch_add(1, SeqCst);
                        let st = Arc::clone(&st);
                        // An I/O error (e.g. the client hung up) just ends that session.
                        sessions.spawn(async move { serve(stream, &st).await.ok() });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await, // e.g. EMFILE
                }
                while sessions.try_join_next().is_some() {}
            }
        });
        SmtpSink { addr, state, server }
    }

    /// Messages received so far, in order: accepted (250 after DATA), and reset after DATA.
    pub fn messages(&self) -> Vec<Received> {
        self.state.messages.lock().unwrap().clone()
    }

    /// Number of TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(SeqCst)
    }

    /// Number of DATA transactions attempted (message data received, accepted or not).
    pub fn attempts(&self) -> usize {
        self.state.attempts.load(SeqCst)
    }

    /// Number of connections reset after DATA ([`Reply::ResetAfterData`]).
    pub fn resets(&self) -> usize {
        self.state.resets.load(SeqCst)
    }

    /// Number of messages received (accepted, delayed or reset after DATA) so far.
    pub fn count(&self) -> usize {
        self.state.messages.lock().unwrap().len()
    }

    /// How many copies of each `Message-ID` header value were received (a message without one
    /// counts under the empty string).
    pub fn message_ids(&self) -> std::collections::HashMap<String, usize> {
        let mut ids = std::collections::HashMap::new();
        for m in self.state.messages.lock().unwrap().iter() {
            *ids.entry(m.header("Message-ID").unwrap_or_default()).or_insert(0) += 1;
        }
        ids
    }

    /// Usernames received with AUTH (PLAIN or LOGIN), in order.
    pub fn auth_users(&self) -> Vec<String> {
        self.state.auth_users.lock().unwrap().clone()
    }

    /// Wait until at least n messages were accepted, up to timeout; returns them (panics with a clear message on timeout, saying how many arrived).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let mut rx = self.state.accepted.subscribe();
        let arrived = matches!(tokio::time::timeout(timeout, rx.wait_for(|&c| c >= n)).await, Ok(Ok(_)));
        let (got, attempts, conns) = (self.messages().len(), self.attempts(), self.connections());
        assert!(
            arrived,
            "SMTP sink: waited {timeout:?} for {n} message(s) but only {got} arrived ({attempts} DATA attempts, {conns} connections)"
        );
        self.messages()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const EHLO: &str = "250-smtp-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 52428800";

/// One SMTP session; returns on QUIT, end of stream, or an I/O error.
async fn serve(stream: TcpStream, st: &State) -> io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 smtp-sink ESMTP ready\r\n").await?;
    let mut txn: Option<Txn> = None;
    while let Some(line) = read_line(&mut r).await? {
        let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
        let reply = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                txn = None;
                EHLO.to_owned()
            }
            "HELO" => "250 smtp-sink".to_owned(),
            "AUTH" => auth(arg.trim(), &mut r, &mut w, st).await?,
            "MAIL" => {
                txn = Some(Txn { from: path(arg), rcpts: Vec::new(), decision: None });
                "250 2.1.0 Ok".to_owned()
            }
            "RCPT" => match txn.as_mut() {
                None => "503 5.5.1 Error: need MAIL command".to_owned(),
                Some(t) => {
                    let to = path(arg);
                    let decision =
                        *t.decision.get_or_insert_with(|| (st.rule)(std::slice::from_ref(&to), st.transactions.fetch_add(1, SeqCst)));
                    if decision == Reply::Reject550_511 {
                        format!("550 5.1.1 <{to}>: Recipient address rejected: User unknown")
                    } else {
                        t.rcpts.push(to);
                        "250 2.1.5 Ok".to_owned()
                    }
                }
            },
            "DATA" => match txn.take() {
                Some(t) if !t.rcpts.is_empty() => {
                    w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                    let Some(data) = read_data(&mut r).await? else { return Ok(()) };
                    st.attempts.fetch_add(1, SeqCst);
                    match t.decision.unwrap_or(Reply::Accept) {
                        Reply::ResetAfterData => {
                            let received = Received { mail_from: t.from, rcpt_to: t.rcpts, data, at: Instant::now() };
                            {
                                let mut messages = st.messages.lock().unwrap();
                                messages.push(received);
                                st.accepted.send_replace(messages.len());
                            }
                            st.resets.fetch_add(1, SeqCst);
                            let stream = r.into_inner().reunite(w).expect("the halves of one stream");
                            // SO_LINGER 0: close() sends RST at once (and cannot block).
                            #[allow(deprecated)]
                            stream.set_linger(Some(Duration::ZERO))?;
                            return Ok(());
                        }
                        Reply::Temp451 => "451 4.3.0 Error: temporarily unable to accept the message".to_owned(),
                        Reply::Reject554 | Reply::Reject550_511 => "554 5.7.1 rejected".to_owned(),
                        d @ (Reply::Accept | Reply::Delay(_)) => {
                            if let Reply::Delay(wait) = d {
                                tokio::time::sleep(wait).await;
                            }
                            let received = Received { mail_from: t.from, rcpt_to: t.rcpts, data, at: Instant::now() };
                            let mut messages = st.messages.lock().unwrap();
                            messages.push(received);
                            st.accepted.send_replace(messages.len());
                            format!("250 2.0.0 Ok: queued as {}", messages.len())
                        }
                    }
                }
                other => {
                    txn = other;
                    "554 5.5.1 Error: no valid recipients".to_owned()
                }
            },
            "RSET" => {
                txn = None;
                "250 2.0.0 Ok".to_owned()
            }
            "NOOP" => "250 2.0.0 Ok".to_owned(),
            "VRFY" => "252 2.0.0 Cannot VRFY user".to_owned(),
            "QUIT" => return w.write_all(b"221 2.0.0 Bye\r\n").await,
            _ => "502 5.5.2 Error: command not recognized".to_owned(),
        };
        w.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
    Ok(())
}

/// The answer to `AUTH <arg>` after any 334 challenges; records the username.
async fn auth(arg: &str, r: &mut BufReader<OwnedReadHalf>, w: &mut OwnedWriteHalf, st: &State) -> io::Result<String> {
    let (mech, initial) = arg.split_once(' ').map_or((arg, None), |(m, i)| (m, Some(i.trim().to_owned())));
    let user = match mech.to_ascii_uppercase().as_str() {
        "PLAIN" => {
            let resp = match initial {
                Some(i) => i,
                None => challenge("", r, w).await?,
            };
            base64(&resp).split('\0').nth(1).unwrap_or_default().to_owned() // authzid \0 authcid \0 password
        }
        "LOGIN" => {
            let user = match initial {
                Some(i) => i,
                None => challenge("VXNlcm5hbWU6", r, w).await?,
            }; // "Username:"
            challenge("UGFzc3dvcmQ6", r, w).await?; // "Password:"
            base64(&user)
        }
        _ => return Ok("504 5.5.4 Unrecognized authentication type".to_owned()),
    };
    st.auth_users.lock().unwrap().push(user);
    Ok("235 2.7.0 Authentication successful".to_owned())
}

async fn challenge(prompt: &str, r: &mut BufReader<OwnedReadHalf>, w: &mut OwnedWriteHalf) -> io::Result<String> {
    w.write_all(format!("334 {prompt}\r\n").as_bytes()).await?;
    read_line(r).await?.ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
}

/// One command line without its line ending; None at end of stream.
async fn read_line(r: &mut BufReader<OwnedReadHalf>) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    if r.read_until(b'\n', &mut buf).await? == 0 {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).to_owned()))
}

/// The DATA content up to the lone "." line, dot-unstuffed; None if the stream ends first.
async fn read_data(r: &mut BufReader<OwnedReadHalf>) -> io::Result<Option<String>> {
    let mut data = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(Some(String::from_utf8_lossy(&data).into_owned()));
        }
        data.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
    }
}

/// The path in `FROM:<a@b> PARAMS` / `TO:<a@b>`, without the angle brackets.
fn path(arg: &str) -> String {
    let rest = arg.split_once(':').map_or(arg, |(_, p)| p).trim_start();
    match (rest.find('<'), rest.find('>')) {
        (Some(a), Some(b)) if a < b => rest[a + 1..b].to_owned(),
        _ => rest.split(' ').next().unwrap_or_default().to_owned(),
    }
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Decode standard base64, skipping anything else (padding, white space).
fn base64(s: &str) -> String {
    let (mut bits, mut n, mut out) = (0u32, 0, Vec::new());
    for c in s.bytes() {
        let Some(v) = B64.iter().position(|&b| b == c) else { continue };
        (bits, n) = ((bits << 6) | v as u32, n + 6);
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{message::header::ContentType, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    use pgcourier::channels::smtp::Smtp;
    use pgcourier::channels::{Channel, Outbound};

    const WAIT: Duration = Duration::from_secs(5);

    fn transport(sink: &SmtpSink) -> AsyncSmtpTransport<Tokio1Executor> {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1").port(sink.addr.port()).build()
    }

    fn email(to: &str, subject: &str, body: &str) -> Message {
        let b = Message::builder().from("Sender <from@example.com>".parse().unwrap()).to(to.parse().unwrap());
        b.subject(subject).header(ContentType::TEXT_PLAIN).body(body.to_owned()).unwrap()
    }

    #[tokio::test]
    async fn accepts_messages_on_one_pooled_connection_with_readable_headers() {
        let sink = SmtpSink::start().await;
        let smtp = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(sink.addr.port())
            .credentials(Credentials::new("alice".into(), "s3cret".into()))
            .build();
        let subject = "A rather long subject line that lettre may well fold over more than one line of the header";
        smtp.send(email("Rcpt <to@example.com>", subject, "Hello\r\n")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await; // lettre parks the connection in a spawned task
        smtp.send(email("other@example.com", "Second", "Again\r\n")).await.unwrap();
        let got = sink.wait_for(2, WAIT).await;
        assert_eq!((got[0].mail_from.as_str(), got[0].rcpt_to.as_slice()), ("from@example.com", &["to@example.com".to_owned()][..]));
        assert_eq!(got[0].header("subject").as_deref(), Some(subject));
        assert_eq!(got[0].header("TO").as_deref(), Some("Rcpt <to@example.com>"));
        assert_eq!(got[0].header("X-Missing"), None);
        assert!(got[0].data.contains("\r\n\r\nHello\r\n"), "{:?}", got[0].data);
        assert_eq!(got[1].rcpt_to, vec!["other@example.com"]);
        assert_eq!((sink.connections(), sink.attempts()), (1, 2), "the pool reuses the connection");
        assert_eq!(sink.auth_users(), vec!["alice"], "AUTH once per connection");
    }

    #[tokio::test]
    async fn temp_451_is_a_transient_error_and_a_retry_succeeds() {
        let sink = SmtpSink::with_rule(|_, n| if n == 0 { Reply::Temp451 } else { Reply::Accept }).await;
        let smtp = transport(&sink);
        let err = smtp.send(email("to@example.com", "Hi", "x")).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(sink.messages().is_empty());
        smtp.send(email("to@example.com", "Hi", "x")).await.unwrap();
        assert_eq!((sink.wait_for(1, WAIT).await.len(), sink.attempts()), (1, 2));
    }

    #[tokio::test]
    async fn unknown_user_550_5_1_1_is_permanent_at_rcpt_time() {
        let sink = SmtpSink::with_rule(|to, _| if to[0].starts_with("nobody@") { Reply::Reject550_511 } else { Reply::Accept }).await;
        let smtp = transport(&sink);
        let err = smtp.send(email("nobody@example.com", "Hi", "x")).await.unwrap_err();
        assert!(err.is_permanent() && err.to_string().contains("5.1.1"), "{err}");
        assert_eq!(sink.attempts(), 0, "rejected before DATA");
        smtp.send(email("somebody@example.com", "Hi", "x")).await.unwrap();
        assert_eq!(sink.wait_for(1, WAIT).await[0].rcpt_to, vec!["somebody@example.com"]);
    }

    #[tokio::test]
    async fn reject_554_is_permanent_and_delay_still_accepts() {
        let sink = SmtpSink::with_rule(|_, n| if n == 0 { Reply::Reject554 } else { Reply::Delay(Duration::from_millis(200)) }).await;
        let smtp = transport(&sink);
        let err = smtp.send(email("to@example.com", "Hi", "x")).await.unwrap_err();
        assert!(err.is_permanent() && err.to_string().contains("5.7.1"), "{err}");
        let start = Instant::now();
        smtp.send(email("to@example.com", "Hi", "x")).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert_eq!((sink.attempts(), sink.messages().len()), (2, 1));
    }

    #[tokio::test]
    async fn reset_after_data_records_the_message_and_leaves_the_client_without_an_answer() {
        let sink = SmtpSink::with_rule(|_, n| if n == 0 { Reply::ResetAfterData } else { Reply::Accept }).await;
        let smtp = transport(&sink);
        let with_id = |id: &str| {
            let b = Message::builder().from("from@example.com".parse().unwrap()).to("to@example.com".parse().unwrap());
            b.message_id(Some(id.to_owned())).subject("Hi").header(ContentType::TEXT_PLAIN).body("x".to_owned()).unwrap()
        };
        let err = smtp.send(with_id("<m1@example.com>")).await.unwrap_err();
        assert!(!err.is_permanent(), "a lost connection is not a refusal: {err}");
        smtp.send(with_id("<m1@example.com>")).await.unwrap(); // the client's retry
        smtp.send(with_id("<m2@example.com>")).await.unwrap();
        sink.wait_for(3, WAIT).await;
        assert_eq!((sink.attempts(), sink.resets(), sink.count()), (3, 1, 3));
        assert!(sink.connections() >= 2, "the reset connection is not reused");
        let ids = sink.message_ids();
        assert_eq!((ids.get("<m1@example.com>"), ids.get("<m2@example.com>"), ids.len()), (Some(&2), Some(&1), 2), "{ids:?}");
    }

    /// pgcourier's `smtp` adapter on this sink: pool size `pool_size`, AUTH as alice.
    fn adapter(sink: &SmtpSink, pool_size: usize) -> Arc<Smtp> {
        let config =
            serde_json::json!({ "host": "127.0.0.1", "port": sink.addr.port(), "tls": "none", "timeout_ms": 5000, "pool_size": pool_size });
        Arc::new(Smtp::new(&config, Some("alice:s3cret".into())).expect("adapter"))
    }

    fn outbound(i: usize) -> Outbound {
        let mut m = crate::fixtures::text_message(
            pgcourier::domain::vocab::Channel::Email,
            "Acme <noreply@acme.example>",
            &[&format!("u{i}@example.com")],
            "Hi",
        );
        m.message_id = Some(format!("<m{i}@acme.example>"));
        m
    }

    fn spawn_send(smtp: &Arc<Smtp>, i: usize) -> JoinHandle<Result<(), String>> {
        let smtp = Arc::clone(smtp);
        tokio::spawn(async move { smtp.send(&outbound(i)).await.map(|_| ()).map_err(|e| e.detail) })
    }

    #[tokio::test]
    async fn the_adapter_sends_on_at_most_pool_size_connections_each_message_once() {
        let sink = SmtpSink::start().await;
        let smtp = adapter(&sink, 4);
        let sends: Vec<_> = (0..200).map(|i| spawn_send(&smtp, i)).collect(); // all at once: 196 wait for a connection
        for send in sends {
            send.await.unwrap().unwrap();
        }
        let got = sink.wait_for(200, WAIT).await;
        let ids: std::collections::HashSet<String> = got.iter().map(|m| m.header("Message-ID").unwrap()).collect();
        assert_eq!((got.len(), ids.len()), (200, 200));
        assert!(sink.connections() <= 4, "{} connections for a pool of 4", sink.connections());
        assert_eq!(sink.auth_users().len(), sink.connections(), "AUTH once per connection");
    }

    #[tokio::test]
    async fn a_send_cancelled_mid_conversation_does_not_hand_its_connection_to_the_next() {
        let sink = SmtpSink::with_rule(|_, n| if n == 0 { Reply::Delay(Duration::from_millis(300)) } else { Reply::Accept }).await;
        let smtp = adapter(&sink, 1);
        let first = spawn_send(&smtp, 0);
        let start = Instant::now();
        while sink.attempts() == 0 {
            assert!(start.elapsed() < WAIT, "the first message never reached the end of DATA");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        first.abort(); // waiting for the reply to its final "."
        assert!(first.await.unwrap_err().is_cancelled());
        // Reused, the connection would feed the late "250" of message 0 to message 1's MAIL, and so on.
        spawn_send(&smtp, 1).await.unwrap().expect("message 1 on a fresh connection");
        let got = sink.wait_for(2, WAIT).await; // the sink still takes message 0 after its delay
        assert!(got.iter().any(|m| m.rcpt_to == ["u1@example.com"] && m.header("Message-ID").as_deref() == Some("<m1@acme.example>")));
        assert_eq!(sink.connections(), 2, "the interrupted connection was not reused");
    }

    #[tokio::test]
    async fn dot_stuffing_round_trips() {
        let sink = SmtpSink::start().await;
        let body = "first\r\n.leading dot\r\n..two dots\r\n.\r\nlast\r\n";
        transport(&sink).send(email("to@example.com", "Dots", body)).await.unwrap();
        let got = sink.wait_for(1, WAIT).await;
        assert!(got[0].data.contains(&format!("\r\n\r\n{body}")), "{:?}", got[0].data);
    }
}
