//! Crypto primitives, all from well-kept crates: random tokens and ids, SHA-256 for stored token hashes,
//! HMAC-SHA256 for cookies, constant-time comparison, and the Argon2id worker pool ([`password`]).

pub mod password;
pub mod secret;

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use rand::{distributions::Alphanumeric, Rng};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// `len` random alphanumeric characters from a CSPRNG (ThreadRng: ChaCha, seeded from the OS).
pub fn random_alphanumeric(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

/// A new random id with a type prefix, e.g. `usr_…` (24 characters ≈ 143 bits).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_alphanumeric(24))
}

/// Lower-case hex SHA-256: how session tokens, API keys, client keys and service-user secrets are stored.
pub fn sha256_hex(data: &[u8]) -> String {
    // `hex::encode` collects an iterator of chars (~1.5k instructions); this fills a stack buffer.
    let digest = Sha256::digest(data);
    let mut hex = [0u8; 64];
    if hex::encode_to_slice(digest, &mut hex).is_err() {
        return hex::encode(digest);
    }
    String::from_utf8_lossy(&hex).into_owned()
}

/// Constant-time equality of two byte strings (length may leak, content does not).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Verifies an HMAC-SHA256 tag in constant time.
pub fn hmac_sha256_verify(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else { return false };
    mac.update(data);
    mac.verify_slice(tag).is_ok()
}

/// Derives an independent sub-key from the server secret, one per purpose (domain separation).
pub fn derive_key(secret: &[u8], purpose: &str) -> [u8; 32] {
    hmac_sha256(secret, format!("latchkey/{purpose}").as_bytes())
}

/// AES-256-GCM with a random 96-bit nonce (aws-lc-rs): `nonce || ciphertext || tag`. `aad` binds the
/// ciphertext to its context (e.g. a key id), so it cannot be moved to another row.
pub fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    use aws_lc_rs::aead::{Aad, RandomizedNonceKey, AES_256_GCM};
    let mut in_out = plaintext.to_vec();
    let sealed = RandomizedNonceKey::new(&AES_256_GCM, key)
        .and_then(|key| key.seal_in_place_append_tag(Aad::from(aad), &mut in_out));
    match sealed {
        Ok(nonce) => [nonce.as_ref().as_slice(), &in_out].concat(),
        // A 32-byte key is always valid for AES-256 and sealing a buffer in memory cannot fail.
        Err(_) => unreachable!("AES-256-GCM sealing with a 32-byte key"),
    }
}

/// Opens what [`seal`] produced; `None` if the key, the context or the bytes differ.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
    let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let key = RandomizedNonceKey::new(&AES_256_GCM, key).ok()?;
    let mut in_out = ciphertext.to_vec();
    let plaintext = key.open_in_place(nonce, Aad::from(aad), &mut in_out).ok()?;
    Some(plaintext.to_vec())
}

/// Better Auth's signed cookie value: `value.base64(HMAC-SHA256(secret, value))` (padded standard base64).
/// The caller URL-encodes it for the `Set-Cookie` header.
pub fn sign_cookie_value(key: &[u8], value: &str) -> String {
    format!("{value}.{}", STANDARD.encode(hmac_sha256(key, value.as_bytes())))
}

/// Checks a value produced by [`sign_cookie_value`] and returns the unsigned part.
pub fn verify_cookie_value<'a>(key: &[u8], signed: &'a str) -> Option<&'a str> {
    let (value, signature) = signed.rsplit_once('.')?;
    // A padded base64 HMAC-SHA256 is always 44 characters ending in '=' (as Better Auth checks).
    if signature.len() != 44 || !signature.ends_with('=') {
        return None;
    }
    let tag = STANDARD.decode(signature).ok()?;
    hmac_sha256_verify(key, value.as_bytes(), &tag).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_cookie_round_trips_and_rejects_tampering() {
        let key = b"k".repeat(32);
        let signed = sign_cookie_value(&key, "abc123");
        assert_eq!(verify_cookie_value(&key, &signed), Some("abc123"));
        let tampered = signed.replacen("abc123", "abc124", 1);
        assert_eq!(verify_cookie_value(&key, &tampered), None);
        assert_eq!(verify_cookie_value(b"other-key", &signed), None);
        assert_eq!(verify_cookie_value(&key, "abc123"), None);
    }

    #[test]
    fn cookie_signature_matches_better_auth_format() {
        // HMAC-SHA256("secret", "token") = base64 of the RFC 2104 tag, padded, 44 characters.
        let signed = sign_cookie_value(b"secret", "token");
        let (_, signature) = signed.split_once('.').unwrap();
        assert_eq!(signature.len(), 44);
        assert!(signature.ends_with('='));
    }

    #[test]
    fn ids_are_prefixed_and_random() {
        let a = new_id("usr");
        assert!(a.starts_with("usr_") && a.len() == 28);
        assert_ne!(a, new_id("usr"));
    }

    #[test]
    fn sha256_hex_is_lower_case_hex() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn constant_time_eq_compares_content() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
