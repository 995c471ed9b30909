//! `/api/v2/resource-servers`: APIs in Auth0's shapes. The built-in management API (`{issuer}api/v2/`) is
//! listed first (`is_system: true`) and cannot be changed; client grants may name it.

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
    oauth::apis::{self, ResourceError, ResourceServer, ResourceServerFields, ScopeDefinition},
    state::AppState,
};

impl From<ResourceError> for ManagementError {
    fn from(error: ResourceError) -> ManagementError {
        let message = error.to_string();
        match error {
            ResourceError::Invalid(message) => ManagementError::invalid_body(message),
            ResourceError::NotFound => {
                ManagementError::new(StatusCode::NOT_FOUND, "inexistent_resource_server", message)
            }
            ResourceError::IdentifierTaken => {
                ManagementError::new(StatusCode::CONFLICT, "resource_server_conflict", message)
            }
            ResourceError::System => ManagementError::new(StatusCode::BAD_REQUEST, "operation_not_supported", message),
            ResourceError::GrantNotFound => {
                ManagementError::new(StatusCode::NOT_FOUND, "inexistent_client_grant", message)
            }
            ResourceError::ClientNotFound => ManagementError::new(StatusCode::NOT_FOUND, "inexistent_client", message),
            ResourceError::AudienceNotFound(_) => {
                ManagementError::new(StatusCode::NOT_FOUND, "inexistent_resource_server", message)
            }
            ResourceError::GrantExists => ManagementError::new(StatusCode::CONFLICT, "client_grant_conflict", message),
            ResourceError::Storage(error) => error.into(),
        }
    }
}

/// Create and update body (Auth0's field names); on update every field is optional and `identifier`
/// cannot change. Unknown fields are ignored.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ResourceServerRequest {
    /// 1–200 characters. Required on create.
    pub name: Option<String>,
    /// The audience clients ask for, 1–600 characters without spaces. Required on create.
    pub identifier: Option<String>,
    /// The scopes the API defines.
    pub scopes: Option<Vec<ScopeDefinition>>,
    /// `RS256` (default), `ES256` or `EdDSA`.
    pub signing_alg: Option<String>,
    /// Access-token lifetime in seconds, 60–2592000 (default 86400).
    pub token_lifetime: Option<i64>,
    /// Whether refresh tokens may be issued for this audience (default false).
    pub allow_offline_access: Option<bool>,
    /// First-party clients get no consent page for this API (default true).
    pub skip_consent_for_verifiable_first_party_clients: Option<bool>,
}

impl From<ResourceServerRequest> for ResourceServerFields {
    fn from(body: ResourceServerRequest) -> ResourceServerFields {
        ResourceServerFields {
            name: body.name,
            identifier: body.identifier,
            scopes: body.scopes,
            signing_alg: body.signing_alg,
            token_lifetime: body.token_lifetime,
            allow_offline_access: body.allow_offline_access,
            skip_consent_for_verifiable_first_party_clients: body.skip_consent_for_verifiable_first_party_clients,
        }
    }
}

/// An API as the management API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResourceServerView {
    /// `api_…`.
    pub id: String,
    pub name: String,
    pub identifier: String,
    pub scopes: Vec<ScopeDefinition>,
    pub signing_alg: String,
    pub token_lifetime: i64,
    pub allow_offline_access: bool,
    pub skip_consent_for_verifiable_first_party_clients: bool,
    /// True for the built-in management API, which cannot change.
    pub is_system: bool,
}

impl From<ResourceServer> for ResourceServerView {
    fn from(api: ResourceServer) -> ResourceServerView {
        ResourceServerView {
            is_system: api.is_system(),
            signing_alg: api.signing_alg.as_str().to_owned(),
            id: api.id,
            name: api.name,
            identifier: api.identifier,
            scopes: api.scopes,
            token_lifetime: api.token_lifetime,
            allow_offline_access: api.allow_offline_access,
            skip_consent_for_verifiable_first_party_clients: api.skip_consent_for_verifiable_first_party_clients,
        }
    }
}

