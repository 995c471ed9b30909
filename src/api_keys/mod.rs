//! Capability 2, API keys (Better Auth api-key plugin shapes, DESIGN.md "Capability 2").
//!
//! A key is `prefix + 48 random alphanumerics` (~285 bits), shown once; the DB keeps its SHA-256 and its
//! first characters. The check on every request reads neither: verified keys live in an in-process
//! [`KeyCache`] keyed by hash, evicted on update/delete here and on every other node (NOTIFY and the
//! `cache_events` poll), and `lastRequest` is counted in memory by [`UsageBatch`] and flushed in batches.

pub mod cache;
pub mod routes;
pub mod store;

/// The URL paths of this capability's endpoints, also re-exported by `latchkey::paths`.
pub mod paths {
    /// `POST` create an API key.
    pub const API_KEY_CREATE: &str = "/api/auth/api-key/create";
    /// `GET` one API key.
    pub const API_KEY_GET: &str = "/api/auth/api-key/get";
    /// `GET` the caller's API keys.
    pub const API_KEY_LIST: &str = "/api/auth/api-key/list";
    /// `POST` update an API key.
    pub const API_KEY_UPDATE: &str = "/api/auth/api-key/update";
    /// `POST` delete an API key.
    pub const API_KEY_DELETE: &str = "/api/auth/api-key/delete";
    /// `POST` verify an API key.
    pub const API_KEY_VERIFY: &str = "/api/auth/api-key/verify";
}

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use serde::Serialize;

use crate::{
    audit::{self, AuditEvent},
    clock::{iso8601, Millis},
    crypto,
    storage::{notify, Db, StorageError},
};

/// Prefix reserved for service-client keys (capability 4); user keys may not use it.
pub const CLIENT_KEY_PREFIX: &str = "lkc_";
/// Random characters after the prefix.
const KEY_RANDOM_LEN: usize = 48;
/// Characters of the key kept for display.
pub const START_LEN: usize = 6;

/// `{resource: [actions]}`.
pub type Permissions = BTreeMap<String, Vec<String>>;

/// An API key as stored (without its hash).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ApiKey {
    /// `key_…`
    pub id: String,
    /// Display name, at most 256 characters; `None` if none was given.
    pub name: Option<String>,
    /// First characters of the key.
    pub start: String,
    /// What the key begins with: the prefix asked for at creation, else `api_keys.default_prefix`.
    pub prefix: String,
    /// Owning user.
    pub reference_id: String,
    /// Organization the key is scoped to: requests made with it act in that organization only.
    pub organization_id: Option<String>,
    /// JSON `{resource: [actions]}`; null: the owner's rights.
    pub permissions: Option<String>,
    /// JSON.
    pub metadata: Option<String>,
    /// Disabled keys are refused.
    pub enabled: bool,
    /// Unix ms; refused from then on.
    pub expires_at: Option<Millis>,
    /// Unix ms of the last use that was flushed.
    pub last_request: Option<Millis>,
    /// Uses flushed so far.
    pub request_count: i64,
    /// Unix ms.
    pub created_at: Millis,
    /// Unix ms.
    pub updated_at: Millis,
}

