//! `GET /v1/messages`: the filters (also those of the bulk retry), offset and keyset paging.
//!
//! `to` is the seed's name for two things: a recipient (`?to=ann@example.com`) and the end of
//! a date range (`?from=2026-02-01&to=2026-02-25`). A value shaped like a date (`YYYY-MM-DD`,
//! optionally followed by a time) is the range's end; anything else is a recipient. No
//! recipient looks like that: emails have an `@`, E.164 numbers a `+`, chat ids no dashes. Use
//! `recipient=` to name a recipient without relying on the rule.

use super::super::input::{self, QueryParams};
use super::super::views::{ErrorBody, MessagePage, MessageView};
use crate::db::api::{self as db, ListFilter};
use crate::db::apikeys::Scope;
use crate::domain::vocab::{self, Channel, Direction, Status, UnknownValue};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::AppState;
use axum::extract::State;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;
/// Deeper than this, page with `cursor` (an offset makes the database walk every skipped row).
pub const MAX_OFFSET: i64 = 10_000;

/// Query parameters of `GET /v1/messages`, parsed as documented (`status` and `tags` may be
/// repeated: their values are joined with commas first).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListParams {
    /// Delivery statuses: repeat the parameter or separate them with commas (any of them).
    #[param(value_type = Option<Vec<Status>>, style = Form, explode)]
    status: Option<String>,
    direction: Option<Direction>,
    thread_id: Option<i64>,
    channel: Option<Channel>,
    /// Either the end of the date range (a value shaped like a date: `2026-02-25` includes that
    /// whole day, UTC; an RFC 3339 time is inclusive), or a recipient address (anything else).
    to: Option<String>,
    /// A recipient address (in `to`), compared as the channel compares addresses.
    recipient: Option<String>,
    /// Created at or after (RFC 3339, or `YYYY-MM-DD`: that day's midnight UTC).
    from: Option<String>,
    /// Created before (exclusive; RFC 3339 or `YYYY-MM-DD`).
    until: Option<String>,
    /// `metadata.category` equals this.
    category: Option<String>,
    /// Tags that `metadata.tags` must all hold: repeat the parameter or separate with commas.
    #[param(value_type = Option<Vec<String>>, style = Form, explode)]
    tags: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// Rows to skip, 0 to 10,000 (deeper: use `cursor`).
    #[param(minimum = 0, maximum = 10000)]
    offset: Option<i64>,
    /// The `nextCursor` of the previous page (keyset paging: no gaps or repeats while rows are
    /// added). Also accepted as `after`.
    cursor: Option<String>,
    /// Old name of `cursor`.
    #[deprecated]
    after: Option<String>,
}

/// Friendlier rules than serde's for the typed parameters.
const HINTS: &[(&str, &str)] = &[
    ("threadId", "is not a thread id (an integer)"),
    ("limit", "is not a number from 1 to 500"),
    ("offset", "is not a number from 0 to 10000 (deeper pages: use cursor)"),
];

pub(crate) fn cursor(at: DateTime<Utc>, id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{id}", at.timestamp_micros()))
}

/// The oldest time a PostgreSQL `timestamptz` holds (4714-11-24 BC), in microseconds since
/// the Unix epoch; chrono goes further back, so a forged cursor must be checked against it.
const OLDEST_TIMESTAMP_MICROS: i64 = -210_866_803_200_000_000;

pub(crate) fn parse_cursor(s: &str) -> Option<(DateTime<Utc>, i64)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(s).ok()?).ok()?;
    let (micros, id) = raw.split_once(':')?;
    let micros: i64 = micros.parse().ok().filter(|m| *m >= OLDEST_TIMESTAMP_MICROS)?;
    Some((DateTime::from_timestamp_micros(micros)?, id.parse().ok()?))
}

/// A value of one of the vocabulary lists, or 400 naming `field` and the allowed values.
pub(crate) fn one_of<T: std::str::FromStr<Err = UnknownValue>>(field: &str, v: &str) -> Result<T, ApiError> {
    v.parse().map_err(|e: UnknownValue| ApiError::field(field, format!("{v:?} is not one of {}", vocab::Listed(e.allowed))))
}

/// `YYYY-MM-DD` at the start (digits and dashes in those places): a date, not an address.
fn date_shaped(v: &str) -> bool {
    let b = v.trim().as_bytes();
    b.len() >= 10 && b[4] == b'-' && b[7] == b'-' && [0, 1, 2, 3, 5, 6, 8, 9].iter().all(|&i| b[i].is_ascii_digit())
}

