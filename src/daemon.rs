//! Wires the daemon together: migrate, bind the HTTP address, then start its tasks: the LISTEN
//! connection (unless `PGCOURIER_LISTEN=off`), the outbound rescuer, the statistics keeper, the
//! maintenance task (attachment retention), the HTTP surface, the inbound worker, the insights
//! worker, the status webhook worker and the outbound dispatcher; all stopped by one
//! cancellation token (soft stop: no new claims; in-flight work finishes up to the shutdown
//! timeout, its leases renewed meanwhile).
//!
//! Which tasks run depends on the role (`PGCOURIER_ROLE`); many daemons of any roles may share
//! one database. Each task, and why it is correct on many nodes:
//!
//! | task | `all` | `worker` | `web` | with many daemons |
//! | --- | --- | --- | --- | --- |
//! | HTTP: API, provider webhooks, console | yes | no | yes | stateless over the database (console sessions are rows) |
//! | HTTP: /health, /ready, /metrics | yes | yes | yes | per process |
//! | LISTEN connection | yes | yes | no | per process: it wakes this daemon's workers (a web node has none) |
//! | outbound dispatcher, inbound worker, insights worker, webhook worker | yes | yes | no | safe everywhere: claims with `FOR UPDATE SKIP LOCKED` and leases, outcomes fenced on the lease |
//! | outbound rescuer | yes | yes | no | safe everywhere: one `UPDATE` of expired leases whose rows it locks (a row is rescued once; the attempt is fenced) |
//! | leader election ([`crate::leader`]) | yes | yes | no | one session-level advisory lock |
//! | maintenance (retention, event partitions, console upkeep) | leader | leader | no | leader-elected; retention batches also take a transaction-level lock |
//! | statistics keeper (ANALYZE when autovacuum is off) | leader | leader | no | leader-elected (ANALYZE twice is only wasted work) |
//!
//! Follow-ups are due dates in `et_thread_insights`, written by the insights worker under its
//! thread claims; partition upkeep does not exist yet (nothing is partitioned).

