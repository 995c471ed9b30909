//! The signing key ring: keys generated here, sealed at rest, parsed once when the ring is loaded; JWT
//! signing and verification with the algorithm pinned to the key named by `kid`; the JWKS.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, RwLock},
};

use aws_lc_rs::{
    encoding::AsDer,
    rand::SystemRandom,
    signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256},
};
use axum::body::Bytes;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::DecodingKey;
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    clock::Millis,
    crypto,
    storage::{notify, Db, StorageError},
};

use super::{refuse_critical, store, Algorithm, Expectation, TimeClaims, TokenError};

/// The private half of a signing key, parsed once.
enum PrivateKey {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

impl PrivateKey {
    /// A new key and its PKCS#8 encoding.
    fn generate(alg: Algorithm) -> anyhow::Result<(PrivateKey, Vec<u8>)> {
        let failed = |_| anyhow::anyhow!("generating a {} key failed", alg.as_str());
        Ok(match alg {
            Algorithm::Es256 => {
                let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(failed)?;
                let der = key.to_pkcs8v1().map_err(failed)?.as_ref().to_vec();
                (PrivateKey::Ec(key), der)
            }
            Algorithm::EdDsa => {
                let key = Ed25519KeyPair::generate().map_err(failed)?;
                let der = key.to_pkcs8().map_err(failed)?.as_ref().to_vec();
                (PrivateKey::Ed(key), der)
            }
            Algorithm::Rs256 => {
                let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(failed)?;
                let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).map_err(failed)?.as_ref().to_vec();
                (PrivateKey::Rsa(key), der)
            }
        })
    }

    fn from_pkcs8(alg: Algorithm, der: &[u8]) -> Option<PrivateKey> {
        match alg {
            Algorithm::Es256 => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).ok().map(PrivateKey::Ec)
            }
            Algorithm::EdDsa => Ed25519KeyPair::from_pkcs8(der).ok().map(PrivateKey::Ed),
            Algorithm::Rs256 => RsaKeyPair::from_pkcs8(der).ok().map(PrivateKey::Rsa),
        }
    }

    /// The public half as a JWK (RFC 7517/7518/8037).
    fn public_jwk(&self, kid: &str, alg: Algorithm) -> serde_json::Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let mut jwk = match self {
            PrivateKey::Ec(key) => {
                // Uncompressed SEC1 point: 0x04 || X (32) || Y (32).
                let point = key.public_key().as_ref();
                serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            PrivateKey::Ed(key) => {
                serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.public_key().as_ref())})
            }
            PrivateKey::Rsa(key) => {
                let public = key.public_key();
                serde_json::json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
        };
        jwk["kid"] = kid.into();
        jwk["alg"] = alg.as_str().into();
        jwk["use"] = "sig".into();
        jwk
    }

    fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
        match self {
            PrivateKey::Ec(key) => key.sign(&SystemRandom::new(), message).ok().map(|sig| sig.as_ref().to_vec()),
            PrivateKey::Ed(key) => Some(key.sign(message).as_ref().to_vec()),
            PrivateKey::Rsa(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut signature).ok()?;
                Some(signature)
            }
        }
    }
}

/// A token's claims as verified by the ring at a generation; a cache hit counts only while the ring is
/// still at that generation (a reload may have dropped a revoked key).
pub struct Verified<C> {
    pub generation: u64,
    pub claims: Arc<C>,
}

/// One key of the ring.
pub struct SigningKey {
    /// `kid` (`key_…`): also the row id, and the associated data its sealed private half is bound to.
    pub kid: String,
    /// Its algorithm (tokens naming another are refused).
    pub algorithm: Algorithm,
    /// The public JWK, as published.
    pub jwk: serde_json::Value,
    /// Unix ms.
    pub created_at: Millis,
    /// When it stopped signing (unix ms); `None` for the active key of its algorithm.
    pub retired_at: Option<Millis>,
    /// When it leaves the JWKS and stops verifying (unix ms): its retirement plus the retire window; `None`
    /// while active.
    pub expires_at: Option<Millis>,
    /// `None` when this node cannot decrypt it (another server secret): it still verifies.
    private: Option<PrivateKey>,
    decoding: DecodingKey,
    /// base64url of the JOSE header (`typ: JWT`), ready to be joined.
    header_b64: String,
    /// The same with `typ: at+jwt` (RFC 9068 access tokens).
    access_header_b64: String,
}

