//! Capability 2, organizations: orgs, members with roles, invitations, and the membership cache that
//! tenant resolution reads on every request (DESIGN.md "Capability 2").
//!
//! Roles are `owner` (everything), `admin` (everything but deleting the org, and never touching owners)
//! and `member` (read only). An organization always keeps at least one owner.

pub mod invitations;
pub mod members;
pub mod routes;
pub mod store;

/// The URL paths of this capability's endpoints, also re-exported by `latchkey::paths`.
pub mod paths {
    /// `POST` create an organization.
    pub const ORG_CREATE: &str = "/api/auth/organization/create";
    /// `POST` update an organization.
    pub const ORG_UPDATE: &str = "/api/auth/organization/update";
    /// `POST` delete an organization.
    pub const ORG_DELETE: &str = "/api/auth/organization/delete";
    /// `GET` the caller's organizations.
    pub const ORG_LIST: &str = "/api/auth/organization/list";
    /// `POST` is a slug free.
    pub const ORG_CHECK_SLUG: &str = "/api/auth/organization/check-slug";
    /// `POST` set the session's active organization.
    pub const ORG_SET_ACTIVE: &str = "/api/auth/organization/set-active";
    /// `GET` an organization with members and invitations.
    pub const ORG_GET_FULL: &str = "/api/auth/organization/get-full-organization";
    /// `GET` an organization's members.
    pub const ORG_LIST_MEMBERS: &str = "/api/auth/organization/list-members";
    /// `GET` the caller's membership in the tenant organization.
    pub const ORG_GET_ACTIVE_MEMBER: &str = "/api/auth/organization/get-active-member";
    /// `GET` the caller's (or a member's) role in the tenant organization.
    pub const ORG_GET_ACTIVE_MEMBER_ROLE: &str = "/api/auth/organization/get-active-member-role";
    /// `GET` an organization's invitations.
    pub const ORG_LIST_INVITATIONS: &str = "/api/auth/organization/list-invitations";
    /// `GET` the invitations addressed to the caller.
    pub const ORG_LIST_USER_INVITATIONS: &str = "/api/auth/organization/list-user-invitations";
    /// `POST` invite a member.
    pub const ORG_INVITE_MEMBER: &str = "/api/auth/organization/invite-member";
    /// `POST` accept an invitation.
    pub const ORG_ACCEPT_INVITATION: &str = "/api/auth/organization/accept-invitation";
    /// `POST` reject an invitation.
    pub const ORG_REJECT_INVITATION: &str = "/api/auth/organization/reject-invitation";
    /// `POST` cancel an invitation.
    pub const ORG_CANCEL_INVITATION: &str = "/api/auth/organization/cancel-invitation";
    /// `POST` remove a member.
    pub const ORG_REMOVE_MEMBER: &str = "/api/auth/organization/remove-member";
    /// `POST` change a member's role.
    pub const ORG_UPDATE_MEMBER_ROLE: &str = "/api/auth/organization/update-member-role";
    /// `POST` leave an organization.
    pub const ORG_LEAVE: &str = "/api/auth/organization/leave";
}

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    audit::{self, AuditEvent},
    cache::TtlCache,
    clock::{iso8601, Millis},
    storage::{notify, Db, StorageError},
};

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
    /// Display name; the API takes 1–256 characters and stores them trimmed.
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
    /// Organization id (`org_…`).
    pub id: String,
    /// Name.
    pub name: String,
    /// Unique, URL-safe handle: 1–64 of `a-z 0-9 -`; `x-tenant-id` may name the organization by it.
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
    pub organization_id: String,
    pub user_id: String,
    /// `owner`, `admin` or `member`.
    pub role: String,
    /// Unix ms.
    pub created_at: Millis,
    pub user_name: String,
    pub user_email: String,
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
    /// User id (`usr_…`).
    pub id: String,
    /// Name.
    pub name: String,
    /// The user's email address, normalised (trimmed, lower case).
    pub email: String,
    /// Image URL.
    pub image: Option<String>,
}

