//! `/api/v2/clients`: OAuth clients in Auth0's shapes (snake_case). A confidential client's
//! `client_secret` is in the answer of create, rotate-secret, and of an update that made the client
//! confidential — never again (only its hash is stored).

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
    clock::iso8601,
    config::Secret,
    oauth::clients::{
        self, AppType, AuthMethod, ClientError, ClientFields, GrantType, OAuthClient, RefreshTokenPatch,
        RefreshTokenSettings,
    },
    state::AppState,
};

impl From<ClientError> for ManagementError {
    fn from(error: ClientError) -> ManagementError {
        match error {
            ClientError::Invalid(message) => ManagementError::invalid_body(message),
            ClientError::NotFound => {
                ManagementError::new(StatusCode::NOT_FOUND, "inexistent_client", "The client does not exist")
            }
            ClientError::NoSecret => ManagementError::invalid_body(error.to_string()),
            ClientError::Conflict => ManagementError::new(StatusCode::CONFLICT, "client_conflict", error.to_string()),
            ClientError::Storage(error) => error.into(),
        }
    }
}

/// `jwt_configuration`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JwtConfiguration {
    /// Signs the client's ID tokens: `RS256` (default), `ES256` or `EdDSA`.
    pub alg: String,
}

/// Create and update body (Auth0's field names). On update every field is optional and `app_type`
/// cannot change; unknown fields are ignored, as Auth0's SDKs send more.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ClientRequest {
    /// 1–100 characters. Required on create.
    pub name: Option<String>,
    /// At most 140 characters; null clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// `spa`, `native`, `regular_web` or `non_interactive`. Required on create; it decides the defaults.
    pub app_type: Option<String>,
    /// First-party clients (the default) skip the consent page.
    pub is_first_party: Option<bool>,
    /// `none` (spa, native), `client_secret_post` (regular_web, non_interactive) or `client_secret_basic`.
    pub token_endpoint_auth_method: Option<String>,
    /// Default: `authorization_code` and `refresh_token`; `client_credentials` for non_interactive.
    pub grant_types: Option<Vec<String>>,
    /// Redirect URIs, matched exactly: absolute, no fragment, no wildcard.
    pub callbacks: Option<Vec<String>>,
    /// Where logout may return to, matched exactly.
    pub allowed_logout_urls: Option<Vec<String>>,
    /// Origins (`scheme://host[:port]`) whose browsers may call the token endpoint.
    pub web_origins: Option<Vec<String>>,
    pub jwt_configuration: Option<JwtConfigurationRequest>,
    /// The settings sent change; the others keep their value. Auth0's other fields are ignored.
    pub refresh_token: Option<RefreshTokenPatch>,
}

/// `jwt_configuration` as sent: Auth0's other fields (`lifetime_in_seconds`, …) are ignored.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct JwtConfigurationRequest {
    /// `RS256`, `ES256` or `EdDSA`; absent: unchanged (RS256 on create).
    pub alg: Option<String>,
}

/// `Some(None)` for an explicit null, `None` when the field is absent.
fn nullable<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

impl From<ClientRequest> for ClientFields {
    fn from(body: ClientRequest) -> ClientFields {
        ClientFields {
            name: body.name,
            description: body.description,
            app_type: body.app_type,
            is_first_party: body.is_first_party,
            token_endpoint_auth_method: body.token_endpoint_auth_method,
            grant_types: body.grant_types,
            callbacks: body.callbacks,
            allowed_logout_urls: body.allowed_logout_urls,
            web_origins: body.web_origins,
            jwt_alg: body.jwt_configuration.and_then(|jwt| jwt.alg),
            refresh_token: body.refresh_token,
        }
    }
}

/// A client as the management API shows it. No `Debug`: it may hold the secret.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ManagementClient)]
pub struct ClientView {
    /// 32 alphanumerics.
    pub client_id: String,
    pub name: String,
    pub description: Option<String>,
    pub app_type: AppType,
    pub is_first_party: bool,
    pub token_endpoint_auth_method: AuthMethod,
    pub grant_types: Vec<GrantType>,
    pub callbacks: Vec<String>,
    pub allowed_logout_urls: Vec<String>,
    pub web_origins: Vec<String>,
    pub jwt_configuration: JwtConfiguration,
    pub refresh_token: RefreshTokenSettings,
    /// Shown once: in the answer of create, rotate-secret, or the update that made the client
    /// confidential. Latchkey keeps only its hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// ISO 8601.
    pub created_at: String,
    /// ISO 8601.
    pub updated_at: String,
}

impl ClientView {
    fn new(client: OAuthClient, client_secret: Option<Secret>) -> ClientView {
        ClientView {
            created_at: iso8601(client.created_at),
            updated_at: iso8601(client.updated_at),
            jwt_configuration: JwtConfiguration { alg: client.jwt_alg.as_str().to_owned() },
            client_id: client.client_id,
            name: client.name,
            description: client.description,
            app_type: client.app_type,
            is_first_party: client.is_first_party,
            token_endpoint_auth_method: client.token_endpoint_auth_method,
            grant_types: client.grant_types,
            callbacks: client.callbacks,
            allowed_logout_urls: client.allowed_logout_urls,
            web_origins: client.web_origins,
            refresh_token: client.refresh_token,
            client_secret: client_secret.map(|secret| secret.expose().to_owned()),
        }
    }
}

