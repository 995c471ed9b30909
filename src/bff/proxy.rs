//! The API proxy, `ANY /auth/{vendorId}/api/{*path}`: the request goes on to the vendor's `apiUpstream`
//! with `Authorization: Bearer <access token>` — the handler's cookies stripped, hop-by-hop headers
//! dropped, bodies streamed both ways — and the answer comes back as the upstream gave it. An expired
//! access token is renewed on the way when the refresh cookie came along (the rotated cookies ride on the
//! answer); 401 only when that is not possible; 502 when the upstream cannot be reached.
//!
//! And the gateway check, `GET /auth/{vendorId}/check`: forward-auth for a gateway in front of the API on
//! its own subdomain (nginx `auth_request`, Traefik `forwardAuth`): the access-token cookie in, 200 with
//! `authorization: Bearer …` and `x-auth-*` headers out, or 401.

use std::time::Duration;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tower_http::timeout::TimeoutBody;

use super::{
    add_cors, allowed_origin,
    flow::vendor_of,
    issuer, issuer_unavailable, paths, require_origin,
    session::{error_with_cors, read_access, with_cookies, AccessToken, RenewalFailure, Tokens},
    set_cookie,
    vendors::Vendor,
    REFRESH_COOKIE, TX_COOKIE,
};
use crate::{
    error::ApiError,
    http::extractors::{ApiPath, ClientInfo},
    state::AppState,
};

/// How long the upstream may take to start answering, and to send each further piece of a body either way.
const UPSTREAM_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long connecting to the upstream may take.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The proxy's pooled HTTP/1.1 client (http and https upstreams; rustls with the webpki roots).
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Builds the proxy's client: kept connections (idle ones closed after 60 s), `TCP_NODELAY`, no
/// redirects followed (the answer goes back to the browser as it is), no proxy from the environment.
pub fn upstream_client() -> anyhow::Result<UpstreamClient> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(UPSTREAM_CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(https))
}

/// Why forwarding failed (logged; the browser gets 502 `UPSTREAM_UNAVAILABLE`).
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("the upstream URL is not a valid URI")]
    Uri,
    #[error("the upstream took longer than {0:?} to answer")]
    Timeout(Duration),
    #[error(transparent)]
    Client(#[from] hyper_util::client::legacy::Error),
}

/// Headers that belong to one connection (RFC 9110 §7.6.1), never forwarded either way.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Forwarding headers a browser could write itself: replaced by the proxy's own, never passed on.
const CLIENT_WRITTEN: [&str; 4] = ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip"];

/// True for a header the proxy does not pass on: hop-by-hop ones, those `Connection` names, and
/// `transfer-encoding` (the client side chooses its own framing).
fn is_hop_by_hop(name: &HeaderName, connection: &[String]) -> bool {
    let name = name.as_str();
    HOP_BY_HOP.contains(&name) || name == "transfer-encoding" || connection.iter().any(|c| c == name)
}

/// The header names a `Connection` header lists.
fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The `Cookie` header without any of Latchkey's own cookies — the handler's, and the session and CSRF
/// cookies of Latchkey's accounts and sign-in pages, which share its host — `None` when nothing is left.
fn foreign_cookies(state: &AppState, headers: &HeaderMap, vendor: &Vendor) -> Option<HeaderValue> {
    let own = [
        vendor.config.access_token_cookie.as_str(),
        REFRESH_COOKIE,
        TX_COOKIE,
        state.cookies.session_token.as_str(),
        state.cookies.session_data.as_str(),
        crate::oauth::login::csrf_cookie_name(state),
    ];
    let kept: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !own.contains(&pair.split_once('=').map_or(*pair, |(name, _)| name.trim())))
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join("; ")).ok()
}

/// The path after `/auth/{vendorId}/api/`, as sent (still percent-encoded), refusing `.` and `..`
/// segments in any spelling: the upstream URL must stay under `apiUpstream`.
fn upstream_path<'a>(uri_path: &'a str, vendor_id: &str) -> Result<&'a str, ApiError> {
    let prefix_len = "/auth/".len() + vendor_id.len() + "/api/".len();
    let rest = uri_path.get(prefix_len..).unwrap_or_default();
    let dot_segment = rest.split('/').any(|segment| {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        decoded == "." || decoded == ".." || decoded.contains('/') || decoded.contains('\\')
    });
    if dot_segment {
        return Err(ApiError::bad_request(
            "INVALID_PATH",
            "The API path may not hold '.' or '..' segments or encoded slashes",
        ));
    }
    Ok(rest)
}

/// A CORS preflight for the handler's endpoints: answered for one of the vendor's origins, with
/// credentials, the methods the handler takes and whatever headers the SPA asks to send.
pub fn preflight(request: &HeaderMap, vendor: &Vendor) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    add_cors(response.headers_mut(), request, vendor);
    if allowed_origin(request, vendor).is_some() {
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE"),
        );
        if let Some(asked) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        }
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    response
}

