//! Capability 1, sessions: creation, validation with sliding expiry, the cookie cache and revocation
//! (DESIGN.md "Capability 1").
//!
//! The DB stores only the SHA-256 of a session token. A check first tries the signed `session_data`
//! cookie (no DB read), unless the session was revoked within the cache window; otherwise it reads the
//! session, refuses it if expired (and deletes it), and slides its expiry when it is due.

pub mod cookie_cache;
pub mod cookies;
pub mod revoked;
pub mod routes;
pub mod store;

/// The URL paths of this capability's endpoints, also re-exported by `latchkey::paths`.
pub mod paths {
    /// `POST` sign-out.
    pub const SIGN_OUT: &str = "/api/auth/sign-out";
    /// `GET` the current session.
    pub const GET_SESSION: &str = "/api/auth/get-session";
    /// `GET` the user's sessions.
    pub const LIST_SESSIONS: &str = "/api/auth/list-sessions";
    /// `POST` revoke one session.
    pub const REVOKE_SESSION: &str = "/api/auth/revoke-session";
    /// `POST` revoke all sessions.
    pub const REVOKE_SESSIONS: &str = "/api/auth/revoke-sessions";
    /// `POST` revoke all other sessions.
    pub const REVOKE_OTHER_SESSIONS: &str = "/api/auth/revoke-other-sessions";
    /// `GET` the session in a `{success, data}` envelope.
    pub const API_SESSION: &str = "/api/session";
    /// `GET` debug view (only with `debug_endpoints`).
    pub const DEBUG_SESSION: &str = "/debug/session";
}

use serde::{Deserialize, Serialize};

use crate::{
    accounts::User,
    clock::{iso8601, Millis},
    config::{Secret, SessionSettings},
    crypto,
    http::extractors::ClientInfo,
    storage::{notify, Db, StorageError},
};
use revoked::RevokedSessions;

/// A session as stored (without its token hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Session {
    /// `ses_…`; also the opaque revocation handle clients see as `token`.
    pub id: String,
    pub user_id: String,
    /// Unix ms; the session is refused from this instant.
    pub expires_at: Millis,
    /// Client IP at sign-in.
    pub ip_address: Option<String>,
    /// Client user agent at sign-in.
    pub user_agent: Option<String>,
    /// Set by `organization/set-active` (null clears it) and by creating or joining an organization;
    /// cleared when the organization is deleted or the user leaves or is removed from it.
    pub active_organization_id: Option<String>,
    /// Sign-in time, unix ms: the absolute lifetime counts from here.
    pub created_at: Millis,
    /// Last refresh, unix ms.
    pub updated_at: Millis,
}

/// The JSON shape of a session (Better Auth's, camelCase; `token` is the revocation handle, never the
/// raw token).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// `ses_…`, the same value as `token`; for an `x-api-key` caller of get-session, the key's `key_…` id.
    pub id: String,
    /// Opaque revocation handle for `revoke-session`.
    pub token: String,
    /// The signed-in user's id (`usr_…`).
    pub user_id: String,
    /// ISO 8601.
    pub expires_at: String,
    /// IP address at sign-in.
    pub ip_address: Option<String>,
    /// User agent at sign-in.
    pub user_agent: Option<String>,
    /// The organization the session acts in when a request names none (if the user is still a member of
    /// it); for an `x-api-key` caller, the organization the key is scoped to.
    pub active_organization_id: Option<String>,
    /// ISO 8601.
    pub created_at: String,
    /// ISO 8601.
    pub updated_at: String,
}

impl From<&Session> for SessionView {
    fn from(session: &Session) -> Self {
        SessionView {
            id: session.id.clone(),
            token: session.id.clone(),
            user_id: session.user_id.clone(),
            expires_at: iso8601(session.expires_at),
            ip_address: session.ip_address.clone(),
            user_agent: session.user_agent.clone(),
            active_organization_id: session.active_organization_id.clone(),
            created_at: iso8601(session.created_at),
            updated_at: iso8601(session.updated_at),
        }
    }
}