/// The `typ` of a token this ring signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    /// `JWT`: service tokens, ID tokens.
    Jwt,
    /// `at+jwt`: OAuth access tokens (RFC 9068 §2.1).
    AccessToken,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("retired_at", &self.retired_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn new(row: store::KeyRow, private: Option<PrivateKey>) -> anyhow::Result<SigningKey> {
        let algorithm = Algorithm::parse(&row.algorithm)
            .ok_or_else(|| anyhow::anyhow!("signing key {} has an unknown algorithm", row.id))?;
        let jwk: serde_json::Value = serde_json::from_str(&row.public_jwk)?;
        let decoding = DecodingKey::from_jwk(&serde_json::from_value(jwk.clone())?)?;
        let header = |typ: &str| serde_json::json!({"alg": algorithm.as_str(), "kid": row.id, "typ": typ});
        Ok(SigningKey {
            header_b64: URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header("JWT"))?),
            access_header_b64: URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header("at+jwt"))?),
            kid: row.id,
            algorithm,
            jwk,
            created_at: row.created_at,
            retired_at: row.retired_at,
            expires_at: row.expires_at,
            private,
            decoding,
        })
    }

    /// A compact JWS of `claims` signed by this key (`typ: JWT`).
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, SignError> {
        self.sign_typed(claims, TokenType::Jwt)
    }

    /// A compact JWS of `claims` signed by this key, with the header's `typ` as given.
    pub fn sign_typed(&self, claims: &impl Serialize, typ: TokenType) -> Result<String, SignError> {
        let private = self.private.as_ref().ok_or(SignError::NoPrivateKey)?;
        let payload = serde_json::to_vec(claims).map_err(|_| SignError::Failed)?;
        let header = match typ {
            TokenType::Jwt => &self.header_b64,
            TokenType::AccessToken => &self.access_header_b64,
        };
        let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 400);
        token.push_str(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = private.sign(token.as_bytes()).ok_or(SignError::Failed)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

/// Signing failed: no usable private key (this node's secret cannot open it), or the crypto library
/// refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// No active key of the algorithm can be used here.
    #[error("no usable signing key for this algorithm")]
    NoPrivateKey,
    /// Serialization or signature failure.
    #[error("signing failed")]
    Failed,
}

/// The keys as loaded: by `kid`, the active one per algorithm, and the rendered JWKS.
#[derive(Default)]
struct Ring {
    by_kid: HashMap<String, Arc<SigningKey>>,
    active: HashMap<Algorithm, Arc<SigningKey>>,
    jwks: Bytes,
}

/// The signing keys every node shares, loaded from the database and reloaded when they change.
pub struct KeyRing {
    ring: RwLock<Arc<Ring>>,
    /// Bumped by every reload: a token verified under an older ring may name a key since revoked, so the
    /// verified-token caches hold the generation they verified at ([`Verified`]).
    generation: std::sync::atomic::AtomicU64,
    /// Seals private keys at rest (derived from the server secret).
    sealing_key: [u8; 32],
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").field("kids", &self.kids()).finish_non_exhaustive()
    }
}

impl KeyRing {
    /// An empty ring whose private keys are sealed under a key derived from `server_secret`.
    pub fn new(server_secret: &[u8]) -> KeyRing {
        KeyRing {
            ring: RwLock::new(Arc::default()),
            generation: std::sync::atomic::AtomicU64::new(0),
            sealing_key: crypto::derive_key(server_secret, "signing-keys"),
        }
    }

    fn current(&self) -> Arc<Ring> {
        self.ring.read().map(|ring| Arc::clone(&ring)).unwrap_or_default()
    }

    /// The `kid`s held, active ones first.
    pub fn kids(&self) -> Vec<String> {
        let ring = self.current();
        let mut kids: Vec<&Arc<SigningKey>> = ring.by_kid.values().collect();
        kids.sort_by_key(|key| (key.retired_at.is_some(), std::cmp::Reverse(key.created_at)));
        kids.into_iter().map(|key| key.kid.clone()).collect()
    }

    /// The key that signs `alg` tokens now.
    pub fn active(&self, alg: Algorithm) -> Option<Arc<SigningKey>> {
        self.current().active.get(&alg).cloned()
    }

    /// The JWKS document (`{"keys": [...]}`), rendered when the ring was loaded.
    pub fn jwks(&self) -> Bytes {
        self.current().jwks.clone()
    }

