//! SQL of the accounts capability: users and their credential accounts.

use crate::{
    db_run,
    storage::{Db, StorageError},
};

use super::User;
use crate::clock::Millis;

const USER_COLUMNS: &str = "id, email, name, image, email_verified, role, blocked, created_at, updated_at";

pub async fn find_user_by_id(db: &Db, id: &str) -> Result<Option<User>, StorageError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, User>(&sql).bind(id).fetch_optional(pool).await)?)
}

/// A user's first account, inserted with the user.
pub struct FirstAccount<'a> {
    /// `acc_…`.
    pub id: &'a str,
    /// `credential`, or a social provider's id.
    pub provider_id: &'a str,
    /// The user's own id for `credential`, else the subject at the provider.
    pub account_id: &'a str,
    /// The Argon2id PHC string of a `credential` account.
    pub password_hash: Option<&'a str>,
}

/// Inserts a user and their first account in one transaction (never a user without a way to sign in),
/// with the management API's metadata objects as JSON text.
pub async fn insert_user_with_account(
    db: &Db,
    user: &User,
    account: &FirstAccount<'_>,
    (app_metadata, user_metadata): (&str, &str),
) -> Result<(), StorageError> {
    db_run!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, email, name, image, email_verified, role, blocked, app_metadata, user_metadata, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.name)
        .bind(&user.image)
        .bind(user.email_verified)
        .bind(&user.role)
        .bind(user.blocked)
        .bind(app_metadata)
        .bind(user_metadata)
        .bind(user.created_at)
        .bind(user.updated_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO accounts (id, user_id, provider_id, account_id, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(account.id)
        .bind(&user.id)
        .bind(account.provider_id)
        .bind(account.account_id)
        .bind(account.password_hash)
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
    const SQL: &str =
        "SELECT u.id, u.email, u.name, u.image, u.email_verified, u.role, u.blocked, u.created_at, u.updated_at, \
        a.password_hash FROM users u LEFT JOIN accounts a ON a.user_id = u.id AND a.provider_id = 'credential' \
        WHERE u.email = $1";
    let row = db_run!(db, |pool| sqlx::query_as::<_, Row>(SQL).bind(email).fetch_optional(pool).await)?;
    Ok(row.map(|row| (row.user, row.password_hash)))
}

/// A user row with its metadata (JSON text), for the management API.
#[derive(sqlx::FromRow)]
pub struct ProfileRow {
    #[sqlx(flatten)]
    pub user: User,
    pub app_metadata: String,
    pub user_metadata: String,
}

const PROFILE_COLUMNS: &str =
    "id, email, name, image, email_verified, role, blocked, created_at, updated_at, app_metadata, user_metadata";

/// One user with metadata.
pub async fn find_profile(db: &Db, id: &str) -> Result<Option<ProfileRow>, StorageError> {
    let sql = format!("SELECT {PROFILE_COLUMNS} FROM users WHERE id = $1");
    db_run!(db, |pool| Ok(sqlx::query_as::<_, ProfileRow>(&sql).bind(id).fetch_optional(pool).await?))
}

/// How a user list is narrowed: an exact email, or an email prefix (`email:jane*`).
#[derive(Clone, Debug, Default)]
pub enum EmailFilter {
    #[default]
    All,
    Exact(String),
    Prefix(String),
}

impl EmailFilter {
    fn clause(&self) -> (&'static str, Option<String>) {
        match self {
            EmailFilter::All => ("", None),
            EmailFilter::Exact(email) => (" WHERE email = $1", Some(email.clone())),
            // `LIKE` wildcards in the prefix itself are escaped: they match themselves only.
            EmailFilter::Prefix(prefix) => (
                " WHERE email LIKE $1 ESCAPE '\\'",
                Some(format!("{}%", prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))),
            ),
        }
    }
}

