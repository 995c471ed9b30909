//! SQL of the organizations capability.

use crate::{
    clock::Millis,
    db_run,
    storage::{Db, StorageError},
};

use super::{Invitation, InvitationStatus, Member, Membership, Organization, ReceivedInvitation};

const ORG_COLUMNS: &str = "id, name, slug, logo, metadata, created_at";
const MEMBER_SELECT: &str = "SELECT m.id, m.organization_id, m.user_id, m.role, m.created_at, u.name AS user_name, \
    u.email AS user_email, u.image AS user_image FROM members m JOIN users u ON u.id = m.user_id";
/// Clears an organization (`$2`) as the active one of a user's (`$1`) sessions, when they leave it.
const CLEAR_ACTIVE: &str =
    "UPDATE sessions SET active_organization_id = NULL WHERE user_id = $1 AND active_organization_id = $2";
const INVITATION_COLUMNS: &str = "id, organization_id, email, role, status, inviter_id, expires_at, created_at";

/// Creates an organization and its first owner in one transaction.
pub async fn insert_with_owner(
    db: &Db,
    org: &Organization,
    member_id: &str,
    owner_id: &str,
) -> Result<(), StorageError> {
    db_run!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO organizations (id, name, slug, logo, metadata, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&org.id)
        .bind(&org.name)
        .bind(&org.slug)
        .bind(&org.logo)
        .bind(&org.metadata)
        .bind(org.created_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO members (id, organization_id, user_id, role, created_at) VALUES ($1, $2, $3, 'owner', $4)",
        )
        .bind(member_id)
        .bind(&org.id)
        .bind(owner_id)
        .bind(org.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    })
}

/// The organization with this id.
pub async fn find(db: &Db, id: &str) -> Result<Option<Organization>, StorageError> {
    let sql = format!("SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Organization>(&sql).bind(id).fetch_optional(pool).await)?)
}

/// The organization with this id or, failing that, this slug.
pub async fn find_by_id_or_slug(db: &Db, id_or_slug: &str) -> Result<Option<Organization>, StorageError> {
    let sql = format!("SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1 OR slug = $1 ORDER BY (id = $1) DESC");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Organization>(&sql).bind(id_or_slug).fetch_optional(pool).await)?)
}

pub async fn slug_taken(db: &Db, slug: &str) -> Result<bool, StorageError> {
    const SQL: &str = "SELECT COUNT(*) FROM organizations WHERE slug = $1";
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, i64>(SQL).bind(slug).fetch_one(pool).await)? > 0)
}

/// Writes name, slug, logo and metadata.
pub async fn update(db: &Db, org: &Organization) -> Result<(), StorageError> {
    const SQL: &str = "UPDATE organizations SET name = $2, slug = $3, logo = $4, metadata = $5 WHERE id = $1";
    db_run!(db, |pool| {
        sqlx::query(SQL)
            .bind(&org.id)
            .bind(&org.name)
            .bind(&org.slug)
            .bind(&org.logo)
            .bind(&org.metadata)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// Deletes an organization (members, invitations and its API keys cascade) and clears it as sessions'
/// active organization.
pub async fn delete(db: &Db, id: &str) -> Result<(), StorageError> {
    db_run!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query("UPDATE sessions SET active_organization_id = NULL WHERE active_organization_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM organizations WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    })
}

/// The organizations a user belongs to, by membership age.
pub async fn list_for_user(db: &Db, user_id: &str) -> Result<Vec<Organization>, StorageError> {
    const SQL: &str = "SELECT o.id, o.name, o.slug, o.logo, o.metadata, o.created_at FROM organizations o \
        JOIN members m ON m.organization_id = o.id WHERE m.user_id = $1 ORDER BY m.created_at, m.id";
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Organization>(SQL).bind(user_id).fetch_all(pool).await)?)
}

/// A user's memberships with their organizations' slugs, oldest first (tenant resolution).
pub async fn memberships_of(db: &Db, user_id: &str) -> Result<Vec<Membership>, StorageError> {
    const SQL: &str = "SELECT m.organization_id, o.slug, m.role, m.created_at FROM members m \
        JOIN organizations o ON o.id = m.organization_id WHERE m.user_id = $1 ORDER BY m.created_at, m.id";
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Membership>(SQL).bind(user_id).fetch_all(pool).await)?)
}

/// An organization's members, oldest first, with a page window.
pub async fn members(db: &Db, org_id: &str, limit: i64, offset: i64) -> Result<Vec<Member>, StorageError> {
    let sql = format!("{MEMBER_SELECT} WHERE m.organization_id = $1 ORDER BY m.created_at, m.id LIMIT $2 OFFSET $3");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Member>(&sql)
        .bind(org_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await)?)
}