    /// Re-reads the keys that are still published at `now`.
    pub async fn reload(&self, db: &Db, now: Millis) -> anyhow::Result<()> {
        let rows = store::published_keys(db, now).await?;
        let mut ring = Ring::default();
        for row in rows {
            let private = self.open_private(&row);
            if private.is_none() {
                tracing::warn!(kid = %row.id, "signing key cannot be decrypted with this server secret; it only verifies");
            }
            let key = Arc::new(SigningKey::new(row, private)?);
            if key.retired_at.is_none() {
                ring.active.insert(key.algorithm, Arc::clone(&key));
            }
            ring.by_kid.insert(key.kid.clone(), key);
        }
        let mut published: Vec<&Arc<SigningKey>> = ring.by_kid.values().collect();
        published.sort_by_key(|key| (key.retired_at.is_some(), std::cmp::Reverse(key.created_at)));
        let keys: Vec<&serde_json::Value> = published.iter().map(|key| &key.jwk).collect();
        ring.jwks = Bytes::from(serde_json::to_vec(&serde_json::json!({ "keys": keys }))?);
        if let Ok(mut current) = self.ring.write() {
            *current = Arc::new(ring);
        }
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// The ring's generation: read it before verifying, and keep a verified token only while it holds.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn open_private(&self, row: &store::KeyRow) -> Option<PrivateKey> {
        let alg = Algorithm::parse(&row.algorithm)?;
        let sealed = base64::engine::general_purpose::STANDARD.decode(&row.private_key).ok()?;
        let der = crypto::open(&self.sealing_key, row.id.as_bytes(), &sealed)?;
        PrivateKey::from_pkcs8(alg, &der)
    }

    /// A new key row (not yet stored): `kid`, algorithm, JWK and the sealed private key. Generation runs on
    /// the blocking pool (an RSA key takes ~100 ms).
    async fn new_row(&self, alg: Algorithm, now: Millis) -> anyhow::Result<store::KeyRow> {
        let sealing_key = self.sealing_key;
        tokio::task::spawn_blocking(move || {
            let (private, der) = PrivateKey::generate(alg)?;
            let kid = crypto::new_id("key");
            let jwk = private.public_jwk(&kid, alg);
            let sealed = crypto::seal(&sealing_key, kid.as_bytes(), &der);
            Ok(store::KeyRow {
                public_jwk: serde_json::to_string(&jwk)?,
                private_key: base64::engine::general_purpose::STANDARD.encode(sealed),
                id: kid,
                algorithm: alg.as_str().to_owned(),
                created_at: now,
                retired_at: None,
                expires_at: None,
            })
        })
        .await?
    }

    /// Makes sure `alg` has an active key (creating the first one), then loads the ring. Safe when several
    /// nodes start at once: one insert wins, the others load it. Fails if the active key cannot be
    /// decrypted here — a changed server secret — rather than signing nothing.
    pub async fn ensure(&self, db: &Db, alg: Algorithm, now: Millis) -> anyhow::Result<()> {
        self.reload(db, now).await?;
        if self.active(alg).is_none() {
            let row = self.new_row(alg, now).await?;
            match store::insert_key(db, &row).await {
                Ok(()) | Err(StorageError::UniqueViolation(_)) => {}
                Err(error) => return Err(error.into()),
            }
            self.reload(db, now).await?;
        }
        match self.active(alg) {
            Some(key) if key.private.is_some() => Ok(()),
            Some(key) => anyhow::bail!(
                "the active {} signing key {} cannot be decrypted with this server secret (was LATCHKEY_SECRET \
                 changed?); run `latchkey admin rotate-keys` with the current secret",
                alg.as_str(),
                key.kid
            ),
            None => anyhow::bail!("no active {} signing key", alg.as_str()),
        }
    }

    /// Replaces the active `alg` key by a new one. The old key stops signing now and stays published (and
    /// accepted) for `retire_window` ms — the longest lifetime of a token it may have signed. With
    /// `older_than`, only rotates if the active key was created before that time (the schedule: several
    /// nodes may try at once, one wins). Returns the new `kid`, or `None` when nothing was rotated. Every
    /// node reloads through the `signing_keys` event.
    pub async fn rotate(
        &self,
        db: &Db,
        alg: Algorithm,
        now: Millis,
        retire_window: Millis,
        older_than: Option<Millis>,
    ) -> anyhow::Result<Option<String>> {
        let row = self.new_row(alg, now).await?;
        let kid = row.id.clone();
        let rotated = match store::rotate(db, &row, now, now + retire_window, older_than).await {
            Ok(rotated) => rotated,
            // Another node rotated at the same moment.
            Err(StorageError::UniqueViolation(_)) => false,
            Err(error) => return Err(error.into()),
        };
        if rotated {
            notify::publish_event(db, &notify::CacheEvent::SigningKeysChanged, now).await?;
        }
        self.reload(db, now).await?;
        Ok(rotated.then_some(kid))
    }