/// What the sessions capability keeps in memory: its keys and lifetimes, the recently revoked sessions
/// and the verified `session_data` cookies.
pub struct SessionState {
    /// The cookies' signing keys.
    pub keys: Keys,
    /// Session lifetimes.
    pub policy: Policy,
    /// Sessions revoked within the cookie-cache window (a cached cookie of one is refused).
    pub revoked: RevokedSessions,
    /// Verified `session_data` cookies.
    pub memo: cookie_cache::Memo,
    /// Bearer session tokens checked against the database within the cookie-cache window, by token hash:
    /// the same treatment as a cached cookie (the revoked set refuses a revoked one on every node; a changed
    /// session or membership evicts it).
    pub bearer: crate::cache::TtlCache<cookie_cache::Cached>,
}

impl SessionState {
    /// Empty caches, keys derived from `secret`.
    pub fn new(settings: &SessionSettings, secret: &Secret) -> SessionState {
        let policy = Policy::from(settings);
        SessionState {
            keys: Keys {
                cookie: secret.expose().as_bytes().to_vec(),
                cache: crypto::derive_key(secret.expose().as_bytes(), "session-data/v1"),
            },
            policy,
            revoked: RevokedSessions::new(policy.cache_max_age.max(1)),
            memo: cookie_cache::Memo::default(),
            bearer: crate::cache::TtlCache::default(),
        }
    }

    /// Applies an invalidation that concerns sessions.
    pub fn apply(&self, event: &notify::CacheEvent, now: Millis) {
        match event {
            notify::CacheEvent::SessionRevoked { session_id } => {
                self.revoked.insert(session_id, now);
                self.bearer.retain(|cached| cached.session.id != *session_id);
            }
            notify::CacheEvent::SessionChanged { session_id } => {
                self.bearer.retain(|cached| cached.session.id != *session_id)
            }
            // A removed membership clears the active organization of the user's sessions.
            notify::CacheEvent::MembershipsChanged { user_id } => {
                self.bearer.retain(|cached| cached.user.id != *user_id)
            }
            _ => {}
        }
    }

    /// Drops what has expired.
    pub fn prune(&self, now: Millis) {
        self.revoked.prune(now);
        self.memo.prune(now);
        self.bearer.prune(now);
    }
}

/// The cookies' signing keys, both made from the server secret.
pub struct Keys {
    /// Signs the session token cookie (the raw secret, as Better Auth does).
    pub cookie: Vec<u8>,
    /// Signs the cookie cache (a derived sub-key).
    pub cache: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

/// Session lifetimes in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Lifetime from the last refresh.
    pub expires_in: Millis,
    /// Refresh once the last refresh is this old.
    pub update_age: Millis,
    /// Hard cap from sign-in.
    pub absolute_lifetime: Millis,
    /// Cookie cache max-age (0: off).
    pub cache_max_age: Millis,
}

/// Lifetime of a session created with `rememberMe: false` (Better Auth: one day, browser-session cookie).
pub const SHORT_SESSION: Millis = 86_400_000;

impl From<&SessionSettings> for Policy {
    fn from(s: &SessionSettings) -> Self {
        let ms = |secs: u64| i64::try_from(secs).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
        Policy {
            expires_in: ms(s.expires_in),
            update_age: ms(s.update_age),
            absolute_lifetime: ms(s.absolute_lifetime),
            cache_max_age: ms(s.cookie_cache_max_age),
        }
    }
}

impl Policy {
    /// Sliding expiry: the new expiry if `session` is due for a refresh at `now`, else `None`. Due when
    /// the last refresh is at least `update_age` old and the refresh would actually extend the session,
    /// which never passes `created_at + absolute_lifetime`.
    pub fn refresh(&self, session: &Session, now: Millis) -> Option<Millis> {
        let cap = session.created_at.saturating_add(self.absolute_lifetime);
        let extended = now.saturating_add(self.expires_in).min(cap);
        (now - session.updated_at >= self.update_age && extended > session.expires_at).then_some(extended)
    }

