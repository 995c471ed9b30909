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

/// Records a cache invalidation (`kind:id`) in `cache_events` and publishes it: NOTIFY reaches the other
/// nodes at once, the row lets a reconnecting listener and the periodic poll (and, on SQLite, a running
/// server after a `latchkey admin` change) catch up. Call after the change is committed.
pub async fn publish_event(db: &Db, payload: &str, now: i64) -> Result<(), StorageError> {
    let id = crate::crypto::new_id("evt");
    crate::db_run!(db, |pool| {
        sqlx::query("INSERT INTO cache_events (id, payload, at) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(payload)
            .bind(now)
            .execute(pool)
            .await?;
    });
    publish(db, payload).await
}

/// Invalidations recorded at or after `since`, oldest first.
pub async fn events_since(db: &Db, since: i64) -> Result<Vec<(String, i64)>, StorageError> {
    const SQL: &str = "SELECT payload, at FROM cache_events WHERE at >= $1 ORDER BY at";
    Ok(crate::db_run!(db, |pool| sqlx::query_as::<_, (String, i64)>(SQL).bind(since).fetch_all(pool).await)?)
}

/// Deletes invalidation records older than `before`.
pub async fn cleanup_events(db: &Db, before: i64) -> Result<u64, StorageError> {
    const SQL: &str = "DELETE FROM cache_events WHERE at < $1";
    Ok(crate::db_run!(db, |pool| sqlx::query(SQL).bind(before).execute(pool).await.map(|r| r.rows_affected()))?)
}

/// Starts the listener task on PostgreSQL; returns `None` on SQLite, where there is nothing to hear.
pub fn spawn_listener(db: &Db) -> Option<mpsc::UnboundedReceiver<BusMessage>> {
    let Db::Postgres(pool) = db else { return None };
    let pool = pool.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match PgListener::connect_with(&pool).await {
                Err(_) if pool.is_closed() => return,
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
                                Ok(None) if pool.is_closed() => return,
                                Ok(None) => {
                                    tracing::warn!("notification listener lost its connection; resyncing");
                                    if tx.send(BusMessage::Reconnected).is_err() {
                                        return;
                                    }
                                }
                                // Shutting down: the pool was closed under the listener; nothing to report.
                                Err(_) if pool.is_closed() => return,
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
            if tx.is_closed() || pool.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Some(rx)
}