/// `OPTIONS` on the handler's own endpoints (session, refresh, logout).
pub async fn endpoint_preflight(
    State(state): State<AppState>,
    ApiPath(vendor_id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let vendor = vendor_of(&state, &vendor_id).await?;
    Ok(preflight(&headers, &vendor))
}

/// Forwards a request to the vendor's API.
#[utoipa::path(method(get, post, put, patch, delete), path = paths::BFF_API, tag = "token-handler",
    params(("vendorId" = String, Path, description = "The vendor"),
        ("path" = String, Path, description = "The path under the vendor's apiUpstream (may hold `/`)")),
    request_body(description = "Any body: streamed to the upstream as it is", content((String = "application/octet-stream"))),
    responses(
        (status = 200, description = "Whatever the upstream answered (status, headers and body passed through)",
            content((Object = "application/json"), (String = "application/octet-stream"))),
        (status = 400, body = crate::error::ErrorBody, description = "`INVALID_PATH`: a `.` or `..` segment"),
        (status = 401, body = crate::error::ErrorBody, description = "`UNAUTHORIZED`: no usable access token and no refresh possible"),
        (status = 403, body = crate::error::ErrorBody, description = "`INVALID_ORIGIN`: a state-changing request without an Origin on the vendor's list"),
        (status = 404, body = crate::error::ErrorBody, description = "`VENDOR_NOT_FOUND`, or `NO_API_UPSTREAM`: the vendor has no apiUpstream"),
        (status = 502, body = crate::error::ErrorBody, description = "`UPSTREAM_UNAVAILABLE`, or `ISSUER_UNAVAILABLE` when a needed refresh failed")))]
pub async fn proxy(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<(String, String)>,
    caller: ClientInfo,
    request: Request,
) -> Result<Response, ApiError> {
    let (vendor_id, _) = path;
    let vendor = vendor_of(&state, &vendor_id).await?;
    let headers = request.headers();
    let is_preflight =
        request.method() == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if is_preflight {
        return Ok(preflight(headers, &vendor));
    }
    let Some(upstream) = vendor.upstream.as_ref() else {
        let error = ApiError::new(StatusCode::NOT_FOUND, "NO_API_UPSTREAM", "This vendor has no API upstream");
        return Ok(error_with_cors(error, headers, &vendor, &[]));
    };
    if !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        if let Err(error) = require_origin(headers, &vendor) {
            return Ok(error_with_cors(error, headers, &vendor, &[]));
        }
    }
    let path = match upstream_path(request.uri().path(), &vendor_id) {
        Ok(path) => path,
        Err(error) => return Ok(error_with_cors(error, headers, &vendor, &[])),
    };
    let mut url = upstream.clone();
    url.set_path(&format!("{}/{path}", upstream.path().trim_end_matches('/')));
    url.set_query(request.uri().query());
    let (token, set_cookies) = match Tokens::of(&state, &vendor, headers, false).await {
        Tokens::Fresh(access) => (access.token, Vec::new()),
        Tokens::Renewed(renewed) => match &*renewed {
            Ok(renewed) => (renewed.access.token.clone(), renewed.set_cookies.clone()),
            Err(RenewalFailure::Refused) => {
                return Ok(error_with_cors(
                    ApiError::unauthorized(),
                    headers,
                    &vendor,
                    &set_cookie::clear_tokens(&vendor),
                ))
            }
            Err(RenewalFailure::Unavailable(why)) => {
                let error = issuer_unavailable(&vendor_id, &issuer::IssuerError::Unavailable(why.clone()));
                return Ok(error_with_cors(error, headers, &vendor, &[]));
            }
        },
        Tokens::None => return Ok(error_with_cors(ApiError::unauthorized(), headers, &vendor, &[])),
    };
    let (parts, body) = request.into_parts();
    let forwarded = forward(&state, &vendor, &parts, body, url, &token, &caller).await;
    let mut response = match forwarded {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(vendor_id, error = %error, "token handler: the API upstream failed");
            let error = ApiError::new(StatusCode::BAD_GATEWAY, "UPSTREAM_UNAVAILABLE", "The API could not be reached");
            error_with_cors(error, &parts.headers, &vendor, &[])
        }
    };
    for cookie in &set_cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// Sends the request on and turns the upstream's answer into ours.
