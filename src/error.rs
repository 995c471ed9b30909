//! The one error body of every non-OAuth endpoint: `{"code": "...", "message": "..."}` with its status
//! (DESIGN.md "Capability 1", errors). Unexpected failures are logged once with their cause chain and
//! answered with an opaque 500 (`INTERNAL_SERVER_ERROR`); the request id that finds the log line is in
//! the `x-request-id` response header.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;

/// An error a client can read.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable machine-readable code (Better Auth's where one exists).
    pub code: &'static str,
    /// Human-readable message; never contains a secret.
    pub message: String,
    /// Seconds for `Retry-After` (429).
    pub retry_after: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
/// The body of every error answer: a stable `code` for programs, a `message` for people.
pub struct ErrorBody {
    /// Machine-readable code, e.g. `INVALID_EMAIL_OR_PASSWORD`.
    pub code: String,
    /// Human-readable English message; never contains a secret. Match on `code`, not on this.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 `UNAUTHORIZED`.
    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "Unauthorized")
    }

    /// 403 `INVALID_ORIGIN`.
    pub fn invalid_origin() -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "INVALID_ORIGIN", "Invalid origin")
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// 429 `TOO_MANY_REQUESTS` with `Retry-After`.
    pub fn too_many_requests(retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after.max(1)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_REQUESTS",
                "Too many requests. Please try again later.",
            )
        }
    }

    /// 503 `DATABASE_UNAVAILABLE`: the database cannot be reached; the request may succeed later.
    pub fn database_unavailable() -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "DATABASE_UNAVAILABLE",
                "The database is unavailable. Please try again shortly.",
            )
        }
    }

    /// 503 `SERVER_BUSY`: the server sheds work it cannot do in time (a flood of sign-ins saturating the
    /// password hashing queue); the request may succeed later.
    pub fn server_busy() -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVER_BUSY",
                "The server is busy. Please try again shortly.",
            )
        }
    }

    /// 500: logs the whole cause chain once (with the request id) and
    /// answers an opaque body. An unreachable database, wherever in the chain, is a 503 instead
    /// ([`ApiError::database_unavailable`]), logged as a warning: it is an outage, not a bug; so is a
    /// saturated password hashing queue ([`ApiError::server_busy`], not logged: it is counted).
    pub fn internal(error: impl Into<anyhow::Error>) -> ApiError {
        let error = error.into();
        let unavailable = error.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<crate::storage::StorageError>(),
                Some(crate::storage::StorageError::Unavailable(_))
            ) || cause.downcast_ref::<sqlx::Error>().is_some_and(crate::storage::is_unavailable)
        });
        if error.chain().any(|cause| cause.is::<crate::crypto::password::Busy>()) {
            return ApiError::server_busy();
        }
        if unavailable {
            tracing::warn!(request_id = %crate::telemetry::CurrentRequestId, error = format!("{error:#}"), "database unavailable");
            return ApiError::database_unavailable();
        }
        tracing::error!(request_id = %crate::telemetry::CurrentRequestId, error = format!("{error:#}"), "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR", "Internal server error")
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(error: crate::storage::StorageError) -> Self {
        ApiError::internal(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { code: self.code.to_owned(), message: self.message };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
