//! SQL of the token core: signing keys and issued-token records.

use crate::{
    clock::Millis,
    db_run,
    storage::{Db, StorageError},
};

/// A `signing_keys` row.
#[derive(Clone, sqlx::FromRow)]
pub struct KeyRow {
    /// `kid`.
    pub id: String,
    /// `ES256`, `RS256` or `EdDSA`.
    pub algorithm: String,
    /// Public JWK (JSON).
    pub public_jwk: String,
    /// base64 of the sealed PKCS#8 private key.
    pub private_key: String,
    /// Unix ms.
    pub created_at: Millis,
    /// When it stopped signing (unix ms); NULL for the one active key of its algorithm.
    pub retired_at: Option<Millis>,
    /// When it leaves the JWKS (unix ms), after which it is deleted; NULL while active.
    pub expires_at: Option<Millis>,
}

const KEY_COLUMNS: &str = "id, algorithm, public_jwk, private_key, created_at, retired_at, expires_at";

/// Keys still published at `now` (active, or retired less than their window ago).
pub async fn published_keys(db: &Db, now: Millis) -> Result<Vec<KeyRow>, StorageError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM signing_keys WHERE expires_at IS NULL OR expires_at > $1");
    db_run!(db, |pool| Ok(sqlx::query_as::<_, KeyRow>(&sql).bind(now).fetch_all(pool).await?))
}

