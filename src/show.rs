//! `pgcourier show <id | public id>`: one message and its timeline, as an operator reads it.

use crate::db::show::{self, Shown};
use std::fmt::Write;

/// The report for `key` (a message id or public id), or None when no message has it.
pub async fn render(client: &tokio_postgres::Client, key: &str, tenant: Option<&str>) -> Result<Option<String>, tokio_postgres::Error> {
    let key = key.trim();
    if uuid::Uuid::parse_str(key).is_err() && key.parse::<i64>().is_err() {
        return Ok(None);
    }
    let found = show::find(client, key, tenant).await?;
    if found.is_empty() {
        return Ok(None);
    }
    let mut out = String::new();
    for (i, m) in found.iter().enumerate() {
        if i > 0 {
            let _ = writeln!(out);
        }
        message(&mut out, m);
    }
    Ok(Some(out))
}

fn message(out: &mut String, m: &Shown) {
    let width = m.fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (label, value) in &m.fields {
        // multi-line values (bodies, errors) indented under their label
        let value = value.replace('\n', &format!("\n{:width$}  ", ""));
        let _ = writeln!(out, "{label:<width$}  {value}");
    }
    let _ = writeln!(out, "\nTIMELINE");
    if m.events.is_empty() {
        let _ = writeln!(out, "(no events)");
    }
    for e in &m.events {
        let from = e.from_status.as_deref().unwrap_or("-");
        let detail = if e.detail.as_object().is_some_and(|d| !d.is_empty()) { e.detail.to_string() } else { String::new() };
        let _ = writeln!(out, "{}  {from:>22} → {:<22} {:<28} {detail}", e.at.format("%Y-%m-%d %H:%M:%S%.3f"), e.to_status, e.actor);
    }
}
