//! The dead-letter queue: failure type, last error and provider response per message; retry one,
//! a selection, or every dead letter that matches the filter. The last runs as a job on this
//! daemon, in batches of [`BATCH`] (each message through `et_retry`, as the API retries one),
//! with its progress in `et_console_jobs` for the page that follows it.

use super::page::{self, count};
use super::session::{conn, failed, Console, Page};
use crate::db::api::{self as db, Action, DeadLetterFilter, DeadLetterRow};
use crate::db::apikeys::Scope;
use crate::db::console as jobs;
use crate::domain::vocab::Channel;
use crate::http::api::messages::{cursor, parse_cursor};
use crate::http::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::Form;
use maud::{html, Markup};
use serde::{Deserialize, Serialize};

/// Rows per page.
pub const PAGE: i64 = 50;
/// Messages a job retries per transaction.
pub const BATCH: i64 = 200;
/// The failure types of `et_dead_letters`.
const FAILURE_TYPES: [&str; 4] = ["permanent", "transient", "validation", "unknown"];

/// The page's filter, as its query parameters.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Filter {
    /// The database filter, or which parameter is wrong and why.
    fn parse(&self, limit: i64) -> Result<DeadLetterFilter, String> {
        let channel = match self.channel.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(c.parse::<Channel>().map_err(|_| format!("channel: {c:?} is not a channel"))?),
            None => None,
        };
        let failure_type = match self.failure_type.as_deref().filter(|t| !t.is_empty()) {
            Some(t) if FAILURE_TYPES.contains(&t) => Some(t.to_owned()),
            Some(t) => return Err(format!("failure_type: {t:?} is not one of {}", FAILURE_TYPES.join(", "))),
            None => None,
        };
        let after = match self.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(parse_cursor(c).ok_or("cursor: not a cursor from this page")?),
            None => None,
        };
        Ok(DeadLetterFilter { channel, failure_type, after, limit })
    }

    /// The filter alone (no cursor, no notices), for links and jobs.
    fn only_filter(&self) -> Filter {
        Filter { channel: self.channel.clone(), failure_type: self.failure_type.clone(), ..Filter::default() }
    }
}

/// `GET /console/dead-letters`.
pub async fn list(State(state): State<AppState>, c: Console, Query(f): Query<Filter>) -> Page {
    let tenant = c.tenant()?.to_owned();
    c.require(&state, Scope::Read).await?;
    let filter = match f.parse(PAGE + 1) {
        Ok(x) => x,
        Err(why) => return Err(page::error(StatusCode::BAD_REQUEST, &why)),
    };
    let client = conn(&state).await?;
    let rows = db::dead_letters(&client, &tenant, &filter).await.map_err(failed)?;
    let (rows, next) = crate::http::api::input::page(rows, PAGE, |d: &DeadLetterRow| cursor(d.dead_since, d.message_id));
    let only = f.only_filter();
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(&serde_urlencoded::to_string(&only).unwrap_or_default()).unwrap_or_default();
    let may_retry = c.can(Action::Retry.scope());
    let body = html! {
        (page::flash(f.notice.as_deref(), f.error.as_deref()))
        form.filters method="get" action="/console/dead-letters" {
            select name="channel" aria-label="channel" {
                option value="" { "any channel" }
                @for ch in Channel::ALL { option value=(ch.as_str()) selected[only.channel.as_deref() == Some(ch.as_str())] { (ch.as_str()) } }
            }
            select name="failure_type" aria-label="failure type" {
                option value="" { "any failure" }
                @for t in FAILURE_TYPES { option value=(t) selected[only.failure_type.as_deref() == Some(t)] { (t) } }
            }
            button type="submit" { "Filter" }
        }
        @if rows.is_empty() {
            (page::empty("No dead letters.", html! { "Messages land here when they fail for good. Nothing to do." }))
        } @else {
            @if may_retry {
                form.bulk method="post" action="/console/dead-letters/retry" {
                    input type="hidden" name="csrf" value=(c.csrf());
                    @if let Some(ch) = &only.channel { input type="hidden" name="channel" value=(ch); }
                    @if let Some(t) = &only.failure_type { input type="hidden" name="failure_type" value=(t); }
                    button type="submit" name="scope" value="all" { "Retry all matching this filter" }
                }
            }
            form method="post" action="/console/dead-letters/retry" {
                input type="hidden" name="csrf" value=(c.csrf());
                (table(&rows, may_retry))
                @if may_retry { button type="submit" name="scope" value="selected" { "Retry selected" } }
            }
        }
        (page::next_link("/console/dead-letters", &query, next))
    };
    Ok(page::page(&c, "/dead-letters", "Dead letters", body))
}

