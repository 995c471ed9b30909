//! A bounded in-process map whose entries carry their own expiry: the shape of every hot-path cache that
//! is invalidated by events (API keys by hash, memberships by user, service clients and users by id or
//! key hash, verified tokens by token).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use crate::clock::Millis;

/// Beyond this many entries a cache drops what expired, and starts over if that is not enough.
const DEFAULT_CAPACITY: usize = 100_000;

/// `key → (inserted at, until, value)`. An entry is valid from its insertion until `until`: a clock that
/// steps back before the insertion also invalidates it (the entry may be older than it looks).
#[derive(Debug)]
pub struct TtlCache<V> {
    entries: RwLock<HashMap<String, Entry<V>>>,
    capacity: usize,
}

/// (inserted at, until, value).
type Entry<V> = (Millis, Millis, Arc<V>);

impl<V> Default for TtlCache<V> {
    fn default() -> Self {
        TtlCache { entries: RwLock::new(HashMap::new()), capacity: DEFAULT_CAPACITY }
    }
}

impl<V> TtlCache<V> {
    /// The value under `key` if it is still valid at `now`.
    pub fn get(&self, key: &str, now: Millis) -> Option<Arc<V>> {
        let entries = self.entries.read().ok()?;
        let (inserted, until, value) = entries.get(key)?;
        (*inserted <= now && now < *until).then(|| Arc::clone(value))
    }

    /// Keeps `value` under `key` from `now` until `until`. A full cache first drops what expired, then
    /// everything if that is not enough.
    pub fn insert(&self, key: &str, value: Arc<V>, until: Millis, now: Millis) {
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= self.capacity {
                entries.retain(|_, (_, until, _)| *until > now);
                if entries.len() >= self.capacity {
                    entries.clear();
                }
            }
            entries.insert(key.to_owned(), (now, until, value));
        }
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&self, mut keep: impl FnMut(&V) -> bool) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, (_, _, value)| keep(value));
        }
    }

    /// Drops the entry under `key`.
    pub fn remove(&self, key: &str) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(key);
        }
    }

    /// Drops everything.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }

    /// Drops expired entries.
    pub fn prune(&self, now: Millis) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, (_, until, _)| *until > now);
        }
    }

    /// Number of entries, expired ones included until they are pruned.
    pub fn len(&self) -> usize {
        self.entries.read().map_or(0, |entries| entries.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_are_evicted_and_stay_bounded() {
        let cache = TtlCache { capacity: 2, ..TtlCache::default() };
        cache.insert("a", Arc::new(1), 100, 0);
        assert_eq!(cache.get("a", 99).as_deref(), Some(&1));
        assert_eq!(cache.get("a", 100), None);
        cache.insert("b", Arc::new(2), 50, 0);
        cache.insert("c", Arc::new(3), 200, 60);
        assert_eq!(cache.get("b", 10), None, "expired b was dropped to make room");
        assert_eq!(cache.get("c", 60).as_deref(), Some(&3));
        cache.retain(|v| *v != 3);
        assert_eq!(cache.get("c", 60), None);
    }

    #[test]
    fn a_clock_stepping_back_before_an_insertion_invalidates_it() {
        let cache = TtlCache::default();
        cache.insert("a", Arc::new(1), 1_100, 1_000);
        assert_eq!(cache.get("a", 1_000).as_deref(), Some(&1));
        assert_eq!(cache.get("a", 999), None);
    }
}
