//! The HTTP toolkit: the cross-cutting layers ([`with_layers`], [`RouteLayer`]), JSON bodies and
//! cookies, and the accept loop (`serve`). `app` merges the capabilities' routers and wraps them in these
//! layers; the toolkit itself names no capability.
//!
//! Layer order, outermost first: JSON error bodies for bodiless 405/408 → request id → trace span →
//! propagate request id → CORS → timeout → body limit → routing → JSON-only bodies and metrics (per
//! matched route, [`RouteLayer`]) → handlers.

pub mod cookies;
pub mod extractors;
pub mod route_metrics;
pub mod serve;

use std::{
    future::Future,
    time::{Duration, Instant},
};

use axum::{
    extract::{DefaultBodyLimit, MatchedPath, Request},
    http::{header, HeaderName, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    request_id::{PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::{audit, error::ApiError, telemetry};

/// Largest accepted request body, in bytes (413 `PAYLOAD_TOO_LARGE` beyond).
pub const BODY_LIMIT: usize = 64 * 1024;
/// Longest a request may take; past it the answer is 408 `REQUEST_TIMEOUT`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The cross-cutting layers around a finished router (its routes merged and its state given), wrapped
/// once, outermost first: JSON error bodies for bodiless 405/408 → request id → trace span → propagate
/// request id → CORS (only with `cors_origins`, and not on `own_cors_paths`, whose handlers answer it) →
/// timeout → body limit.
///
/// The layers wrap the router as one tower stack rather than through `Router::layer`, which wraps every
/// route separately (a boxed service per layer per route, cloned and dropped on every request: measured
/// at ~15% of the instructions of a cached `api-key/verify`, BENCHMARKS.md "Third session").
pub fn with_layers(
    router: Router,
    cors_origins: &[String],
    own_cors_paths: &'static [&'static str],
) -> impl tower::Service<Request, Response = Response, Error = std::convert::Infallible, Future: Send>
       + Clone
       + Send
       + Sync
       + 'static {
    let request_id = HeaderName::from_static("x-request-id");
    // No CORS layer at all unless origins are configured (it adds three `Vary` headers to every answer).
    let cors = cors_layer(cors_origins).map(|cors| CorsExceptLayer { cors, except: own_cors_paths });
    tower::ServiceBuilder::new()
        .map_response(into_response_with_json_errors)
        .layer(SetRequestIdLayer::new(request_id.clone(), telemetry::RandomRequestId))
        .layer(TraceLayer::new_for_http().make_span_with(telemetry::request_span))
        .layer(PropagateRequestIdLayer::new(request_id))
        .option_layer(cors)
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .service(router)
}

/// The outermost step: any layer's answer as an axum response, errors with a JSON body.
fn into_response_with_json_errors(response: impl IntoResponse) -> Response {
    json_error_body(response.into_response())
}

/// Gives the bodiless errors of axum (405, with its `Allow` header kept) and of the timeout layer (408) our
/// `{code, message}` body: every error a client can cause is JSON. Other answers pass with one comparison.
fn json_error_body(response: Response) -> Response {
    use axum::body::HttpBody;
    let (code, message) = match response.status() {
        StatusCode::METHOD_NOT_ALLOWED => ("METHOD_NOT_ALLOWED", "This endpoint does not take that method"),
        StatusCode::REQUEST_TIMEOUT => ("REQUEST_TIMEOUT", "The request took too long"),
        _ => return response,
    };
    if response.body().size_hint().exact() != Some(0) {
        return response;
    }
    let (parts, _) = response.into_parts();
    let mut answer = ApiError::new(parts.status, code, message).into_response();
    // `Allow` and the like carry over; the length is the new body's.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH && !answer.headers().contains_key(name) {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> =
        origins.iter().filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()).collect();
    if origins.is_empty() {
        return None;
    }
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-tenant-id"),
        ])
        .max_age(Duration::from_secs(600));
    Some(cors)
}

/// The configured-origins CORS layer on every path but `except` (paths whose handlers answer CORS
/// themselves, preflights included: the CORS layer would answer their preflights before them). An entry
/// ending in `*` is a prefix.
#[derive(Clone, Debug)]
struct CorsExceptLayer {
    cors: CorsLayer,
    except: &'static [&'static str],
}

impl<S: Clone> tower::Layer<S> for CorsExceptLayer {
    type Service = CorsExcept<S>;

    fn layer(&self, inner: S) -> CorsExcept<S> {
        CorsExcept { cors: self.cors.layer(inner.clone()), inner, except: self.except }
    }
}

/// See [`CorsExceptLayer`].
#[derive(Clone, Debug)]
struct CorsExcept<S> {
    cors: tower_http::cors::Cors<S>,
    inner: S,
    except: &'static [&'static str],
}

