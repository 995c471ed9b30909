//! Invitations of the organization plugin (Better Auth shapes and codes): invite, accept, reject, cancel,
//! and the two lists. An invitation lives 48 hours; only the invited email's owner may accept or reject
//! it; owners and admins invite (admins not as owners) and cancel.

use axum::{extract::State, response::Response, Json};
use serde::{Deserialize, Serialize};

use super::paths;
use super::{
    routes::{acting_in, memberships_changed, parse_role, visible_invitations, with_active_org, AS_ACTOR, AS_MEMBER},
    store, Invitation, InvitationStatus, InvitationView, MemberView, OrgError, ReceivedInvitationView, Role,
    INVITATION_LIFETIME,
};
// The routes sit above `state` and `principal`, which are built on the domain half of this capability
// (and of the others): the folders meet in a circle, the files do not (README, "Code tour").
use crate::{
    accounts::email::Email,
    audit::{self, AuditEvent},
    crypto,
    error::{ApiError, ErrorBody},
    http::extractors::{ApiJson, ApiQuery},
    principal::Principal,
    state::AppState,
};

/// Invite body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InviteRequest {
    /// Invitee email; trimmed and lower-cased, as account emails are.
    pub email: String,
    /// Role on acceptance.
    pub role: String,
    /// Organization (default: the tenant).
    pub organization_id: Option<String>,
    /// Renew a pending invitation instead of refusing.
    #[serde(default)]
    pub resend: bool,
}

/// Invites someone by email (owners and admins; only owners invite owners). Email delivery comes with a
/// later capability: the invitation id is what the invitee accepts.
#[utoipa::path(post, path = paths::ORG_INVITE_MEMBER, tag = "organizations", request_body = InviteRequest,
    responses((status = 200, body = InvitationView),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, `ROLE_NOT_FOUND`, `INVALID_EMAIL`, \
            `USER_IS_ALREADY_A_MEMBER_OF_THIS_ORGANIZATION`, `USER_IS_ALREADY_INVITED_TO_THIS_ORGANIZATION`, \
            `MEMBER_NOT_FOUND` (the caller is not a member), `ORGANIZATION_NOT_FOUND`, `NO_ACTIVE_ORGANIZATION`"),
        (status = 401, body = ErrorBody,
            description = "`UNAUTHORIZED`; `ORGANIZATION_ACCESS_DENIED` (an org-scoped key in another organization)"),
        (status = 403, body = ErrorBody,
            description = "`YOU_ARE_NOT_ALLOWED_TO_INVITE_USERS_TO_THIS_ORGANIZATION`, \
            `YOU_ARE_NOT_ALLOWED_TO_INVITE_USER_WITH_THIS_ROLE`, \
            `INSUFFICIENT_PERMISSIONS` (API key), `INVALID_ORIGIN`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn invite_member(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<InviteRequest>,
) -> Result<Json<InvitationView>, ApiError> {
    let (tenant, org) = acting_in(&state, &principal, body.organization_id.as_deref(), AS_ACTOR).await?;
    principal.require_permission("invitation", "create")?;
    // Better Auth's order: the email, then the right to invite at all, then the role.
    let email = Email::parse(&body.email).ok_or(OrgError::InvalidEmail)?;
    if !tenant.role.can_manage() {
        return Err(OrgError::NotAllowedToInvite.into());
    }
    let role = parse_role(&body.role)?;
    if role == Role::Owner && tenant.role != Role::Owner {
        return Err(OrgError::NotAllowedToInviteWithRole.into());
    }
    if store::find_member(&state.db, &org.id, email.as_str()).await?.is_some() {
        return Err(OrgError::AlreadyAMember.into());
    }
    let now = state.clock.now();
    if let Some(mut pending) = store::pending_invitation(&state.db, &org.id, email.as_str()).await? {
        if !body.resend && pending.expires_at > now {
            return Err(OrgError::AlreadyInvited.into());
        }
        // Resending (or replacing an expired one) renews the pending invitation.
        pending.expires_at = now + INVITATION_LIFETIME;
        store::set_invitation_status(&state.db, &pending.id, InvitationStatus::Pending, Some(pending.expires_at))
            .await?;
        return Ok(Json(InvitationView::from(&pending)));
    }
    let invitation = Invitation {
        id: crypto::new_id("inv"),
        organization_id: org.id.clone(),
        email: email.as_str().to_owned(),
        role: role.as_str().to_owned(),
        status: InvitationStatus::Pending,
        inviter_id: principal.user.id.clone(),
        expires_at: now + INVITATION_LIFETIME,
        created_at: now,
    };
    store::insert_invitation(&state.db, &invitation).await?;
    audit::emit(AuditEvent::OrganizationChanged {
        actor_id: &principal.user.id,
        organization_id: &org.id,
        action: "invitation.created",
        target: Some(&invitation.id),
    });
    Ok(Json(InvitationView::from(&invitation)))
}

/// Names an invitation.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationRef {
    /// Invitation id (`inv_…`).
    pub invitation_id: String,
}