fn table(rows: &[DeadLetterRow], selectable: bool) -> Markup {
    html! {
        table.dead {
            thead { tr {
                @if selectable { th { span.sr { "select" } } }
                th { "Dead since" } th { "Channel" } th { "To" } th { "Subject" } th { "Failure" } th.num { "Attempts" } th { "Last error" } th { "Provider response" }
            } }
            tbody {
                @for d in rows {
                    tr {
                        @if selectable { td { input type="checkbox" name="id" value=(d.public_id) aria-label="select"; } }
                        td { a href={ "/console/messages/" (d.public_id) } { (page::time(d.dead_since)) } }
                        td { (d.channel.as_str()) " / " (d.provider.as_str()) }
                        td { (d.recipients.join(", ")) }
                        td { (d.subject.as_deref().unwrap_or("")) }
                        td { span class={ "badge f-" (d.failure_type) } { (d.failure_type) } }
                        td.num { (count(i64::from(d.attempts))) }
                        td.error { (d.last_error.as_deref().unwrap_or("")) }
                        td { @if let Some(p) = &d.provider_response { details { summary { (p.get("status").and_then(|s| s.as_str()).unwrap_or("response")) } (page::json(p)) } } }
                    }
                }
            }
        }
    }
}

/// Every field defaults (empty), so that a missing one is refused by the checks that name it
/// (a missing CSRF token is a wrong one: 403), never by the form parser.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RetryForm {
    csrf: String,
    /// `selected` (the ids) or `all` (everything matching the filter, as a job).
    scope: String,
    #[serde(default, rename = "id")]
    ids: Vec<String>,
    channel: Option<String>,
    failure_type: Option<String>,
}

/// `POST /console/dead-letters/retry`.
pub async fn retry(State(state): State<AppState>, c: Console, Form(f): Form<RetryForm>) -> Page {
    c.check(&f.csrf)?;
    let tenant = c.tenant()?.to_owned();
    c.require(&state, Action::Retry.scope()).await?;
    let filter = Filter { channel: f.channel, failure_type: f.failure_type, ..Filter::default() };
    if let Err(why) = filter.parse(BATCH) {
        return Err(page::error(StatusCode::BAD_REQUEST, &why));
    }
    match f.scope.as_str() {
        "selected" => retry_selected(&state, &c, &tenant, &f.ids, &filter).await,
        "all" => start(&state, &c, &tenant, filter).await,
        other => Err(page::error(StatusCode::BAD_REQUEST, &format!("scope: {other:?} is not selected or all"))),
    }
}

fn back(filter: &Filter, notice: Result<String, String>) -> Response {
    let mut f = filter.only_filter();
    match notice {
        Ok(n) => f.notice = Some(n),
        Err(e) => f.error = Some(e),
    }
    Redirect::to(&format!("/console/dead-letters?{}", serde_urlencoded::to_string(&f).unwrap_or_default())).into_response()
}

async fn retry_selected(state: &AppState, c: &Console, tenant: &str, ids: &[String], filter: &Filter) -> Page {
    if ids.is_empty() {
        return Ok(back(filter, Err("Select the dead letters to retry first.".into())));
    }
    let client = conn(state).await?;
    let (mut done, mut refused, mut last) = (0, 0, None);
    for id in ids {
        let Some(m) = crate::db::api::MessageRef::parse(id) else {
            refused += 1;
            continue;
        };
        match retry_one(&client, tenant, m, &c.actor()).await {
            Ok(Ok(())) => done += 1,
            Ok(Err(why)) => {
                refused += 1;
                last = Some(why);
            }
            Err(e) => return Err(failed(e)),
        }
    }
    let mut notice = format!("{done} queued again.");
    if refused > 0 {
        notice.push_str(&format!(" {refused} refused{}", last.map(|w| format!(": {w}")).unwrap_or_default()));
    }
    Ok(back(filter, if done > 0 { Ok(notice) } else { Err(notice) }))
}

