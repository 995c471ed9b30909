//! The verified-key cache: what the hot path reads instead of the database, with the fields already
//! parsed and rendered, and the verify endpoint's answer rendered once per key.

use std::sync::{Arc, OnceLock};

use super::{store, ApiKey, KeyFields};
use crate::{
    accounts::User,
    cache::TtlCache,
    clock::Millis,
    storage::{Db, StorageError},
};

/// A verified key and its owner, as cached. The entry is replaced, never edited, when the key changes
/// (events evict it), so what is rendered from its fields stays true.
#[derive(Debug)]
pub struct CachedKey {
    pub key: ApiKey,
    pub user: Arc<User>,
    /// The key's fields parsed and rendered (permission checks and views read these).
    pub fields: KeyFields,
    /// The `api-key/verify` success body around the two per-use fields (see `routes::verified_body`),
    /// rendered on first use.
    pub verified_body: OnceLock<Option<(String, String)>>,
}

impl CachedKey {
    /// An entry for `key`, its fields rendered now.
    pub fn new(key: ApiKey, user: Arc<User>) -> CachedKey {
        CachedKey { fields: KeyFields::of(&key), key, user, verified_body: OnceLock::new() }
    }

    /// See [`KeyFields::allows`].
    pub fn allows(&self, resource: &str, action: &str) -> bool {
        self.fields.allows(resource, action)
    }
}

/// Verified keys by hash, and recently unknown hashes.
#[derive(Debug)]
pub struct KeyCache {
    entries: TtlCache<CachedKey>,
    /// Hashes the DB did not know: a client retrying a deleted or mistyped key costs no DB read per
    /// request. Needs no invalidation — a new key is random, so its hash cannot be in here.
    unknown: TtlCache<()>,
    ttl: Millis,
}

/// How long an unknown hash is remembered.
const UNKNOWN_TTL: Millis = 10_000;

impl KeyCache {
    /// An empty cache whose entries live `ttl` ms.
    pub fn new(ttl: Millis) -> KeyCache {
        KeyCache { entries: TtlCache::default(), unknown: TtlCache::default(), ttl }
    }

    /// The key with this hash: from the cache while fresh, else from the DB. A blocked owner's key is
    /// cached too (so refusing it costs no DB read) and answered as unknown; unblocking evicts it.
    pub async fn lookup(&self, db: &Db, hash: &str, now: Millis) -> Result<Option<Arc<CachedKey>>, StorageError> {
        if let Some(cached) = self.entries.get(hash, now) {
            return Ok(Some(cached).filter(|cached| !cached.user.blocked));
        }
        if self.unknown.get(hash, now).is_some() {
            return Ok(None);
        }
        let Some((key, user)) = store::find_by_hash(db, hash).await? else {
            self.unknown.insert(hash, Arc::new(()), now.saturating_add(UNKNOWN_TTL), now);
            return Ok(None);
        };
        let cached = Arc::new(CachedKey::new(key, Arc::new(user)));
        self.entries.insert(hash, Arc::clone(&cached), now.saturating_add(self.ttl), now);
        Ok(Some(cached).filter(|cached| !cached.user.blocked))
    }

    /// Forgets the key with this id.
    pub fn evict_id(&self, id: &str) {
        self.entries.retain(|cached| cached.key.id != id);
    }

    /// Forgets every key of this owner (on a change to their memberships).
    pub fn evict_owner(&self, user_id: &str) {
        self.entries.retain(|cached| cached.key.reference_id != user_id);
    }

    /// Forgets every cached key (remembered unknown hashes stay: they need no invalidation).
    pub fn clear(&self) {
        self.entries.clear();
    }

    /// Number of cached keys and of remembered unknown hashes (metrics).
    pub fn lens(&self) -> (usize, usize) {
        (self.entries.len(), self.unknown.len())
    }

    /// Drops expired entries (maintenance).
    pub fn prune(&self, now: Millis) {
        self.entries.prune(now);
        self.unknown.prune(now);
    }
}