async fn forward(
    state: &AppState,
    vendor: &Vendor,
    parts: &axum::http::request::Parts,
    body: Body,
    url: url::Url,
    token: &str,
    caller: &ClientInfo,
) -> Result<Response, ForwardError> {
    let connection = connection_tokens(&parts.headers);
    let mut outgoing = HeaderMap::with_capacity(parts.headers.len() + 1);
    for (name, value) in &parts.headers {
        if is_hop_by_hop(name, &connection)
            || [header::HOST, header::AUTHORIZATION, header::COOKIE, header::FORWARDED].contains(name)
            || CLIENT_WRITTEN.contains(&name.as_str())
        {
            continue;
        }
        outgoing.append(name.clone(), value.clone());
    }
    if let Some(cookies) = foreign_cookies(state, &parts.headers, vendor) {
        outgoing.insert(header::COOKIE, cookies);
    }
    if let Ok(bearer) = HeaderValue::from_str(&format!("Bearer {token}")) {
        outgoing.insert(header::AUTHORIZATION, bearer);
    }
    // Who called, as this server determined it (the socket, or a trusted proxy's word), not as the
    // browser claims.
    if let Some(ip) = caller.ip.and_then(|ip| HeaderValue::from_str(&ip.to_string()).ok()) {
        outgoing.insert(HeaderName::from_static("x-forwarded-for"), ip);
    }
    let proto = if state.settings.base_url.starts_with("https:") { "https" } else { "http" };
    outgoing.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static(proto));
    let has_body =
        parts.headers.contains_key(header::CONTENT_LENGTH) || parts.headers.contains_key(header::TRANSFER_ENCODING);
    let body = if has_body { body } else { Body::empty() };
    let uri: Uri = url.as_str().parse().map_err(|_| ForwardError::Uri)?;
    let mut request = Request::new(Body::new(TimeoutBody::new(UPSTREAM_READ_TIMEOUT, body)));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = outgoing;
    // hyper writes `Host` from the URI and chooses the framing (`content-length` or chunked) itself.
    let upstream = tokio::time::timeout(UPSTREAM_READ_TIMEOUT, state.bff.upstream.request(request))
        .await
        .map_err(|_| ForwardError::Timeout(UPSTREAM_READ_TIMEOUT))??;
    let (mut head, body) = upstream.into_parts();
    let upstream_connection = connection_tokens(&head.headers);
    let names: Vec<HeaderName> =
        head.headers.keys().filter(|name| is_hop_by_hop(name, &upstream_connection)).cloned().collect();
    for name in names {
        head.headers.remove(name);
    }
    // The upstream's own CORS answer is for its origin, not the handler's: ours replaces it.
    for name in [
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
    ] {
        head.headers.remove(name);
    }
    add_cors(&mut head.headers, &parts.headers, vendor);
    Ok(Response::from_parts(head, Body::new(TimeoutBody::new(UPSTREAM_READ_TIMEOUT, body))))
}

/// Forward-auth for a gateway.
#[utoipa::path(get, path = paths::BFF_CHECK, tag = "token-handler",
    params(("vendorId" = String, Path, description = "The vendor")),
    responses(
        (status = 200, description = "Signed in: `authorization: Bearer …`, `x-auth-sub`, `x-auth-email` (when known), `x-auth-vendor` and `x-auth-expires-at` (unix seconds) headers for the gateway to pass on"),
        (status = 401, body = crate::error::ErrorBody, description = "`UNAUTHORIZED`: no usable access-token cookie"),
        (status = 404, body = crate::error::ErrorBody, description = "`VENDOR_NOT_FOUND`")))]
pub async fn check(
    State(state): State<AppState>,
    ApiPath(vendor_id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let vendor = vendor_of(&state, &vendor_id).await?;
    let now = state.clock.now();
    let Some(access) = read_access::<AccessToken>(&headers, &vendor, now).filter(|a| a.is_fresh(now)) else {
        return Err(ApiError::unauthorized());
    };
    let mut response = with_cookies(StatusCode::OK.into_response(), &[]);
    let out = response.headers_mut();
    let bearer = HeaderValue::from_str(&format!("Bearer {}", access.token)).map_err(ApiError::internal)?;
    out.insert(header::AUTHORIZATION, bearer);
    let claim = |value: &Option<String>| value.as_deref().and_then(|v| HeaderValue::from_str(v).ok());
    if let Some(sub) = claim(&access.user.sub) {
        out.insert(HeaderName::from_static("x-auth-sub"), sub);
    }
    if let Some(email) = claim(&access.user.email) {
        out.insert(HeaderName::from_static("x-auth-email"), email);
    }
    if let Ok(vendor_id) = HeaderValue::from_str(&vendor_id) {
        out.insert(HeaderName::from_static("x-auth-vendor"), vendor_id);
    }
    out.insert(HeaderName::from_static("x-auth-expires-at"), HeaderValue::from(access.expires_at / 1000));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_and_encoded_slashes_never_reach_the_upstream() {
        assert_eq!(upstream_path("/auth/acme/api/orders/7", "acme").unwrap(), "orders/7");
        assert_eq!(upstream_path("/auth/acme/api/a%20b", "acme").unwrap(), "a%20b");
        for bad in [
            "/auth/acme/api/../admin",
            "/auth/acme/api/x/./y",
            "/auth/acme/api/%2e%2e/admin",
            "/auth/acme/api/%2E./admin",
            "/auth/acme/api/a%2fb",
            "/auth/acme/api/a%5c..",
        ] {
            assert!(upstream_path(bad, "acme").is_err(), "{bad}");
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Secret-Hop"));
        let connection = connection_tokens(&headers);
        for name in
            ["connection", "keep-alive", "te", "upgrade", "transfer-encoding", "x-secret-hop", "proxy-authorization"]
        {
            assert!(is_hop_by_hop(&HeaderName::from_static(name), &connection), "{name}");
        }
        assert!(!is_hop_by_hop(&header::CONTENT_TYPE, &connection));
    }
}