/// A key's fields as its JSON view shows them and the permission checks read them: permissions and
/// metadata parsed, timestamps in ISO 8601. Made once per cached key ([`cache::CachedKey`]), and for each
/// key read from the database to be shown.
#[derive(Debug)]
pub struct KeyFields {
    /// `None`: unrestricted within the owner's rights (stored text that is not valid JSON grants nothing).
    pub permissions: Option<Permissions>,
    pub metadata: Option<serde_json::Value>,
    pub expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl KeyFields {
    /// Parses and renders `key`'s fields.
    pub fn of(key: &ApiKey) -> KeyFields {
        KeyFields {
            permissions: key.permissions.as_deref().map(|p| serde_json::from_str(p).unwrap_or_default()),
            metadata: key.metadata.as_deref().and_then(|m| serde_json::from_str(m).ok()),
            expires_at: key.expires_at.map(iso8601),
            created_at: iso8601(key.created_at),
            updated_at: iso8601(key.updated_at),
        }
    }

    /// True if the key holds every requested action.
    pub fn holds(&self, requested: &Permissions) -> bool {
        let Some(held) = &self.permissions else { return false };
        requested.iter().all(|(resource, actions)| {
            held.get(resource).is_some_and(|have| actions.iter().all(|action| have.contains(action)))
        })
    }

    /// True if the key may do `action` on `resource` inside Latchkey (keys without permissions may do
    /// whatever their owner may).
    pub fn allows(&self, resource: &str, action: &str) -> bool {
        self.permissions.as_ref().is_none_or(|held| held.get(resource).is_some_and(|a| a.iter().any(|x| x == action)))
    }

    /// `resource:action` pairs, sorted (the `x-auth-scopes` of a key).
    pub fn scopes(&self) -> Vec<String> {
        let mut scopes: Vec<String> = self
            .permissions
            .as_ref()
            .map(|held| {
                held.iter()
                    .flat_map(|(resource, actions)| actions.iter().map(move |a| format!("{resource}:{a}")))
                    .collect()
            })
            .unwrap_or_default();
        scopes.sort_unstable();
        scopes.dedup();
        scopes
    }
}

impl ApiKey {
    /// Why the key cannot be used at `now`, if it cannot.
    pub fn unusable(&self, now: Millis) -> Option<KeyProblem> {
        if !self.enabled {
            Some(KeyProblem::Disabled)
        } else if self.expires_at.is_some_and(|at| now >= at) {
            Some(KeyProblem::Expired)
        } else {
            None
        }
    }
}

/// Why a key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyProblem {
    /// Unknown (or deleted) key.
    NotFound,
    /// `enabled: false`.
    Disabled,
    /// Past `expiresAt`.
    Expired,
}

impl KeyProblem {
    /// The error code `verify` answers (DESIGN.md "Capability 2").
    pub fn code(self) -> &'static str {
        match self {
            KeyProblem::NotFound => "KEY_NOT_FOUND",
            KeyProblem::Disabled => "KEY_DISABLED",
            KeyProblem::Expired => "KEY_EXPIRED",
        }
    }

    /// The message `verify` answers (Better Auth's).
    pub fn message(self) -> &'static str {
        match self {
            KeyProblem::NotFound => "API Key not found",
            KeyProblem::Disabled => "API Key is disabled",
            KeyProblem::Expired => "API Key has expired",
        }
    }

    /// Code and message of the 401 for such a key sent as a credential (`x-api-key`): Better Auth's
    /// api-key plugin answers an unknown or deleted key `INVALID_API_KEY`, the others as `verify` does.
    pub fn as_credential(self) -> (&'static str, &'static str) {
        match self {
            KeyProblem::NotFound => ("INVALID_API_KEY", "Invalid API key."),
            KeyProblem::Disabled | KeyProblem::Expired => (self.code(), self.message()),
        }
    }
}

/// What a caller of the key management endpoints can act on: Better Auth's api-key plugin codes
/// (`API_KEY_ERROR_CODES`) with the statuses it throws them with, Latchkey's where it has no such case.
/// Mapped to `ApiError` once, in `routes.rs`.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// 404 `KEY_NOT_FOUND`: unknown, deleted, or another user's key.
    #[error("key not found")]
    NotFound,
    /// 400 `EXPIRES_IN_IS_TOO_SMALL`: `expiresIn` under one second.
    #[error("expiresIn too small")]
    ExpiresInTooSmall,
    /// 400 `EXPIRES_IN_IS_TOO_LARGE`: `expiresIn` over ten years.
    #[error("expiresIn too large")]
    ExpiresInTooLarge,
    /// 400 `INVALID_PREFIX_LENGTH`: a prefix not 1–16 characters long.
    #[error("invalid prefix length")]
    InvalidPrefixLength,
    /// 400 `INVALID_PREFIX` (Latchkey's): characters outside `A-Z a-z 0-9 _ -`, or the service-client
    /// prefix `lkc_`.
    #[error("invalid prefix")]
    InvalidPrefix,
    /// 400 `INVALID_NAME_LENGTH`: a name over 256 characters.
    #[error("invalid name length")]
    InvalidNameLength,
    /// 400 `VALIDATION_ERROR`: permissions that are not `{resource: [actions]}` of short words.
    #[error("invalid permissions")]
    InvalidPermissions,
    /// 401 `UNAUTHORIZED_SESSION`: a user who is not an admin names another user (`userId`).
    #[error("not allowed to act for another user")]
    UnauthorizedSession,
    /// 404 `NOT_FOUND` (Latchkey's): an admin names a user who does not exist.
    #[error("no such user")]
    UserNotFound,
    /// 403 `USER_NOT_MEMBER_OF_ORGANIZATION`: the key's owner is not a member of its `organizationId`.
    #[error("not a member of the organization")]
    NotMemberOfOrganization,
    /// 500.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StorageError> for ApiKeyError {
    fn from(error: StorageError) -> Self {
        ApiKeyError::Internal(error.into())
    }
}

