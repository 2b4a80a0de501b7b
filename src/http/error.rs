//! The JSON error body every refused request gets: `{"error": {"code", "message", "field"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `invalid_field`, `not_found`, `unauthorized`.
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None }
    }

    /// 400: `field` breaks `rule`.
    pub fn field(field: impl Into<String>, rule: impl Into<String>) -> ApiError {
        let field = field.into();
        ApiError { status: StatusCode::BAD_REQUEST, code: "invalid_field", message: format!("{field}: {}", rule.into()), field: Some(field) }
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

    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }

    /// A database refusal: trigger validation errors (SQLSTATE 23xxx raised by our triggers name
    /// the column) become 400 / 409 with the trigger's message; anything else is a 500.
    pub fn from_db(e: tokio_postgres::Error) -> ApiError {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            let field = db.column().map(str::to_owned);
            let message = db.message().trim_start_matches("et_messages.").to_owned();
            let status = match code {
                "23505" => return ApiError { status: StatusCode::CONFLICT, code: "conflict", message, field },
                "23514" | "23502" | "23503" | "22023" | "P0002" => StatusCode::BAD_REQUEST,
                _ => return ApiError::internal(e),
            };
            return ApiError { status, code: "invalid_field", message, field };
        }
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message, "field": self.field } });
        (self.status, Json(body)).into_response()
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("database unavailable: {e}"))
    }
}