/// A page of users, newest first (ties by id), and the number matching when `count`.
pub async fn list_profiles(
    db: &Db,
    filter: &EmailFilter,
    oldest_first: bool,
    limit: i64,
    offset: i64,
    count: bool,
) -> Result<(Vec<ProfileRow>, Option<i64>), StorageError> {
    let (clause, value) = filter.clause();
    let order = if oldest_first { "created_at ASC, id ASC" } else { "created_at DESC, id DESC" };
    let (limit_at, offset_at) = if value.is_some() { ("$2", "$3") } else { ("$1", "$2") };
    let sql =
        format!("SELECT {PROFILE_COLUMNS} FROM users{clause} ORDER BY {order} LIMIT {limit_at} OFFSET {offset_at}");
    let count_sql = format!("SELECT COUNT(*) FROM users{clause}");
    db_run!(db, |pool| {
        let mut query = sqlx::query_as::<_, ProfileRow>(&sql);
        if let Some(value) = &value {
            query = query.bind(value);
        }
        let rows = query.bind(limit).bind(offset).fetch_all(pool).await?;
        let total = if count {
            let mut query = sqlx::query_scalar::<_, i64>(&count_sql);
            if let Some(value) = &value {
                query = query.bind(value);
            }
            Some(query.fetch_one(pool).await?)
        } else {
            None
        };
        Ok((rows, total))
    })
}

/// `(provider_id, account_id, created_at)` of each account of each user, oldest first.
pub async fn identities(db: &Db, user_ids: &[String]) -> Result<Vec<(String, String, String, i64)>, StorageError> {
    if user_ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=user_ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT user_id, provider_id, account_id, created_at FROM accounts WHERE user_id IN ({}) \
         ORDER BY created_at, id",
        placeholders.join(", ")
    );
    db_run!(db, |pool| {
        let mut query = sqlx::query_as::<_, (String, String, String, i64)>(&sql);
        for id in user_ids {
            query = query.bind(id);
        }
        Ok(query.fetch_all(pool).await?)
    })
}

/// The fields the management API changes; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub name: Option<String>,
    pub image: Option<Option<String>>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub blocked: Option<bool>,
    pub app_metadata: Option<String>,
    pub user_metadata: Option<String>,
}

/// Applies a change; `false` if there is no such user.
pub async fn update_profile(db: &Db, id: &str, change: &ProfileChange, now: Millis) -> Result<bool, StorageError> {
    const SQL: &str = "UPDATE users SET \
        name = COALESCE($1, name), \
        image = CASE WHEN $2 THEN $3 ELSE image END, \
        email = COALESCE($4, email), \
        email_verified = COALESCE($5, email_verified), \
        blocked = COALESCE($6, blocked), \
        app_metadata = COALESCE($7, app_metadata), \
        user_metadata = COALESCE($8, user_metadata), \
        updated_at = $9 WHERE id = $10";
    db_run!(db, |pool| {
        let done = sqlx::query(SQL)
            .bind(&change.name)
            .bind(change.image.is_some())
            .bind(change.image.clone().flatten())
            .bind(&change.email)
            .bind(change.email_verified)
            .bind(change.blocked)
            .bind(&change.app_metadata)
            .bind(&change.user_metadata)
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Deletes a user; their accounts, sessions, API keys, memberships and OAuth grants go with them.
pub async fn delete_user(db: &Db, id: &str) -> Result<bool, StorageError> {
    db_run!(db, |pool| Ok(
        sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(pool).await?.rows_affected() == 1
    ))
}

/// Removes one linked account of a user unless it is their last; `None` if there is no such account.
pub async fn unlink(db: &Db, user_id: &str, provider_id: &str, account_id: &str) -> Result<Option<bool>, StorageError> {
    db_run!(db, |pool| {
        let mut tx = pool.begin().await?;
        let accounts: Vec<(String, String)> =
            sqlx::query_as("SELECT provider_id, account_id FROM accounts WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
        if !accounts.iter().any(|(p, a)| p == provider_id && a == account_id) {
            return Ok(None);
        }
        if accounts.len() == 1 {
            return Ok(Some(false));
        }
        sqlx::query("DELETE FROM accounts WHERE user_id = $1 AND provider_id = $2 AND account_id = $3")
            .bind(user_id)
            .bind(provider_id)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(true))
    })
}
