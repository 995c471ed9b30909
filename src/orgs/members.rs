//! Members of the organization plugin (Better Auth shapes and codes): list them, the caller's own
//! membership and role, remove a member, change a role, leave. The last owner always stays.

use axum::{extract::State, Json};
use serde::{Deserialize, Serialize};

use super::paths;
use super::{
    routes::{acting_in, memberships_changed, parse_role, OrgQuery, OrganizationRef, AS_ACTOR, AS_MEMBER},
    store, Member, MemberView, OrgError, Role,
};
// The routes sit above `state` and `principal`, which are built on the domain half of this capability
// (and of the others): the folders meet in a circle, the files do not (README, "Code tour").
use crate::{
    audit::{self, AuditEvent},
    error::{ApiError, ErrorBody},
    http::extractors::{ApiJson, ApiQuery},
    principal::Principal,
    state::AppState,
};

/// `list-members` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MembersPage {
    /// This page of members, oldest first.
    pub members: Vec<MemberView>,
    /// Number of members in the organization, over all pages.
    pub total: i64,
}

/// A page of the organization's members, oldest first; any member may list them.
#[utoipa::path(get, path = paths::ORG_LIST_MEMBERS, tag = "organizations", params(OrgQuery),
    responses((status = 200, body = MembersPage), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn list_members(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<OrgQuery>,
) -> Result<Json<MembersPage>, ApiError> {
    let (_, org) = acting_in(&state, &principal, query.named(), AS_MEMBER).await?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let offset = query.offset.unwrap_or(0).max(0);
    let members = store::members(&state.db, &org.id, limit, offset).await?;
    let total = store::member_count(&state.db, &org.id).await?;
    Ok(Json(MembersPage { members: members.iter().map(MemberView::from).collect(), total }))
}

/// The caller's own membership (with its user) in the tenant organization: the session's active one,
/// else the first joined; an API key's `x-tenant-id`, else its organization.
#[utoipa::path(get, path = paths::ORG_GET_ACTIVE_MEMBER, tag = "organizations",
    responses((status = 200, body = MemberView), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody)))]
