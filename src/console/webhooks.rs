//! The tenant's webhook endpoints (never their secrets) and, per endpoint, its newest
//! deliveries: state, attempts, the endpoint's last answer. Read with the API's scope for
//! `/v1/webhooks` (`admin`) and its SQL ([`crate::db::webhooks`]); another tenant's endpoint is
//! a 404 and a security event, as in the API.
//!
//! A delivered or dead delivery can be sent again (`et_webhook_redeliver`, as
//! `POST /v1/webhooks/{id}/deliveries/{delivery}/redeliver` does): a new delivery of the same
//! event, recorded with the console's actor. Endpoints are changed through `/v1/webhooks`.

use super::page::{self, count};
use super::session::{conn, failed, Console, Page};
use crate::db::apikeys::Scope;
use crate::db::webhooks::{self as db, Delivery, Endpoint, RedeliverError};
use crate::domain::vocab::DeliveryState;
use crate::http::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

/// The scope of every `/v1/webhooks` route.
pub const SCOPE: Scope = Scope::Admin;
/// Deliveries an endpoint's page shows, newest first.
pub const DELIVERIES: i64 = 50;

/// `GET /console/webhooks`.
pub async fn list(State(state): State<AppState>, c: Console) -> Page {
    let tenant = c.tenant()?.to_owned();
    c.require(&state, SCOPE).await?;
    let mut client = conn(&state).await?;
    let rows = async {
        let tx = client.transaction().await?;
        let rows = db::list(&tx, &tenant).await?;
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(rows)
    };
    let rows = rows.await.map_err(failed)?;
    let body = html! {
        @if rows.is_empty() {
            (page::empty("No webhook endpoints.", html! {
                "Register a URL to receive this tenant's status events: POST /v1/webhooks with an admin key. "
                "Its signing secret is shown once, in that answer." }))
        } @else {
            table.webhooks {
                thead { tr { th.num { "Id" } th { "URL" } th { "Events" } th { "State" } th.num { "Failures in a row" } th { "Secret rotated" } th { "Created" } } }
                tbody {
                    @for e in &rows {
                        tr {
                            td.num { a href={ "/console/webhooks/" (e.id) } { (e.id) } }
                            td { a href={ "/console/webhooks/" (e.id) } { (e.url) } @if !e.description.is_empty() { br; span.muted { (e.description) } } }
                            td { (events(e)) }
                            td { (enabled(e)) }
                            td.num { (count(i64::from(e.failure_count))) }
                            td { (page::opt_time(e.secret_rotated_at)) }
                            td { (page::time(e.created_at)) }
                        }
                    }
                }
            }
        }
    };
    Ok(page::page(&c, "/webhooks", "Webhooks", body))
}

fn events(e: &Endpoint) -> Markup {
    html! { @if e.events.is_empty() { span.muted { "every event" } } @else { (e.events.join(", ")) } }
}

fn enabled(e: &Endpoint) -> Markup {
    html! {
        @if e.enabled { span.badge.on { "enabled" } }
        @else {
            span.badge.off { "disabled" }
            @if let Some(r) = &e.disabled_reason { br; span.muted { (r) } }
        }
    }
}

/// `GET /console/webhooks/{id}`: one endpoint and its newest deliveries.
pub async fn show(State(state): State<AppState>, c: Console, Path(id): Path<String>, Query(n): Query<page::Flash>) -> Page {
    let tenant = c.tenant()?.to_owned();
    c.require(&state, SCOPE).await?;
    let not_found = || page::error(StatusCode::NOT_FOUND, "No such webhook endpoint for this tenant.");
    let Some(id) = id.parse::<i64>().ok().filter(|i| *i > 0) else { return Err(not_found()) };
    let mut client = conn(&state).await?;
    let read = async {
        let tx = client.transaction().await?;
        let Some(e) = db::get(&tx, &tenant, id).await? else {
            let elsewhere = db::exists_elsewhere(&tx, &tenant, id).await?;
            tx.commit().await?;
            return Ok(Err(elsewhere));
        };
        let deliveries = db::deliveries(&tx, &tenant, id, DELIVERIES).await?;
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(Ok((e, deliveries)))
    };
    let (e, deliveries) = match read.await {
        Ok(Ok(r)) => r,
        Ok(Err(elsewhere)) => {
            if elsewhere {
                c.log_cross_tenant(&**client, &tenant, "webhook_endpoint", "id", id).await;
            }
            return Err(not_found());
        }
        Err(e) => return Err(failed(e)),
    };
    let row = |k: &str, v: Markup| html! { tr { th { (k) } td { (v) } } };
    let body = html! {
        (page::flash(n.notice.as_deref(), n.error.as_deref()))
        table.fields {
            (row("URL", html! { (e.url) }))
            (row("Description", html! { (e.description) }))
            (row("Events", events(&e)))
            (row("State", enabled(&e)))
            (row("Failures in a row", html! { (e.failure_count) }))
            (row("Secret", html! { span.muted { "never shown again after it was made; rotate it with POST /v1/webhooks/" (e.id) "/rotate-secret" }
                @if let Some(t) = e.previous_secret_expires_at { br; "the previous secret signs too until " (page::time(t)) } }))
            (row("Created", page::time(e.created_at)))
        }
        h2 { "Newest deliveries" }
        (deliveries_table(&c, e.id, e.enabled, &deliveries))
        p { a href="/console/webhooks" { "Back to the endpoints" } }
    };
    Ok(page::page(&c, "/webhooks", &format!("Webhook {}", e.id), body))
}

