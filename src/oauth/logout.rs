//! Logout: Auth0's `GET /v2/logout?client_id&returnTo` and OpenID Connect RP-initiated logout,
//! `GET /oidc/logout?id_token_hint&post_logout_redirect_uri&state&client_id`. Both end the browser's
//! SSO session (as sign-out does) and then redirect only to a URL in the client's `allowed_logout_urls`,
//! matched exactly, with `state` echoed; anything else gets a signed-out page. Refresh tokens survive
//! logout (offline access), as with Auth0.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use base64::Engine;
use serde::Deserialize;

use super::{authorize::redirect, pages, paths, store};
use crate::{
    audit::{self, AuditEvent},
    http::extractors::ApiQuery,
    principal::extractors::MaybeSession,
    sessions,
    state::AppState,
};

/// Auth0's logout parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LogoutQuery {
    pub client_id: Option<String>,
    /// Where to go afterwards: one of the client's `allowed_logout_urls`.
    #[serde(rename = "returnTo")]
    pub return_to: Option<String>,
    pub state: Option<String>,
}

/// RP-initiated logout's parameters (OpenID Connect RP-Initiated Logout 1.0 §2).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct OidcLogoutQuery {
    /// An ID token this provider issued to the client (its `aud` names the client when `client_id` is absent).
    pub id_token_hint: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    pub client_id: Option<String>,
}

/// Ends the session, then answers with the redirect or the signed-out page.
async fn log_out(
    state: &AppState,
    session: MaybeSession,
    client_id: Option<&str>,
    to: Option<&str>,
    echo: Option<&str>,
) -> Response {
    if let Some(auth) = session.auth {
        let now = state.clock.now();
        if let Err(error) =
            sessions::revoke(&state.db, &state.sessions.revoked, std::slice::from_ref(&auth.session.id), now).await
        {
            return super::authorize::unavailable(error);
        }
        audit::emit(AuditEvent::SessionsRevoked { user_id: &auth.user.id, count: 1, reason: "oauth_logout" });
    }
    let clear = state.cookies.clear_session();
    let target = match (client_id, to) {
        (Some(client_id), Some(to)) => match store::find_client(&state.db, client_id).await {
            Ok(Some((client, _))) if client.allowed_logout_urls.iter().any(|allowed| allowed == to) => Some(to),
            Ok(_) => None,
            Err(error) => return super::authorize::unavailable(error),
        },
        _ => None,
    };
    let response = match target.and_then(|to| url::Url::parse(to).ok()) {
        Some(mut url) => {
            if let Some(echo) = echo {
                url.query_pairs_mut().append_pair("state", echo);
            }
            redirect(url.as_str())
        }
        None => pages::message(StatusCode::OK, "You are signed out", "You can close this window."),
    };
    (clear, response).into_response()
}

/// Logs out (Auth0's endpoint).
#[utoipa::path(get, path = paths::LOGOUT, tag = "oauth", params(LogoutQuery),
    responses((status = 302, description = "To `returnTo`, one of the client's allowed logout URLs"),
        (status = 200, description = "The signed-out page", content_type = "text/html", body = String),
        (status = 400, body = crate::error::ErrorBody, description = "`VALIDATION_ERROR`: a malformed query string")))]
pub async fn logout(
    State(state): State<AppState>,
    session: MaybeSession,
    ApiQuery(query): ApiQuery<LogoutQuery>,
) -> Response {
    log_out(&state, session, query.client_id.as_deref(), query.return_to.as_deref(), query.state.as_deref()).await
}

/// The `aud` of an ID token, read without verifying it: it only names which client's allowed logout
/// URLs to check, and those are the only places a redirect can go.
fn audience_of(id_token: &str) -> Option<String> {
    let payload = id_token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    match &claims["aud"] {
        serde_json::Value::String(aud) => Some(aud.clone()),
        serde_json::Value::Array(auds) => auds.first().and_then(|a| a.as_str()).map(str::to_owned),
        _ => None,
    }
}

/// Logs out (OpenID Connect RP-initiated logout).
#[utoipa::path(get, path = paths::OIDC_LOGOUT, tag = "oauth", params(OidcLogoutQuery),
    responses((status = 302, description = "To `post_logout_redirect_uri`, one of the client's allowed logout URLs, with `state`"),
        (status = 200, description = "The signed-out page", content_type = "text/html", body = String),
        (status = 400, body = crate::error::ErrorBody, description = "`VALIDATION_ERROR`: a malformed query string")))]
pub async fn oidc_logout(
    State(state): State<AppState>,
    session: MaybeSession,
    ApiQuery(query): ApiQuery<OidcLogoutQuery>,
) -> Response {
    let client_id = query.client_id.clone().or_else(|| query.id_token_hint.as_deref().and_then(audience_of));
    let to = query.post_logout_redirect_uri.as_deref();
    log_out(&state, session, client_id.as_deref(), to, query.state.as_deref()).await
}
