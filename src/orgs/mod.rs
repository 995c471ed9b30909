//! Capability 2, organizations: orgs, members with roles, invitations, and the membership cache that
//! tenant resolution reads on every request (DESIGN.md "Capability 2").
//!
//! Roles are `owner` (everything), `admin` (everything but deleting the org, and never touching owners)
//! and `member` (read only). An organization always keeps at least one owner.

pub mod routes;
pub mod store;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    cache::TtlCache,
    clock::{iso8601, Millis},
    storage::{notify, Db, StorageError},
};

/// NOTIFY payload prefix: the memberships of this user changed.
pub const MEMBERS_EVENT: &str = "members:";

/// A member's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including deleting the organization.
    Owner,
    /// Manages members and invitations, but not owners.
    Admin,
    /// Reads.
    Member,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Parses a stored or requested role.
    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }

    /// Owners and admins manage the organization's members and invitations.
    pub fn can_manage(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

/// An organization as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Organization {
    /// `org_…`
    pub id: String,
    /// Display name.
    pub name: String,
    /// Unique, URL-safe.
    pub slug: String,
    /// Logo URL.
    pub logo: Option<String>,
    /// JSON text.
    pub metadata: Option<String>,
    /// Unix ms.
    pub created_at: Millis,
}

/// The JSON shape of an organization (Better Auth's).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Slug.
    pub slug: String,
    /// Logo URL.
    pub logo: Option<String>,
    /// Arbitrary JSON.
    #[schema(value_type = Option<serde_json::Value>)]
    pub metadata: Option<serde_json::Value>,
    /// ISO 8601.
    pub created_at: String,
}

impl From<&Organization> for OrganizationView {
    fn from(org: &Organization) -> Self {
        OrganizationView {
            id: org.id.clone(),
            name: org.name.clone(),
            slug: org.slug.clone(),
            logo: org.logo.clone(),
            metadata: org.metadata.as_deref().and_then(|m| serde_json::from_str(m).ok()),
            created_at: iso8601(org.created_at),
        }
    }
}

/// A membership as stored, with the member's public user fields.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Member {
    /// `mem_…`
    pub id: String,
    /// Organization.
    pub organization_id: String,
    /// User.
    pub user_id: String,
    /// `owner`, `admin` or `member`.
    pub role: String,
    /// Unix ms.
    pub created_at: Millis,
    /// The user's name.
    pub user_name: String,
    /// The user's email.
    pub user_email: String,
    /// The user's image.
    pub user_image: Option<String>,
}

impl Member {
    /// The member's role (an unknown stored role counts as the least privileged).
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Member)
    }
}

/// The public fields of a member's user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberUserView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Image URL.
    pub image: Option<String>,
}

/// The JSON shape of a member.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    /// Membership id.
    pub id: String,
    /// Organization id.
    pub organization_id: String,
    /// User id.
    pub user_id: String,
    /// Role.
    pub role: String,
    /// ISO 8601.
    pub created_at: String,
    /// The user.
    pub user: MemberUserView,
}

impl From<&Member> for MemberView {
    fn from(member: &Member) -> Self {
        MemberView {
            id: member.id.clone(),
            organization_id: member.organization_id.clone(),
            user_id: member.user_id.clone(),
            role: member.role.clone(),
            created_at: iso8601(member.created_at),
            user: MemberUserView {
                id: member.user_id.clone(),
                name: member.user_name.clone(),
                email: member.user_email.clone(),
                image: member.user_image.clone(),
            },
        }
    }
}

/// Invitation lifetime (Better Auth's default: 48 hours).
pub const INVITATION_LIFETIME: Millis = 48 * 3_600_000;

/// An invitation as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Invitation {
    /// `inv_…`
    pub id: String,
    /// Organization.
    pub organization_id: String,
    /// Invitee email (normalised).
    pub email: String,
    /// Role granted on acceptance.
    pub role: String,
    /// `pending`, `accepted`, `rejected` or `canceled`.
    pub status: String,
    /// Who invited.
    pub inviter_id: String,
    /// Unix ms.
    pub expires_at: Millis,
    /// Unix ms.
    pub created_at: Millis,
}