    /// Revokes a retired key (never the active one): out of the JWKS and refused at once here, and on every
    /// node through the `signing_keys` event. `false` if no retired, unrevoked key has this `kid`.
    pub async fn revoke(&self, db: &Db, kid: &str, now: Millis) -> anyhow::Result<bool> {
        if !store::revoke_key(db, kid, now).await? {
            return Ok(false);
        }
        notify::publish_event(db, &notify::CacheEvent::SigningKeysChanged, now).await?;
        self.reload(db, now).await?;
        Ok(true)
    }

    /// Signs `claims` with the active key of `alg`; returns the token.
    pub fn sign(&self, alg: Algorithm, claims: &impl Serialize) -> Result<String, SignError> {
        let key = self.active(alg).ok_or(SignError::NoPrivateKey)?;
        key.sign(claims)
    }

    /// Signs with the active `alg` key, creating one first if there is none yet (every node learns of
    /// it through the `signing_keys` event).
    pub async fn sign_ensuring(
        &self,
        db: &Db,
        alg: Algorithm,
        claims: &impl Serialize,
        typ: TokenType,
        now: Millis,
    ) -> anyhow::Result<String> {
        if self.active(alg).is_none() {
            self.ensure(db, alg, now).await?;
            notify::publish_event(db, &notify::CacheEvent::SigningKeysChanged, now).await?;
        }
        let key = self.active(alg).ok_or_else(|| anyhow::anyhow!("no active {} signing key", alg.as_str()))?;
        Ok(key.sign_typed(claims, typ)?)
    }

