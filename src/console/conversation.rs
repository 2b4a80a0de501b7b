//! One conversation: its messages as a chat (inbound on the left, outbound on the right, each
//! with its state and time), its CRM insight, and what an operator does with it: take it over
//! (handling `human`: never auto-answered), hand it back to the AI (`et_handoff`, as
//! `POST /v1/threads/{id}/handoff` does, with its scope), and reply as a human: an outbound
//! message inserted the way `POST /v1/messages` inserts one, addressed as the inbound worker
//! addresses its automatic replies ([`crate::db::console_threads::reply_target`]), so the insert
//! trigger threads it on this conversation.

use super::conversations::handling_badge;
use super::page;
use super::session::{conn, failed, Console, Page};
use crate::db::api::{self as api, InsightRow, MessageRow, NewMessage, ThreadRow};
use crate::db::apikeys::Scope;
use crate::db::console_threads as db;
use crate::domain::vocab::{Direction, Handling};
use crate::http::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::json;

/// Messages a conversation page shows (the newest; the message list has every one).
pub const MESSAGES: i64 = 100;

/// The handoff's scope: the one `POST /v1/threads/{id}/handoff` requires.
pub const HANDOFF_SCOPE: Scope = Scope::Admin;

/// The thread `id` of `tenant`, or the 404 page; a thread of another tenant is logged as a
/// cross-tenant attempt and answered the same.
async fn find(state: &AppState, c: &Console, tenant: &str, id: &str) -> Result<ThreadRow, Response> {
    let not_found = || page::error(StatusCode::NOT_FOUND, "No such conversation for this tenant.");
    let Ok(thread) = id.parse::<i64>() else { return Err(not_found()) };
    let client = conn(state).await?;
    if let Some(row) = api::find_thread(&client, tenant, thread).await.map_err(failed)? {
        return Ok(row);
    }
    if api::thread_elsewhere(&client, tenant, thread).await.map_err(failed)? {
        c.log_cross_tenant(&**client, tenant, "thread", "id", id).await;
    }
    Err(not_found())
}

/// `GET /console/conversations/{id}`.
pub async fn show(State(state): State<AppState>, c: Console, Path(id): Path<String>, Query(n): Query<page::Flash>) -> Page {
    let tenant = c.tenant()?.to_owned();
    c.require(&state, Scope::Read).await?;
    let t = match find(&state, &c, &tenant, &id).await {
        Ok(t) => t,
        Err(r) => return Err(r),
    };
    let mut client = conn(&state).await?;
    let read = async {
        let tx = client.transaction().await?;
        let messages = api::thread_messages(&tx, &tenant, t.id, MESSAGES).await?;
        let insight = api::thread_insight(&tx, &tenant, t.id).await?;
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>((messages, insight))
    };
    let (messages, insight) = read.await.map_err(failed)?;
    let url = format!("/console/conversations/{}", t.id);
    let title = format!("{} · {}", t.contact, t.subject.as_deref().unwrap_or(t.channel.as_str()));
    let body = html! {
        (page::flash(n.notice.as_deref(), n.error.as_deref()))
        // the chat follows the live stream; the reply form below keeps what one typed
        div #chat hx-get=(url) hx-select="#chat" hx-swap="outerHTML" hx-trigger="sse:changed" {
            (summary(&t))
            h2 { "Insight" }
            (insight_block(insight.as_ref()))
            h2 { "Messages" }
            @if i64::from(t.message_count) > MESSAGES {
                p.muted { "The newest " (MESSAGES) " of " (page::count(i64::from(t.message_count))) "; "
                    a href={ "/console/messages?threadId=" (t.id) } { "every message of the conversation" } "." }
            }
            (chat(&messages))
        }
        (actions(&c, &t))
    };
    Ok(page::page(&c, "/conversations", &title, body))
}

fn summary(t: &ThreadRow) -> Markup {
    let row = |k: &str, v: Markup| html! { tr { th { (k) } td { (v) } } };
    html! {
        table.fields {
            (row("Handling", html! { (handling_badge(t.handling))
                @if let Some(by) = &t.handling_by { " by " code { (by) } " " (page::opt_time(t.handling_at)) } }))
            (row("Contact", html! { (t.contact) }))
            (row("Channel / session", html! { (t.channel.as_str()) " · session " (t.channel_session_id) }))
            (row("State", html! { (t.state.as_str()) }))
            (row("Messages", html! { (t.message_count) " (" (t.inbound_count) " in, " (t.outbound_count) " out)" }))
            (row("Last inbound", page::opt_time(t.last_inbound_at)))
            (row("Last outbound", page::opt_time(t.last_outbound_at)))
        }
    }
}