pub async fn member_count(db: &Db, org_id: &str) -> Result<i64, StorageError> {
    const SQL: &str = "SELECT COUNT(*) FROM members WHERE organization_id = $1";
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, i64>(SQL).bind(org_id).fetch_one(pool).await)?)
}

pub async fn owner_count(db: &Db, org_id: &str) -> Result<i64, StorageError> {
    const SQL: &str = "SELECT COUNT(*) FROM members WHERE organization_id = $1 AND role = 'owner'";
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, i64>(SQL).bind(org_id).fetch_one(pool).await)?)
}

/// A member of `org_id` by membership id, user id or (normalised) email.
pub async fn find_member(db: &Db, org_id: &str, id_user_or_email: &str) -> Result<Option<Member>, StorageError> {
    let sql = format!("{MEMBER_SELECT} WHERE m.organization_id = $1 AND (m.id = $2 OR m.user_id = $2 OR u.email = $2)");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Member>(&sql)
        .bind(org_id)
        .bind(id_user_or_email)
        .fetch_optional(pool)
        .await)?)
}

/// A membership by its id, in any organization.
pub async fn find_member_by_id(db: &Db, member_id: &str) -> Result<Option<Member>, StorageError> {
    let sql = format!("{MEMBER_SELECT} WHERE m.id = $1");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Member>(&sql).bind(member_id).fetch_optional(pool).await)?)
}

pub async fn insert_member(
    db: &Db,
    id: &str,
    org_id: &str,
    user_id: &str,
    role: &str,
    now: Millis,
) -> Result<(), StorageError> {
    const SQL: &str =
        "INSERT INTO members (id, organization_id, user_id, role, created_at) VALUES ($1, $2, $3, $4, $5)";
    db_run!(db, |pool| {
        sqlx::query(SQL).bind(id).bind(org_id).bind(user_id).bind(role).bind(now).execute(pool).await?;
        Ok(())
    })
}

/// Changes a member's role, unless that would leave the organization without an owner: the check and
/// the write are one statement, so two concurrent demotions cannot both succeed. Returns false when
/// refused (or the member is gone).
pub async fn set_role_keeping_an_owner(db: &Db, member_id: &str, role: &str) -> Result<bool, StorageError> {
    const SQL: &str = "UPDATE members SET role = $2 WHERE id = $1 AND (role <> 'owner' OR $2 = 'owner' OR \
        (SELECT COUNT(*) FROM members o WHERE o.organization_id = members.organization_id AND o.role = 'owner') > 1)";
    let affected =
        db_run!(db, |pool| sqlx::query(SQL).bind(member_id).bind(role).execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(affected == 1)
}

/// Removes a member, unless it is the organization's last owner (one statement, as above), and clears
/// the organization as the active one of that user's sessions. Returns false when refused or gone.
pub async fn delete_member_keeping_an_owner(db: &Db, member: &Member) -> Result<bool, StorageError> {
    const DELETE: &str = "DELETE FROM members WHERE id = $1 AND (role <> 'owner' OR \
        (SELECT COUNT(*) FROM members o WHERE o.organization_id = $2 AND o.role = 'owner') > 1)";
    db_run!(db, |pool| {
        let mut tx = pool.begin().await?;
        let deleted =
            sqlx::query(DELETE).bind(&member.id).bind(&member.organization_id).execute(&mut *tx).await?.rows_affected();
        if deleted == 1 {
            sqlx::query(CLEAR_ACTIVE).bind(&member.user_id).bind(&member.organization_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(deleted == 1)
    })
}

/// All member user ids of an organization (to evict their cached memberships).
pub async fn member_user_ids(db: &Db, org_id: &str) -> Result<Vec<String>, StorageError> {
    const SQL: &str = "SELECT user_id FROM members WHERE organization_id = $1";
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, String>(SQL).bind(org_id).fetch_all(pool).await)?)
}

pub async fn insert_invitation(db: &Db, inv: &Invitation) -> Result<(), StorageError> {
    let sql = format!("INSERT INTO invitations ({INVITATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
    db_run!(db, |pool| {
        sqlx::query(&sql)
            .bind(&inv.id)
            .bind(&inv.organization_id)
            .bind(&inv.email)
            .bind(&inv.role)
            .bind(inv.status.as_str())
            .bind(&inv.inviter_id)
            .bind(inv.expires_at)
            .bind(inv.created_at)
            .execute(pool)
            .await?;
        Ok(())
    })
}

pub async fn find_invitation(db: &Db, id: &str) -> Result<Option<Invitation>, StorageError> {
    let sql = format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE id = $1");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Invitation>(&sql).bind(id).fetch_optional(pool).await)?)
}

/// The pending invitation of `email` to `org_id`, if any.
pub async fn pending_invitation(db: &Db, org_id: &str, email: &str) -> Result<Option<Invitation>, StorageError> {
    let sql = format!(
        "SELECT {INVITATION_COLUMNS} FROM invitations WHERE organization_id = $1 AND email = $2 AND status = 'pending' \
         ORDER BY created_at DESC"
    );
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Invitation>(&sql).bind(org_id).bind(email).fetch_optional(pool).await)?)
}