fn deliveries_table(c: &Console, endpoint: i64, enabled: bool, rows: &[Delivery]) -> Markup {
    if rows.is_empty() {
        return page::empty("No deliveries yet.", html! { "A delivery is made for each status event the endpoint subscribes to." });
    }
    html! {
        table.deliveries {
            thead { tr { th { "Created" } th { "Event" } th { "State" } th.num { "Attempts" } th { "Next try" } th { "Last answer" } th { "Delivered" } th { "Payload" } th { span.sr { "redeliver" } } } }
            tbody {
                @for d in rows {
                    tr {
                        td { (page::time(d.created_at)) }
                        td { (d.event_type) br; code.muted { (d.event_id) } }
                        td { span class={ "badge d-" (d.state.as_str()) } { (d.state.as_str()) } }
                        td.num { (d.attempts) }
                        td { @if d.state.as_str() == "ready" { (page::time(d.run_at)) } @else { span.muted { "—" } } }
                        td { @if let Some(s) = d.last_status { "HTTP " (s) " " } @if let Some(e) = &d.last_error { span.error { (e) } } }
                        td { (page::opt_time(d.delivered_at)) }
                        td { details { summary { "payload" } (page::json(&d.payload)) } }
                        td {
                            @if let (Some(of), Some(by)) = (d.redelivery_of, &d.requested_by) { span.muted { "redelivery of " (of) " by " (by) } br; }
                            @else if let Some(by) = &d.requested_by { span.muted { "redelivery by " (by) } br; }
                            @if enabled && d.state != DeliveryState::Ready {
                                form method="post" action={ "/console/webhooks/" (endpoint) "/deliveries/" (d.id) "/redeliver" } {
                                    input type="hidden" name="csrf" value=(c.csrf());
                                    button type="submit" { "Redeliver" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct RedeliverForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /console/webhooks/{id}/deliveries/{delivery}/redeliver`: the event sent again as a new
/// delivery (`et_webhook_redeliver`), back to the endpoint's page with what happened.
pub async fn redeliver(
    State(state): State<AppState>,
    c: Console,
    Path((id, delivery)): Path<(String, String)>,
    Form(f): Form<RedeliverForm>,
) -> Page {
    c.check(&f.csrf)?;
    let tenant = c.tenant()?.to_owned();
    c.require(&state, SCOPE).await?;
    let not_found = || page::error(StatusCode::NOT_FOUND, "No such webhook delivery for this tenant.");
    let parse = |s: &str| s.parse::<i64>().ok().filter(|i| *i > 0);
    let (Some(id), Some(delivery)) = (parse(&id), parse(&delivery)) else { return Err(not_found()) };
    let client = conn(&state).await?;
    let back = |q: (&str, String)| {
        Redirect::to(&format!("/console/webhooks/{id}?{}", serde_urlencoded::to_string([q]).unwrap_or_default())).into_response()
    };
    Ok(match db::redeliver(&client, &tenant, id, delivery, &c.actor()).await {
        Ok(d) => back(("notice", format!("Delivery {delivery} will be sent again as delivery {}.", d.id))),
        Err(RedeliverError::Refused(why)) => back(("error", why)),
        Err(RedeliverError::NotFound) => {
            match db::exists_elsewhere(&client, &tenant, id).await {
                Ok(true) => c.log_cross_tenant(&**client, &tenant, "webhook_endpoint", "id", id).await,
                Ok(false) => {}
                Err(e) => return Err(failed(e)),
            }
            not_found()
        }
        Err(RedeliverError::Db(e)) => return Err(failed(e)),
    })
}