/// Creates an API.
#[utoipa::path(post, path = paths::MGMT_RESOURCE_SERVERS, tag = "management", request_body = ResourceServerRequest,
    responses((status = 201, body = ResourceServerView),
        (status = 400, body = ManagementErrorBody, description = "`invalid_body`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 409, body = ManagementErrorBody, description = "`resource_server_conflict`: the identifier is taken"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn create_resource_server(
    State(state): State<AppState>,
    manager: Manager,
    ManagementJson(body): ManagementJson<ResourceServerRequest>,
) -> Result<Response, ManagementError> {
    manager.require("create:resource_servers")?;
    let api = apis::create(&state.db, &state.settings.base_url, body.into(), state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(ResourceServerView::from(api))).into_response())
}

/// `GET /api/v2/resource-servers` query (Auth0's paging).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Page number, from 0.
    pub page: Option<i64>,
    /// 1–100, default 50.
    pub per_page: Option<i64>,
    /// `true`: answer `{resource_servers, start, limit, total}` instead of the bare array.
    pub include_totals: Option<bool>,
}

/// The list: the bare array, or the page with `include_totals=true`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ResourceServerListResponse {
    List(Vec<ResourceServerView>),
    Page { resource_servers: Vec<ResourceServerView>, start: i64, limit: i64, total: i64 },
}

/// Lists the APIs: the management API first, then the others, oldest first.
#[utoipa::path(get, path = paths::MGMT_RESOURCE_SERVERS, tag = "management", params(ListQuery),
    responses((status = 200, body = ResourceServerListResponse),
        (status = 400, body = ManagementErrorBody, description = "`invalid_query_string`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn list_resource_servers(
    State(state): State<AppState>,
    manager: Manager,
    ManagementQuery(query): ManagementQuery<ListQuery>,
) -> Result<Json<ResourceServerListResponse>, ManagementError> {
    manager.require("read:resource_servers")?;
    let (limit, start) = super::page(query.page, query.per_page);
    let (apis, total) = apis::list(&state.db, &state.settings.base_url, limit, start).await?;
    let views: Vec<ResourceServerView> = apis.into_iter().map(ResourceServerView::from).collect();
    Ok(Json(if query.include_totals == Some(true) {
        ResourceServerListResponse::Page { resource_servers: views, start, limit, total }
    } else {
        ResourceServerListResponse::List(views)
    }))
}

/// One API, by id or identifier (the management API's included).
#[utoipa::path(get, path = paths::MGMT_RESOURCE_SERVER, tag = "management", params(("id" = String, Path)),
    responses((status = 200, body = ResourceServerView),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_resource_server`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn get_resource_server(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<Json<ResourceServerView>, ManagementError> {
    manager.require("read:resource_servers")?;
    let api = apis::find(&state.db, &state.settings.base_url, &id).await?.ok_or(ResourceError::NotFound)?;
    Ok(Json(api.into()))
}

/// Changes an API's fields (`identifier` cannot change).
#[utoipa::path(patch, path = paths::MGMT_RESOURCE_SERVER, tag = "management", params(("id" = String, Path)),
    request_body = ResourceServerRequest,
    responses((status = 200, body = ResourceServerView),
        (status = 400, body = ManagementErrorBody, description = "`invalid_body`, `operation_not_supported`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_resource_server`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn update_resource_server(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
    ManagementJson(body): ManagementJson<ResourceServerRequest>,
) -> Result<Json<ResourceServerView>, ManagementError> {
    manager.require("update:resource_servers")?;
    let api = apis::update(&state.db, &id, body.into(), state.clock.now()).await?;
    state.publish(crate::storage::notify::CacheEvent::OAuthConfigChanged).await?;
    Ok(Json(api.into()))
}

/// Deletes an API and its client grants.
#[utoipa::path(delete, path = paths::MGMT_RESOURCE_SERVER, tag = "management", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"),
        (status = 400, body = ManagementErrorBody, description = "`operation_not_supported`: the management API"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_resource_server`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn delete_resource_server(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<StatusCode, ManagementError> {
    manager.require("delete:resource_servers")?;
    apis::delete(&state.db, &id).await?;
    state.publish(crate::storage::notify::CacheEvent::OAuthConfigChanged).await?;
    Ok(StatusCode::NO_CONTENT)
}