/// Creates a client.
#[utoipa::path(post, path = paths::MGMT_CLIENTS, tag = "management", request_body = ClientRequest,
    responses((status = 201, body = ClientView),
        (status = 400, body = ManagementErrorBody, description = "`invalid_body`: a field missing or malformed"),
        (status = 401, body = ManagementErrorBody,
            description = "`missing_credentials`, `invalid_credentials` (Basic, the master credentials)"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON, refused before the management API in the server's own error shape)"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`: no master credentials")))]
pub async fn create_client(
    State(state): State<AppState>,
    manager: Manager,
    ManagementJson(body): ManagementJson<ClientRequest>,
) -> Result<Response, ManagementError> {
    manager.require("create:clients")?;
    let (client, secret) = clients::create(&state.db, body.into(), state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(ClientView::new(client, secret))).into_response())
}

/// `GET /api/v2/clients` query (Auth0's paging).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Page number, from 0.
    pub page: Option<i64>,
    /// 1–100, default 50.
    pub per_page: Option<i64>,
    /// `true`: answer `{clients, start, limit, total}` instead of the bare array.
    pub include_totals: Option<bool>,
}

/// The list: the bare array, or the page with `include_totals=true`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ClientListResponse {
    List(Vec<ClientView>),
    Page(ClientPage),
}

/// `include_totals=true` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientPage {
    pub clients: Vec<ClientView>,
    /// Index of the first client of this page.
    pub start: i64,
    pub limit: i64,
    pub total: i64,
}

/// Lists the clients, oldest first.
#[utoipa::path(get, path = paths::MGMT_CLIENTS, tag = "management", params(ListQuery),
    responses((status = 200, body = ClientListResponse, description = "The clients; a page with totals with `include_totals=true`"),
        (status = 400, body = ManagementErrorBody, description = "`invalid_query_string`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn list_clients(
    State(state): State<AppState>,
    manager: Manager,
    query: ManagementQuery<ListQuery>,
) -> Result<Response, ManagementError> {
    manager.require("read:clients")?;
    let query = query.0;
    let (limit, start) = super::page(query.page, query.per_page);
    let (clients, total) = crate::oauth::store::list_clients(&state.db, limit, start).await?;
    let clients: Vec<ClientView> = clients.into_iter().map(|client| ClientView::new(client, None)).collect();
    let body = if query.include_totals == Some(true) {
        ClientListResponse::Page(ClientPage { clients, start, limit, total })
    } else {
        ClientListResponse::List(clients)
    };
    Ok(Json(body).into_response())
}

/// One client.
#[utoipa::path(get, path = paths::MGMT_CLIENT, tag = "management", params(("id" = String, Path)),
    responses((status = 200, body = ClientView),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_client`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn get_client(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<Json<ClientView>, ManagementError> {
    manager.require("read:clients")?;
    let (client, _) = crate::oauth::store::find_client(&state.db, &id).await?.ok_or(ClientError::NotFound)?;
    Ok(Json(ClientView::new(client, None)))
}

/// Changes a client's fields (`app_type` cannot change).
#[utoipa::path(patch, path = paths::MGMT_CLIENT, tag = "management", params(("id" = String, Path)),
    request_body = ClientRequest,
    responses((status = 200, body = ClientView),
        (status = 400, body = ManagementErrorBody, description = "`invalid_body`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_client`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON, refused before the management API in the server's own error shape)"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn update_client(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
    ManagementJson(body): ManagementJson<ClientRequest>,
) -> Result<Json<ClientView>, ManagementError> {
    manager.require("update:clients")?;
    let (client, secret) = clients::update(&state.db, &id, body.into(), state.clock.now()).await?;
    state.publish(crate::storage::notify::CacheEvent::OAuthConfigChanged).await?;
    Ok(Json(ClientView::new(client, secret)))
}

/// Deletes a client.
#[utoipa::path(delete, path = paths::MGMT_CLIENT, tag = "management", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_client`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON, refused before the management API in the server's own error shape)"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn delete_client(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<StatusCode, ManagementError> {
    manager.require("delete:clients")?;
    if !clients::delete(&state.db, &id).await? {
        return Err(ClientError::NotFound.into());
    }
    state.publish(crate::storage::notify::CacheEvent::OAuthConfigChanged).await?;
    // Its codes, refresh families, consents and transactions went with the row; its access tokens are
    // refused from now on, on every node, until the longest of them has expired.
    let now = state.clock.now();
    let mut window = 0;
    for alg in crate::tokens::Algorithm::ALL {
        window = window.max(crate::oauth::apis::retire_window(&state.db, &state.settings, alg).await?);
    }
    let owner = crate::tokens::revocation::Owner::Client(&id);
    crate::tokens::revocation::revoke_owner(&state.db, &state.tokens.revocations, owner, now + window, now).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a confidential client's secret; the old one stops working at once.
#[utoipa::path(post, path = paths::MGMT_CLIENT_ROTATE_SECRET, tag = "management", params(("id" = String, Path)),
    responses((status = 200, body = ClientView),
        (status = 400, body = ManagementErrorBody, description = "`invalid_body`: a public client has no secret"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_client`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON, refused before the management API in the server's own error shape)"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<Json<ClientView>, ManagementError> {
    manager.require("update:client_keys")?;
    let (client, secret) = clients::rotate_secret(&state.db, &id, state.clock.now()).await?;
    state.publish(crate::storage::notify::CacheEvent::OAuthConfigChanged).await?;
    Ok(Json(ClientView::new(client, Some(secret))))
}
