//! `pgcourier status`: the queue health table an operator reads first.

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