pin_project_lite::pin_project! {
    #[project = EitherProj]
    enum EitherFuture<A, B> {
        Cors { #[pin] future: A },
        Own { #[pin] future: B },
    }
}

impl<A: Future, B: Future<Output = A::Output>> Future for EitherFuture<A, B> {
    type Output = A::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<A::Output> {
        match self.project() {
            EitherProj::Cors { future } => future.poll(cx),
            EitherProj::Own { future } => future.poll(cx),
        }
    }
}

impl<S> tower::Service<Request> for CorsExcept<S>
where
    S: tower::Service<Request, Response = Response> + Clone,
{
    type Response = Response;
    type Error = S::Error;
    type Future = EitherFuture<tower_http::cors::ResponseFuture<S::Future>, S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        // Both wrap clones of one router, which is always ready.
        match self.cors.poll_ready(cx) {
            std::task::Poll::Ready(Ok(())) => self.inner.poll_ready(cx),
            other => other,
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let path = request.uri().path();
        let excepted = self.except.iter().any(|except| match except.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => *except == path,
        });
        if excepted {
            EitherFuture::Own { future: self.inner.call(request) }
        } else {
            EitherFuture::Cors { future: self.cors.call(request) }
        }
    }
}

/// JSON endpoints refuse bodies that are not `application/json` (no CSRF through simple form posts):
/// a state-changing request with a body and another content type gets 415 before any handler runs.
fn non_json_body(request: &Request) -> bool {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let has_body = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map_or(request.headers().contains_key(header::TRANSFER_ENCODING), |len| len != "0");
    (content_type.is_some() || has_body) && !content_type.is_some_and(is_json_content_type)
}

/// `application/json` or `application/<token>+json`, in any case, with or without parameters (optional
/// whitespace before `;` is allowed, as RFC 9110 allows it; parameters are not validated).
pub fn is_json_content_type(content_type: &str) -> bool {
    let bytes = content_type.as_bytes();
    let essence = bytes[..bytes.iter().position(|&b| b == b';').unwrap_or(bytes.len())].trim_ascii();
    let Some(subtype) = essence.get(..12).filter(|t| t.eq_ignore_ascii_case(b"application/")).map(|_| &essence[12..])
    else {
        return false;
    };
    // The subtype is an RFC 9110 token (no whitespace, no second `/`).
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    subtype.iter().all(tchar)
        && (subtype.eq_ignore_ascii_case(b"json")
            || (subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case(b"+json")))
}

/// The per-route layer: refuses non-JSON bodies (415), then records the request count and latency of the
/// matched route. A hand-written tower layer rather than `middleware::from_fn`, which boxes a future and
/// clones the inner service on every request (measured ~6% of a trivial request).
#[derive(Clone, Debug, Default)]
pub struct RouteLayer {
    /// Route templates that also take `application/x-www-form-urlencoded` bodies (OAuth's token
    /// endpoint: RFC 6749 clients send forms). Passed in by `app`, so this toolkit names no capability.
    pub form_routes: &'static [&'static str],
    /// Route templates whose bodies are passed on as they are, whatever their content type (a proxy).
    pub raw_body_routes: &'static [&'static str],
    /// Where the audit events of a request are stored (none: logged only), and the proxies whose
    /// `X-Forwarded-For` names the caller.
    pub audit: Option<AuditRoute>,
}

/// The audit log's part of [`RouteLayer`].
#[derive(Clone, Debug)]
pub struct AuditRoute {
    pub sink: audit::AuditSink,
    pub trusted_proxies: std::sync::Arc<[std::net::IpAddr]>,
}

impl AuditRoute {
    /// The audit context of `request`: its caller's address and user agent, and its id.
    fn context(&self, request: &Request, id: &HeaderValue) -> std::sync::Arc<audit::AuditContext> {
        let socket = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        let ip = socket.map(|info| extractors::client_ip(info.0.ip(), request.headers(), &self.trusted_proxies));
        std::sync::Arc::new(audit::AuditContext {
            sink: self.sink.clone(),
            ip,
            user_agent: request.headers().get(header::USER_AGENT).cloned(),
            request_id: Some(id.clone()),
        })
    }
}

impl<S> tower::Layer<S> for RouteLayer {
    type Service = RouteService<S>;

    fn layer(&self, inner: S) -> RouteService<S> {
        RouteService {
            inner,
            form_routes: self.form_routes,
            raw_body_routes: self.raw_body_routes,
            audit: self.audit.clone(),
        }
    }
}

/// See [`RouteLayer`].
#[derive(Clone, Debug)]
pub struct RouteService<S> {
    inner: S,
    form_routes: &'static [&'static str],
    raw_body_routes: &'static [&'static str],
    audit: Option<AuditRoute>,
}

