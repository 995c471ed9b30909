//! Issuing a service token (DESIGN.md "Capability 4"): the user's secret checked in constant time, the
//! claims, the signature and the record committed before the token is handed out. The endpoint adds the
//! HTTP parts (rate limit, body, answer).

use std::sync::Arc;

use super::{Client, ServiceClaims, ServiceState};
use crate::{
    audit::{self, AuditEvent},
    clock::Millis,
    crypto::{self, secret::Secret},
    storage::{Db, StorageError},
    tokens::{revocation::Recorder, store::IssuedToken, Algorithm, KeyRing},
};

/// What issuing needs, borrowed from the application state.
pub struct Issuer<'a> {
    /// The database (users not cached yet).
    pub db: &'a Db,
    /// Users, issuer and audience.
    pub service: &'a ServiceState,
    /// Signs with its active key of `algorithm`.
    pub key_ring: &'a KeyRing,
    /// Group commit of issued-token records.
    pub recorder: &'a Recorder,
    /// From `service.algorithm` (ES256 unless set otherwise).
    pub algorithm: Algorithm,
    /// Token lifetime, seconds.
    pub ttl: u64,
}

/// Why no token was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// 401 `INVALID_CREDENTIALS`: unknown user, another client's user, or a wrong secret — one answer,
    /// so user ids cannot be probed.
    #[error("invalid user id or secret")]
    InvalidCredentials,
    /// 500: the token could not be signed or its record written (no token is handed out).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StorageError> for IssueError {
    fn from(error: StorageError) -> Self {
        IssueError::Internal(error.into())
    }
}

/// A token for `user_id` of `client`, if `secret` is the user's: returns the token and its claims.
pub async fn issue_token(
    issuer: &Issuer<'_>,
    client: &Client,
    user_id: &str,
    secret: &Secret,
    now: Millis,
) -> Result<(String, ServiceClaims), IssueError> {
    let user = issuer.service.user(issuer.db, user_id, now).await?;
    let presented = crate::api_keys::hash_key(secret.expose());
    let user = match user {
        Some(user) if user.client_id == client.id => {
            if !crypto::constant_time_eq(presented.as_bytes(), user.secret_hash.as_bytes()) {
                audit::emit(AuditEvent::ServiceAuthFailed {
                    client_id: Some(&client.id),
                    user_id: Some(&user.id),
                    reason: "token request: wrong secret",
                });
                return Err(IssueError::InvalidCredentials);
            }
            user
        }
        other => {
            // Unknown, deleted, or another client's user: the same answer, so ids cannot be probed.
            let reason =
                if other.is_some() { "token request: another client's user" } else { "token request: unknown user" };
            audit::emit(AuditEvent::ServiceAuthFailed { client_id: Some(&client.id), user_id: None, reason });
            return Err(IssueError::InvalidCredentials);
        }
    };
    let iat = now.div_euclid(1000);
    let claims = ServiceClaims {
        iss: issuer.service.issuer.clone(),
        aud: issuer.service.audience.clone(),
        sub: user.id.clone(),
        client_id: client.id.clone(),
        jti: crypto::new_id("jti"),
        iat,
        exp: iat + i64::try_from(issuer.ttl).unwrap_or(i64::MAX),
        nbf: None,
    };
    let token = sign(issuer.key_ring, issuer.algorithm, &claims).await?;
    let record = IssuedToken {
        jti: claims.jti.clone(),
        subject: claims.sub.clone(),
        client_id: claims.client_id.clone(),
        expires_at: claims.exp * 1000,
        created_at: now,
    };
    issuer.recorder.record(record).await.map_err(anyhow::Error::from)?;
    audit::emit(AuditEvent::TokenIssued { client_id: &client.id, user_id: &user.id, jti: &claims.jti });
    Ok((token, claims))
}

/// Signs inline for ES256/EdDSA (tens of µs), on the blocking pool for RS256 (~1.6 ms).
async fn sign(key_ring: &KeyRing, alg: Algorithm, claims: &ServiceClaims) -> anyhow::Result<String> {
    let key: Arc<_> = key_ring.active(alg).ok_or(crate::tokens::SignError::NoPrivateKey)?;
    let signed = if alg == Algorithm::Rs256 {
        let claims = claims.clone();
        tokio::task::spawn_blocking(move || key.sign(&claims)).await?
    } else {
        key.sign(claims)
    };
    Ok(signed?)
}
