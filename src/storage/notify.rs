//! Cross-node invalidation over PostgreSQL `LISTEN/NOTIFY` (DESIGN.md "Architecture").
//!
//! A node that revokes something publishes a short event; every node's listener forwards it to the
//! in-memory caches. NOTIFY is lost while a listener is disconnected, so a reconnect is reported as
//! [`BusMessage::Reconnected`] and the consumer re-reads what changed; a periodic poll (elsewhere)
//! bounds staleness even if notifications stop. On SQLite (one node) publishing is a no-op.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::{Db, StorageError};

/// The one channel Latchkey listens on; payloads are `kind:id`.
pub const CHANNEL: &str = "latchkey_events";

/// What the listener hands to the consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusMessage {
    /// A payload published by some node (possibly this one).
    Event(String),
    /// The listener (re)connected: notifications may have been missed, re-read state.
    Reconnected,
}

/// Publishes `payload` to every node. Call after the change is committed.
pub async fn publish(db: &Db, payload: &str) -> Result<(), StorageError> {
    match db {
        Db::Sqlite(_) => Ok(()),
        Db::Postgres(pool) => {
            sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(pool).await?;
            Ok(())
        }
    }
}

/// Starts the listener task on PostgreSQL; returns `None` on SQLite, where there is nothing to hear.
pub fn spawn_listener(db: &Db) -> Option<mpsc::UnboundedReceiver<BusMessage>> {
    let Db::Postgres(pool) = db else { return None };
    let pool = pool.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match PgListener::connect_with(&pool).await {
                Ok(mut listener) => {
                    if let Err(error) = listener.listen(CHANNEL).await {
                        tracing::warn!(error = %error, "LISTEN failed; retrying");
                    } else {
                        if tx.send(BusMessage::Reconnected).is_err() {
                            return;
                        }
                        // `try_recv` answers Ok(None) when the connection dropped (and will reconnect
                        // on the next call): that is exactly when notifications may have been lost.
                        loop {
                            match listener.try_recv().await {
                                Ok(Some(notification)) => {
                                    if tx.send(BusMessage::Event(notification.payload().to_owned())).is_err() {
                                        return;
                                    }
                                }
                                Ok(None) => {
                                    tracing::warn!("notification listener lost its connection; resyncing");
                                    if tx.send(BusMessage::Reconnected).is_err() {
                                        return;
                                    }
                                }
                                Err(error) => {
                                    tracing::warn!(error = %error, "notification listener failed; reconnecting");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(error = %error, "cannot connect notification listener; retrying"),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Some(rx)
}