/// True for a form body on a route that takes forms.
fn accepted_form(request: &Request, route: Option<&MatchedPath>, form_routes: &[&str]) -> bool {
    let is_form = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|value| {
        let essence = value.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    is_form && route.is_some_and(|route| form_routes.contains(&route.as_str()))
}

impl<S> tower::Service<Request> for RouteService<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = RouteFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let route = request.extensions().get::<MatchedPath>().cloned();
        let cookies = PendingCookies::default();
        request.extensions_mut().insert(cookies.clone());
        let method = method_label(request.method());
        let raw_body = route.as_ref().is_some_and(|route| self.raw_body_routes.contains(&route.as_str()));
        let state = if !raw_body
            && non_json_body(&request)
            && !accepted_form(&request, route.as_ref(), self.form_routes)
        {
            RouteState::Refused {
                response: Some(
                    ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "UNSUPPORTED_MEDIA_TYPE",
                        "Expected a request with Content-Type: application/json",
                    )
                    .into_response(),
                ),
            }
        } else {
            let id = request.headers().get("x-request-id").cloned().unwrap_or(HeaderValue::from_static(""));
            let audit = self.audit.as_ref().map(|audit| audit.context(&request, &id));
            RouteState::Inner { future: audit::scope(audit, telemetry::with_request_id(id, self.inner.call(request))) }
        };
        RouteFuture { state, started, route, method, cookies }
    }
}

/// `Set-Cookie` values an extractor wants on the response (a session's sliding refresh and its re-issued
/// cookie cache), added by [`RouteLayer`] unless the handler set a cookie of that name. The one way an
/// extractor's cookies reach a response: handlers never pass them on.
#[derive(Clone, Debug, Default)]
pub struct PendingCookies(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl PendingCookies {
    /// Queues cookies for the response.
    pub fn push(&self, cookies: Vec<String>) {
        if let Ok(mut pending) = self.0.lock() {
            pending.extend(cookies);
        }
    }

    fn apply(&self, response: &mut Response) {
        let Ok(mut pending) = self.0.lock() else { return };
        if pending.is_empty() {
            return;
        }
        let name_of = |cookie: &str| cookie.split('=').next().unwrap_or_default().to_owned();
        let already: Vec<String> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(name_of)
            .collect();
        for cookie in pending.drain(..) {
            if !already.contains(&name_of(&cookie)) {
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`RouteService`].
    pub struct RouteFuture<F> {
        #[pin]
        state: RouteState<F>,
        started: Instant,
        route: Option<MatchedPath>,
        method: &'static str,
        cookies: PendingCookies,
    }
}

pin_project_lite::pin_project! {
    #[project = RouteStateProj]
    enum RouteState<F> {
        Inner {
            #[pin]
            future: tokio::task::futures::TaskLocalFuture<
                Option<std::sync::Arc<audit::AuditContext>>,
                tokio::task::futures::TaskLocalFuture<HeaderValue, F>,
            >,
        },
        Refused { response: Option<Response> },
    }
}

impl<F> std::future::Future for RouteFuture<F>
where
    F: std::future::Future<Output = Result<Response, std::convert::Infallible>>,
{
    type Output = Result<Response, std::convert::Infallible>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.state.project() {
            RouteStateProj::Inner { future } => match future.poll(cx) {
                std::task::Poll::Ready(Ok(response)) => response,
                std::task::Poll::Ready(Err(never)) => match never {},
                std::task::Poll::Pending => return std::task::Poll::Pending,
            },
            RouteStateProj::Refused { response } => response.take().unwrap_or_default(),
        };
        this.cookies.apply(&mut response);
        let route = this.route.as_ref().map_or("", MatchedPath::as_str);
        route_metrics::record(route, this.method, response.status().as_u16(), this.started.elapsed());
        std::task::Poll::Ready(Ok(response))
    }
}

/// A static label for the common methods (no allocation per request).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::{is_json_content_type, json_error_body};
    use axum::{http::StatusCode, response::IntoResponse};

    #[test]
    fn bodiless_405_and_408_get_a_json_body_and_keep_their_headers() {
        for (status, code) in
            [(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"), (StatusCode::REQUEST_TIMEOUT, "REQUEST_TIMEOUT")]
        {
            let mut bare = (status, [("allow", "GET,HEAD")]).into_response();
            bare.headers_mut().insert("content-length", axum::http::HeaderValue::from_static("0"));
            let answer = json_error_body(bare);
            assert_eq!(answer.status(), status);
            assert_eq!(answer.headers()["allow"], "GET,HEAD");
            assert_eq!(answer.headers()["content-type"], "application/json");
            assert!(answer.headers().get("content-length").is_none_or(|length| length != "0"));
            let body = futures_body(answer);
            assert!(body.contains(&format!("\"code\":\"{code}\"")), "{body}");
        }
        let ok = json_error_body((StatusCode::OK, "fine").into_response());
        assert_eq!(futures_body(ok), "fine");
    }

    fn futures_body(response: axum::response::Response) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let bytes = runtime.block_on(axum::body::to_bytes(response.into_body(), 1 << 16)).unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            " Application/JSON ;charset=UTF-8",
            "application/vnd.api+json",
            "application/merge-patch+JSON",
        ] {
            assert!(is_json_content_type(ok), "{ok}");
        }
        for refused in [
            "",
            "text/plain",
            "application/jsonx",
            "application/x-www-form-urlencoded",
            "text/json",
            "+json",
            "application/+jso",
            "application/a b+json",
            "application/x/y+json",
        ] {
            assert!(!is_json_content_type(refused), "{refused}");
        }
    }
}