/// Stores a new key; a second active key of the same algorithm is a unique violation.
pub async fn insert_key(db: &Db, row: &KeyRow) -> Result<(), StorageError> {
    const SQL: &str = "INSERT INTO signing_keys (id, algorithm, public_jwk, private_key, created_at, retired_at, \
                       expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    db_run!(db, |pool| {
        sqlx::query(SQL)
            .bind(&row.id)
            .bind(&row.algorithm)
            .bind(&row.public_jwk)
            .bind(&row.private_key)
            .bind(row.created_at)
            .bind(row.retired_at)
            .bind(row.expires_at)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// In one transaction: retires the active key of the new key's algorithm (if it was created before
/// `older_than`, when given) and stores the new one. `false` if there was nothing to retire under that
/// condition and a condition was given (someone else rotated first).
pub async fn rotate(
    db: &Db,
    row: &KeyRow,
    now: Millis,
    old_expires_at: Millis,
    older_than: Option<Millis>,
) -> Result<bool, StorageError> {
    const RETIRE: &str = "UPDATE signing_keys SET retired_at = $1, expires_at = $2 \
                          WHERE algorithm = $3 AND retired_at IS NULL AND created_at <= $4";
    const INSERT: &str = "INSERT INTO signing_keys (id, algorithm, public_jwk, private_key, created_at, retired_at, \
                          expires_at) VALUES ($1, $2, $3, $4, $5, NULL, NULL)";
    db_run!(db, |pool| {
        let mut tx = pool.begin().await?;
        let retired = sqlx::query(RETIRE)
            .bind(now)
            .bind(old_expires_at)
            .bind(&row.algorithm)
            .bind(older_than.unwrap_or(Millis::MAX))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if retired == 0 && older_than.is_some() {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(INSERT)
            .bind(&row.id)
            .bind(&row.algorithm)
            .bind(&row.public_jwk)
            .bind(&row.private_key)
            .bind(row.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    })
}

/// A signing key as the management API lists it (no private half).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct KeyInfo {
    pub id: String,
    pub algorithm: String,
    pub public_jwk: String,
    pub created_at: Millis,
    pub retired_at: Option<Millis>,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

/// Every stored key (active, retired, revoked), newest first.
pub async fn list_keys(db: &Db) -> Result<Vec<KeyInfo>, StorageError> {
    const SQL: &str = "SELECT id, algorithm, public_jwk, created_at, retired_at, expires_at, revoked_at \
                       FROM signing_keys ORDER BY created_at DESC, id";
    db_run!(db, |pool| Ok(sqlx::query_as::<_, KeyInfo>(SQL).fetch_all(pool).await?))
}

/// Revokes a retired key: it leaves the JWKS and stops verifying at once. `false` if there is no retired,
/// unrevoked key with this id.
pub async fn revoke_key(db: &Db, kid: &str, now: Millis) -> Result<bool, StorageError> {
    const SQL: &str = "UPDATE signing_keys SET revoked_at = $1, expires_at = $1 \
                       WHERE id = $2 AND retired_at IS NOT NULL AND revoked_at IS NULL";
    db_run!(db, |pool| Ok(sqlx::query(SQL).bind(now).bind(kid).execute(pool).await?.rows_affected() == 1))
}

/// How long a revoked key stays listed (revoked) before the cleanup removes it.
pub const REVOKED_KEY_LISTED: Millis = 30 * 86_400_000;

/// Deletes keys whose publication window has passed (a revoked key once it has been listed long enough).
pub async fn delete_expired_keys(db: &Db, now: Millis) -> Result<u64, StorageError> {
    const SQL: &str = "DELETE FROM signing_keys WHERE expires_at IS NOT NULL AND expires_at <= $1 \
                       AND (revoked_at IS NULL OR revoked_at <= $2)";
    db_run!(db, |pool| Ok(sqlx::query(SQL)
        .bind(now)
        .bind(now - REVOKED_KEY_LISTED)
        .execute(pool)
        .await?
        .rows_affected()))
}

/// The record of one issued token.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The token's `jti`: the table's primary key, and what revoking one token names.
    pub jti: String,
    /// `sub`.
    pub subject: String,
    pub client_id: String,
    /// Unix ms.
    pub expires_at: Millis,
    /// Unix ms.
    pub created_at: Millis,
}

/// Rows per multi-row INSERT (5 parameters each; well under SQLite's and PostgreSQL's limits).
pub const MAX_BATCH: usize = 256;

/// Stores a batch of records in one statement (one commit, one fsync on SQLite).
pub async fn insert_issued(db: &Db, batch: &[IssuedToken]) -> Result<(), StorageError> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut sql = String::from("INSERT INTO issued_tokens (jti, subject, client_id, expires_at, created_at) VALUES ");
    for i in 0..batch.len() {
        let p = i * 5;
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!("(${}, ${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4, p + 5));
    }
    db_run!(db, |pool| {
        let mut query = sqlx::query(&sql);
        for token in batch {
            query = query
                .bind(&token.jti)
                .bind(&token.subject)
                .bind(&token.client_id)
                .bind(token.expires_at)
                .bind(token.created_at);
        }
        query.execute(pool).await?;
        Ok(())
    })
}

/// Marks one token revoked; returns its `expires_at` if it was recorded.
pub async fn revoke_jti(db: &Db, jti: &str) -> Result<Option<Millis>, StorageError> {
    const SQL: &str = "UPDATE issued_tokens SET revoked = TRUE WHERE jti = $1 RETURNING expires_at";
    db_run!(db, |pool| Ok(sqlx::query_scalar::<_, Millis>(SQL).bind(jti).fetch_optional(pool).await?))
}

/// Marks every token of a subject revoked.
pub async fn revoke_subject(db: &Db, subject: &str) -> Result<u64, StorageError> {
    const SQL: &str = "UPDATE issued_tokens SET revoked = TRUE WHERE subject = $1 AND revoked = FALSE";
    db_run!(db, |pool| Ok(sqlx::query(SQL).bind(subject).execute(pool).await?.rows_affected()))
}

/// Marks every token issued to a client revoked.
pub async fn revoke_client(db: &Db, client_id: &str) -> Result<u64, StorageError> {
    const SQL: &str = "UPDATE issued_tokens SET revoked = TRUE WHERE client_id = $1 AND revoked = FALSE";
    db_run!(db, |pool| Ok(sqlx::query(SQL).bind(client_id).execute(pool).await?.rows_affected()))
}

/// `(jti, expires_at)` of revoked tokens that have not expired: the revocation set at start-up.
pub async fn revoked_unexpired(db: &Db, now: Millis) -> Result<Vec<(String, Millis)>, StorageError> {
    const SQL: &str = "SELECT jti, expires_at FROM issued_tokens WHERE revoked = TRUE AND expires_at > $1";
    db_run!(db, |pool| Ok(sqlx::query_as::<_, (String, Millis)>(SQL).bind(now).fetch_all(pool).await?))
}

/// Deletes records of tokens expired before `before`, a batch at a time (through `issued_tokens_expires_at`).
pub async fn cleanup_issued(db: &Db, before: Millis) -> Result<u64, StorageError> {
    const SQL: &str = "DELETE FROM issued_tokens WHERE jti IN \
        (SELECT jti FROM issued_tokens WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)";
    Ok(crate::storage::cleanup::delete_in_batches(db, "issued_tokens", SQL, before).await?.rows)
}
