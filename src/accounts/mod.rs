//! Capability 1, accounts: email/password sign-up and sign-in (DESIGN.md "Capability 1").
//!
//! Plain functions over domain types; `routes.rs` turns them into Better Auth-compatible endpoints.

pub mod email;
pub mod failures;
pub mod password;
pub mod routes;
pub mod store;

/// The URL paths of this capability's endpoints, also re-exported by `latchkey::paths`.
pub mod paths {
    /// `POST` sign-up with email and password.
    pub const SIGN_UP_EMAIL: &str = "/api/auth/sign-up/email";
    /// `POST` sign-in with email and password.
    pub const SIGN_IN_EMAIL: &str = "/api/auth/sign-in/email";
}

use serde::{Deserialize, Serialize};

use crate::{
    clock::{iso8601, Millis},
    config::Secret,
    crypto::{self, password::PasswordHasher},
    storage::{Db, StorageError},
};
use email::Email;

/// A user as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct User {
    /// `usr_…`
    pub id: String,
    /// Normalised email, unique.
    pub email: String,
    /// Display name, trimmed; at most 256 characters.
    pub name: String,
    /// Avatar URL as given at sign-up (at most 2048 bytes); `None` if none was given.
    pub image: Option<String>,
    /// Always `false` for now: nothing verifies an email yet, and sign-up refuses `emailVerified`.
    pub email_verified: bool,
    /// `user` or `admin`; never settable through sign-up.
    pub role: String,
    /// Blocked through the management API: signs in nowhere; every credential refused. Left out of the
    /// cookie cache's JSON when false (a blocked user has no session to cache).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
    /// Unix ms.
    pub created_at: Millis,
    /// Unix ms.
    pub updated_at: Millis,
}

/// A user's columns selected under `u_` aliases ([`JOINED_USER_COLUMNS`]) next to another table's row,
/// so a session or API key and its owner come back in one round trip.
#[derive(sqlx::FromRow)]
pub struct JoinedUser {
    u_email: String,
    u_name: String,
    u_image: Option<String>,
    u_email_verified: bool,
    u_role: String,
    u_blocked: bool,
    u_created_at: Millis,
    u_updated_at: Millis,
}

/// The select list of [`JoinedUser`] for a users table aliased `u`.
pub const JOINED_USER_COLUMNS: &str = "u.email AS u_email, u.name AS u_name, u.image AS u_image, \
    u.email_verified AS u_email_verified, u.role AS u_role, u.blocked AS u_blocked, u.created_at AS u_created_at, \
    u.updated_at AS u_updated_at";

impl JoinedUser {
    /// The same columns from a row of SQLite's synchronous read path (`storage::readers`), where
    /// [`JOINED_USER_COLUMNS`] start at column `first` (read by position, in its order).
    pub fn from_sqlite_row(row: &crate::storage::readers::Row<'_>, first: usize) -> rusqlite::Result<JoinedUser> {
        Ok(JoinedUser {
            u_email: row.get(first)?,
            u_name: row.get(first + 1)?,
            u_image: row.get(first + 2)?,
            u_email_verified: row.get(first + 3)?,
            u_role: row.get(first + 4)?,
            u_blocked: row.get(first + 5)?,
            u_created_at: row.get(first + 6)?,
            u_updated_at: row.get(first + 7)?,
        })
    }

    /// The [`User`], given its id: the join key, which [`JOINED_USER_COLUMNS`] does not select.
    pub fn into_user(self, id: String) -> User {
        User {
            id,
            email: self.u_email,
            name: self.u_name,
            image: self.u_image,
            email_verified: self.u_email_verified,
            role: self.u_role,
            blocked: self.u_blocked,
            created_at: self.u_created_at,
            updated_at: self.u_updated_at,
        }
    }
}

/// The JSON shape of a user (Better Auth's, camelCase, ISO timestamps).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    /// User id (`usr_…`).
    pub id: String,
    /// Email address, trimmed and lower-cased.
    pub email: String,
    /// Display name, trimmed; at most 256 characters.
    pub name: String,
    /// Image URL or null.
    pub image: Option<String>,
    /// Whether the email address was verified: always `false` for now, as Latchkey verifies no email yet.
    pub email_verified: bool,
    /// `user` or `admin`.
    pub role: String,
    /// ISO 8601.
    pub created_at: String,
    /// ISO 8601.
    pub updated_at: String,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        UserView {
            id: user.id.clone(),
            email: user.email.clone(),
            name: user.name.clone(),
            image: user.image.clone(),
            email_verified: user.email_verified,
            role: user.role.clone(),
            created_at: iso8601(user.created_at),
            updated_at: iso8601(user.updated_at),
        }
    }
}

