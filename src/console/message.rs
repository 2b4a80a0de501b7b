//! One message: everything the API's detail shows, the timeline of its events (actor, detail,
//! provider response), a preview of the content as sent (HTML in a sandboxed frame, text as
//! text), attachments to download, its thread, and the actions its state allows: approve,
//! reject with a reason, cancel, retry, resend a corrected copy. Each action is the API's SQL
//! function run as `console:<key prefix>`; a refusal comes back as the page's error notice.

use super::page::{self, count};
use super::session::{conn, failed, Console, Page};
use crate::db::api::{self as db, Action, MessageRef, MessageRow};
use crate::db::apikeys::Scope;
use crate::domain::vocab::Status;
use crate::http::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The content-security policy of a preview: no script, no network (a remote image would tell
/// the sender the message was opened), only inline styles; framed by the console alone.
const PREVIEW_CSP: &str = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'";

/// The message `id` (public id or bigint id) of the console's tenant, or the 404 page; a
/// message of another tenant is logged as a cross-tenant attempt and answered the same.
async fn find(state: &AppState, c: &Console, tenant: &str, id: &str) -> Result<MessageRow, Response> {
    let not_found = || page::error(StatusCode::NOT_FOUND, "No such message for this tenant.");
    let Some(m) = MessageRef::parse(id) else { return Err(not_found()) };
    let client = conn(state).await?;
    if let Some(row) = db::find_message(&client, tenant, m).await.map_err(failed)? {
        return Ok(row);
    }
    if db::message_elsewhere(&client, tenant, m).await.map_err(failed)? {
        c.log_cross_tenant(&**client, tenant, "message", "id", id).await;
    }
    Err(not_found())
}

/// `GET /console/messages/{id}`.
pub async fn show(State(state): State<AppState>, c: Console, Path(id): Path<String>, Query(n): Query<page::Flash>) -> Page {
    let tenant = c.tenant()?.to_owned();
    c.require(&state, Scope::Read).await?;
    let m = find(&state, &c, &tenant, &id).await?;
    let client = conn(&state).await?;
    let read = async {
        let events = db::events(&client, &tenant, m.id).await?;
        let files = db::attachments(&client, &tenant, m.id).await?;
        let thread = db::thread_messages(&client, &tenant, m.thread_id, 20).await?;
        Ok::<_, tokio_postgres::Error>((events, files, thread))
    };
    let (events, files, thread) = read.await.map_err(failed)?;
    let url = format!("/console/messages/{}", m.public_id);
    let title = m.subject.clone().unwrap_or_else(|| "(no subject)".into());
    let body = html! {
        (page::flash(n.notice.as_deref(), n.error.as_deref()))
        // the state and timeline follow the live stream; the forms below keep what one typed
        div #state hx-get=(url) hx-select="#state" hx-swap="outerHTML" hx-trigger="sse:changed" {
            (summary(&m))
            h2 { "Timeline" }
            (timeline(&events))
        }
        (actions(&c, &m))
        h2 { "Content" }
        (content(&m))
        @if !files.is_empty() {
            h2 { "Attachments" }
            ul {
                @for f in &files {
                    li {
                        @if f.content_dropped_at.is_some() {
                            (f.filename) " (" (f.content_type) ", " (count(i64::from(f.size_bytes))) " bytes; content dropped after the retention period)"
                        } @else {
                            a href={ (url) "/attachments/" (f.id) } { (f.filename) }
                            " (" (f.content_type) ", " (count(i64::from(f.size_bytes))) " bytes)"
                        }
                    }
                }
            }
        }
        h2 { "Thread" }
        p { "Thread " (m.thread_id) " · " a href={ "/console/messages?threadId=" (m.thread_id) } { "every message of the thread" } }
        (super::messages::table(&thread))
    };
    Ok(page::page(&c, "/messages", &title, body))
}