/// The JSON shape of a member.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    /// Membership id (`mem_…`).
    pub id: String,
    /// Organization id.
    pub organization_id: String,
    /// User id.
    pub user_id: String,
    /// `owner`, `admin` or `member`.
    pub role: String,
    /// ISO 8601.
    pub created_at: String,
    /// The member's user: id, name, email and image.
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

/// Where an invitation stands. Only a pending one may be accepted, rejected or canceled, and each of
/// those ends it for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvitationStatus {
    /// Waiting for the invitee (until it expires).
    Pending,
    /// The invitee joined.
    Accepted,
    /// The invitee declined.
    Rejected,
    /// An owner or admin withdrew it.
    Canceled,
}

impl InvitationStatus {
    /// The stored and shown name (Better Auth's).
    pub const fn as_str(self) -> &'static str {
        match self {
            InvitationStatus::Pending => "pending",
            InvitationStatus::Accepted => "accepted",
            InvitationStatus::Rejected => "rejected",
            InvitationStatus::Canceled => "canceled",
        }
    }
}

impl TryFrom<String> for InvitationStatus {
    type Error = String;

    fn try_from(stored: String) -> Result<Self, Self::Error> {
        match stored.as_str() {
            "pending" => Ok(InvitationStatus::Pending),
            "accepted" => Ok(InvitationStatus::Accepted),
            "rejected" => Ok(InvitationStatus::Rejected),
            "canceled" => Ok(InvitationStatus::Canceled),
            _ => Err(format!("unknown invitation status `{stored}`")),
        }
    }
}

/// An invitation as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Invitation {
    /// `inv_…`
    pub id: String,
    pub organization_id: String,
    /// Invitee email (normalised).
    pub email: String,
    /// Role granted on acceptance.
    pub role: String,
    /// Where it stands (stored as its lower-case name).
    #[sqlx(try_from = "String")]
    pub status: InvitationStatus,
    /// User id of the owner or admin who invited.
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
    /// Invitation id (`inv_…`): what the invitee accepts or rejects.
    pub id: String,
    /// Organization id.
    pub organization_id: String,
    /// Invitee email address, normalised (trimmed, lower case).
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
            status: inv.status.as_str().to_owned(),
            inviter_id: inv.inviter_id.clone(),
            expires_at: iso8601(inv.expires_at),
            created_at: iso8601(inv.created_at),
        }
    }
}

/// An invitation with its organization's name (what the invitee is shown).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ReceivedInvitation {
    #[sqlx(flatten)]
    pub invitation: Invitation,
    pub organization_name: String,
}

/// The JSON shape of a received invitation (Better Auth's `list-user-invitations` item).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedInvitationView {
    /// The invitation's fields, inline.
    #[serde(flatten)]
    pub invitation: InvitationView,
    /// The organization's name.
    pub organization_name: String,
}

impl From<&ReceivedInvitation> for ReceivedInvitationView {
    fn from(received: &ReceivedInvitation) -> Self {
        ReceivedInvitationView {
            invitation: InvitationView::from(&received.invitation),
            organization_name: received.organization_name.clone(),
        }
    }
}

