//! `POST /oauth/token` (RFC 6749 §3.2, Auth0's wire format): form or JSON bodies, client authentication
//! by `client_secret_basic` (RFC 6749 §2.3.1 form-encoding), `client_secret_post` or `none` — only the
//! client's own method — and RFC 6749 error bodies with `Cache-Control: no-store`. Grants so far:
//! `client_credentials` (an access token for an API the client holds a client grant for); the others
//! answer `unsupported_grant_type` until they are built.

use axum::{
    extract::{FromRequest, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Form, Json,
};
use serde::{Deserialize, Serialize};

use super::{
    apis,
    clients::{AuthMethod, GrantType, OAuthClient},
    paths, store,
};
// The routes sit above `state`, which is built on the capabilities' domain halves: the folders meet in a
// circle, the files do not (README, "Code tour").
use crate::{
    audit::{self, AuditEvent},
    config::Secret,
    crypto,
    state::AppState,
    tokens::TokenType,
};

/// An RFC 6749 §5.2 error.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// `WWW-Authenticate: Basic` (a failed `client_secret_basic`).
    pub basic_challenge: bool,
}

/// RFC 6749's error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`,
    /// `invalid_scope`, `access_denied`.
    pub error: String,
    pub error_description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError { status, error, description: description.into(), basic_challenge: false }
    }

    fn invalid_request(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn access_denied(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::FORBIDDEN, "access_denied", description)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = OAuthErrorBody { error: self.error.to_owned(), error_description: self.description };
        let mut response = (self.status, Json(body)).into_response();
        no_store(response.headers_mut());
        if self.basic_challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"latchkey\""));
        }
        response
    }
}

impl From<crate::storage::StorageError> for OAuthError {
    fn from(error: crate::storage::StorageError) -> OAuthError {
        let error = crate::error::ApiError::internal(error);
        OAuthError::new(error.status, "server_error", error.message)
    }
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The token request, as a form or JSON (RFC 6749 §4.4.2, Auth0's fields).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    /// `client_credentials` (the authorization-code and refresh grants are not available yet).
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    /// For `client_secret_post`.
    #[schema(value_type = Option<String>, format = Password)]
    pub client_secret: Option<Secret>,
    /// The API's identifier (required for client_credentials).
    pub audience: Option<String>,
    /// Space-separated; absent: every scope the client grant holds.
    pub scope: Option<String>,
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
}

/// The claims of an access token (RFC 9068).
#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: String,
    sub: String,
    aud: &'a str,
    azp: &'a str,
    scope: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    gty: &'static str,
}

/// Reads the body as JSON or as a form; anything unreadable, or text holding U+0000, is
/// `invalid_request`.
async fn read_request(request: Request, state: &AppState) -> Result<TokenRequest, OAuthError> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::http::is_json_content_type);
    let body = if is_json {
        let crate::http::extractors::ApiJson(body) =
            crate::http::extractors::ApiJson::<TokenRequest>::from_request(request, state)
                .await
                .map_err(|error| OAuthError::invalid_request(error.message))?;
        body
    } else {
        let Form(body) = Form::<TokenRequest>::from_request(request, state)
            .await
            .map_err(|error| OAuthError::invalid_request(error.body_text()))?;
        body
    };
    let texts = [&body.grant_type, &body.client_id, &body.audience, &body.scope];
    let nul = texts.iter().any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
        || body.client_secret.as_ref().is_some_and(|s| s.expose().contains('\0'));
    if nul {
        return Err(OAuthError::invalid_request("A parameter holds U+0000"));
    }
    Ok(body)
}

/// `client_secret_basic`'s credentials: each half form-encoded (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, Secret)> {
    let (id, secret) = crate::principal::credentials::basic(headers)?;
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(&text.replace('+', " ")).decode_utf8().ok().map(|t| t.into_owned())
    };
    Some((decode(&id)?, Secret::new(decode(secret.expose())?)))
}

/// Authenticates the client by its own method only; every failure is one `invalid_client`.
async fn authenticate(state: &AppState, headers: &HeaderMap, body: &TokenRequest) -> Result<OAuthClient, OAuthError> {
    let basic = basic_credentials(headers);
    let tried_basic = basic.is_some();
    let refuse = |reason: &str, client_id: Option<&str>| {
        audit::emit(AuditEvent::OAuthClientAuthFailed { client_id, reason });
        OAuthError {
            basic_challenge: tried_basic,
            ..OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", "Client authentication failed")
        }
    };
    let (method, client_id, secret) = match (basic, &body.client_secret) {
        (Some(_), Some(_)) => return Err(OAuthError::invalid_request("Use one client authentication method")),
        (Some((id, secret)), None) => {
            if body.client_id.as_ref().is_some_and(|body_id| *body_id != id) {
                return Err(OAuthError::invalid_request("client_id differs from the Basic credentials"));
            }
            (AuthMethod::ClientSecretBasic, id, Some(secret))
        }
        (None, secret) => {
            let id = body.client_id.clone().ok_or_else(|| refuse("no client_id", None))?;
            let method = if secret.is_some() { AuthMethod::ClientSecretPost } else { AuthMethod::None };
            (method, id, secret.clone())
        }
    };
    let Some((client, hash)) = store::client_with_secret_hash(&state.db, &client_id).await? else {
        return Err(refuse("unknown client", None));
    };
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
    Ok(client)
}

