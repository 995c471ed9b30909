//! The signed-in browser: `GET /auth/{vendorId}/session` (the user's claims, never a token),
//! `POST …/refresh` (both cookies rotated through the issuer's refresh grant), `POST …/logout` (the
//! refresh token revoked at the issuer, both cookies cleared, the issuer's end-session URL answered).
//!
//! Renewal is shared with the proxy: one refresh per refresh token at a time on a node. The first request
//! that needs it starts the refresh on a task of its own (a client that hangs up cannot cut a rotation in
//! half) and every request carrying the same refresh cookie — during the refresh or within
//! [`RENEWAL_KEPT`] after it — gets the same new cookies, so an SPA firing ten calls with an expired access
//! token causes one rotation, not ten (which the issuer would take for a stolen, reused refresh token).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::watch;

use super::{
    add_cors, cookies, flow::vendor_of, issuer, issuer_unavailable, paths, require_origin, set_cookie, vendors::Vendor,
    ACCESS_COOKIE_MAX_AGE, REFRESH_COOKIE, REFRESH_COOKIE_MAX_AGE,
};
use crate::{
    audit::{self, AuditEvent},
    clock::{iso8601, Millis},
    crypto,
    error::ApiError,
    http::extractors::ApiPath,
    state::AppState,
};

/// How long a finished renewal is handed to requests that still carry the old refresh cookie.
pub const RENEWAL_KEPT: Millis = 60_000;

/// What the access-token cookie holds.
#[derive(Serialize, Deserialize)]
pub struct AccessCookie {
    /// The access token.
    #[serde(rename = "t")]
    pub token: String,
    /// When it expires (unix ms).
    #[serde(rename = "e")]
    pub expires_at: Millis,
    /// The user's claims from the ID token.
    #[serde(rename = "u", default)]
    pub user: Map<String, Value>,
}

impl AccessCookie {
    /// The cookie for a token answer; without `expires_in` the token is taken to live an hour.
    pub fn new(tokens: &issuer::TokenSet, user: Map<String, Value>, now: Millis) -> AccessCookie {
        let lifetime = tokens.expires_in.unwrap_or(3600).clamp(0, ACCESS_COOKIE_MAX_AGE);
        AccessCookie { token: tokens.access_token.clone(), expires_at: now + lifetime * 1000, user }
    }

    /// Sealed for the vendor's access-token cookie.
    pub fn seal(&self, key: &[u8; 32], vendor: &Vendor, now: Millis) -> Result<String, ApiError> {
        let plain = serde_json::to_string(self).map_err(ApiError::internal)?;
        Ok(cookies::seal(
            key,
            &vendor.config.vendor_id,
            &vendor.config.access_token_cookie,
            &plain,
            now + ACCESS_COOKIE_MAX_AGE * 1000,
        ))
    }

    /// The request's access-token cookie, opened (whether or not the token inside has expired).
    pub fn read(headers: &HeaderMap, vendor: &Vendor, now: Millis) -> Option<AccessCookie> {
        read_access(headers, vendor, now)
    }

    /// True while the access token is usable.
    pub fn is_fresh(&self, now: Millis) -> bool {
        usable(self.expires_at, now)
    }
}

/// The access-token cookie read as `T`: [`AccessCookie`], or [`AccessToken`] where the user's claims are
/// not needed (the proxy, the check: no map of claims built per request).
pub fn read_access<T: serde::de::DeserializeOwned>(headers: &HeaderMap, vendor: &Vendor, now: Millis) -> Option<T> {
    let name = &vendor.config.access_token_cookie;
    let sealed = crate::http::cookies::get_raw(headers, name)?;
    let plain = cookies::open(&vendor.keys, &vendor.config.vendor_id, name, sealed, now)?;
    serde_json::from_str(&plain).ok()
}

/// The access-token cookie without the claims, but `sub` and `email` (the check's headers).
#[derive(Deserialize)]
pub struct AccessToken {
    #[serde(rename = "t")]
    pub token: String,
    #[serde(rename = "e")]
    pub expires_at: Millis,
    #[serde(rename = "u", default)]
    pub user: HeaderClaims,
}

