//! The console's live stream: `GET /console/live`, one Server-Sent Events stream per open page.
//!
//! Once a second it reads the tenant's counts by status from `et_message_counts` (one small
//! indexed query, whatever the size of et_messages). On the first reading, and whenever they
//! changed since the last one, it sends two events: `counts`, the counts line as HTML that the
//! page swaps in, and `changed`, on which the parts of a page that show messages (a list, a
//! message's state) fetch themselves again. A page with nothing changing costs the database
//! that one query a second (and one refresh of its live part when its stream connects).
//!
//! The stream ends when the session expires or the daemon stops.

use super::page::count;
use super::session::Console;
use crate::db::apikeys::Scope;
use crate::db::console as db;
use crate::domain::vocab::Status;
use crate::http::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Response;
use futures_util::Stream;
use maud::{html, Markup};
use std::convert::Infallible;
use std::time::Duration;

/// How often the stream looks.
pub const TICK: Duration = Duration::from_secs(1);

/// Every this many ticks the stream checks that its session is still live.
const RECHECK: u64 = 30;

/// The counts line: "3 queued · 1 sending · 250 sent".
pub fn counts_line(counts: &[(Status, i64)]) -> Markup {
    html! {
        p.live {
            @if counts.is_empty() { span.muted { "no messages" } }
            @for (i, (s, n)) in counts.iter().enumerate() {
                @if i > 0 { " · " }
                span class={ "c-" (s.as_str()) } { strong { (count(*n)) } " " (s.as_str().replace('_', " ")) }
            }
        }
    }
}

/// `GET /console/live`.
pub async fn stream(State(state): State<AppState>, c: Console) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Response> {
    c.require(&state, Scope::Read).await?;
    let tenant = c.tenant.clone();
    let token = c.token().to_owned();
    let stop = state.shutdown.clone();
    let pool = state.pool.clone();
    let events = async_stream(move |tx| async move {
        let mut last: Option<Vec<(Status, i64)>> = None;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for n in 1u64.. {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tx.closed() => return,
                _ = tick.tick() => {}
            }
            let Ok(client) = pool.get().await else { continue };
            // a session that ended (signed out, expired, its key revoked) ends its stream
            if n % RECHECK == 0 && !matches!(db::find_session(&client, &token).await, Ok(Some(s)) if s.key.is_ok()) {
                return;
            }
            let counts = db::live_counts(&client, tenant.as_deref()).await.ok();
            drop(client);
            let Some(counts) = counts else { continue };
            if last.as_ref() == Some(&counts) {
                continue;
            }
            let line = counts_line(&counts).into_string();
            last = Some(counts);
            if tx.send(Event::default().event("counts").data(line)).await.is_err() {
                return;
            }
            // on the first tick too: the page was drawn before this reading, and what changed in
            // between (a send right after an action's redirect, everything while a stream was cut
            // and reconnects) would otherwise show only after the next change
            if tx.send(Event::default().event("changed").data("1")).await.is_err() {
                return;
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// A stream fed by `produce` through a small channel; it ends when `produce` returns or the
/// client goes away (the send fails).
fn async_stream<F, Fut>(produce: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(produce(tx));
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) })
}
