//! The approvals inbox: messages waiting for an operator (`pending_approval`), oldest at the
//! bottom as everywhere; approve or reject one or a selection, with a reason recorded on each.

use super::page;
use super::session::{conn, failed, Console, Page};
use crate::db::api::{self as db, Action, ListFilter, MessageRef};
use crate::db::apikeys::Scope;
use crate::domain::vocab::Status;
use crate::http::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum_extra::extract::Form;
use maud::html;
use serde::Deserialize;

/// Messages shown at once (approve a page, the next ones follow).
pub const PAGE: i64 = 100;

/// `GET /console/approvals`.
pub async fn list(State(state): State<AppState>, c: Console, Query(n): Query<page::Flash>) -> Page {
    let tenant = c.tenant()?.to_owned();
    c.require(&state, Scope::Read).await?;
    let client = conn(&state).await?;
    let f = ListFilter { statuses: vec![Status::PendingApproval], limit: PAGE, ..ListFilter::default() };
    let rows = db::list_messages(&client, &tenant, &f).await.map_err(failed)?;
    let may = c.can(Action::Approve.scope());
    let body = html! {
        (page::flash(n.notice.as_deref(), n.error.as_deref()))
        // the whole inbox follows the live stream, empty or not; what the operator ticked and
        // typed stays (hx-preserve keeps the elements of the same id across the refresh)
        div #inbox hx-get="/console/approvals" hx-select="#inbox" hx-swap="outerHTML" hx-trigger="sse:changed" {
            @if rows.is_empty() {
                (page::empty("Nothing waits for approval.", html! {
                    "Messages wait here when their session or tenant requires approval (requires_approval), "
                    "or when they are inserted with delivery_status 'pending_approval'." }))
            } @else {
                form method="post" action="/console/approvals" {
                    input type="hidden" name="csrf" value=(c.csrf());
                    table.messages {
                        thead { tr { @if may { th { span.sr { "select" } } } th { "Created" } th { "Channel" } th { "From" } th { "To" } th { "Subject" } } }
                        tbody {
                            @for m in &rows {
                                tr {
                                    @if may { td { input #{ "pick-" (m.public_id) } type="checkbox" name="id" value=(m.public_id) aria-label="select" hx-preserve; } }
                                    td { a href={ "/console/messages/" (m.public_id) } { (page::time(m.created_at)) } }
                                    td { (m.channel.as_str()) }
                                    td { (m.sender.as_deref().unwrap_or("")) }
                                    td { (m.recipients.join(", ")) }
                                    td { a href={ "/console/messages/" (m.public_id) } { (m.subject.as_deref().unwrap_or("(no subject)")) } }
                                }
                            }
                        }
                    }
                    @if may {
                        div.bulk {
                            input #reason name="reason" placeholder="reason (recorded; for a rejection)" aria-label="reason" hx-preserve;
                            button type="submit" name="action" value="approve" { "Approve selected" }
                            button type="submit" name="action" value="reject" { "Reject selected" }
                        }
                    } @else {
                        p.muted { "This key lacks the admin scope: it can see what waits, not decide." }
                    }
                }
            }
        }
    };
    Ok(page::page(&c, "/approvals", "Approvals", body))
}

/// Every field defaults (empty), so that a missing one is refused by the checks that name it
/// (a missing CSRF token is a wrong one: 403), never by the form parser.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Decide {
    csrf: String,
    action: String,
    reason: Option<String>,
    #[serde(default, rename = "id")]
    ids: Vec<String>,
}

/// `POST /console/approvals`: approve or reject the selection, each in its own transaction.
pub async fn decide(State(state): State<AppState>, c: Console, Form(f): Form<Decide>) -> Page {
    c.check(&f.csrf)?;
    let tenant = c.tenant()?.to_owned();
    let action = Action::parse(&f.action)
        .filter(|a| matches!(a, Action::Approve | Action::Reject))
        .ok_or_else(|| page::error(StatusCode::BAD_REQUEST, &format!("action: {:?} is not approve or reject", f.action)))?;
    c.require(&state, action.scope()).await?;
    let back = |q: (&str, String)| {
        Redirect::to(&format!("/console/approvals?{}", serde_urlencoded::to_string([q]).unwrap_or_default())).into_response()
    };
    if f.ids.is_empty() {
        return Ok(back(("error", "Select the messages first.".into())));
    }
    let reason = f.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let client = conn(&state).await?;
    let (mut done, mut refused, mut last) = (0, 0, None::<String>);
    for id in &f.ids {
        let Some(m) = MessageRef::parse(id) else {
            refused += 1;
            continue;
        };
        let one = async {
            let Some(id) = db::message_id(&client, &tenant, m).await? else { return Ok(None) };
            db::act(&client, &tenant, id, action, &c.actor(), reason).await
        };
        match one.await {
            Ok(Some(_)) => done += 1,
            Ok(None) => refused += 1,
            Err(e) => match super::message::refusal(&e) {
                Some(why) => {
                    refused += 1;
                    last = Some(why);
                }
                None => return Err(failed(e)),
            },
        }
    }
    let verb = if action == Action::Approve { "approved" } else { "rejected" };
    let mut notice = format!("{done} {verb}.");
    if refused > 0 {
        notice.push_str(&format!(" {refused} refused{}", last.map(|w| format!(": {w}")).unwrap_or_default()));
    }
    Ok(back(if done > 0 { ("notice", notice) } else { ("error", notice) }))
}
