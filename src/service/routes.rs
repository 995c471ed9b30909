//! `/v1/*`: the service-token API (DESIGN.md "Capability 4" and its contract details), and the JWKS.
//!
//! Three credentials, each good for its own endpoints only: the master credentials (`Authorization:
//! Basic`) manage clients; a client key (`x-api-key: lkc_…`, or `CLIENT_API_KEY` when the request has
//! none) manages that client's users and tokens; a service token (`Authorization: Bearer`) reads `/v1/me`.
//! Failures are logged with ids and a reason, never with the credential.

use std::sync::Arc;

use axum::{
    extract::{FromRequestParts, State},
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};

use utoipa_axum::{router::OpenApiRouter, routes};

use super::paths;
use super::{Client, ServiceClaims, ServiceUser};
use crate::{
    audit::{self, AuditEvent},
    clock::iso8601,
    crypto,
    error::{ApiError, ErrorBody},
    http::extractors::{ApiJson, ApiPath, ApiQuery},
    sessions::ClientInfo,
    state::AppState,
    tokens::{
        revocation::{self, Owner},
        Algorithm, TokenError,
    },
};

/// The routes of this capability.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_client, list_clients))
        .routes(routes!(delete_client))
        .routes(routes!(rotate_client_key))
        .routes(routes!(create_user, list_users))
        .routes(routes!(delete_user))
        .routes(routes!(issue_token))
        .routes(routes!(revoke_token))
        .routes(routes!(me))
        .routes(routes!(jwks))
}

// ------------------------------------------------------------------------------------------------
// Credentials

/// The master credentials were presented.
pub struct Master;

fn invalid_master() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_MASTER_CREDENTIALS", "Invalid master credentials")
}

impl FromRequestParts<AppState> for Master {
    type Rejection = Response;

    /// 503 when no master credentials are configured; 401 (with `WWW-Authenticate: Basic`) unless the
    /// request carries them. Both halves are compared in constant time, always both.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let service = &state.settings.service;
        let (Some(username), Some(password)) = (&service.master_username, &service.master_password) else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "MASTER_CREDENTIALS_NOT_CONFIGURED",
                "Client management is disabled: MASTER_USERNAME and MASTER_PASSWORD are not set",
            )
            .into_response());
        };
        let challenge = |reason: &str| {
            audit::emit(AuditEvent::ServiceAuthFailed { client_id: None, user_id: None, reason });
            let mut response = invalid_master().into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"latchkey\""));
            response
        };
        let Some(presented) = crate::principal::credentials::basic(&parts.headers) else {
            return Err(challenge("master: no basic credentials"));
        };
        // Hashing first makes the comparison independent of the lengths too.
        let user_ok = crypto::constant_time_eq(
            crypto::sha256_hex(presented.0.as_bytes()).as_bytes(),
            crypto::sha256_hex(username.expose().as_bytes()).as_bytes(),
        );
        let password_ok = crypto::constant_time_eq(
            crypto::sha256_hex(presented.1.expose().as_bytes()).as_bytes(),
            crypto::sha256_hex(password.expose().as_bytes()).as_bytes(),
        );
        if user_ok & password_ok {
            Ok(Master)
        } else {
            Err(challenge("master: wrong credentials"))
        }
    }
}

/// The client whose key the request carries (or `CLIENT_API_KEY`).
pub struct ClientKey(pub Arc<Client>);

fn invalid_client_key(message: &'static str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_CLIENT_KEY", message)
}

impl FromRequestParts<AppState> for ClientKey {
    type Rejection = ApiError;

