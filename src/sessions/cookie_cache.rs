//! The `session_data` cookie: a signed, expiring copy of `{session, user}` so a session check within its
//! max-age reads no database (DESIGN.md "Capability 1", Better Auth's `cookieCache`).
//!
//! Format: `base64url(JSON).base64url(HMAC-SHA256(cache key, base64url(JSON)))`. The payload is bound to
//! the session token (by the token's hash) so it cannot be paired with another session's token cookie.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, RwLock},
};

use axum::body::Bytes;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde::{Deserialize, Serialize};

use crate::{accounts::User, clock::Millis, crypto};

use super::Session;

/// What a `session_data` cookie carries.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cached {
    /// The session as of when the cookie was issued.
    pub session: Session,
    /// The user as of when the cookie was issued (shared with the principals built from it).
    pub user: std::sync::Arc<User>,
    /// SHA-256 (hex) of the session token this entry belongs to.
    pub token_hash: String,
    /// The cookie is worthless after this instant (unix ms).
    pub expires_at: Millis,
}

/// A verified cookie as the memo keeps it, with what was rendered from it. Entries are never edited (a
/// changed session gets a new cookie, hence a new entry), so what is rendered stays true.
#[derive(Debug)]
pub struct Remembered {
    pub cached: Cached,
    /// get-session's body, rendered from `session` and `user` alone on first use: a client repeating its
    /// cookies gets the same bytes again.
    pub get_session_body: OnceLock<Bytes>,
}

impl std::ops::Deref for Remembered {
    type Target = Cached;

    fn deref(&self) -> &Cached {
        &self.cached
    }
}

/// Encodes and signs a cache entry.
pub fn encode(key: &[u8], cached: &Cached) -> String {
    let json = serde_json::to_vec(cached).unwrap_or_default();
    let payload = URL_SAFE_NO_PAD.encode(json);
    let tag = URL_SAFE_NO_PAD.encode(crypto::hmac_sha256(key, payload.as_bytes()));
    format!("{payload}.{tag}")
}

/// Verifies and decodes a cache entry for `token_hash`, if it is authentic, unexpired and for that token.
pub fn decode(key: &[u8], value: &str, token_hash: &str, now: Millis) -> Option<Cached> {
    let (payload, tag) = value.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    if !crypto::hmac_sha256_verify(key, payload.as_bytes(), &tag) {
        return None;
    }
    let cached: Cached = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let for_this_token = crypto::constant_time_eq(cached.token_hash.as_bytes(), token_hash.as_bytes());
    (for_this_token && cached.expires_at > now).then_some(cached)
}

/// Cookie values already verified and decoded, so a client repeating its `session_data` cookie costs a
/// hash lookup instead of an HMAC, two base64 decodes and a JSON parse. Each entry also remembers the signed
/// `session_token` cookie it was verified with: a request presenting that same pair skips the token
/// cookie's HMAC and hash too ([`Memo::hit`]). Entries die with the cookie's own expiry; the revocation
/// and expiry checks still run on every request.
///
/// Entries are keyed by the value's signature part (its last 43 characters) rather than the whole
/// ~600-byte value, which hashing dominated; the whole value is then compared. Only verified values are
/// inserted, so an entry's key is the HMAC of its value: a forged value cannot displace one, and reaching
/// the comparison at all takes knowing a valid 256-bit tag.
#[derive(Debug, Default)]
pub struct Memo {
    entries: RwLock<HashMap<String, MemoEntry>>,
}

#[derive(Debug)]
struct MemoEntry {
    cached: Arc<Remembered>,
    /// The whole cookie value.
    value: String,
    /// The signed token cookie it was verified with.
    verified_with: String,
}

/// The memo key of a cookie value: its signature part (the whole value if it has none).
fn memo_key(value: &str) -> &str {
    value.rsplit_once('.').map_or(value, |(_, tag)| tag)
}

/// Beyond this many remembered cookies the memo starts over (bounded memory).
const MAX_MEMO: usize = 50_000;

impl Memo {
    /// `decode`, remembering the result with the signed token cookie (`token_cookie`) whose token hashes
    /// to `token_hash`.
    pub fn decode(
        &self,
        key: &[u8],
        value: &str,
        token_cookie: &str,
        token_hash: &str,
        now: Millis,
    ) -> Option<Arc<Remembered>> {
        let hit = self.entries.read().ok().and_then(|entries| {
            entries.get(memo_key(value)).filter(|entry| entry.value == value).map(|entry| Arc::clone(&entry.cached))
        });
        let cached = match hit {
            Some(cached) => cached,
            None => {
                let cached = Arc::new(Remembered {
                    cached: decode(key, value, token_hash, now)?,
                    get_session_body: OnceLock::new(),
                });
                if let Ok(mut entries) = self.entries.write() {
                    if entries.len() >= MAX_MEMO {
                        entries.retain(|_, entry| entry.cached.expires_at > now);
                        if entries.len() >= MAX_MEMO {
                            entries.clear();
                        }
                    }
                    let entry = MemoEntry {
                        cached: Arc::clone(&cached),
                        value: value.to_owned(),
                        verified_with: token_cookie.to_owned(),
                    };
                    entries.insert(memo_key(value).to_owned(), entry);
                }
                cached
            }
        };
        let for_this_token = crypto::constant_time_eq(cached.token_hash.as_bytes(), token_hash.as_bytes());
        (for_this_token && cached.expires_at > now).then_some(cached)
    }