fn insight_block(i: Option<&InsightRow>) -> Markup {
    let Some(i) = i else {
        return page::empty(
            "No insight yet.",
            html! { "The insights worker writes a summary, a label, a next step and a follow-up date once the conversation has messages." },
        );
    };
    let row = |k: &str, v: Markup| html! { tr { th { (k) } td { (v) } } };
    let text = |s: &Option<String>| html! { (s.as_deref().unwrap_or("—")) };
    html! {
        table.fields {
            (row("Summary", text(&i.summary)))
            (row("Label", text(&i.label)))
            (row("Next step", text(&i.next_step)))
            (row("Follow-up", page::opt_time(i.follow_up_at)))
            (row("Decided by", html! { (i.decided_by.map(|d| d.as_str()).unwrap_or("—")) @if let Some(m) = &i.model { " (" (m) ")" } " · " (page::time(i.updated_at)) }))
        }
    }
}

/// The messages as a chat, oldest first: inbound on the left, outbound on the right.
fn chat(messages: &[MessageRow]) -> Markup {
    if messages.is_empty() {
        return page::empty("No messages.", html! { "Reply below to write the first one." });
    }
    html! {
        ol.chat {
            @for m in messages {
                @let side = if m.direction == Direction::Inbound { "in" } else { "out" };
                li class=(side) {
                    div.meta {
                        a href={ "/console/messages/" (m.public_id) } { (page::time(m.created_at)) } " "
                        (page::status_badge(m.status))
                        @if let Some(s) = &m.sender { " " span.muted { (s) } }
                    }
                    @if let Some(s) = m.rendered_subject.as_deref().or(m.subject.as_deref()) { div.subject { (s) } }
                    div.text { (m.rendered_text.as_deref().or(m.body_text.as_deref()).unwrap_or("(no text)")) }
                }
            }
        }
    }
}

/// Take over / hand back and the reply form, as the key's scopes allow.
fn actions(c: &Console, t: &ThreadRow) -> Markup {
    let base = format!("/console/conversations/{}", t.id);
    html! {
        section.actions {
            @if c.can(HANDOFF_SCOPE) {
                form.action method="post" action={ (base) "/handling" } {
                    input type="hidden" name="csrf" value=(c.csrf());
                    @if t.handling == Handling::Ai {
                        input type="hidden" name="handling" value="human";
                        button type="submit" { "Take over" }
                    } @else {
                        input type="hidden" name="handling" value="ai";
                        button type="submit" { "Hand back to the AI" }
                    }
                }
            }
        }
        @if c.can(Scope::Send) {
            h2 { "Reply" }
            form.reply method="post" action={ (base) "/reply" } {
                input type="hidden" name="csrf" value=(c.csrf());
                label { "To " (t.contact) " on session " (t.channel_session_id)
                    textarea name="text" rows="5" required aria-label="reply" {} }
                button type="submit" { "Send reply" }
                @if t.handling == Handling::Ai { p.muted { "The AI still handles this conversation; take it over to stop its automatic answers." } }
            }
        }
    }
}

/// Back to the conversation with a notice or an error.
fn back(thread: i64, notice: Result<String, String>) -> Response {
    let q = match notice {
        Ok(n) => [("notice", n)],
        Err(e) => [("error", e)],
    };
    Redirect::to(&format!("/console/conversations/{thread}?{}", serde_urlencoded::to_string(q).unwrap_or_default())).into_response()
}

#[derive(Deserialize)]
pub struct HandlingForm {
    /// Absent: refused as a wrong token (403), not as a malformed form.
    #[serde(default)]
    csrf: String,
    handling: String,
}

