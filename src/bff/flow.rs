//! Signing in through the handler: `GET /auth/{vendorId}/login?returnTo=` puts a fresh state, nonce and
//! PKCE verifier (and the checked `returnTo`) in the sealed temporary cookie and sends the browser to the
//! issuer; `GET /auth/{vendorId}/callback` checks the state against that cookie, exchanges the code
//! server-side, verifies the ID token, sets the two token cookies and sends the browser back.

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    cookies, issuer, issuer_unavailable, paths, session::AccessCookie, set_cookie, vendors::Vendor, TX_COOKIE,
    TX_MAX_AGE,
};
use crate::{
    audit::{self, AuditEvent},
    crypto,
    error::ApiError,
    http::extractors::{ApiPath, ApiQuery},
    state::AppState,
};

/// `GET …/login`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct LoginQuery {
    /// Where to send the browser afterwards: a URL on one of the vendor's `allowedReturnTo` origins.
    /// Default: the first allowed origin.
    pub return_to: Option<String>,
}

/// What the temporary cookie holds.
#[derive(Serialize, Deserialize)]
struct Transaction {
    /// `state`.
    s: String,
    /// `nonce`.
    n: String,
    /// The PKCE verifier.
    v: String,
    /// Where to return.
    r: String,
}

/// A vendor by the path's id, or 404.
pub async fn vendor_of(state: &AppState, vendor_id: &str) -> Result<std::sync::Arc<Vendor>, ApiError> {
    if !super::is_vendor_id(vendor_id) {
        return Err(super::vendor_not_found());
    }
    state.bff.vendor(state, vendor_id).await?.ok_or_else(super::vendor_not_found)
}

/// `returnTo` checked: an absolute http(s) URL without credentials on one of the vendor's origins
/// (exactly: scheme, host, port). Relative, scheme-relative and `javascript:` forms are refused.
pub fn check_return_to(vendor: &Vendor, return_to: Option<&str>) -> Result<String, ApiError> {
    let refuse =
        || ApiError::bad_request("INVALID_RETURN_TO", "returnTo must be a URL on one of the vendor's allowed origins");
    let Some(text) = return_to else {
        let first = vendor.config.allowed_return_to.first().ok_or_else(refuse)?;
        return Ok(format!("{first}/"));
    };
    if text.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') {
        return Err(refuse());
    }
    let url = url::Url::parse(text).map_err(|_| refuse())?;
    if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() || url.password().is_some() {
        return Err(refuse());
    }
    if !vendor.allows_origin(&url.origin().ascii_serialization()) {
        return Err(refuse());
    }
    Ok(url.to_string())
}

fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(to) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

/// True when a browser navigated here (it asks for HTML first): a person is looking, not a program.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.split(',').next().is_some_and(|first| first.trim().starts_with("text/html")))
}

/// A refused sign-in: for a browser, Latchkey's error page (a person is looking); for a program, the
/// `{code, message}` body. Either way 400 and the temporary cookie deleted.
fn refuse_clearing_tx(headers: &HeaderMap, error: ApiError) -> Response {
    let mut response = if wants_html(headers) {
        crate::oauth::pages::message(
            error.status,
            "Signing in could not be finished",
            "This sign-in took too long, was started in another browser, or its link was changed. Go back to the app and sign in again.",
        )
    } else {
        error.into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&set_cookie::clear_tx()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Starts signing in.
#[utoipa::path(get, path = paths::BFF_LOGIN, tag = "token-handler",
    params(("vendorId" = String, Path, description = "The vendor"), LoginQuery),
    responses(
        (status = 302, description = "To the issuer's authorization endpoint (code flow, S256 PKCE, state, nonce); sets the temporary `__Host-lk-tx` cookie"),
        (status = 400, body = crate::error::ErrorBody, description = "`INVALID_RETURN_TO`: returnTo is not on an allowed origin; `VALIDATION_ERROR`: a malformed query string"),
        (status = 404, body = crate::error::ErrorBody, description = "`VENDOR_NOT_FOUND`"),
        (status = 502, body = crate::error::ErrorBody, description = "`ISSUER_UNAVAILABLE`: the issuer's discovery failed")))]
pub async fn login(
    State(state): State<AppState>,
    ApiPath(vendor_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<LoginQuery>,
) -> Result<Response, ApiError> {
    let vendor = vendor_of(&state, &vendor_id).await?;
    let return_to = check_return_to(&vendor, query.return_to.as_deref())?;
    let endpoint =
        issuer::authorization_endpoint(&state, &vendor).await.map_err(|e| issuer_unavailable(&vendor_id, &e))?;
    let key = vendor
        .current_key()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("vendor {vendor_id} has no current key")))?;
    let tx = Transaction {
        s: random_token(),
        n: random_token(),
        v: format!("{}{}", random_token(), random_token()),
        r: return_to,
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(tx.v.as_bytes()));
    let mut url = url::Url::parse(&endpoint).map_err(ApiError::internal)?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &vendor.config.client_id)
            .append_pair("redirect_uri", &vendor.callback)
            .append_pair("scope", &vendor.config.scopes.join(" "))
            .append_pair("state", &tx.s)
            .append_pair("nonce", &tx.n)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(audience) = &vendor.config.audience {
            query.append_pair("audience", audience);
        }
    }
    let now = state.clock.now();
    let plaintext = serde_json::to_string(&tx).map_err(ApiError::internal)?;
    let sealed = cookies::seal(key, &vendor_id, TX_COOKIE, &plaintext, now + TX_MAX_AGE * 1000);
    Ok(redirect(url.as_str(), &[set_cookie::tx(&sealed)]))
}

