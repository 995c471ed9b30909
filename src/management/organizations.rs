//! `/api/v2/organizations` and their members, in Auth0's shapes over capability 2's organizations: Auth0's
//! `name` (the lower-case handle) is the organization's slug, `display_name` its name, `metadata` its
//! metadata. Organizations made here start with no members; members added here join as `member`.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    paths,
    users::{checkpoint, CheckpointQuery},
    ManagementError, ManagementErrorBody, ManagementJson, ManagementPath, ManagementQuery, Manager,
};
// The routes sit above `state`, which is built on the capabilities' domain halves: the folders meet in a
// circle, the files do not (README, "Code tour").
use crate::{
    audit::{self, AuditEvent},
    orgs::{self, store, Organization},
    state::{AppState, AppStateInner},
    storage::{notify::CacheEvent, StorageError},
};

/// An organization, as Auth0 shows one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrganizationInfo {
    /// `org_…`.
    pub id: String,
    /// The lower-case handle (the slug; `x-tenant-id` may name the organization by it).
    pub name: String,
    pub display_name: String,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

impl From<Organization> for OrganizationInfo {
    fn from(org: Organization) -> OrganizationInfo {
        let metadata = match org.metadata.as_deref().map(serde_json::from_str) {
            Some(Ok(Value::Object(map))) => map,
            _ => Map::new(),
        };
        OrganizationInfo { id: org.id, name: org.slug, display_name: org.name, metadata }
    }
}

/// `POST /api/v2/organizations` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganizationRequest {
    /// 1–64 of `a-z 0-9 -`, unique.
    pub name: String,
    /// 1–256 characters; defaults to `name`.
    pub display_name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// `PATCH /api/v2/organizations/{id}` body: only what is sent changes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrganizationRequest {
    pub name: Option<String>,
    pub display_name: Option<String>,
    /// Replaces the stored metadata.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

fn inexistent() -> ManagementError {
    ManagementError::new(StatusCode::NOT_FOUND, "inexistent_organization", "No organization found by that id or name")
}

fn conflict() -> ManagementError {
    ManagementError::new(StatusCode::CONFLICT, "organization_conflict", "An organization with this name already exists")
}

fn check(name: Option<&str>, display_name: Option<&str>) -> Result<(), ManagementError> {
    if name.is_some_and(|name| !orgs::valid_slug(name)) {
        return Err(ManagementError::invalid_body("name: 1-64 of a-z, 0-9 and -"));
    }
    if display_name.is_some_and(|d| d.trim().is_empty() || d.chars().count() > 256) {
        return Err(ManagementError::invalid_body("display_name: 1-256 characters"));
    }
    Ok(())
}

fn metadata_text(map: Map<String, Value>) -> Result<Option<String>, ManagementError> {
    let text = Value::Object(map).to_string();
    if text.len() > 16 * 1024 {
        return Err(ManagementError::invalid_body("metadata may hold at most 16 KB"));
    }
    Ok(Some(text))
}

fn changed(manager: &Manager, id: &str, action: &str) {
    audit::emit(AuditEvent::ManagementAction {
        actor_id: manager.actor(),
        resource: "organization",
        id,
        user_id: None,
        action,
    });
}

