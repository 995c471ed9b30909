//! Batched deletes for the periodic maintenance: expired rows go a bounded batch at a time, each batch a
//! statement (and so a transaction) of its own. A backlog of millions of expired sessions then never holds
//! row locks, or an old snapshot, for more than a batch, and requests' own writes interleave between
//! batches (on SQLite, whose one writer a long DELETE would stop, this matters even more).
//! `bench/scale.sh` measures the longest batch with 10 million sessions.

use std::time::Instant;

use super::{Db, StorageError};

/// Rows one maintenance statement deletes at most (~5 ms on PostgreSQL at 10 M sessions).
pub const BATCH: i64 = 1_000;

/// What a batched delete did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Rows deleted in all.
    pub rows: u64,
    /// Statements run (the last one deleted fewer than [`BATCH`] rows).
    pub batches: u64,
    /// The slowest statement, in milliseconds: the longest any batch held its locks.
    pub longest_batch_ms: u64,
}

/// Runs `sql` until a run deletes fewer than [`BATCH`] rows. `sql` deletes at most `$2` rows matching
/// `$1`, by key through the index of the condition, oldest first:
/// `DELETE FROM t WHERE id IN (SELECT id FROM t WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)`
/// (the ORDER BY keeps the plan on the index even when the planner's generic plan would rather scan).
/// Each batch is logged at debug level, and a delete of more than one batch at info level, with the
/// longest batch.
pub async fn delete_in_batches(db: &Db, table: &'static str, sql: &str, bound: i64) -> Result<Deleted, StorageError> {
    let full = u64::try_from(BATCH).unwrap_or(u64::MAX);
    let mut done = Deleted::default();
    loop {
        let started = Instant::now();
        let rows = crate::db_run!(db, |pool| sqlx::query(sql)
            .bind(bound)
            .bind(BATCH)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        done.rows += rows;
        done.batches += 1;
        done.longest_batch_ms = done.longest_batch_ms.max(ms);
        tracing::debug!(table, rows, ms, "cleanup batch");
        if rows < full {
            break;
        }
        // Let the requests waiting on this worker run between batches.
        tokio::task::yield_now().await;
    }
    if done.batches > 1 {
        tracing::info!(
            table,
            rows = done.rows,
            batches = done.batches,
            longest_batch_ms = done.longest_batch_ms,
            "cleanup deleted in batches"
        );
    }
    Ok(done)
}