    /// 401 unless `x-api-key` (or the `CLIENT_API_KEY` fallback when the header is absent) is a current
    /// client key. User API keys (`lk_…`) and the master credentials are refused here.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = crate::principal::credentials::api_key(&parts.headers);
        let fallback = state.settings.service.client_api_key.as_ref().map(|key| key.expose());
        let Some(key) = header.or(fallback) else {
            audit::emit(AuditEvent::ServiceAuthFailed { client_id: None, user_id: None, reason: "client: no key" });
            return Err(invalid_client_key("A client key is required (x-api-key)"));
        };
        if !key.starts_with(crate::api_keys::CLIENT_KEY_PREFIX) {
            audit::emit(AuditEvent::ServiceAuthFailed {
                client_id: None,
                user_id: None,
                reason: "client: not a client key",
            });
            return Err(invalid_client_key("Only client keys (lkc_…) are accepted by /v1"));
        }
        let now = state.clock.now();
        match state.service.client_by_key_hash(&state.db, &crate::api_keys::hash_key(key), now).await? {
            Some(client) => Ok(ClientKey(client)),
            None => {
                audit::emit(AuditEvent::ServiceAuthFailed {
                    client_id: None,
                    user_id: None,
                    reason: "client: unknown key",
                });
                Err(invalid_client_key("Invalid client key"))
            }
        }
    }
}

/// A valid, unrevoked service token.
pub struct ServiceToken(pub Arc<ServiceClaims>);

fn invalid_token_response() -> Response {
    let mut response = crate::extensions::invalid_token().into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
    response
}

impl FromRequestParts<AppState> for ServiceToken {
    type Rejection = Response;

    /// 401 `INVALID_TOKEN` unless `Authorization: Bearer` carries a service token that verifies and is not
    /// revoked. A token verified once is remembered until its `exp`; revocation is checked every time.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = crate::principal::credentials::bearer_token(&parts.headers);
        let Some(token) = token else {
            audit::emit(AuditEvent::ServiceAuthFailed { client_id: None, user_id: None, reason: "token: none" });
            return Err(invalid_token_response());
        };
        let now = state.clock.now();
        let claims = verify_service_token(state, token, now).map_err(|error| {
            audit::emit(AuditEvent::ServiceAuthFailed { client_id: None, user_id: None, reason: token_reason(error) });
            invalid_token_response()
        })?;
        if state.tokens.revocations.is_revoked(&claims.jti, &claims.sub, &claims.client_id) {
            audit::emit(AuditEvent::ServiceAuthFailed {
                client_id: Some(&claims.client_id),
                user_id: Some(&claims.sub),
                reason: "token: revoked",
            });
            return Err(invalid_token_response());
        }
        Ok(ServiceToken(claims))
    }
}

/// Verifies a service token (signature, `kid`/`alg`, issuer, audience, times), from the verified-token
/// cache when it was verified before.
pub fn verify_service_token(state: &AppState, token: &str, now: i64) -> Result<Arc<ServiceClaims>, TokenError> {
    if let Some(claims) = state.service.verified.get(token, now) {
        return Ok(claims);
    }
    let claims: ServiceClaims = state.tokens.key_ring.verify(token, &state.service.expectation, now)?;
    let claims = Arc::new(claims);
    let leeway = i64::try_from(state.settings.tokens.leeway).unwrap_or(0);
    let until = claims.exp.saturating_add(leeway).saturating_mul(1000);
    state.service.verified.insert(token, Arc::clone(&claims), until, now);
    Ok(claims)
}

fn token_reason(error: TokenError) -> &'static str {
    match error {
        TokenError::Malformed => "token: malformed",
        TokenError::UnknownKey => "token: unknown signing key",
        TokenError::AlgorithmMismatch => "token: algorithm does not match the key",
        TokenError::Invalid => "token: bad signature or claims",
        TokenError::Expired => "token: expired",
        TokenError::NotYetValid => "token: not yet valid",
        TokenError::CriticalExtension => "token: critical header extension",
        TokenError::Revoked => "token: revoked",
    }
}

// ------------------------------------------------------------------------------------------------
// Clients (master credentials)

/// `POST /v1/clients` body.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateClientRequest {
    /// 1–100 characters.
    pub name: String,
}

/// A client with its key: answered once, at creation and rotation.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientWithKey {
    /// `cli_…`
    pub client_id: String,
    /// Name.
    pub name: String,
    /// The client key (`lkc_…`): shown only now.
    pub api_key: String,
}

