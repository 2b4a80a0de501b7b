//! The LISTEN connection: one dedicated connection outside the pool, reconnected with capped
//! backoff. NOTIFY is only a hint: after every (re)connect every worker is woken to claim as if
//! notified, so nothing is stranded by a notification lost while the connection was down.
//!
//! While LISTEN is up the daemon keeps a row in `et_listeners` (refreshed every
//! [`REGISTRATION_TTL`] / 3, deleted on shutdown): the message triggers notify only while some
//! daemon listens there. The statements are in [`crate::db::listener`].
//!
//! LISTEN needs the primary (a standby refuses it, and a fenced old primary hears no new rows):
//! the connection ends when its server reports itself read-only, which it does with the answer
//! to the connection's next statement (the registration refresh), and the reconnect goes through
//! the multi-host URL to the new primary ([`crate::db::primary`]).

use crate::db::listener::{self as q, REGISTRATION_TTL};
use crate::telemetry::one_line;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

/// The wake-up channels and whom each one wakes.
#[derive(Clone, Default)]
pub struct Wakers {
    /// `et_outbound`: the outbound dispatcher.
    pub outbound: Arc<Notify>,
    /// `et_inbound`: the inbound worker.
    pub inbound: Arc<Notify>,
    /// `et_webhooks`: the status webhook worker.
    pub webhooks: Arc<Notify>,
}

impl Wakers {
    fn wake(&self, channel: &str) {
        match channel {
            q::OUTBOUND => self.outbound.notify_one(),
            q::INBOUND => self.inbound.notify_one(),
            q::WEBHOOKS => self.webhooks.notify_one(),
            _ => {}
        }
    }

    fn wake_all(&self) {
        self.outbound.notify_one();
        self.inbound.notify_one();
        self.webhooks.notify_one();
    }
}

/// What the rest of the daemon can see of the listener (for `/ready` and metrics).
#[derive(Default)]
pub struct ListenerState {
    /// True while the LISTEN connection is up.
    pub connected: AtomicBool,
    /// How many times the connection was re-established after a loss.
    pub reconnects: AtomicU64,
    /// The daemon runs without LISTEN (`PGCOURIER_LISTEN=off`): workers find work by polling alone.
    pub poll_only: AtomicBool,
}

/// Write or refresh `worker`'s row. A failure only means inserts do not notify until the next
/// refresh (the daemon then finds work by its poll interval), so it is logged, not fatal.
async fn register(client: &tokio_postgres::Client, worker: &str) {
    if let Err(e) = q::register(client, worker).await {
        tracing::warn!(error = %one_line(&e), "could not register in et_listeners; inserts will not wake this daemon");
    }
}

/// Run until `shutdown`: listen, forward notifications to `wakers`, reconnect on loss.
pub async fn run(
    config: tokio_postgres::Config,
    worker: String,
    wakers: Wakers,
    state: Arc<ListenerState>,
    max_backoff: Duration,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    while !shutdown.is_cancelled() {
        match listen_once(&config, &worker, &wakers, &state, &shutdown, &mut first).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %one_line(&e), retry_in_ms = backoff.as_millis() as u64, "LISTEN connection failed")
            }
        }
        state.connected.store(false, Ordering::SeqCst);
        if shutdown.is_cancelled() {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(max_backoff);
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    worker: &str,
    wakers: &Wakers,
    state: &ListenerState,
    shutdown: &CancellationToken,
    first: &mut bool,
) -> Result<(), tokio_postgres::Error> {
    // named for DBAs looking at pg_stat_activity (and for tests that kill it)
    let mut config = config.clone();
    config.application_name("pgcourier listener");
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        // LISTEN needs the primary: a server that turns read-only (fenced, demoted) ends the
        // connection, and the reconnect goes through the multi-host string to the new primary
        let mut messages = futures_util::stream::poll_fn(move |cx| {
            let polled = connection.poll_message(cx);
            match crate::db::primary::reports_read_only(&connection) {
                true => std::task::Poll::Ready(Some(Err(None))),
                false => polled.map(|m| m.map(|r| r.map_err(Some))),
            }
        });
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.channel().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(Some(e)) => {
                    tracing::warn!(error = %one_line(&e), "LISTEN connection lost");
                    break;
                }
                Err(None) => {
                    tracing::warn!("the LISTEN connection's server is read-only now (fenced, demoted or a standby); reconnecting");
                    break;
                }
            }
        }
    });
    q::listen(&client).await?;
    register(&client, worker).await;
    state.connected.store(true, Ordering::SeqCst);
    if !std::mem::take(first) {
        state.reconnects.fetch_add(1, Ordering::Relaxed);
        tracing::info!("LISTEN connection re-established");
    }
    wakers.wake_all();
    let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + REGISTRATION_TTL / 3, REGISTRATION_TTL / 3);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                if let Err(e) = q::unregister(&client, worker).await {
                    tracing::debug!(error = %one_line(&e), "could not delete this daemon's et_listeners row (it expires by itself)");
                }
                break;
            }
            _ = refresh.tick() => register(&client, worker).await,
            channel = rx.recv() => match channel {
                Some(channel) => wakers.wake(&channel),
                None => break, // the connection ended
            },
        }
    }
    driver.abort();
    Ok(())
}