/// The exclusive end of a range that `to` closes: a whole day (the next midnight, UTC), or
/// just after an RFC 3339 time.
fn range_end(v: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(d) = NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d") {
        let next = d.succ_opt().ok_or_else(|| ApiError::field("to", format!("{v:?} is out of range")))?;
        return Ok(next.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    DateTime::parse_from_rfc3339(v.trim()).map(|t| t.with_timezone(&Utc) + Duration::microseconds(1)).map_err(|_| {
        ApiError::field("to", format!("{v:?} looks like a date but is not one: YYYY-MM-DD or RFC 3339 like 2026-02-25T12:00:00Z"))
    })
}

/// Comma-separated values, each trimmed and non-empty.
fn items<'a>(field: &str, v: &'a str) -> Result<Vec<&'a str>, ApiError> {
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ApiError::field(field, format!("{v:?} has an empty item")));
    }
    Ok(parts)
}

/// Parse the filters; a parameter not in `allowed` or unknown is 400 naming it.
#[allow(deprecated)] // `after`, read as the old name of `cursor`
pub(crate) fn filter(params: Vec<(String, String)>, allowed: &[&str]) -> Result<ListFilter, ApiError> {
    // the names this caller takes; repeated status and tags joined into one comma list
    let mut folded: Vec<(String, String)> = Vec::new();
    for (k, v) in params {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::field(k.as_str(), format!("unknown parameter (expected {})", allowed.join(", "))));
        }
        match folded.iter_mut().find(|(seen, _)| *seen == k && matches!(k.as_str(), "status" | "tags")) {
            Some((_, joined)) => *joined = format!("{joined},{v}"),
            None => folded.push((k, v)),
        }
    }
    let p: ListParams = input::query(&folded, HINTS)?;
    let mut f = ListFilter { limit: DEFAULT_LIMIT, ..ListFilter::default() };
    if let Some(v) = &p.status {
        for s in items("status", v)? {
            f.statuses.push(one_of("status", s)?);
        }
    }
    f.direction = p.direction;
    f.channel = p.channel;
    f.thread_id = p.thread_id;
    let mut until: Vec<DateTime<Utc>> = Vec::new();
    for (k, v) in [("to", &p.to), ("recipient", &p.recipient)] {
        match v {
            Some(v) if k == "to" && date_shaped(v) => until.push(range_end(v)?),
            Some(v) if v.trim().is_empty() => return Err(ApiError::field(k, "must not be empty")),
            Some(_) if f.recipient.is_some() => {
                return Err(ApiError::field(k, "names a second recipient (give one of to= and recipient=)"))
            }
            Some(v) => f.recipient = Some(v.clone()),
            None => {}
        }
    }
    f.from = p.from.as_deref().map(|v| input::timestamp("from", v, true)).transpose()?;
    if let Some(v) = &p.until {
        until.push(input::timestamp("until", v, true)?);
    }
    f.until = until.into_iter().min();
    f.category = match p.category {
        Some(c) if c.is_empty() => return Err(ApiError::field("category", "must not be empty")),
        c => c,
    };
    if let Some(v) = &p.tags {
        f.tags = items("tags", v)?.into_iter().map(str::to_owned).collect();
    }
    if let Some(l) = p.limit {
        f.limit = input::limit(&l.to_string(), MAX_LIMIT)?;
    }
    if let Some(o) = p.offset {
        f.offset = Some(o).filter(|o| (0..=MAX_OFFSET).contains(o)).ok_or_else(|| {
            ApiError::field("offset", format!("\"{o}\" is not a number from 0 to {MAX_OFFSET} (deeper pages: use cursor)"))
        })?;
    }
    if p.cursor.is_some() && p.after.is_some() {
        return Err(ApiError::field("after", "a second cursor (cursor and after are the same parameter)"));
    }
    if let Some((k, v)) = [("cursor", &p.cursor), ("after", &p.after)].into_iter().find_map(|(k, v)| v.as_ref().map(|v| (k, v))) {
        f.after = Some(parse_cursor(v).ok_or_else(|| ApiError::field(k, "is not a cursor from nextCursor"))?);
    }
    Ok(f)
}

/// Every parameter of the list.
pub(crate) const LIST: &[&str] = &[
    "status",
    "direction",
    "threadId",
    "channel",
    "to",
    "recipient",
    "from",
    "until",
    "category",
    "tags",
    "limit",
    "offset",
    "cursor",
    "after",
];

