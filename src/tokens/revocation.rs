//! Issued-token records and revocation (DESIGN.md "Capability 4").
//!
//! Every JWT the core issues is recorded by `jti` before it is handed out. Writes go through a
//! [`Recorder`], which commits concurrent issuances together (one multi-row INSERT, one commit — one fsync
//! on SQLite) and answers each caller only once its row is durable. Checking a token reads no database:
//! [`Revocations`] holds, in memory, the revoked `jti`s that have not expired and the subjects and clients
//! whose every token was revoked (a deleted user or client). It is loaded at start, updated directly by
//! this node, and by the `cache_events` bus (NOTIFY on PostgreSQL, the periodic poll everywhere) for
//! revocations made by other nodes.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::store::{self, IssuedToken};
use crate::{
    clock::Millis,
    storage::{notify, Backend, Db, StorageError},
};

#[derive(Debug, Default)]
struct Revoked {
    /// `jti` → its `exp` (unix ms), after which it need not be remembered.
    jtis: HashMap<String, Millis>,
    /// Subject or client id → until when to remember it (the longest token lifetime from revocation).
    owners: HashMap<String, Millis>,
    /// A user's id → (tokens issued at or before this unix ms are refused, until when to remember it): a
    /// blocked or deleted user, whose later tokens (after an unblock) are good again.
    cutoffs: HashMap<String, (Millis, Millis)>,
}

/// What is revoked, in memory.
#[derive(Debug, Default)]
pub struct Revocations {
    revoked: RwLock<Revoked>,
}

impl Revocations {
    /// True if the token, its subject or its client was revoked, or — for a `jti` of the form
    /// `{family}.{random}` (OAuth tokens issued from a grant) — its family, or its subject was cut off
    /// after `issued_at` (the token's `iat`, unix seconds).
    pub fn is_revoked(&self, jti: &str, subject: &str, client_id: &str, issued_at: i64) -> bool {
        self.revoked.read().map_or(true, |revoked| {
            revoked.jtis.contains_key(jti)
                || revoked.owners.contains_key(subject)
                || revoked.owners.contains_key(client_id)
                || jti.split_once('.').is_some_and(|(family, _)| revoked.owners.contains_key(family))
                // `iat` has second precision: a token of the cut's own second is refused too.
                || revoked.cutoffs.get(subject).is_some_and(|(before, _)| issued_at.saturating_mul(1000) <= *before)
        })
    }

    /// Refuses every token of `subject` issued at or before `issued_before` (unix ms), until `until`.
    pub fn cut_off(&self, subject: &str, issued_before: Millis, until: Millis) {
        if let Ok(mut revoked) = self.revoked.write() {
            let entry = revoked.cutoffs.entry(subject.to_owned()).or_insert((issued_before, until));
            *entry = (entry.0.max(issued_before), entry.1.max(until));
        }
    }

    /// Remembers one revoked token until its expiry.
    pub fn insert_jti(&self, jti: &str, expires_at: Millis) {
        if let Ok(mut revoked) = self.revoked.write() {
            revoked.jtis.insert(jti.to_owned(), expires_at);
        }
    }

    /// Remembers that every token of `owner` (a subject or client id) is revoked, until `until`.
    pub fn insert_owner(&self, owner: &str, until: Millis) {
        if let Ok(mut revoked) = self.revoked.write() {
            let entry = revoked.owners.entry(owner.to_owned()).or_insert(until);
            *entry = (*entry).max(until);
        }
    }

    /// Loads the revoked tokens that have not expired (start-up).
    pub async fn load(&self, db: &Db, now: Millis) -> Result<usize, StorageError> {
        let rows = store::revoked_unexpired(db, now).await?;
        let count = rows.len();
        if let Ok(mut revoked) = self.revoked.write() {
            revoked.jtis.extend(rows);
        }
        Ok(count)
    }

    /// Forgets revocations of tokens that have expired anyway.
    pub fn prune(&self, now: Millis) {
        if let Ok(mut revoked) = self.revoked.write() {
            revoked.jtis.retain(|_, expires_at| *expires_at > now);
            revoked.owners.retain(|_, until| *until > now);
            revoked.cutoffs.retain(|_, (_, until)| *until > now);
        }
    }

