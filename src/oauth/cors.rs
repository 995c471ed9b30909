//! CORS for the endpoints browser clients call cross-origin (`/oauth/token`, `/userinfo`,
//! `/oauth/revoke`): an `Origin` listed in the calling client's `web_origins` — and only such an origin —
//! is answered with `Access-Control-Allow-Origin`. Preflights are answered for an origin some client
//! lists (the preflight does not say which client is coming); the request itself then needs its own
//! client to list it. No credentials: these endpoints take tokens, not cookies.

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

use super::store;
use crate::state::AppState;

/// The client an answer is for: known (its `web_origins`), or only named by the request.
#[derive(Clone, Debug)]
pub enum ClientRef {
    Named(String),
    Known(Vec<String>),
}

impl ClientRef {
    pub fn named(client_id: Option<&str>) -> Option<ClientRef> {
        client_id.filter(|id| !id.is_empty()).map(|id| ClientRef::Named(id.to_owned()))
    }
}

/// The request's `Origin`, if it is a usable header value.
pub fn origin(headers: &HeaderMap) -> Option<String> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).filter(|o| *o != "null").map(str::to_owned)
}

/// Adds `Access-Control-Allow-Origin` when the client lists the request's origin.
pub async fn allow(state: &AppState, response: &mut Response, origin: Option<&str>, client: Option<&ClientRef>) {
    let Some(origin) = origin else { return };
    response.headers_mut().append(header::VARY, HeaderValue::from_static("Origin"));
    let allowed = match client {
        Some(ClientRef::Known(origins)) => origins.iter().any(|o| o == origin),
        Some(ClientRef::Named(id)) => match state.oauth.config.client(&state.db, id, state.clock.now()).await {
            Ok(Some(entry)) => entry.0.web_origins.iter().any(|o| o == origin),
            _ => false,
        },
        None => false,
    };
    if let (true, Ok(value)) = (allowed, HeaderValue::from_str(origin)) {
        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
}

/// Answers a CORS preflight: allowed when some client lists the origin.
pub async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = origin(&headers) else { return response };
    let allowed = match store::any_client_with_origin(&state.db, &origin).await {
        Ok(allowed) => allowed,
        Err(error) => return crate::error::ApiError::internal(error).into_response(),
    };
    let Ok(value) = HeaderValue::from_str(&origin) else { return response };
    if allowed {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, auth0-client"),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    response
}