/// What a caller of the organization endpoints can act on. The codes, messages and statuses are Better
/// Auth's (its organization plugin's `ORGANIZATION_ERROR_CODES`, thrown with the status noted), because
/// its `organizationClient` and the apps built on it match on them; Latchkey's own codes remain only
/// where Better Auth has no such case. Mapped to `ApiError` once, in `routes.rs`.
#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    /// 400 `ORGANIZATION_NOT_FOUND`: the named organization does not exist (or no longer does).
    #[error("organization not found")]
    OrganizationNotFound,
    /// 400 `NO_ACTIVE_ORGANIZATION`: none named, and the caller belongs to none.
    #[error("no active organization")]
    NoActiveOrganization,
    /// 400 `USER_IS_NOT_A_MEMBER_OF_THE_ORGANIZATION` (update, delete).
    #[error("user is not a member of the organization")]
    NotAMemberToChange,
    /// 403 `USER_IS_NOT_A_MEMBER_OF_THE_ORGANIZATION` (get-full-organization, set-active).
    #[error("user is not a member of the organization")]
    NotAMemberToRead,
    /// 403 `YOU_ARE_NOT_A_MEMBER_OF_THIS_ORGANIZATION` (list-members, get-active-member-role,
    /// list-invitations).
    #[error("you are not a member of this organization")]
    YouAreNotAMember,
    /// 400 `MEMBER_NOT_FOUND`: the caller (get-active-member, invite, cancel, remove, update-role, leave)
    /// or the member acted on is not a member.
    #[error("member not found")]
    MemberNotFound,
    /// 401 `ORGANIZATION_ACCESS_DENIED` (Latchkey's): an org-scoped API key used in another organization;
    /// Better Auth has no org-scoped keys.
    #[error("outside the API key's organization")]
    OutsideKeyScope,
    /// 400 `ORGANIZATION_ALREADY_EXISTS`: create with a taken slug.
    #[error("organization already exists")]
    AlreadyExists,
    /// 400 `ORGANIZATION_SLUG_ALREADY_TAKEN`: check-slug, or update to a taken slug.
    #[error("slug taken")]
    SlugTaken,
    /// 400 `INVALID_SLUG` (Latchkey's: Better Auth does not validate slugs).
    #[error("invalid slug")]
    InvalidSlug,
    /// 400 `ROLE_NOT_FOUND`: not owner, admin or member.
    #[error("role not found")]
    RoleNotFound,
    /// 403 `YOU_ARE_NOT_ALLOWED_TO_UPDATE_THIS_ORGANIZATION`.
    #[error("not allowed to update the organization")]
    NotAllowedToUpdate,
    /// 403 `YOU_ARE_NOT_ALLOWED_TO_DELETE_THIS_ORGANIZATION`.
    #[error("not allowed to delete the organization")]
    NotAllowedToDelete,
    /// 403 `YOU_ARE_NOT_ALLOWED_TO_INVITE_USERS_TO_THIS_ORGANIZATION`.
    #[error("not allowed to invite")]
    NotAllowedToInvite,
    /// 403 `YOU_ARE_NOT_ALLOWED_TO_INVITE_USER_WITH_THIS_ROLE`: only owners invite owners.
    #[error("not allowed to invite with this role")]
    NotAllowedToInviteWithRole,
    /// 403 `YOU_ARE_NOT_ALLOWED_TO_CANCEL_THIS_INVITATION`.
    #[error("not allowed to cancel the invitation")]
    NotAllowedToCancel,
    /// 403 `YOU_ARE_NOT_ALLOWED_TO_LIST_INVITATIONS`: members see no invitations.
    #[error("not allowed to list invitations")]
    NotAllowedToListInvitations,
    /// 401 `YOU_ARE_NOT_ALLOWED_TO_DELETE_THIS_MEMBER` (401 as Better Auth).
    #[error("not allowed to remove the member")]
    NotAllowedToRemove,
    /// 403 `YOU_ARE_NOT_ALLOWED_TO_UPDATE_THIS_MEMBER`.
    #[error("not allowed to update the member")]
    NotAllowedToUpdateMember,
    /// 400 `YOU_CANNOT_LEAVE_THE_ORGANIZATION_AS_THE_ONLY_OWNER`: leaving as, or removing, the last
    /// owner — and, as Better Auth, a non-owner removing an owner.
    #[error("the only owner cannot leave")]
    OnlyOwnerCannotLeave,
    /// 400 `YOU_CANNOT_LEAVE_THE_ORGANIZATION_WITHOUT_AN_OWNER`: the last owner demoting themselves.
    #[error("the organization would have no owner")]
    WouldHaveNoOwner,
    /// 400 `USER_IS_ALREADY_A_MEMBER_OF_THIS_ORGANIZATION`.
    #[error("already a member")]
    AlreadyAMember,
    /// 400 `USER_IS_ALREADY_INVITED_TO_THIS_ORGANIZATION`.
    #[error("already invited")]
    AlreadyInvited,
    /// 400 `INVITATION_NOT_FOUND`: unknown, no longer pending, or expired (Better Auth answers all three
    /// alike).
    #[error("invitation not found")]
    InvitationNotFound,
    /// 403 `YOU_ARE_NOT_THE_RECIPIENT_OF_THE_INVITATION`.
    #[error("not the recipient of the invitation")]
    NotTheRecipient,
    /// 400 `INVALID_EMAIL`.
    #[error("invalid email")]
    InvalidEmail,
    /// 400 `VALIDATION_ERROR` with the message.
    #[error("{0}")]
    Validation(String),
    /// 500.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StorageError> for OrgError {
    fn from(error: StorageError) -> Self {
        OrgError::Internal(error.into())
    }
}