/// Answer of accept-invitation and reject-invitation.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InvitationOutcome {
    /// The invitation, with its new status: `accepted` or `rejected`.
    pub invitation: InvitationView,
    /// The new membership (null on reject).
    pub member: Option<MemberView>,
}

/// The invitation, if it is still pending and addressed to the caller. As Better Auth, an unknown, used
/// or expired invitation is `INVITATION_NOT_FOUND` before the recipient is compared.
async fn invitation_for_me(state: &AppState, principal: &Principal, id: &str) -> Result<Invitation, OrgError> {
    let invitation = store::find_invitation(&state.db, id)
        .await?
        .filter(|inv| inv.status == InvitationStatus::Pending && inv.expires_at > state.clock.now())
        .ok_or(OrgError::InvitationNotFound)?;
    if invitation.email != principal.user.email {
        return Err(OrgError::NotTheRecipient);
    }
    Ok(invitation)
}

/// Accepts an invitation addressed to the caller's email; the organization becomes active.
#[utoipa::path(post, path = paths::ORG_ACCEPT_INVITATION, tag = "organizations", request_body = InvitationRef,
    responses((status = 200, body = InvitationOutcome),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, \
            `INVITATION_NOT_FOUND` (unknown, no longer pending, or expired), \
            `USER_IS_ALREADY_A_MEMBER_OF_THIS_ORGANIZATION`"),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`: no valid session or API key"),
        (status = 403, body = ErrorBody,
            description = "`SESSION_REQUIRED`, `YOU_ARE_NOT_THE_RECIPIENT_OF_THE_INVITATION`, `INVALID_ORIGIN`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn accept_invitation(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<InvitationRef>,
) -> Result<Response, ApiError> {
    principal.require_session()?;
    let mut invitation = invitation_for_me(&state, &principal, &body.invitation_id).await?;
    let now = state.clock.now();
    let member_id = crypto::new_id("mem");
    match store::accept_invitation(&state.db, &invitation, &member_id, &principal.user.id, now).await {
        Ok(true) => {}
        Ok(false) => return Err(OrgError::InvitationNotFound.into()),
        Err(crate::storage::StorageError::UniqueViolation(_)) => return Err(OrgError::AlreadyAMember.into()),
        Err(error) => return Err(error.into()),
    }
    invitation.status = InvitationStatus::Accepted;
    memberships_changed(&state, std::slice::from_ref(&principal.user.id)).await?;
    audit::emit(AuditEvent::OrganizationChanged {
        actor_id: &principal.user.id,
        organization_id: &invitation.organization_id,
        action: "member.joined",
        target: Some(&member_id),
    });
    let member = store::find_member_by_id(&state.db, &member_id).await?.ok_or(OrgError::MemberNotFound)?;
    let org_id = invitation.organization_id.clone();
    let outcome =
        InvitationOutcome { invitation: InvitationView::from(&invitation), member: Some(MemberView::from(&member)) };
    with_active_org(&state, &principal, Some(&org_id), outcome).await
}

/// Rejects an invitation addressed to the caller.
#[utoipa::path(post, path = paths::ORG_REJECT_INVITATION, tag = "organizations", request_body = InvitationRef,
    responses((status = 200, body = InvitationOutcome),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, \
            `INVITATION_NOT_FOUND` (unknown, no longer pending, or expired)"),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`: no valid session or API key"),
        (status = 403, body = ErrorBody,
            description = "`YOU_ARE_NOT_THE_RECIPIENT_OF_THE_INVITATION`, `INVALID_ORIGIN`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn reject_invitation(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<InvitationRef>,
) -> Result<Json<InvitationOutcome>, ApiError> {
    let mut invitation = invitation_for_me(&state, &principal, &body.invitation_id).await?;
    if !store::set_invitation_status(&state.db, &invitation.id, InvitationStatus::Rejected, None).await? {
        return Err(OrgError::InvitationNotFound.into());
    }
    invitation.status = InvitationStatus::Rejected;
    Ok(Json(InvitationOutcome { invitation: InvitationView::from(&invitation), member: None }))
}

