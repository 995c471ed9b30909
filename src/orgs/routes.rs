//! `/api/auth/organization/*` (Better Auth organization plugin shapes and error codes).
//!
//! Every endpoint that acts inside an organization takes it from its `organizationId` (or slug) or,
//! failing that, from the caller's tenant, through `principal::resolve_tenant` — so membership, the
//! tenant rules and org-scoped keys are checked in one place. Its refusals, like every other outcome
//! here, are answered with Better Auth's codes and statuses ([`OrgError`], mapped below), which differ
//! per endpoint; the tenant path (`/api/auth/check`, extension tokens) keeps DESIGN's messages.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};

use utoipa_axum::{router::OpenApiRouter, routes};

use super::paths;
use super::{
    check_text, invitations, members, require_valid_slug, store, Invitation, InvitationView, MemberView,
    NewOrganization, OrgError, Organization, OrganizationView, Role,
};
// The routes sit above `state` and `principal`, which are built on the domain half of this capability
// (and of the others): the folders meet in a circle, the files do not (README, "Code tour").
use crate::{
    audit::{self, AuditEvent},
    error::{ApiError, ErrorBody},
    http::extractors::{json_column, ApiJson, ApiQuery},
    principal::{self, Principal, Tenant, TenantError},
    sessions::cookies::reissued_session_data_cookie,
    state::AppState,
};

/// Every organization endpoint (this file, `members.rs`, `invitations.rs`), each registered with its OpenAPI
/// operation; `app::routes` merges them.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(update))
        .routes(routes!(delete))
        .routes(routes!(list))
        .routes(routes!(check_slug))
        .routes(routes!(set_active))
        .routes(routes!(get_full))
        .routes(routes!(members::list_members))
        .routes(routes!(members::get_active_member))
        .routes(routes!(members::get_active_member_role))
        .routes(routes!(invitations::list_invitations))
        .routes(routes!(invitations::list_user_invitations))
        .routes(routes!(invitations::invite_member))
        .routes(routes!(invitations::accept_invitation))
        .routes(routes!(invitations::reject_invitation))
        .routes(routes!(invitations::cancel_invitation))
        .routes(routes!(members::remove_member))
        .routes(routes!(members::update_member_role))
        .routes(routes!(members::leave))
}

