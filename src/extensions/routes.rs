//! `POST /api/extensions/token` and `POST /api/extensions/verify`.

use axum::{extract::State, http::StatusCode, Json};
use serde::{Deserialize, Serialize};

use utoipa_axum::{router::OpenApiRouter, routes};

use super::paths;
use super::{ExtensionClaims, TokenProblem, AUDIENCE};
// The routes sit above `state` and `principal`, which are built on the domain half of this capability
// (and of the others): the folders meet in a circle, the files do not (README, "Code tour").
use crate::{
    audit::{self, AuditEvent},
    clock::iso8601,
    crypto,
    error::{ApiError, ErrorBody},
    http::extractors::ApiJson,
    http::extractors::ClientInfo,
    principal::{self, Principal},
    state::AppState,
};

/// Token and verify, each registered with its OpenAPI operation; `app::routes` merges them.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(issue)).routes(routes!(verify))
}

/// Scopes as a list or a space-separated string.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = ExtensionScopes)]
pub enum Scopes {
    /// `["read", "write"]`
    List(Vec<String>),
    /// `"read write"`
    Text(String),
}

impl Scopes {
    /// Distinct scopes, in order.
    fn to_vec(&self) -> Vec<String> {
        let all: Vec<String> = match self {
            Scopes::List(list) => list.iter().flat_map(|s| s.split_whitespace()).map(str::to_owned).collect(),
            Scopes::Text(text) => text.split_whitespace().map(str::to_owned).collect(),
        };
        let mut distinct: Vec<String> = Vec::with_capacity(all.len());
        for scope in all {
            if !distinct.contains(&scope) {
                distinct.push(scope);
            }
        }
        distinct
    }
}

/// Asks for an extension token for the caller, in their tenant organization.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ExtensionTokenRequest)]
pub struct TokenRequest {
    /// The extension: 1–128 of `A-Z a-z 0-9 . _ : -`.
    pub extension_id: String,
    /// Scopes the token carries (a subset of the allowed scopes, and of the API key's `extensions`).
    pub scopes: Scopes,
    /// Lifetime, 1–900 seconds (default 300).
    pub ttl_seconds: Option<i64>,
}

/// Token answer.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ExtensionTokenResponse)]
pub struct TokenResponse {
    /// The HS256 JWT.
    pub token: String,
    /// ISO 8601.
    pub expires_at: String,
}

fn invalid_scope(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("INVALID_SCOPE", message)
}

fn insufficient_scope(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "INSUFFICIENT_SCOPE", message)
}

/// Issues an extension token for the caller in their tenant.
#[utoipa::path(post, path = paths::EXTENSION_TOKEN, tag = "extensions", request_body = TokenRequest,
    responses((status = 200, body = TokenResponse),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, `INVALID_EXTENSION_ID`, \
            `INVALID_TTL`, `INVALID_SCOPE`"),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`; `ORGANIZATION_ACCESS_DENIED`, \
            `NO_ORGANIZATION` (tenant rules)"),
        (status = 403, body = ErrorBody,
            description = "`INSUFFICIENT_SCOPE` (the API key may not grant a scope), `INVALID_ORIGIN`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)"),
        (status = 429, body = ErrorBody, description = "`TOO_MANY_REQUESTS`, with `Retry-After`")))]