/// Cancels a pending invitation (owners and admins of its organization).
#[utoipa::path(post, path = paths::ORG_CANCEL_INVITATION, tag = "organizations", request_body = InvitationRef,
    responses((status = 200, body = InvitationView),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, \
            `INVITATION_NOT_FOUND` (unknown or no longer pending), `MEMBER_NOT_FOUND` (the caller is not a member)"),
        (status = 401, body = ErrorBody,
            description = "`UNAUTHORIZED`; `ORGANIZATION_ACCESS_DENIED` (an org-scoped key in another organization)"),
        (status = 403, body = ErrorBody,
            description = "`YOU_ARE_NOT_ALLOWED_TO_CANCEL_THIS_INVITATION`, `INSUFFICIENT_PERMISSIONS` (API key), \
            `INVALID_ORIGIN`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn cancel_invitation(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<InvitationRef>,
) -> Result<Json<InvitationView>, ApiError> {
    let mut invitation =
        store::find_invitation(&state.db, &body.invitation_id).await?.ok_or(OrgError::InvitationNotFound)?;
    let (tenant, _) = acting_in(&state, &principal, Some(&invitation.organization_id), AS_ACTOR).await?;
    principal.require_permission("invitation", "cancel")?;
    if !tenant.role.can_manage() {
        return Err(OrgError::NotAllowedToCancel.into());
    }
    // Better Auth cancels whatever the status; Latchkey leaves a decided invitation alone and answers as
    // for one that is gone.
    if !store::set_invitation_status(&state.db, &invitation.id, InvitationStatus::Canceled, None).await? {
        return Err(OrgError::InvitationNotFound.into());
    }
    invitation.status = InvitationStatus::Canceled;
    Ok(Json(InvitationView::from(&invitation)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ListInvitationsQuery {
    /// Organization id (default: the tenant).
    pub organization_id: Option<String>,
}

/// The organization's invitations, every status, newest first (owners and admins; admins do not see
/// invitations to become an owner).
#[utoipa::path(get, path = paths::ORG_LIST_INVITATIONS, tag = "organizations", params(ListInvitationsQuery),
    responses((status = 200, body = [InvitationView]), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn list_invitations(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListInvitationsQuery>,
) -> Result<Json<Vec<InvitationView>>, ApiError> {
    let (tenant, org) = acting_in(&state, &principal, query.organization_id.as_deref(), AS_MEMBER).await?;
    if !tenant.role.can_manage() {
        return Err(OrgError::NotAllowedToListInvitations.into());
    }
    let invitations = visible_invitations(store::invitations(&state.db, &org.id).await?, tenant.role);
    Ok(Json(invitations.iter().map(InvitationView::from).collect()))
}

/// list-user-invitations query: Better Auth accepts `email` only from its server-side API.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListUserInvitationsQuery {
    /// Refused: the caller's own email is used.
    pub email: Option<String>,
}

/// The pending invitations addressed to the caller's email, with each organization's name. Better Auth
/// lists them only for a verified email; Latchkey verifies no email yet, so an invitation is only ever
/// shown to the account holding its address.
#[utoipa::path(get, path = paths::ORG_LIST_USER_INVITATIONS, tag = "organizations", params(ListUserInvitationsQuery),
    responses((status = 200, body = [ReceivedInvitationView]), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody)))]
pub async fn list_user_invitations(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListUserInvitationsQuery>,
) -> Result<Json<Vec<ReceivedInvitationView>>, ApiError> {
    if query.email.is_some() {
        return Err(OrgError::Validation("User email cannot be passed for client side API calls.".into()).into());
    }
    let received = store::pending_invitations_to(&state.db, &principal.user.email).await?;
    Ok(Json(received.iter().map(ReceivedInvitationView::from).collect()))
}
