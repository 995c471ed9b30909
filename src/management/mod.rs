//! The management API at Auth0's paths and in Auth0's shapes, `/api/v2/*` (DESIGN.md "Capability 5",
//! management setup), so Auth0's management SDKs work against Latchkey. Built so far: clients
//! ([`clients`]), APIs ([`resource_servers`]), client grants ([`client_grants`]) and the audit log
//! ([`logs`]), users with their sessions and refresh tokens ([`users`]), organizations and members
//! ([`organizations`]) and signing keys ([`keys`]), authorised by the
//! master credentials (`Authorization: Basic`, to bootstrap) or by an access token for the built-in
//! audience `{issuer}api/v2/` holding the operation's scope (`read:clients`, `create:clients`, …).
//!
//! Errors are Auth0's `{statusCode, error, message, errorCode}`, bad bodies included.

pub mod client_grants;
pub mod clients;
pub mod keys;
pub mod logs;
pub mod organizations;
pub mod resource_servers;
pub mod routes;
pub mod users;

/// The URL paths of the management API.
pub mod paths {
    /// `POST` create / `GET` list OAuth clients.
    pub const MGMT_CLIENTS: &str = "/api/v2/clients";
    /// `GET`, `PATCH`, `DELETE` one OAuth client.
    pub const MGMT_CLIENT: &str = "/api/v2/clients/{id}";
    /// `POST` rotate a client's secret.
    pub const MGMT_CLIENT_ROTATE_SECRET: &str = "/api/v2/clients/{id}/rotate-secret";
    /// `POST` create / `GET` list APIs.
    pub const MGMT_RESOURCE_SERVERS: &str = "/api/v2/resource-servers";
    /// `GET`, `PATCH`, `DELETE` one API.
    pub const MGMT_RESOURCE_SERVER: &str = "/api/v2/resource-servers/{id}";
    /// `POST` create / `GET` list client grants.
    pub const MGMT_CLIENT_GRANTS: &str = "/api/v2/client-grants";
    /// `PATCH`, `DELETE` one client grant.
    pub const MGMT_CLIENT_GRANT: &str = "/api/v2/client-grants/{id}";
    /// `POST` create / `GET` list users.
    pub const MGMT_USERS: &str = "/api/v2/users";
    /// `GET` the users with an email.
    pub const MGMT_USERS_BY_EMAIL: &str = "/api/v2/users-by-email";
    /// `GET`, `PATCH`, `DELETE` one user.
    pub const MGMT_USER: &str = "/api/v2/users/{id}";
    /// `GET` list / `DELETE` all of a user's sessions.
    pub const MGMT_USER_SESSIONS: &str = "/api/v2/users/{id}/sessions";
    /// `GET` list / `DELETE` all of a user's refresh tokens.
    pub const MGMT_USER_REFRESH_TOKENS: &str = "/api/v2/users/{id}/refresh-tokens";
    /// `DELETE` unlink one identity of a user.
    pub const MGMT_USER_IDENTITY: &str = "/api/v2/users/{id}/identities/{provider}/{user_id}";
    /// `GET`, `DELETE` one session.
    pub const MGMT_SESSION: &str = "/api/v2/sessions/{id}";
    /// `GET`, `DELETE` one refresh token (family).
    pub const MGMT_REFRESH_TOKEN: &str = "/api/v2/refresh-tokens/{id}";
    /// `POST` create / `GET` list organizations.
    pub const MGMT_ORGANIZATIONS: &str = "/api/v2/organizations";
    /// `GET`, `PATCH`, `DELETE` one organization.
    pub const MGMT_ORGANIZATION: &str = "/api/v2/organizations/{id}";
    /// `GET` an organization by name.
    pub const MGMT_ORGANIZATION_BY_NAME: &str = "/api/v2/organizations/name/{name}";
    /// `GET` list / `POST` add / `DELETE` remove an organization's members.
    pub const MGMT_ORGANIZATION_MEMBERS: &str = "/api/v2/organizations/{id}/members";
    /// `GET` the signing keys.
    pub const MGMT_SIGNING_KEYS: &str = "/api/v2/keys/signing";
    /// `GET` one signing key.
    pub const MGMT_SIGNING_KEY: &str = "/api/v2/keys/signing/{kid}";
    /// `POST` rotate the signing keys.
    pub const MGMT_SIGNING_KEYS_ROTATE: &str = "/api/v2/keys/signing/rotate";
    /// `PUT` revoke a previous signing key.
    pub const MGMT_SIGNING_KEY_REVOKE: &str = "/api/v2/keys/signing/{kid}/revoke";
    /// `GET` the audit log.
    pub const MGMT_LOGS: &str = "/api/v2/logs";
    /// `GET` one audit record.
    pub const MGMT_LOG: &str = "/api/v2/logs/{id}";
}

