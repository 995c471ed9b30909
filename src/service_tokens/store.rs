//! SQL of the service-token API.

use super::{Client, ServiceUser};
use crate::{
    clock::Millis,
    db_run,
    storage::{Db, StorageError},
};

const CLIENT_COLUMNS: &str = "id, name, key_start, created_at, updated_at";
const USER_COLUMNS: &str = "id, client_id, external_id, name, secret_hash, created_at";

/// Stores a new client with the hash of its key.
pub async fn insert_client(db: &Db, client: &Client, key_hash: &str) -> Result<(), StorageError> {
    const SQL: &str = "INSERT INTO service_clients (id, name, key_hash, key_start, created_at, updated_at) \
                       VALUES ($1, $2, $3, $4, $5, $6)";
    db_run!(db, |pool| {
        sqlx::query(SQL)
            .bind(&client.id)
            .bind(&client.name)
            .bind(key_hash)
            .bind(&client.key_start)
            .bind(client.created_at)
            .bind(client.updated_at)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// The client whose key has this hash.
pub async fn client_by_key_hash(db: &Db, key_hash: &str) -> Result<Option<Client>, StorageError> {
    let sql = format!("SELECT {CLIENT_COLUMNS} FROM service_clients WHERE key_hash = $1");
    db_run!(db, |pool| Ok(sqlx::query_as::<_, Client>(&sql).bind(key_hash).fetch_optional(pool).await?))
}

/// Every client, oldest first.
pub async fn list_clients(db: &Db) -> Result<Vec<Client>, StorageError> {
    let sql = format!("SELECT {CLIENT_COLUMNS} FROM service_clients ORDER BY created_at, id");
    db_run!(db, |pool| Ok(sqlx::query_as::<_, Client>(&sql).fetch_all(pool).await?))
}

/// Replaces a client's key; the client after the change, `None` if there is no such client.
pub async fn set_client_key(
    db: &Db,
    id: &str,
    key_hash: &str,
    key_start: &str,
    now: Millis,
) -> Result<Option<Client>, StorageError> {
    let sql = format!(
        "UPDATE service_clients SET key_hash = $1, key_start = $2, updated_at = $3 WHERE id = $4 RETURNING {CLIENT_COLUMNS}"
    );
    db_run!(db, |pool| Ok(sqlx::query_as::<_, Client>(&sql)
        .bind(key_hash)
        .bind(key_start)
        .bind(now)
        .bind(id)
        .fetch_optional(pool)
        .await?))
}

/// Deletes a client and (by cascade) its users; `false` if there was none.
pub async fn delete_client(db: &Db, id: &str) -> Result<bool, StorageError> {
    db_run!(db, |pool| Ok(sqlx::query("DELETE FROM service_clients WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected()
        > 0))
}

/// Stores a new user with the hash of its secret.
pub async fn insert_user(db: &Db, user: &ServiceUser) -> Result<(), StorageError> {
    const SQL: &str = "INSERT INTO service_users (id, client_id, external_id, name, secret_hash, created_at) \
                       VALUES ($1, $2, $3, $4, $5, $6)";
    db_run!(db, |pool| {
        sqlx::query(SQL)
            .bind(&user.id)
            .bind(&user.client_id)
            .bind(&user.external_id)
            .bind(&user.name)
            .bind(&user.secret_hash)
            .bind(user.created_at)
            .execute(pool)
            .await?;
        Ok(())
    })
}

pub async fn user_by_id(db: &Db, id: &str) -> Result<Option<ServiceUser>, StorageError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM service_users WHERE id = $1");
    db_run!(db, |pool| Ok(sqlx::query_as::<_, ServiceUser>(&sql).bind(id).fetch_optional(pool).await?))
}

/// A client's users, oldest first, a page at a time.
pub async fn list_users(db: &Db, client_id: &str, limit: i64, offset: i64) -> Result<Vec<ServiceUser>, StorageError> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM service_users WHERE client_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3"
    );
    db_run!(db, |pool| Ok(sqlx::query_as::<_, ServiceUser>(&sql)
        .bind(client_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?))
}

/// Deletes one of a client's users; `false` if the client has no such user.
pub async fn delete_user(db: &Db, client_id: &str, id: &str) -> Result<bool, StorageError> {
    db_run!(db, |pool| Ok(sqlx::query("DELETE FROM service_users WHERE id = $1 AND client_id = $2")
        .bind(id)
        .bind(client_id)
        .execute(pool)
        .await?
        .rows_affected()
        > 0))
}
