//! RFC 6749 §5.2 errors, as the token, revocation and introspection endpoints answer them.

use axum::{
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;

/// An RFC 6749 §5.2 error.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// `WWW-Authenticate: Basic` (a failed `client_secret_basic`).
    pub basic_challenge: bool,
    /// `Retry-After` seconds (429).
    pub retry_after: Option<u64>,
}

/// RFC 6749's error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`,
    /// `invalid_scope`, `access_denied`, `too_many_requests`, `server_error`.
    pub error: String,
    pub error_description: String,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError { status, error, description: description.into(), basic_challenge: false, retry_after: None }
    }

    pub fn invalid_request(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub fn access_denied(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::FORBIDDEN, "access_denied", description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub fn invalid_scope(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    /// 429: too many failed client authentications.
    pub fn too_many_requests(retry_after: u64) -> OAuthError {
        OAuthError {
            retry_after: Some(retry_after),
            ..OAuthError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!("Too many failed attempts; try again in {retry_after} seconds"),
            )
        }
    }

    /// A 500 or 503 `server_error` for a failure the caller cannot fix (logged, never shown).
    pub fn internal(error: impl Into<anyhow::Error>) -> OAuthError {
        let error = crate::error::ApiError::internal(error);
        OAuthError::new(error.status, "server_error", error.message)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = OAuthErrorBody { error: self.error.to_owned(), error_description: self.description };
        let mut response = (self.status, Json(body)).into_response();
        no_store(response.headers_mut());
        if self.basic_challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"latchkey\""));
        }
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<crate::storage::StorageError> for OAuthError {
    fn from(error: crate::storage::StorageError) -> OAuthError {
        OAuthError::internal(error)
    }
}

/// `Cache-Control: no-store` (and `Pragma: no-cache`), on every answer that may carry a token.
pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