/// What a caller can act on when signing up or in.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// 400 `INVALID_EMAIL`.
    #[error("invalid email")]
    InvalidEmail,
    /// 400 `PASSWORD_TOO_SHORT`.
    #[error("password too short")]
    PasswordTooShort,
    /// 400 `PASSWORD_TOO_LONG`.
    #[error("password too long")]
    PasswordTooLong,
    /// 400 `PASSWORD_COMPROMISED`.
    #[error("password is too common")]
    PasswordCompromised,
    /// 400 `VALIDATION_ERROR`: a name or image too long.
    #[error("invalid name")]
    InvalidName,
    /// 422 `USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL`.
    #[error("user already exists")]
    UserAlreadyExists,
    /// 401 `INVALID_EMAIL_OR_PASSWORD`: the same for an unknown email and a wrong password.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// 403 `BANNED_USER` (Better Auth's code): the password was right, but the user is blocked.
    #[error("user is blocked")]
    Blocked,
    /// 503 `SERVER_BUSY`: the password hashing queue is saturated (see [`crate::crypto::password`]).
    #[error("password hashing is saturated")]
    Busy(#[source] crate::crypto::password::Busy),
    /// 500.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AccountError {
    /// A password hashing failure: [`AccountError::Busy`] when the pool shed it.
    fn hashing(error: anyhow::Error) -> AccountError {
        match error.downcast::<crate::crypto::password::Busy>() {
            Ok(busy) => AccountError::Busy(busy),
            Err(error) => AccountError::Internal(error),
        }
    }
}

impl From<StorageError> for AccountError {
    fn from(error: StorageError) -> Self {
        AccountError::Internal(error.into())
    }
}

/// A new user's details, as received.
pub struct NewUser {
    /// Display name; trimmed here, and refused as `InvalidName` beyond 256 characters.
    pub name: String,
    /// Raw email (normalised here).
    pub email: String,
    /// Plain-text password, checked against the policy ([`password::check`]) before it is hashed.
    pub password: Secret,
    /// Avatar URL; refused as `InvalidName` beyond 2048 bytes.
    pub image: Option<String>,
    /// `admin` only through the CLI.
    pub admin: bool,
}

/// What an administrator may set on a user beyond sign-up's fields (management API).
#[derive(Clone, Debug, Default)]
pub struct Extras {
    pub email_verified: bool,
    pub blocked: bool,
    /// Auth0's `app_metadata`: the application's data about the user.
    pub app_metadata: serde_json::Map<String, serde_json::Value>,
    /// Auth0's `user_metadata`: the user's own preferences.
    pub user_metadata: serde_json::Map<String, serde_json::Value>,
}

/// Creates a user with an email/password account.
pub async fn sign_up(db: &Db, hasher: &PasswordHasher, new: NewUser, now: Millis) -> Result<User, AccountError> {
    create(db, hasher, new, Extras::default(), now).await
}

/// Creates a user with an email/password account and what an administrator set, in one transaction.
pub async fn create(
    db: &Db,
    hasher: &PasswordHasher,
    new: NewUser,
    extras: Extras,
    now: Millis,
) -> Result<User, AccountError> {
    let email = Email::parse(&new.email).ok_or(AccountError::InvalidEmail)?;
    let name = new.name.trim().to_owned();
    if name.chars().count() > 256 || new.image.as_ref().is_some_and(|image| image.len() > 2048) {
        return Err(AccountError::InvalidName);
    }
    password::check(new.password.expose()).map_err(|violation| match violation {
        password::PolicyViolation::TooShort => AccountError::PasswordTooShort,
        password::PolicyViolation::TooLong => AccountError::PasswordTooLong,
        password::PolicyViolation::Compromised => AccountError::PasswordCompromised,
    })?;
    // Cheap early answer; the UNIQUE constraint below is what actually guarantees it.
    if store::find_user_by_email(db, email.as_str()).await?.is_some() {
        return Err(AccountError::UserAlreadyExists);
    }
    let password_hash = hasher.hash(new.password).await.map_err(AccountError::hashing)?;
    let user = User {
        id: crypto::new_id("usr"),
        email: email.as_str().to_owned(),
        name,
        image: new.image,
        email_verified: extras.email_verified,
        role: if new.admin { "admin" } else { "user" }.to_owned(),
        blocked: extras.blocked,
        created_at: now,
        updated_at: now,
    };
    let app_metadata = serde_json::Value::Object(extras.app_metadata).to_string();
    let user_metadata = serde_json::Value::Object(extras.user_metadata).to_string();
    let account = store::FirstAccount {
        id: &crypto::new_id("acc"),
        provider_id: "credential",
        account_id: &user.id,
        password_hash: Some(&password_hash),
    };
    match store::insert_user_with_account(db, &user, &account, (&app_metadata, &user_metadata)).await {
        Ok(()) => Ok(user),
        Err(StorageError::UniqueViolation(_)) => Err(AccountError::UserAlreadyExists),
        Err(error) => Err(error.into()),
    }
}

/// Checks an email and password. Unknown emails are verified against a dummy hash so both failures
/// take the same time and give the same answer.
pub async fn verify_credentials(
    db: &Db,
    hasher: &PasswordHasher,
    email: &Email,
    password: Secret,
) -> Result<User, AccountError> {
    let (user, hash) = match store::find_credential_by_email(db, email.as_str()).await? {
        Some((user, hash)) => (Some(user), hash),
        None => (None, None),
    };
    let ok = hasher.verify(password, hash).await.map_err(AccountError::hashing)?;
    match user {
        // Only someone who knows the password learns that the user is blocked.
        Some(user) if ok && user.blocked => Err(AccountError::Blocked),
        Some(user) if ok => Ok(user),
        _ => Err(AccountError::InvalidCredentials),
    }
}
