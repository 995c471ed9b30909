//! `POST /oauth/token` (RFC 6749 §3.2, Auth0's wire format): form or JSON bodies, client authentication
//! by `client_secret_basic` (RFC 6749 §2.3.1 form-encoding), `client_secret_post` or `none` — only the
//! client's own method, failures rate-limited per IP and per client — and RFC 6749 error bodies with
//! `Cache-Control: no-store`. Each grant is a module of [`super::grants`]. Browser clients call it
//! cross-origin: the answer carries CORS headers for an `Origin` in the client's `web_origins`.

use axum::{
    extract::{FromRequest, Request, State},
    http::{header, HeaderMap, StatusCode},
    response::Response,
    Form,
};
use serde::{Deserialize, Serialize};

use super::{
    clients::{AuthMethod, GrantType, OAuthClient},
    cors,
    error::{OAuthError, OAuthErrorBody},
    grants, paths,
};
// The routes sit above `state`, which is built on the capabilities' domain halves: the folders meet in a
// circle, the files do not (README, "Code tour").
use crate::{
    audit::{self, AuditEvent},
    config::Secret,
    crypto,
    http::extractors::ClientInfo,
    state::AppState,
};

/// The token request, as a form or JSON (RFC 6749 §4.4.2, Auth0's fields).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    /// `authorization_code`, `refresh_token` or `client_credentials`.
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    /// For `client_secret_post`.
    #[schema(value_type = Option<String>, format = Password)]
    pub client_secret: Option<Secret>,
    /// The API's identifier (required for client_credentials).
    pub audience: Option<String>,
    /// Space-separated. client_credentials: absent means every scope the client grant holds; refresh:
    /// a narrower set than the grant's.
    pub scope: Option<String>,
    /// authorization_code: the code.
    #[schema(value_type = Option<String>, format = Password)]
    pub code: Option<Secret>,
    /// authorization_code: the redirect URI the code was sent to.
    pub redirect_uri: Option<String>,
    /// authorization_code: the PKCE verifier.
    #[schema(value_type = Option<String>, format = Password)]
    pub code_verifier: Option<Secret>,
    /// refresh_token: the refresh token.
    #[schema(value_type = Option<String>, format = Password)]
    pub refresh_token: Option<Secret>,
}

/// A successful token answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: i64,
    /// The scopes granted, space-separated.
    pub scope: String,
    /// When `openid` was granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// When `offline_access` was granted (and the client may refresh).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Password)]
    pub refresh_token: Option<String>,
}

/// Reads a body as JSON or as a form (the token, revocation and introspection endpoints take both);
/// anything unreadable is `invalid_request`.
pub async fn read_body<T: serde::de::DeserializeOwned + Send + 'static>(
    request: Request,
    state: &AppState,
) -> Result<T, OAuthError> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::http::is_json_content_type);
    let body = if is_json {
        let crate::http::extractors::ApiJson(body) =
            crate::http::extractors::ApiJson::<T>::from_request(request, state)
                .await
                .map_err(|error| OAuthError::invalid_request(error.message))?;
        body
    } else {
        let Form(body) = Form::<T>::from_request(request, state)
            .await
            .map_err(|error| OAuthError::invalid_request(error.body_text()))?;
        body
    };
    Ok(body)
}

/// Reads the token request; text holding U+0000 is `invalid_request`.
async fn read_request(request: Request, state: &AppState) -> Result<TokenRequest, OAuthError> {
    let body: TokenRequest = read_body(request, state).await?;
    let texts = [&body.grant_type, &body.client_id, &body.audience, &body.scope, &body.redirect_uri];
    let secrets = [&body.client_secret, &body.code, &body.code_verifier, &body.refresh_token];
    let nul = texts.iter().any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
        || secrets.iter().any(|s| s.as_ref().is_some_and(|s| s.expose().contains('\0')));
    if nul {
        return Err(OAuthError::invalid_request("A parameter holds U+0000"));
    }
    Ok(body)
}

/// `client_secret_basic`'s credentials: each half form-encoded (RFC 6749 §2.3.1).
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, Secret)> {
    let (id, secret) = crate::principal::credentials::basic(headers)?;
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(&text.replace('+', " ")).decode_utf8().ok().map(|t| t.into_owned())
    };
    Some((decode(&id)?, Secret::new(decode(secret.expose())?)))
}