fn summary(m: &MessageRow) -> Markup {
    let row = |k: &str, v: Markup| html! { tr { th { (k) } td { (v) } } };
    let text = |s: Option<&str>| html! { (s.unwrap_or("—")) };
    html! {
        table.fields {
            (row("State", page::status_badge(m.status)))
            (row("Public id", html! { code { (m.public_id) } " (#" (m.id) ")" }))
            (row("Direction / channel", html! { (m.direction.as_str()) " · " (m.channel.as_str()) " · session " (m.channel_session_id)
                 @if let Some(p) = m.provider { " · " (p.as_str()) } }))
            (row("From", text(m.sender.as_deref())))
            (row("To", html! { (m.recipients.join(", ")) }))
            @if !m.cc.is_empty() { (row("Cc", html! { (m.cc.join(", ")) })) }
            @if !m.bcc.is_empty() { (row("Bcc", html! { (m.bcc.join(", ")) })) }
            @if let Some(r) = &m.reply_to { (row("Reply-To", html! { (r) })) }
            (row("Attempts", html! { (m.attempts) }))
            @if let Some(e) = &m.last_error { (row("Last error", html! { span.error { (e) } @if let Some(c) = &m.error_class { " (" (c) ")" } })) }
            @if !m.suppressed_recipients.is_empty() { (row("Suppressed", html! { (m.suppressed_recipients.join(", ")) })) }
            (row("Created", page::time(m.created_at)))
            (row("Scheduled", page::opt_time(m.scheduled_at)))
            (row("Sent", page::opt_time(m.sent_at)))
            @if let Some(by) = &m.approved_by { (row("Approved", html! { (by) " " (page::opt_time(m.approved_at)) })) }
            (row("External id", text(m.external_message_id.as_deref())))
            (row("In reply to", text(m.in_reply_to.as_deref())))
            (row("Idempotency key", text(m.idempotency_key.as_deref())))
            @if let Some(from) = m.resent_from { (row("Copy of", html! { a href={ "/console/messages/" (from) } { "#" (from) } })) }
            @if let Some(to) = m.resent_as { (row("Resent as", html! { a href={ "/console/messages/" (to) } { "#" (to) } })) }
            (row("Priority", html! { (m.priority) }))
            (row("Metadata", page::json(&m.metadata)))
        }
    }
}

fn timeline(events: &[db::EventRow]) -> Markup {
    if events.is_empty() {
        return page::empty("No events yet.", html! { "Events are written as the message moves through its states." });
    }
    html! {
        ol.timeline {
            @for e in events {
                li {
                    (page::time(e.at)) " "
                    @if let Some(from) = &e.from_status { span.muted { (from) " → " } }
                    strong { (e.to_status) } " by " code { (e.actor) }
                    @if e.detail.as_object().is_some_and(|o| !o.is_empty()) {
                        details { summary { "detail" } (page::json(&e.detail)) }
                    }
                }
            }
        }
    }
}

/// The forms the message's state allows and the key's scopes permit.
fn actions(c: &Console, m: &MessageRow) -> Markup {
    let form = |action: &str, label: &str, reason: bool| {
        html! {
            form.action method="post" action={ "/console/messages/" (m.public_id) "/act" } {
                input type="hidden" name="csrf" value=(c.csrf());
                input type="hidden" name="action" value=(action);
                @if reason { input name="reason" placeholder="reason (recorded)" aria-label="reason"; }
                button type="submit" name="do" value=(action) { (label) }
            }
        }
    };
    let may = |a: Action| c.can(a.scope());
    let resendable =
        matches!(m.status, Status::Failed | Status::Rejected | Status::Cancelled | Status::Suppressed) && m.resent_as.is_none();
    html! {
        section.actions {
            @if m.status == Status::PendingApproval && may(Action::Approve) { (form("approve", "Approve", false)) (form("reject", "Reject", true)) }
            @if matches!(m.status, Status::PendingApproval | Status::Queued) && may(Action::Cancel) { (form("cancel", "Cancel", false)) }
            @if m.status == Status::Failed && may(Action::Retry) { (form("retry", "Retry", false)) }
            @if resendable && c.can(Scope::Send) {
                details.resend {
                    summary { "Resend a corrected copy" }
                    form method="post" action={ "/console/messages/" (m.public_id) "/resend" } {
                        input type="hidden" name="csrf" value=(c.csrf());
                        label { "To " input name="to" value=(m.recipients.join(", ")); }
                        label { "Subject " input name="subject" value=(m.subject.as_deref().unwrap_or("")); }
                        label { "Text " textarea name="text_body" rows="6" { (m.body_text.as_deref().unwrap_or("")) } }
                        button type="submit" { "Resend" }
                    }
                }
            }
        }
    }
}

fn content(m: &MessageRow) -> Markup {
    let text = m.rendered_text.as_deref().or(m.body_text.as_deref());
    let html_body = m.rendered_html.as_deref().or(m.body_html.as_deref());
    let rendered = m.rendered_subject.is_some() || m.rendered_text.is_some() || m.rendered_html.is_some();
    html! {
        @if rendered { p.muted { "As sent (rendered from the template and its variables)." } }
        @if let Some(s) = &m.rendered_subject { p { "Subject: " strong { (s) } } }
        @if html_body.is_some() {
            iframe.preview sandbox="" referrerpolicy="no-referrer" title="HTML preview"
                src={ "/console/messages/" (m.public_id) "/preview" } {}
        }
        @if let Some(t) = text { (page::pre(t)) }
        @if text.is_none() && html_body.is_none() { p.muted { "No body." } }
    }
}