    /// Number of remembered revocations (for `/metrics`).
    pub fn len(&self) -> usize {
        self.revoked.read().map_or(0, |revoked| revoked.jtis.len() + revoked.owners.len() + revoked.cutoffs.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Revokes one token: its record, this node's set, and every other node's through the bus. `false` if no
/// such token was recorded (unknown, or expired and cleaned up).
pub async fn revoke_token(db: &Db, revocations: &Revocations, jti: &str, now: Millis) -> Result<bool, StorageError> {
    let Some(expires_at) = store::revoke_jti(db, jti).await? else { return Ok(false) };
    revocations.insert_jti(jti, expires_at);
    notify::publish_event(db, &notify::CacheEvent::TokenRevoked { jti: jti.to_owned(), expires_at }, now).await?;
    Ok(true)
}

/// Whose tokens to revoke all at once.
#[derive(Clone, Copy, Debug)]
pub enum Owner<'a> {
    /// A subject (`sub`), e.g. a deleted service user.
    Subject(&'a str),
    /// A client (`client_id`), e.g. a deleted service client.
    Client(&'a str),
}

/// Revokes every token of a subject or client: records, this node's set, every other node's. `until` is
/// how long to remember it in memory (the longest lifetime of a token issued before now).
pub async fn revoke_owner(
    db: &Db,
    revocations: &Revocations,
    owner: Owner<'_>,
    until: Millis,
    now: Millis,
) -> Result<u64, StorageError> {
    let (id, count) = match owner {
        Owner::Subject(id) => (id, store::revoke_subject(db, id).await?),
        Owner::Client(id) => (id, store::revoke_client(db, id).await?),
    };
    revocations.insert_owner(id, until);
    notify::publish_event(db, &notify::CacheEvent::OwnerTokensRevoked { owner: id.to_owned(), until }, now).await?;
    Ok(count)
}

/// The record of a token could not be written: the token must not be handed out.
#[derive(Debug, thiserror::Error)]
#[error("the issued-token record could not be stored")]
pub struct RecordError;

struct Pending {
    token: IssuedToken,
    done: oneshot::Sender<bool>,
}

/// Group commit of issued-token records: concurrent issuances share one INSERT and one commit.
#[derive(Clone, Debug)]
pub struct Recorder {
    sender: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

impl Recorder {
    /// Starts the writer task (on the current runtime). Batches are written one at a time on SQLite (one
    /// writer anyway) and up to four at a time on PostgreSQL.
    pub fn start(db: Db) -> Recorder {
        let (sender, receiver) = mpsc::channel(4 * store::MAX_BATCH);
        let concurrency = match db.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        tokio::spawn(write_batches(db, receiver, concurrency));
        Recorder { sender }
    }

    /// Records a token; returns once its row is committed.
    pub async fn record(&self, token: IssuedToken) -> Result<(), RecordError> {
        let (done, written) = oneshot::channel();
        self.sender.send(Pending { token, done }).await.map_err(|_| RecordError)?;
        match written.await {
            Ok(true) => Ok(()),
            _ => Err(RecordError),
        }
    }
}

async fn write_batches(db: Db, mut receiver: mpsc::Receiver<Pending>, concurrency: usize) {
    let permits = Arc::new(Semaphore::new(concurrency));
    while let Some(first) = receiver.recv().await {
        // While every writer is busy, issuances queue up here and go out together in the next batch.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < store::MAX_BATCH {
            match receiver.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        let db = db.clone();
        tokio::spawn(async move {
            let records: Vec<IssuedToken> = batch.iter().map(|pending| pending.token.clone()).collect();
            let written = match store::insert_issued(&db, &records).await {
                Ok(()) => true,
                Err(error) => {
                    tracing::error!(error = %error, tokens = records.len(), "storing issued-token records failed");
                    false
                }
            };
            for pending in batch {
                let _ = pending.done.send(written);
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_tokens_and_owners() {
        let revocations = Revocations::default();
        assert!(!revocations.is_revoked("jti_1", "svu_1", "cli_1", 0));
        revocations.insert_jti("jti_1", 5_000);
        assert!(revocations.is_revoked("jti_1", "svu_1", "cli_1", 0));
        assert!(!revocations.is_revoked("jti_2", "svu_1", "cli_1", 0));
        // (What the bus carries for these, and what it refuses, is `storage::notify::CacheEvent`'s test.)
        revocations.insert_owner("svu_2", 9_000);
        assert!(revocations.is_revoked("jti_3", "svu_2", "cli_1", 0));
        revocations.insert_owner("fam1", 9_000);
        assert!(revocations.is_revoked("fam1.abc", "usr_1", "cli_1", 0), "a family's tokens");
        assert!(!revocations.is_revoked("fam2.abc", "usr_1", "cli_1", 0));
        revocations.insert_jti("jti_4", 7_000);
        assert!(revocations.is_revoked("jti_4", "svu_9", "cli_9", 0));
        revocations.prune(6_000);
        assert!(!revocations.is_revoked("jti_1", "svu_1", "cli_1", 0), "expired anyway: forgotten");
        assert!(revocations.is_revoked("jti_4", "svu_9", "cli_9", 0));
        assert!(revocations.is_revoked("jti_3", "svu_2", "cli_1", 0));
    }

    #[test]
    fn a_cut_off_subject_refuses_older_tokens_only() {
        let revocations = Revocations::default();
        revocations.cut_off("usr_1", 10_500, 90_000);
        assert!(revocations.is_revoked("a", "usr_1", "cli_1", 9), "issued before the cut");
        assert!(revocations.is_revoked("b", "usr_1", "cli_1", 10), "the cut's own second");
        assert!(!revocations.is_revoked("c", "usr_1", "cli_1", 11), "issued after it: an unblocked user's");
        assert!(!revocations.is_revoked("d", "usr_2", "cli_1", 9), "another user");
        revocations.cut_off("usr_1", 5_000, 95_000);
        assert!(revocations.is_revoked("e", "usr_1", "cli_1", 10), "a later cut never moves it back");
        revocations.prune(95_000);
        assert!(!revocations.is_revoked("f", "usr_1", "cli_1", 9), "forgotten once every token cut has expired");
    }
}
