//! The overview: per tenant and session, messages by state (from the counters the message
//! triggers keep, never a count over et_messages), the last hour's sends and failures as a
//! chart, and queue health (oldest due message, scheduled, dead letters, expired leases, open
//! breakers, daemons listening, this daemon's LISTEN connection).

use super::page::{self, capped, count};
use super::session::{conn, failed, Console, Page};
use crate::db::apikeys::Scope;
use crate::db::console::{self as db, StateCount};
use crate::domain::vocab::{Direction, Status};
use crate::http::AppState;
use axum::extract::State;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use std::sync::atomic::Ordering;

/// The outbound states the overview has a column for, in lifecycle order.
const OUTBOUND: [Status; 8] = [
    Status::PendingApproval,
    Status::Queued,
    Status::Sending,
    Status::Sent,
    Status::Failed,
    Status::Suppressed,
    Status::Rejected,
    Status::Cancelled,
];

/// `GET /console`.
pub async fn show(State(state): State<AppState>, c: Console) -> Page {
    c.require(&state, Scope::Read).await?;
    let client = conn(&state).await?;
    let tenant = c.tenant.as_deref();
    let counts = db::state_counts(&client, tenant).await.map_err(failed)?;
    let hour = db::last_hour(&client, tenant).await.map_err(failed)?;
    let health = db::health(&client, tenant).await.map_err(failed)?;
    let listening = state.listener.connected.load(Ordering::Relaxed) || state.listener.poll_only.load(Ordering::Relaxed);
    let body = html! {
        section.cards {
            (card("Oldest due", &page::age(health.oldest_ready_secs), "how long the oldest message ready to send has waited"))
            (card("Scheduled", &count(health.scheduled), "queued for later (scheduled_at or a retry's backoff)"))
            a.card-link href="/console/dead-letters" { (card("Dead letters", &capped(health.dead_letters), "failed for good; retry them from the list")) }
            (card("Expired leases", &count(health.expired_leases), "sends whose daemon went quiet; the rescuer requeues them"))
            (card("Open breakers", &count(health.open_breakers.len() as i64), "sessions whose circuit breaker is not closed"))
            (card("Daemons", &count(health.daemons), "daemons listening for work"))
            (card("This daemon's listener", if listening { "connected" } else { "down" }, "the LISTEN connection that wakes the workers"))
        }
        @if !health.open_breakers.is_empty() {
            p.error { "Breakers not closed: "
                @for (t, s, st) in &health.open_breakers { span.breaker { (t) " session " (s) ": " (st) } " " }
            }
        }
        section {
            h2 { "Last hour" }
            (chart(&hour))
        }
        section {
            h2 { "Messages by state" }
            div #live-counts sse-swap="counts" { (super::live::counts_line(&totals(&counts))) }
            (table(&counts, c.tenant.is_none()))
        }
    };
    Ok(page::page(&c, "", "Overview", body))
}

fn card(label: &str, value: &str, hint: &str) -> Markup {
    html! {
        div.card title=(hint) {
            div.value { (value) }
            div.label { (label) }
        }
    }
}

/// Totals by status over every row of `counts`.
fn totals(counts: &[StateCount]) -> Vec<(Status, i64)> {
    let mut out: Vec<(Status, i64)> = Vec::new();
    for c in counts {
        match out.iter_mut().find(|(s, _)| *s == c.status) {
            Some((_, n)) => *n += c.count,
            None => out.push((c.status, c.count)),
        }
    }
    out.sort_by_key(|(s, _)| Status::ALL.iter().position(|x| x == s));
    out
}

/// One row per (tenant, session): its outbound states, then inbound received in all.
fn table(counts: &[StateCount], show_tenant: bool) -> Markup {
    let mut rows: Vec<(&str, i64, &str, String)> = Vec::new();
    for c in counts {
        if !rows.iter().any(|(t, s, _, _)| *t == c.tenant_id && *s == c.session_id) {
            rows.push((&c.tenant_id, c.session_id, &c.session_name, format!("{} / {}", c.channel.as_str(), c.provider.as_str())));
        }
    }
    if rows.is_empty() {
        return page::empty(
            "No messages yet.",
            html! { "Insert a row into et_messages, or POST /v1/messages with an API key; its state shows here within a second." },
        );
    }
    let n = |t: &str, s: i64, st: Status| -> i64 {
        counts.iter().filter(|c| c.tenant_id == t && c.session_id == s && c.status == st).map(|c| c.count).sum()
    };
    let inbound = |t: &str, s: i64| -> i64 {
        counts.iter().filter(|c| c.tenant_id == t && c.session_id == s && c.direction == Direction::Inbound).map(|c| c.count).sum()
    };
    html! {
        table.counts {
            thead { tr {
                @if show_tenant { th { "Tenant" } }
                th { "Session" } th { "Channel" }
                @for s in OUTBOUND { th.num { (s.as_str().replace('_', " ")) } }
                th.num { "inbound" }
            } }
            tbody {
                @for (t, s, name, channel) in &rows {
                    tr {
                        @if show_tenant { td { (t) } }
                        td { (name) " " span.muted { "#" (s) } }
                        td { (channel) }
                        @for st in OUTBOUND {
                            @let v = n(t, *s, st);
                            td.num {
                                @if v == 0 { span.muted { "0" } }
                                @else if show_tenant { (count(v)) }
                                @else { a href={ "/console/messages?status=" (st.as_str()) "&session=" (s) } { (count(v)) } }
                            }
                        }
                        td.num { (count(inbound(t, *s))) }
                    }
                }
            }
        }
    }
}

/// Sent (bars) and failed (red bars on top) per minute, as inline SVG, with the error rate.
fn chart(hour: &[(DateTime<Utc>, i64, i64)]) -> Markup {
    let (sent, failed): (i64, i64) = hour.iter().fold((0, 0), |(s, f), (_, a, b)| (s + a, f + b));
    let top = hour.iter().map(|(_, s, f)| s + f).max().unwrap_or(0).max(1) as f64;
    let (w, h, bar) = (600.0, 120.0, 10.0);
    let rate = if sent + failed > 0 { 100.0 * failed as f64 / (sent + failed) as f64 } else { 0.0 };
    html! {
        p {
            strong { (count(sent)) } " sent, " strong { (count(failed)) } " failed in the last hour"
            " (error rate " (format!("{rate:.1}")) "%, " (format!("{:.1}", sent as f64 / 60.0)) " sends a minute)"
        }
        svg.chart viewBox={ "0 0 " (w) " " (h + 14.0) } role="img" aria-label="sent and failed per minute, last hour" {
            @for (i, (minute, s, f)) in hour.iter().enumerate() {
                @let x = i as f64 * bar;
                @let hs = h * (*s as f64) / top;
                @let hf = h * (*f as f64) / top;
                g {
                    title { (minute.format("%H:%M")) ": " (s) " sent, " (f) " failed" }
                    rect.sent x=(x) y=(h - hs) width=(bar - 1.0) height=(hs) {}
                    rect.failed x=(x) y=(h - hs - hf) width=(bar - 1.0) height=(hf) {}
                }
            }
            @if let (Some(first), Some(last)) = (hour.first(), hour.last()) {
                text x="0" y=(h + 12.0) { (first.0.format("%H:%M")) }
                text x=(w - 30.0) y=(h + 12.0) { (last.0.format("%H:%M")) }
            }
        }
    }
}