    /// The entry for `value` if it was verified together with exactly this signed token cookie (compared in
    /// constant time) and has not expired: the token cookie's signature and its binding were checked then.
    pub fn hit(&self, value: &str, token_cookie: &str, now: Millis) -> Option<Arc<Remembered>> {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(memo_key(value)).filter(|entry| entry.value == value)?;
        (crypto::constant_time_eq(entry.verified_with.as_bytes(), token_cookie.as_bytes())
            && entry.cached.expires_at > now)
            .then(|| Arc::clone(&entry.cached))
    }

    /// Number of remembered cookies (metrics).
    pub fn len(&self) -> usize {
        self.entries.read().map_or(0, |entries| entries.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets expired entries.
    pub fn prune(&self, now: Millis) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, entry| entry.cached.expires_at > now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(expires_at: Millis) -> Cached {
        let user = User {
            id: "usr_1".into(),
            email: "a@example.com".into(),
            name: "A".into(),
            image: None,
            email_verified: false,
            role: "user".into(),
            blocked: false,
            created_at: 1,
            updated_at: 1,
        };
        let session = Session {
            id: "ses_1".into(),
            user_id: "usr_1".into(),
            expires_at: 10_000_000,
            ip_address: None,
            user_agent: None,
            active_organization_id: None,
            created_at: 1,
            updated_at: 1,
        };
        Cached { session, user: user.into(), token_hash: "th".into(), expires_at }
    }

    #[test]
    fn round_trips_within_max_age_only() {
        let key = [7u8; 32];
        let value = encode(&key, &sample(5_000));
        assert!(decode(&key, &value, "th", 4_999).is_some());
        assert!(decode(&key, &value, "th", 5_000).is_none());
    }

    #[test]
    fn the_memo_remembers_verified_values_but_still_checks_token_and_expiry() {
        let key = [7u8; 32];
        let memo = Memo::default();
        let value = encode(&key, &sample(5_000));
        assert!(memo.decode(&key, "garbage.tag", "tok.sig", "th", 0).is_none());
        let first = memo.decode(&key, &value, "tok.sig", "th", 0).unwrap();
        // Remembered: even a wrong key would not be consulted again, so the binding checks must hold.
        let again = memo.decode(&[8u8; 32], &value, "tok.sig", "th", 1).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert!(memo.decode(&key, &value, "tok.sig", "other", 1).is_none(), "bound to its token");
        assert!(memo.decode(&key, &value, "tok.sig", "th", 5_000).is_none(), "expires with the cookie");
        memo.prune(5_000);
        assert!(memo.entries.read().unwrap().is_empty());
    }

    #[test]
    fn a_memo_hit_needs_the_very_token_cookie_the_entry_was_verified_with() {
        let key = [7u8; 32];
        let memo = Memo::default();
        let value = encode(&key, &sample(5_000));
        assert!(memo.hit(&value, "tok.sig", 0).is_none(), "nothing verified yet");
        memo.decode(&key, &value, "tok.sig", "th", 0).unwrap();
        assert!(memo.hit(&value, "tok.sig", 1).is_some());
        assert!(memo.hit(&value, "tok.forged", 1).is_none(), "another token cookie takes the full path");
        assert!(memo.hit(&value, "tok.sig", 5_000).is_none(), "expires with the cookie");
    }

    #[test]
    fn a_forged_value_carrying_a_remembered_signature_neither_hits_nor_displaces_the_entry() {
        let key = [7u8; 32];
        let memo = Memo::default();
        let value = encode(&key, &sample(5_000));
        let first = memo.decode(&key, &value, "tok.sig", "th", 0).unwrap();
        let (payload, tag) = value.split_once('.').unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        json["user"]["role"] = "admin".into();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).unwrap()));

        assert!(memo.hit(&forged, "tok.sig", 1).is_none());
        assert!(memo.decode(&key, &forged, "tok.sig", "th", 1).is_none());
        let again = memo.hit(&value, "tok.sig", 1).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(again.user.role, first.user.role);
    }

    #[test]
    fn refuses_tampering_another_key_and_another_token() {
        let key = [7u8; 32];
        let value = encode(&key, &sample(5_000));
        assert!(decode(&[8u8; 32], &value, "th", 0).is_none());
        assert!(decode(&key, &value, "other", 0).is_none());
        let (payload, tag) = value.split_once('.').unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        json["user"]["role"] = "admin".into();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).unwrap()));
        assert!(decode(&key, &forged, "th", 0).is_none());
    }
}