impl From<OrgError> for ApiError {
    fn from(error: OrgError) -> Self {
        use OrgError::*;
        let (status, code, message) = match error {
            OrganizationNotFound => (StatusCode::BAD_REQUEST, "ORGANIZATION_NOT_FOUND", "Organization not found"),
            NoActiveOrganization => (StatusCode::BAD_REQUEST, "NO_ACTIVE_ORGANIZATION", "No active organization"),
            NotAMemberToChange => (
                StatusCode::BAD_REQUEST,
                "USER_IS_NOT_A_MEMBER_OF_THE_ORGANIZATION",
                "User is not a member of the organization",
            ),
            NotAMemberToRead => (
                StatusCode::FORBIDDEN,
                "USER_IS_NOT_A_MEMBER_OF_THE_ORGANIZATION",
                "User is not a member of the organization",
            ),
            YouAreNotAMember => (
                StatusCode::FORBIDDEN,
                "YOU_ARE_NOT_A_MEMBER_OF_THIS_ORGANIZATION",
                "You are not a member of this organization",
            ),
            MemberNotFound => (StatusCode::BAD_REQUEST, "MEMBER_NOT_FOUND", "Member not found"),
            OutsideKeyScope => return principal::access_denied(),
            AlreadyExists => (StatusCode::BAD_REQUEST, "ORGANIZATION_ALREADY_EXISTS", "Organization already exists"),
            SlugTaken => {
                (StatusCode::BAD_REQUEST, "ORGANIZATION_SLUG_ALREADY_TAKEN", "Organization slug already taken")
            }
            InvalidSlug => (StatusCode::BAD_REQUEST, "INVALID_SLUG", "slug must be 1-64 of a-z 0-9 -"),
            RoleNotFound => (StatusCode::BAD_REQUEST, "ROLE_NOT_FOUND", "Role not found"),
            NotAllowedToUpdate => (
                StatusCode::FORBIDDEN,
                "YOU_ARE_NOT_ALLOWED_TO_UPDATE_THIS_ORGANIZATION",
                "You are not allowed to update this organization",
            ),
            NotAllowedToDelete => (
                StatusCode::FORBIDDEN,
                "YOU_ARE_NOT_ALLOWED_TO_DELETE_THIS_ORGANIZATION",
                "You are not allowed to delete this organization",
            ),
            NotAllowedToInvite => (
                StatusCode::FORBIDDEN,
                "YOU_ARE_NOT_ALLOWED_TO_INVITE_USERS_TO_THIS_ORGANIZATION",
                "You are not allowed to invite users to this organization",
            ),
            NotAllowedToInviteWithRole => (
                StatusCode::FORBIDDEN,
                "YOU_ARE_NOT_ALLOWED_TO_INVITE_USER_WITH_THIS_ROLE",
                "You are not allowed to invite a user with this role",
            ),
            NotAllowedToCancel => (
                StatusCode::FORBIDDEN,
                "YOU_ARE_NOT_ALLOWED_TO_CANCEL_THIS_INVITATION",
                "You are not allowed to cancel this invitation",
            ),
            NotAllowedToListInvitations => (
                StatusCode::FORBIDDEN,
                "YOU_ARE_NOT_ALLOWED_TO_LIST_INVITATIONS",
                "You are not allowed to list invitations for this organization",
            ),
            NotAllowedToRemove => (
                StatusCode::UNAUTHORIZED,
                "YOU_ARE_NOT_ALLOWED_TO_DELETE_THIS_MEMBER",
                "You are not allowed to delete this member",
            ),
            NotAllowedToUpdateMember => (
                StatusCode::FORBIDDEN,
                "YOU_ARE_NOT_ALLOWED_TO_UPDATE_THIS_MEMBER",
                "You are not allowed to update this member",
            ),
            OnlyOwnerCannotLeave => (
                StatusCode::BAD_REQUEST,
                "YOU_CANNOT_LEAVE_THE_ORGANIZATION_AS_THE_ONLY_OWNER",
                "You cannot leave the organization as the only owner",
            ),
            WouldHaveNoOwner => (
                StatusCode::BAD_REQUEST,
                "YOU_CANNOT_LEAVE_THE_ORGANIZATION_WITHOUT_AN_OWNER",
                "You cannot leave the organization without an owner",
            ),
            AlreadyAMember => (
                StatusCode::BAD_REQUEST,
                "USER_IS_ALREADY_A_MEMBER_OF_THIS_ORGANIZATION",
                "User is already a member of this organization",
            ),
            AlreadyInvited => (
                StatusCode::BAD_REQUEST,
                "USER_IS_ALREADY_INVITED_TO_THIS_ORGANIZATION",
                "User is already invited to this organization",
            ),
            InvitationNotFound => (StatusCode::BAD_REQUEST, "INVITATION_NOT_FOUND", "Invitation not found"),
            NotTheRecipient => (
                StatusCode::FORBIDDEN,
                "YOU_ARE_NOT_THE_RECIPIENT_OF_THE_INVITATION",
                "You are not the recipient of the invitation",
            ),
            InvalidEmail => (StatusCode::BAD_REQUEST, "INVALID_EMAIL", "Invalid email"),
            Validation(message) => return ApiError::bad_request("VALIDATION_ERROR", message),
            Internal(error) => return ApiError::internal(error),
        };
        ApiError::new(status, code, message)
    }
}

pub(super) fn parse_role(role: &str) -> Result<Role, OrgError> {
    Role::parse(role).ok_or(OrgError::RoleNotFound)
}

/// How an endpoint refuses an organization it cannot act in. Better Auth's endpoints answer the same
/// situation with different codes and statuses, and its clients match on them, so each endpoint names
/// its own.
pub(super) struct Refusals {
    /// The caller is not a member of the named (or tenant) organization.
    not_member: OrgError,
    /// Nothing named, and the caller belongs to no organization.
    none: OrgError,
}

/// update, delete.
pub(super) const TO_CHANGE: Refusals =
    Refusals { not_member: OrgError::NotAMemberToChange, none: OrgError::OrganizationNotFound };
/// get-full-organization, set-active.
pub(super) const TO_READ: Refusals =
    Refusals { not_member: OrgError::NotAMemberToRead, none: OrgError::NoActiveOrganization };
/// list-members, get-active-member-role, list-invitations.
pub(super) const AS_MEMBER: Refusals =
    Refusals { not_member: OrgError::YouAreNotAMember, none: OrgError::NoActiveOrganization };
/// get-active-member, invite-member, cancel-invitation, remove-member, update-member-role, leave.
pub(super) const AS_ACTOR: Refusals =
    Refusals { not_member: OrgError::MemberNotFound, none: OrgError::NoActiveOrganization };

