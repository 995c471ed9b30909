//! Checking OAuth access tokens (RFC 9068) where Latchkey is the resource server or answers for one:
//! `/userinfo`, introspection and the gateway check. The signature (key ring, algorithm pinned to the
//! key), `typ: at+jwt`, issuer, audience and times are checked, then revocation — of the token, its
//! client, its subject or its grant's family — in memory, without a database read.

use std::sync::Arc;

use serde::Deserialize;

use super::grants::Audience;
use crate::{
    state::AppState,
    tokens::{TimeClaims, TokenError},
};

/// The claims of an access token Latchkey issued.
#[derive(Clone, Debug, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub azp: String,
    #[serde(default)]
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub nbf: Option<i64>,
    pub jti: String,
    pub gty: Option<String>,
}

impl TimeClaims for AccessTokenClaims {
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

impl AccessTokenClaims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }
}

/// True if the token's header says it is an access token (`typ: at+jwt`): it is then checked as one and
/// never as another kind of token.
pub fn is_access_token(token: &str) -> bool {
    jsonwebtoken::decode_header(token).is_ok_and(|header| header.typ.as_deref() == Some("at+jwt"))
}

/// Verifies an access token of this issuer — addressed to `audience` when one is given — and checks the
/// revocations. A token verified before comes from the verified-token cache (no signature check: ~30 µs
/// for RS256) until its `exp` plus the leeway; revocation is checked every time (it changes under the
/// cache).
pub fn verify(state: &AppState, token: &str, audience: Option<&str>) -> Result<Arc<AccessTokenClaims>, TokenError> {
    let now = state.clock.now();
    let generation = state.tokens.key_ring.generation();
    let claims = match state.oauth.verified.get(token, now).filter(|v| v.generation == generation) {
        Some(verified) => Arc::clone(&verified.claims),
        None => {
            let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
            if header.typ.as_deref() != Some("at+jwt") {
                return Err(TokenError::Invalid);
            }
            let claims: Arc<AccessTokenClaims> =
                Arc::new(state.tokens.key_ring.verify(token, &state.oauth.any_audience, now)?);
            let leeway = i64::try_from(state.settings.tokens.leeway).unwrap_or(0);
            let until = claims.exp.saturating_add(leeway).saturating_mul(1000);
            let verified = crate::tokens::keys::Verified { generation, claims: Arc::clone(&claims) };
            state.oauth.verified.insert(token, Arc::new(verified), until, now);
            claims
        }
    };
    if audience.is_some_and(|audience| !claims.aud.contains(audience)) {
        return Err(TokenError::Invalid);
    }
    if state.tokens.revocations.is_revoked(&claims.jti, &claims.sub, &claims.azp, claims.iat) {
        return Err(TokenError::Revoked);
    }
    Ok(claims)
}
