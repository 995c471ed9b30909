//! The OAuth configuration in memory: clients (with their secret hashes), APIs by identifier and client
//! grants, read by the token endpoint on every request and changed rarely. Entries live for the key-cache
//! TTL and are all dropped on `CacheEvent::OAuthConfigChanged`, which every update, secret rotation and
//! deletion publishes (the management API applies it on its own node at once, before answering; other
//! nodes get it through NOTIFY on PostgreSQL, within a second). Nothing unknown is cached — a stranger's
//! made-up ids cannot fill it, and a creation (the CLI's included) needs no invalidation.

use std::sync::Arc;

use super::{
    apis::{self, ClientGrant, ResourceServer},
    clients::OAuthClient,
    store,
};
use crate::{
    cache::TtlCache,
    clock::Millis,
    storage::{Db, StorageError},
};

/// A client and the SHA-256 of its secret (`None` for a public client).
pub type ClientEntry = (OAuthClient, Option<String>);

/// See the module comment.
#[derive(Debug)]
pub struct ConfigCache {
    clients: TtlCache<ClientEntry>,
    apis: TtlCache<ResourceServer>,
    grants: TtlCache<ClientGrant>,
    ttl: Millis,
}

impl ConfigCache {
    pub fn new(ttl: Millis) -> ConfigCache {
        ConfigCache { clients: TtlCache::default(), apis: TtlCache::default(), grants: TtlCache::default(), ttl }
    }

    /// A client and its secret hash.
    pub async fn client(
        &self,
        db: &Db,
        client_id: &str,
        now: Millis,
    ) -> Result<Option<Arc<ClientEntry>>, StorageError> {
        if let Some(entry) = self.clients.get(client_id, now) {
            return Ok(Some(entry));
        }
        let Some(entry) = store::client_with_secret_hash(db, client_id).await? else { return Ok(None) };
        let entry = Arc::new(entry);
        self.clients.insert(client_id, Arc::clone(&entry), now + self.ttl, now);
        Ok(Some(entry))
    }

    /// An API by its identifier (the management API included).
    pub async fn api(
        &self,
        db: &Db,
        base_url: &str,
        identifier: &str,
        now: Millis,
    ) -> Result<Option<Arc<ResourceServer>>, StorageError> {
        if let Some(api) = self.apis.get(identifier, now) {
            return Ok(Some(api));
        }
        let Some(api) = apis::by_identifier(db, base_url, identifier).await? else { return Ok(None) };
        let api = Arc::new(api);
        self.apis.insert(identifier, Arc::clone(&api), now + self.ttl, now);
        Ok(Some(api))
    }

    /// The client grant of a client for an audience.
    pub async fn grant(
        &self,
        db: &Db,
        client_id: &str,
        audience: &str,
        now: Millis,
    ) -> Result<Option<Arc<ClientGrant>>, StorageError> {
        // Client ids hold no newline (they are generated), so the key is unambiguous.
        let key = format!("{client_id}\n{audience}");
        if let Some(grant) = self.grants.get(&key, now) {
            return Ok(Some(grant));
        }
        let Some(grant) = store::client_grant_for(db, client_id, audience).await? else { return Ok(None) };
        let grant = Arc::new(grant);
        self.grants.insert(&key, Arc::clone(&grant), now + self.ttl, now);
        Ok(Some(grant))
    }

    /// Drops everything (a change anywhere).
    pub fn clear(&self) {
        self.clients.clear();
        self.apis.clear();
        self.grants.clear();
    }

    /// Drops expired entries.
    pub fn prune(&self, now: Millis) {
        self.clients.prune(now);
        self.apis.prune(now);
        self.grants.prune(now);
    }
}
