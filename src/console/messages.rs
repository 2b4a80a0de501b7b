//! The message list: state tabs, a search box and filters kept in the URL, newest first with
//! keyset paging. The filters are the API's own (`GET /v1/messages`, parsed by the same code),
//! plus sender, subject and session; a public id or `#id` in the search box opens that message.
//! The first page refreshes itself when the live stream says something changed.

use super::page::{self, count};
use super::session::{conn, failed, Console, Page};
use crate::db::api::{self as db, MessageRef, MessageRow};
use crate::db::apikeys::Scope;
use crate::domain::vocab::{Channel, Status};
use crate::http::api::messages::{cursor, filter, LIST};
use crate::http::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};

/// Rows per page.
pub const PAGE: i64 = 50;

/// The tabs: (label, statuses as the `status` parameter).
const TABS: [(&str, &str); 9] = [
    ("All", ""),
    ("Pending approval", "pending_approval"),
    ("Queued", "queued"),
    ("Sending", "sending"),
    ("Sent", "sent"),
    ("Failed", "failed"),
    ("Suppressed", "suppressed"),
    ("Rejected / cancelled", "rejected,cancelled"),
    ("Inbound", "received,inbound_processing,inbound_ai_replied,inbound_human_takeover,inbound_follow_up,inbound_no_action,inbound_error"),
];

/// The console's own parameters, beside the API's.
const OWN: [&str; 6] = ["q", "sender", "subject", "session", "notice", "error"];

/// The search the page was asked for.
struct Search {
    /// Every non-empty parameter as given (links keep them).
    given: Vec<(String, String)>,
    filter: db::ListFilter,
}

fn search(params: Vec<(String, String)>) -> Result<Result<Search, Response>, String> {
    let given: Vec<(String, String)> = params.into_iter().filter(|(_, v)| !v.trim().is_empty()).collect();
    let get = |k: &str| given.iter().find(|(g, _)| g == k).map(|(_, v)| v.trim().to_owned());
    // the search box: a message's public id or #id opens it; an address searches recipients
    if let Some(q) = get("q") {
        let id = q.strip_prefix('#').unwrap_or(&q);
        if let Some(m) = MessageRef::parse(id) {
            let target = match m {
                MessageRef::Public(u) => u.to_string(),
                MessageRef::Id(i) => i.to_string(),
            };
            return Ok(Err(Redirect::to(&format!("/console/messages/{target}")).into_response()));
        }
    }
    let api: Vec<(String, String)> = given
        .iter()
        .filter(|(k, _)| !OWN.contains(&k.as_str()) && k != "limit" && k != "offset")
        .map(|(k, v)| (k.clone(), v.trim().to_owned()))
        .collect();
    let mut f = filter(api, LIST).map_err(|e| e.message)?;
    if let Some(q) = get("q") {
        if f.recipient.is_some() {
            return Err("search: give either the search box or a recipient".into());
        }
        f.recipient = Some(q);
    }
    f.sender = get("sender");
    f.subject = get("subject");
    f.session = match get("session") {
        Some(s) => Some(s.parse().map_err(|_| format!("session: {s:?} is not a session id (a number)"))?),
        None => None,
    };
    f.limit = PAGE + 1;
    Ok(Ok(Search { given, filter: f }))
}

