//! Extractors: they parse and authenticate, then hand handlers typed values; they do not decide
//! permissions. Absent credentials mean anonymous; present-but-invalid means 401 (or `null` for
//! `get-session`, as Better Auth), never a silent anonymous.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    extract::{rejection::JsonRejection, ConnectInfo, FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderMap, Method, StatusCode},
};
use serde::de::DeserializeOwned;

use crate::{
    accounts::User,
    api_keys::{self, KeyProblem},
    app::AppState,
    audit::{self, AuditEvent},
    config::origin_of,
    crypto,
    error::ApiError,
    extensions,
    http::{
        cookies::{self, SetCookies},
        PendingCookies,
    },
    principal::{self, Credential, Principal, Via},
    sessions::{self, cookie_cache, ClientInfo, Session},
};

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

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let socket = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        let ip = socket.map(|ip| client_ip(ip, &parts.headers, &state.trusted_proxies));
        let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(ClientInfo { ip, user_agent })
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

/// True for methods that change state (CSRF-relevant).
fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The request's `Origin`, else its `Referer`'s origin. `Origin: null` yields `None`.
fn request_origin(headers: &HeaderMap) -> Option<String> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin.to_str().ok().and_then(origin_of);
    }
    headers.get(header::REFERER).and_then(|r| r.to_str().ok()).and_then(origin_of)
}

/// Cookie-authenticated state changes must come from a trusted origin (`Origin`, else `Referer`);
/// neither header, `null`, or an untrusted one → 403 `INVALID_ORIGIN`.
pub fn require_trusted_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match request_origin(headers) {
        Some(origin) if state.is_trusted_origin(&origin) => Ok(()),
        _ => Err(ApiError::invalid_origin()),
    }
}

/// Sign-in and sign-up (no cookie yet): refused only when an `Origin` is present and untrusted
/// (login CSRF); non-browser clients send none.
pub fn refuse_untrusted_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN) {
        None => Ok(()),
        Some(origin) => match origin.to_str().ok().and_then(origin_of) {
            Some(origin) if state.is_trusted_origin(&origin) => Ok(()),
            _ => Err(ApiError::invalid_origin()),
        },
    }
}

/// An authenticated session.
#[derive(Debug)]
pub struct SessionAuth {
    /// The session.
    pub session: Session,
    /// Its user.
    pub user: Arc<User>,
    /// Cookies to send back (sliding refresh, refreshed cookie cache).
    pub set_cookies: SetCookies,
    /// The SHA-256 of the session token when it came in a cookie (binds a re-issued cookie cache to it);
    /// `None` for bearer tokens, which get no cookies.
    pub cookie_token_hash: Option<String>,
    /// The remembered cookie-cache entry `session` and `user` are exact copies of, when they came from
    /// one unchanged (it holds renderings of them that can be reused).
    pub remembered: Option<Arc<cookie_cache::Cached>>,
}

/// What the credentials on a request amount to.
enum Resolved {
    /// No credential at all.
    Anonymous,
    /// A credential that does not check out (bad signature, unknown, expired, revoked).
    Invalid { had_cookie: bool },
    /// A valid session (boxed: it is much larger than the other variants).
    Valid(Box<SessionAuth>),
}