/// `GET /console/messages/{id}/preview`: the HTML body as sent, for the sandboxed frame.
pub async fn preview(State(state): State<AppState>, c: Console, Path(id): Path<String>) -> Page {
    let tenant = c.tenant()?.to_owned();
    c.require(&state, Scope::Read).await?;
    let m = find(&state, &c, &tenant, &id).await?;
    let body = m.rendered_html.or(m.body_html).unwrap_or_default();
    let mut res = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PREVIEW_CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// `GET /console/messages/{id}/attachments/{attachment}`: the file, always as a download
/// (never shown inline: an HTML or SVG file would otherwise run in the console's origin).
pub async fn attachment(State(state): State<AppState>, c: Console, Path((id, attachment)): Path<(String, i64)>) -> Page {
    let tenant = c.tenant()?.to_owned();
    c.require(&state, Scope::Read).await?;
    let m = find(&state, &c, &tenant, &id).await?;
    let client = conn(&state).await?;
    match db::attachment_content(&client, &tenant, m.id, attachment).await.map_err(failed)? {
        Some((name, Some(bytes))) => {
            let safe: String = name.chars().map(|ch| if ch.is_ascii_alphanumeric() || ".-_ ".contains(ch) { ch } else { '_' }).collect();
            let disposition = format!("attachment; filename=\"{safe}\"");
            let mut res = ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response();
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            res.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            Ok(res)
        }
        Some((_, None)) => Err(page::error(StatusCode::GONE, "This attachment's content was dropped after the retention period.")),
        None => Err(page::error(StatusCode::NOT_FOUND, "No such attachment on this message.")),
    }
}

/// Every field defaults (empty), so that a missing one is refused by the checks that name it
/// (a missing CSRF token is a wrong one: 403), never by the form parser.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ActForm {
    csrf: String,
    action: String,
    reason: Option<String>,
}

/// Back to the message with a notice or an error.
fn back(public: &str, notice: Result<String, String>) -> Response {
    let q = match notice {
        Ok(n) => [("notice", n)],
        Err(e) => [("error", e)],
    };
    Redirect::to(&format!("/console/messages/{public}?{}", serde_urlencoded::to_string(q).unwrap_or_default())).into_response()
}

/// What a refused operator function said, for the page (its own words: they name the rule).
pub fn refusal(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().filter(|d| d.code().code().starts_with("23") || d.code().code().starts_with("P0")).map(|d| d.message().to_owned())
}

/// `POST /console/messages/{id}/act`: approve, reject, retry or cancel.
pub async fn act(State(state): State<AppState>, c: Console, Path(id): Path<String>, Form(f): Form<ActForm>) -> Page {
    c.check(&f.csrf)?;
    let tenant = c.tenant()?.to_owned();
    let action = Action::parse(&f.action)
        .ok_or_else(|| page::error(StatusCode::BAD_REQUEST, &format!("action: {:?} is not approve, reject, retry or cancel", f.action)))?;
    c.require(&state, action.scope()).await?;
    let m = find(&state, &c, &tenant, &id).await?;
    let reason = f.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let client = conn(&state).await?;
    let public = m.public_id.to_string();
    match db::act(&client, &tenant, m.id, action, &c.actor(), reason).await {
        Ok(Some(_)) => Ok(back(&public, Ok(format!("{} done.", action.as_str())))),
        Ok(None) => Err(page::error(StatusCode::NOT_FOUND, "No such message for this tenant.")),
        Err(e) => match refusal(&e) {
            Some(why) => Ok(back(&public, Err(why))),
            None => Err(failed(e)),
        },
    }
}

/// Every field defaults (empty), so that a missing one is refused by the checks that name it
/// (a missing CSRF token is a wrong one: 403), never by the form parser.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ResendForm {
    csrf: String,
    to: String,
    subject: String,
    text_body: String,
}

/// `POST /console/messages/{id}/resend`: a corrected copy through `et_resend`.
pub async fn resend(State(state): State<AppState>, c: Console, Path(id): Path<String>, Form(f): Form<ResendForm>) -> Page {
    c.check(&f.csrf)?;
    let tenant = c.tenant()?.to_owned();
    c.require(&state, Scope::Send).await?;
    let m = find(&state, &c, &tenant, &id).await?;
    let to: Vec<Value> = f.to.split([',', '\n']).map(str::trim).filter(|s| !s.is_empty()).map(|s| json!(s)).collect();
    let mut changes = Map::new();
    changes.insert("recipients".into(), Value::Array(to));
    changes.insert("subject".into(), json!(f.subject));
    changes.insert("body_text".into(), json!(f.text_body));
    let client = conn(&state).await?;
    match db::resend(&client, &tenant, m.id, &Value::Object(changes), &c.actor()).await {
        Ok(Some(copy)) => {
            let to = format!("/console/messages/{copy}?notice={}", "Resent+as+a+corrected+copy.");
            Ok(Redirect::to(&to).into_response())
        }
        Ok(None) => Err(page::error(StatusCode::NOT_FOUND, "No such message for this tenant.")),
        Err(e) => match refusal(&e) {
            Some(why) => Ok(back(&m.public_id.to_string(), Err(why))),
            None => Err(failed(e)),
        },
    }
}
