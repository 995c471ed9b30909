//! `/api/v2/keys/signing`: the signing keys in Auth0's shape — list, get, rotate, and revoke a previous key.
//!
//! Latchkey's keys are JWKs, not X.509 certificates: each key carries its public `jwk` where Auth0 gives
//! `cert`/`pkcs7`, and an `alg`, since Latchkey signs with several algorithms (RS256 for ID tokens, ES256
//! by default for service tokens).

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};

use super::{paths, ManagementError, ManagementErrorBody, ManagementPath, ManagementQuery, Manager};
// The routes sit above `state`, which is built on the capabilities' domain halves: the folders meet in a
// circle, the files do not (README, "Code tour").
use crate::{
    audit::{self, AuditEvent},
    clock::{iso8601, Millis},
    error::ApiError,
    state::AppState,
    tokens::{store, Algorithm},
};

/// A signing key, as Auth0 lists one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SigningKeyInfo {
    pub kid: String,
    /// `RS256`, `ES256` or `EdDSA`.
    pub alg: String,
    /// The public key as published in the JWKS.
    #[schema(value_type = Object)]
    pub jwk: serde_json::Value,
    /// The key that signs now (one per algorithm).
    pub current: bool,
    /// Latchkey generates the next key when it rotates: never announced ahead.
    pub next: bool,
    /// Retired, still published and verifying until its window ends.
    pub previous: bool,
    pub revoked: bool,
    /// ISO 8601.
    pub current_since: String,
    /// ISO 8601: when it stopped signing.
    pub current_until: Option<String>,
    /// ISO 8601: when it leaves the JWKS (a previous key).
    pub expires_at: Option<String>,
    /// ISO 8601.
    pub revoked_at: Option<String>,
}

fn info(key: store::KeyInfo, now: Millis) -> SigningKeyInfo {
    let revoked = key.revoked_at.is_some();
    SigningKeyInfo {
        jwk: serde_json::from_str(&key.public_jwk).unwrap_or_default(),
        current: key.retired_at.is_none(),
        next: false,
        previous: key.retired_at.is_some() && !revoked && key.expires_at.is_some_and(|at| at > now),
        revoked,
        current_since: iso8601(key.created_at),
        current_until: key.retired_at.map(iso8601),
        expires_at: key.expires_at.filter(|_| !revoked).map(iso8601),
        revoked_at: key.revoked_at.map(iso8601),
        kid: key.id,
        alg: key.algorithm,
    }
}

fn inexistent() -> ManagementError {
    ManagementError::new(StatusCode::NOT_FOUND, "inexistent_signing_key", "The signing key does not exist.")
}

