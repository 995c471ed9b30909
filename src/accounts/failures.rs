//! The per-email sign-in failure limit, shared by every node through the database (issue 15): failures
//! are rare, so counting them there is cheap, and successes write nothing. Each node's in-memory
//! [`Limiter`] answers first (a refused email costs no read); otherwise one primary-key read tells whether
//! other nodes' failures already reached the limit in the current window.

use crate::{
    clock::Millis,
    crypto, db_run,
    rate_limit::Limiter,
    storage::{Db, StorageError},
};

use super::email::Email;

/// The failures table's key for an email: never the email itself.
fn key(email: &Email) -> String {
    crypto::sha256_hex(email.as_str().as_bytes())
}

/// `Err(retry_after_secs)` when `email` reached the failure limit in its window, on this node or any.
pub async fn check(db: &Db, limiter: &Limiter, email: &Email, now: Millis) -> Result<Result<(), u64>, StorageError> {
    if let Err(retry) = limiter.check(email.as_str(), now) {
        return Ok(Err(retry));
    }
    const SQL: &str = "SELECT window_start, failures FROM sign_in_failures WHERE email_key = $1";
    let row: Option<(i64, i64)> = db_run!(db, |pool| sqlx::query_as(SQL).bind(key(email)).fetch_optional(pool).await)?;
    Ok(match row {
        Some((start, failures)) => limiter.refuse_shared(start, failures, now),
        None => Ok(()),
    })
}

/// Counts one failure for `email` here and in the database (a window that ended starts again).
pub async fn record(db: &Db, limiter: &Limiter, email: &Email, now: Millis) -> Result<(), StorageError> {
    limiter.record(email.as_str(), now);
    const SQL: &str = "INSERT INTO sign_in_failures (email_key, window_start, failures) VALUES ($1, $2, 1) \
        ON CONFLICT (email_key) DO UPDATE SET \
        window_start = CASE WHEN sign_in_failures.window_start <= $3 THEN $2 ELSE sign_in_failures.window_start END, \
        failures = CASE WHEN sign_in_failures.window_start <= $3 THEN 1 ELSE sign_in_failures.failures + 1 END";
    db_run!(db, |pool| {
        sqlx::query(SQL).bind(key(email)).bind(now).bind(now - limiter.window()).execute(pool).await?;
        Ok(())
    })
}

/// Deletes the rows of windows that have ended (maintenance).
pub async fn cleanup(db: &Db, limiter: &Limiter, now: Millis) -> Result<u64, StorageError> {
    const SQL: &str = "DELETE FROM sign_in_failures WHERE window_start <= $1";
    db_run!(db, |pool| Ok(sqlx::query(SQL).bind(now - limiter.window()).execute(pool).await?.rows_affected()))
}
