//! The LISTEN connection: one dedicated connection outside the pool, reconnected with capped
//! backoff. NOTIFY is only a hint: after every (re)connect every worker is woken to claim as if
//! notified, so nothing is stranded by a notification lost while the connection was down.

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
            "et_outbound" => self.outbound.notify_one(),
            "et_inbound" => self.inbound.notify_one(),
            "et_webhooks" => self.webhooks.notify_one(),
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
}

const CHANNELS: &[&str] = &["et_outbound", "et_inbound", "et_webhooks"];

/// Run until `shutdown`: listen, forward notifications to `wakers`, reconnect on loss.
pub async fn run(
    config: tokio_postgres::Config,
    wakers: Wakers,
    state: Arc<ListenerState>,
    max_backoff: Duration,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    while !shutdown.is_cancelled() {
        match listen_once(&config, &wakers, &state, &shutdown, &mut first).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "LISTEN connection failed"),
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
    wakers: &Wakers,
    state: &ListenerState,
    shutdown: &CancellationToken,
    first: &mut bool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.channel().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection lost");
                    break;
                }
            }
        }
    });
    let listen: String = CHANNELS.iter().map(|c| format!("LISTEN {c};")).collect();
    client.batch_execute(&listen).await?;
    state.connected.store(true, Ordering::SeqCst);
    if !std::mem::take(first) {
        state.reconnects.fetch_add(1, Ordering::Relaxed);
        tracing::info!("LISTEN connection re-established");
    }
    wakers.wake_all();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            channel = rx.recv() => match channel {
                Some(channel) => wakers.wake(&channel),
                None => break, // the connection ended
            },
        }
    }
    driver.abort();
    Ok(())
}