use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{de::DeserializeOwned, Serialize};

// The routes sit above `state`, which is built on the capabilities' domain halves: the folders meet in a
// circle, the files do not (README, "Code tour").
use crate::{
    error::ApiError,
    http::extractors::{ApiJson, ApiPath, ApiQuery},
    service_tokens::credentials::{check_master, MasterRefusal},
    state::AppState,
};

/// Auth0's management error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagementErrorBody {
    /// The HTTP status again.
    pub status_code: u16,
    /// The status's reason phrase, e.g. `Bad Request`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// Machine-readable, e.g. `invalid_body`, `inexistent_client`.
    pub error_code: String,
}

/// An error of the management API.
#[derive(Debug)]
pub struct ManagementError {
    pub status: StatusCode,
    pub error_code: &'static str,
    pub message: String,
    /// A 401 for a bearer token (challenge `Bearer`, not `Basic`).
    pub bearer: bool,
    /// `Retry-After` seconds, for a 429 or 503 the caller may retry (database down, server busy).
    pub retry_after: Option<u64>,
}

impl ManagementError {
    pub fn new(status: StatusCode, error_code: &'static str, message: impl Into<String>) -> ManagementError {
        ManagementError { status, error_code, message: message.into(), bearer: false, retry_after: None }
    }

    /// 400 `invalid_body`.
    pub fn invalid_body(message: impl Into<String>) -> ManagementError {
        ManagementError::new(StatusCode::BAD_REQUEST, "invalid_body", message)
    }
}

