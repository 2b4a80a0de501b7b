//! The statements of the LISTEN connection ([`crate::wakeup`] runs it): which channels it
//! listens on, and this daemon's row in `et_listeners` (the message triggers notify only while
//! some daemon listens there, so a database nobody listens to pays no NOTIFY).

use std::time::Duration;

/// The channel of new outbound work (queue rows ready now).
pub const OUTBOUND: &str = "et_outbound";
/// The channel of new inbound messages.
pub const INBOUND: &str = "et_inbound";
/// The channel of new status webhook deliveries.
pub const WEBHOOKS: &str = "et_webhooks";
/// Every channel the triggers notify on.
pub const CHANNELS: &[&str] = &[OUTBOUND, INBOUND, WEBHOOKS];

/// How long this daemon's `et_listeners` row lasts unless refreshed: a daemon that dies makes
/// inserts stop notifying after this.
pub const REGISTRATION_TTL: Duration = Duration::from_secs(30);

const REGISTER: &str = "INSERT INTO et_listeners (worker_id, listening_until) VALUES ($1, now() + make_interval(secs => $2))
                        ON CONFLICT (worker_id) DO UPDATE SET listening_until = excluded.listening_until";

/// `LISTEN` on every channel of [`CHANNELS`].
pub async fn listen(client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    let listen: String = CHANNELS.iter().map(|c| format!("LISTEN {c};")).collect();
    client.batch_execute(&listen).await
}

/// Write or refresh `worker`'s row for another [`REGISTRATION_TTL`].
pub async fn register(client: &tokio_postgres::Client, worker: &str) -> Result<u64, tokio_postgres::Error> {
    client.execute(REGISTER, &[&worker, &REGISTRATION_TTL.as_secs_f64()]).await
}

/// Delete `worker`'s row (on shutdown; a dead daemon's row expires by itself).
pub async fn unregister(client: &tokio_postgres::Client, worker: &str) -> Result<u64, tokio_postgres::Error> {
    client.execute("DELETE FROM et_listeners WHERE worker_id = $1", &[&worker]).await
}
