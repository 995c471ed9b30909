//! Request extractors of the toolkit: JSON bodies, query strings and path parameters whose rejections
//! come out as our `{code, message}` errors, the one rule on U+0000 for every string a client sends, and
//! the client address behind trusted proxies. They know no capability; the authenticating extractors
//! (sessions, API keys, tokens) live in `principal::extractors`.

use std::net::IpAddr;

use axum::{
    extract::{rejection::JsonRejection, FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderMap, StatusCode},
};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `Json<T>` whose rejections come out as our `{code, message}` errors.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if !content_type.is_some_and(super::is_json_content_type) {
            return Err(unsupported_media_type());
        }
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => bytes,
            Err(rejection) => return Err(bytes_rejection(&rejection)),
        };
        // Refused before any work (an Argon2 hash, a query): see `json_has_nul`.
        if json_has_nul(&bytes) {
            return Err(nul_refused());
        }
        // The common case parses once with plain serde_json; only a body that fails is parsed again by
        // axum's `Json` (serde_path_to_error), for the message naming the field.
        match serde_json::from_slice(&bytes) {
            Ok(value) => Ok(ApiJson(value)),
            Err(_) => {
                axum::Json::<T>::from_bytes(&bytes).map(|axum::Json(value)| ApiJson(value)).map_err(json_rejection)
            }
        }
    }
}

/// An optional body: a request with neither a body nor a content type is `None`; anything else must be
/// JSON as for [`ApiJson`].
impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let headers = req.headers();
        let no_body = headers.get(header::CONTENT_TYPE).is_none()
            && headers.get(header::CONTENT_LENGTH).is_none_or(|length| length == "0")
            && headers.get(header::TRANSFER_ENCODING).is_none();
        if no_body {
            return Ok(None);
        }
        <ApiJson<T> as FromRequest<S>>::from_request(req, state).await.map(Some)
    }
}

/// `Query<T>` whose rejections (a missing or malformed parameter) come out as 400 `VALIDATION_ERROR`
/// `{code, message}` rather than axum's `text/plain`, and which refuses U+0000 like [`ApiJson`].
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if query_has_nul(parts.uri.query().unwrap_or_default()) {
            return Err(nul_refused());
        }
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(value)| ApiQuery(value))
            // The message names the parameter and the problem (`missing field `id``), never the whole URI.
            .map_err(|rejection| ApiError::bad_request("VALIDATION_ERROR", rejection.body_text()))
    }
}

/// `Form<T>` (an `application/x-www-form-urlencoded` body, the sign-in pages' forms) whose rejections
/// come out as our `{code, message}` errors rather than axum's `text/plain`: 415 `UNSUPPORTED_MEDIA_TYPE`
/// for another content type, 400 `VALIDATION_ERROR` for a missing or malformed field; and which refuses
/// U+0000 like [`ApiJson`].
pub struct ApiForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if !content_type.is_some_and(is_form_content_type) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "Expected a request with Content-Type: application/x-www-form-urlencoded",
            ));
        }
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => bytes,
            Err(rejection) => return Err(bytes_rejection(&rejection)),
        };
        // A form body is encoded as a query string is.
        if memchr::memmem::find(&bytes, b"%00").is_some()
            && url::form_urlencoded::parse(&bytes).any(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Err(nul_refused());
        }
        serde_urlencoded::from_bytes(&bytes)
            .map(ApiForm)
            // serde's message names the field and the problem, never echoes the value.
            .map_err(|error| ApiError::bad_request("VALIDATION_ERROR", format!("Invalid form: {error}")))
    }
}

/// `application/x-www-form-urlencoded`, in any case, with or without parameters.
fn is_form_content_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

/// `Path<T>` whose rejections come out as 400 `VALIDATION_ERROR` `{code, message}`, and which refuses a
/// path segment holding U+0000 (`%00`) like [`ApiJson`].
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // A path has no escape for `%` other than `%25`, so `%00` always decodes to U+0000.
        if memchr::memmem::find(parts.uri.path().as_bytes(), b"%00").is_some() {
            return Err(nul_refused());
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::bad_request("VALIDATION_ERROR", rejection.body_text()))
    }
}