/// Creates an organization (with no members).
#[utoipa::path(post, path = paths::MGMT_ORGANIZATIONS, tag = "management", request_body = CreateOrganizationRequest,
    responses((status = 201, body = OrganizationInfo),
        (status = 400, body = ManagementErrorBody, description = "`invalid_body`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 409, body = ManagementErrorBody, description = "`organization_conflict`: the name is taken"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn create_organization(
    State(state): State<AppState>,
    manager: Manager,
    ManagementJson(body): ManagementJson<CreateOrganizationRequest>,
) -> Result<Response, ManagementError> {
    manager.require("create:organizations")?;
    check(Some(&body.name), body.display_name.as_deref())?;
    let org = Organization {
        id: crate::crypto::new_id("org"),
        name: body.display_name.map_or_else(|| body.name.clone(), |d| d.trim().to_owned()),
        slug: body.name,
        logo: None,
        metadata: body.metadata.map(metadata_text).transpose()?.flatten(),
        created_at: state.clock.now(),
    };
    match store::insert(&state.db, &org).await {
        Ok(()) => {}
        Err(StorageError::UniqueViolation(_)) => return Err(conflict()),
        Err(error) => return Err(error.into()),
    }
    changed(&manager, &org.id, "created");
    Ok((StatusCode::CREATED, Json(OrganizationInfo::from(org))).into_response())
}

/// `GET /api/v2/organizations` query: offset paging (`page`, `per_page`, `include_totals`) or Auth0's
/// checkpoint paging (`from`, `take`), which its SDKs use.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct OrganizationsQuery {
    pub page: Option<i64>,
    pub per_page: Option<i64>,
    pub include_totals: Option<bool>,
    /// Checkpoint: the `next` of the previous page.
    pub from: Option<String>,
    /// Checkpoint: 1–100, default 50.
    pub take: Option<i64>,
}

/// The list, in whichever of Auth0's three shapes the query asked for.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum OrganizationListResponse {
    List(Vec<OrganizationInfo>),
    Page {
        organizations: Vec<OrganizationInfo>,
        start: i64,
        limit: i64,
        total: i64,
    },
    Checkpoint {
        organizations: Vec<OrganizationInfo>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
}