/// Messages of the caller's tenant, newest first: filtered, with `limit` / `offset`, and a
/// keyset `cursor` for deep pages. Lists carry no bodies.
#[utoipa::path(
    get,
    path = "/v1/messages",
    tag = "messages",
    params(ListParams),
    responses(
        (status = 200, description = "A page of messages", body = MessagePage),
        (status = 400, description = "A parameter is invalid, repeated or unknown (named in error.field)", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown, expired or revoked one", body = ErrorBody),
        (status = 403, description = "The key lacks the read scope", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<QueryParams, ApiError>,
) -> Result<Json<MessagePage>, ApiError> {
    caller.require(&state, Scope::Read).await?;
    let QueryParams(params) = query?;
    let mut f = filter(params, LIST)?;
    let limit = f.limit;
    f.limit += 1;
    let client = state.pool.get().await?;
    let rows = db::list_messages(&client, &caller.0.tenant_id, &f).await.map_err(ApiError::internal)?;
    let (rows, next_cursor) = input::page(rows, limit, |r| cursor(r.created_at, r.id));
    Ok(Json(MessagePage { messages: rows.into_iter().map(MessageView::from).collect(), next_cursor }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &[(&str, &str)]) -> Result<ListFilter, ApiError> {
        filter(q.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(), LIST)
    }

    #[test]
    fn cursors_round_trip() {
        let at = DateTime::from_timestamp_micros(1_760_000_000_123_456).unwrap();
        assert_eq!(parse_cursor(&cursor(at, 42)), Some((at, 42)));
        assert_eq!(parse_cursor("garbage!"), None);
    }

    #[test]
    fn bad_parameters_are_named() {
        let bad = |k: &str, v: &str| parse(&[(k, v)]).unwrap_err().field;
        assert_eq!(bad("status", "nope").as_deref(), Some("status"));
        assert_eq!(bad("status", "sent,,failed").as_deref(), Some("status"));
        assert_eq!(bad("limit", "0").as_deref(), Some("limit"));
        assert_eq!(bad("limit", "501").as_deref(), Some("limit"));
        assert_eq!(bad("offset", "-1").as_deref(), Some("offset"));
        assert_eq!(bad("offset", "10001").as_deref(), Some("offset"));
        assert_eq!(bad("from", "yesterday").as_deref(), Some("from"));
        assert_eq!(bad("to", "2026-02-30").as_deref(), Some("to"));
        assert_eq!(bad("colour", "red").as_deref(), Some("colour"));
        assert_eq!(parse(&[]).unwrap().limit, DEFAULT_LIMIT);
    }

    #[test]
    fn a_date_shaped_to_ends_the_range_and_anything_else_is_a_recipient() {
        let f = parse(&[("from", "2026-02-01"), ("to", "2026-02-25")]).unwrap();
        assert_eq!(f.from.unwrap().to_rfc3339(), "2026-02-01T00:00:00+00:00");
        assert_eq!(f.until.unwrap().to_rfc3339(), "2026-02-26T00:00:00+00:00", "the whole day of the 25th");
        assert_eq!(f.recipient, None);
        let f = parse(&[("to", "2026-02-25T12:00:00Z")]).unwrap();
        assert_eq!(
            f.until.unwrap().timestamp_micros(),
            DateTime::parse_from_rfc3339("2026-02-25T12:00:00Z").unwrap().timestamp_micros() + 1
        );
        for r in ["ann@example.com", "+15551234567", "-1001234567890", "20260225"] {
            assert_eq!(parse(&[("to", r)]).unwrap().recipient.as_deref(), Some(r));
        }
        assert_eq!(parse(&[("to", "2026-02-25"), ("recipient", "a@b.example")]).unwrap().recipient.as_deref(), Some("a@b.example"));
        assert_eq!(parse(&[("to", "a@b.example"), ("recipient", "c@d.example")]).unwrap_err().field.as_deref(), Some("recipient"));
        // the earlier of until and a date-shaped to
        let f = parse(&[("until", "2026-02-10"), ("to", "2026-02-25")]).unwrap();
        assert_eq!(f.until.unwrap().to_rfc3339(), "2026-02-10T00:00:00+00:00");
    }

    #[test]
    fn statuses_and_tags_repeat_or_take_commas() {
        let f = parse(&[("status", "failed,sent"), ("status", "queued"), ("tags", "a, b"), ("tags", "c")]).unwrap();
        assert_eq!(f.statuses, vec![Status::Failed, Status::Sent, Status::Queued]);
        assert_eq!(f.tags, vec!["a", "b", "c"]);
        assert_eq!(parse(&[("limit", "5"), ("limit", "6")]).unwrap_err().field.as_deref(), Some("limit"));
    }
}
