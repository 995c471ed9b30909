//! Group commit of refresh-token rotations: concurrent refreshes share one statement and one commit (on
//! SQLite, one fsync), as issued-token records do (`tokens::revocation::Recorder`). Each caller gets
//! its own answer — whether its conditional rotation won — once the batch is durable.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::{
    oauth::flow_store::{self, Rotated, Rotation},
    storage::Db,
};

/// Most rotations in one transaction.
const MAX_BATCH: usize = 128;

struct Pending {
    rotation: Rotation,
    done: oneshot::Sender<Option<Option<Rotated>>>,
}

/// The rotation could not be stored.
#[derive(Debug, thiserror::Error)]
#[error("the refresh-token rotation could not be stored")]
pub struct RotateError;

/// The writer of rotations.
#[derive(Clone, Debug)]
pub struct Rotator {
    sender: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

impl Rotator {
    /// Starts the writer task (on the current runtime): one batch at a time (on SQLite there is one writer
    /// anyway; on PostgreSQL, batches taking row locks in whatever order a join gives could deadlock one
    /// another, and a batch is one round trip).
    pub fn start(db: Db) -> Rotator {
        let (sender, receiver) = mpsc::channel(4 * MAX_BATCH);
        let concurrency = 1;
        tokio::spawn(write_batches(db, receiver, concurrency));
        Rotator { sender }
    }

    /// Rotates one family: what it holds if the presented token was still its current one (and now is
    /// not), `None` if another rotation won or the family is not this client's or not live.
    pub async fn rotate(&self, rotation: Rotation) -> Result<Option<Rotated>, RotateError> {
        let (done, written) = oneshot::channel();
        self.sender.send(Pending { rotation, done }).await.map_err(|_| RotateError)?;
        written.await.ok().flatten().ok_or(RotateError)
    }
}

async fn write_batches(db: Db, mut receiver: mpsc::Receiver<Pending>, concurrency: usize) {
    let permits = Arc::new(Semaphore::new(concurrency));
    while let Some(first) = receiver.recv().await {
        // While every writer is busy, rotations queue up here and go out together in the next batch.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        let db = db.clone();
        tokio::spawn(async move {
            let rotations: Vec<Rotation> = batch.iter().map(|pending| pending.rotation.clone()).collect();
            let results = match flow_store::rotate_grants(&db, &rotations).await {
                Ok(results) => results.into_iter().map(Some).collect(),
                Err(error) => {
                    tracing::error!(error = %error, rotations = rotations.len(), "storing refresh-token rotations failed");
                    vec![None; rotations.len()]
                }
            };
            for (pending, result) in batch.into_iter().zip(results) {
                let _ = pending.done.send(result);
            }
            drop(permit);
        });
    }
}
