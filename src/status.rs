//! `pgcourier status`: the queue health table an operator reads first, and the daemons connected
//! (role, worker id, leader); `pgcourier health`: the container's health check.

use crate::db::health;
use std::fmt::Write;

/// The report as text: queue per tenant/channel/state, message counts, newest dead letters.
pub async fn render(client: &tokio_postgres::Client) -> Result<String, tokio_postgres::Error> {
    let mut out = String::new();
    let queue = health::queue_health(client).await?;
    let _ = writeln!(out, "QUEUE");
    let _ = writeln!(
        out,
        "{:<16} {:<9} {:<14} {:<7} {:>8} {:>8} {:>12} {:>8}",
        "tenant", "channel", "provider", "state", "depth", "due", "oldest_ready", "expired"
    );
    if queue.is_empty() {
        let _ = writeln!(out, "(empty)");
    }
    for q in &queue {
        let age = q.oldest_ready_secs.map(|s| format!("{s:.1}s")).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<16} {:<9} {:<14} {:<7} {:>8} {:>8} {:>12} {:>8}",
            q.tenant_id, q.channel, q.provider, q.state, q.depth, q.due, age, q.expired_leases
        );
    }
    let _ = writeln!(out, "\nMESSAGES");
    for (direction, status, n) in health::status_counts(client).await? {
        let _ = writeln!(out, "{direction:<9} {status:<24} {n:>10}");
    }
    let _ = writeln!(out, "\nCIRCUIT BREAKERS (not closed)");
    let breakers = health::open_breakers(client).await?;
    if breakers.is_empty() {
        let _ = writeln!(out, "(all closed)");
    }
    for (tenant, session, state, rate, since, by) in breakers {
        let rate = rate.map(|r| format!("{:.0}%", r * 100.0)).unwrap_or_default();
        let _ = writeln!(out, "{tenant:<16} session {session:<6} {state:<10} failures {rate:>5} since {since} ({by})");
    }
    let _ = writeln!(out, "\nDAEMONS (connected now: pool connections by role and worker id; the leader runs the periodic work)");
    let daemons = crate::db::leader::daemons(client).await?;
    if daemons.is_empty() {
        let _ = writeln!(out, "(none)");
    }
    for (name, connections, leads) in daemons {
        let name = name.strip_prefix("pgcourier ").unwrap_or(&name);
        let _ = writeln!(out, "{name:<56} {connections:>4} connection(s){}", if leads { "  LEADER" } else { "" });
    }
    let dead = health::dead_letters(client, 10).await?;
    let _ = writeln!(out, "\nDEAD LETTERS (newest 10; retry with SELECT et_retry(id, 'you'))");
    if dead.is_empty() {
        let _ = writeln!(out, "(none)");
    }
    for (id, tenant, recipients, error) in dead {
        let _ = writeln!(out, "{id:>8} {tenant:<16} {:<32} {}", recipients.join(","), error.unwrap_or_default());
    }
    Ok(out)
}

/// `pgcourier health`: ask the daemon listening on `addr` (an unspecified address, as a
/// container's 0.0.0.0, is asked on loopback) whether it is ready. `Ok` with its status line when
/// `/ready` answers 200; an error naming what failed otherwise (not listening, not ready and
/// which checks fail, no answer within `timeout`).
pub async fn health(addr: std::net::SocketAddr, timeout: std::time::Duration) -> anyhow::Result<String> {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    let url = format!("http://{addr}/ready");
    let http = reqwest::Client::builder().timeout(timeout).build()?;
    let response = http.get(&url).send().await.map_err(|e| {
        anyhow::anyhow!("{url} did not answer ({}): is the daemon running with PGCOURIER_HTTP_ADDR={addr}?", crate::telemetry::one_line(&e))
    })?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let role = body.get("role").and_then(|r| r.as_str()).map(|r| format!(" (role {r})")).unwrap_or_default();
    if status.is_success() {
        return Ok(format!("ready{role}: {url}"));
    }
    let failing: Vec<String> = body
        .get("checks")
        .and_then(|c| c.as_object())
        .map(|checks| {
            checks
                .iter()
                .filter(|(_, c)| c.get("ok") == Some(&serde_json::Value::Bool(false)))
                .map(|(name, c)| format!("{name}: {}", c.get("error").and_then(|e| e.as_str()).unwrap_or("failing")))
                .collect()
        })
        .unwrap_or_default();
    anyhow::bail!(
        "not ready{role} ({url} answered {status}): {}",
        if failing.is_empty() { "no checks reported".into() } else { failing.join("; ") }
    )
}