/// 400 `VALIDATION_ERROR` for text holding U+0000. PostgreSQL's TEXT cannot store it (SQLite can), so
/// one rule serves both databases: no string a client sends may hold it, refused at the input boundary.
pub fn nul_refused() -> ApiError {
    ApiError::bad_request("VALIDATION_ERROR", "Text must not contain the NUL character (U+0000)")
}

/// True if a JSON document holds U+0000 in any string or object key. JSON can carry U+0000 only as the
/// escape `\u0000` (a raw control character is a syntax error), so almost every body costs one byte
/// scan; only a body with those six bytes is parsed, since they may also be an escaped backslash
/// followed by `u0000`. A body that does not parse is left to the caller's own parse (400 `INVALID_JSON`).
pub fn json_has_nul(bytes: &[u8]) -> bool {
    fn holds_nul(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(text) => text.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(holds_nul),
            serde_json::Value::Object(fields) => {
                fields.iter().any(|(key, value)| key.contains('\0') || holds_nul(value))
            }
            _ => false,
        }
    }
    // Most bodies hold no backslash at all: one `memchr`, no substring searcher built (measured ~650
    // instructions for `memmem::find` on a 60-byte body).
    memchr::memchr(b'\\', bytes).is_some()
        && memchr::memmem::find(bytes, b"\\u0000").is_some()
        && serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|value| holds_nul(&value))
}

/// True if any name or value of a query string decodes to text holding U+0000.
pub fn query_has_nul(query: &str) -> bool {
    memchr::memmem::find(query.as_bytes(), b"%00").is_some()
        && url::form_urlencoded::parse(query.as_bytes())
            .any(|(name, value)| name.contains('\0') || value.contains('\0'))
}

/// A client-supplied JSON value as stored (JSON in a TEXT column): `null` and absence both store NULL.
pub fn json_column(value: Option<&serde_json::Value>) -> Result<Option<String>, ApiError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => serde_json::to_string(value).map(Some).map_err(ApiError::internal),
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => unsupported_media_type(),
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::bad_request("INVALID_JSON", "The request body is not valid JSON")
        }
        // serde's message names the field and the problem, never echoes the value.
        JsonRejection::JsonDataError(error) => ApiError::bad_request("VALIDATION_ERROR", error.body_text()),
        JsonRejection::BytesRejection(error) => bytes_rejection(&error),
        other => ApiError::bad_request("INVALID_BODY", other.body_text()),
    }
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
        "Expected a request with Content-Type: application/json",
    )
}

fn bytes_rejection(error: &axum::extract::rejection::BytesRejection) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", "The request body is too large")
    } else {
        ApiError::bad_request("INVALID_BODY", error.body_text())
    }
}

/// Who is calling, from where (recorded on sessions, audit events and rate-limit keys). Extracted with
/// the trusted proxies in the state (`principal::extractors`).
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    /// Client IP (socket, or X-Forwarded-For through a trusted proxy).
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header; `None` if absent or not visible ASCII.
    pub user_agent: Option<String>,
}

impl ClientInfo {
    /// The per-IP rate-limit key (clients whose address is unknown share one).
    pub fn rate_limit_key(&self) -> Option<IpAddr> {
        self.ip
    }
}

/// The client's IP: the socket peer, unless the peer is a trusted proxy, in which case the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy (entries further left are client-written).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpAddr]) -> IpAddr {
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|entry| entry.trim().parse().ok())
        .collect();
    forwarded.into_iter().rev().find(|ip| !trusted_proxies.contains(ip)).unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
        assert_eq!(client_ip(proxy, &headers, &[]), proxy);
        assert_eq!(client_ip(proxy, &headers, &[proxy]), "203.0.113.7".parse::<IpAddr>().unwrap());
        let other: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(client_ip(other, &headers, &[proxy]), other);
    }
}
