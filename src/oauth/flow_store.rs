//! SQL of the authorization-code flow: login transactions, codes, refresh-token families (grants),
//! consents and revocations.

use crate::{
    clock::Millis,
    db_run,
    storage::{Db, StorageError},
};

/// A login transaction row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TransactionRow {
    pub id: String,
    pub client_id: String,
    /// The authorize request, JSON.
    pub request: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

pub async fn insert_transaction(db: &Db, row: &TransactionRow) -> Result<(), StorageError> {
    const SQL: &str =
        "INSERT INTO oauth_transactions (id, client_id, request, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";
    db_run!(db, |pool| {
        sqlx::query(SQL)
            .bind(&row.id)
            .bind(&row.client_id)
            .bind(&row.request)
            .bind(row.created_at)
            .bind(row.expires_at)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// A transaction that has not expired.
pub async fn find_transaction(db: &Db, id: &str, now: Millis) -> Result<Option<TransactionRow>, StorageError> {
    const SQL: &str = "SELECT id, client_id, request, created_at, expires_at FROM oauth_transactions \
                       WHERE id = $1 AND expires_at > $2";
    db_run!(db, |pool| Ok(sqlx::query_as(SQL).bind(id).bind(now).fetch_optional(pool).await?))
}

/// Ends a transaction (its code was issued, or it was refused).
pub async fn delete_transaction(db: &Db, id: &str) -> Result<(), StorageError> {
    db_run!(db, |pool| {
        sqlx::query("DELETE FROM oauth_transactions WHERE id = $1").bind(id).execute(pool).await?;
        Ok(())
    })
}

/// An authorization code as stored (without its hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CodeRow {
    pub client_id: String,
    pub user_id: String,
    pub session_id: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    /// Space-separated.
    pub scope: String,
    pub audience: Option<String>,
    /// Unix ms of the sign-in.
    pub auth_time: Millis,
    pub grant_id: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

const CODE_COLUMNS: &str = "client_id, user_id, session_id, redirect_uri, code_challenge, nonce, scope, audience, \
                            auth_time, grant_id, created_at, expires_at";

pub async fn insert_code(db: &Db, code_hash: &str, row: &CodeRow) -> Result<(), StorageError> {
    let sql = format!(
        "INSERT INTO oauth_codes (code_hash, {CODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    );
    db_run!(db, |pool| {
        sqlx::query(&sql)
            .bind(code_hash)
            .bind(&row.client_id)
            .bind(&row.user_id)
            .bind(&row.session_id)
            .bind(&row.redirect_uri)
            .bind(&row.code_challenge)
            .bind(&row.nonce)
            .bind(&row.scope)
            .bind(&row.audience)
            .bind(row.auth_time)
            .bind(&row.grant_id)
            .bind(row.created_at)
            .bind(row.expires_at)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// What presenting a code found.
#[derive(Debug)]
pub enum CodeUse {
    /// Unused until now, and now used (whatever happens next, it cannot be used again).
    First(CodeRow),
    /// Used before: the grant it led to must die.
    Reused(CodeRow),
    /// Unknown, or expired before it was used.
    Unknown,
}

/// A code row and when it was used.
#[derive(sqlx::FromRow)]
struct SeenCode {
    #[sqlx(flatten)]
    row: CodeRow,
    used_at: Option<Millis>,
}

/// Marks a code used, atomically: of concurrent presentations exactly one gets [`CodeUse::First`].
pub async fn use_code(db: &Db, code_hash: &str, now: Millis) -> Result<CodeUse, StorageError> {
    let update = format!(
        "UPDATE oauth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1 \
         RETURNING {CODE_COLUMNS}"
    );
    let select = format!("SELECT {CODE_COLUMNS}, used_at FROM oauth_codes WHERE code_hash = $1");
    db_run!(db, |pool| {
        if let Some(row) = sqlx::query_as::<_, CodeRow>(&update).bind(now).bind(code_hash).fetch_optional(pool).await? {
            return Ok(CodeUse::First(row));
        }
        match sqlx::query_as::<_, SeenCode>(&select).bind(code_hash).fetch_optional(pool).await? {
            Some(SeenCode { row, used_at: Some(_) }) => Ok(CodeUse::Reused(row)),
            _ => Ok(CodeUse::Unknown),
        }
    })
}

/// A refresh-token family.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantRow {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub session_id: String,
    pub scope: String,
    pub audience: Option<String>,
    pub auth_time: Millis,
    pub current_hash: String,
    pub previous_hash: Option<String>,
    pub rotated_at: Option<Millis>,
    /// The current token, sealed, while the previous one may still be presented (the leeway).
    pub successor: Option<String>,
    pub created_at: Millis,
    pub last_used_at: Millis,
    pub expires_at: Millis,
    pub idle_expires_at: Millis,
    pub revoked_at: Option<Millis>,
}

const GRANT_COLUMNS: &str = "id, client_id, user_id, session_id, scope, audience, auth_time, current_hash, \
                             previous_hash, rotated_at, successor, created_at, last_used_at, expires_at, \
                             idle_expires_at, revoked_at";

pub async fn insert_grant(db: &Db, row: &GrantRow) -> Result<(), StorageError> {
    let sql = format!(
        "INSERT INTO oauth_grants ({GRANT_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    );
    db_run!(db, |pool| {
        sqlx::query(&sql)
            .bind(&row.id)
            .bind(&row.client_id)
            .bind(&row.user_id)
            .bind(&row.session_id)
            .bind(&row.scope)
            .bind(&row.audience)
            .bind(row.auth_time)
            .bind(&row.current_hash)
            .bind(&row.previous_hash)
            .bind(row.rotated_at)
            .bind(&row.successor)
            .bind(row.created_at)
            .bind(row.last_used_at)
            .bind(row.expires_at)
            .bind(row.idle_expires_at)
            .bind(row.revoked_at)
            .execute(pool)
            .await?;
        Ok(())
    })
}

pub async fn find_grant(db: &Db, id: &str) -> Result<Option<GrantRow>, StorageError> {
    let sql = format!("SELECT {GRANT_COLUMNS} FROM oauth_grants WHERE id = $1");
    db_run!(db, |pool| Ok(sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?))
}

/// A user's live refresh-token families, newest first.
pub async fn grants_of_user(db: &Db, user_id: &str, now: Millis) -> Result<Vec<GrantRow>, StorageError> {
    let sql = format!(
        "SELECT {GRANT_COLUMNS} FROM oauth_grants WHERE user_id = $1 AND revoked_at IS NULL \
         AND expires_at > $2 AND idle_expires_at > $2 ORDER BY created_at DESC, id"
    );
    db_run!(db, |pool| Ok(sqlx::query_as(&sql).bind(user_id).bind(now).fetch_all(pool).await?))
}

/// Revokes every family of a user at once (their access tokens are cut off by subject); returns how many.
pub async fn revoke_user_grants(db: &Db, user_id: &str, now: Millis) -> Result<u64, StorageError> {
    const SQL: &str =
        "UPDATE oauth_grants SET revoked_at = $1, successor = NULL WHERE user_id = $2 AND revoked_at IS NULL";
    db_run!(db, |pool| Ok(sqlx::query(SQL).bind(now).bind(user_id).execute(pool).await?.rows_affected()))
}

/// One rotation of a family: its new state, if its current token is still `presented_hash`, it belongs to
/// `client_id` and it is live (not revoked, not past either lifetime at `now`).
#[derive(Clone, Debug)]
pub struct Rotation {
    pub grant_id: String,
    pub client_id: String,
    pub presented_hash: String,
    pub new_hash: String,
    /// The new token sealed, kept for the leeway.
    pub successor: String,
    pub now: Millis,
    /// The new idle deadline (capped at the family's absolute one by the statement).
    pub idle_expires_at: Millis,
}

/// What a won rotation returns of its family: all a token answer needs.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Rotated {
    pub id: String,
    pub current_hash: String,
    pub user_id: String,
    pub session_id: String,
    pub scope: String,
    pub audience: Option<String>,
    pub auth_time: Millis,
}

/// Applies rotations in one statement (one round trip, one commit: one fsync on SQLite), each
/// conditional on the family's current token: of rotations with the same token exactly one succeeds, in
/// one batch or across batches. Returns, in order, whether each one did.
pub async fn rotate_grants(db: &Db, batch: &[Rotation]) -> Result<Vec<Option<Rotated>>, StorageError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = String::from("WITH v (id, client_id, presented, new_hash, successor, now, idle) AS (VALUES ");
    for i in 0..batch.len() {
        let p = i * 7;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, CAST(${} AS BIGINT), CAST(${} AS BIGINT))",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6,
            p + 7
        ));
    }
    sql.push_str(
        ") UPDATE oauth_grants SET previous_hash = oauth_grants.current_hash, current_hash = v.new_hash, \
         successor = v.successor, rotated_at = v.now, last_used_at = v.now, \
         idle_expires_at = CASE WHEN v.idle < oauth_grants.expires_at THEN v.idle ELSE oauth_grants.expires_at END \
         FROM v WHERE oauth_grants.id = v.id AND oauth_grants.current_hash = v.presented \
         AND oauth_grants.client_id = v.client_id AND oauth_grants.revoked_at IS NULL \
         AND oauth_grants.expires_at > v.now AND oauth_grants.idle_expires_at > v.now \
         RETURNING oauth_grants.id, oauth_grants.current_hash, oauth_grants.user_id, oauth_grants.session_id, \
         oauth_grants.scope, oauth_grants.audience, oauth_grants.auth_time",
    );
    let rows: Vec<Rotated> = db_run!(db, |pool| {
        let mut query = sqlx::query_as(&sql);
        for rotation in batch {
            query = query
                .bind(&rotation.grant_id)
                .bind(&rotation.client_id)
                .bind(&rotation.presented_hash)
                .bind(&rotation.new_hash)
                .bind(&rotation.successor)
                .bind(rotation.now)
                .bind(rotation.idle_expires_at);
        }
        query.fetch_all(pool).await
    })?;
    // A family rotated by two rotations of one batch takes one of them: the one whose new hash it now holds.
    Ok(batch
        .iter()
        .map(|rotation| {
            rows.iter().find(|row| row.id == rotation.grant_id && row.current_hash == rotation.new_hash).cloned()
        })
        .collect())
}

/// Revokes a family; `true` if it was live.
pub async fn revoke_grant(db: &Db, id: &str, now: Millis) -> Result<bool, StorageError> {
    const SQL: &str = "UPDATE oauth_grants SET revoked_at = $1, successor = NULL WHERE id = $2 AND revoked_at IS NULL";
    db_run!(db, |pool| Ok(sqlx::query(SQL).bind(now).bind(id).execute(pool).await?.rows_affected() == 1))
}

/// Forgets sealed successors whose leeway has passed (they are never needed again), and grants and codes
/// that can no longer be used.
pub async fn cleanup(db: &Db, now: Millis, successor_before: Millis) -> Result<(), StorageError> {
    db_run!(db, |pool| {
        sqlx::query("UPDATE oauth_grants SET successor = NULL WHERE successor IS NOT NULL AND rotated_at < $1")
            .bind(successor_before)
            .execute(pool)
            .await?;
        sqlx::query("DELETE FROM oauth_grants WHERE expires_at < $1 OR idle_expires_at < $1")
            .bind(now)
            .execute(pool)
            .await?;
        // A used code is kept for its lifetime and a little more, so a late reuse is still detected.
        sqlx::query("DELETE FROM oauth_codes WHERE expires_at < $1").bind(now - 600_000).execute(pool).await?;
        sqlx::query("DELETE FROM oauth_transactions WHERE expires_at < $1").bind(now).execute(pool).await?;
        sqlx::query("DELETE FROM oauth_revocations WHERE until < $1").bind(now).execute(pool).await?;
        Ok(())
    })
}

/// The scopes (space-separated) a user consented to for a client and audience (`""`: none).
pub async fn consent(db: &Db, user_id: &str, client_id: &str, audience: &str) -> Result<Option<String>, StorageError> {
    const SQL: &str = "SELECT scope FROM oauth_consents WHERE user_id = $1 AND client_id = $2 AND audience = $3";
    db_run!(db, |pool| {
        Ok(sqlx::query_scalar(SQL).bind(user_id).bind(client_id).bind(audience).fetch_optional(pool).await?)
    })
}

/// Records consent to `scope` (the whole set consented so far).
pub async fn save_consent(
    db: &Db,
    user_id: &str,
    client_id: &str,
    audience: &str,
    scope: &str,
    now: Millis,
) -> Result<(), StorageError> {
    const SQL: &str = "INSERT INTO oauth_consents (user_id, client_id, audience, scope, updated_at) \
                       VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, client_id, audience) \
                       DO UPDATE SET scope = excluded.scope, updated_at = excluded.updated_at";
    db_run!(db, |pool| {
        sqlx::query(SQL).bind(user_id).bind(client_id).bind(audience).bind(scope).bind(now).execute(pool).await?;
        Ok(())
    })
}

/// Records a revocation (`kind` `jti` or `family`) until `until`.
pub async fn insert_revocation(db: &Db, id: &str, kind: &str, until: Millis) -> Result<(), StorageError> {
    const SQL: &str = "INSERT INTO oauth_revocations (id, kind, until) VALUES ($1, $2, $3) \
                       ON CONFLICT (id) DO UPDATE SET until = excluded.until";
    db_run!(db, |pool| {
        sqlx::query(SQL).bind(id).bind(kind).bind(until).execute(pool).await?;
        Ok(())
    })
}

/// Records a user's cut-off (kind `subject`): tokens issued at or before `issued_before` refused until
/// `until`; a second cut keeps the later of each.
pub async fn insert_cutoff(db: &Db, subject: &str, issued_before: Millis, until: Millis) -> Result<(), StorageError> {
    const SQL: &str = "INSERT INTO oauth_revocations (id, kind, until, issued_before) VALUES ($1, 'subject', $2, $3) \
        ON CONFLICT (id) DO UPDATE SET \
        until = CASE WHEN excluded.until > oauth_revocations.until THEN excluded.until ELSE oauth_revocations.until END, \
        issued_before = CASE WHEN excluded.issued_before > oauth_revocations.issued_before \
        THEN excluded.issued_before ELSE oauth_revocations.issued_before END";
    db_run!(db, |pool| {
        sqlx::query(SQL).bind(subject).bind(until).bind(issued_before).execute(pool).await?;
        Ok(())
    })
}

/// The revocations still in force: `(id, kind, until, issued_before)` (the last for `subject` cuts only).
pub async fn revocations(db: &Db, now: Millis) -> Result<Vec<(String, String, Millis, Option<Millis>)>, StorageError> {
    const SQL: &str = "SELECT id, kind, until, issued_before FROM oauth_revocations WHERE until > $1";
    db_run!(db, |pool| Ok(sqlx::query_as(SQL).bind(now).fetch_all(pool).await?))
}
