//! The JSON error body every refused request gets: `{"error": {"code", "message", "field"}}`,
//! and how database errors become one: the client's fault (a trigger's or constraint's refusal,
//! a value the database cannot take) is a 4xx with the database's message and column; a
//! database that is away is a 503; anything else is a 500 whose log line carries the SQLSTATE,
//! message, detail, hint, table, column and constraint (the response says nothing of them).

use crate::telemetry::one_line as chain;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio_postgres::error::DbError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `invalid_field`, `not_found`, `unauthorized`.
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
    /// Seconds for the `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None, retry_after: None }
    }

    /// 400: `field` breaks `rule`.
    pub fn field(field: impl Into<String>, rule: impl Into<String>) -> ApiError {
        let field = field.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_field",
            message: format!("{field}: {}", rule.into()),
            field: Some(field),
            retry_after: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 that says nothing about whether the thing exists for someone else.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 429: the tenant's `limit` is reached; retry after `seconds`. The limit is named in `field`.
    pub fn too_many(limit: &str, message: impl Into<String>, seconds: u64) -> ApiError {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "rate_limited",
            message: message.into(),
            field: Some(limit.to_owned()),
            retry_after: Some(seconds),
        }
    }

    /// 500, logged with everything the error carries (a database error's SQLSTATE, message,
    /// detail, hint, table, column, constraint and context, wherever it sits in the chain).
    pub fn internal(e: impl std::error::Error + 'static) -> ApiError {
        log_failure(&e);
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }

    /// A database refusal. The client's fault — integrity violations raised by our triggers and
    /// constraints (class 23), values the database cannot take (class 22: too long, out of
    /// range, malformed, NUL), a trigger's plain `RAISE` (P0001, P0002) — is 400 (409 for a
    /// duplicate key) with the database's message and its COLUMN as the field. A database that
    /// is away, read-only or overloaded is 503. Anything else is our fault: a logged 500.
    pub fn from_db(e: tokio_postgres::Error) -> ApiError {
        let Some(db) = e.as_db_error() else {
            if e.is_closed() {
                return ApiError::unavailable(&e);
            }
            return ApiError::internal(e);
        };
        let code = db.code().code();
        let field = db.column().map(str::to_owned);
        let message = db.message().trim_start_matches("et_messages.").to_owned();
        match refusal(code) {
            Refusal::Conflict => ApiError { status: StatusCode::CONFLICT, code: "conflict", message, field, retry_after: None },
            Refusal::Invalid => ApiError { status: StatusCode::BAD_REQUEST, code: "invalid_field", message, field, retry_after: None },
            Refusal::Unavailable => ApiError::unavailable(&e),
            Refusal::Internal => ApiError::internal(e),
        }
    }

    /// 503: the database is away or cannot take the request now; worth a retry.
    fn unavailable(e: &tokio_postgres::Error) -> ApiError {
        tracing::warn!(sqlstate = e.code().map(|c| c.code()), error = %chain(e), "request failed: database unavailable");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database is unavailable; retry later")
    }
}

/// Whose fault a SQLSTATE is.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Conflict,
    Invalid,
    Unavailable,
    Internal,
}

fn refusal(sqlstate: &str) -> Refusal {
    match sqlstate {
        // unique and exclusion violations: the thing exists already
        "23505" | "23P01" => Refusal::Conflict,
        // integrity (check, not null, foreign key) and data exceptions (22001 too long, 22003
        // out of range, 22007/22008 bad datetimes, 22021 NUL byte, 22023, 22P02, 22P05, ...)
        s if s.starts_with("23") || s.starts_with("22") => Refusal::Invalid,
        // a trigger's RAISE without an ERRCODE, and no_data_found from an operator function
        "P0001" | "P0002" => Refusal::Invalid,
        // connection trouble, insufficient resources, shutdown, a read-only (standby) server,
        // serialization failures and deadlocks: nothing the client did; try again
        s if s.starts_with("08") || s.starts_with("53") || s.starts_with("57P") => Refusal::Unavailable,
        "25006" | "40001" | "40P01" => Refusal::Unavailable,
        _ => Refusal::Internal,
    }
}

/// Log a request's failure; a database error anywhere in the chain is logged field by field.
fn log_failure(e: &(dyn std::error::Error + 'static)) {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(db) = err.downcast_ref::<DbError>() {
            tracing::error!(
                sqlstate = db.code().code(),
                error = db.message(),
                detail = db.detail(),
                hint = db.hint(),
                table = db.table(),
                column = db.column(),
                constraint = db.constraint(),
                context = db.where_(),
                "request failed: database error"
            );
            return;
        }
        cur = err.source();
    }
    tracing::error!(error = %chain(e), "request failed");
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message, "field": self.field } });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("database unavailable: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_sorted_by_whose_fault_they_are() {
        for s in ["23514", "23502", "23503", "22001", "22003", "22021", "22P02", "22P05", "P0001", "P0002"] {
            assert_eq!(refusal(s), Refusal::Invalid, "{s}");
        }
        assert_eq!(refusal("23505"), Refusal::Conflict);
        for s in ["08006", "53300", "57P01", "25006", "40001", "40P01"] {
            assert_eq!(refusal(s), Refusal::Unavailable, "{s}");
        }
        for s in ["42P01", "42703", "XX000", "0A000"] {
            assert_eq!(refusal(s), Refusal::Internal, "{s}");
        }
    }
}