/// The claims a gateway gets as headers.
#[derive(Default, Deserialize)]
pub struct HeaderClaims {
    pub sub: Option<String>,
    pub email: Option<String>,
}

impl AccessToken {
    /// As [`AccessCookie::is_fresh`].
    pub fn is_fresh(&self, now: Millis) -> bool {
        usable(self.expires_at, now)
    }
}

/// True while a token expiring at `expires_at` is usable (a few seconds' margin, so it does not die on the
/// way to the API).
fn usable(expires_at: Millis, now: Millis) -> bool {
    now + 5_000 < expires_at
}

/// Seals a refresh token for the `__Host-rt` cookie.
pub fn seal_refresh(key: &[u8; 32], vendor: &Vendor, refresh_token: &str, now: Millis) -> String {
    cookies::seal(key, &vendor.config.vendor_id, REFRESH_COOKIE, refresh_token, now + REFRESH_COOKIE_MAX_AGE * 1000)
}

/// The request's refresh token, opened.
pub fn read_refresh(headers: &HeaderMap, vendor: &Vendor, now: Millis) -> Option<String> {
    let sealed = crate::http::cookies::get_raw(headers, REFRESH_COOKIE)?;
    cookies::open(&vendor.keys, &vendor.config.vendor_id, REFRESH_COOKIE, sealed, now)
}

/// A finished renewal: the new access cookie's content and the cookies to set.
pub struct Renewed {
    pub access: AccessCookie,
    pub set_cookies: Vec<String>,
}

/// Why a renewal failed.
#[derive(Debug)]
pub enum RenewalFailure {
    /// The issuer refused the refresh token (expired, revoked, reused): sign in again.
    Refused,
    /// The issuer could not be reached: try again later, keep the cookies.
    Unavailable(String),
}

type Outcome = Option<Arc<Result<Renewed, RenewalFailure>>>;

/// Renewals in flight or just done, by the hash of vendor id and refresh token.
#[derive(Default)]
pub struct Renewals {
    entries: Mutex<HashMap<String, (watch::Receiver<Outcome>, Millis)>>,
}

impl Renewals {
    /// Forgets renewals older than [`RENEWAL_KEPT`].
    pub fn prune(&self, now: Millis) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (_, at)| now.saturating_sub(*at) < RENEWAL_KEPT && *at <= now);
        }
    }

    fn forget(&self, key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }
}

/// Renews the tokens behind `refresh_token`: joins a renewal of the same token in flight or just done, or
/// starts one.
pub async fn renew(
    state: &AppState,
    vendor: &Arc<Vendor>,
    refresh_token: &str,
) -> Arc<Result<Renewed, RenewalFailure>> {
    let now = state.clock.now();
    let key =
        crypto::sha256_hex([vendor.config.vendor_id.as_bytes(), b"\0", refresh_token.as_bytes()].concat().as_slice());
    let mut receiver = {
        let Ok(mut entries) = state.bff.renewals.entries.lock() else {
            return Arc::new(Err(RenewalFailure::Unavailable("lock poisoned".into())));
        };
        match entries.get(&key) {
            Some((receiver, at)) if now.saturating_sub(*at) < RENEWAL_KEPT && *at <= now => receiver.clone(),
            _ => {
                if entries.len() > 10_000 {
                    entries.retain(|_, (_, at)| now.saturating_sub(*at) < RENEWAL_KEPT && *at <= now);
                }
                let (sender, receiver) = watch::channel(None);
                entries.insert(key.clone(), (receiver.clone(), now));
                let (state, vendor, refresh_token) = (state.clone(), Arc::clone(vendor), refresh_token.to_owned());
                // The renewal's audit events are the request's that started it.
                tokio::spawn(crate::audit::propagate(async move {
                    let outcome = refresh_once(&state, &vendor, &refresh_token).await;
                    let failed_for_now = matches!(outcome, Err(RenewalFailure::Unavailable(_)));
                    let _ = sender.send(Some(Arc::new(outcome)));
                    // An outage is not remembered: the next request tries again.
                    if failed_for_now {
                        state.bff.renewals.forget(&key);
                    }
                }));
                receiver
            }
        }
    };
    let outcome = match receiver.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone(),
        Err(_) => None,
    };
    outcome.unwrap_or_else(|| Arc::new(Err(RenewalFailure::Unavailable("the renewal task ended".into()))))
}

