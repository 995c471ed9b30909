//! `/api/v2/client-grants`: which client may obtain tokens for which API with client credentials, and
//! with which of the API's scopes.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};

use super::{paths, ManagementError, ManagementErrorBody, ManagementJson, ManagementPath, ManagementQuery, Manager};
// The routes sit above `state`, which is built on the capabilities' domain halves: the folders meet in a
// circle, the files do not (README, "Code tour").
use crate::{
    oauth::apis::{self, ClientGrant},
    state::AppState,
};

/// `POST /api/v2/client-grants` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateGrantRequest {
    pub client_id: String,
    /// An API's identifier, or the management API's (`{issuer}api/v2/`).
    pub audience: String,
    /// Scopes the client may ask for; each must be defined by the API.
    pub scope: Vec<String>,
}

/// `PATCH /api/v2/client-grants/{id}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UpdateGrantRequest {
    /// The new scopes (replacing the old ones).
    pub scope: Vec<String>,
}

/// A client grant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClientGrantView {
    /// `cgr_…`.
    pub id: String,
    pub client_id: String,
    pub audience: String,
    pub scope: Vec<String>,
}

impl From<ClientGrant> for ClientGrantView {
    fn from(grant: ClientGrant) -> ClientGrantView {
        ClientGrantView { id: grant.id, client_id: grant.client_id, audience: grant.audience, scope: grant.scope }
    }
}

/// Grants a client access to an API.
#[utoipa::path(post, path = paths::MGMT_CLIENT_GRANTS, tag = "management", request_body = CreateGrantRequest,
    responses((status = 201, body = ClientGrantView),
        (status = 400, body = ManagementErrorBody, description = "`invalid_body`: a scope the API does not define"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_client`, `inexistent_resource_server`"),
        (status = 409, body = ManagementErrorBody, description = "`client_grant_conflict`: one exists for this client and audience"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn create_grant(
    State(state): State<AppState>,
    manager: Manager,
    ManagementJson(body): ManagementJson<CreateGrantRequest>,
) -> Result<Response, ManagementError> {
    manager.require("create:client_grants")?;
    let now = state.clock.now();
    let grant =
        apis::grant(&state.db, &state.settings.base_url, &body.client_id, &body.audience, body.scope, now).await?;
    Ok((StatusCode::CREATED, Json(ClientGrantView::from(grant))).into_response())
}

/// `GET /api/v2/client-grants` query (filters and Auth0's paging).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct GrantQuery {
    /// Only this client's grants.
    pub client_id: Option<String>,
    /// Only the grants for this audience.
    pub audience: Option<String>,
    /// Page number, from 0.
    pub page: Option<i64>,
    /// 1–100, default 50.
    pub per_page: Option<i64>,
    /// `true`: answer `{client_grants, start, limit, total}` instead of the bare array.
    pub include_totals: Option<bool>,
}

/// The list: the bare array, or the page with `include_totals=true`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ClientGrantListResponse {
    List(Vec<ClientGrantView>),
    Page { client_grants: Vec<ClientGrantView>, start: i64, limit: i64, total: i64 },
}

/// Lists client grants, oldest first.
#[utoipa::path(get, path = paths::MGMT_CLIENT_GRANTS, tag = "management", params(GrantQuery),
    responses((status = 200, body = ClientGrantListResponse),
        (status = 400, body = ManagementErrorBody, description = "`invalid_query_string`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn list_grants(
    State(state): State<AppState>,
    manager: Manager,
    ManagementQuery(query): ManagementQuery<GrantQuery>,
) -> Result<Json<ClientGrantListResponse>, ManagementError> {
    manager.require("read:client_grants")?;
    let (limit, start) = super::page(query.page, query.per_page);
    let (client_id, audience) = (query.client_id.as_deref(), query.audience.as_deref());
    let (grants, total) = crate::oauth::store::list_client_grants(&state.db, client_id, audience, limit, start).await?;
    let views: Vec<ClientGrantView> = grants.into_iter().map(ClientGrantView::from).collect();
    Ok(Json(if query.include_totals == Some(true) {
        ClientGrantListResponse::Page { client_grants: views, start, limit, total }
    } else {
        ClientGrantListResponse::List(views)
    }))
}

/// Replaces a grant's scopes.
#[utoipa::path(patch, path = paths::MGMT_CLIENT_GRANT, tag = "management", params(("id" = String, Path)),
    request_body = UpdateGrantRequest,
    responses((status = 200, body = ClientGrantView),
        (status = 400, body = ManagementErrorBody, description = "`invalid_body`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_client_grant`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn update_grant(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
    ManagementJson(body): ManagementJson<UpdateGrantRequest>,
) -> Result<Json<ClientGrantView>, ManagementError> {
    manager.require("update:client_grants")?;
    let grant = apis::update_grant(&state.db, &state.settings.base_url, &id, body.scope).await?;
    state.publish(crate::storage::notify::CacheEvent::OAuthConfigChanged).await?;
    Ok(Json(grant.into()))
}

/// Deletes a grant.
#[utoipa::path(delete, path = paths::MGMT_CLIENT_GRANT, tag = "management", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_client_grant`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn delete_grant(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<StatusCode, ManagementError> {
    manager.require("delete:client_grants")?;
    apis::delete_grant(&state.db, &id).await?;
    state.publish(crate::storage::notify::CacheEvent::OAuthConfigChanged).await?;
    Ok(StatusCode::NO_CONTENT)
}
