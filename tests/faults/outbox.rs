//! What the cases put in and wait for: tenants, SMTP sessions on a sink, outbound rows queued in
//! one statement, and bounded waits that return false on timeout (so a case can still count and
//! print its figures before it fails).

use crate::smtp_sink::SmtpSink;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// Tenant `tenant` and an SMTP session `noreply@{tenant}.example` on `sink` (`extra` merged into
/// the session config, e.g. `concurrency`, `pool_size`); returns the session id.
pub async fn smtp_session(client: &Client, tenant: &str, sink: &SmtpSink, extra: serde_json::Value) -> i64 {
    client.execute("INSERT INTO et_tenants (id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", &[&tenant]).await.expect("tenant");
    let mut config = serde_json::json!({ "host": "127.0.0.1", "port": sink.addr.port(), "tls": "none", "timeout_ms": 10000,
                                         "retry_base_ms": 20, "retry_cap_ms": 200 });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let address = format!("noreply@{tenant}.example");
    client
        .query_one(
            "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config)
             VALUES ($1, 'email', 'smtp', $2, $3) RETURNING id",
            &[&tenant, &address, &config],
        )
        .await
        .expect("SMTP session")
        .get(0)
}

/// `n` messages in one statement from `tenant` on `session`, to `{prefix}1@example.com` ... `{prefix}{n}@example.com`.
pub async fn queue(client: &Client, tenant: &str, session: i64, prefix: &str, n: i32) {
    client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
             SELECT $1, $2, 'outbound', ARRAY[$3::text || i || '@example.com'], 'Hello ' || i, 'Body ' || i
               FROM generate_series(1, $4::int) i",
            &[&tenant, &session, &prefix, &n],
        )
        .await
        .expect("queue messages");
}

/// Poll `sql` (one boolean) until true or `timeout`; false on timeout. Query errors count as
/// "not yet" (the database may be restarting), so `client` should be a live one.
pub async fn wait(client: &Client, sql: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(row) = client.query_one(sql, &[]).await {
            if row.get::<_, bool>(0) {
                return true;
            }
        }
        if Instant::now() >= deadline {
            eprintln!("[faults] timed out after {timeout:?} waiting for: {sql}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every outbound message in `scope` (a condition on `m`) has a final status: not queued, not
/// sending, not waiting for approval.
pub async fn settled(client: &Client, scope: &str, timeout: Duration) -> bool {
    let sql = format!(
        "SELECT count(*) = 0 FROM et_messages m WHERE m.direction = 'outbound' AND ({scope})
            AND m.delivery_status IN ('queued', 'sending', 'pending_approval')"
    );
    wait(client, &sql, timeout).await
}

/// The sink received at least `n` messages, within `timeout`.
pub async fn sink_reaches(sink: &SmtpSink, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while sink.count() < n {
        if Instant::now() >= deadline {
            eprintln!("[faults] the sink has {} of {n} messages after {timeout:?}", sink.count());
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Wait until the sink received nothing new for `quiet` (late copies of abandoned sends land
/// first), at most `limit`.
pub async fn sink_quiet(sink: &SmtpSink, quiet: Duration, limit: Duration) {
    let deadline = Instant::now() + limit;
    let (mut seen, mut since) = (sink.count(), Instant::now());
    while since.elapsed() < quiet && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if sink.count() != seen {
            (seen, since) = (sink.count(), Instant::now());
        }
    }
}

/// A connection to `url`, retried until `timeout` (the server may be coming back).
pub async fn connect(url: &str, timeout: Duration) -> Client {
    let deadline = Instant::now() + timeout;
    loop {
        match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                return client;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot connect to {url} within {timeout:?}: {e}"),
        }
    }
}
