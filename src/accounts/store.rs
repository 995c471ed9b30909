//! SQL of the accounts capability: users and their credential accounts.

use crate::{
    db_run,
    storage::{Db, StorageError},
};

use super::User;

const USER_COLUMNS: &str = "id, email, name, image, email_verified, role, created_at, updated_at";

pub async fn find_user_by_id(db: &Db, id: &str) -> Result<Option<User>, StorageError> {
    const SQL: &str =
        "SELECT id, email, name, image, email_verified, role, created_at, updated_at FROM users WHERE id = $1";
    Ok(db_run!(db, |pool| sqlx::query_as::<_, User>(SQL).bind(id).fetch_optional(pool).await)?)
}

/// Inserts a user and its email/password account in one transaction.
pub async fn insert_user_with_password(
    db: &Db,
    user: &User,
    account_id: &str,
    password_hash: &str,
) -> Result<(), StorageError> {
    db_run!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, email, name, image, email_verified, role, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.name)
        .bind(&user.image)
        .bind(user.email_verified)
        .bind(&user.role)
        .bind(user.created_at)
        .bind(user.updated_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO accounts (id, user_id, provider_id, account_id, password_hash, created_at, updated_at) \
             VALUES ($1, $2, 'credential', $3, $4, $5, $5)",
        )
        .bind(account_id)
        .bind(&user.id)
        .bind(&user.id)
        .bind(password_hash)
        .bind(user.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    })
}

/// The user with this (normalised) email.
pub async fn find_user_by_email(db: &Db, email: &str) -> Result<Option<User>, StorageError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
    db_run!(db, |pool| Ok(sqlx::query_as::<_, User>(&sql).bind(email).fetch_optional(pool).await?))
}

/// A user and the Argon2id PHC string of their credential account (if any), in one query, so that sign-in
/// costs the same round trips whether or not the email exists.
pub async fn find_credential_by_email(db: &Db, email: &str) -> Result<Option<(User, Option<String>)>, StorageError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        user: User,
        password_hash: Option<String>,
    }
    const SQL: &str = "SELECT u.id, u.email, u.name, u.image, u.email_verified, u.role, u.created_at, u.updated_at, \
        a.password_hash FROM users u LEFT JOIN accounts a ON a.user_id = u.id AND a.provider_id = 'credential' \
        WHERE u.email = $1";
    let row = db_run!(db, |pool| sqlx::query_as::<_, Row>(SQL).bind(email).fetch_optional(pool).await)?;
    Ok(row.map(|row| (row.user, row.password_hash)))
}