/// Longest `expiresIn`: ten years.
const MAX_EXPIRES_IN: i64 = 10 * 365 * 86_400;

/// `expiresIn` (seconds) as an expiry instant: 1 s to ten years.
pub(crate) fn check_expires_in(expires_in: Option<i64>, now: i64) -> Result<Option<i64>, ApiKeyError> {
    match expires_in {
        None => Ok(None),
        Some(seconds) if seconds < 1 => Err(ApiKeyError::ExpiresInTooSmall),
        Some(seconds) if seconds > MAX_EXPIRES_IN => Err(ApiKeyError::ExpiresInTooLarge),
        Some(seconds) => Ok(Some(now + seconds * 1000)),
    }
}

/// Permissions as stored: `{resource: [actions]}` of at most 64 short words each.
pub(crate) fn check_permissions(permissions: &Option<Permissions>) -> Result<Option<String>, ApiKeyError> {
    let Some(permissions) = permissions else { return Ok(None) };
    let word = |s: &str| !s.is_empty() && s.len() <= 64 && !s.chars().any(char::is_whitespace);
    if permissions.len() > 64
        || !permissions.iter().all(|(r, actions)| word(r) && actions.len() <= 64 && actions.iter().all(|a| word(a)))
    {
        return Err(ApiKeyError::InvalidPermissions);
    }
    serde_json::to_string(permissions).map(Some).map_err(|error| ApiKeyError::Internal(error.into()))
}

/// A name of at most 256 characters.
pub(crate) fn check_name(name: &Option<String>) -> Result<(), ApiKeyError> {
    match name {
        Some(name) if name.chars().count() > 256 => Err(ApiKeyError::InvalidNameLength),
        _ => Ok(()),
    }
}

/// A key to create. Who may create it for `owner_id` is the caller's check (a session of the owner or of
/// an admin; an operator's `latchkey admin`).
#[derive(Debug)]
pub struct NewKey {
    pub owner_id: String,
    pub name: Option<String>,
    pub prefix: String,
    /// The organization the key is scoped to; the owner must be a member of it.
    pub organization_id: Option<String>,
    /// What the key may do (none: its owner's rights).
    pub permissions: Option<Permissions>,
    /// Client metadata, as stored (JSON text).
    pub metadata: Option<String>,
    /// Lifetime in seconds (none: never expires).
    pub expires_in: Option<i64>,
}

