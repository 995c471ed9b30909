//! `/v1/*`: the service-token API (DESIGN.md "Capability 4" and its contract details), and the JWKS. The
//! router is here with the token endpoints; clients and users have their own files, the credentials
//! theirs ([`super::credentials`]).

use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};

use utoipa_axum::{router::OpenApiRouter, routes};

use super::credentials::{invalid_token_response, token_reason, ClientKey, ServiceToken};
use super::{clients, paths, users};
// The routes sit above `state` and `principal`, which are built on the domain half of this capability
// (and of the others): the folders meet in a circle, the files do not (README, "Code tour").
use crate::{
    audit::{self, AuditEvent},
    clock::iso8601,
    error::{ApiError, ErrorBody},
    http::extractors::ApiJson,
    http::extractors::ClientInfo,
    state::AppState,
    tokens::{
        revocation::{self},
        Algorithm,
    },
};

/// Every `/v1` endpoint and the JWKS, each registered with its OpenAPI operation; `app::routes` merges them.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(clients::create_client, clients::list_clients))
        .routes(routes!(clients::delete_client))
        .routes(routes!(clients::rotate_client_key))
        .routes(routes!(users::create_user, users::list_users))
        .routes(routes!(users::delete_user))
        .routes(routes!(issue_token))
        .routes(routes!(revoke_token))
        .routes(routes!(me))
        .routes(routes!(jwks))
}

// ------------------------------------------------------------------------------------------------
// Tokens

/// `POST /v1/token` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ServiceTokenRequest)]
pub struct TokenRequest {
    /// `svu_…`
    pub user_id: String,
    /// The user's secret (`lks_…`), answered once when the user was created.
    #[schema(value_type = String, format = Password)]
    pub secret: crate::config::Secret,
}

/// A service token.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ServiceTokenResponse)]
pub struct TokenResponse {
    /// The signed JWT (`ES256` unless configured otherwise); the JWKS holds the key to verify it.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Lifetime in seconds: the configured `service.token_ttl` (30 days by default).
    pub expires_in: u64,
}

fn invalid_credentials() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS", "Invalid user id or secret")
}

/// Issues a service token for one of the calling client's users, after checking its secret. The
/// token's record is committed before the token is returned.
#[utoipa::path(post, path = paths::V1_TOKEN, tag = "service", request_body = TokenRequest,
    responses((status = 200, body = TokenResponse),
        (status = 400, body = ErrorBody, description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`"),
        (status = 401, body = ErrorBody, description = "`INVALID_CLIENT_KEY`, \
            `INVALID_CREDENTIALS` (unknown user or wrong secret)"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)"),
        (status = 429, body = ErrorBody, description = "`TOO_MANY_REQUESTS`, with `Retry-After`")))]
pub async fn issue_token(
    State(state): State<AppState>,
    client_info: ClientInfo,
    ClientKey(client): ClientKey,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    state.limits.verify_ip.hit(&client_info.rate_limit_key(), now).map_err(ApiError::too_many_requests)?;
    let ttl = state.settings.service.token_ttl;
    let issuer = super::issue::Issuer {
        db: &state.db,
        service: &state.service_tokens,
        key_ring: &state.tokens.key_ring,
        recorder: &state.tokens.recorder,
        algorithm: Algorithm::parse(&state.settings.service.algorithm).unwrap_or(Algorithm::Es256),
        ttl,
    };
    let (token, _) = super::issue::issue_token(&issuer, &client, &body.user_id, &body.secret, now).await.map_err(
        |error| match error {
            super::issue::IssueError::InvalidCredentials => invalid_credentials(),
            super::issue::IssueError::Internal(error) => ApiError::internal(error),
        },
    )?;
    let body = TokenResponse { access_token: token, token_type: "Bearer", expires_in: ttl };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `POST /v1/token/revoke` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ServiceTokenRevokeRequest)]
pub struct RevokeRequest {
    /// The service token (JWT) to revoke; another client's token is left alone.
    #[schema(value_type = String, format = Password)]
    pub token: crate::config::Secret,
}

/// `{revoked: true}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ServiceTokenRevoked)]
pub struct Revoked {
    /// Always true: revocation is idempotent, and says nothing about tokens that are not the caller's.
    pub revoked: bool,
}