    /// True if the session can no longer be used at `now`.
    pub fn is_expired(&self, session: &Session, now: Millis) -> bool {
        now >= session.expires_at || now >= session.created_at.saturating_add(self.absolute_lifetime)
    }
}

/// The SHA-256 stored for a token.
pub fn token_hash(token: &str) -> String {
    crypto::sha256_hex(token.as_bytes())
}

/// Starts a new session for `user_id` (always a new one: no fixation). Returns the raw token, shown to
/// the client once, and the session.
pub async fn create(
    db: &Db,
    policy: &Policy,
    user_id: &str,
    client: &ClientInfo,
    remember_me: bool,
    now: Millis,
) -> Result<(Secret, Session), StorageError> {
    // 32 alphanumeric characters, as Better Auth (~190 bits).
    let token = crypto::random_alphanumeric(32);
    let lifetime = if remember_me { policy.expires_in } else { SHORT_SESSION.min(policy.expires_in) };
    let session = Session {
        id: crypto::new_id("ses"),
        user_id: user_id.to_owned(),
        expires_at: now + lifetime,
        ip_address: client.ip.map(|ip| ip.to_string()),
        user_agent: client.user_agent.as_ref().map(|ua| ua.chars().take(512).collect()),
        active_organization_id: None,
        created_at: now,
        updated_at: now,
    };
    store::insert(db, &session, &token_hash(&token)).await?;
    Ok((Secret::new(token), session))
}

/// A session that passed its check.
#[derive(Debug)]
pub struct Valid {
    /// The session (with its new expiry if it was just refreshed).
    pub session: Session,
    pub user: std::sync::Arc<User>,
    /// True if the answer came from the cookie cache, without a DB read.
    pub from_cache: bool,
    /// True if the expiry just slid: the session cookie must be re-issued.
    pub refreshed: bool,
    /// SHA-256 (hex) of the token, computed once per request.
    pub token_hash: String,
}

/// A `session_data` cookie to try before the database: the memo, the cache key, the cookie's value, and the
/// signed `session_token` cookie it came with.
pub struct CacheProbe<'a> {
    /// Verified cookies.
    pub memo: &'a cookie_cache::Memo,
    /// The cache signing key.
    pub key: &'a [u8],
    /// The `session_data` cookie.
    pub value: &'a str,
    /// The signed `session_token` cookie of the same request, as sent (still percent-encoded): what a
    /// later [`cookie_cache::Memo::hit`] compares.
    pub token_cookie: &'a str,
}

/// The answer from a cookie cache entry, unless its session was revoked, has expired, or is due for a
/// sliding refresh (which needs the database).
pub fn from_cached(
    policy: &Policy,
    revoked: &RevokedSessions,
    cached: &cookie_cache::Cached,
    now: Millis,
) -> Option<Valid> {
    let usable = !revoked.contains(&cached.session.id)
        && !policy.is_expired(&cached.session, now)
        && policy.refresh(&cached.session, now).is_none();
    usable.then(|| Valid {
        session: cached.session.clone(),
        user: std::sync::Arc::clone(&cached.user),
        from_cache: true,
        refreshed: false,
        token_hash: cached.token_hash.clone(),
    })
}

/// Checks a raw session token, from the cookie cache when allowed and valid, else from the DB.
pub async fn validate(
    db: &Db,
    policy: &Policy,
    revoked: &RevokedSessions,
    token: &str,
    cache: Option<CacheProbe<'_>>,
    now: Millis,
) -> Result<Option<Valid>, StorageError> {
    validate_hash(db, policy, revoked, token_hash(token), cache, now).await
}

