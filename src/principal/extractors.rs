//! Extractors that authenticate: they parse credentials (session cookie, bearer session token,
//! `x-api-key`, extension and service tokens) and hand handlers a typed caller; they do not decide
//! permissions. Absent credentials mean anonymous; present-but-invalid means 401 (or `null` for
//! `get-session`, as Better Auth), never a silent anonymous. Also the request's client (address and user
//! agent) and the origin checks that protect cookie-authenticated requests.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{header, request::Parts, HeaderMap, Method, StatusCode},
};

// `principal` stands between the capabilities' domain halves (sessions, keys, memberships, which it reads)
// and their routes (which extract a `Principal`): the folders meet in a circle, the files do not.
use crate::{
    accounts::User,
    api_keys::{self, KeyProblem},
    audit::{self, AuditEvent},
    config::origin_of,
    crypto,
    error::ApiError,
    extensions,
    http::extractors::ClientInfo,
    http::{cookies, extractors::client_ip, PendingCookies},
    principal::{self, credentials, Credential, Principal, Via},
    sessions::{self, cookie_cache, Session},
    state::AppState,
};

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let socket = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        let ip = socket.map(|ip| client_ip(ip, &parts.headers, &state.trusted_proxies));
        let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(ClientInfo { ip, user_agent })
    }
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

/// A valid session, from the session cookie or a bearer session token, and its user (never an `x-api-key`).
#[derive(Debug)]
pub struct SessionAuth {
    pub session: Session,
    pub user: Arc<User>,
    /// The SHA-256 of the session token when it came in a cookie (binds a re-issued cookie cache to it);
    /// `None` for bearer tokens, which get no cookies.
    pub cookie_token_hash: Option<String>,
    /// The remembered cookie-cache entry `session` and `user` are exact copies of, when they came from
    /// one unchanged (it holds renderings of them that can be reused).
    pub remembered: Option<Arc<cookie_cache::Remembered>>,
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
    let bearer = credentials::bearer_token(&parts.headers);
    let key = state.sessions.keys.cookie.as_slice();

    if let Some(bearer) = bearer {
        // Bearer session tokens (Better Auth's bearer plugin): the raw token, or the signed cookie value.
        let token = if bearer.contains('.') { crypto::verify_cookie_value(key, bearer) } else { Some(bearer) };
        let Some(token) = token else { return Ok(Resolved::Invalid { had_cookie: false }) };
        let valid = sessions::validate_bearer(&state.db, &state.sessions, token, now).await?;
        return Ok(match valid {
            Some(valid) => Resolved::Valid(Box::new(SessionAuth {
                session: valid.session,
                user: valid.user,
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
    let cache_enabled = state.sessions.policy.cache_max_age > 0;
    let disable_cache = parts.uri.query().is_some_and(|q| q.split('&').any(|pair| pair == "disableCookieCache=true"));
    let cache_value =
        if cache_enabled && !disable_cache { cookies::get(&parts.headers, &state.cookies.session_data) } else { None };
    // The hot path: this exact pair of cookies was verified before.
    let remembered = cache_value.as_deref().and_then(|value| state.sessions.memo.hit(value, raw_token, now));
    if let Some(remembered) = remembered {
        if let Some(valid) = sessions::from_cached(&state.sessions.policy, &state.sessions.revoked, &remembered, now) {
            return Ok(Resolved::Valid(Box::new(SessionAuth {
                session: valid.session,
                user: valid.user,
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
        memo: &state.sessions.memo,
        key: state.sessions.keys.cache.as_slice(),
        value,
        token_cookie: raw_token,
    });
    let valid =
        sessions::validate(&state.db, &state.sessions.policy, &state.sessions.revoked, token, cache, now).await?;
    let Some(valid) = valid else { return Ok(Resolved::Invalid { had_cookie: true }) };

    // Cookies the check renewed reach the response through the route layer, whatever the handler
    // answers (a handler's own cookie of the same name wins: sign-out's clearing, say).
    let mut set_cookies = Vec::new();
    if valid.refreshed {
        let max_age = (valid.session.expires_at - now) / 1000;
        set_cookies.push(state.cookies.set(&state.cookies.session_token, &cookie_value, Some(max_age)));
    }
    if cache_enabled && !valid.from_cache {
        set_cookies.push(sessions::cookies::session_data_cookie(state, &valid.session, &valid.user, token, now));
    }
    if !set_cookies.is_empty() {
        if let Some(pending) = parts.extensions.get::<PendingCookies>() {
            pending.push(set_cookies);
        }
    }
    Ok(Resolved::Valid(Box::new(SessionAuth {
        session: valid.session,
        user: valid.user,
        cookie_token_hash: Some(valid.token_hash),
        remembered: None,
    })))
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

fn api_key_header(parts: &Parts) -> Option<&str> {
    credentials::api_key(&parts.headers)
}

/// A bearer token that is a JWT (an extension token here), if any.
fn bearer_jwt(parts: &Parts) -> Option<&str> {
    credentials::bearer_token(&parts.headers).filter(|token| extensions::looks_like_jwt(token))
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
    let cached = state.api_keys.cache.lookup(&state.db, &api_keys::hash_key(key), now).await?;
    let Some(cached) = cached else {
        audit::emit(AuditEvent::ApiKeyRefused { key_id: None, reason: "unknown key" });
        return Err(invalid_api_key(KeyProblem::NotFound));
    };
    if let Some(problem) = cached.key.unusable(now) {
        audit::emit(AuditEvent::ApiKeyRefused { key_id: Some(&cached.key.id), reason: problem.code() });
        return Err(invalid_api_key(problem));
    }
    state.api_keys.usage.record(&cached.key.id, now);
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
    Ok(Principal { user: Arc::clone(&cached.user), via: Via::ApiKey(cached), tenant_header, cookie_token_hash: None })
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
                let SessionAuth { session, user, cookie_token_hash, .. } = *auth;
                Ok(Principal { user, via: Via::Session(Box::new(session)), tenant_header: None, cookie_token_hash })
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
                let known_service_token = state.service_tokens.verified.get(token, now).is_some();
                let extension = if known_service_token { None } else { state.extensions.verify(token, now).ok() };
                let Some(claims) = extension else {
                    // Not an extension token: an OAuth access token (`typ: at+jwt`), or a service token
                    // (both signed by the key ring).
                    if !known_service_token && crate::oauth::access::is_access_token(token) {
                        let claims = crate::oauth::access::verify(state, token, None).map_err(|_| refused())?;
                        return Ok(Credential::OAuth(claims));
                    }
                    let claims =
                        state.service_tokens.verify(&state.tokens.key_ring, token, now).map_err(|_| refused())?;
                    if state.tokens.revocations.is_revoked(&claims.jti, &claims.sub, &claims.client_id, claims.iat) {
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
