//! SQL of the API keys capability. Keys are found by the SHA-256 of the key, never the key.

use std::sync::LazyLock;

use crate::{
    accounts::{JoinedUser, User, JOINED_USER_COLUMNS},
    clock::Millis,
    db_run,
    storage::{Db, StorageError},
};

use super::ApiKey;

const KEY_COLUMNS: &str = "id, name, start, prefix, reference_id, organization_id, permissions, metadata, enabled, \
    expires_at, last_request, request_count, created_at, updated_at";

/// A key joined with its owner (one round trip when the cache misses).
#[derive(sqlx::FromRow)]
struct KeyUserRow {
    #[sqlx(flatten)]
    key: ApiKey,
    #[sqlx(flatten)]
    user: JoinedUser,
}

/// Stores a new key under its hash.
pub async fn insert(db: &Db, key: &ApiKey, key_hash: &str) -> Result<(), StorageError> {
    let sql = format!(
        "INSERT INTO api_keys ({KEY_COLUMNS}, key_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    );
    db_run!(db, |pool| {
        sqlx::query(&sql)
            .bind(&key.id)
            .bind(&key.name)
            .bind(&key.start)
            .bind(&key.prefix)
            .bind(&key.reference_id)
            .bind(&key.organization_id)
            .bind(&key.permissions)
            .bind(&key.metadata)
            .bind(key.enabled)
            .bind(key.expires_at)
            .bind(key.last_request)
            .bind(key.request_count)
            .bind(key.created_at)
            .bind(key.updated_at)
            .bind(key_hash)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// The key with this hash, with its owner.
pub async fn find_by_hash(db: &Db, key_hash: &str) -> Result<Option<(ApiKey, User)>, StorageError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT k.id, k.name, k.start, k.prefix, k.reference_id, k.organization_id, k.permissions, k.metadata, \
             k.enabled, k.expires_at, k.last_request, k.request_count, k.created_at, k.updated_at, \
             {JOINED_USER_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.reference_id WHERE k.key_hash = $1"
        )
    });
    let row =
        db_run!(db, |pool| sqlx::query_as::<_, KeyUserRow>(SQL.as_str()).bind(key_hash).fetch_optional(pool).await)?;
    Ok(row.map(|row| {
        let user = row.user.into_user(row.key.reference_id.clone());
        (row.key, user)
    }))
}

pub async fn find(db: &Db, id: &str) -> Result<Option<ApiKey>, StorageError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, ApiKey>(&sql).bind(id).fetch_optional(pool).await)?)
}

/// A user's keys, newest first, with a page window; and their total.
pub async fn list_for_user(
    db: &Db,
    user_id: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ApiKey>, i64), StorageError> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE reference_id = $1 ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
    );
    const COUNT: &str = "SELECT COUNT(*) FROM api_keys WHERE reference_id = $1";
    db_run!(db, |pool| {
        let keys = sqlx::query_as::<_, ApiKey>(&sql).bind(user_id).bind(limit).bind(offset).fetch_all(pool).await?;
        let total = sqlx::query_scalar::<_, i64>(COUNT).bind(user_id).fetch_one(pool).await?;
        Ok((keys, total))
    })
}

/// The ids of every key a user owns.
pub async fn ids_for_user(db: &Db, user_id: &str) -> Result<Vec<String>, StorageError> {
    const SQL: &str = "SELECT id FROM api_keys WHERE reference_id = $1";
    db_run!(db, |pool| Ok(sqlx::query_scalar::<_, String>(SQL).bind(user_id).fetch_all(pool).await?))
}

/// Writes the mutable fields.
pub async fn update(db: &Db, key: &ApiKey) -> Result<(), StorageError> {
    const SQL: &str = "UPDATE api_keys SET name = $2, enabled = $3, expires_at = $4, permissions = $5, metadata = $6, \
        updated_at = $7 WHERE id = $1";
    db_run!(db, |pool| {
        sqlx::query(SQL)
            .bind(&key.id)
            .bind(&key.name)
            .bind(key.enabled)
            .bind(key.expires_at)
            .bind(&key.permissions)
            .bind(&key.metadata)
            .bind(key.updated_at)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// Deletes a key; false if there was none.
pub async fn delete(db: &Db, id: &str) -> Result<bool, StorageError> {
    const SQL: &str = "DELETE FROM api_keys WHERE id = $1";
    Ok(db_run!(db, |pool| sqlx::query(SQL).bind(id).execute(pool).await.map(|r| r.rows_affected()))? == 1)
}

/// Keys one usage statement updates at most (three parameters each).
const USAGE_CHUNK: usize = 500;

/// Applies a batch of (id, last use, uses) in one transaction: one UPDATE per [`USAGE_CHUNK`] keys (a
/// VALUES list joined by id), not one per key. With many distinct keys in use, a flush of one statement
/// per key held a connection for seconds (20,000 keys used within a flush interval, `bench/scale.sh`).
pub async fn record_usage(db: &Db, batch: &[(String, Millis, i64)]) -> Result<(), StorageError> {
    db_run!(db, |pool| {
        let mut tx = pool.begin().await?;
        for chunk in batch.chunks(USAGE_CHUNK) {
            let sql = usage_sql(chunk.len());
            let mut query = sqlx::query(&sql);
            for (id, last, count) in chunk {
                query = query.bind(id).bind(*last).bind(*count);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    })
}

/// `UPDATE … FROM (VALUES ($1, $2, $3), …)` for `rows` keys (the ids of one flush are distinct).
fn usage_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows).map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3)).collect();
    format!(
        "UPDATE api_keys SET last_request = CASE WHEN api_keys.last_request IS NULL OR api_keys.last_request < u.last \
         THEN u.last ELSE api_keys.last_request END, request_count = api_keys.request_count + u.uses \
         FROM (SELECT column1 AS id, column2 AS last, column3 AS uses FROM (VALUES {}) AS v) AS u WHERE api_keys.id = u.id",
        values.join(", ")
    )
}