pub async fn issue(
    State(state): State<AppState>,
    client: ClientInfo,
    principal: Principal,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let now = state.clock.now();
    state.limits.verify_ip.hit(&client.rate_limit_key(), now).map_err(ApiError::too_many_requests)?;
    let settings = &state.settings.extensions;
    if !super::valid_extension_id(&body.extension_id) {
        return Err(ApiError::bad_request("INVALID_EXTENSION_ID", "extensionId must be 1-128 of A-Z a-z 0-9 . _ : -"));
    }
    let ttl = body.ttl_seconds.unwrap_or(i64::try_from(settings.default_ttl).unwrap_or(300));
    let max_ttl = i64::try_from(settings.max_ttl).unwrap_or(900);
    if !(1..=max_ttl).contains(&ttl) {
        return Err(ApiError::bad_request("INVALID_TTL", format!("ttlSeconds must be between 1 and {max_ttl}")));
    }
    let scopes = body.scopes.to_vec();
    if scopes.is_empty() {
        return Err(invalid_scope("At least one scope is required"));
    }
    if let Some(unknown) = scopes.iter().find(|s| !settings.allowed_scopes.contains(s)) {
        return Err(invalid_scope(format!("Unknown scope: {unknown}")));
    }
    if let Some(key) = principal.api_key_fields() {
        if let Some(missing) = scopes.iter().find(|scope| !key.allows("extensions", scope)) {
            return Err(insufficient_scope(format!("The API key may not grant the scope {missing}")));
        }
    }
    let tenant = principal::resolve_tenant(&state, &principal, None).await?;
    let iat = now.div_euclid(1000);
    let claims = ExtensionClaims {
        sub: principal.user.id.clone(),
        org: tenant.organization_id,
        ext: body.extension_id,
        scope: scopes.join(" "),
        aud: AUDIENCE.into(),
        iat,
        exp: iat + ttl,
        jti: crypto::new_id("etk"),
        nbf: None,
    };
    let token = state.extensions.sign(&claims).map_err(ApiError::internal)?;
    audit::emit(AuditEvent::ExtensionTokenIssued {
        user_id: &claims.sub,
        organization_id: &claims.org,
        extension_id: &claims.ext,
        jti: &claims.jti,
    });
    Ok(Json(TokenResponse { token, expires_at: iso8601(claims.exp * 1000) }))
}

/// Verify request.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ExtensionVerifyRequest)]
pub struct VerifyRequest {
    /// The extension token (the JWT) to check.
    #[schema(value_type = String, format = Password)]
    pub token: crate::config::Secret,
    /// Scopes the token must carry.
    pub scopes: Option<Scopes>,
}

/// Verify answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ExtensionVerifyResponse)]
pub struct VerifyResponse {
    /// Always true (a refused token is a 401).
    pub valid: bool,
    /// The token's claims.
    pub claims: ExtensionClaims,
}

/// Verifies an extension token (no other credential needed): 200 with its claims, 401 if invalid or
/// expired or its subject left the organization, 403 if a requested scope is missing.
#[utoipa::path(post, path = paths::EXTENSION_VERIFY, tag = "extensions", request_body = VerifyRequest,
    responses((status = 200, body = VerifyResponse),
        (status = 400, body = ErrorBody, description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`"),
        (status = 401, body = ErrorBody, description = "`INVALID_TOKEN`, `TOKEN_EXPIRED`"),
        (status = 403, body = ErrorBody, description = "`INSUFFICIENT_SCOPE`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)"),
        (status = 429, body = ErrorBody, description = "`TOO_MANY_REQUESTS`, with `Retry-After`")))]
pub async fn verify(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let now = state.clock.now();
    state.limits.verify_ip.hit(&client.rate_limit_key(), now).map_err(ApiError::too_many_requests)?;
    let claims = state.extensions.verify(body.token.expose(), now).map_err(|problem| match problem {
        TokenProblem::Expired => ApiError::new(StatusCode::UNAUTHORIZED, "TOKEN_EXPIRED", "The token has expired"),
        TokenProblem::Invalid => super::invalid_token(),
    })?;
    if principal::extension_tenant(&state, &claims).await?.is_none() {
        return Err(super::invalid_token());
    }
    if let Some(wanted) = &body.scopes {
        if let Some(missing) = wanted.to_vec().iter().find(|w| !claims.scopes().any(|held| held == w.as_str())) {
            return Err(insufficient_scope(format!("The token lacks the scope {missing}")));
        }
    }
    Ok(Json(VerifyResponse { valid: true, claims }))
}