async fn resolve(parts: &Parts, state: &AppState) -> Result<Resolved, ApiError> {
    let now = state.clock.now();
    // As sent (percent-encoded): a remembered pair is recognised without decoding the token cookie.
    let raw_token = cookies::get_raw(&parts.headers, &state.cookies.session_token);
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let key = state.keys.cookie.as_slice();

    if let Some(bearer) = bearer {
        // Bearer session tokens (Better Auth's bearer plugin): the raw token, or the signed cookie value.
        let token = if bearer.contains('.') { crypto::verify_cookie_value(key, bearer) } else { Some(bearer) };
        let Some(token) = token else { return Ok(Resolved::Invalid { had_cookie: false }) };
        let valid = sessions::validate(&state.db, &state.policy, &state.revoked, token, None, now).await?;
        return Ok(match valid {
            Some(valid) => Resolved::Valid(Box::new(SessionAuth {
                session: valid.session,
                user: valid.user,
                set_cookies: SetCookies::default(),
                cookie_token_hash: None,
                remembered: None,
            })),
            None => Resolved::Invalid { had_cookie: false },
        });
    }

    let Some(raw_token) = raw_token else { return Ok(Resolved::Anonymous) };
    if is_state_changing(&parts.method) {
        require_trusted_origin(state, &parts.headers)?;
    }
    let cache_enabled = state.policy.cache_max_age > 0;
    let disable_cache = parts.uri.query().is_some_and(|q| q.split('&').any(|pair| pair == "disableCookieCache=true"));
    let cache_value =
        if cache_enabled && !disable_cache { cookies::get(&parts.headers, &state.cookies.session_data) } else { None };
    // The hot path: this exact pair of cookies was verified before.
    let remembered = cache_value.as_deref().and_then(|value| state.session_memo.hit(value, raw_token, now));
    if let Some(remembered) = remembered {
        if let Some(valid) = sessions::from_cached(&state.policy, &state.revoked, &remembered, now) {
            return Ok(Resolved::Valid(Box::new(SessionAuth {
                session: valid.session,
                user: valid.user,
                set_cookies: SetCookies::default(),
                cookie_token_hash: Some(valid.token_hash),
                remembered: Some(remembered),
            })));
        }
    }
    let Some(cookie_value) = cookies::decode(raw_token) else { return Ok(Resolved::Invalid { had_cookie: true }) };
    let Some(token) = crypto::verify_cookie_value(key, &cookie_value) else {
        return Ok(Resolved::Invalid { had_cookie: true });
    };
    let cache = cache_value.as_deref().map(|value| sessions::CacheProbe {
        memo: &state.session_memo,
        key: state.keys.cache.as_slice(),
        value,
        token_cookie: raw_token,
    });
    let valid = sessions::validate(&state.db, &state.policy, &state.revoked, token, cache, now).await?;
    let Some(valid) = valid else { return Ok(Resolved::Invalid { had_cookie: true }) };

    let mut set_cookies = Vec::new();
    if valid.refreshed {
        let max_age = (valid.session.expires_at - now) / 1000;
        set_cookies.push(state.cookies.set(&state.cookies.session_token, &cookie_value, Some(max_age)));
    }
    if cache_enabled && !valid.from_cache {
        set_cookies.push(session_data_cookie(state, &valid.session, &valid.user, token, now));
    }
    Ok(Resolved::Valid(Box::new(SessionAuth {
        session: valid.session,
        user: valid.user,
        set_cookies: SetCookies(set_cookies),
        cookie_token_hash: Some(valid.token_hash),
        remembered: None,
    })))
}

/// A fresh `session_data` cookie for a session just read from the DB.
pub fn session_data_cookie(state: &AppState, session: &Session, user: &User, token: &str, now: i64) -> String {
    cache_cookie(state, session, user, sessions::token_hash(token), now)
}

fn cache_cookie(state: &AppState, session: &Session, user: &User, token_hash: String, now: i64) -> String {
    let cached = cookie_cache::Cached {
        session: session.clone(),
        user: Arc::new(user.clone()),
        token_hash,
        expires_at: now + state.policy.cache_max_age,
        rendered: Default::default(),
    };
    let value = cookie_cache::encode(&state.keys.cache, &cached);
    state.cookies.set(&state.cookies.session_data, &value, Some(state.policy.cache_max_age / 1000))
}

/// A re-issued `session_data` cookie after the principal's session changed (e.g. its active
/// organization); `None` when the cache is off or the session did not come in a cookie.
pub fn session_data_cookie_for(state: &AppState, principal: &Principal) -> Option<String> {
    let session = principal.session()?;
    let token_hash = principal.cookie_token_hash.clone()?;
    (state.policy.cache_max_age > 0)
        .then(|| cache_cookie(state, session, &principal.user, token_hash, state.clock.now()))
}

impl FromRequestParts<AppState> for SessionAuth {
    type Rejection = ApiError;

    /// 401 `UNAUTHORIZED` unless a valid session is presented.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match resolve(parts, state).await? {
            Resolved::Valid(auth) => Ok(*auth),
            Resolved::Anonymous | Resolved::Invalid { .. } => Err(ApiError::unauthorized()),
        }
    }
}

/// An optional session: `None` when absent or invalid, with cookies to clear in the latter case.
pub struct MaybeSession {
    /// The session, if valid.
    pub auth: Option<SessionAuth>,
    /// True if the request carried a session cookie that did not check out: clear it.
    pub clear_cookies: bool,
}

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(match resolve(parts, state).await? {
            Resolved::Valid(auth) => MaybeSession { auth: Some(*auth), clear_cookies: false },
            Resolved::Anonymous => MaybeSession { auth: None, clear_cookies: false },
            Resolved::Invalid { had_cookie } => MaybeSession { auth: None, clear_cookies: had_cookie },
        })
    }
}

/// The caller of `get-session`: a session (or none), or an `x-api-key` in its place (Better Auth's
/// "session for API keys": DESIGN.md lets any endpoint take a key instead of a session). A key wins over
/// a cookie, as it does for [`Principal`]; an unusable key is a 401, never a silent `null`.
pub enum SessionOrKey {
    /// No `x-api-key`: whatever the session cookie or bearer token amounts to.
    Session(MaybeSession),
    /// A valid `x-api-key`, and who sent it (the session view shows the address and user agent).
    Key(Principal, ClientInfo),
}

impl FromRequestParts<AppState> for SessionOrKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match api_key_header(parts) {
            Some(key) => {
                let principal = api_key_principal(parts, state, key).await?;
                let Ok(client) = ClientInfo::from_request_parts(parts, state).await;
                Ok(SessionOrKey::Key(principal, client))
            }
            None => MaybeSession::from_request_parts(parts, state).await.map(SessionOrKey::Session),
        }
    }
}