/// The organization a request acts in, and the caller's role there. Tenant resolution decides; its
/// refusals become Better Auth's answers: a named organization that does not exist is
/// `ORGANIZATION_NOT_FOUND` (as Better Auth, which also tells outsiders so), one the caller is not in is
/// the endpoint's `not_member`.
pub(super) async fn acting_in(
    state: &AppState,
    principal: &Principal,
    explicit: Option<&str>,
    refusals: Refusals,
) -> Result<(Tenant, Organization), OrgError> {
    let tenant = match principal::resolve_tenant(state, principal, explicit).await {
        Ok(tenant) => tenant,
        Err(TenantError::NoOrganization) => return Err(refusals.none),
        Err(TenantError::Denied { outside_key_scope: true }) => return Err(OrgError::OutsideKeyScope),
        Err(TenantError::Denied { outside_key_scope: false }) => {
            let key_org = principal.api_key().and_then(|key| key.organization_id.as_deref());
            let named = explicit.or(principal.tenant_header.as_deref().filter(|_| principal.api_key().is_some()));
            return match named.or(key_org) {
                Some(named) if store::find_by_id_or_slug(&state.db, named).await?.is_some() => Err(refusals.not_member),
                _ => Err(OrgError::OrganizationNotFound),
            };
        }
        Err(TenantError::Storage(error)) => return Err(error.into()),
    };
    // Deleted since the membership cache was filled.
    let org = store::find(&state.db, &tenant.organization_id).await?.ok_or(OrgError::OrganizationNotFound)?;
    Ok((tenant, org))
}

/// Evicts cached memberships of `users` on every node.
pub(super) async fn memberships_changed(state: &AppState, users: &[String]) -> Result<(), ApiError> {
    super::memberships_changed(&state.db, &state.orgs.memberships, users, state.clock.now()).await?;
    Ok(())
}

/// The invitations a member with `role` may see (Better Auth's `canViewInvitations` and
/// `withoutCreatorRoleInvitations`): none for members, all but owner invitations for admins.
pub(super) fn visible_invitations(invitations: Vec<Invitation>, role: Role) -> Vec<Invitation> {
    match role {
        Role::Owner => invitations,
        Role::Admin => invitations.into_iter().filter(|inv| inv.role != Role::Owner.as_str()).collect(),
        Role::Member => Vec::new(),
    }
}

/// Organization with members (create's answer).
#[derive(Serialize, utoipa::ToSchema)]
pub struct OrganizationWithMembers {
    /// The organization's fields, inline.
    #[serde(flatten)]
    pub organization: OrganizationView,
    /// Its members: at creation, the caller alone, as owner.
    pub members: Vec<MemberView>,
}

/// Organization with members and invitations.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FullOrganization {
    /// The organization's fields, inline.
    #[serde(flatten)]
    pub organization: OrganizationView,
    /// Its members, oldest first (at most 10 000).
    pub members: Vec<MemberView>,
    /// The invitations the caller may see, newest first: none for a member, no owner invitations for an admin.
    pub invitations: Vec<InvitationView>,
}

/// The organization with its members and the invitations a member with `role` may see.
async fn full_organization(state: &AppState, org: &Organization, role: Role) -> Result<FullOrganization, ApiError> {
    let members = store::members(&state.db, &org.id, 10_000, 0).await?;
    let invitations = visible_invitations(store::invitations(&state.db, &org.id).await?, role);
    Ok(FullOrganization {
        organization: OrganizationView::from(org),
        members: members.iter().map(MemberView::from).collect(),
        invitations: invitations.iter().map(InvitationView::from).collect(),
    })
}

