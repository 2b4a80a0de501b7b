//! The console's page frame (head, navigation, tenant switcher, sign-out), its error page, and
//! the small pieces every view draws with: status badges, times, counts, empty states, pagers.
//! maud escapes every value it is given; nothing here builds HTML from strings.

use super::assets;
use super::session::Console;
use crate::db::console::COUNT_CAP;
use crate::domain::vocab::Status;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

/// The Content-Security-Policy of every console page: only the console's own files, no inline
/// script, no eval, no framing by others. Message previews are framed from the same origin and
/// carry their own, stricter policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                       frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The views, in navigation order: (path under /console, label).
const NAV: [(&str, &str); 9] = [
    ("", "Overview"),
    ("/messages", "Messages"),
    ("/approvals", "Approvals"),
    ("/dead-letters", "Dead letters"),
    ("/conversations", "Conversations"),
    ("/suppressions", "Suppressions"),
    ("/sessions", "Sessions"),
    ("/webhooks", "Webhooks"),
    ("/keys", "API keys"),
];

/// An HTML response with the console's headers.
pub fn html_response(status: StatusCode, body: Markup) -> Response {
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    res
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            // htmx without eval and without the inline style it would add for indicators (the CSP forbids both)
            meta name="htmx-config" content=r#"{"allowEval":false,"includeIndicatorStyles":false,"allowScriptTags":false}"#;
            title { (title) " · pgcourier" }
            link rel="stylesheet" href=(assets::href("console.css"));
            script src=(assets::href("htmx.js")) defer {}
            script src=(assets::href("htmx-sse.js")) defer {}
            script src=(assets::href("console.js")) defer {}
        }
    }
}

/// A signed-in page: navigation with `active` marked, the tenant switcher for a platform
/// session, the live counts stream, then `body`.
pub fn page(c: &Console, active: &str, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body hx-ext="sse" sse-connect="/console/live" {
                header.top {
                    a.brand href="/console" { "pgcourier" }
                    nav {
                        @for (path, label) in NAV {
                            a href={ "/console" (path) } class=[(path == active).then_some("active")] { (label) }
                        }
                    }
                    div.who {
                        @if c.is_platform() {
                            form.switch method="post" action="/console/tenant" {
                                input type="hidden" name="csrf" value=(c.csrf());
                                label { "Tenant "
                                    select name="tenant" {
                                        option value="" selected[c.tenant.is_none()] { "all tenants" }
                                        @for t in &c.tenants {
                                            option value=(t) selected[c.tenant.as_deref() == Some(t.as_str())] { (t) }
                                        }
                                    }
                                }
                                button type="submit" { "Switch" }
                            }
                        } @else {
                            span.tenant { "tenant " strong { (c.tenant.as_deref().unwrap_or("")) } }
                        }
                        span.key title="the API key this console is signed in with" { (c.actor()) }
                        (sign_out_form(&c.csrf(), "Sign out"))
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

/// A page outside the signed-in frame (sign-in, errors).
pub fn bare(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    html_response(status, markup)
}

/// The sign-out form (a POST with the session's CSRF token), labelled `label`.
pub fn sign_out_form(csrf: &str, label: &str) -> Markup {
    html! {
        form method="post" action="/console/sign-out" {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { (label) }
        }
    }
}

/// An error page: what went wrong and where to go.
pub fn error(status: StatusCode, message: &str) -> Response {
    bare(
        status,
        status.canonical_reason().unwrap_or("Error"),
        html! {
            p.error { (message) }
            p { a href="/console" { "Back to the console" } }
        },
    )
}

/// The notice or error an action's redirect carries in the URL (`?notice=` / `?error=`).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Flash {
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// A notice or error carried in the URL after an action (`?notice=` / `?error=`).
pub fn flash(notice: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        @if let Some(n) = notice { p.notice role="status" { (n) } }
        @if let Some(e) = error { p.error role="alert" { (e) } }
    }
}

pub fn status_badge(s: Status) -> Markup {
    html! { span class={ "badge s-" (s.as_str()) } { (s.as_str().replace('_', " ")) } }
}

/// A time as UTC, with the full value on hover.
pub fn time(t: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) title=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S")) } }
}

pub fn opt_time(t: Option<DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => time(t),
        None => html! { span.muted { "—" } },
    }
}

/// 1234567 → "1,234,567".
pub fn count(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{out}")
}

/// A count taken up to [`COUNT_CAP`]: at the cap it reads "10,000+".
pub fn capped(n: i64) -> String {
    if n >= COUNT_CAP {
        format!("{}+", count(COUNT_CAP))
    } else {
        count(n)
    }
}

/// Seconds as "4 s", "3 min", "2 h".
pub fn age(secs: f64) -> String {
    match secs {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

/// What an empty list says: why it is empty and what to do.
pub fn empty(what: &str, hint: Markup) -> Markup {
    html! {
        div.empty {
            p { strong { (what) } }
            p { (hint) }
        }
    }
}

/// A "next page" link carrying the current filters plus the cursor.
pub fn next_link(base: &str, query: &[(String, String)], cursor: Option<String>) -> Markup {
    html! {
        @if let Some(cursor) = cursor {
            @let q = query.iter().filter(|(k, _)| k != "cursor" && k != "notice" && k != "error").cloned()
                .chain(std::iter::once(("cursor".to_owned(), cursor))).collect::<Vec<_>>();
            p.pager { a href={ (base) "?" (serde_urlencoded::to_string(&q).unwrap_or_default()) } { "Older →" } }
        }
    }
}

/// Text shown as-is in a pre block (bodies, JSON).
pub fn pre(text: &str) -> Markup {
    html! { pre { (text) } }
}

/// JSON, indented.
pub fn json(v: &serde_json::Value) -> Markup {
    pre(&serde_json::to_string_pretty(v).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_people_write_them() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(capped(COUNT_CAP), "10,000+");
        assert_eq!(capped(12), "12");
    }
}
