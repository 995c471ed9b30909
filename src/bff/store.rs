//! The token handler's SQL: vendors (configuration JSON, sealed client secret) and their sealed cookie
//! keys. Written once, run on both backends.

use crate::{
    clock::Millis,
    db_run,
    storage::{Db, StorageError},
};

/// A row of `bff_vendors`.
#[derive(Debug, sqlx::FromRow)]
pub struct VendorRow {
    pub id: String,
    pub config: String,
    pub client_secret_sealed: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A row of `bff_vendor_keys`.
#[derive(sqlx::FromRow)]
pub struct KeyRow {
    pub id: String,
    pub sealed_key: String,
    pub opens_until: Option<Millis>,
}

/// A vendor and its keys still able to open something at `now` (current first).
pub async fn find(db: &Db, vendor_id: &str, now: Millis) -> Result<Option<(VendorRow, Vec<KeyRow>)>, StorageError> {
    db_run!(db, |pool| {
        let row: Option<VendorRow> = sqlx::query_as(
            "SELECT id, config, client_secret_sealed, created_at, updated_at FROM bff_vendors WHERE id = $1",
        )
        .bind(vendor_id)
        .fetch_optional(pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let keys: Vec<KeyRow> = sqlx::query_as(
            "SELECT id, sealed_key, opens_until FROM bff_vendor_keys \
             WHERE vendor_id = $1 AND (opens_until IS NULL OR opens_until > $2) \
             ORDER BY opens_until IS NOT NULL, created_at DESC",
        )
        .bind(vendor_id)
        .bind(now)
        .fetch_all(pool)
        .await?;
        Ok(Some((row, keys)))
    })
}

/// A new key to store: its id and sealed bytes.
pub struct NewKey<'a> {
    pub id: &'a str,
    pub sealed_key: &'a str,
}

/// Creates or replaces a vendor's configuration; a new vendor gets `first_key` as its current key (an
/// existing one keeps its keys). Returns the row as stored.
pub async fn upsert(
    db: &Db,
    vendor_id: &str,
    config: &str,
    client_secret_sealed: Option<&str>,
    first_key: NewKey<'_>,
    now: Millis,
) -> Result<VendorRow, StorageError> {
    db_run!(db, |pool| {
        let mut tx = pool.begin().await?;
        let row: VendorRow = sqlx::query_as(
            "INSERT INTO bff_vendors (id, config, client_secret_sealed, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (id) DO UPDATE SET config = excluded.config, \
                 client_secret_sealed = excluded.client_secret_sealed, updated_at = excluded.updated_at \
             RETURNING id, config, client_secret_sealed, created_at, updated_at",
        )
        .bind(vendor_id)
        .bind(config)
        .bind(client_secret_sealed)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let has_current: Option<String> =
            sqlx::query_scalar("SELECT id FROM bff_vendor_keys WHERE vendor_id = $1 AND opens_until IS NULL")
                .bind(vendor_id)
                .fetch_optional(&mut *tx)
                .await?;
        if has_current.is_none() {
            sqlx::query(
                "INSERT INTO bff_vendor_keys (id, vendor_id, sealed_key, created_at, opens_until) \
                 VALUES ($1, $2, $3, $4, NULL)",
            )
            .bind(first_key.id)
            .bind(vendor_id)
            .bind(first_key.sealed_key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(row)
    })
}

/// The sealed client secret of a vendor (to keep it across a PUT that does not send one).
pub async fn client_secret_of(db: &Db, vendor_id: &str) -> Result<Option<(String, Option<String>)>, StorageError> {
    db_run!(db, |pool| {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT config, client_secret_sealed FROM bff_vendors WHERE id = $1")
                .bind(vendor_id)
                .fetch_optional(pool)
                .await?;
        Ok(row)
    })
}

/// Deletes a vendor and its keys; false if there was none.
pub async fn delete(db: &Db, vendor_id: &str) -> Result<bool, StorageError> {
    db_run!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query("DELETE FROM bff_vendor_keys WHERE vendor_id = $1").bind(vendor_id).execute(&mut *tx).await?;
        let deleted = sqlx::query("DELETE FROM bff_vendors WHERE id = $1")
            .bind(vendor_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted == 1)
    })
}

/// Retires the vendor's current key (it opens until `retired_opens_until`), drops keys whose window has
/// passed, and makes `key` current. False if there is no such vendor.
pub async fn rotate(
    db: &Db,
    vendor_id: &str,
    key: NewKey<'_>,
    retired_opens_until: Millis,
    now: Millis,
) -> Result<bool, StorageError> {
    db_run!(db, |pool| {
        let mut tx = pool.begin().await?;
        // Locks the vendor's row, so two rotations on two nodes take turns.
        let exists = sqlx::query("UPDATE bff_vendors SET updated_at = $2 WHERE id = $1")
            .bind(vendor_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if exists == 0 {
            return Ok(false);
        }
        sqlx::query(
            "DELETE FROM bff_vendor_keys WHERE vendor_id = $1 AND opens_until IS NOT NULL AND opens_until <= $2",
        )
        .bind(vendor_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE bff_vendor_keys SET opens_until = $2 WHERE vendor_id = $1 AND opens_until IS NULL")
            .bind(vendor_id)
            .bind(retired_opens_until)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO bff_vendor_keys (id, vendor_id, sealed_key, created_at, opens_until) \
             VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(key.id)
        .bind(vendor_id)
        .bind(key.sealed_key)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    })
}

/// Deletes every vendor key whose window has passed (maintenance).
pub async fn cleanup(db: &Db, now: Millis) -> Result<u64, StorageError> {
    db_run!(db, |pool| {
        let removed = sqlx::query("DELETE FROM bff_vendor_keys WHERE opens_until IS NOT NULL AND opens_until <= $1")
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected();
        Ok(removed)
    })
}
