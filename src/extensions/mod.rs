//! Capability 3, extension tokens: short-lived HS256 JWTs for iframe extensions calling the
//! application's Action API (DESIGN.md "Capability 3").
//!
//! Signed with the first configured secret, verified against any (rotation). Verification is pinned to
//! HS256 (jsonwebtoken refuses `none` and every other algorithm), checks `aud`, and checks `exp`/`iat`
//! against Latchkey's clock rather than the system's, so tests can move time.

pub mod routes;

/// The URL paths of this capability's endpoints, also re-exported by `latchkey::paths`.
pub mod paths {
    /// `POST` issue an extension token.
    pub const EXTENSION_TOKEN: &str = "/api/extensions/token";
    /// `POST` verify an extension token.
    pub const EXTENSION_VERIFY: &str = "/api/extensions/verify";
}

use std::{collections::HashMap, sync::RwLock};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{
    clock::Millis,
    config::{ExtensionSettings, Secret},
    crypto,
};

/// The audience of every extension token.
pub const AUDIENCE: &str = "action-api";

/// The claims of an extension token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExtensionClaims {
    /// The user the token acts for (`usr_…`).
    pub sub: String,
    /// The organization it acts in (`org_…`); verification refuses it once `sub` is no longer a member.
    pub org: String,
    /// The extension it was issued to, as the caller named it.
    pub ext: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Always `action-api`.
    pub aud: String,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expires at, unix seconds.
    pub exp: i64,
    /// Unique token id (`etk_…`).
    pub jti: String,
    /// Not before, unix seconds: Latchkey never sets it, but a token carrying one is refused until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

impl ExtensionClaims {
    /// The scopes as a list.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_whitespace()
    }
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenProblem {
    /// Malformed, wrong algorithm, bad signature, wrong audience, issued in the future.
    Invalid,
    /// Past `exp`.
    Expired,
}

/// The signing and verification keys, parsed once.
pub struct ExtensionKeys {
    encoding: EncodingKey,
    decoding: Vec<DecodingKey>,
    validation: Validation,
    /// Tokens whose signature and claims already checked out, by token (DESIGN.md "Performance notes":
    /// skip the HMAC and JSON work on repeats). Expiry is still checked on every use.
    verified: RwLock<HashMap<String, ExtensionClaims>>,
}

/// Beyond this many remembered tokens the cache starts over (bounded memory).
const MAX_VERIFIED: usize = 50_000;

impl std::fmt::Debug for ExtensionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExtensionKeys(***)")
    }
}

impl ExtensionKeys {
    /// Keys from the configuration; without a configured secret (development only — production refuses
    /// to start) one is derived from the server secret.
    pub fn new(settings: &ExtensionSettings, server_secret: &Secret) -> ExtensionKeys {
        let current: Vec<u8> = match &settings.secret {
            Some(secret) => secret.expose().as_bytes().to_vec(),
            None => {
                tracing::warn!("EXTENSION_TOKEN_SECRET is not set: deriving one from the server secret (development)");
                crypto::derive_key(server_secret.expose().as_bytes(), "extension-token/v1").to_vec()
            }
        };
        let mut decoding = vec![DecodingKey::from_secret(&current)];
        decoding.extend(settings.previous_secrets.iter().map(|s| DecodingKey::from_secret(s.expose().as_bytes())));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        // `exp`/`iat` are checked against Latchkey's clock in `verify`.
        validation.validate_exp = false;
        validation.leeway = 0;
        ExtensionKeys {
            encoding: EncodingKey::from_secret(&current),
            decoding,
            validation,
            verified: RwLock::new(HashMap::new()),
        }
    }