/// True for a valid slug: 1–64 of `a-z 0-9 -`.
pub fn valid_slug(slug: &str) -> bool {
    (1..=64).contains(&slug.len()) && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// One of a user's memberships, as tenant resolution needs it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Membership {
    pub organization_id: String,
    /// Organization slug (`x-tenant-id` may name it).
    pub slug: String,
    /// `owner`, `admin` or `member`; [`Membership::role`] reads anything else as `member`.
    pub role: String,
    /// Joined, unix ms: the earliest is the "first organization".
    pub created_at: Millis,
}

impl Membership {
    /// The parsed role; an unknown stored role counts as the least privileged, `member`.
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Member)
    }
}

/// What the organizations capability keeps in memory: users' memberships (tenant resolution).
#[derive(Debug)]
pub struct OrgState {
    pub memberships: MembershipCache,
}

impl OrgState {
    /// Empty; memberships live `ttl` ms without an event.
    pub fn new(ttl: Millis) -> OrgState {
        OrgState { memberships: MembershipCache::new(ttl) }
    }

    /// Applies an invalidation that concerns memberships.
    pub fn apply(&self, event: &notify::CacheEvent) {
        if let notify::CacheEvent::MembershipsChanged { user_id } = event {
            self.memberships.evict(user_id);
        }
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
        notify::publish_event(db, &notify::CacheEvent::MembershipsChanged { user_id: user_id.to_string() }, now)
            .await?;
    }
    Ok(())
}

/// `VALIDATION_ERROR` unless `value` is 1–`max` characters and not blank.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), OrgError> {
    if value.trim().is_empty() || value.chars().count() > max {
        return Err(OrgError::Validation(format!("{field} must be 1-{max} characters")));
    }
    Ok(())
}

/// `INVALID_SLUG` unless [`valid_slug`].
pub fn require_valid_slug(slug: &str) -> Result<(), OrgError> {
    if valid_slug(slug) {
        Ok(())
    } else {
        Err(OrgError::InvalidSlug)
    }
}

/// An organization to create.
pub struct NewOrganization {
    pub name: String,
    pub slug: String,
    pub logo: Option<String>,
    /// JSON text.
    pub metadata: Option<String>,
}

/// Creates an organization with `owner_id` as its owner: checks the fields, refuses a taken slug
/// (`ORGANIZATION_ALREADY_EXISTS`), invalidates the owner's memberships everywhere and records the
/// change. The endpoint and `latchkey admin create-org` both create organizations here.
pub async fn create_organization(
    db: &Db,
    cache: &MembershipCache,
    new: NewOrganization,
    owner_id: &str,
    actor_id: &str,
    now: Millis,
) -> Result<Organization, OrgError> {
    check_text("name", &new.name, 256)?;
    require_valid_slug(&new.slug)?;
    if let Some(logo) = &new.logo {
        check_text("logo", logo, 2048)?;
    }
    let org = Organization {
        id: crate::crypto::new_id("org"),
        name: new.name.trim().to_owned(),
        slug: new.slug,
        logo: new.logo,
        metadata: new.metadata,
        created_at: now,
    };
    match store::insert_with_owner(db, &org, &crate::crypto::new_id("mem"), owner_id).await {
        Ok(()) => {}
        Err(StorageError::UniqueViolation(_)) => return Err(OrgError::AlreadyExists),
        Err(error) => return Err(error.into()),
    }
    memberships_changed(db, cache, &[owner_id.to_owned()], now).await?;
    audit::emit(AuditEvent::OrganizationChanged {
        actor_id,
        organization_id: &org.id,
        action: "created",
        target: None,
    });
    Ok(org)
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
