//! Signing in to the console with an API key, the session that follows, and the checks every
//! state-changing request passes.
//!
//! - Sign-in takes a key, judges it as the API does ([`apikeys::authenticate`]) and opens a
//!   server-side session: the browser gets a random token in an `HttpOnly`, `SameSite=Strict`
//!   cookie scoped to `/console` (`Secure` when the console is reached over HTTPS); the table keeps
//!   only the token's SHA-256. Every request re-judges the key the session was opened with, so
//!   revoking a key or deactivating its tenant ends its console sessions at once.
//! - What a session may do is its key's: a tenant key's scopes (`read` views; `send` retries and
//!   cancels; `admin` approves, rejects and takes over), the same [`Scope`] checks the API makes.
//!   A platform key sees every tenant (with a tenant switcher) and may act on each.
//! - Every POST carries the session's CSRF token (derived from the session token, so it needs no
//!   storage and changes with every sign-in), and a POST whose `Origin` is another site is refused.
//!   Every action is recorded with the actor `console:<key prefix>`.

use super::page;
use crate::db::apikeys::{self, Authenticated, Rejected, Scope};
use crate::db::console as db;
use crate::http::AppState;
use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine;
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "pgc_console";

/// A signed-in console request.
pub struct Console {
    /// The session token from the cookie (CSRF tokens derive from it).
    token: String,
    /// Who acts: the key the session was opened with, judged now.
    pub key: Authenticated,
    /// The tenant the pages show: the key's own, or a platform session's choice (`None`: all
    /// tenants, the overview only).
    pub tenant: Option<String>,
    /// Every tenant, for a platform session's switcher (empty for a tenant key).
    pub tenants: Vec<String>,
}

impl Console {
    pub fn is_platform(&self) -> bool {
        matches!(self.key, Authenticated::Platform(_))
    }

    /// The prefix of the key the session was opened with (what the security log names).
    pub fn prefix(&self) -> &str {
        match &self.key {
            Authenticated::Tenant(p) => &p.prefix,
            Authenticated::Platform(p) => &p.prefix,
        }
    }

    /// `console:<key prefix>`: the actor recorded on everything this session does.
    pub fn actor(&self) -> String {
        format!("console:{}", self.prefix())
    }

    /// Whether the key may do what needs `scope` (a platform key may do everything).
    pub fn can(&self, scope: Scope) -> bool {
        match &self.key {
            Authenticated::Tenant(p) => p.has(scope),
            Authenticated::Platform(_) => true,
        }
    }

    /// The session token (the live stream re-checks its session with it).
    pub(super) fn token(&self) -> &str {
        &self.token
    }

    /// The CSRF token of this session: SHA-256 of a label and the session token.
    pub fn csrf(&self) -> String {
        csrf_of(&self.token)
    }

    /// The tenant a page about one tenant's rows shows, or the page that says to choose one.
    pub fn tenant(&self) -> Result<&str, Response> {
        self.tenant
            .as_deref()
            .ok_or_else(|| page::error(StatusCode::BAD_REQUEST, "Choose a tenant with the switcher at the top of the page first."))
    }

    /// Record that this console asked for another tenant's `resource` (found by `field` =
    /// `value`): the API's `cross_tenant_access` security event, `via: console`. The caller
    /// answers 404 either way.
    pub async fn log_cross_tenant(
        &self,
        client: &impl tokio_postgres::GenericClient,
        tenant: &str,
        resource: &str,
        field: &str,
        value: impl Into<serde_json::Value>,
    ) {
        let detail = serde_json::json!({ "resource": resource, field: value.into(), "via": "console" });
        let _ = apikeys::security_event(client, Some(tenant), self.prefix(), "cross_tenant_access", &detail).await;
    }

    /// 403 unless the key has `scope`; logged as the API logs a missing scope.
    pub async fn require(&self, state: &AppState, scope: Scope) -> Result<(), Response> {
        if self.can(scope) {
            return Ok(());
        }
        if let (Ok(client), Authenticated::Tenant(p)) = (state.pool.get().await, &self.key) {
            let detail = serde_json::json!({ "needed": scope.as_str(), "has": p.scopes, "via": "console" });
            let _ = apikeys::security_event(&**client, Some(&p.tenant_id), &p.prefix, "missing_scope", &detail).await;
        }
        // the refusal keeps a way out: a key without read is otherwise stuck on this page
        let csrf = self.csrf();
        Err(page::bare(
            StatusCode::FORBIDDEN,
            "Forbidden",
            maud::html! {
                p.error { "This API key lacks the " (scope.as_str()) " scope." }
                p { a href="/console" { "Back to the console" } }
                (page::sign_out_form(&csrf, "Sign in with another key"))
            },
        ))
    }