/// A client as listed (never its key).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientView {
    /// `cli_…`
    pub client_id: String,
    /// Name.
    pub name: String,
    /// First characters of the key.
    pub key_start: String,
    /// ISO 8601.
    pub created_at: String,
    /// ISO 8601 (last key rotation).
    pub updated_at: String,
}

/// `{clients}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientList {
    /// Every client, oldest first.
    pub clients: Vec<ClientView>,
}

/// `{deleted: true}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ServiceDeleted)]
pub struct Deleted {
    /// Always true.
    pub deleted: bool,
}

fn check_name(name: &str, field: &str) -> Result<(), ApiError> {
    let length = name.trim().chars().count();
    if length == 0 || length > 100 {
        return Err(ApiError::bad_request("INVALID_NAME", format!("{field} must be 1-100 characters")));
    }
    Ok(())
}

/// Creates a client (master credentials).
#[utoipa::path(post, path = paths::V1_CLIENTS, tag = "service", request_body = CreateClientRequest,
    responses((status = 201, body = ClientWithKey),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, `INVALID_NAME`"),
        (status = 401, body = ErrorBody, description = "`INVALID_MASTER_CREDENTIALS`, with `WWW-Authenticate: Basic`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)"),
        (status = 503, body = ErrorBody, description = "`MASTER_CREDENTIALS_NOT_CONFIGURED`")))]
pub async fn create_client(
    State(state): State<AppState>,
    _master: Master,
    ApiJson(body): ApiJson<CreateClientRequest>,
) -> Result<Response, ApiError> {
    check_name(&body.name, "name")?;
    let now = state.clock.now();
    let (key, hash, start) = super::generate_client_key();
    let client = Client {
        id: crypto::new_id("cli"),
        name: body.name.trim().to_owned(),
        key_start: start,
        created_at: now,
        updated_at: now,
    };
    super::store::insert_client(&state.db, &client, &hash).await?;
    audit::emit(AuditEvent::ServiceClientChanged { client_id: &client.id, action: "created" });
    let body = ClientWithKey { client_id: client.id, name: client.name, api_key: key };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Lists the clients (master credentials).
#[utoipa::path(get, path = paths::V1_CLIENTS, tag = "service",
    responses((status = 200, body = ClientList),
        (status = 401, body = ErrorBody, description = "`INVALID_MASTER_CREDENTIALS`, with `WWW-Authenticate: Basic`"),
        (status = 503, body = ErrorBody, description = "`MASTER_CREDENTIALS_NOT_CONFIGURED`")))]
pub async fn list_clients(State(state): State<AppState>, _master: Master) -> Result<Json<ClientList>, ApiError> {
    let clients = super::store::list_clients(&state.db).await?;
    Ok(Json(ClientList {
        clients: clients
            .into_iter()
            .map(|client| ClientView {
                created_at: iso8601(client.created_at),
                updated_at: iso8601(client.updated_at),
                client_id: client.id,
                name: client.name,
                key_start: client.key_start,
            })
            .collect(),
    }))
}

/// Issues a new key for a client; the old key is refused from the next request on, on every node.
/// Tokens already issued stay valid.
#[utoipa::path(post, path = paths::V1_CLIENT_ROTATE_KEY, tag = "service", params(("id" = String, Path)),
    responses((status = 200, body = ClientWithKey),
        (status = 400, body = ErrorBody, description = "`VALIDATION_ERROR`: an id holding U+0000 (`%00`)"),
        (status = 401, body = ErrorBody, description = "`INVALID_MASTER_CREDENTIALS`, with `WWW-Authenticate: Basic`"),
        (status = 404, body = ErrorBody, description = "`NOT_FOUND`: no such client"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)"),
        (status = 503, body = ErrorBody, description = "`MASTER_CREDENTIALS_NOT_CONFIGURED`")))]