    /// Verifies a token's signature with the key its `kid` names, pinned to that key's algorithm, then its
    /// issuer, audience and required claims, then its time claims against `now`.
    pub fn verify<C: DeserializeOwned + TimeClaims>(
        &self,
        token: &str,
        expected: &Expectation,
        now: Millis,
    ) -> Result<C, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        refuse_critical(&header)?;
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.current().by_kid.get(&kid).cloned().ok_or(TokenError::UnknownKey)?;
        // A key past its window is retired for good, even before the next reload drops it.
        if key.expires_at.is_some_and(|expires_at| expires_at <= now) {
            return Err(TokenError::UnknownKey);
        }
        if header.alg != key.algorithm.jose() {
            return Err(TokenError::AlgorithmMismatch);
        }
        let validation = expected.validations.get(&key.algorithm).ok_or(TokenError::AlgorithmMismatch)?;
        let data = jsonwebtoken::decode::<C>(token, &key.decoding, validation).map_err(|error| {
            use jsonwebtoken::errors::ErrorKind;
            match error.kind() {
                ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                    TokenError::Malformed
                }
                _ => TokenError::Invalid,
            }
        })?;
        expected.check_times(&data.claims, now)?;
        Ok(data.claims)
    }

    /// Rotates every algorithm whose active key is older than `interval` ms (the schedule); a retired key
    /// stays published for `retire_window(its algorithm)` ms.
    pub async fn rotate_due(
        &self,
        db: &Db,
        now: Millis,
        interval: Millis,
        retire_window: impl Fn(Algorithm) -> Millis,
    ) -> anyhow::Result<()> {
        let due: Vec<Algorithm> = self
            .current()
            .active
            .values()
            .filter(|key| key.created_at <= now - interval)
            .map(|key| key.algorithm)
            .collect();
        for alg in due {
            if let Some(kid) = self.rotate(db, alg, now, retire_window(alg), Some(now - interval)).await? {
                tracing::info!(kid = %kid, algorithm = alg.as_str(), "signing key rotated on schedule");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Claims {
        iss: String,
        aud: String,
        sub: String,
        iat: i64,
        exp: i64,
        nbf: Option<i64>,
    }

    impl TimeClaims for Claims {
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

    #[test]
    fn time_claims_are_checked_with_the_leeway() {
        let expected = Expectation::new("https://a", "https://a/v1", 30);
        let at = |iat, exp, nbf| Claims { iss: "".into(), aud: "".into(), sub: "".into(), iat, exp, nbf };
        let now = 1_000_000_000; // seconds
        let ms = now * 1000;
        assert_eq!(expected.check_times(&at(now, now + 60, None), ms), Ok(()));
        assert_eq!(expected.check_times(&at(now - 100, now - 10, None), ms), Ok(()), "within the leeway");
        assert_eq!(expected.check_times(&at(now - 100, now - 30, None), ms), Err(TokenError::Expired));
        assert_eq!(expected.check_times(&at(now + 29, now + 600, None), ms), Ok(()));
        assert_eq!(expected.check_times(&at(now + 31, now + 600, None), ms), Err(TokenError::NotYetValid));
        assert_eq!(expected.check_times(&at(now, now + 600, Some(now + 31)), ms), Err(TokenError::NotYetValid));
    }

    /// Claims from `https://a` for `https://a/v1`, issued at `now` (seconds), valid for a minute.
    fn valid_claims(now: i64) -> Claims {
        Claims {
            iss: "https://a".into(),
            aud: "https://a/v1".into(),
            sub: "u".into(),
            iat: now,
            exp: now + 60,
            nbf: None,
        }
    }

    /// A ring key of `alg` named `kid`, with its private half.
    fn ring_key(private: PrivateKey, alg: Algorithm, kid: &str) -> SigningKey {
        let row = store::KeyRow {
            id: kid.into(),
            algorithm: alg.as_str().into(),
            public_jwk: private.public_jwk(kid, alg).to_string(),
            private_key: String::new(),
            created_at: 0,
            retired_at: None,
            expires_at: None,
        };
        SigningKey::new(row, Some(private)).unwrap()
    }

    /// A ring holding only `key`.
    fn ring_holding(key: SigningKey) -> KeyRing {
        let ring = KeyRing::new(b"secret");
        if let Ok(mut current) = ring.ring.write() {
            let mut by_kid = HashMap::new();
            by_kid.insert(key.kid.clone(), Arc::new(key));
            *current = Arc::new(Ring { by_kid, ..Ring::default() });
        }
        ring
    }

    #[test]
    fn every_algorithm_generates_a_key_whose_jwk_verifies_its_signature() {
        for alg in Algorithm::ALL {
            let (private, der) = PrivateKey::generate(alg).unwrap();
            assert!(PrivateKey::from_pkcs8(alg, &der).is_some(), "{alg:?} round-trips through PKCS#8");
            let key = ring_key(private, alg, "key_test");
            let now = 1_000_000_000;
            let claims = valid_claims(now);
            let token = key.sign(&claims).unwrap();
            let ring = ring_holding(key);
            let expected = Expectation::new("https://a", "https://a/v1", 0);
            let verified: Claims = ring.verify(&token, &expected, now * 1000).unwrap();
            assert_eq!(verified.sub, "u");
            let other_audience = Expectation::new("https://a", "https://b", 0);
            assert_eq!(ring.verify::<Claims>(&token, &other_audience, now * 1000).err(), Some(TokenError::Invalid));
        }
    }

    #[test]
    fn a_header_with_crit_is_refused_even_when_its_signature_is_good() {
        let alg = Algorithm::Es256;
        let (private, _) = PrivateKey::generate(alg).unwrap();
        let key = ring_key(private, alg, "key_crit");
        let now = 1_000_000_000;
        let claims = valid_claims(now);
        // The same claims under a header naming a critical extension, signed by the ring's own key.
        let signed_with = |header: serde_json::Value| {
            let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
            token.push('.');
            token.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()));
            let signature = key.private.as_ref().unwrap().sign(token.as_bytes()).unwrap();
            format!("{token}.{}", URL_SAFE_NO_PAD.encode(signature))
        };
        let plain = signed_with(serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "key_crit"}));
        let critical =
            signed_with(serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "key_crit", "crit": ["exp"]}));
        let empty_crit = signed_with(serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "key_crit", "crit": []}));
        let ring = ring_holding(key);
        let expected = Expectation::new("https://a", "https://a/v1", 0);
        assert!(ring.verify::<Claims>(&plain, &expected, now * 1000).is_ok(), "the control token verifies");
        assert_eq!(ring.verify::<Claims>(&critical, &expected, now * 1000).err(), Some(TokenError::CriticalExtension));
        assert_eq!(
            ring.verify::<Claims>(&empty_crit, &expected, now * 1000).err(),
            Some(TokenError::CriticalExtension)
        );
    }

    #[test]
    fn sealed_private_keys_open_only_with_the_same_secret_and_kid() {
        let key = [7u8; 32];
        let sealed = crypto::seal(&key, b"key_a", b"private");
        assert_eq!(crypto::open(&key, b"key_a", &sealed).as_deref(), Some(&b"private"[..]));
        assert_eq!(crypto::open(&key, b"key_b", &sealed), None);
        assert_eq!(crypto::open(&[8u8; 32], b"key_a", &sealed), None);
    }
}
