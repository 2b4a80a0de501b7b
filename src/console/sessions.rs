//! The tenant's channel sessions: provider, address, status, rate limits and concurrency from
//! its config, its circuit breaker as the daemons last reported it (`et_session_health`), its
//! fallback; pause and resume through the function `PATCH /v1/tenants/{id}/sessions/{sid}`
//! runs ([`tenants::update_session`]), with that route's rule of who may: a platform key only
//! (a tenant key is refused 403 for its own sessions, 404 for another tenant's; both logged).

use super::page;
use super::session::{conn, failed, Console, Page};
use crate::db::apikeys::{self, Authenticated, Scope, PLATFORM_SCOPE};
use crate::db::console::{self as console_db, Breaker};
use crate::db::tenants::{self, SessionChanges, SessionRow};
use crate::domain::breaker::BreakerState;
use crate::domain::vocab::SessionStatus;
use crate::http::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::json;

/// `GET /console/sessions`.
pub async fn list(State(state): State<AppState>, c: Console, Query(n): Query<page::Flash>) -> Page {
    let tenant = c.tenant()?.to_owned();
    c.require(&state, Scope::Read).await?;
    let mut client = conn(&state).await?;
    let read = async {
        let tx = client.transaction().await?;
        let sessions = tenants::list_sessions(&*tx, &tenant).await?;
        let breakers = console_db::breakers(&tx, &tenant).await?;
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>((sessions, breakers))
    };
    let (sessions, breakers) = read.await.map_err(failed)?;
    let body = html! {
        (page::flash(n.notice.as_deref(), n.error.as_deref()))
        @if sessions.is_empty() {
            (page::empty("This tenant has no channel sessions.", html! {
                "A platform key creates them: POST /v1/tenants/{id}/sessions, or `pgcourier session create`." }))
        } @else {
            @if !c.is_platform() { p.muted { "Pausing and resuming a session needs a platform key, as its API route does." } }
            (table(&c, &sessions, &breakers))
        }
    };
    Ok(page::page(&c, "/sessions", "Sessions", body))
}

fn table(c: &Console, sessions: &[SessionRow], breakers: &[Breaker]) -> Markup {
    let limit = |s: &SessionRow, k: &str| s.config.get(k).map(|v| v.to_string());
    html! {
        table.sessions {
            thead { tr { th.num { "Id" } th { "Channel / provider" } th { "Address" } th { "Status" } th { "Rate limit" } th { "Breaker" } th { "Fallback" } th { "Approval" } th.num { "Max attempts" } th { "Changed" } th { span.sr { "actions" } } } }
            tbody {
                @for s in sessions {
                    @let b = breakers.iter().find(|b| b.session_id == s.id);
                    tr {
                        td.num { (s.id) }
                        td { (s.channel) " / " (s.provider) }
                        td { (s.address) @if !s.name.is_empty() { br; span.muted { (s.name) } } }
                        td { span class={ "badge st-" (s.status) } { (s.status) } }
                        td {
                            @let per_s = limit(s, "rate_per_second");
                            @let per_m = limit(s, "rate_per_minute");
                            @let conc = limit(s, "concurrency");
                            @if per_s.is_none() && per_m.is_none() { span.muted { "none" } }
                            @if let Some(v) = per_s { (v) "/s " }
                            @if let Some(v) = per_m { (v) "/min " }
                            @if let Some(v) = conc { br; span.muted { "concurrency " (v) } }
                        }
                        td { (breaker(b)) }
                        td { @match s.fallback_session_id { Some(f) => { "session " (f) }, None => span.muted { "—" } } }
                        td { @if s.requires_approval { "required" } @else { span.muted { "no" } } }
                        td.num { (s.max_attempts) }
                        td { (page::time(s.updated_at)) }
                        td {
                            @if c.is_platform() {
                                @match s.status.as_str() {
                                    "active" => { (status_form(c, s.id, SessionStatus::Paused, "Pause")) },
                                    "paused" => { (status_form(c, s.id, SessionStatus::Active, "Resume")) },
                                    _ => {},
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn breaker(b: Option<&Breaker>) -> Markup {
    let Some(b) = b else { return html! { span.muted { "closed (not reported)" } } };
    html! {
        span class={ "badge b-" (b.state.as_str()) } { (b.state.as_str().replace('_', " ")) }
        @if b.state != BreakerState::Closed {
            @if let Some(r) = b.failure_rate { " " (format!("{:.0}% failing", r * 100.0)) }
            br; span.muted { "since " (page::time(b.since)) " · " (b.reported_by) }
        }
    }
}

fn status_form(c: &Console, id: i64, to: SessionStatus, label: &str) -> Markup {
    html! {
        form method="post" action={ "/console/sessions/" (id) "/status" } {
            input type="hidden" name="csrf" value=(c.csrf());
            input type="hidden" name="status" value=(to.as_str());
            button type="submit" { (label) }
        }
    }
}

#[derive(Deserialize)]
pub struct StatusForm {
    #[serde(default)]
    csrf: String,
    status: String,
}

fn back(notice: Result<String, String>) -> Response {
    let q = match notice {
        Ok(n) => [("notice", n)],
        Err(e) => [("error", e)],
    };
    Redirect::to(&format!("/console/sessions?{}", serde_urlencoded::to_string(q).unwrap_or_default())).into_response()
}

/// `POST /console/sessions/{id}/status`: pause (`paused`) or resume (`active`) a session.
pub async fn set_status(State(state): State<AppState>, c: Console, Path(id): Path<String>, Form(f): Form<StatusForm>) -> Page {
    c.check(&f.csrf)?;
    let tenant = c.tenant()?.to_owned();
    let status = match f.status.parse::<SessionStatus>() {
        Ok(s @ (SessionStatus::Active | SessionStatus::Paused)) => s,
        _ => return Err(page::error(StatusCode::BAD_REQUEST, &format!("status: {:?} is not active or paused", f.status))),
    };
    let not_found = || page::error(StatusCode::NOT_FOUND, "No such session for this tenant.");
    let Some(sid) = id.parse::<i64>().ok().filter(|i| *i > 0) else { return Err(not_found()) };
    let client = conn(&state).await?;
    let own = match tenants::get_session(&**client, &tenant, sid).await {
        Ok(s) => s.is_some(),
        Err(e) => return Err(failed(e)),
    };
    if !own {
        match tenants::session_elsewhere(&**client, &tenant, sid).await {
            Ok(true) => c.log_cross_tenant(&**client, &tenant, "channel_session", "id", sid).await,
            Ok(false) => {}
            Err(e) => return Err(failed(e)),
        }
        return Err(not_found());
    }
    if let Authenticated::Tenant(p) = &c.key {
        let detail = json!({ "needed": PLATFORM_SCOPE, "has": p.scopes, "via": "console" });
        let _ = apikeys::security_event(&**client, Some(&tenant), c.prefix(), "missing_scope", &detail).await;
        return Err(page::error(
            StatusCode::FORBIDDEN,
            "Pausing and resuming a session needs a platform key (pgcourier apikey create --platform).",
        ));
    }
    let changes = SessionChanges { status: Some(status.as_str().to_owned()), ..SessionChanges::default() };
    Ok(match tenants::update_session(&**client, &tenant, sid, &changes, &c.actor()).await {
        Ok(Some(s)) => back(Ok(format!("Session {} is {}.", s.id, s.status))),
        Ok(None) => not_found(),
        Err(e) => match super::message::refusal(&e) {
            Some(why) => back(Err(why)),
            None => failed(e),
        },
    })
}