/// `POST /console/conversations/{id}/handling`: take over (`human`) or hand back (`ai`).
pub async fn handoff(State(state): State<AppState>, c: Console, Path(id): Path<String>, Form(f): Form<HandlingForm>) -> Page {
    c.check(&f.csrf)?;
    let tenant = c.tenant()?.to_owned();
    c.require(&state, HANDOFF_SCOPE).await?;
    let Ok(handling) = f.handling.parse::<Handling>() else {
        return Err(page::error(StatusCode::BAD_REQUEST, &format!("handling: {:?} is not ai or human", f.handling)));
    };
    let t = match find(&state, &c, &tenant, &id).await {
        Ok(t) => t,
        Err(r) => return Err(r),
    };
    let mut client = conn(&state).await?;
    let done = async {
        let tx = client.transaction().await?;
        let r = api::handoff(&tx, &tenant, t.id, handling, &c.actor()).await?;
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(r)
    };
    Ok(match done.await {
        Ok(Some(_)) => back(
            t.id,
            Ok(if handling == Handling::Human { "Taken over: the AI will not answer." } else { "Handed back to the AI." }.into()),
        ),
        Ok(None) => page::error(StatusCode::NOT_FOUND, "No such conversation for this tenant."),
        Err(e) => match super::message::refusal(&e) {
            Some(why) => back(t.id, Err(why)),
            None => failed(e),
        },
    })
}

#[derive(Deserialize)]
pub struct ReplyForm {
    #[serde(default)]
    csrf: String,
    text: String,
}

/// Why a reply was not sent, for the page.
enum NotSent {
    Refused(String),
    Db(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for NotSent {
    fn from(e: tokio_postgres::Error) -> Self {
        NotSent::Db(e)
    }
}

/// `POST /console/conversations/{id}/reply`: an outbound message on the conversation, written as
/// `POST /v1/messages` writes one (actor, insert, the tenant's send limits) in one transaction.
pub async fn reply(State(state): State<AppState>, c: Console, Path(id): Path<String>, Form(f): Form<ReplyForm>) -> Page {
    c.check(&f.csrf)?;
    let tenant = c.tenant()?.to_owned();
    c.require(&state, Scope::Send).await?;
    let t = match find(&state, &c, &tenant, &id).await {
        Ok(t) => t,
        Err(r) => return Err(r),
    };
    let text = f.text.trim();
    if text.is_empty() {
        return Ok(back(t.id, Err("Write the reply first.".into())));
    }
    let mut client = conn(&state).await?;
    let done = async {
        let tx = client.transaction().await?;
        crate::db::audit::set_actor(&tx, &c.actor()).await?;
        let Some(to) = db::reply_target(&tx, &tenant, t.id).await? else {
            return Err(NotSent::Refused("This conversation is gone.".into()));
        };
        let new = NewMessage {
            tenant_id: tenant.clone(),
            session_id: to.session_id,
            channel: Some(to.channel),
            recipients: vec![to.contact],
            subject: to.subject,
            body_text: Some(text.to_owned()),
            in_reply_to: to.in_reply_to,
            metadata: Some(json!({ "console_reply": { "thread_id": t.id } })),
            ..NewMessage::default()
        };
        let ins = api::insert_message(&tx, &new).await?;
        if ins.thread_id != t.id {
            // the trigger's threading rule put it elsewhere: nothing is sent (the transaction rolls back)
            return Err(NotSent::Refused(format!(
                "The reply would have started conversation {} instead; nothing was sent.",
                ins.thread_id
            )));
        }
        if let Some(over) = api::take_send_quota(&tx, &tenant, 1).await? {
            return Err(NotSent::Refused(format!(
                "{}: this tenant may send {} messages per {}; retry in {} s. Nothing was sent.",
                over.limit,
                over.max,
                over.limit.trim_start_matches("max_per_"),
                over.retry_after
            )));
        }
        tx.commit().await?;
        Ok(ins)
    };
    Ok(match done.await {
        Ok(ins) => back(t.id, Ok(format!("Reply {} ({}).", ins.status.as_str().replace('_', " "), ins.public_id))),
        Err(NotSent::Refused(why)) => back(t.id, Err(why)),
        Err(NotSent::Db(e)) => match super::message::refusal(&e).or_else(|| invalid(&e)) {
            Some(why) => back(t.id, Err(why)),
            None => failed(e),
        },
    })
}

/// The words of an insert the trigger refused for its content (22xxx: a bad value, too long).
fn invalid(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().filter(|d| d.code().code().starts_with("22")).map(|d| d.message().to_owned())
}