/// Authenticates the client by its own method only; every failure is one `invalid_client`, counted
/// against the caller's IP and the client id (too many → 429 `too_many_requests` until the window ends).
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    caller: &ClientInfo,
    client_id: Option<&str>,
    client_secret: Option<&Secret>,
) -> Result<OAuthClient, OAuthError> {
    let basic = basic_credentials(headers);
    let tried_basic = basic.is_some();
    let now = state.clock.now();
    let ip = caller.rate_limit_key();
    let named = basic.as_ref().map(|(id, _)| id.clone()).or(client_id.map(str::to_owned)).unwrap_or_default();
    let named = named.as_str();
    let limited =
        state.limits.client_auth_ip.check(&ip, now).and_then(|()| state.limits.client_auth_client.check(named, now));
    if let Err(retry_after) = limited {
        return Err(OAuthError::too_many_requests(retry_after));
    }
    let refuse = |reason: &str, client_id: Option<&str>| {
        audit::emit(AuditEvent::OAuthClientAuthFailed { client_id, reason });
        state.limits.client_auth_ip.record(&ip, now);
        if !named.is_empty() {
            state.limits.client_auth_client.record(named, now);
        }
        OAuthError {
            basic_challenge: tried_basic,
            ..OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", "Client authentication failed")
        }
    };
    let (method, client_id, secret) = match (basic, client_secret) {
        (Some(_), Some(_)) => return Err(OAuthError::invalid_request("Use one client authentication method")),
        (Some((id, secret)), None) => {
            if client_id.is_some_and(|body_id| body_id != id) {
                return Err(OAuthError::invalid_request("client_id differs from the Basic credentials"));
            }
            (AuthMethod::ClientSecretBasic, id, Some(secret))
        }
        (None, secret) => {
            let id = client_id.ok_or_else(|| refuse("no client_id", None))?.to_owned();
            let method = if secret.is_some() { AuthMethod::ClientSecretPost } else { AuthMethod::None };
            (method, id, secret.cloned())
        }
    };
    let Some(entry) = state.oauth.config.client(&state.db, &client_id, now).await? else {
        return Err(refuse("unknown client", None));
    };
    let (client, hash) = (&entry.0, entry.1.as_deref());
    if client.token_endpoint_auth_method != method {
        return Err(refuse("not the client's authentication method", Some(&client.client_id)));
    }
    if method.is_confidential() {
        let presented = secret.map(|s| crypto::sha256_hex(s.expose().as_bytes())).unwrap_or_default();
        let matches = hash.is_some_and(|hash| crypto::constant_time_eq(presented.as_bytes(), hash.as_bytes()));
        if !matches {
            return Err(refuse("wrong secret", Some(&client.client_id)));
        }
    }
    Ok(client.clone())
}

/// Issues tokens.
#[utoipa::path(post, path = paths::TOKEN, tag = "oauth",
    request_body(description = "A form, or the same fields as JSON",
        content((TokenRequest = "application/x-www-form-urlencoded"), (TokenRequest = "application/json"))),
    responses((status = 200, body = TokenResponse),
        (status = 400, body = OAuthErrorBody,
            description = "`invalid_request`, `invalid_grant`, `invalid_scope`, `unsupported_grant_type`, `unauthorized_client` (the grant is not enabled for the client)"),
        (status = 401, body = OAuthErrorBody,
            description = "`invalid_client` (with `WWW-Authenticate: Basic` when Basic was tried)"),
        (status = 403, body = OAuthErrorBody,
            description = "`access_denied`: no or an unknown audience, no client grant for it, or a scope outside the grant"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`: neither a form nor JSON"),
        (status = 429, body = OAuthErrorBody, description = "`too_many_requests`: too many failed client authentications")))]
pub async fn token(State(state): State<AppState>, caller: ClientInfo, request: Request) -> Response {
    let headers = request.headers().clone();
    let origin = cors::origin(&headers);
    let (answer, client) = match read_request(request, &state).await {
        Ok(body) => grant(&state, &headers, &caller, &body).await,
        Err(error) => (Err(error), None),
    };
    let mut response = match answer {
        Ok(response) => response,
        Err(error) => axum::response::IntoResponse::into_response(error),
    };
    cors::allow(&state, &mut response, origin.as_deref(), client.as_ref()).await;
    response
}

/// Authenticates the client and runs the grant; also returns the client (when known) for CORS.
async fn grant(
    state: &AppState,
    headers: &HeaderMap,
    caller: &ClientInfo,
    body: &TokenRequest,
) -> (Result<Response, OAuthError>, Option<cors::ClientRef>) {
    let named =
        cors::ClientRef::named(body.client_id.as_deref().or(basic_credentials(headers).map(|b| b.0).as_deref()));
    let Some(grant_type) = body.grant_type.as_deref() else {
        return (Err(OAuthError::invalid_request("grant_type is required")), named);
    };
    let grant = match grant_type {
        "client_credentials" => GrantType::ClientCredentials,
        "authorization_code" => GrantType::AuthorizationCode,
        "refresh_token" => GrantType::RefreshToken,
        _ => {
            let error = OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("Unsupported grant type: {grant_type}"),
            );
            return (Err(error), named);
        }
    };
    let client =
        match authenticate(state, headers, caller, body.client_id.as_deref(), body.client_secret.as_ref()).await {
            Ok(client) => client,
            Err(error) => return (Err(error), named),
        };
    let known = Some(cors::ClientRef::Known(client.web_origins.clone()));
    if !client.grant_types.contains(&grant) {
        let error = OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            format!("Grant type '{grant_type}' not allowed for the client."),
        );
        return (Err(error), known);
    }
    let answer = match grant {
        GrantType::ClientCredentials => grants::client_credentials::grant(state, &client, body).await,
        GrantType::AuthorizationCode => grants::code::grant(state, &client, body).await,
        GrantType::RefreshToken => grants::refresh::grant(state, &client, body).await,
    };
    (answer.map(grants::answer), known)
}
