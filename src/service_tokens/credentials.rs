//! The three credentials of the service-token API, each good for its own endpoints only: the master
//! credentials (`Authorization: Basic`) manage clients; a client key (`x-api-key: lkc_…`, or
//! `CLIENT_API_KEY` when the request has none) manages that client's users and tokens; a service token
//! (`Authorization: Bearer`) reads `/v1/me`. Failures are logged with ids and a reason, never with the
//! credential.

use std::sync::Arc;

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

use super::{Client, ServiceClaims};
// The routes sit above `state` and `principal`, which are built on the domain half of this capability
// (and of the others): the folders meet in a circle, the files do not (README, "Code tour").
use crate::{
    audit::{self, AuditEvent},
    crypto,
    error::ApiError,
    state::AppState,
    tokens::TokenError,
};

/// The master credentials were presented.
pub struct MasterCredentials;

fn invalid_master() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_MASTER_CREDENTIALS", "Invalid master credentials")
}

/// Why the master credentials were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MasterRefusal {
    /// None are configured: the endpoints they guard are disabled.
    NotConfigured,
    /// The request carries no Basic credentials.
    Missing,
    /// Basic credentials that are not the master's.
    Wrong,
}

/// Checks the request's `Authorization: Basic` against the configured master credentials. Both halves
/// are compared in constant time, always both (hashed first, so the lengths do not show either).
/// Refusals are audited. The service-token API and the management API (`/api/v2`) both use this.
pub fn check_master(state: &AppState, headers: &axum::http::HeaderMap) -> Result<(), MasterRefusal> {
    let service = &state.settings.service;
    let (Some(username), Some(password)) = (&service.master_username, &service.master_password) else {
        return Err(MasterRefusal::NotConfigured);
    };
    let refuse = |refusal: MasterRefusal, reason: &str| {
        audit::emit(AuditEvent::ServiceAuthFailed { client_id: None, user_id: None, reason });
        Err(refusal)
    };
    let Some(presented) = crate::principal::credentials::basic(headers) else {
        return refuse(MasterRefusal::Missing, "master: no basic credentials");
    };
    let user_ok = crypto::constant_time_eq(
        crypto::sha256_hex(presented.0.as_bytes()).as_bytes(),
        crypto::sha256_hex(username.expose().as_bytes()).as_bytes(),
    );
    let password_ok = crypto::constant_time_eq(
        crypto::sha256_hex(presented.1.expose().as_bytes()).as_bytes(),
        crypto::sha256_hex(password.expose().as_bytes()).as_bytes(),
    );
    if user_ok & password_ok {
        Ok(())
    } else {
        refuse(MasterRefusal::Wrong, "master: wrong credentials")
    }
}

impl FromRequestParts<AppState> for MasterCredentials {
    type Rejection = Response;

    /// 503 when no master credentials are configured; 401 (with `WWW-Authenticate: Basic`) unless the
    /// request carries them.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match check_master(state, &parts.headers) {
            Ok(()) => Ok(MasterCredentials),
            Err(MasterRefusal::NotConfigured) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "MASTER_CREDENTIALS_NOT_CONFIGURED",
                "Client management is disabled: MASTER_USERNAME and MASTER_PASSWORD are not set",
            )
            .into_response()),
            Err(MasterRefusal::Missing | MasterRefusal::Wrong) => {
                let mut response = invalid_master().into_response();
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"latchkey\""));
                Err(response)
            }
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
        match state.service_tokens.client_by_key_hash(&state.db, &crate::api_keys::hash_key(key), now).await? {
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

pub(super) fn invalid_token_response() -> Response {
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
        let claims = state.service_tokens.verify(&state.tokens.key_ring, token, now).map_err(|error| {
            audit::emit(AuditEvent::ServiceAuthFailed { client_id: None, user_id: None, reason: token_reason(error) });
            invalid_token_response()
        })?;
        if state.tokens.revocations.is_revoked(&claims.jti, &claims.sub, &claims.client_id, claims.iat) {
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

pub(super) fn token_reason(error: TokenError) -> &'static str {
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
