//! Checking OAuth access tokens (RFC 9068) where Latchkey is the resource server or answers for one:
//! `/userinfo`, introspection and the gateway check. The signature (key ring, algorithm pinned to the
//! key), `typ: at+jwt`, issuer, audience and times are checked, then revocation — of the token, its
//! client, its subject or its grant's family — in memory, without a database read.

use serde::Deserialize;

use super::grants::Audience;
use crate::{
    state::AppState,
    tokens::{Expectation, TimeClaims, TokenError},
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

/// Verifies an access token against `expected` (issuer and audience) and the revocations.
pub fn verify(state: &AppState, token: &str, expected: &Expectation) -> Result<AccessTokenClaims, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.typ.as_deref() != Some("at+jwt") {
        return Err(TokenError::Invalid);
    }
    let claims: AccessTokenClaims = state.tokens.key_ring.verify(token, expected, state.clock.now())?;
    if state.tokens.revocations.is_revoked(&claims.jti, &claims.sub, &claims.azp) {
        return Err(TokenError::Revoked);
    }
    Ok(claims)
}