/// Lists organizations, oldest first.
#[utoipa::path(get, path = paths::MGMT_ORGANIZATIONS, tag = "management", params(OrganizationsQuery),
    responses((status = 200, body = OrganizationListResponse),
        (status = 400, body = ManagementErrorBody, description = "`invalid_query_string`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn list_organizations(
    State(state): State<AppState>,
    manager: Manager,
    ManagementQuery(query): ManagementQuery<OrganizationsQuery>,
) -> Result<Json<OrganizationListResponse>, ManagementError> {
    manager.require("read:organizations")?;
    if query.from.is_some() || query.take.is_some() {
        let from = match query.from.as_deref() {
            None | Some("") => 0,
            Some(from) => from.parse::<i64>().map_err(|_| {
                ManagementError::new(StatusCode::BAD_REQUEST, "invalid_query_string", "from: a previous page's next")
            })?,
        };
        let take = query.take.unwrap_or(50).clamp(1, 100);
        let (orgs, total) = store::list_all(&state.db, take, from).await?;
        let next = (from + take < total).then(|| (from + take).to_string());
        let organizations = orgs.into_iter().map(OrganizationInfo::from).collect();
        return Ok(Json(OrganizationListResponse::Checkpoint { organizations, next }));
    }
    let (limit, start) = super::page(query.page, query.per_page);
    let (orgs, total) = store::list_all(&state.db, limit, start).await?;
    let organizations: Vec<OrganizationInfo> = orgs.into_iter().map(OrganizationInfo::from).collect();
    Ok(Json(if query.include_totals == Some(true) {
        OrganizationListResponse::Page { organizations, start, limit, total }
    } else {
        OrganizationListResponse::List(organizations)
    }))
}

async fn found(state: &AppStateInner, id: &str) -> Result<Organization, ManagementError> {
    store::find(&state.db, id).await?.ok_or_else(inexistent)
}

/// One organization.
#[utoipa::path(get, path = paths::MGMT_ORGANIZATION, tag = "management", params(("id" = String, Path)),
    responses((status = 200, body = OrganizationInfo),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_organization`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn get_organization(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<Json<OrganizationInfo>, ManagementError> {
    manager.require("read:organizations")?;
    Ok(Json(found(&state, &id).await?.into()))
}

/// One organization, by its name.
#[utoipa::path(get, path = paths::MGMT_ORGANIZATION_BY_NAME, tag = "management", params(("name" = String, Path)),
    responses((status = 200, body = OrganizationInfo),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_organization`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn get_organization_by_name(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(name): ManagementPath,
) -> Result<Json<OrganizationInfo>, ManagementError> {
    manager.require("read:organizations")?;
    Ok(Json(store::find_by_slug(&state.db, &name).await?.ok_or_else(inexistent)?.into()))
}

/// Changes an organization.
#[utoipa::path(patch, path = paths::MGMT_ORGANIZATION, tag = "management", params(("id" = String, Path)),
    request_body = UpdateOrganizationRequest,
    responses((status = 200, body = OrganizationInfo),
        (status = 400, body = ManagementErrorBody, description = "`invalid_body`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_organization`"),
        (status = 409, body = ManagementErrorBody, description = "`organization_conflict`: the name is taken"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn update_organization(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
    ManagementJson(body): ManagementJson<UpdateOrganizationRequest>,
) -> Result<Json<OrganizationInfo>, ManagementError> {
    manager.require("update:organizations")?;
    check(body.name.as_deref(), body.display_name.as_deref())?;
    let mut org = found(&state, &id).await?;
    let slug_changed = body.name.as_ref().is_some_and(|name| *name != org.slug);
    if let Some(name) = body.name {
        org.slug = name;
    }
    if let Some(display_name) = body.display_name {
        org.name = display_name.trim().to_owned();
    }
    if let Some(metadata) = body.metadata {
        org.metadata = metadata_text(metadata)?;
    }
    match store::update(&state.db, &org).await {
        Ok(()) => {}
        Err(StorageError::UniqueViolation(_)) => return Err(conflict()),
        Err(error) => return Err(error.into()),
    }
    if slug_changed {
        // Cached memberships carry the slug that `x-tenant-id` may name.
        let users = store::member_user_ids(&state.db, &org.id).await?;
        orgs::memberships_changed(&state.db, &state.orgs.memberships, &users, state.clock.now()).await?;
    }
    changed(&manager, &org.id, "updated");
    Ok(Json(org.into()))
}

/// Deletes an organization; its memberships, invitations and organization-scoped API keys go with it.
#[utoipa::path(delete, path = paths::MGMT_ORGANIZATION, tag = "management", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_organization`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn delete_organization(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<StatusCode, ManagementError> {
    manager.require("delete:organizations")?;
    let org = found(&state, &id).await?;
    let users = store::member_user_ids(&state.db, &org.id).await?;
    store::delete(&state.db, &org.id).await?;
    orgs::memberships_changed(&state.db, &state.orgs.memberships, &users, state.clock.now()).await?;
    // Org-scoped keys were deleted by the cascade: every cache of keys forgets them.
    state.publish(CacheEvent::AllApiKeysChanged).await?;
    changed(&manager, &org.id, "deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A member, as Auth0 lists one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrganizationMember {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub picture: Option<String>,
    /// The member's role in capability 2's terms: `owner`, `admin` or `member`.
    pub role: String,
}

/// `GET …/members` query: offset or checkpoint paging, as the organizations list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct MembersQuery {
    pub page: Option<i64>,
    pub per_page: Option<i64>,
    pub include_totals: Option<bool>,
    pub from: Option<String>,
    pub take: Option<i64>,
}

/// The members, in whichever of Auth0's three shapes the query asked for.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum MemberListResponse {
    List(Vec<OrganizationMember>),
    Page {
        members: Vec<OrganizationMember>,
        start: i64,
        limit: i64,
        total: i64,
    },
    Checkpoint {
        members: Vec<OrganizationMember>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
}

/// An organization's members, oldest first.
#[utoipa::path(get, path = paths::MGMT_ORGANIZATION_MEMBERS, tag = "management", params(("id" = String, Path), MembersQuery),
    responses((status = 200, body = MemberListResponse),
        (status = 400, body = ManagementErrorBody, description = "`invalid_query_string`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_organization`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn list_members(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
    ManagementQuery(query): ManagementQuery<MembersQuery>,
) -> Result<Json<MemberListResponse>, ManagementError> {
    manager.require("read:organization_members")?;
    let org = found(&state, &id).await?;
    let member = |m: orgs::Member| OrganizationMember {
        user_id: m.user_id,
        email: m.user_email,
        name: m.user_name,
        picture: m.user_image,
        role: m.role,
    };
    if query.from.is_some() || query.take.is_some() {
        let all = store::members(&state.db, &org.id, i64::MAX, 0).await?;
        let paging = CheckpointQuery { from: query.from, take: query.take, include_totals: None };
        let (page, next) = checkpoint(all, &paging)?;
        return Ok(Json(MemberListResponse::Checkpoint { members: page.into_iter().map(member).collect(), next }));
    }
    let (limit, start) = super::page(query.page, query.per_page);
    let members: Vec<OrganizationMember> =
        store::members(&state.db, &org.id, limit, start).await?.into_iter().map(member).collect();
    Ok(Json(if query.include_totals == Some(true) {
        let total = store::member_count(&state.db, &org.id).await?;
        MemberListResponse::Page { members, start, limit, total }
    } else {
        MemberListResponse::List(members)
    }))
}

/// `POST|DELETE …/members` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembersRequest {
    /// User ids (`usr_…`), 1–10 at a time.
    pub members: Vec<String>,
}

fn check_members(body: &MembersRequest) -> Result<(), ManagementError> {
    if body.members.is_empty() || body.members.len() > 10 {
        return Err(ManagementError::invalid_body("members: 1-10 user ids"));
    }
    Ok(())
}

/// Adds users to an organization as `member`s; users already in it keep their role.
#[utoipa::path(post, path = paths::MGMT_ORGANIZATION_MEMBERS, tag = "management", params(("id" = String, Path)),
    request_body = MembersRequest,
    responses((status = 204, description = "Added"),
        (status = 400, body = ManagementErrorBody, description = "`invalid_body`: no ids, too many, or an unknown user"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_organization`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn add_members(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
    ManagementJson(body): ManagementJson<MembersRequest>,
) -> Result<StatusCode, ManagementError> {
    manager.require("create:organization_members")?;
    check_members(&body)?;
    let org = found(&state, &id).await?;
    for user_id in &body.members {
        if crate::accounts::store::find_user_by_id(&state.db, user_id).await?.is_none() {
            return Err(ManagementError::invalid_body(format!("No user {user_id}")));
        }
    }
    let now = state.clock.now();
    let mut added = Vec::new();
    for user_id in &body.members {
        let member_id = crate::crypto::new_id("mem");
        match store::insert_member(&state.db, &member_id, &org.id, user_id, orgs::Role::Member.as_str(), now).await {
            Ok(()) => added.push(user_id.clone()),
            // Already a member: keeps the role they have.
            Err(StorageError::UniqueViolation(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    orgs::memberships_changed(&state.db, &state.orgs.memberships, &added, now).await?;
    for user_id in &added {
        audit::emit(AuditEvent::ManagementAction {
            actor_id: manager.actor(),
            resource: "organization_member",
            id: &org.id,
            user_id: Some(user_id),
            action: "added",
        });
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Removes users from an organization, whatever their role.
#[utoipa::path(delete, path = paths::MGMT_ORGANIZATION_MEMBERS, tag = "management", params(("id" = String, Path)),
    request_body = MembersRequest,
    responses((status = 204, description = "Removed"),
        (status = 400, body = ManagementErrorBody, description = "`invalid_body`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_organization`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn remove_members(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
    ManagementJson(body): ManagementJson<MembersRequest>,
) -> Result<StatusCode, ManagementError> {
    manager.require("delete:organization_members")?;
    check_members(&body)?;
    let org = found(&state, &id).await?;
    let mut removed = Vec::new();
    for user_id in &body.members {
        if store::remove_user(&state.db, &org.id, user_id).await? {
            removed.push(user_id.clone());
        }
    }
    orgs::memberships_changed(&state.db, &state.orgs.memberships, &removed, state.clock.now()).await?;
    for user_id in &removed {
        audit::emit(AuditEvent::ManagementAction {
            actor_id: manager.actor(),
            resource: "organization_member",
            id: &org.id,
            user_id: Some(user_id),
            action: "removed",
        });
    }
    Ok(StatusCode::NO_CONTENT)
}