/// The `x-api-key` header, if any.
fn api_key_header(parts: &Parts) -> Option<&str> {
    // A prebuilt name: `get("x-api-key")` parses the string on every call.
    static X_API_KEY: axum::http::HeaderName = axum::http::HeaderName::from_static("x-api-key");
    parts.headers.get(&X_API_KEY).map(|v| v.to_str().unwrap_or_default().trim())
}

/// A bearer token that is a JWT (an extension token here), if any.
fn bearer_jwt(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| extensions::looks_like_jwt(token))
}

/// 401 with Better Auth's code for a refused `x-api-key` (`INVALID_API_KEY`, `KEY_DISABLED`, `KEY_EXPIRED`).
fn invalid_api_key(problem: KeyProblem) -> ApiError {
    let (code, message) = problem.as_credential();
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// Authenticates an `x-api-key`: from the key cache (no DB read while cached), refused at once when
/// disabled, expired or deleted; the use is counted in memory.
async fn api_key_principal(parts: &Parts, state: &AppState, key: &str) -> Result<Principal, ApiError> {
    let now = state.clock.now();
    let cached = state.api_keys.lookup(&state.db, &api_keys::hash_key(key), now).await?;
    let Some(cached) = cached else {
        audit::emit(AuditEvent::ApiKeyRefused { key_id: None, reason: "unknown key" });
        return Err(invalid_api_key(KeyProblem::NotFound));
    };
    if let Some(problem) = cached.key.unusable(now) {
        audit::emit(AuditEvent::ApiKeyRefused { key_id: Some(&cached.key.id), reason: problem.code() });
        return Err(invalid_api_key(problem));
    }
    state.usage.record(&cached.key.id, now);
    let tenant_header = match parts.headers.get("x-tenant-id") {
        None => None,
        // Bytes that are not UTF-8 name no organization; refusing them beats falling back to the key's
        // default organization, which would act in a tenant the caller did not ask for.
        Some(value) => match std::str::from_utf8(value.as_bytes()) {
            Ok(value) => Some(value.trim().to_owned()),
            Err(_) => {
                return Err(ApiError::bad_request(
                    "VALIDATION_ERROR",
                    "The x-tenant-id header must be an organization id or slug in UTF-8",
                ))
            }
        },
    };
    Ok(Principal {
        user: Arc::clone(&cached.user),
        via: Via::ApiKey(cached),
        tenant_header,
        set_cookies: SetCookies::default(),
        cookie_token_hash: None,
    })
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    /// A session (cookie or bearer session token) or an `x-api-key`; 401 otherwise. An extension token
    /// is not accepted here.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(key) = api_key_header(parts) {
            return api_key_principal(parts, state, key).await;
        }
        if bearer_jwt(parts).is_some() {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "This endpoint needs a session or an API key",
            ));
        }
        match resolve(parts, state).await? {
            Resolved::Valid(auth) => {
                let SessionAuth { session, user, set_cookies, cookie_token_hash, .. } = *auth;
                // Handlers taking a `Principal` answer plain JSON: the route layer adds these cookies.
                let mut set_cookies = set_cookies;
                if let Some(pending) = parts.extensions.get::<PendingCookies>() {
                    pending.push(std::mem::take(&mut set_cookies.0));
                }
                Ok(Principal {
                    user,
                    via: Via::Session(Box::new(session)),
                    tenant_header: None,
                    set_cookies,
                    cookie_token_hash,
                })
            }
            Resolved::Anonymous | Resolved::Invalid { .. } => Err(ApiError::unauthorized()),
        }
    }
}

impl FromRequestParts<AppState> for Credential {
    type Rejection = ApiError;

    /// Any credential, extension tokens (verified, and their subject still a member of `org`) and service
    /// tokens (verified and not revoked) included.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if api_key_header(parts).is_none() {
            if let Some(token) = bearer_jwt(parts) {
                let refused = || ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_TOKEN", "Invalid or expired token");
                let now = state.clock.now();
                // A service token verified before skips the extension-token attempt (an HS256 check that
                // would fail on every request).
                let known_service_token = state.service.verified.get(token, now).is_some();
                let extension = if known_service_token { None } else { state.extension_keys.verify(token, now).ok() };
                let Some(claims) = extension else {
                    // Not an extension token: perhaps a service token (signed by the key ring).
                    let claims =
                        crate::service::routes::verify_service_token(state, token, now).map_err(|_| refused())?;
                    if state.revocations.is_revoked(&claims.jti, &claims.sub, &claims.client_id) {
                        return Err(refused());
                    }
                    return Ok(Credential::Service(claims));
                };
                if principal::extension_tenant(state, &claims).await?.is_none() {
                    return Err(refused());
                }
                return Ok(Credential::Extension(claims));
            }
        }
        Principal::from_request_parts(parts, state).await.map(|p| Credential::Principal(Box::new(p)))
    }
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