/// Creates a key, for the endpoint and the CLI alike: checks the prefix, name, lifetime and permissions,
/// and that the owner belongs to the organization the key is scoped to (`owner_organizations`: the ids of
/// the owner's organizations); stores only the key's hash; records the audit event. Returns the key, to
/// show once, and its row.
pub async fn create_key(
    db: &Db,
    new: NewKey,
    owner_organizations: &[String],
    actor_id: &str,
    now: Millis,
) -> Result<(String, ApiKey), ApiKeyError> {
    check_prefix(&new.prefix)?;
    check_name(&new.name)?;
    let expires_at = check_expires_in(new.expires_in, now)?;
    let permissions = check_permissions(&new.permissions)?;
    if new.organization_id.as_ref().is_some_and(|org| !owner_organizations.contains(org)) {
        return Err(ApiKeyError::NotMemberOfOrganization);
    }
    let (secret, hash, start) = generate(&new.prefix);
    let key = ApiKey {
        id: crypto::new_id("key"),
        name: new.name,
        start,
        prefix: new.prefix,
        reference_id: new.owner_id,
        organization_id: new.organization_id,
        permissions,
        metadata: new.metadata,
        enabled: true,
        expires_at,
        last_request: None,
        request_count: 0,
        created_at: now,
        updated_at: now,
    };
    store::insert(db, &key, &hash).await?;
    audit::emit(AuditEvent::ApiKeyChanged { actor_id, key_id: &key.id, action: "created" });
    Ok((secret, key))
}

/// The JSON shape of a key (never the key itself, except `key` right after creation). It borrows from
/// the key: the verify endpoint renders one per request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView<'a> {
    /// `key_…`: the `id` that `get` takes and the `keyId` of `update` and `delete`.
    pub id: &'a str,
    /// Display name; null if none was given.
    pub name: Option<&'a str>,
    /// First characters, for display.
    pub start: &'a str,
    /// What the key begins with, as chosen at creation.
    pub prefix: &'a str,
    /// Owning user.
    pub reference_id: &'a str,
    /// Organization the key is scoped to: requests made with it act in that organization only. Null: in
    /// any of the owner's.
    pub organization_id: Option<&'a str>,
    /// False: the key is refused (`KEY_DISABLED`).
    pub enabled: bool,
    /// `{resource: [actions]}` or null.
    #[schema(value_type = Option<Object>)]
    pub permissions: Option<&'a Permissions>,
    /// Arbitrary JSON.
    #[schema(value_type = Option<serde_json::Value>)]
    pub metadata: Option<&'a serde_json::Value>,
    /// ISO 8601 or null.
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<&'a str>,
    /// ISO 8601 or null.
    pub last_request: Option<String>,
    /// Uses counted so far.
    pub request_count: i64,
    /// ISO 8601.
    #[schema(value_type = String)]
    pub created_at: &'a str,
    /// ISO 8601.
    #[schema(value_type = String)]
    pub updated_at: &'a str,
}

impl<'a> ApiKeyView<'a> {
    /// The view of `key` (its `fields` rendered), with this node's not yet flushed usage folded in.
    pub fn new(key: &'a ApiKey, fields: &'a KeyFields, usage: &UsageBatch) -> ApiKeyView<'a> {
        ApiKeyView::with_pending(key, fields, usage.pending(&key.id))
    }

    /// The view of `key` with this node's pending (last use, count), as [`UsageBatch::record`] returned it.
    pub fn with_pending(
        key: &'a ApiKey,
        fields: &'a KeyFields,
        (last, count): (Option<Millis>, i64),
    ) -> ApiKeyView<'a> {
        let last_request = match (key.last_request, last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        ApiKeyView {
            id: &key.id,
            name: key.name.as_deref(),
            start: &key.start,
            prefix: &key.prefix,
            reference_id: &key.reference_id,
            organization_id: key.organization_id.as_deref(),
            enabled: key.enabled,
            permissions: fields.permissions.as_ref(),
            metadata: fields.metadata.as_ref(),
            expires_at: fields.expires_at.as_deref(),
            last_request: last_request.map(iso8601),
            request_count: key.request_count + count,
            created_at: &fields.created_at,
            updated_at: &fields.updated_at,
        }
    }
}

/// Problems with the API-key settings: the default prefix must be one a key may carry.
pub fn validate_settings(settings: &crate::config::ApiKeySettings) -> Vec<String> {
    if valid_prefix(&settings.default_prefix) {
        Vec::new()
    } else {
        vec!["api_keys.default_prefix: 1-16 of A-Z a-z 0-9 _ -, not starting with lkc_".into()]
    }
}

/// True for an acceptable key prefix (see [`check_prefix`]).
pub fn valid_prefix(prefix: &str) -> bool {
    check_prefix(prefix).is_ok()
}