/// The JSON shape of an invitation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationView {
    /// Id.
    pub id: String,
    /// Organization id.
    pub organization_id: String,
    /// Invitee email.
    pub email: String,
    /// Role granted on acceptance.
    pub role: String,
    /// `pending`, `accepted`, `rejected` or `canceled`.
    pub status: String,
    /// Inviter's user id.
    pub inviter_id: String,
    /// ISO 8601.
    pub expires_at: String,
    /// ISO 8601.
    pub created_at: String,
}

impl From<&Invitation> for InvitationView {
    fn from(inv: &Invitation) -> Self {
        InvitationView {
            id: inv.id.clone(),
            organization_id: inv.organization_id.clone(),
            email: inv.email.clone(),
            role: inv.role.clone(),
            status: inv.status.clone(),
            inviter_id: inv.inviter_id.clone(),
            expires_at: iso8601(inv.expires_at),
            created_at: iso8601(inv.created_at),
        }
    }
}

/// True for a valid slug: 1–64 of `a-z 0-9 -`.
pub fn valid_slug(slug: &str) -> bool {
    (1..=64).contains(&slug.len()) && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// One of a user's memberships, as tenant resolution needs it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Membership {
    /// Organization id.
    pub organization_id: String,
    /// Organization slug (`x-tenant-id` may name it).
    pub slug: String,
    /// Role.
    pub role: String,
    /// Joined, unix ms: the earliest is the "first organization".
    pub created_at: Millis,
}

impl Membership {
    /// The role.
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Member)
    }
}

/// Each user's memberships, cached so that tenant resolution reads no DB per request. Changes made
/// through Latchkey evict the user's entry on every node (directly, and through NOTIFY / the
/// `cache_events` poll); `ttl` bounds anything else.
#[derive(Debug)]
pub struct MembershipCache {
    entries: TtlCache<Vec<Membership>>,
    ttl: Millis,
}

impl MembershipCache {
    /// An empty cache whose entries live `ttl` ms.
    pub fn new(ttl: Millis) -> MembershipCache {
        MembershipCache { entries: TtlCache::default(), ttl }
    }

    /// The user's memberships, oldest first.
    pub async fn get(&self, db: &Db, user_id: &str, now: Millis) -> Result<Arc<Vec<Membership>>, StorageError> {
        if let Some(memberships) = self.entries.get(user_id, now) {
            return Ok(memberships);
        }
        let memberships = Arc::new(store::memberships_of(db, user_id).await?);
        self.entries.insert(user_id, Arc::clone(&memberships), now.saturating_add(self.ttl), now);
        Ok(memberships)
    }

    /// Forgets one user's memberships.
    pub fn evict(&self, user_id: &str) {
        self.entries.remove(user_id);
    }

    /// Forgets everything (notifications may have been missed).
    pub fn clear(&self) {
        self.entries.clear();
    }

    /// Drops expired entries (maintenance).
    pub fn prune(&self, now: Millis) {
        self.entries.prune(now);
    }
}

/// Evicts `user_ids`' memberships here and on every other node.
pub async fn memberships_changed(
    db: &Db,
    cache: &MembershipCache,
    user_ids: &[String],
    now: Millis,
) -> Result<(), StorageError> {
    for user_id in user_ids {
        cache.evict(user_id);
        notify::publish_event(db, &format!("{MEMBERS_EVENT}{user_id}"), now).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lowercase_words() {
        assert!(valid_slug("acme-2"));
        assert!(!valid_slug(""));
        assert!(!valid_slug("Acme"));
        assert!(!valid_slug("a b"));
        assert!(!valid_slug(&"a".repeat(65)));
    }

    #[test]
    fn roles_round_trip_and_only_owners_and_admins_manage() {
        for role in [Role::Owner, Role::Admin, Role::Member] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert!(Role::Owner.can_manage() && Role::Admin.can_manage() && !Role::Member.can_manage());
        assert_eq!(Role::parse("root"), None);
    }
}