pub async fn rotate_client_key(
    State(state): State<AppState>,
    _master: Master,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ClientWithKey>, ApiError> {
    let now = state.clock.now();
    let (key, hash, start) = super::generate_client_key();
    let client = super::store::set_client_key(&state.db, &id, &hash, &start, now)
        .await?
        .ok_or_else(|| ApiError::not_found("No such client"))?;
    state.service.client_changed(&state.db, &client.id, now).await?;
    audit::emit(AuditEvent::ServiceClientChanged { client_id: &client.id, action: "key rotated" });
    Ok(Json(ClientWithKey { client_id: client.id, name: client.name, api_key: key }))
}

/// Deletes a client, its users, and every token issued to it.
#[utoipa::path(delete, path = paths::V1_CLIENT, tag = "service", params(("id" = String, Path)),
    responses((status = 200, body = Deleted),
        (status = 400, body = ErrorBody, description = "`VALIDATION_ERROR`: an id holding U+0000 (`%00`)"),
        (status = 401, body = ErrorBody, description = "`INVALID_MASTER_CREDENTIALS`, with `WWW-Authenticate: Basic`"),
        (status = 404, body = ErrorBody, description = "`NOT_FOUND`: no such client"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)"),
        (status = 503, body = ErrorBody, description = "`MASTER_CREDENTIALS_NOT_CONFIGURED`")))]
pub async fn delete_client(
    State(state): State<AppState>,
    _master: Master,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Deleted>, ApiError> {
    let now = state.clock.now();
    if !super::store::delete_client(&state.db, &id).await? {
        return Err(ApiError::not_found("No such client"));
    }
    revocation::revoke_owner(
        &state.db,
        &state.tokens.revocations,
        Owner::Client(&id),
        now + state.longest_token_life(),
        now,
    )
    .await?;
    state.service.client_changed(&state.db, &id, now).await?;
    audit::emit(AuditEvent::ServiceClientChanged { client_id: &id, action: "deleted" });
    Ok(Json(Deleted { deleted: true }))
}

// ------------------------------------------------------------------------------------------------
// Users (client key)

/// `POST /v1/users` body.
#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schema(as = ServiceCreateUserRequest)]
pub struct CreateUserRequest {
    /// The client's own id for the user (unique per client), 1–255 characters.
    pub external_id: Option<String>,
    /// Display name, 1–100 characters.
    pub name: Option<String>,
}

/// A new user with its secret.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ServiceCreatedUser)]
pub struct CreatedUser {
    /// `svu_…`
    pub user_id: String,
    /// The secret (`lks_…`): shown only now, never retrievable.
    pub secret: String,
    /// As given.
    pub external_id: Option<String>,
    /// As given.
    pub name: Option<String>,
}

/// A user as listed (never its secret).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ServiceUserView)]
pub struct UserView {
    /// `svu_…`
    pub user_id: String,
    /// The client's id for it.
    pub external_id: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// ISO 8601.
    pub created_at: String,
}

/// `{users}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ServiceUserList)]
pub struct UserList {
    /// This client's users, oldest first.
    pub users: Vec<UserView>,
}

/// `GET /v1/users` paging.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// 1–1000, default 100.
    pub limit: Option<i64>,
    /// Default 0.
    pub offset: Option<i64>,
}