/// `GET /console/messages`.
pub async fn list(State(state): State<AppState>, c: Console, Query(params): Query<Vec<(String, String)>>) -> Page {
    let tenant = c.tenant()?.to_owned();
    c.require(&state, Scope::Read).await?;
    let notice = params.iter().find(|(k, _)| k == "notice").map(|(_, v)| v.clone());
    let s = match search(params.clone()) {
        Ok(Ok(s)) => s,
        Ok(Err(redirect)) => return Ok(redirect),
        Err(why) => {
            let body = html! { (page::flash(None, Some(&why))) (form(&params)) };
            let mut r = page::page(&c, "/messages", "Messages", body);
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return Err(r);
        }
    };
    let client = conn(&state).await?;
    let rows = db::list_messages(&client, &tenant, &s.filter).await.map_err(failed)?;
    let (rows, next) = crate::http::api::input::page(rows, PAGE, |m: &MessageRow| cursor(m.created_at, m.id));
    let current = s.given.iter().find(|(k, _)| k == "status").map(|(_, v)| v.as_str()).unwrap_or("");
    let first_page = s.filter.after.is_none();
    let self_url = format!("/console/messages?{}", serde_urlencoded::to_string(&s.given).unwrap_or_default());
    let body = html! {
        (page::flash(notice.as_deref(), None))
        nav.tabs {
            @for (label, status) in TABS {
                @let q: Vec<(String, String)> = s.given.iter().filter(|(k, _)| k != "status" && k != "cursor" && k != "notice").cloned()
                    .chain((!status.is_empty()).then(|| ("status".to_owned(), status.to_owned()))).collect();
                a href={ "/console/messages?" (serde_urlencoded::to_string(&q).unwrap_or_default()) }
                  class=[(status == current).then_some("active")] { (label) }
            }
        }
        (form(&s.given))
        // the first page follows the live stream; older pages stay put while one reads them
        @if first_page {
            div #rows hx-get=(self_url) hx-select="#rows" hx-swap="outerHTML" hx-trigger="sse:changed" { (table(&rows)) }
        } @else {
            div #rows { (table(&rows)) }
        }
        (page::next_link("/console/messages", &s.given, next))
    };
    Ok(page::page(&c, "/messages", "Messages", body))
}

/// The filter form (GET: the filters stay in the URL).
fn form(given: &[(String, String)]) -> Markup {
    let v = |k: &str| given.iter().find(|(g, _)| g == k).map(|(_, v)| v.clone()).unwrap_or_default();
    html! {
        form.filters method="get" action="/console/messages" {
            @if !v("status").is_empty() { input type="hidden" name="status" value=(v("status")); }
            input type="search" name="q" value=(v("q")) placeholder="recipient, public id or #id" aria-label="search";
            input name="sender" value=(v("sender")) placeholder="sender contains" aria-label="sender";
            input name="subject" value=(v("subject")) placeholder="subject contains" aria-label="subject";
            select name="channel" aria-label="channel" {
                option value="" { "any channel" }
                @for ch in Channel::ALL { option value=(ch.as_str()) selected[v("channel") == ch.as_str()] { (ch.as_str()) } }
            }
            input name="session" value=(v("session")) placeholder="session id" size="8" aria-label="session";
            input name="threadId" value=(v("threadId")) placeholder="thread id" size="8" aria-label="thread";
            input name="category" value=(v("category")) placeholder="category" size="10" aria-label="category";
            input name="tags" value=(v("tags")) placeholder="tags (a,b)" size="10" aria-label="tags";
            label { "from " input type="date" name="from" value=(v("from")); }
            label { "to " input type="date" name="to" value=(v("to")); }
            button type="submit" { "Search" }
            a href="/console/messages" { "Clear" }
        }
    }
}

/// The rows as a table, or what to do when there are none.
pub fn table(rows: &[MessageRow]) -> Markup {
    if rows.is_empty() {
        return page::empty(
            "No messages match.",
            html! { "Clear a filter, or send one: POST /v1/messages with an API key, or INSERT INTO et_messages in psql." },
        );
    }
    html! {
        table.messages {
            thead { tr { th { "Created" } th { "State" } th { "Channel" } th { "From" } th { "To" } th { "Subject" } th.num { "Attempts" } } }
            tbody {
                @for m in rows {
                    tr {
                        td { a href={ "/console/messages/" (m.public_id) } { (page::time(m.created_at)) } }
                        td { (page::status_badge(m.status)) }
                        td { (m.channel.as_str()) }
                        td { (m.sender.as_deref().unwrap_or("")) }
                        td { (m.recipients.join(", ")) }
                        td { a href={ "/console/messages/" (m.public_id) } { (m.subject.as_deref().unwrap_or("(no subject)")) } }
                        td.num { (count(i64::from(m.attempts))) }
                    }
                }
            }
        }
    }
}

/// Statuses shown on the approvals page's badge and the overview: re-exported for the tabs test.
pub fn tab_statuses() -> Vec<Status> {
    TABS.iter().flat_map(|(_, s)| s.split(',').filter(|s| !s.is_empty())).filter_map(|s| s.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_tab() {
        let shown = tab_statuses();
        for s in Status::ALL {
            assert!(shown.contains(&s), "{s:?} has no tab");
        }
    }
}