impl IntoResponse for ManagementError {
    fn into_response(self) -> Response {
        let body = ManagementErrorBody {
            status_code: self.status.as_u16(),
            error: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            message: self.message,
            error_code: self.error_code.to_owned(),
        };
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = if self.bearer {
                "Bearer realm=\"latchkey\", error=\"invalid_token\""
            } else {
                "Basic realm=\"latchkey\""
            };
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

/// Every error the rest of the server makes (bad JSON, database down, …) in the management shape: the
/// status and message kept, the code lower-cased as Auth0's are.
impl From<ApiError> for ManagementError {
    fn from(error: ApiError) -> ManagementError {
        let error_code = match error.code {
            "INVALID_JSON" | "VALIDATION_ERROR" | "INVALID_BODY" => "invalid_body",
            "UNSUPPORTED_MEDIA_TYPE" => "unsupported_media_type",
            "DATABASE_UNAVAILABLE" => "database_unavailable",
            "SERVER_BUSY" => "server_busy",
            "PAYLOAD_TOO_LARGE" => "payload_too_large",
            _ => "internal_error",
        };
        ManagementError {
            status: error.status,
            error_code,
            message: error.message,
            bearer: false,
            retry_after: error.retry_after,
        }
    }
}

impl From<crate::storage::StorageError> for ManagementError {
    fn from(error: crate::storage::StorageError) -> ManagementError {
        ApiError::internal(error).into()
    }
}

/// A caller allowed to manage: the master credentials (everything), or an access token for the
/// management API (`{issuer}api/v2/`, from the client-credentials grant) whose scopes each handler checks
/// with [`Manager::require`].
pub struct Manager {
    /// `None` for the master credentials.
    scopes: Option<Vec<String>>,
    /// Who acts, for the audit log: `master`, or the management token's client.
    actor: String,
}

impl Manager {
    /// `master`, or the client id of the management token.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// 403 `insufficient_scope` unless the caller holds `scope`.
    pub fn require(&self, scope: &str) -> Result<(), ManagementError> {
        match &self.scopes {
            Some(scopes) if !scopes.iter().any(|held| held == scope) => Err(ManagementError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("Insufficient scope, expected any of: {scope}"),
            )),
            _ => Ok(()),
        }
    }
}

/// The claims of a management access token that matter here.
#[derive(serde::Deserialize)]
struct ManagementClaims {
    #[serde(default)]
    scope: String,
    exp: i64,
    iat: i64,
    nbf: Option<i64>,
    jti: String,
    sub: String,
    #[serde(default)]
    azp: String,
}

impl crate::tokens::TimeClaims for ManagementClaims {
    fn exp(&self) -> i64 {
        self.exp
    }
    fn iat(&self) -> i64 {
        self.iat
    }
    fn nbf(&self) -> Option<i64> {
        self.nbf
    }
}

fn invalid_token() -> ManagementError {
    ManagementError { bearer: true, ..ManagementError::new(StatusCode::UNAUTHORIZED, "invalid_token", "Invalid token") }
}

impl FromRequestParts<AppState> for Manager {
    type Rejection = ManagementError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(token) = crate::principal::credentials::bearer_token(&parts.headers) {
            let base = state.settings.base_url.trim_end_matches('/');
            let (issuer, audience) = (format!("{base}/"), format!("{base}/api/v2/"));
            let expected = crate::tokens::Expectation::new(&issuer, &audience, state.settings.tokens.leeway);
            let claims: ManagementClaims =
                state.tokens.key_ring.verify(token, &expected, state.clock.now()).map_err(|_| invalid_token())?;
            if state.tokens.revocations.is_revoked(&claims.jti, &claims.sub, &claims.azp, claims.iat) {
                return Err(invalid_token());
            }
            let actor = if claims.azp.is_empty() { claims.sub } else { claims.azp };
            return Ok(Manager { scopes: Some(claims.scope.split_whitespace().map(str::to_owned).collect()), actor });
        }
        match check_master(state, &parts.headers) {
            Ok(()) => Ok(Manager { scopes: None, actor: "master".to_owned() }),
            Err(MasterRefusal::NotConfigured) => Err(ManagementError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "management_disabled",
                "The management API is disabled: MASTER_USERNAME and MASTER_PASSWORD are not set",
            )),
            Err(MasterRefusal::Missing) => {
                Err(ManagementError::new(StatusCode::UNAUTHORIZED, "missing_credentials", "Missing authentication"))
            }
            Err(MasterRefusal::Wrong) => {
                Err(ManagementError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "Invalid credentials"))
            }
        }
    }
}

/// A JSON body, refused in the management shape — but for a body that is not JSON at all: that 415 is
/// the `{code, message}` one every JSON endpoint answers (and the route layer answers before any handler
/// when the body has another content type), whether the body is missing or of another type.
pub struct ManagementJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ManagementJson<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match ApiJson::<T>::from_request(request, state).await {
            Ok(ApiJson(value)) => Ok(ManagementJson(value)),
            Err(error) if error.status == StatusCode::UNSUPPORTED_MEDIA_TYPE => Err(error.into_response()),
            Err(error) => Err(ManagementError::from(error).into_response()),
        }
    }
}

/// The `{id}` of the path, refused in the management shape.
pub struct ManagementPath(pub String);

impl FromRequestParts<AppState> for ManagementPath {
    type Rejection = ManagementError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ApiPath(id) = ApiPath::<String>::from_request_parts(parts, state).await?;
        Ok(ManagementPath(id))
    }
}

/// A query string, refused in the management shape (`invalid_query_string`).
pub struct ManagementQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequestParts<AppState> for ManagementQuery<T> {
    type Rejection = ManagementError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match ApiQuery::<T>::from_request_parts(parts, state).await {
            Ok(ApiQuery(value)) => Ok(ManagementQuery(value)),
            Err(error) => Err(ManagementError::new(StatusCode::BAD_REQUEST, "invalid_query_string", error.message)),
        }
    }
}

/// Auth0's paging: `per_page` 1–100 (default 50) and `page` from 0; returns (limit, index of the first).
pub fn page(page: Option<i64>, per_page: Option<i64>) -> (i64, i64) {
    let limit = per_page.unwrap_or(50).clamp(1, 100);
    (limit, page.unwrap_or(0).clamp(0, 1_000_000).saturating_mul(limit))
}