/// Issues tokens.
#[utoipa::path(post, path = paths::TOKEN, tag = "oauth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded",
        description = "A form, or the same fields as JSON"),
    responses((status = 200, body = TokenResponse),
        (status = 400, body = OAuthErrorBody,
            description = "`invalid_request`, `unsupported_grant_type`, `unauthorized_client` (the grant is not enabled for the client)"),
        (status = 401, body = OAuthErrorBody,
            description = "`invalid_client` (with `WWW-Authenticate: Basic` when Basic was tried)"),
        (status = 403, body = OAuthErrorBody,
            description = "`access_denied`: no or an unknown audience, no client grant for it, or a scope outside the grant"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`: neither a form nor JSON")))]
pub async fn token(State(state): State<AppState>, request: Request) -> Result<Response, OAuthError> {
    let headers = request.headers().clone();
    let body = read_request(request, &state).await?;
    let grant_type = body.grant_type.clone().ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    let grant = match grant_type.as_str() {
        "client_credentials" => GrantType::ClientCredentials,
        _ => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("Unsupported grant type: {grant_type}"),
            ))
        }
    };
    let client = authenticate(&state, &headers, &body).await?;
    if !client.grant_types.contains(&grant) {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            format!("Grant type '{grant_type}' not allowed for the client."),
        ));
    }
    client_credentials(&state, &client, &body).await
}

async fn client_credentials(
    state: &AppState,
    client: &OAuthClient,
    body: &TokenRequest,
) -> Result<Response, OAuthError> {
    let audience = body
        .audience
        .as_deref()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| OAuthError::access_denied("No audience parameter was provided"))?;
    let base_url = &state.settings.base_url;
    let api = apis::by_identifier(&state.db, base_url, audience)
        .await?
        .ok_or_else(|| OAuthError::access_denied(format!("Service not found: {audience}")))?;
    let grant = store::client_grant_for(&state.db, &client.client_id, audience)
        .await?
        .ok_or_else(|| OAuthError::access_denied(format!("Client is not authorized to access \"{audience}\".")))?;
    // What the grant holds and the API still defines.
    let granted: Vec<&str> =
        grant.scope.iter().map(String::as_str).filter(|s| api.scopes.iter().any(|d| d.value == *s)).collect();
    let scope: Vec<&str> = match body.scope.as_deref().map(str::split_whitespace) {
        Some(requested) => {
            let requested: Vec<&str> = requested.collect();
            let missing: Vec<&str> = requested.iter().copied().filter(|s| !granted.contains(s)).collect();
            if !missing.is_empty() {
                return Err(OAuthError::access_denied(format!(
                    "Client has not been granted scopes: {}",
                    missing.join(", ")
                )));
            }
            requested
        }
        None => granted,
    };
    let scope = scope.join(" ");
    let now = state.clock.now();
    let iat = now / 1000;
    let claims = AccessClaims {
        iss: format!("{}/", base_url.trim_end_matches('/')),
        sub: format!("{}@clients", client.client_id),
        aud: audience,
        azp: &client.client_id,
        scope: &scope,
        iat,
        exp: iat + api.token_lifetime,
        jti: crypto::random_alphanumeric(24),
        gty: "client-credentials",
    };
    let access_token = state
        .tokens
        .key_ring
        .sign_ensuring(&state.db, api.signing_alg, &claims, TokenType::AccessToken, now)
        .await
        .map_err(|error| {
            let error = crate::error::ApiError::internal(error);
            OAuthError::new(error.status, "server_error", error.message)
        })?;
    audit::emit(AuditEvent::OAuthTokenIssued {
        client_id: &client.client_id,
        grant_type: "client_credentials",
        audience,
        jti: &claims.jti,
    });
    let body = TokenResponse { access_token, token_type: "Bearer", expires_in: api.token_lifetime, scope };
    let mut response = Json(body).into_response();
    no_store(response.headers_mut());
    Ok(response)
}