/// An organization's invitations, newest first.
pub async fn invitations(db: &Db, org_id: &str) -> Result<Vec<Invitation>, StorageError> {
    let sql =
        format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE organization_id = $1 ORDER BY created_at DESC");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Invitation>(&sql).bind(org_id).fetch_all(pool).await)?)
}

/// The pending invitations addressed to `email`, newest first, with their organizations' names.
pub async fn pending_invitations_to(db: &Db, email: &str) -> Result<Vec<ReceivedInvitation>, StorageError> {
    const SQL: &str = "SELECT i.id, i.organization_id, i.email, i.role, i.status, i.inviter_id, i.expires_at, \
        i.created_at, o.name AS organization_name FROM invitations i JOIN organizations o ON o.id = i.organization_id \
        WHERE i.email = $1 AND i.status = 'pending' ORDER BY i.created_at DESC";
    Ok(db_run!(db, |pool| sqlx::query_as::<_, ReceivedInvitation>(SQL).bind(email).fetch_all(pool).await)?)
}

/// Moves a pending invitation to `status` (and renews its expiry when given); false if it was not pending.
pub async fn set_invitation_status(
    db: &Db,
    id: &str,
    status: InvitationStatus,
    expires_at: Option<Millis>,
) -> Result<bool, StorageError> {
    const SQL: &str =
        "UPDATE invitations SET status = $2, expires_at = COALESCE($3, expires_at) WHERE id = $1 AND status = 'pending'";
    let affected = db_run!(db, |pool| sqlx::query(SQL)
        .bind(id)
        .bind(status.as_str())
        .bind(expires_at)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(affected == 1)
}

/// Accepts a pending invitation and adds the member, atomically (an invitation is used once).
pub async fn accept_invitation(
    db: &Db,
    inv: &Invitation,
    member_id: &str,
    user_id: &str,
    now: Millis,
) -> Result<bool, StorageError> {
    db_run!(db, |pool| {
        let mut tx = pool.begin().await?;
        let updated = sqlx::query("UPDATE invitations SET status = 'accepted' WHERE id = $1 AND status = 'pending'")
            .bind(&inv.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated != 1 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO members (id, organization_id, user_id, role, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(member_id)
            .bind(&inv.organization_id)
            .bind(user_id)
            .bind(&inv.role)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    })
}

/// Sets a session's active organization, or clears it with `None`.
pub async fn set_active(db: &Db, session_id: &str, org_id: Option<&str>) -> Result<(), StorageError> {
    const SQL: &str = "UPDATE sessions SET active_organization_id = $2 WHERE id = $1";
    db_run!(db, |pool| {
        sqlx::query(SQL).bind(session_id).bind(org_id).execute(pool).await?;
        Ok(())
    })
}

/// Creates an organization with no members (the management API's).
pub async fn insert(db: &Db, org: &Organization) -> Result<(), StorageError> {
    const SQL: &str =
        "INSERT INTO organizations (id, name, slug, logo, metadata, created_at) VALUES ($1, $2, $3, $4, $5, $6)";
    db_run!(db, |pool| {
        sqlx::query(SQL)
            .bind(&org.id)
            .bind(&org.name)
            .bind(&org.slug)
            .bind(&org.logo)
            .bind(&org.metadata)
            .bind(org.created_at)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// The organization with this slug.
pub async fn find_by_slug(db: &Db, slug: &str) -> Result<Option<Organization>, StorageError> {
    let sql = format!("SELECT {ORG_COLUMNS} FROM organizations WHERE slug = $1");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Organization>(&sql).bind(slug).fetch_optional(pool).await)?)
}

/// A page of every organization, oldest first, and how many there are.
pub async fn list_all(db: &Db, limit: i64, offset: i64) -> Result<(Vec<Organization>, i64), StorageError> {
    let sql = format!("SELECT {ORG_COLUMNS} FROM organizations ORDER BY created_at, id LIMIT $1 OFFSET $2");
    db_run!(db, |pool| {
        let orgs = sqlx::query_as::<_, Organization>(&sql).bind(limit).bind(offset).fetch_all(pool).await?;
        let total = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM organizations").fetch_one(pool).await?;
        Ok((orgs, total))
    })
}

/// Removes a user from an organization whatever their role (an administrator's act), and clears it as the
/// active organization of their sessions. Returns false if they were not a member.
pub async fn remove_user(db: &Db, org_id: &str, user_id: &str) -> Result<bool, StorageError> {
    db_run!(db, |pool| {
        let mut tx = pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM members WHERE organization_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 1 {
            sqlx::query(CLEAR_ACTIVE).bind(user_id).bind(org_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(deleted == 1)
    })
}