use crate::config::Config;
use crate::db;
use crate::outbound::{dispatcher::Dispatcher, rescuer};
use crate::wakeup;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error(transparent)]
    Migrate(#[from] db::migrate::MigrateError),
    #[error("PGCOURIER_LISTEN_URL is not a valid PostgreSQL connection string: {0}")]
    ListenUrl(#[source] tokio_postgres::Error),
    #[error("PGCOURIER_DB_POOLER=transaction: LISTEN needs a session connection, which a transaction pooler does not keep; set PGCOURIER_LISTEN_URL to PostgreSQL itself (or to a session-mode pool), or PGCOURIER_LISTEN=off to find work by polling alone")]
    ListenThroughPooler,
    #[error("the database is behind this binary and PGCOURIER_DB_POOLER=transaction without PGCOURIER_LISTEN_URL leaves no session connection to migrate on: run `pgcourier migrate` against PostgreSQL itself")]
    NotMigrated,
    #[error("cannot check the migrations through the pooler: {0}")]
    Check(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot build the connection pool: {0}")]
    Pool(#[from] deadpool_postgres::BuildError),
    #[error("cannot listen on {addr} for the HTTP surface ({source}); set PGCOURIER_HTTP_ADDR to a free address, or to off")]
    Http {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What a running daemon exposes to its caller (health checks, tests).
#[derive(Clone, Default)]
pub struct Handles {
    pub listener: Arc<wakeup::ListenerState>,
    /// The HTTP surface's bound address, once it listens.
    pub http_addr: Arc<std::sync::OnceLock<std::net::SocketAddr>>,
    /// Whether this daemon leads the periodic work now.
    pub leader: Arc<crate::leader::LeaderState>,
}

/// Run the daemon against `database` until `shutdown` is cancelled.
pub async fn run(config: Config, database: tokio_postgres::Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    run_with(config, database, shutdown, Handles::default()).await
}

/// [`run`], reporting into `handles`.
pub async fn run_with(
    config: Config,
    database: tokio_postgres::Config,
    shutdown: CancellationToken,
    handles: Handles,
) -> Result<(), DaemonError> {
    // The session connections (LISTEN, the leader lock, migrations): PGCOURIER_LISTEN_URL, else
    // DATABASE_URL unless that is a transaction pooler (then there are none: poll-only mode).
    let session: Option<tokio_postgres::Config> = match &config.listen_url {
        Some(url) => Some(url.parse().map_err(DaemonError::ListenUrl)?),
        None if !config.db_pooler => Some(database.clone()),
        None => None,
    };
    if session.is_none() && config.listen && config.role.works() {
        return Err(DaemonError::ListenThroughPooler);
    }
    if let Some(session) = &session {
        let mut client = db::connect(session).await.map_err(DaemonError::Connect)?;
        db::migrate::migrate(&mut client).await?;
    }
    // bound before any work starts: a taken port is an error of `run`, not a quiet stop
    let http = match config.http_addr {
        Some(addr) => Some(crate::http::bind(addr).await.map_err(|source| DaemonError::Http { addr, source })?),
        None => None,
    };
    // Events written by this daemon's connections name it as the actor. JIT is off: every
    // statement the daemon runs is short, and the claim's per-session budgets (a LIMIT the
    // planner cannot see) make its cost estimate large enough to be compiled, which costs
    // several times the claim itself (see BENCHMARKS.md). A transaction pooler keeps no session
    // settings (and PgBouncer refuses the `options` startup parameter): there the role's or
    // database's settings apply (ALTER ROLE ... SET jit = off), and events name the database user.
    let options = format!("-c pgcourier.actor={} -c jit=off", config.worker_id.replace(' ', "_"));
    let mut pooled = database.clone();
    if !config.db_pooler {
        pooled.options(&options);
    }
    // what `pgcourier status` lists as this daemon, with its role
    pooled.application_name(format!("pgcourier {} {}", config.role.as_str(), config.worker_id));
    let pool = match config.db_pooler {
        true => db::pool_through_pooler(pooled, config.pool_size)?,
        false => db::pool(pooled, config.pool_size)?,
    };
    if session.is_none() {
        let current = async {
            db::migrate::is_current(&*pool.get().await.map_err(|e| DaemonError::Check(e.into()))?)
                .await
                .map_err(|e| DaemonError::Check(e.into()))
        };
        if !current.await? {
            return Err(DaemonError::NotMigrated);
        }
    }
    // The console's own small pool: every statement a page runs is bounded by the server
    // (statement_timeout), so no page can load the database beyond its request.
    let mut paged = database.clone();
    let console_pool = match config.db_pooler {
        true => db::pool_through_pooler(paged, crate::console::POOL_SIZE)?,
        false => {
            paged.options(format!("{options} -c statement_timeout={}", crate::console::STATEMENT_TIMEOUT));
            db::pool(paged, crate::console::POOL_SIZE)?
        }
    };
    tracing::info!(worker = %config.worker_id, role = config.role.as_str(), "pgcourier daemon started");

    let wakers = wakeup::Wakers::default();
    let tasks = TaskTracker::new();
    let role = config.role;
    if !role.works() {
        tracing::info!(worker = %config.worker_id, "role web: serving the HTTP surface only; no claims, no periodic work, no LISTEN");
        handles.listener.poll_only.store(true, std::sync::atomic::Ordering::SeqCst);
    } else if let (true, Some(session)) = (config.listen, &session) {
        tasks.spawn(wakeup::run(
            session.clone(),
            config.worker_id.clone(),
            wakers.clone(),
            handles.listener.clone(),
            Duration::from_secs(30),
            shutdown.clone(),
        ));
    } else {
        tracing::info!(poll_interval = ?config.poll_interval, "PGCOURIER_LISTEN=off: no LISTEN connection; finding work by polling");
        handles.listener.poll_only.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    if role.works() {
        match &session {
            Some(session) => {
                tasks.spawn(crate::leader::run(session.clone(), config.worker_id.clone(), handles.leader.clone(), shutdown.clone()));
            }
            None => {
                tracing::info!(
                    "poll-only behind a transaction pooler: no leader lock; this daemon runs the periodic passes, each safe on many nodes"
                );
                handles.leader.without_election();
            }
        }
        tasks.spawn(rescuer::run(pool.clone(), config.rescue_interval, config.lease, wakers.outbound.clone(), shutdown.clone()));
        tasks.spawn(crate::statistics::run(pool.clone(), Duration::from_secs(1), handles.leader.clone(), shutdown.clone()));
        tasks.spawn(crate::maintenance::run(pool.clone(), config.maintenance_interval, handles.leader.clone(), shutdown.clone()));
    }
    // the HTTP surface failing later stops the daemon, and `run` returns its error
    let http_failed = Arc::new(std::sync::Mutex::new(None));
    if let (Some(listener), Some(addr)) = (http, config.http_addr) {
        let state = crate::http::AppState {
            pool: pool.clone(),
            config: config.clone(),
            listener: handles.listener.clone(),
            leader: handles.leader.clone(),
            shutdown: shutdown.clone(),
        };
        let (bound, stop, failed) = (handles.http_addr.clone(), shutdown.clone(), http_failed.clone());
        tasks.spawn(async move {
            let pages = match config.console && role.serves() {
                true => crate::console::routes(crate::http::AppState { pool: console_pool, ..state.clone() }),
                false => axum::Router::new(),
            };
            if let Err(source) = crate::http::serve_on(listener, state, pages, bound, stop.clone()).await {
                tracing::error!(error = %source, %addr, "the HTTP surface stopped; stopping");
                *failed.lock().expect("not poisoned") = Some(DaemonError::Http { addr, source });
                stop.cancel();
            }
        });
    }
    if role.works() {
        tasks.spawn(crate::inbound::worker::run(pool.clone(), config.clone(), wakers.inbound.clone(), shutdown.clone()));
        tasks.spawn(crate::insights::run(pool.clone(), config.clone(), shutdown.clone()));
        tasks.spawn(crate::webhooks::run(pool.clone(), config.clone(), wakers.webhooks.clone(), shutdown.clone()));
        tasks.spawn(Dispatcher::new(pool.clone(), config, wakers.outbound.clone()).run(shutdown.clone()));
    }
    tasks.close();
    tasks.wait().await;
    pool.close();
    tracing::info!("pgcourier daemon stopped");
    let failed = http_failed.lock().expect("not poisoned").take();
    failed.map_or(Ok(()), Err)
}
