//! `/v1/clients`: service clients, managed with the master credentials.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};

use super::credentials::MasterCredentials;
use super::paths;
// The routes sit above `state` and `principal`, which are built on the domain half of this capability
// (and of the others): the folders meet in a circle, the files do not (README, "Code tour").
use crate::{
    audit::{self, AuditEvent},
    clock::iso8601,
    error::{ApiError, ErrorBody},
    http::extractors::{ApiJson, ApiPath},
    state::AppState,
    tokens::revocation::{self, Owner},
};

/// `POST /v1/clients` body.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateClientRequest {
    /// 1–100 characters.
    pub name: String,
}

/// A client with its key: answered once, at creation and rotation.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientWithKey {
    /// `cli_…`
    pub client_id: String,
    /// Display name, trimmed.
    pub name: String,
    /// The client key (`lkc_…`): shown only now.
    pub api_key: String,
}

/// A client as listed (never its key).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientView {
    /// `cli_…`
    pub client_id: String,
    /// Display name, trimmed.
    pub name: String,
    /// First characters of the key.
    pub key_start: String,
    /// ISO 8601.
    pub created_at: String,
    /// ISO 8601 (last key rotation).
    pub updated_at: String,
}

/// `{clients}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientList {
    /// Every client, oldest first.
    pub clients: Vec<ClientView>,
}

/// `{deleted: true}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ServiceDeleted)]
pub struct Deleted {
    /// Always true.
    pub deleted: bool,
}

pub(super) fn check_name(name: &str, field: &str) -> Result<(), ApiError> {
    if !super::valid_name(name) {
        return Err(ApiError::bad_request("INVALID_NAME", format!("{field} must be 1-100 characters")));
    }
    Ok(())
}

/// Creates a client (master credentials).
#[utoipa::path(post, path = paths::V1_CLIENTS, tag = "service", request_body = CreateClientRequest,
    responses((status = 201, body = ClientWithKey),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, `INVALID_NAME`"),
        (status = 401, body = ErrorBody, description = "`INVALID_MASTER_CREDENTIALS`, with `WWW-Authenticate: Basic`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)"),
        (status = 503, body = ErrorBody, description = "`MASTER_CREDENTIALS_NOT_CONFIGURED`")))]
pub async fn create_client(
    State(state): State<AppState>,
    _master: MasterCredentials,
    ApiJson(body): ApiJson<CreateClientRequest>,
) -> Result<Response, ApiError> {
    check_name(&body.name, "name")?;
    let (key, client) = super::create_client(&state.db, &body.name, state.clock.now()).await?;
    let body = ClientWithKey { client_id: client.id, name: client.name, api_key: key };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Lists the clients (master credentials).
#[utoipa::path(get, path = paths::V1_CLIENTS, tag = "service",
    responses((status = 200, body = ClientList),
        (status = 401, body = ErrorBody, description = "`INVALID_MASTER_CREDENTIALS`, with `WWW-Authenticate: Basic`"),
        (status = 503, body = ErrorBody, description = "`MASTER_CREDENTIALS_NOT_CONFIGURED`")))]
pub async fn list_clients(
    State(state): State<AppState>,
    _master: MasterCredentials,
) -> Result<Json<ClientList>, ApiError> {
    let clients = super::store::list_clients(&state.db).await?;
    Ok(Json(ClientList {
        clients: clients
            .into_iter()
            .map(|client| ClientView {
                created_at: iso8601(client.created_at),
                updated_at: iso8601(client.updated_at),
                client_id: client.id,
                name: client.name,
                key_start: client.key_start,
            })
            .collect(),
    }))
}

/// Issues a new key for a client; the old key is refused from the next request on, on every node.
/// Tokens already issued stay valid.
#[utoipa::path(post, path = paths::V1_CLIENT_ROTATE_KEY, tag = "service", params(("id" = String, Path)),
    responses((status = 200, body = ClientWithKey),
        (status = 400, body = ErrorBody, description = "`VALIDATION_ERROR`: an id holding U+0000 (`%00`)"),
        (status = 401, body = ErrorBody, description = "`INVALID_MASTER_CREDENTIALS`, with `WWW-Authenticate: Basic`"),
        (status = 404, body = ErrorBody, description = "`NOT_FOUND`: no such client"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)"),
        (status = 503, body = ErrorBody, description = "`MASTER_CREDENTIALS_NOT_CONFIGURED`")))]
pub async fn rotate_client_key(
    State(state): State<AppState>,
    _master: MasterCredentials,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ClientWithKey>, ApiError> {
    let now = state.clock.now();
    let (key, hash, start) = super::generate_client_key();
    let client = super::store::set_client_key(&state.db, &id, &hash, &start, now)
        .await?
        .ok_or_else(|| ApiError::not_found("No such client"))?;
    state.service_tokens.client_changed(&state.db, &client.id, now).await?;
    audit::emit(AuditEvent::ServiceClientChanged { client_id: &client.id, action: "key rotated" });
    Ok(Json(ClientWithKey { client_id: client.id, name: client.name, api_key: key }))
}

/// Deletes a client, its users, and every token issued to it.
#[utoipa::path(delete, path = paths::V1_CLIENT, tag = "service", params(("id" = String, Path)),
    responses((status = 200, body = Deleted),
        (status = 400, body = ErrorBody, description = "`VALIDATION_ERROR`: an id holding U+0000 (`%00`)"),
        (status = 401, body = ErrorBody, description = "`INVALID_MASTER_CREDENTIALS`, with `WWW-Authenticate: Basic`"),
        (status = 404, body = ErrorBody, description = "`NOT_FOUND`: no such client"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)"),
        (status = 503, body = ErrorBody, description = "`MASTER_CREDENTIALS_NOT_CONFIGURED`")))]
pub async fn delete_client(
    State(state): State<AppState>,
    _master: MasterCredentials,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Deleted>, ApiError> {
    let now = state.clock.now();
    if !super::store::delete_client(&state.db, &id).await? {
        return Err(ApiError::not_found("No such client"));
    }
    revocation::revoke_owner(
        &state.db,
        &state.tokens.revocations,
        Owner::Client(&id),
        now + state.longest_token_life(),
        now,
    )
    .await?;
    state.service_tokens.client_changed(&state.db, &id, now).await?;
    audit::emit(AuditEvent::ServiceClientChanged { client_id: &id, action: "deleted" });
    Ok(Json(Deleted { deleted: true }))
}