/// One refresh at the issuer, and the new cookies.
async fn refresh_once(state: &AppState, vendor: &Vendor, refresh_token: &str) -> Result<Renewed, RenewalFailure> {
    let vendor_id = vendor.config.vendor_id.as_str();
    let tokens = match issuer::refresh(state, vendor, refresh_token).await {
        Ok(tokens) => tokens,
        Err(issuer::IssuerError::Refused { error }) => {
            tracing::info!(vendor_id, error, "token handler: the issuer refused the refresh token");
            return Err(RenewalFailure::Refused);
        }
        Err(error) => {
            tracing::warn!(vendor_id, error = %error, "token handler: refreshing failed");
            return Err(RenewalFailure::Unavailable(error.to_string()));
        }
    };
    let user = match tokens.id_token.as_deref() {
        Some(id_token) => match issuer::verify_id_token(state, vendor, id_token, None).await {
            Ok(user) => user,
            Err(error) => {
                tracing::warn!(vendor_id, error = %error, "token handler: the refreshed ID token was refused");
                return Err(RenewalFailure::Refused);
            }
        },
        None => Map::new(),
    };
    let now = state.clock.now();
    let key =
        vendor.current_key().ok_or_else(|| RenewalFailure::Unavailable("the vendor has no current key".into()))?;
    let access = AccessCookie::new(&tokens, user, now);
    let sealed = access.seal(key, vendor, now).map_err(|_| RenewalFailure::Unavailable("sealing failed".into()))?;
    let mut set_cookies = vec![set_cookie::access(vendor, &sealed)];
    // An issuer that does not rotate refresh tokens answers none: the one we hold stays good.
    let refresh_token = tokens.refresh_token.as_deref().unwrap_or(refresh_token);
    set_cookies.push(set_cookie::refresh(&seal_refresh(key, vendor, refresh_token, now)));
    Ok(Renewed { access, set_cookies })
}

/// The usable access token of a request: the access cookie while fresh, else a renewal through the
/// refresh cookie (whose new cookies the answer must carry).
pub enum Tokens {
    Fresh(AccessCookie),
    Renewed(Arc<Result<Renewed, RenewalFailure>>),
    /// Neither cookie can help.
    None,
}

impl Tokens {
    /// Reads the cookies, renewing when the access token is missing or expired and a refresh cookie came.
    /// Without `claims` a fresh access cookie is read without the user's claims (the proxy's hot path).
    pub async fn of(state: &AppState, vendor: &Arc<Vendor>, headers: &HeaderMap, claims: bool) -> Tokens {
        let now = state.clock.now();
        if !claims {
            if let Some(fresh) = read_access::<AccessToken>(headers, vendor, now).filter(|a| a.is_fresh(now)) {
                return Tokens::Fresh(AccessCookie {
                    token: fresh.token,
                    expires_at: fresh.expires_at,
                    user: Map::new(),
                });
            }
        }
        let access = AccessCookie::read(headers, vendor, now);
        // A user's claims survive a refresh without an ID token.
        match access {
            Some(access) if access.is_fresh(now) => Tokens::Fresh(access),
            stale => match read_refresh(headers, vendor, now) {
                Some(refresh_token) => {
                    let renewed = renew(state, vendor, &refresh_token).await;
                    match (&*renewed, stale) {
                        (Ok(fresh), Some(stale)) if fresh.access.user.is_empty() && !stale.user.is_empty() => {
                            keep_claims(vendor, &renewed, stale.user, now)
                        }
                        _ => Tokens::Renewed(renewed),
                    }
                }
                None => Tokens::None,
            },
        }
    }
}

