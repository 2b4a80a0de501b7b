//! The suppression list: addresses the tenant never sends to, newest first with the API's
//! filter (channel, reason, address prefix) in keyset pages; add one and remove one through
//! `et_suppress` / `et_unsuppress` as `/v1/suppressions` does (its scope, `admin`), the
//! actor `console:<key prefix>` kept on the suppression and in `et_suppression_log`.
//!
//! As in the API, an address is the tenant's own namespace: another tenant's suppression of the
//! same address is neither shown nor touched, and removing an address this tenant has not
//! suppressed is a plain 404 (nothing of another tenant was named).

use super::page;
use super::session::{conn, failed, Console, Page};
use crate::db::apikeys::Scope;
use crate::db::suppressions::{self as db, ListFilter, NewSuppression, Suppression};
use crate::domain::outcome::SuppressReason;
use crate::domain::vocab::Channel;
use crate::http::suppressions::MAX_DETAIL_CHARS;
use crate::http::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::{Deserialize, Serialize};

/// Rows per page.
pub const PAGE: i64 = 50;
/// The scope of every suppression route of the API, reads included.
pub const SCOPE: Scope = Scope::Admin;

/// The page's filter, as its query parameters (the API's, with `before` as the cursor).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    /// The previous page's last id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Filter {
    fn parse(&self, limit: i64) -> Result<ListFilter, String> {
        let set = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        let channel = match set(&self.channel) {
            Some(c) => Some(c.parse::<Channel>().map_err(|_| format!("channel: {c:?} is not a channel"))?),
            None => None,
        };
        let reason = match set(&self.reason) {
            Some(r) => {
                Some(r.parse::<SuppressReason>().map_err(|_| format!("reason: {r:?} is not one of {}", SuppressReason::NAMES.join(", ")))?)
            }
            None => None,
        };
        let before_id = match set(&self.before) {
            Some(b) => Some(b.parse::<i64>().map_err(|_| format!("before: {b:?} is not a suppression id"))?),
            None => None,
        };
        Ok(ListFilter { channel, reason, address_prefix: set(&self.address), before_id, limit })
    }

    fn only_filter(&self) -> Filter {
        Filter { channel: self.channel.clone(), reason: self.reason.clone(), address: self.address.clone(), ..Filter::default() }
    }
}

/// `GET /console/suppressions`.
pub async fn list(State(state): State<AppState>, c: Console, Query(f): Query<Filter>) -> Page {
    let tenant = c.tenant()?.to_owned();
    c.require(&state, SCOPE).await?;
    let filter = match f.parse(PAGE + 1) {
        Ok(x) => x,
        Err(why) => return Err(page::error(StatusCode::BAD_REQUEST, &why)),
    };
    let mut client = conn(&state).await?;
    let rows = async {
        let tx = client.transaction().await?;
        let rows = db::list(&tx, &tenant, &filter).await?;
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(rows)
    };
    let rows = rows.await.map_err(failed)?;
    let (rows, next) = crate::http::api::input::page(rows, PAGE, |s: &Suppression| s.id.to_string());
    let only = f.only_filter();
    let mut query: Vec<(String, String)> =
        serde_urlencoded::from_str(&serde_urlencoded::to_string(&only).unwrap_or_default()).unwrap_or_default();
    query.retain(|(k, _)| k != "before");
    let is = |v: &Option<String>, want: &str| v.as_deref() == Some(want);
    let body = html! {
        (page::flash(f.notice.as_deref(), f.error.as_deref()))
        form.filters method="get" action="/console/suppressions" {
            select name="channel" aria-label="channel" {
                option value="" { "any channel" }
                @for ch in Channel::ALL { option value=(ch.as_str()) selected[is(&only.channel, ch.as_str())] { (ch.as_str()) } }
            }
            select name="reason" aria-label="reason" {
                option value="" { "any reason" }
                @for r in SuppressReason::ALL { option value=(r.as_str()) selected[is(&only.reason, r.as_str())] { (r.as_str()) } }
            }
            input name="address" value=(only.address.as_deref().unwrap_or("")) placeholder="address starts with" aria-label="address";
            button type="submit" { "Filter" }
            a href="/console/suppressions" { "Clear" }
        }
        details.add {
            summary { "Suppress an address" }
            form.add method="post" action="/console/suppressions" {
                input type="hidden" name="csrf" value=(c.csrf());
                select name="channel" aria-label="channel" { @for ch in Channel::ALL { option value=(ch.as_str()) { (ch.as_str()) } } }
                input name="address" required placeholder="address" aria-label="address";
                select name="reason" aria-label="reason" {
                    @for r in SuppressReason::ALL { option value=(r.as_str()) selected[r == SuppressReason::Manual] { (r.as_str()) } }
                }
                input name="detail" placeholder="why (recorded)" aria-label="detail" maxlength=(MAX_DETAIL_CHARS);
                button type="submit" { "Suppress" }
            }
        }
        (table(&c, &rows))
        @if let Some(before) = next {
            @let q = query.iter().cloned().chain(std::iter::once(("before".to_owned(), before))).collect::<Vec<_>>();
            p.pager { a href={ "/console/suppressions?" (serde_urlencoded::to_string(&q).unwrap_or_default()) } { "Older →" } }
        }
    };
    Ok(page::page(&c, "/suppressions", "Suppressions", body))
}