/// Retry one message of `tenant` in its own transaction: `Ok(Err(why))` when the function or
/// the message's tenant refused it.
async fn retry_one(
    client: &deadpool_postgres::Object,
    tenant: &str,
    m: crate::db::api::MessageRef,
    actor: &str,
) -> Result<Result<(), String>, tokio_postgres::Error> {
    let Some(id) = db::message_id(client, tenant, m).await? else {
        return Ok(Err("no such message for this tenant".into()));
    };
    match db::act(client, tenant, id, Action::Retry, actor, None).await {
        Ok(_) => Ok(Ok(())),
        Err(e) => match super::message::refusal(&e) {
            Some(why) => Ok(Err(why)),
            None => Err(e),
        },
    }
}

/// Start the job that retries every dead letter matching `filter`, and go to its page.
async fn start(state: &AppState, c: &Console, tenant: &str, filter: Filter) -> Page {
    let client = conn(state).await?;
    let as_json = serde_json::to_value(filter.only_filter()).unwrap_or_default();
    let id = jobs::start_job(&client, tenant, "retry_dead_letters", &c.actor(), &as_json).await.map_err(failed)?;
    tokio::spawn(run_job(state.clone(), tenant.to_owned(), c.actor(), id, filter));
    Ok(Redirect::to(&format!("/console/jobs/{id}")).into_response())
}

/// The job: batches of dead letters matching the filter, each retried, until none is left or
/// the daemon stops. A message the function refuses stays and is passed over (the cursor moves
/// past it).
async fn run_job(state: AppState, tenant: String, actor: String, job: i64, filter: Filter) {
    let mut after = None;
    let outcome = loop {
        if state.shutdown.is_cancelled() {
            break Some("stopped: the daemon shut down; start the job again to go on");
        }
        let Ok(client) = state.pool.get().await else { break Some("stopped: the database is not answering") };
        let mut f = match filter.parse(BATCH) {
            Ok(f) => f,
            Err(_) => break Some("stopped: bad filter"),
        };
        f.after = after;
        let batch = match db::dead_letters(&client, &tenant, &f).await {
            Ok(b) => b,
            Err(_) => break Some("stopped: could not read the dead letters"),
        };
        if batch.is_empty() {
            break None;
        }
        let (mut done, mut refused, mut last) = (0, 0, None);
        for d in &batch {
            match retry_one(&client, &tenant, crate::db::api::MessageRef::Id(d.message_id), &actor).await {
                Ok(Ok(())) => done += 1,
                Ok(Err(why)) => {
                    refused += 1;
                    last = Some(why);
                }
                Err(_) => refused += 1,
            }
        }
        after = batch.last().map(|d| (d.dead_since, d.message_id));
        if jobs::job_progress(&client, &tenant, job, done, refused, last.as_deref(), None).await.is_err() {
            break Some("stopped: could not record progress");
        }
    };
    if let Ok(client) = state.pool.get().await {
        let (state_name, note) = match outcome {
            None => ("done", None),
            Some(why) => ("stopped", Some(why)),
        };
        if let Err(e) = jobs::job_progress(&client, &tenant, job, 0, 0, note, Some(state_name)).await {
            tracing::warn!(job, error = %crate::telemetry::one_line(&e), "could not record the end of a console job");
        }
    }
}

/// `GET /console/jobs/{id}`: a job's progress, refreshed every second while it runs.
pub async fn job(State(state): State<AppState>, c: Console, Path(id): Path<i64>) -> Page {
    let tenant = c.tenant()?.to_owned();
    c.require(&state, Scope::Read).await?;
    let client = conn(&state).await?;
    let j = match jobs::job(&client, &tenant, id).await {
        Ok(Some(j)) => j,
        Ok(None) => return Err(page::error(StatusCode::NOT_FOUND, "No such job for this tenant.")),
        Err(e) => return Err(failed(e)),
    };
    let url = format!("/console/jobs/{id}");
    let running = j.state == "running";
    let body = html! {
        div #job hx-get=(url) hx-select="#job" hx-swap="outerHTML" hx-trigger=[running.then_some("every 1s")] {
            p { "Retrying every dead letter matching " code { (j.filter.to_string()) } ", started by " code { (j.actor) } " at " (page::time(j.created_at)) "." }
            p.progress { strong { (count(i64::from(j.done))) } " queued again, " strong { (count(i64::from(j.refused))) } " refused · "
                span class={ "badge j-" (j.state) } { (j.state) } }
            @if let Some(n) = &j.note { p.muted { (n) } }
            @if running { p.muted { "Last progress " (page::time(j.updated_at)) "." } }
        }
        p { a href="/console/dead-letters" { "Back to the dead letters" } }
    };
    Ok(page::page(&c, "/dead-letters", &format!("Job {id}"), body))
}