/// Checks a key prefix: 1–16 of `A-Z a-z 0-9 _ -`, and not the service-client prefix.
pub fn check_prefix(prefix: &str) -> Result<(), ApiKeyError> {
    if !(1..=16).contains(&prefix.len()) {
        return Err(ApiKeyError::InvalidPrefixLength);
    }
    if !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        || prefix.starts_with(CLIENT_KEY_PREFIX)
    {
        return Err(ApiKeyError::InvalidPrefix);
    }
    Ok(())
}

/// A new key with `prefix`: (the key, its SHA-256 hex, its display start).
pub fn generate(prefix: &str) -> (String, String, String) {
    let key = format!("{prefix}{}", crypto::random_alphanumeric(KEY_RANDOM_LEN));
    let hash = hash_key(&key);
    let start = key.chars().take(START_LEN).collect();
    (key, hash, start)
}

/// The stored hash of a key.
pub fn hash_key(key: &str) -> String {
    crypto::sha256_hex(key.as_bytes())
}

/// What the API-key capability keeps in memory.
#[derive(Debug)]
pub struct ApiKeyState {
    /// Verified keys by hash.
    pub cache: cache::KeyCache,
    /// Key uses not yet written.
    pub usage: UsageBatch,
}

impl ApiKeyState {
    /// Empty; cached keys live `cache_ttl` ms without an event.
    pub fn new(cache_ttl: Millis) -> ApiKeyState {
        ApiKeyState { cache: cache::KeyCache::new(cache_ttl), usage: UsageBatch::default() }
    }

    /// Applies an invalidation that concerns API keys.
    pub fn apply(&self, event: &notify::CacheEvent) {
        match event {
            notify::CacheEvent::ApiKeyChanged { key_id } => self.cache.evict_id(key_id),
            notify::CacheEvent::AllApiKeysChanged => self.cache.clear(),
            // The owner's keys are dropped too (as since issue 3): cheap, and a key re-read is built from
            // current rows. Tenant resolution itself reads `state.orgs.memberships`.
            notify::CacheEvent::MembershipsChanged { user_id } => self.cache.evict_owner(user_id),
            _ => {}
        }
    }
}

/// Key uses counted in memory since the last flush: id → (last use, count).
#[derive(Debug, Default)]
pub struct UsageBatch {
    pending: Mutex<HashMap<String, (Millis, i64)>>,
}

impl UsageBatch {
    /// Counts one use; returns the key's not yet flushed (last use, count), this one included.
    pub fn record(&self, id: &str, now: Millis) -> (Option<Millis>, i64) {
        let Ok(mut pending) = self.pending.lock() else { return (None, 0) };
        match pending.get_mut(id) {
            Some((last, count)) => {
                *last = (*last).max(now);
                *count += 1;
                (Some(*last), *count)
            }
            None => {
                pending.insert(id.to_owned(), (now, 1));
                (Some(now), 1)
            }
        }
    }

    /// Not yet flushed (last use, count) of a key.
    pub fn pending(&self, id: &str) -> (Option<Millis>, i64) {
        self.pending.lock().ok().and_then(|p| p.get(id).copied()).map_or((None, 0), |(last, count)| (Some(last), count))
    }

    /// Writes the pending uses (one UPDATE per used key, in one transaction) and forgets them.
    pub async fn flush(&self, db: &Db) -> Result<usize, StorageError> {
        let batch: Vec<(String, Millis, i64)> = match self.pending.lock() {
            Ok(mut pending) => pending.drain().map(|(id, (last, count))| (id, last, count)).collect(),
            Err(_) => return Ok(0),
        };
        if batch.is_empty() {
            return Ok(0);
        }
        if let Err(error) = store::record_usage(db, &batch).await {
            // Put them back so the next flush retries.
            if let Ok(mut pending) = self.pending.lock() {
                for (id, last, count) in batch {
                    let entry = pending.entry(id).or_insert((last, 0));
                    entry.0 = entry.0.max(last);
                    entry.1 += count;
                }
            }
            return Err(error);
        }
        Ok(batch.len())
    }
}

