//! SQL of the sessions capability. Sessions are found by the SHA-256 of their token, never the token.

use std::sync::LazyLock;

use crate::{
    accounts::{JoinedUser, User, JOINED_USER_COLUMNS},
    clock::Millis,
    db_run,
    storage::{cleanup, Db, StorageError},
};

use super::Session;

const SESSION_COLUMNS: &str =
    "id, user_id, expires_at, ip_address, user_agent, active_organization_id, created_at, updated_at";

/// A session joined with its user (one round trip on the hot DB path).
#[derive(sqlx::FromRow)]
struct SessionUserRow {
    #[sqlx(flatten)]
    session: Session,
    #[sqlx(flatten)]
    user: JoinedUser,
}

/// Stores a new session under the hash of its token.
pub async fn insert(db: &Db, session: &Session, token_hash: &str) -> Result<(), StorageError> {
    const SQL: &str = "INSERT INTO sessions (id, token_hash, user_id, expires_at, ip_address, user_agent, \
                       active_organization_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    db_run!(db, |pool| {
        sqlx::query(SQL)
            .bind(&session.id)
            .bind(token_hash)
            .bind(&session.user_id)
            .bind(session.expires_at)
            .bind(&session.ip_address)
            .bind(&session.user_agent)
            .bind(&session.active_organization_id)
            .bind(session.created_at)
            .bind(session.updated_at)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// The session with this token hash, with its user.
pub async fn find_by_token_hash(db: &Db, token_hash: &str) -> Result<Option<(Session, User)>, StorageError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT s.id, s.user_id, s.expires_at, s.ip_address, s.user_agent, s.active_organization_id, \
             s.created_at, s.updated_at, {JOINED_USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND u.blocked = FALSE"
        )
    });
    // The hot path of a DB session check: on SQLite, read on this thread when a reader can answer.
    let synchronous = db.sqlite_readers().and_then(|readers| {
        readers.read_row(SQL.as_str(), &[("$1", &token_hash)], |row| {
            Ok(SessionUserRow { session: Session::from_sqlite_row(row)?, user: JoinedUser::from_sqlite_row(row, 8)? })
        })
    });
    let row = match synchronous {
        Some(row) => row,
        None => db_run!(db, |pool| sqlx::query_as::<_, SessionUserRow>(SQL.as_str())
            .bind(token_hash)
            .fetch_optional(pool)
            .await)?,
    };
    Ok(row.map(|row| {
        let user = row.user.into_user(row.session.user_id.clone());
        (row.session, user)
    }))
}

impl Session {
    /// The first eight columns of [`find_by_token_hash`]'s select, in its order (by position: a lookup by
    /// name compares every column name, measured at ~4% of a DB session check), from SQLite's synchronous
    /// read path. `sessions::on_sqlite_a_database_session_check_reads_without_the_pool` compares the answer
    /// with the pool's.
    fn from_sqlite_row(row: &crate::storage::readers::Row<'_>) -> rusqlite::Result<Session> {
        Ok(Session {
            id: row.get(0)?,
            user_id: row.get(1)?,
            expires_at: row.get(2)?,
            ip_address: row.get(3)?,
            user_agent: row.get(4)?,
            active_organization_id: row.get(5)?,
            created_at: row.get(6)?,
            updated_at: row.get(7)?,
        })
    }
}

pub async fn find_by_id(db: &Db, id: &str) -> Result<Option<Session>, StorageError> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
    db_run!(db, |pool| Ok(sqlx::query_as::<_, Session>(&sql).bind(id).fetch_optional(pool).await?))
}

/// A user's sessions that have not expired, newest first.
pub async fn list_for_user(db: &Db, user_id: &str, now: Millis) -> Result<Vec<Session>, StorageError> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC, id"
    );
    db_run!(db, |pool| Ok(sqlx::query_as::<_, Session>(&sql).bind(user_id).bind(now).fetch_all(pool).await?))
}

/// Sliding expiry: moves a session's expiry (and `updated_at`, the last refresh).
pub async fn extend(db: &Db, id: &str, expires_at: Millis, now: Millis) -> Result<(), StorageError> {
    const SQL: &str = "UPDATE sessions SET expires_at = $2, updated_at = $3 WHERE id = $1";
    db_run!(db, |pool| {
        sqlx::query(SQL).bind(id).bind(expires_at).bind(now).execute(pool).await?;
        Ok(())
    })
}

/// Deletes sessions and records their revocation in one transaction, so every node's cookie-cache
/// guard can learn of it (NOTIFY, reconnect resync or poll).
pub async fn revoke(db: &Db, ids: &[String], now: Millis) -> Result<(), StorageError> {
    if ids.is_empty() {
        return Ok(());
    }
    db_run!(db, |pool| {
        let mut tx = pool.begin().await?;
        for id in ids {
            sqlx::query("DELETE FROM sessions WHERE id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO session_revocations (session_id, revoked_at) VALUES ($1, $2) \
                 ON CONFLICT (session_id) DO UPDATE SET revoked_at = excluded.revoked_at",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    })
}

/// Ids of the user's sessions (to revoke them all).
pub async fn ids_for_user(db: &Db, user_id: &str) -> Result<Vec<String>, StorageError> {
    const SQL: &str = "SELECT id FROM sessions WHERE user_id = $1";
    db_run!(db, |pool| Ok(sqlx::query_scalar::<_, String>(SQL).bind(user_id).fetch_all(pool).await?))
}

/// Revocations recorded at or after `since`.
pub async fn revocations_since(db: &Db, since: Millis) -> Result<Vec<(String, Millis)>, StorageError> {
    const SQL: &str = "SELECT session_id, revoked_at FROM session_revocations WHERE revoked_at >= $1";
    db_run!(db, |pool| Ok(sqlx::query_as::<_, (String, Millis)>(SQL).bind(since).fetch_all(pool).await?))
}

/// Deletes one expired session (found expired on use).
pub async fn delete(db: &Db, id: &str) -> Result<(), StorageError> {
    db_run!(db, |pool| {
        sqlx::query("DELETE FROM sessions WHERE id = $1").bind(id).execute(pool).await?;
        Ok(())
    })
}

/// Deletes expired sessions and revocation records older than `revocations_before`, a batch at a time
/// (see [`cleanup::delete_in_batches`]); returns the number of sessions removed. Safe to run on several
/// nodes at once.
pub async fn cleanup(db: &Db, now: Millis, revocations_before: Millis) -> Result<u64, StorageError> {
    // Through `sessions_expires_at` and `session_revocations_revoked_at`.
    const SESSIONS: &str =
        "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)";
    const REVOCATIONS: &str = "DELETE FROM session_revocations WHERE session_id IN \
        (SELECT session_id FROM session_revocations WHERE revoked_at < $1 ORDER BY revoked_at LIMIT $2)";
    let removed = cleanup::delete_in_batches(db, "sessions", SESSIONS, now).await?;
    cleanup::delete_in_batches(db, "session_revocations", REVOCATIONS, revocations_before).await?;
    Ok(removed.rows)
}

/// Number of session rows (all, expired or not), for tests and the admin CLI.
pub async fn count(db: &Db) -> Result<i64, StorageError> {
    db_run!(db, |pool| Ok(sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sessions").fetch_one(pool).await?))
}