/// The issuer's redirect back.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    /// The issuer's error code, when signing in did not succeed.
    pub error: Option<String>,
}

/// `returnTo` with `error` added.
fn with_error(return_to: &str, error: &str) -> String {
    // Only the code's own characters: the issuer's text is not ours to echo into another site's URL.
    let error: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
    let error = if error.is_empty() { "server_error".to_owned() } else { error };
    match url::Url::parse(return_to) {
        Ok(mut url) => {
            url.query_pairs_mut().append_pair("error", &error);
            url.to_string()
        }
        Err(_) => return_to.to_owned(),
    }
}

/// Finishes signing in.
#[utoipa::path(get, path = paths::BFF_CALLBACK, tag = "token-handler",
    params(("vendorId" = String, Path, description = "The vendor"), CallbackQuery),
    responses(
        (status = 302, description = "To returnTo: with the access-token and `__Host-rt` cookies set, or with `error` added when the issuer refused"),
        (status = 400, description = "`INVALID_LOGIN_STATE` (the temporary cookie is missing, tampered with or expired), `STATE_MISMATCH`, `INVALID_REQUEST` (no code), `VALIDATION_ERROR` (a malformed query string); no token cookie is set. A browser navigation (`Accept: text/html`) gets Latchkey's error page instead of the JSON body",
            content((crate::error::ErrorBody = "application/json"), (String = "text/html"))),
        (status = 404, body = crate::error::ErrorBody, description = "`VENDOR_NOT_FOUND`")))]
pub async fn callback(
    State(state): State<AppState>,
    ApiPath(vendor_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<CallbackQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let vendor = vendor_of(&state, &vendor_id).await?;
    let now = state.clock.now();
    let opened = crate::http::cookies::get_raw(&headers, TX_COOKIE)
        .and_then(|sealed| cookies::open(&vendor.keys, &vendor_id, TX_COOKIE, sealed, now))
        .and_then(|plain| serde_json::from_str::<Transaction>(&plain).ok());
    let Some(tx) = opened else {
        return Ok(refuse_clearing_tx(
            &headers,
            ApiError::bad_request(
                "INVALID_LOGIN_STATE",
                "The sign-in's cookie is missing, expired or invalid: start signing in again",
            ),
        ));
    };
    let state_matches = query.state.as_deref().is_some_and(|s| crypto::constant_time_eq(s.as_bytes(), tx.s.as_bytes()));
    if !state_matches {
        return Ok(refuse_clearing_tx(
            &headers,
            ApiError::bad_request("STATE_MISMATCH", "The state does not match this sign-in"),
        ));
    }
    let back_with = |error: &str| Ok(redirect(&with_error(&tx.r, error), &[set_cookie::clear_tx()]));
    if let Some(error) = &query.error {
        return back_with(error);
    }
    let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
        return Ok(refuse_clearing_tx(
            &headers,
            ApiError::bad_request("INVALID_REQUEST", "The issuer sent neither a code nor an error"),
        ));
    };
    let tokens = match issuer::exchange_code(&state, &vendor, code, &tx.v).await {
        Ok(tokens) => tokens,
        Err(error) => {
            tracing::warn!(vendor_id, error = %error, "token handler: the code exchange failed");
            return back_with(failure_code(&error));
        }
    };
    let Some(id_token) = tokens.id_token.as_deref() else {
        tracing::warn!(vendor_id, "token handler: the issuer answered without an ID token");
        return back_with("invalid_id_token");
    };
    let user = match issuer::verify_id_token(&state, &vendor, id_token, Some(&tx.n)).await {
        Ok(user) => user,
        Err(error) => {
            tracing::warn!(vendor_id, error = %error, "token handler: the ID token was refused");
            return back_with(failure_code(&error));
        }
    };
    let key = vendor
        .current_key()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("vendor {vendor_id} has no current key")))?;
    let access = AccessCookie::new(&tokens, user, now);
    let mut set = vec![set_cookie::clear_tx(), set_cookie::access(&vendor, &access.seal(key, &vendor, now)?)];
    match &tokens.refresh_token {
        Some(refresh_token) => {
            set.push(set_cookie::refresh(&super::session::seal_refresh(key, &vendor, refresh_token, now)))
        }
        None => set.push(set_cookie::clear_tokens(&vendor)[1].clone()),
    }
    if let Some(sub) = access.user.get("sub").and_then(|s| s.as_str()) {
        audit::emit(AuditEvent::BffSignedIn { vendor_id: &vendor_id, sub });
    }
    Ok(redirect(&tx.r, &set))
}

/// The `error` a failed exchange or check sends back to the SPA.
fn failure_code(error: &issuer::IssuerError) -> &str {
    match error {
        issuer::IssuerError::Refused { error } => error,
        issuer::IssuerError::InvalidIdToken(_) => "invalid_id_token",
        issuer::IssuerError::Unavailable(_) => "temporarily_unavailable",
        issuer::IssuerError::Misconfigured(_) => "server_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_added_to_return_to_as_a_bare_code() {
        assert_eq!(
            with_error("https://app.example/x?a=1", "access_denied"),
            "https://app.example/x?a=1&error=access_denied"
        );
        assert_eq!(with_error("https://app.example/", "<script>"), "https://app.example/?error=script");
        assert_eq!(with_error("https://app.example/", "&&"), "https://app.example/?error=server_error");
    }
}