    /// Check a form's CSRF token; a mismatch is 403.
    pub fn check(&self, given: &str) -> Result<(), Response> {
        let want = self.csrf();
        // compare the hashes, so that the time taken says nothing about the expected token
        if Sha256::digest(given.as_bytes()) == Sha256::digest(want.as_bytes()) {
            Ok(())
        } else {
            Err(page::error(StatusCode::FORBIDDEN, "This form has expired or was not sent by the console. Reload the page and try again."))
        }
    }
}

fn csrf_of(token: &str) -> String {
    hex::encode(Sha256::digest(format!("pgcourier console csrf\0{token}").as_bytes()))
}

/// Where a request without a live session goes.
fn to_sign_in(parts: &Parts, why: Option<&str>) -> Response {
    let next = if parts.method == Method::GET { parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/console") } else { "/console" };
    let mut q = vec![("next", next)];
    if let Some(why) = why {
        q.push(("why", why));
    }
    Redirect::to(&format!("/console/sign-in?{}", serde_urlencoded::to_string(&q).unwrap_or_default())).into_response()
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(token) = jar.get(COOKIE).map(|c| c.value().to_owned()) else {
            return Err(to_sign_in(parts, None));
        };
        let client = state.pool.get().await.map_err(|_| unavailable())?;
        let Some(found) = db::find_session(&client, &token).await.map_err(failed)? else {
            return Err(to_sign_in(parts, Some("Your session has ended; sign in again.")));
        };
        let key = match found.key {
            Ok(key) => key,
            Err(why) => {
                let _ = db::close_session(&client, &token).await;
                let message = match why {
                    Rejected::Revoked => "The key this session was opened with was revoked.",
                    Rejected::Expired => "The key this session was opened with has expired.",
                    Rejected::TenantInactive => "This key's tenant is deactivated.",
                    Rejected::Unknown => "Sign in again.",
                };
                return Err(to_sign_in(parts, Some(message)));
            }
        };
        let (tenant, tenants) = match &key {
            Authenticated::Tenant(p) => (Some(p.tenant_id.clone()), Vec::new()),
            Authenticated::Platform(_) => {
                let all = db::tenants(&client).await.map_err(failed)?;
                (found.viewing_tenant, all.into_iter().map(|(id, _, _)| id).collect())
            }
        };
        Ok(Console { token, key, tenant, tenants })
    }
}

/// What a console handler answers: the page, or early, the page that says why not (sign in,
/// forbidden, not found, the database is away).
pub type Page = Result<Response, Response>;

/// A pooled connection, or the 503 page.
pub async fn conn(state: &AppState) -> Result<deadpool_postgres::Object, Response> {
    state.pool.get().await.map_err(|_| unavailable())
}

/// 503 page: the database is not answering.
pub fn unavailable() -> Response {
    page::error(StatusCode::SERVICE_UNAVAILABLE, "The database is not answering; try again in a moment.")
}

/// A database error while serving a page: a statement timeout is 503 (the page asked too
/// much), anything else 500 and logged whole.
pub fn failed(e: tokio_postgres::Error) -> Response {
    if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) {
        return page::error(StatusCode::SERVICE_UNAVAILABLE, "This page took too long to read; narrow the filter and try again.");
    }
    let _ = crate::http::error::ApiError::internal(e);
    page::error(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on our side; it has been logged.")
}

/// Refuse a state-changing request whose `Origin` (or, without one, `Referer`) is another site.
/// Browsers send Origin on every cross-site POST; SameSite=Strict already keeps the cookie off
/// them, and this also stops a cross-site sign-in.
pub async fn same_origin(req: Request, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD && !from_here(req.headers()) {
        return page::error(StatusCode::FORBIDDEN, "This request came from another site.");
    }
    next.run(req).await
}

fn from_here(h: &HeaderMap) -> bool {
    let Some(host) = h.get(header::HOST).and_then(|v| v.to_str().ok()) else { return true };
    let source = h.get(header::ORIGIN).or_else(|| h.get(header::REFERER)).and_then(|v| v.to_str().ok());
    match source {
        None => true,
        Some(s) => {
            let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).unwrap_or("");
            rest.split('/').next() == Some(host)
        }
    }
}

/// Whether the browser reached us over HTTPS (directly, or through a proxy that says so).
fn over_https(h: &HeaderMap, state: &AppState) -> bool {
    let forwarded = h.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p.eq_ignore_ascii_case("https"));
    forwarded || state.config.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
}

#[derive(Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
    why: Option<String>,
}

/// Only a path of ours may be the page after sign-in (never another site).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console") && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/console".to_owned(),
    }
}