/// Sets the session's active organization and answers `body` with a refreshed cookie cache.
pub(super) async fn with_active_org<T: Serialize>(
    state: &AppState,
    principal: &Principal,
    org_id: Option<&str>,
    body: T,
) -> Result<Response, ApiError> {
    let Some(session) = principal.session() else { return Ok(Json(body).into_response()) };
    store::set_active(&state.db, &session.id, org_id).await?;
    // A node that remembers this session by its bearer token forgets it.
    state.publish(crate::storage::notify::CacheEvent::SessionChanged { session_id: session.id.clone() }).await?;
    let mut session = session.clone();
    session.active_organization_id = org_id.map(str::to_owned);
    let (user, token_hash) = (&principal.user, principal.cookie_token_hash.as_deref());
    let mut response = Json(body).into_response();
    if let Some(cookie) = reissued_session_data_cookie(state, &session, user, token_hash, state.clock.now()) {
        if let Ok(value) = cookie.parse() {
            response.headers_mut().append(axum::http::header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// A new organization; the caller becomes its owner.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OrganizationCreateRequest)]
pub struct CreateRequest {
    /// Display name: 1–256 characters, not blank; stored trimmed.
    pub name: String,
    /// Unique slug: 1–64 of `a-z 0-9 -`.
    pub slug: String,
    /// Logo URL: 1–2048 characters, not blank.
    pub logo: Option<String>,
    /// Arbitrary JSON.
    #[schema(value_type = Option<serde_json::Value>)]
    pub metadata: Option<serde_json::Value>,
    /// Do not make the new organization the session's active one.
    #[serde(default)]
    pub keep_current_active_organization: bool,
}

/// Creates an organization; the caller becomes its owner (and, by default, it becomes active).
#[utoipa::path(post, path = paths::ORG_CREATE, tag = "organizations", request_body = CreateRequest,
    responses((status = 200, body = OrganizationWithMembers),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, `INVALID_SLUG`, \
            `ORGANIZATION_ALREADY_EXISTS`"),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`: no valid session or API key"),
        (status = 403, body = ErrorBody,
            description = "`INSUFFICIENT_PERMISSIONS` (API key), `INVALID_ORIGIN`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateRequest>,
) -> Result<Response, ApiError> {
    principal.require_permission("organization", "create")?;
    let keep_active = body.keep_current_active_organization;
    let new = NewOrganization {
        name: body.name,
        slug: body.slug,
        logo: body.logo,
        metadata: json_column(body.metadata.as_ref())?,
    };
    let org = super::create_organization(
        &state.db,
        &state.orgs.memberships,
        new,
        &principal.user.id,
        &principal.user.id,
        state.clock.now(),
    )
    .await?;
    let members = store::members(&state.db, &org.id, 10, 0).await?;
    let body = OrganizationWithMembers {
        organization: OrganizationView::from(&org),
        members: members.iter().map(MemberView::from).collect(),
    };
    if keep_active {
        return Ok(Json(body).into_response());
    }
    with_active_org(&state, &principal, Some(&org.id), body).await
}

/// Changes to an organization: only the fields given in `data` change.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OrganizationUpdateRequest)]
pub struct UpdateRequest {
    /// Fields to change.
    pub data: UpdateData,
    /// Organization (default: the tenant).
    pub organization_id: Option<String>,
}

/// Fields of an organization that can change.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = OrganizationUpdateData)]
pub struct UpdateData {
    /// New display name: 1–256 characters, not blank; stored trimmed.
    pub name: Option<String>,
    /// New slug: 1–64 of `a-z 0-9 -`, unique.
    pub slug: Option<String>,
    /// New logo URL: 1–2048 characters, not blank.
    pub logo: Option<String>,
    /// New metadata (arbitrary JSON), replacing the old; `null` or absent leaves it unchanged.
    #[schema(value_type = Option<serde_json::Value>)]
    pub metadata: Option<serde_json::Value>,
}

/// Updates an organization (owners and admins).
#[utoipa::path(post, path = paths::ORG_UPDATE, tag = "organizations", request_body = UpdateRequest,
    responses((status = 200, body = OrganizationView),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, `INVALID_SLUG`, \
            `ORGANIZATION_SLUG_ALREADY_TAKEN`, `ORGANIZATION_NOT_FOUND`, `USER_IS_NOT_A_MEMBER_OF_THE_ORGANIZATION`"),
        (status = 401, body = ErrorBody,
            description = "`UNAUTHORIZED`; `ORGANIZATION_ACCESS_DENIED` (an org-scoped key in another organization)"),
        (status = 403, body = ErrorBody,
            description = "`YOU_ARE_NOT_ALLOWED_TO_UPDATE_THIS_ORGANIZATION`, `INSUFFICIENT_PERMISSIONS` (API key), \
            `INVALID_ORIGIN`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<UpdateRequest>,
) -> Result<Json<OrganizationView>, ApiError> {
    let (tenant, mut org) = acting_in(&state, &principal, body.organization_id.as_deref(), TO_CHANGE).await?;
    principal.require_permission("organization", "update")?;
    if !tenant.role.can_manage() {
        return Err(OrgError::NotAllowedToUpdate.into());
    }
    let data = body.data;
    if let Some(name) = data.name {
        check_text("name", &name, 256)?;
        org.name = name.trim().to_owned();
    }
    let slug_changed = data.slug.as_ref().is_some_and(|slug| *slug != org.slug);
    if let Some(slug) = data.slug {
        require_valid_slug(&slug)?;
        org.slug = slug;
    }
    if let Some(logo) = data.logo {
        check_text("logo", &logo, 2048)?;
        org.logo = Some(logo);
    }
    if data.metadata.is_some() {
        org.metadata = json_column(data.metadata.as_ref())?;
    }
    match store::update(&state.db, &org).await {
        Ok(()) => {}
        Err(crate::storage::StorageError::UniqueViolation(_)) => return Err(OrgError::SlugTaken.into()),
        Err(error) => return Err(error.into()),
    }
    if slug_changed {
        // Cached memberships carry the slug that `x-tenant-id` may name.
        memberships_changed(&state, &store::member_user_ids(&state.db, &org.id).await?).await?;
    }
    audit::emit(AuditEvent::OrganizationChanged {
        actor_id: &principal.user.id,
        organization_id: &org.id,
        action: "updated",
        target: None,
    });
    Ok(Json(OrganizationView::from(&org)))
}

/// Names an organization.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationRef {
    /// Organization id; its slug also names it.
    pub organization_id: String,
}

/// Deletes an organization (owners only); its members, invitations and org-scoped keys go with it.
#[utoipa::path(post, path = paths::ORG_DELETE, tag = "organizations", request_body = OrganizationRef,
    responses((status = 200, body = OrganizationView),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, `ORGANIZATION_NOT_FOUND`, \
            `USER_IS_NOT_A_MEMBER_OF_THE_ORGANIZATION`"),
        (status = 401, body = ErrorBody,
            description = "`UNAUTHORIZED`; `ORGANIZATION_ACCESS_DENIED` (an org-scoped key in another organization)"),
        (status = 403, body = ErrorBody,
            description = "`YOU_ARE_NOT_ALLOWED_TO_DELETE_THIS_ORGANIZATION`, `INSUFFICIENT_PERMISSIONS` (API key), \
            `INVALID_ORIGIN`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<OrganizationRef>,
) -> Result<Json<OrganizationView>, ApiError> {
    let (tenant, org) = acting_in(&state, &principal, Some(&body.organization_id), TO_CHANGE).await?;
    principal.require_permission("organization", "delete")?;
    if tenant.role != Role::Owner {
        return Err(OrgError::NotAllowedToDelete.into());
    }
    let users = store::member_user_ids(&state.db, &org.id).await?;
    store::delete(&state.db, &org.id).await?;
    memberships_changed(&state, &users).await?;
    // Org-scoped keys were deleted by the cascade: every cache of keys forgets them.
    state.publish(crate::storage::notify::CacheEvent::AllApiKeysChanged).await?;
    audit::emit(AuditEvent::OrganizationChanged {
        actor_id: &principal.user.id,
        organization_id: &org.id,
        action: "deleted",
        target: None,
    });
    Ok(Json(OrganizationView::from(&org)))
}

/// The caller's organizations, by membership age.
#[utoipa::path(get, path = paths::ORG_LIST, tag = "organizations",
    responses((status = 200, body = [OrganizationView]),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`: no valid session or API key")))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<OrganizationView>>, ApiError> {
    let mut orgs = store::list_for_user(&state.db, &principal.user.id).await?;
    if let Some(scope) = principal.api_key().and_then(|key| key.organization_id.as_deref()) {
        orgs.retain(|org| org.id == scope);
    }
    Ok(Json(orgs.iter().map(OrganizationView::from).collect()))
}

/// Check-slug body.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SlugRequest {
    /// Slug to check.
    pub slug: String,
}

/// `{status: true}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SlugStatus {
    /// True: the slug is free.
    pub status: bool,
}

/// Whether a slug is free (400 `ORGANIZATION_SLUG_ALREADY_TAKEN` if not).
#[utoipa::path(post, path = paths::ORG_CHECK_SLUG, tag = "organizations", request_body = SlugRequest,
    responses((status = 200, body = SlugStatus),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, `INVALID_SLUG`, \
            `ORGANIZATION_SLUG_ALREADY_TAKEN`"),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`: no valid session or API key"),
        (status = 403, body = ErrorBody,
            description = "`INVALID_ORIGIN`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn check_slug(
    State(state): State<AppState>,
    _principal: Principal,
    ApiJson(body): ApiJson<SlugRequest>,
) -> Result<Json<SlugStatus>, ApiError> {
    require_valid_slug(&body.slug)?;
    if store::slug_taken(&state.db, &body.slug).await? {
        return Err(OrgError::SlugTaken.into());
    }
    Ok(Json(SlugStatus { status: true }))
}

/// Set-active body: `organizationId: null` clears it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetActiveRequest {
    /// Organization id, or null to clear.
    #[serde(default, deserialize_with = "serde_with_null::deserialize")]
    #[schema(value_type = Option<String>)]
    pub organization_id: NullableId,
    /// Organization slug (instead of the id).
    pub organization_slug: Option<String>,
}

/// An id that may be absent, null or set.
#[derive(Debug, Default)]
pub enum NullableId {
    /// Not in the body.
    #[default]
    Absent,
    /// `null`.
    Null,
    Value(String),
}

mod serde_with_null {
    use serde::{Deserialize, Deserializer};

    use super::NullableId;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NullableId, D::Error> {
        Ok(match Option::<String>::deserialize(deserializer)? {
            Some(value) => NullableId::Value(value),
            None => NullableId::Null,
        })
    }
}

/// Makes an organization the session's active one (or clears it); answers the full organization or null.
#[utoipa::path(post, path = paths::ORG_SET_ACTIVE, tag = "organizations", request_body = SetActiveRequest,
    responses((status = 200, body = Option<FullOrganization>,
            description = "The now active organization, or `null` when cleared"),
        (status = 400, body = ErrorBody, description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`"),
        (status = 401, body = ErrorBody,
            description = "`UNAUTHORIZED`; `ORGANIZATION_ACCESS_DENIED` (an org-scoped key in another organization)"),
        (status = 403, body = ErrorBody,
            description = "`SESSION_REQUIRED` (an API key has no active organization), `INVALID_ORIGIN`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn set_active(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<SetActiveRequest>,
) -> Result<Response, ApiError> {
    principal.require_session()?;
    let named = match (&body.organization_id, &body.organization_slug) {
        (NullableId::Value(id), _) => Some(id.clone()),
        (_, Some(slug)) => Some(slug.clone()),
        (NullableId::Null, None) => None,
        (NullableId::Absent, None) => {
            return Err(ApiError::bad_request("VALIDATION_ERROR", "organizationId or organizationSlug is required"))
        }
    };
    match named {
        None => with_active_org(&state, &principal, None, serde_json::Value::Null).await,
        Some(named) => {
            let by_id = matches!(body.organization_id, NullableId::Value(_));
            let (tenant, org) = match acting_in(&state, &principal, Some(&named), TO_READ).await {
                // Better Auth checks membership before looking an id up: an unknown id is "not a member".
                Err(OrgError::OrganizationNotFound) if by_id => return Err(OrgError::NotAMemberToRead.into()),
                result => result?,
            };
            let full = full_organization(&state, &org, tenant.role).await?;
            with_active_org(&state, &principal, Some(&org.id), full).await
        }
    }
}

/// Names an organization by id or slug (default: the tenant).
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct OrgQuery {
    /// Organization id; with neither this nor `organizationSlug`, the tenant.
    pub organization_id: Option<String>,
    /// Organization slug, used when `organizationId` is absent.
    pub organization_slug: Option<String>,
    /// Page size (list-members; default 100, at most 1000).
    pub limit: Option<i64>,
    /// Members to skip (list-members).
    pub offset: Option<i64>,
}

impl OrgQuery {
    pub(super) fn named(&self) -> Option<&str> {
        self.organization_id.as_deref().or(self.organization_slug.as_deref())
    }
}

/// The organization with its members and the invitations the caller may see (none for members, no
/// owner invitations for admins); `null` when the caller belongs to no organization (as Better Auth
/// without an active one).
#[utoipa::path(get, path = paths::ORG_GET_FULL, tag = "organizations", params(OrgQuery),
    responses((status = 200, body = Option<FullOrganization>), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn get_full(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<OrgQuery>,
) -> Result<Json<Option<FullOrganization>>, ApiError> {
    let (tenant, org) = match acting_in(&state, &principal, query.named(), TO_READ).await {
        Err(OrgError::NoActiveOrganization) => return Ok(Json(None)),
        result => result?,
    };
    Ok(Json(Some(full_organization(&state, &org, tenant.role).await?)))
}