/// Deletes a key (false: there was none), evicts it everywhere and records who did it. The endpoint and
/// `latchkey admin revoke-api-key` both delete keys here.
pub async fn delete_key(
    db: &Db,
    cache: &cache::KeyCache,
    id: &str,
    actor_id: &str,
    now: Millis,
) -> Result<bool, StorageError> {
    if !store::delete(db, id).await? {
        return Ok(false);
    }
    key_changed(db, cache, id, now).await?;
    audit::emit(AuditEvent::ApiKeyChanged { actor_id, key_id: id, action: "deleted" });
    Ok(true)
}

/// Evicts a changed key here and on every other node.
pub async fn key_changed(db: &Db, cache: &cache::KeyCache, id: &str, now: Millis) -> Result<(), StorageError> {
    cache.evict_id(id);
    notify::publish_event(db, &notify::CacheEvent::ApiKeyChanged { key_id: id.to_string() }, now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(permissions: Option<&str>) -> ApiKey {
        ApiKey {
            id: "key_1".into(),
            name: None,
            start: "lk_abc".into(),
            prefix: "lk_".into(),
            reference_id: "usr_1".into(),
            organization_id: None,
            permissions: permissions.map(str::to_owned),
            metadata: None,
            enabled: true,
            expires_at: Some(1_000),
            last_request: None,
            request_count: 0,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn generated_keys_carry_the_prefix_and_are_stored_only_as_hashes() {
        let (key, hash, start) = generate("lk_");
        assert!(key.starts_with("lk_") && key.len() == 3 + KEY_RANDOM_LEN);
        assert_eq!(start, &key[..START_LEN]);
        assert_eq!(hash, hash_key(&key));
        assert!(!hash.contains(&key[3..]));
        assert_ne!(generate("lk_").0, key);
    }

    #[test]
    fn prefixes_are_short_words_and_never_the_client_prefix() {
        assert!(check_prefix("lk_").is_ok() && check_prefix("acme-prod_").is_ok());
        for (prefix, length) in [("", true), (&"a".repeat(17), true), ("lkc_x", false), ("a b", false)] {
            let error = check_prefix(prefix).unwrap_err();
            assert_eq!(matches!(error, ApiKeyError::InvalidPrefixLength), length, "{prefix:?}");
        }
    }

    #[test]
    fn permissions_narrow_and_null_means_the_owners_rights() {
        let scoped = KeyFields::of(&key(Some(r#"{"files":["read","write"],"extensions":["read"]}"#)));
        let unrestricted = KeyFields::of(&key(None));
        let want = |json: &str| serde_json::from_str::<Permissions>(json).unwrap();
        assert!(scoped.holds(&want(r#"{"files":["read"]}"#)));
        assert!(!scoped.holds(&want(r#"{"files":["delete"]}"#)));
        assert!(!scoped.holds(&want(r#"{"users":["read"]}"#)));
        assert!(!unrestricted.holds(&want(r#"{"files":["read"]}"#)), "verify with permissions needs listed ones");
        assert!(unrestricted.allows("member", "delete"));
        assert!(!scoped.allows("member", "delete") && scoped.allows("extensions", "read"));
        assert_eq!(scoped.scopes(), ["extensions:read", "files:read", "files:write"]);
    }

    #[test]
    fn disabled_and_expired_keys_are_unusable() {
        let mut k = key(None);
        assert_eq!(k.unusable(999), None);
        assert_eq!(k.unusable(1_000), Some(KeyProblem::Expired));
        k.enabled = false;
        assert_eq!(k.unusable(0), Some(KeyProblem::Disabled));
    }

    #[test]
    fn usage_accumulates_until_flushed() {
        let usage = UsageBatch::default();
        assert_eq!(usage.record("key_1", 10), (Some(10), 1));
        assert_eq!(usage.record("key_1", 30), (Some(30), 2));
        assert_eq!(usage.record("key_1", 20), (Some(30), 3));
        assert_eq!(usage.pending("key_1"), (Some(30), 3));
        assert_eq!(usage.pending("key_2"), (None, 0));
    }
}