pub async fn get_active_member(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<MemberView>, ApiError> {
    let (_, org) = acting_in(&state, &principal, None, AS_ACTOR).await?;
    let member = store::find_member(&state.db, &org.id, &principal.user.id).await?.ok_or(OrgError::MemberNotFound)?;
    Ok(Json(MemberView::from(&member)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ActiveMemberRoleQuery {
    /// Another member's user id (default: the caller).
    pub user_id: Option<String>,
    /// Organization id (default: the tenant).
    pub organization_id: Option<String>,
    /// Organization slug (default: the tenant).
    pub organization_slug: Option<String>,
}

/// `{role}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MemberRole {
    /// `owner`, `admin` or `member`.
    pub role: String,
}

/// The caller's role (or, with `userId`, another member's) in the named or tenant organization.
#[utoipa::path(get, path = paths::ORG_GET_ACTIVE_MEMBER_ROLE, tag = "organizations", params(ActiveMemberRoleQuery),
    responses((status = 200, body = MemberRole), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn get_active_member_role(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ActiveMemberRoleQuery>,
) -> Result<Json<MemberRole>, ApiError> {
    let named = query.organization_id.as_deref().or(query.organization_slug.as_deref());
    let (tenant, org) = acting_in(&state, &principal, named, AS_MEMBER).await?;
    let role = match query.user_id.as_deref().filter(|id| *id != principal.user.id) {
        None => tenant.role.as_str().to_owned(),
        // Only a member id, user id or email of this organization matches; anyone else is, as in Better
        // Auth, "not a member".
        Some(user_id) => {
            let member = store::find_member(&state.db, &org.id, user_id).await?.ok_or(OrgError::YouAreNotAMember)?;
            if member.user_id != user_id {
                return Err(OrgError::YouAreNotAMember.into());
            }
            member.role
        }
    };
    Ok(Json(MemberRole { role }))
}

/// Remove-member body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoveMemberRequest {
    /// Membership id, user id or email.
    pub member_id_or_email: String,
    /// Organization (default: the tenant).
    pub organization_id: Option<String>,
}

/// `{member}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MemberEnvelope {
    /// The removed membership, as it was.
    pub member: MemberView,
}

async fn remove(state: &AppState, actor: &Principal, member: &Member, action: &str) -> Result<(), ApiError> {
    if !store::delete_member_keeping_an_owner(&state.db, member).await? {
        let refused =
            if member.role() == Role::Owner { OrgError::OnlyOwnerCannotLeave } else { OrgError::MemberNotFound };
        return Err(refused.into());
    }
    memberships_changed(state, std::slice::from_ref(&member.user_id)).await?;
    audit::emit(AuditEvent::OrganizationChanged {
        actor_id: &actor.user.id,
        organization_id: &member.organization_id,
        action,
        target: Some(&member.user_id),
    });
    Ok(())
}

/// Removes a member (owners and admins; admins cannot remove owners; the last owner stays).
#[utoipa::path(post, path = paths::ORG_REMOVE_MEMBER, tag = "organizations", request_body = RemoveMemberRequest,
    responses((status = 200, body = MemberEnvelope),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, `MEMBER_NOT_FOUND`, \
            `YOU_CANNOT_LEAVE_THE_ORGANIZATION_AS_THE_ONLY_OWNER` (also an admin removing an owner, as Better Auth), \
            `NO_ACTIVE_ORGANIZATION`"),
        (status = 401, body = ErrorBody,
            description = "`UNAUTHORIZED`; `YOU_ARE_NOT_ALLOWED_TO_DELETE_THIS_MEMBER` (Better Auth's status); \
            `ORGANIZATION_ACCESS_DENIED` (an org-scoped key in another organization)"),
        (status = 403, body = ErrorBody,
            description = "`INSUFFICIENT_PERMISSIONS` (API key), `INVALID_ORIGIN`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn remove_member(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<RemoveMemberRequest>,
) -> Result<Json<MemberEnvelope>, ApiError> {
    let (tenant, org) = acting_in(&state, &principal, body.organization_id.as_deref(), AS_ACTOR).await?;
    principal.require_permission("member", "delete")?;
    let needle = body.member_id_or_email.trim().to_lowercase();
    let member = match store::find_member(&state.db, &org.id, body.member_id_or_email.trim()).await? {
        Some(member) => member,
        None => store::find_member(&state.db, &org.id, &needle).await?.ok_or(OrgError::MemberNotFound)?,
    };
    // Better Auth's order and codes: an owner can be removed only by an owner, and a non-owner trying
    // hears the "only owner" answer; the right to remove anyone is checked after that (and is a 401).
    if member.role() == Role::Owner && tenant.role != Role::Owner {
        return Err(OrgError::OnlyOwnerCannotLeave.into());
    }
    if !tenant.role.can_manage() {
        return Err(OrgError::NotAllowedToRemove.into());
    }
    remove(&state, &principal, &member, "member.removed").await?;
    Ok(Json(MemberEnvelope { member: MemberView::from(&member) }))
}

/// Update-role body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRoleRequest {
    /// Membership id; a member's user id or email also matches.
    pub member_id: String,
    /// `owner`, `admin` or `member`; only owners grant or take away `owner`.
    pub role: String,
    /// Organization (default: the tenant).
    pub organization_id: Option<String>,
}

/// Changes a member's role (owners and admins; only owners grant or take away `owner`; the last owner
/// cannot be demoted).
#[utoipa::path(post, path = paths::ORG_UPDATE_MEMBER_ROLE, tag = "organizations", request_body = UpdateRoleRequest,
    responses((status = 200, body = MemberView),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, `ROLE_NOT_FOUND`, `MEMBER_NOT_FOUND`, \
            `YOU_CANNOT_LEAVE_THE_ORGANIZATION_WITHOUT_AN_OWNER`, `NO_ACTIVE_ORGANIZATION`"),
        (status = 401, body = ErrorBody,
            description = "`UNAUTHORIZED`; `ORGANIZATION_ACCESS_DENIED` (an org-scoped key in another organization)"),
        (status = 403, body = ErrorBody,
            description = "`YOU_ARE_NOT_ALLOWED_TO_UPDATE_THIS_MEMBER` (not an owner or admin; only owners grant or \
            take `owner`), \
            `INSUFFICIENT_PERMISSIONS` (API key), `INVALID_ORIGIN`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn update_member_role(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<UpdateRoleRequest>,
) -> Result<Json<MemberView>, ApiError> {
    let (tenant, org) = acting_in(&state, &principal, body.organization_id.as_deref(), AS_ACTOR).await?;
    principal.require_permission("member", "update")?;
    let role = parse_role(&body.role)?;
    let mut member = store::find_member(&state.db, &org.id, &body.member_id).await?.ok_or(OrgError::MemberNotFound)?;
    if (member.role() == Role::Owner || role == Role::Owner) && tenant.role != Role::Owner {
        return Err(OrgError::NotAllowedToUpdateMember.into());
    }
    if !tenant.role.can_manage() {
        return Err(OrgError::NotAllowedToUpdateMember.into());
    }
    // Refused only when the last owner demotes themselves (another owner's demotion leaves this one).
    if !store::set_role_keeping_an_owner(&state.db, &member.id, role.as_str()).await? {
        return Err(OrgError::WouldHaveNoOwner.into());
    }
    member.role = role.as_str().to_owned();
    memberships_changed(&state, std::slice::from_ref(&member.user_id)).await?;
    audit::emit(AuditEvent::OrganizationChanged {
        actor_id: &principal.user.id,
        organization_id: &org.id,
        action: "member.role_changed",
        target: Some(&member.user_id),
    });
    Ok(Json(MemberView::from(&member)))
}

/// Leaves an organization (the last owner cannot).
#[utoipa::path(post, path = paths::ORG_LEAVE, tag = "organizations", request_body = OrganizationRef,
    responses((status = 200, body = MemberView),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, `MEMBER_NOT_FOUND`, \
            `YOU_CANNOT_LEAVE_THE_ORGANIZATION_AS_THE_ONLY_OWNER`, `NO_ACTIVE_ORGANIZATION`"),
        (status = 401, body = ErrorBody,
            description = "`UNAUTHORIZED`; `ORGANIZATION_ACCESS_DENIED` (an org-scoped key in another organization)"),
        (status = 403, body = ErrorBody,
            description = "`INSUFFICIENT_PERMISSIONS` (API key), `INVALID_ORIGIN`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn leave(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<OrganizationRef>,
) -> Result<Json<MemberView>, ApiError> {
    let (_, org) = acting_in(&state, &principal, Some(&body.organization_id), AS_ACTOR).await?;
    principal.require_permission("member", "delete")?;
    let member = store::find_member(&state.db, &org.id, &principal.user.id).await?.ok_or(OrgError::MemberNotFound)?;
    remove(&state, &principal, &member, "member.left").await?;
    Ok(Json(MemberView::from(&member)))
}