fn sign_in_page(status: StatusCode, next: &str, message: Option<&str>) -> Response {
    page::bare(
        status,
        "Sign in",
        html! {
            @if let Some(m) = message { p.error role="alert" { (m) } }
            form.signin method="post" action="/console/sign-in" {
                input type="hidden" name="next" value=(next);
                label for="key" { "API key" }
                input #key type="password" name="key" autocomplete="off" required autofocus placeholder="pgc_…";
                button type="submit" { "Sign in" }
            }
            p.muted {
                "Sign in with a tenant's API key (its scopes decide what you may do) or a platform key (every tenant). "
                "pgcourier up prints the demo tenant's key; pgcourier apikey create makes one."
            }
        },
    )
}

/// `GET /console/sign-in`.
pub async fn sign_in_form(Query(q): Query<SignInQuery>) -> Response {
    sign_in_page(StatusCode::OK, &safe_next(q.next.as_deref()), q.why.as_deref())
}

/// Every field defaults (empty), so that a missing one is refused by the checks that name it
/// (a missing CSRF token is a wrong one: 403), never by the form parser.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignIn {
    key: String,
    next: Option<String>,
}

/// `POST /console/sign-in`: a session for a good key, the form again (401) for any other.
pub async fn sign_in(State(state): State<AppState>, headers: HeaderMap, jar: CookieJar, Form(form): Form<SignIn>) -> Page {
    let next = safe_next(form.next.as_deref());
    let key = form.key.trim();
    let client = conn(&state).await?;
    let who = apikeys::authenticate(&**client, key).await.map_err(failed)?;
    let who = match who {
        Ok(who) => who,
        Err(why) => {
            let shown: String = key.chars().take(12).collect();
            let detail = serde_json::json!({ "path": "/console/sign-in" });
            let action = match why {
                Rejected::Unknown => "unknown_api_key",
                Rejected::Expired => "expired_api_key",
                Rejected::Revoked => "revoked_api_key",
                Rejected::TenantInactive => "inactive_tenant_key",
            };
            let _ = apikeys::security_event(&**client, None, &shown, action, &detail).await;
            let message = match why {
                Rejected::TenantInactive => "This key's tenant is deactivated.",
                Rejected::Expired => "This key has expired.",
                Rejected::Revoked => "This key was revoked.",
                Rejected::Unknown => "No such API key.",
            };
            return Ok(sign_in_page(StatusCode::UNAUTHORIZED, &next, Some(message)));
        }
    };
    let key_id = match &who {
        Authenticated::Tenant(p) => p.key_id,
        Authenticated::Platform(p) => p.key_id,
    };
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let ttl = state.config.console_session_ttl;
    let expires = chrono::Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(12));
    if let Err(e) = db::open_session(&client, &token, key_id, expires).await {
        return Err(failed(e));
    }
    let cookie = Cookie::build((COOKIE, token))
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(over_https(&headers, &state))
        .build();
    Ok((jar.add(cookie), Redirect::to(&next)).into_response())
}

/// Every field defaults (empty), so that a missing one is refused by the checks that name it
/// (a missing CSRF token is a wrong one: 403), never by the form parser.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CsrfOnly {
    csrf: String,
}

/// `POST /console/sign-out`: the session is deleted and the cookie cleared.
pub async fn sign_out(State(state): State<AppState>, c: Console, jar: CookieJar, Form(form): Form<CsrfOnly>) -> Page {
    c.check(&form.csrf)?;
    let client = conn(&state).await?;
    if let Err(e) = db::close_session(&client, &c.token).await {
        return Err(failed(e));
    }
    let gone = Cookie::build((COOKIE, "")).path("/console").build();
    Ok((jar.remove(gone), Redirect::to("/console/sign-in?why=Signed+out.")).into_response())
}

/// Every field defaults (empty), so that a missing one is refused by the checks that name it
/// (a missing CSRF token is a wrong one: 403), never by the form parser.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Switch {
    csrf: String,
    tenant: String,
}

/// `POST /console/tenant`: a platform session's tenant switcher.
pub async fn switch_tenant(State(state): State<AppState>, c: Console, Form(form): Form<Switch>) -> Page {
    c.check(&form.csrf)?;
    if !c.is_platform() {
        return Err(page::error(StatusCode::FORBIDDEN, "A tenant's key sees only its own tenant."));
    }
    let client = conn(&state).await?;
    let tenant = Some(form.tenant.as_str()).filter(|t| !t.is_empty());
    match db::view_tenant(&client, &c.token, tenant).await.map_err(failed)? {
        true => Ok(Redirect::to("/console").into_response()),
        false => Err(page::error(StatusCode::NOT_FOUND, "No such tenant.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_paths_follow_sign_in() {
        assert_eq!(safe_next(Some("/console/messages?status=failed")), "/console/messages?status=failed");
        assert_eq!(safe_next(Some("https://evil.example/")), "/console");
        assert_eq!(safe_next(Some("//evil.example/console")), "/console");
        assert_eq!(safe_next(None), "/console");
    }

    #[test]
    fn csrf_tokens_differ_per_session() {
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert_eq!(csrf_of("a"), csrf_of("a"));
    }
}