/// A renewal without an ID token: the new access cookie keeps the claims the old one had.
fn keep_claims(
    vendor: &Vendor,
    renewed: &Arc<Result<Renewed, RenewalFailure>>,
    user: Map<String, Value>,
    now: Millis,
) -> Tokens {
    let Ok(fresh) = &**renewed else { return Tokens::Renewed(Arc::clone(renewed)) };
    let (Some(key), access) = (
        vendor.current_key(),
        AccessCookie { token: fresh.access.token.clone(), expires_at: fresh.access.expires_at, user },
    ) else {
        return Tokens::Renewed(Arc::clone(renewed));
    };
    let Ok(sealed) = access.seal(key, vendor, now) else { return Tokens::Renewed(Arc::clone(renewed)) };
    let mut set_cookies = fresh.set_cookies.clone();
    set_cookies[0] = set_cookie::access(vendor, &sealed);
    Tokens::Renewed(Arc::new(Ok(Renewed { access, set_cookies })))
}

/// Adds `Set-Cookie` values and `Cache-Control: no-store` to an answer.
pub fn with_cookies(mut response: Response, cookies: &[String]) -> Response {
    let headers = response.headers_mut();
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET …/session`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HandlerSession {
    pub authenticated: bool,
    /// The user's claims from the ID token (`sub`, `name`, `email`, …); never a token.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub user: Option<Map<String, Value>>,
    /// When the access token expires (ISO 8601); the handler renews it through the refresh cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

fn signed_out(vendor: &Vendor, request: &HeaderMap, clear: bool) -> Response {
    let view = HandlerSession { authenticated: false, user: None, expires_at: None };
    let cookies = if clear { set_cookie::clear_tokens(vendor).to_vec() } else { Vec::new() };
    let mut response = with_cookies((StatusCode::UNAUTHORIZED, Json(view)).into_response(), &cookies);
    add_cors(response.headers_mut(), request, vendor);
    response
}

/// True if the request carries either token cookie (a refused one is then cleared).
fn has_token_cookie(headers: &HeaderMap, vendor: &Vendor) -> bool {
    let cookies = crate::http::cookies::get_raw;
    cookies(headers, &vendor.config.access_token_cookie).is_some() || cookies(headers, REFRESH_COOKIE).is_some()
}

/// Who is signed in.
#[utoipa::path(get, path = paths::BFF_SESSION, tag = "token-handler",
    params(("vendorId" = String, Path, description = "The vendor")),
    responses(
        (status = 200, body = HandlerSession, description = "Signed in (the cookies rotated on the way if the access token had expired)"),
        (status = 401, body = HandlerSession, description = "`{authenticated: false}`"),
        (status = 404, body = crate::error::ErrorBody, description = "`VENDOR_NOT_FOUND`"),
        (status = 502, body = crate::error::ErrorBody, description = "`ISSUER_UNAVAILABLE`: a needed refresh could not reach the issuer")))]
pub async fn session(
    State(state): State<AppState>,
    ApiPath(vendor_id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let vendor = vendor_of(&state, &vendor_id).await?;
    let view = |access: &AccessCookie| HandlerSession {
        authenticated: true,
        user: Some(access.user.clone()),
        expires_at: Some(iso8601(access.expires_at)),
    };
    let mut response = match Tokens::of(&state, &vendor, &headers, true).await {
        Tokens::Fresh(access) => with_cookies(Json(view(&access)).into_response(), &[]),
        Tokens::Renewed(renewed) => match &*renewed {
            Ok(renewed) => with_cookies(Json(view(&renewed.access)).into_response(), &renewed.set_cookies),
            Err(RenewalFailure::Refused) => return Ok(signed_out(&vendor, &headers, true)),
            Err(RenewalFailure::Unavailable(why)) => {
                return Err(issuer_unavailable(&vendor_id, &issuer::IssuerError::Unavailable(why.clone())))
            }
        },
        Tokens::None => return Ok(signed_out(&vendor, &headers, has_token_cookie(&headers, &vendor))),
    };
    add_cors(response.headers_mut(), &headers, &vendor);
    Ok(response)
}

/// A JSON error with the vendor's CORS headers (so the SPA can read it).
pub fn error_with_cors(error: ApiError, request: &HeaderMap, vendor: &Vendor, cookies: &[String]) -> Response {
    let mut response = with_cookies(error.into_response(), cookies);
    add_cors(response.headers_mut(), request, vendor);
    response
}

/// Rotates both token cookies.
#[utoipa::path(post, path = paths::BFF_REFRESH, tag = "token-handler",
    params(("vendorId" = String, Path, description = "The vendor")),
    responses(
        (status = 204, description = "Both cookies rotated"),
        (status = 401, body = crate::error::ErrorBody, description = "`UNAUTHORIZED`: no usable refresh cookie; both cookies cleared"),
        (status = 403, body = crate::error::ErrorBody, description = "`INVALID_ORIGIN`: no Origin on the vendor's list"),
        (status = 404, body = crate::error::ErrorBody, description = "`VENDOR_NOT_FOUND`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`: a body that is not JSON"),
        (status = 502, body = crate::error::ErrorBody, description = "`ISSUER_UNAVAILABLE`; the cookies are kept")))]