/// Creates a user of the calling client.
#[utoipa::path(post, path = paths::V1_USERS, tag = "service", request_body = CreateUserRequest,
    responses((status = 201, body = CreatedUser),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, `INVALID_EXTERNAL_ID`, `INVALID_NAME`"),
        (status = 401, body = ErrorBody, description = "`INVALID_CLIENT_KEY`"),
        (status = 409, body = ErrorBody, description = "`EXTERNAL_ID_TAKEN`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn create_user(
    State(state): State<AppState>,
    ClientKey(client): ClientKey,
    body: Option<ApiJson<CreateUserRequest>>,
) -> Result<Response, ApiError> {
    let body = body.map(|ApiJson(body)| body).unwrap_or_default();
    if let Some(external_id) = &body.external_id {
        if external_id.is_empty() || external_id.chars().count() > 255 {
            return Err(ApiError::bad_request("INVALID_EXTERNAL_ID", "externalId must be 1-255 characters"));
        }
    }
    if let Some(name) = &body.name {
        check_name(name, "name")?;
    }
    let now = state.clock.now();
    let (secret, secret_hash) = super::generate_secret();
    let user = ServiceUser {
        id: crypto::new_id("svu"),
        client_id: client.id.clone(),
        external_id: body.external_id,
        name: body.name.map(|name| name.trim().to_owned()),
        secret_hash,
        created_at: now,
    };
    match super::store::insert_user(&state.db, &user).await {
        Ok(()) => {}
        Err(crate::storage::StorageError::UniqueViolation(_)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "EXTERNAL_ID_TAKEN",
                "This client already has a user with that externalId",
            ))
        }
        Err(error) => return Err(error.into()),
    }
    audit::emit(AuditEvent::ServiceUserChanged { client_id: &client.id, user_id: &user.id, action: "created" });
    let body = CreatedUser { user_id: user.id, secret, external_id: user.external_id, name: user.name };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Lists the calling client's users.
#[utoipa::path(get, path = paths::V1_USERS, tag = "service", params(ListQuery),
    responses((status = 200, body = UserList),
        (status = 400, body = ErrorBody,
            description = "`VALIDATION_ERROR`: a missing or malformed query parameter, or text holding U+0000"),
        (status = 401, body = ErrorBody, description = "`INVALID_CLIENT_KEY`")))]
pub async fn list_users(
    State(state): State<AppState>,
    ClientKey(client): ClientKey,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<UserList>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let offset = query.offset.unwrap_or(0).max(0);
    let users = super::store::list_users(&state.db, &client.id, limit, offset).await?;
    Ok(Json(UserList {
        users: users
            .into_iter()
            .map(|user| UserView {
                created_at: iso8601(user.created_at),
                user_id: user.id,
                external_id: user.external_id,
                name: user.name,
            })
            .collect(),
    }))
}

/// Deletes one of the calling client's users; its tokens die with it on every node.
#[utoipa::path(delete, path = paths::V1_USER, tag = "service", params(("id" = String, Path)),
    responses((status = 200, body = Deleted),
        (status = 400, body = ErrorBody, description = "`VALIDATION_ERROR`: an id holding U+0000 (`%00`)"),
        (status = 401, body = ErrorBody, description = "`INVALID_CLIENT_KEY`"),
        (status = 404, body = ErrorBody, description = "`NOT_FOUND`: no such user of this client"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn delete_user(
    State(state): State<AppState>,
    ClientKey(client): ClientKey,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Deleted>, ApiError> {
    let now = state.clock.now();
    // Another client's user is "not found": a client never learns of other clients' users.
    if !super::store::delete_user(&state.db, &client.id, &id).await? {
        return Err(ApiError::not_found("No such user"));
    }
    revocation::revoke_owner(
        &state.db,
        &state.tokens.revocations,
        Owner::Subject(&id),
        now + state.longest_token_life(),
        now,
    )
    .await?;
    state.service.user_changed(&state.db, &id, now).await?;
    audit::emit(AuditEvent::ServiceUserChanged { client_id: &client.id, user_id: &id, action: "deleted" });
    Ok(Json(Deleted { deleted: true }))
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
    /// The user's secret.
    #[schema(value_type = String, format = Password)]
    pub secret: crate::config::Secret,
}

/// A service token.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ServiceTokenResponse)]
pub struct TokenResponse {
    /// The JWT.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds.
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
        service: &state.service,
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
    /// The service token.
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
    match verify_service_token(&state, body.token.expose(), now) {
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
    /// `client_id`.
    pub client_id: &'a str,
    /// The client's id for the user.
    pub external_id: Option<&'a str>,
    /// Name.
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
    let user = state.service.user(&state.db, &claims.sub, now).await.map_err(|e| ApiError::from(e).into_response())?;
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