/// Every signing key still stored: current, previous (published), and revoked ones for 30 days.
#[utoipa::path(get, path = paths::MGMT_SIGNING_KEYS, tag = "management",
    responses((status = 200, body = Vec<SigningKeyInfo>),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn list_keys(
    State(state): State<AppState>,
    manager: Manager,
) -> Result<Json<Vec<SigningKeyInfo>>, ManagementError> {
    manager.require("read:signing_keys")?;
    let now = state.clock.now();
    let keys = store::list_keys(&state.db).await?;
    Ok(Json(
        keys.into_iter()
            .filter(|k| k.expires_at.is_none_or(|at| at > now) || k.revoked_at.is_some())
            .map(|k| info(k, now))
            .collect(),
    ))
}

/// One signing key.
#[utoipa::path(get, path = paths::MGMT_SIGNING_KEY, tag = "management", params(("kid" = String, Path)),
    responses((status = 200, body = SigningKeyInfo),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_signing_key`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn get_key(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(kid): ManagementPath,
) -> Result<Json<SigningKeyInfo>, ManagementError> {
    manager.require("read:signing_keys")?;
    let now = state.clock.now();
    let key = store::list_keys(&state.db).await?.into_iter().find(|k| k.id == kid).ok_or_else(inexistent)?;
    Ok(Json(info(key, now)))
}

/// `POST /api/v2/keys/signing/rotate` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct RotateQuery {
    /// Rotate only this algorithm's key; by default every algorithm with an active key.
    pub alg: Option<String>,
}

/// A rotation's answer: the new key (the RS256 one — ID tokens' — when several rotated) and every
/// algorithm's.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotatedKey {
    pub kid: String,
    pub alg: String,
    pub rotated: Vec<RotatedAlgorithm>,
}

/// One algorithm's new key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotatedAlgorithm {
    pub kid: String,
    pub alg: String,
}

/// Rotates the signing keys: a new key signs from now; the old one stays published, and verifies, until
/// the longest-lived token it may have signed has expired.
#[utoipa::path(post, path = paths::MGMT_SIGNING_KEYS_ROTATE, tag = "management", params(RotateQuery),
    responses((status = 201, body = RotatedKey),
        (status = 400, body = ManagementErrorBody, description = "`invalid_query_string`: an unknown `alg`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 409, body = ManagementErrorBody, description = "`rotation_conflict`: another node rotated at the same moment"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn rotate_keys(
    State(state): State<AppState>,
    manager: Manager,
    ManagementQuery(query): ManagementQuery<RotateQuery>,
) -> Result<Response, ManagementError> {
    manager.require("create:signing_keys")?;
    let alg = match query.alg.as_deref() {
        None => None,
        Some(name) => Some(Algorithm::parse(name).ok_or_else(|| {
            ManagementError::new(StatusCode::BAD_REQUEST, "invalid_query_string", "alg: RS256, ES256 or EdDSA")
        })?),
    };
    let now = state.clock.now();
    let rotated = crate::oauth::apis::rotate_signing_keys(&state.db, &state.settings, &state.tokens.key_ring, alg, now)
        .await
        .map_err(ApiError::internal)?;
    let rotated: Vec<RotatedAlgorithm> = rotated
        .into_iter()
        .filter_map(|(alg, kid)| kid.map(|kid| RotatedAlgorithm { kid, alg: alg.as_str().to_owned() }))
        .collect();
    let first = rotated.iter().find(|r| r.alg == Algorithm::Rs256.as_str()).or(rotated.first()).ok_or_else(|| {
        ManagementError::new(StatusCode::CONFLICT, "rotation_conflict", "Another node rotated the keys at this moment")
    })?;
    for key in &rotated {
        audit::emit(AuditEvent::ManagementAction {
            actor_id: manager.actor(),
            resource: "signing_key",
            id: &key.kid,
            user_id: None,
            action: "rotated",
        });
    }
    let answer = RotatedKey { kid: first.kid.clone(), alg: first.alg.clone(), rotated };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Revokes a previous key: out of the JWKS and refused at once on every node, so every token it signed
/// stops working. The current key cannot be revoked (rotate first).
#[utoipa::path(put, path = paths::MGMT_SIGNING_KEY_REVOKE, tag = "management", params(("kid" = String, Path)),
    responses((status = 200, body = SigningKeyInfo),
        (status = 400, body = ManagementErrorBody, description = "`current_key`: the key signs now"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_signing_key`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn revoke_key(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(kid): ManagementPath,
) -> Result<Json<SigningKeyInfo>, ManagementError> {
    manager.require("update:signing_keys")?;
    let now = state.clock.now();
    let key = store::list_keys(&state.db).await?.into_iter().find(|k| k.id == kid).ok_or_else(inexistent)?;
    if key.retired_at.is_none() {
        return Err(ManagementError::new(
            StatusCode::BAD_REQUEST,
            "current_key",
            "The current signing key cannot be revoked; rotate first",
        ));
    }
    if key.revoked_at.is_none() {
        state.tokens.key_ring.revoke(&state.db, &kid, now).await.map_err(ApiError::internal)?;
        audit::emit(AuditEvent::ManagementAction {
            actor_id: manager.actor(),
            resource: "signing_key",
            id: &kid,
            user_id: None,
            action: "revoked",
        });
    }
    let key = store::list_keys(&state.db).await?.into_iter().find(|k| k.id == kid).ok_or_else(inexistent)?;
    Ok(Json(info(key, now)))
}