fn table(c: &Console, rows: &[Suppression]) -> Markup {
    if rows.is_empty() {
        return page::empty(
            "No suppressed addresses match.",
            html! { "Addresses land here on hard bounces past the tenant's threshold, complaints and unsubscribes, or when you add one above." },
        );
    }
    html! {
        table.suppressions {
            thead { tr { th { "Added" } th { "Channel" } th { "Address" } th { "Reason" } th { "Detail" } th.num { "Hard bounces" } th { "Expires" } th { "By" } th { span.sr { "remove" } } } }
            tbody {
                @for s in rows {
                    tr {
                        td { (page::time(s.created_at)) }
                        td { (s.channel.as_str()) }
                        td { (s.address) }
                        td { span class={ "badge r-" (s.reason.as_str()) } { (s.reason.as_str()) } }
                        td { (s.detail.as_deref().unwrap_or(""))
                             @if let Some(m) = s.message_id { " " a href={ "/console/messages/" (m) } { "message" } } }
                        td.num { (s.hard_bounces) }
                        td { (page::opt_time(s.expires_at)) }
                        td { code { (s.created_by) } }
                        td {
                            form method="post" action="/console/suppressions/remove" {
                                input type="hidden" name="csrf" value=(c.csrf());
                                input type="hidden" name="channel" value=(s.channel.as_str());
                                input type="hidden" name="address" value=(s.address);
                                button type="submit" { "Remove" }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn back(notice: Result<String, String>) -> Response {
    let f = match notice {
        Ok(n) => Filter { notice: Some(n), ..Filter::default() },
        Err(e) => Filter { error: Some(e), ..Filter::default() },
    };
    Redirect::to(&format!("/console/suppressions?{}", serde_urlencoded::to_string(&f).unwrap_or_default())).into_response()
}

/// What a refusal of the suppression functions says (they name the column and the rule).
fn refused(e: tokio_postgres::Error) -> Response {
    match e.as_db_error().filter(|d| d.code().code().starts_with("22") || d.code().code().starts_with("23")) {
        Some(d) => back(Err(d.message().trim_start_matches("et_suppressions.").to_owned())),
        None => failed(e),
    }
}

#[derive(Deserialize)]
pub struct AddForm {
    #[serde(default)]
    csrf: String,
    channel: String,
    address: String,
    reason: Option<String>,
    detail: Option<String>,
}

/// `POST /console/suppressions`: suppress an address (`et_suppress`).
pub async fn add(State(state): State<AppState>, c: Console, Form(f): Form<AddForm>) -> Page {
    c.check(&f.csrf)?;
    let tenant = c.tenant()?.to_owned();
    c.require(&state, SCOPE).await?;
    let Ok(channel) = f.channel.parse::<Channel>() else {
        return Err(page::error(StatusCode::BAD_REQUEST, &format!("channel: {:?} is not a channel", f.channel)));
    };
    let reason = match f.reason.as_deref().filter(|r| !r.is_empty()) {
        None => SuppressReason::Manual,
        Some(r) => match r.parse::<SuppressReason>() {
            Ok(r) => r,
            Err(_) => {
                return Err(page::error(
                    StatusCode::BAD_REQUEST,
                    &format!("reason: {r:?} is not one of {}", SuppressReason::NAMES.join(", ")),
                ))
            }
        },
    };
    let address = f.address.trim();
    if address.is_empty() {
        return Ok(back(Err("address: must not be empty".into())));
    }
    let detail = f.detail.as_deref().map(str::trim).filter(|d| !d.is_empty());
    if detail.is_some_and(|d| d.chars().count() > MAX_DETAIL_CHARS) {
        return Ok(back(Err(format!("detail: at most {MAX_DETAIL_CHARS} characters"))));
    }
    let new = NewSuppression { channel, address, reason, detail, expires_at: None };
    let client = conn(&state).await?;
    Ok(match db::suppress(&client, &tenant, &new, &c.actor()).await {
        Ok((s, true)) => back(Ok(format!("{} is suppressed on {}.", s.address, s.channel))),
        Ok((s, false)) => back(Ok(format!("{} was suppressed on {} already ({}); left as it was.", s.address, s.channel, s.reason))),
        Err(e) => refused(e),
    })
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    csrf: String,
    channel: String,
    address: String,
}

/// `POST /console/suppressions/remove`: remove a suppression (`et_unsuppress`: logged, the
/// address's hard-bounce count reset); 404 when this tenant has not suppressed the address.
pub async fn remove(State(state): State<AppState>, c: Console, Form(f): Form<RemoveForm>) -> Page {
    c.check(&f.csrf)?;
    let tenant = c.tenant()?.to_owned();
    c.require(&state, SCOPE).await?;
    let Ok(channel) = f.channel.parse::<Channel>() else {
        return Err(page::error(StatusCode::BAD_REQUEST, &format!("channel: {:?} is not a channel", f.channel)));
    };
    let client = conn(&state).await?;
    Ok(match db::unsuppress(&client, &tenant, channel, &f.address, &c.actor(), "removed in the console").await {
        Ok(true) => back(Ok(format!("{} may be sent to again on {channel}.", f.address))),
        Ok(false) => page::error(StatusCode::NOT_FOUND, "This address is not suppressed for this tenant."),
        Err(e) => refused(e),
    })
}
