//! SQL of social sign-in: the `accounts` rows of upstream providers (no token columns: none is stored).

use serde::Serialize;

use crate::{
    accounts::User,
    clock::Millis,
    db_run,
    storage::{Db, StorageError},
};

/// One way of signing in, as `list-accounts` shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct AccountRow {
    /// `acc_…`
    pub id: String,
    pub user_id: String,
    /// `credential` for the password, else the social provider's id.
    pub provider_id: String,
    /// The provider's subject (`sub`); the user id for `credential`.
    pub account_id: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// The user owning the account `(provider_id, account_id)`.
pub async fn find_user_by_account(db: &Db, provider_id: &str, account_id: &str) -> Result<Option<User>, StorageError> {
    const SQL: &str = "SELECT u.id, u.email, u.name, u.image, u.email_verified, u.role, u.blocked, u.created_at, \
        u.updated_at \
        FROM accounts a JOIN users u ON u.id = a.user_id WHERE a.provider_id = $1 AND a.account_id = $2";
    Ok(db_run!(db, |pool| sqlx::query_as::<_, User>(SQL)
        .bind(provider_id)
        .bind(account_id)
        .fetch_optional(pool)
        .await)?)
}

/// Adds an account to an existing user.
pub async fn insert_account(
    db: &Db,
    id: &str,
    user_id: &str,
    provider_id: &str,
    account_id: &str,
    now: Millis,
) -> Result<(), StorageError> {
    const SQL: &str =
        "INSERT INTO accounts (id, user_id, provider_id, account_id, password_hash, created_at, updated_at) \
        VALUES ($1, $2, $3, $4, NULL, $5, $5)";
    db_run!(db, |pool| sqlx::query(SQL)
        .bind(id)
        .bind(user_id)
        .bind(provider_id)
        .bind(account_id)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok(())
}

/// The user's accounts, oldest first.
pub async fn list_accounts(db: &Db, user_id: &str) -> Result<Vec<AccountRow>, StorageError> {
    const SQL: &str = "SELECT id, user_id, provider_id, account_id, created_at, updated_at FROM accounts \
        WHERE user_id = $1 ORDER BY created_at, id";
    Ok(db_run!(db, |pool| sqlx::query_as::<_, AccountRow>(SQL).bind(user_id).fetch_all(pool).await)?)
}

/// What [`unlink`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Unlinked {
    /// The account is gone.
    Done,
    /// The user has no such account.
    NotFound,
    /// It is the user's last account: kept.
    Last,
}

/// Deletes the user's account of `provider_id` (the one with `account_id` when given) unless it is the
/// last one. The user's row is locked first (a no-op update) so two unlinks cannot each see the other's
/// account and leave none.
pub async fn unlink(
    db: &Db,
    user_id: &str,
    provider_id: &str,
    account_id: Option<&str>,
) -> Result<Unlinked, StorageError> {
    db_run!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query("UPDATE users SET updated_at = updated_at WHERE id = $1").bind(user_id).execute(&mut *tx).await?;
        let accounts: Vec<(String, String, String)> =
            sqlx::query_as("SELECT id, provider_id, account_id FROM accounts WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
        let target = accounts.iter().find(|(_, provider, account)| {
            provider == provider_id && account_id.is_none_or(|wanted| wanted == account)
        });
        let outcome = match target {
            None => Unlinked::NotFound,
            Some(_) if accounts.len() <= 1 => Unlinked::Last,
            Some((id, _, _)) => {
                sqlx::query("DELETE FROM accounts WHERE id = $1").bind(id).execute(&mut *tx).await?;
                Unlinked::Done
            }
        };
        tx.commit().await?;
        Ok(outcome)
    })
}
