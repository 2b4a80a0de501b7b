//! The tenant's API keys: list them (prefix, name, scopes, expiry, last use; never a secret),
//! create one (its key is shown once, on the page that answers the form, and never again: only
//! its SHA-256 is stored), revoke one. The rules of `/v1/tenants/{id}/keys`: a platform key or
//! the tenant's own `admin` key; another tenant's key prefix is a 404 and a security event.

use super::page;
use super::session::{conn, failed, Console, Page};
use crate::db::apikeys::{self, KeyError, KeyRow, Scope};
use crate::http::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::Form;
use chrono::{NaiveDate, Utc};
use maud::{html, Markup};
use serde::Deserialize;

/// The scope `/v1/tenants/{id}/keys` asks of a tenant key.
pub const SCOPE: Scope = Scope::Admin;
/// The scopes a new key may get, in the form's order.
const SCOPES: [Scope; 3] = [Scope::Read, Scope::Send, Scope::Admin];

fn key_failed(e: KeyError) -> Response {
    match e {
        KeyError::Db(e) => failed(e),
        KeyError::UnknownTenant(_) => page::error(StatusCode::NOT_FOUND, "No such tenant."),
        KeyError::UnknownKey(_) => page::error(StatusCode::NOT_FOUND, "No such API key for this tenant."),
        KeyError::NotLive(why) => page::error(StatusCode::CONFLICT, &why),
    }
}

/// `GET /console/keys`.
pub async fn list(State(state): State<AppState>, c: Console, Query(n): Query<page::Flash>) -> Page {
    let tenant = c.tenant()?.to_owned();
    c.require(&state, SCOPE).await?;
    let client = conn(&state).await?;
    let keys = apikeys::list(&**client, &tenant).await.map_err(key_failed)?;
    let body = html! {
        (page::flash(n.notice.as_deref(), n.error.as_deref()))
        details.add {
            summary { "Create a key" }
            form.add method="post" action="/console/keys" {
                input type="hidden" name="csrf" value=(c.csrf());
                input name="name" placeholder="name (what it is for)" aria-label="name";
                @for s in SCOPES { label { input type="checkbox" name="scope" value=(s.as_str()) checked[s == Scope::Read]; " " (s.as_str()) } }
                label { "expires " input type="date" name="expires" aria-label="expires"; }
                button type="submit" { "Create" }
            }
        }
        (table(&c, &keys))
    };
    Ok(page::page(&c, "/keys", "API keys", body))
}

fn table(c: &Console, keys: &[KeyRow]) -> Markup {
    if keys.is_empty() {
        return page::empty("This tenant has no API keys.", html! { "Create one above, or with `pgcourier apikey create`." });
    }
    let now = Utc::now();
    html! {
        table.keys {
            thead { tr { th { "Prefix" } th { "Name" } th { "Scopes" } th { "Expires" } th { "Revoked" } th { "Last used" } th { span.sr { "revoke" } } } }
            tbody {
                @for (_, name, prefix, scopes, expires_at, revoked_at, last_used_at) in keys {
                    @let live = revoked_at.is_none_or(|t| t > now) && expires_at.is_none_or(|t| t > now);
                    tr {
                        td { code { "pgc_" (prefix) "_…" } @if c.actor() == format!("console:{prefix}") { " " span.muted { "(this session)" } } }
                        td { (name) }
                        td { (scopes.join(", ")) }
                        td { (page::opt_time(*expires_at)) }
                        td { (page::opt_time(*revoked_at)) }
                        td { (page::opt_time(*last_used_at)) }
                        td {
                            @if live {
                                form method="post" action={ "/console/keys/" (prefix) "/revoke" } {
                                    input type="hidden" name="csrf" value=(c.csrf());
                                    button type="submit" { "Revoke" }
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
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "scope")]
    scopes: Vec<String>,
    /// `YYYY-MM-DD`: the key stops at the start of that day (UTC).
    expires: Option<String>,
}

fn back(notice: Result<String, String>) -> Response {
    let q = match notice {
        Ok(n) => [("notice", n)],
        Err(e) => [("error", e)],
    };
    Redirect::to(&format!("/console/keys?{}", serde_urlencoded::to_string(q).unwrap_or_default())).into_response()
}

/// `POST /console/keys`: a new key, shown on the page this answers with and never again.
pub async fn create(State(state): State<AppState>, c: Console, Form(f): Form<CreateForm>) -> Page {
    c.check(&f.csrf)?;
    let tenant = c.tenant()?.to_owned();
    c.require(&state, SCOPE).await?;
    let mut scopes = Vec::new();
    for s in &f.scopes {
        match Scope::parse(s) {
            Some(s) if !scopes.contains(&s) => scopes.push(s),
            Some(_) => {}
            None => return Err(page::error(StatusCode::BAD_REQUEST, &format!("scope: {s:?} is not send, read or admin"))),
        }
    }
    if scopes.is_empty() {
        return Ok(back(Err("Choose at least one scope.".into())));
    }
    let expires_at = match f.expires.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        None => None,
        Some(d) => match NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(d) => Some(d.and_time(chrono::NaiveTime::MIN).and_utc()),
            Err(_) => return Ok(back(Err(format!("expires: {d:?} is not a date (YYYY-MM-DD)")))),
        },
    };
    if expires_at.is_some_and(|t| t <= Utc::now()) {
        return Ok(back(Err("expires: must be in the future".into())));
    }
    let name = f.name.trim();
    let client = conn(&state).await?;
    let new = apikeys::create_as(&**client, &tenant, name, &scopes, expires_at, &c.actor()).await.map_err(key_failed)?;
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let body = html! {
        p.notice role="status" { "Key " code { (new.prefix) } " created with " (scopes.join(", ")) "." }
        p { strong { "Copy it now: it is shown this once. " } "Only its SHA-256 is stored; a lost key cannot be shown again, only revoked and replaced." }
        pre.secret { (new.key) }
        p { "Send it as the " code { "x-api-key" } " header, or sign in to this console with it." }
        p { a href="/console/keys" { "Back to the keys" } }
    };
    Ok(page::page(&c, "/keys", "New API key", body))
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /console/keys/{prefix}/revoke`: the key stops working now (`et_api_key_revoke`).
pub async fn revoke(State(state): State<AppState>, c: Console, Path(prefix): Path<String>, Form(f): Form<RevokeForm>) -> Page {
    c.check(&f.csrf)?;
    let tenant = c.tenant()?.to_owned();
    c.require(&state, SCOPE).await?;
    let client = conn(&state).await?;
    Ok(match apikeys::revoke_as(&**client, Some(&tenant), &prefix, &c.actor()).await {
        Ok(true) if c.prefix() == prefix => {
            // the session's own key: the session ends with it
            Redirect::to("/console/sign-in?why=This+session%27s+key+was+revoked.").into_response()
        }
        Ok(true) => back(Ok(format!("Key {prefix} revoked."))),
        Ok(false) => {
            match apikeys::key_elsewhere(&**client, &tenant, &prefix).await {
                Ok(true) => c.log_cross_tenant(&**client, &tenant, "api_key", "prefix", prefix.as_str()).await,
                Ok(false) => {}
                Err(e) => return Err(failed(e)),
            }
            page::error(StatusCode::NOT_FOUND, "No such live API key for this tenant.")
        }
        Err(e) => key_failed(e),
    })
}