    /// Signs `claims` (HS256) with the current secret; previous secrets only verify.
    pub fn sign(&self, claims: &ExtensionClaims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// Verifies a token at `now` (ms): signature under any configured secret, HS256 only, `aud`,
    /// `exp` and a sane `iat`.
    pub fn verify(&self, token: &str, now: Millis) -> Result<ExtensionClaims, TokenProblem> {
        let remembered = self.verified.read().ok().and_then(|verified| verified.get(token).cloned());
        let claims = match remembered {
            Some(claims) => claims,
            None => {
                let claims = self.verify_signature(token)?;
                if let Ok(mut verified) = self.verified.write() {
                    if verified.len() >= MAX_VERIFIED {
                        verified.clear();
                    }
                    verified.insert(token.to_owned(), claims.clone());
                }
                claims
            }
        };
        let now_secs = now.div_euclid(1000);
        // A token issued more than a minute in the future was not issued by a node with a sane clock.
        if claims.iat > now_secs + 60 || claims.exp <= claims.iat {
            return Err(TokenProblem::Invalid);
        }
        // Checked on every use, like `exp`: a remembered token may not be valid yet.
        if claims.nbf.is_some_and(|nbf| nbf > now_secs) {
            return Err(TokenProblem::Invalid);
        }
        if now_secs >= claims.exp {
            return Err(TokenProblem::Expired);
        }
        Ok(claims)
    }

    /// Number of remembered tokens (metrics).
    pub fn remembered(&self) -> usize {
        self.verified.read().map_or(0, |verified| verified.len())
    }

    /// Forgets remembered tokens that have expired.
    pub fn prune(&self, now: Millis) {
        let now_secs = now.div_euclid(1000);
        if let Ok(mut verified) = self.verified.write() {
            verified.retain(|_, claims| claims.exp > now_secs);
        }
    }

    /// The signature check: HS256 only, any configured secret, `aud`.
    fn verify_signature(&self, token: &str) -> Result<ExtensionClaims, TokenProblem> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenProblem::Invalid)?;
        crate::tokens::refuse_critical(&header).map_err(|_| TokenProblem::Invalid)?;
        self.decoding
            .iter()
            .find_map(|key| jsonwebtoken::decode::<ExtensionClaims>(token, key, &self.validation).ok())
            .map(|data| data.claims)
            .ok_or(TokenProblem::Invalid)
    }
}

/// 401 `INVALID_TOKEN`: a refused extension token (no detail for the caller).
pub fn invalid_token() -> crate::error::ApiError {
    crate::error::ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "INVALID_TOKEN", "Invalid token")
}

/// True if the string looks like a JWT (three dot-separated parts), not a session token.
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// True for a valid extension id: 1–128 of `A-Z a-z 0-9 . _ : -`.
pub fn valid_extension_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str, previous: &[&str]) -> ExtensionKeys {
        let settings = ExtensionSettings {
            secret: Some(Secret::new(secret)),
            previous_secrets: previous.iter().map(|s| Secret::new(*s)).collect(),
            ..ExtensionSettings::default()
        };
        ExtensionKeys::new(&settings, &Secret::new("server"))
    }

    fn claims(iat: i64, exp: i64) -> ExtensionClaims {
        ExtensionClaims {
            sub: "usr_1".into(),
            org: "org_1".into(),
            ext: "ext".into(),
            scope: "read".into(),
            aud: AUDIENCE.into(),
            iat,
            exp,
            jti: "etk_1".into(),
            nbf: None,
        }
    }

    #[test]
    fn round_trip_and_expiry_follow_the_given_clock() {
        let keys = keys("s1-s1-s1-s1-s1-s1-s1-s1-s1-s1-s1-s1", &[]);
        let token = keys.sign(&claims(1_000, 1_300)).unwrap();
        assert_eq!(keys.verify(&token, 1_000_000).unwrap(), claims(1_000, 1_300));
        assert_eq!(keys.verify(&token, 1_299_999), Ok(claims(1_000, 1_300)));
        assert_eq!(keys.verify(&token, 1_300_000), Err(TokenProblem::Expired));
        assert_eq!(keys.verify(&token, 900_000), Err(TokenProblem::Invalid), "issued in the future");
    }

    #[test]
    fn previous_secrets_verify_but_do_not_sign() {
        let old = keys("old-old-old-old-old-old-old-old-old", &[]);
        let token = old.sign(&claims(1_000, 1_300)).unwrap();
        assert!(keys("new-new-new-new-new-new-new-new-new", &["old-old-old-old-old-old-old-old-old"])
            .verify(&token, 1_000_000)
            .is_ok());
        assert_eq!(
            keys("new-new-new-new-new-new-new-new-new", &[]).verify(&token, 1_000_000),
            Err(TokenProblem::Invalid)
        );
    }

    #[test]
    fn wrong_audience_is_refused() {
        let keys = keys("s1-s1-s1-s1-s1-s1-s1-s1-s1-s1-s1-s1", &[]);
        let mut other = claims(1_000, 1_300);
        other.aud = "other".into();
        let token = keys.sign(&other).unwrap();
        assert_eq!(keys.verify(&token, 1_000_000), Err(TokenProblem::Invalid));
    }

    #[test]
    fn ids_and_jwt_shapes() {
        assert!(valid_extension_id("com.acme:crm-panel_1"));
        assert!(!valid_extension_id("") && !valid_extension_id("a b") && !valid_extension_id(&"a".repeat(129)));
        assert!(looks_like_jwt("a.b.c") && !looks_like_jwt("token.signature") && !looks_like_jwt("raw"));
    }
}