/// Revokes one of the calling client's tokens on every node. Idempotent: an unknown, expired, already
/// revoked or foreign token also answers 200 (RFC 7009 §2.2) — and a foreign one is left alone.
#[utoipa::path(post, path = paths::V1_TOKEN_REVOKE, tag = "service", request_body = RevokeRequest,
    responses((status = 200, body = Revoked),
        (status = 400, body = ErrorBody, description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`"),
        (status = 401, body = ErrorBody, description = "`INVALID_CLIENT_KEY`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn revoke_token(
    State(state): State<AppState>,
    ClientKey(client): ClientKey,
    ApiJson(body): ApiJson<RevokeRequest>,
) -> Result<Json<Revoked>, ApiError> {
    let now = state.clock.now();
    match state.service_tokens.verify(&state.tokens.key_ring, body.token.expose(), now) {
        Ok(claims) if claims.client_id == client.id => {
            if revocation::revoke_token(&state.db, &state.tokens.revocations, &claims.jti, now).await? {
                audit::emit(AuditEvent::TokenRevoked { client_id: &client.id, jti: &claims.jti, reason: "revoked" });
            }
        }
        Ok(_) => audit::emit(AuditEvent::ServiceAuthFailed {
            client_id: Some(&client.id),
            user_id: None,
            reason: "revoke: another client's token",
        }),
        Err(error) => {
            tracing::debug!(client_id = %client.id, reason = token_reason(error), "revoke: nothing to revoke")
        }
    }
    Ok(Json(Revoked { revoked: true }))
}

/// `GET /v1/me` answer.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ServiceMe)]
pub struct Me<'a> {
    /// `sub`.
    pub user_id: &'a str,
    /// The client the user belongs to (`cli_…`).
    pub client_id: &'a str,
    /// The client's id for the user.
    pub external_id: Option<&'a str>,
    /// The user's display name, if it has one.
    pub name: Option<&'a str>,
    /// ISO 8601 (`exp`).
    pub expires_at: String,
}

/// The identity behind a service token.
#[utoipa::path(get, path = paths::V1_ME, tag = "service",
    responses((status = 200, body = Me),
        (status = 401, body = ErrorBody, description = "`INVALID_TOKEN`, with `WWW-Authenticate: Bearer`")))]
pub async fn me(State(state): State<AppState>, ServiceToken(claims): ServiceToken) -> Result<Response, Response> {
    let now = state.clock.now();
    let user =
        state.service_tokens.user(&state.db, &claims.sub, now).await.map_err(|e| ApiError::from(e).into_response())?;
    // A deleted user's tokens are revoked; this also covers a deletion whose event has not arrived yet.
    let Some(user) = user.filter(|user| user.client_id == claims.client_id) else {
        audit::emit(AuditEvent::ServiceAuthFailed {
            client_id: Some(&claims.client_id),
            user_id: Some(&claims.sub),
            reason: "token: user no longer exists",
        });
        return Err(invalid_token_response());
    };
    let body = Me {
        user_id: &user.id,
        client_id: &user.client_id,
        external_id: user.external_id.as_deref(),
        name: user.name.as_deref(),
        expires_at: iso8601(claims.exp * 1000),
    };
    Ok(Json(body).into_response())
}

/// The JWKS (RFC 7517 §5) as the key ring renders it: documentation only, the answer is pre-rendered.
#[derive(utoipa::ToSchema)]
pub struct JwkSet {
    /// Public keys (`kty`, `kid`, `alg`, `use` and the key's parameters), active ones first.
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
}

/// The public signing keys (RFC 7517), cacheable; retired keys stay until the tokens they signed expire.
#[utoipa::path(get, path = paths::JWKS, tag = "service",
    responses((status = 200, body = JwkSet)))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let max_age = format!("public, max-age={}", state.settings.tokens.jwks_max_age);
    let mut response = state.tokens.key_ring.jwks().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(value) = HeaderValue::from_str(&max_age) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    response
}