/// [`validate`], for a token already hashed.
async fn validate_hash(
    db: &Db,
    policy: &Policy,
    revoked: &RevokedSessions,
    hash: String,
    cache: Option<CacheProbe<'_>>,
    now: Millis,
) -> Result<Option<Valid>, StorageError> {
    if let Some(probe) = cache {
        let cached = probe.memo.decode(probe.key, probe.value, probe.token_cookie, &hash, now);
        if let Some(valid) = cached.and_then(|cached| from_cached(policy, revoked, &cached, now)) {
            return Ok(Some(valid));
        }
    }
    let Some((mut session, user)) = store::find_by_token_hash(db, &hash).await? else { return Ok(None) };
    if policy.is_expired(&session, now) {
        store::delete(db, &session.id).await?;
        return Ok(None);
    }
    let mut refreshed = false;
    if let Some(expires_at) = policy.refresh(&session, now) {
        store::extend(db, &session.id, expires_at, now).await?;
        session.expires_at = expires_at;
        session.updated_at = now;
        refreshed = true;
    }
    Ok(Some(Valid { session, user: std::sync::Arc::new(user), from_cache: false, refreshed, token_hash: hash }))
}

/// Checks a bearer session token: from the bearer cache within the cookie-cache window (refused when its
/// session was revoked, has expired or is due for a sliding refresh — then the database decides), else
/// from the database, remembering a valid answer for the window.
pub async fn validate_bearer(
    db: &Db,
    state: &SessionState,
    token: &str,
    now: Millis,
) -> Result<Option<Valid>, StorageError> {
    let window = state.policy.cache_max_age;
    let hash = token_hash(token);
    if window > 0 {
        if let Some(valid) =
            state.bearer.get(&hash, now).and_then(|cached| from_cached(&state.policy, &state.revoked, &cached, now))
        {
            return Ok(Some(valid));
        }
    }
    let valid = validate_hash(db, &state.policy, &state.revoked, hash, None, now).await?;
    if let Some(valid) = valid.as_ref().filter(|_| window > 0) {
        let cached = cookie_cache::Cached {
            session: valid.session.clone(),
            user: std::sync::Arc::clone(&valid.user),
            token_hash: valid.token_hash.clone(),
            expires_at: now + window,
        };
        state.bearer.insert(&valid.token_hash, std::sync::Arc::new(cached), now + window, now);
    }
    Ok(valid)
}

/// Revokes sessions: deletes them, records the revocation, refuses their cached cookies on this node at
/// once and tells the other nodes.
pub async fn revoke(db: &Db, revoked: &RevokedSessions, ids: &[String], now: Millis) -> Result<(), StorageError> {
    store::revoke(db, ids, now).await?;
    for id in ids {
        revoked.insert(id, now);
        notify::publish(db, &notify::CacheEvent::SessionRevoked { session_id: id.clone() }).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Millis = 86_400_000;

    fn policy() -> Policy {
        Policy { expires_in: 30 * DAY, update_age: 7 * DAY, absolute_lifetime: 90 * DAY, cache_max_age: 300_000 }
    }

    fn session(created_at: Millis, updated_at: Millis, expires_at: Millis) -> Session {
        Session {
            id: "ses_x".into(),
            user_id: "usr_x".into(),
            expires_at,
            ip_address: None,
            user_agent: None,
            active_organization_id: None,
            created_at,
            updated_at,
        }
    }

    #[test]
    fn a_fresh_session_is_not_refreshed() {
        assert_eq!(policy().refresh(&session(0, 0, 30 * DAY), 6 * DAY), None);
    }

    #[test]
    fn a_session_older_than_update_age_slides_to_expires_in_from_now() {
        assert_eq!(policy().refresh(&session(0, 0, 30 * DAY), 8 * DAY), Some(38 * DAY));
    }

    #[test]
    fn sliding_never_passes_the_absolute_lifetime() {
        let s = session(0, 70 * DAY, 88 * DAY);
        assert_eq!(policy().refresh(&s, 80 * DAY), Some(90 * DAY));
        let capped = session(0, 80 * DAY, 90 * DAY);
        assert_eq!(policy().refresh(&capped, 89 * DAY), None);
        assert!(policy().is_expired(&capped, 90 * DAY));
    }
}
