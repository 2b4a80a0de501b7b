//! The conversation list: a tenant's threads, newest activity first, each with who handles it
//! (the AI or a human), its last activity and its CRM insight (summary, label, next step,
//! follow-up date). Filtered by handling and session in the URL, in keyset pages.

use super::page;
use super::session::{conn, failed, Console, Page};
use crate::db::apikeys::Scope;
use crate::db::console_threads::{self as db, ThreadFilter, ThreadListRow};
use crate::db::tenants;
use crate::domain::vocab::Handling;
use crate::http::api::messages::{cursor, parse_cursor};
use crate::http::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use maud::{html, Markup};
use serde::{Deserialize, Serialize};

/// Threads per page.
pub const PAGE: i64 = 50;

/// The page's filter, as its query parameters.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    handling: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
}

impl Filter {
    /// The database filter, or which parameter is wrong and why.
    fn parse(&self, limit: i64) -> Result<ThreadFilter, String> {
        let handling = match self.handling.as_deref().filter(|h| !h.is_empty()) {
            Some(h) => Some(h.parse::<Handling>().map_err(|_| format!("handling: {h:?} is not ai or human"))?),
            None => None,
        };
        let session = match self.session.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => Some(s.parse::<i64>().map_err(|_| format!("session: {s:?} is not a session id"))?),
            None => None,
        };
        let after = match self.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(parse_cursor(c).ok_or("cursor: not a cursor from this page")?),
            None => None,
        };
        Ok(ThreadFilter { handling, session, after, limit })
    }
}

/// `GET /console/conversations`.
pub async fn list(State(state): State<AppState>, c: Console, Query(f): Query<Filter>) -> Page {
    let tenant = c.tenant()?.to_owned();
    c.require(&state, Scope::Read).await?;
    let filter = match f.parse(PAGE + 1) {
        Ok(x) => x,
        Err(why) => return Err(page::error(StatusCode::BAD_REQUEST, &why)),
    };
    let mut client = conn(&state).await?;
    let read = async {
        let tx = client.transaction().await?;
        let rows = db::list_threads(&tx, &tenant, &filter).await?;
        let sessions = tenants::list_sessions(&*tx, &tenant).await?;
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>((rows, sessions))
    };
    let (rows, sessions) = read.await.map_err(failed)?;
    let (rows, next) = crate::http::api::input::page(rows, PAGE, |t: &ThreadListRow| cursor(t.last_activity, t.id));
    let only = Filter { cursor: None, ..f.clone() };
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(&serde_urlencoded::to_string(&only).unwrap_or_default()).unwrap_or_default();
    let chosen = |v: &Option<String>, want: &str| v.as_deref().map(str::trim) == Some(want);
    let body = html! {
        form.filters method="get" action="/console/conversations" {
            select name="handling" aria-label="handling" {
                option value="" { "any handling" }
                @for h in Handling::ALL { option value=(h.as_str()) selected[chosen(&only.handling, h.as_str())] { (h.as_str()) } }
            }
            select name="session" aria-label="session" {
                option value="" { "any session" }
                @for s in &sessions {
                    option value=(s.id) selected[chosen(&only.session, &s.id.to_string())] {
                        (s.id) " · " (s.channel) " · " (if s.name.is_empty() { &s.address } else { &s.name })
                    }
                }
            }
            button type="submit" { "Filter" }
            a href="/console/conversations" { "Clear" }
        }
        (table(&rows))
        (page::next_link("/console/conversations", &query, next))
    };
    Ok(page::page(&c, "/conversations", "Conversations", body))
}

fn table(rows: &[ThreadListRow]) -> Markup {
    if rows.is_empty() {
        return page::empty(
            "No conversations match.",
            html! { "A conversation starts with the first message to or from a contact on a session. Clear the filter, or send one." },
        );
    }
    html! {
        table.threads {
            thead { tr { th { "Last activity" } th { "Contact" } th { "Subject" } th { "Session" } th { "Handling" } th.num { "Messages" } th { "Insight" } th { "Follow-up" } } }
            tbody {
                @for t in rows {
                    tr {
                        td { a href={ "/console/conversations/" (t.id) } { (page::time(t.last_activity)) } }
                        td { a href={ "/console/conversations/" (t.id) } { (t.contact) } }
                        td { (t.subject.as_deref().unwrap_or("")) }
                        td { (t.channel.as_str()) " · " (t.session) }
                        td { (handling_badge(t.handling)) @if let Some(by) = &t.handling_by { " " span.muted { (by) } } }
                        td.num { (page::count(i64::from(t.message_count))) }
                        td {
                            @if let Some(l) = &t.label { span.badge { (l) } " " }
                            (t.summary.as_deref().unwrap_or(""))
                            @if let Some(n) = &t.next_step { br; span.muted { "Next: " (n) } }
                        }
                        td { (page::opt_time(t.follow_up_at)) }
                    }
                }
            }
        }
    }
}

/// `ai` or `human`, as a badge.
pub fn handling_badge(h: Handling) -> Markup {
    html! { span class={ "badge h-" (h.as_str()) } { (h.as_str()) } }
}
