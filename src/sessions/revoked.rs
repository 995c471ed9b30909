//! Ids of sessions revoked within the last cookie-cache window (DESIGN.md "Capability 1").
//!
//! A `session_data` cookie cannot be recalled from the browser, so a revoked session could otherwise
//! live on for up to the cache's max-age. Every node keeps this set, fills it directly on its own
//! revocations, from NOTIFY for other nodes', and from the `session_revocations` table at start-up, on
//! listener reconnect and on a periodic poll; a cached cookie whose session is in it is refused.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, Ordering},
        RwLock,
    },
};

use crate::{
    clock::Millis,
    storage::{Db, StorageError},
};

/// The in-memory set of recently revoked session ids.
#[derive(Debug)]
pub struct RevokedSessions {
    ids: RwLock<HashMap<String, Millis>>,
    /// How long an entry matters: the cookie cache's max-age.
    window: Millis,
    /// The newest revocation time read from the table, to resync from.
    synced_until: AtomicI64,
}

impl RevokedSessions {
    /// An empty set whose entries matter for `window` ms.
    pub fn new(window: Millis) -> RevokedSessions {
        RevokedSessions { ids: RwLock::new(HashMap::new()), window, synced_until: AtomicI64::new(0) }
    }

    /// Records a revocation.
    pub fn insert(&self, id: &str, at: Millis) {
        if let Ok(mut ids) = self.ids.write() {
            ids.insert(id.to_owned(), at);
        }
    }

    /// True if the session was revoked recently. The hot path: one read lock, one hash lookup.
    pub fn contains(&self, id: &str) -> bool {
        // A poisoned lock means a writer panicked mid-update: fail closed.
        self.ids.read().map_or(true, |ids| ids.contains_key(id))
    }

    /// Drops entries older than the window.
    pub fn prune(&self, now: Millis) {
        let horizon = now - self.window;
        if let Ok(mut ids) = self.ids.write() {
            ids.retain(|_, at| *at >= horizon);
        }
    }

    /// Re-reads revocations from the table (start-up, reconnect, poll). Reads a little before the last
    /// sync point to cover clock skew between nodes.
    pub async fn resync(&self, db: &Db, now: Millis) -> Result<(), StorageError> {
        const SKEW: Millis = 5_000;
        let since = self.synced_until.load(Ordering::SeqCst).max(now - self.window) - SKEW;
        let rows = super::store::revocations_since(db, since).await?;
        let newest = rows.iter().map(|(_, at)| *at).max().unwrap_or(since + SKEW);
        for (id, at) in rows {
            self.insert(&id, at);
        }
        self.synced_until.fetch_max(newest, Ordering::SeqCst);
        Ok(())
    }

    /// Number of ids held (metrics, tests).
    pub fn len(&self) -> usize {
        self.ids.read().map_or(0, |ids| ids.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_window() {
        let revoked = RevokedSessions::new(1_000);
        revoked.insert("ses_a", 10_000);
        assert!(revoked.contains("ses_a"));
        revoked.prune(10_500);
        assert!(revoked.contains("ses_a"));
        revoked.prune(11_001);
        assert!(!revoked.contains("ses_a"));
    }
}