pub async fn refresh(
    State(state): State<AppState>,
    ApiPath(vendor_id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let vendor = vendor_of(&state, &vendor_id).await?;
    if let Err(error) = require_origin(&headers, &vendor) {
        return Ok(error_with_cors(error, &headers, &vendor, &[]));
    }
    let now = state.clock.now();
    let Some(refresh_token) = read_refresh(&headers, &vendor, now) else {
        return Ok(error_with_cors(ApiError::unauthorized(), &headers, &vendor, &set_cookie::clear_tokens(&vendor)));
    };
    let renewed = renew(&state, &vendor, &refresh_token).await;
    Ok(match &*renewed {
        Ok(renewed) => {
            let mut response = with_cookies(StatusCode::NO_CONTENT.into_response(), &renewed.set_cookies);
            add_cors(response.headers_mut(), &headers, &vendor);
            response
        }
        Err(RenewalFailure::Refused) => {
            error_with_cors(ApiError::unauthorized(), &headers, &vendor, &set_cookie::clear_tokens(&vendor))
        }
        Err(RenewalFailure::Unavailable(why)) => {
            let error = issuer_unavailable(&vendor_id, &issuer::IssuerError::Unavailable(why.clone()));
            error_with_cors(error, &headers, &vendor, &[])
        }
    })
}

/// `POST …/logout`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HandlerLogout {
    /// The issuer's end-session URL for the SPA to send the browser to (ends the issuer's own session), or
    /// null when the issuer has none.
    pub logout_url: Option<String>,
}

/// Signs out: revokes the refresh token at the issuer and clears both cookies.
#[utoipa::path(post, path = paths::BFF_LOGOUT, tag = "token-handler",
    params(("vendorId" = String, Path, description = "The vendor")),
    responses(
        (status = 200, body = HandlerLogout, description = "Signed out; both cookies cleared"),
        (status = 403, body = crate::error::ErrorBody, description = "`INVALID_ORIGIN`: no Origin on the vendor's list"),
        (status = 404, body = crate::error::ErrorBody, description = "`VENDOR_NOT_FOUND`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`: a body that is not JSON")))]
pub async fn logout(
    State(state): State<AppState>,
    ApiPath(vendor_id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let vendor = vendor_of(&state, &vendor_id).await?;
    if let Err(error) = require_origin(&headers, &vendor) {
        return Ok(error_with_cors(error, &headers, &vendor, &[]));
    }
    if let Some(refresh_token) = read_refresh(&headers, &vendor, state.clock.now()) {
        // Signing out here always succeeds; a revocation the issuer did not take is logged.
        if let Err(error) = issuer::revoke(&state, &vendor, &refresh_token).await {
            tracing::warn!(vendor_id, error = %error, "token handler: revoking the refresh token failed");
        }
        audit::emit(AuditEvent::BffSignedOut { vendor_id: &vendor_id });
    }
    let logout_url = match issuer::end_session_url(&state, &vendor).await {
        Ok(url) => url,
        Err(error) => {
            tracing::warn!(vendor_id, error = %error, "token handler: the issuer's end-session URL is unknown");
            None
        }
    };
    let mut response =
        with_cookies(Json(HandlerLogout { logout_url }).into_response(), &set_cookie::clear_tokens(&vendor));
    add_cors(response.headers_mut(), &headers, &vendor);
    Ok(response)
}
