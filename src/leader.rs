//! The leader of the periodic work: one daemon at a time runs the maintenance pass (retention,
//! event partitions, console upkeep) and the statistics keeper; the others stand by and take over when
//! it stops (it gives the lock up) or dies (its connection closes and PostgreSQL releases the
//! lock). Only `all` and `worker` daemons stand for election; `web` daemons never lead.
//!
//! Leadership is a session-level advisory lock ([`crate::db::leader::LEADER_LOCK`]) held on a
//! connection of its own, outside the pool (named `pgcourier leader <worker id>` in
//! `pg_stat_activity`), checked every [`ELECTION_INTERVAL`]: the leader confirms it still holds
//! the lock (a lost connection is noticed within the interval), the others try to take it.
//! A leader that loses its connection mid-pass may overlap the next leader's first pass by up to
//! one interval: every periodic pass is correct run twice at once (retention batches take their
//! own transaction-level lock; analyses and console upkeep are idempotent), the lock only keeps
//! N daemons from doing the same work N times.
//!
//! Failover: the election's connection is closed by its driver as soon as its server reports
//! itself read-only ([`crate::db::primary`]), which gives the lock up there; the next round
//! connects through the (multi-host, `target_session_attrs=read-write`) URL to the new primary
//! and takes the lock on it. A server that is gone closes the connection by itself.

use crate::db::leader as q;
use crate::telemetry::one_line;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the leader confirms its lock and the others try to take it.
pub const ELECTION_INTERVAL: Duration = Duration::from_secs(1);

/// Whether this daemon leads now (read by the periodic tasks and tests).
pub struct LeaderState {
    /// A watch, not a flag: the maintenance task waits on it to run its first pass the moment
    /// leadership is won instead of at its next interval (minutes away).
    leads: tokio::sync::watch::Sender<bool>,
}

impl Default for LeaderState {
    fn default() -> LeaderState {
        LeaderState { leads: tokio::sync::watch::Sender::new(false) }
    }
}

impl LeaderState {
    pub fn leads(&self) -> bool {
        *self.leads.borrow()
    }

    /// Wait until this daemon leads: true, or false once `shutdown` is cancelled first.
    pub async fn until_leads(&self, shutdown: &CancellationToken) -> bool {
        let mut leads = self.leads.subscribe();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => false,
            // the sender lives as long as `self`: wait_for only fails if it is dropped
            r = leads.wait_for(|l| *l) => r.is_ok(),
        }
    }

    /// No election possible (poll-only mode behind a transaction pooler: no session connection
    /// to hold a lock on): this daemon runs the periodic passes, as every other does.
    pub fn without_election(&self) {
        self.leads.send_replace(true);
    }

    fn set(&self, leads: bool, worker: &str) {
        if self.leads.send_replace(leads) != leads {
            match leads {
                true => tracing::info!(worker, "this daemon leads the periodic work"),
                false => tracing::info!(worker, "this daemon no longer leads the periodic work"),
            }
        }
    }
}

/// Stand for election until `shutdown`; then resign.
pub async fn run(config: tokio_postgres::Config, worker: String, state: Arc<LeaderState>, shutdown: CancellationToken) {
    let mut config = config;
    config.application_name(format!("pgcourier leader {worker}"));
    while !shutdown.is_cancelled() {
        if let Err(e) = stand(&config, &worker, &state, &shutdown).await {
            tracing::debug!(error = %one_line(&e), "leader election connection failed; trying again");
        }
        state.set(false, &worker);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(ELECTION_INTERVAL) => {}
        }
    }
}

async fn stand(
    config: &tokio_postgres::Config,
    worker: &str,
    state: &LeaderState,
    shutdown: &CancellationToken,
) -> Result<(), tokio_postgres::Error> {
    // closed by its driver when the server turns read-only (a failover): the lock is given up
    // with it, and the next round connects to the new primary
    let client = crate::db::primary::connect(config, "leader").await?;
    let mut tick = crate::every::Every::new(ELECTION_INTERVAL);
    while tick.next(shutdown).await {
        let leads = match state.leads() {
            true => q::holds(&client).await?,
            false => q::try_lead(&client).await?,
        };
        state.set(leads, worker);
    }
    if state.leads() {
        state.set(false, worker);
        q::resign(&client).await?;
    }
    Ok(())
}
