//! `/v1/users`: a client's users, managed with its client key.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};

use super::clients::{check_name, Deleted};
use super::credentials::ClientKey;
use super::paths;
use super::ServiceUser;
// The routes sit above `state` and `principal`, which are built on the domain half of this capability
// (and of the others): the folders meet in a circle, the files do not (README, "Code tour").
use crate::{
    audit::{self, AuditEvent},
    clock::iso8601,
    crypto,
    error::{ApiError, ErrorBody},
    http::extractors::{ApiJson, ApiPath, ApiQuery},
    state::AppState,
    tokens::revocation::{self, Owner},
};

/// `POST /v1/users` body.
#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schema(as = ServiceCreateUserRequest)]
pub struct CreateUserRequest {
    /// The client's own id for the user (unique per client), 1–255 characters.
    pub external_id: Option<String>,
    /// Display name, 1–100 characters.
    pub name: Option<String>,
}

/// A new user with its secret.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ServiceCreatedUser)]
pub struct CreatedUser {
    /// `svu_…`
    pub user_id: String,
    /// The secret (`lks_…`): shown only now, never retrievable.
    pub secret: String,
    /// As given.
    pub external_id: Option<String>,
    /// Trimmed, as stored.
    pub name: Option<String>,
}

/// A user as listed (never its secret).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ServiceUserView)]
pub struct UserView {
    /// `svu_…`
    pub user_id: String,
    /// The client's id for it.
    pub external_id: Option<String>,
    /// Display name, trimmed; null if the client gave none.
    pub name: Option<String>,
    /// ISO 8601.
    pub created_at: String,
}

/// `{users}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ServiceUserList)]
pub struct UserList {
    /// This client's users, oldest first.
    pub users: Vec<UserView>,
}

/// `GET /v1/users` paging.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// 1–1000, default 100.
    pub limit: Option<i64>,
    /// Default 0.
    pub offset: Option<i64>,
}

/// Creates a user of the calling client.
#[utoipa::path(post, path = paths::V1_USERS, tag = "service", request_body = CreateUserRequest,
    responses((status = 201, body = CreatedUser),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, `INVALID_EXTERNAL_ID`, `INVALID_NAME`"),
        (status = 401, body = ErrorBody, description = "`INVALID_CLIENT_KEY`"),
        (status = 409, body = ErrorBody, description = "`EXTERNAL_ID_TAKEN`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn create_user(
    State(state): State<AppState>,
    ClientKey(client): ClientKey,
    body: Option<ApiJson<CreateUserRequest>>,
) -> Result<Response, ApiError> {
    let body = body.map(|ApiJson(body)| body).unwrap_or_default();
    if let Some(external_id) = &body.external_id {
        if external_id.is_empty() || external_id.chars().count() > 255 {
            return Err(ApiError::bad_request("INVALID_EXTERNAL_ID", "externalId must be 1-255 characters"));
        }
    }
    if let Some(name) = &body.name {
        check_name(name, "name")?;
    }
    let now = state.clock.now();
    let (secret, secret_hash) = super::generate_secret();
    let user = ServiceUser {
        id: crypto::new_id("svu"),
        client_id: client.id.clone(),
        external_id: body.external_id,
        name: body.name.map(|name| name.trim().to_owned()),
        secret_hash,
        created_at: now,
    };
    match super::store::insert_user(&state.db, &user).await {
        Ok(()) => {}
        Err(crate::storage::StorageError::UniqueViolation(_)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "EXTERNAL_ID_TAKEN",
                "This client already has a user with that externalId",
            ))
        }
        Err(error) => return Err(error.into()),
    }
    audit::emit(AuditEvent::ServiceUserChanged { client_id: &client.id, user_id: &user.id, action: "created" });
    let body = CreatedUser { user_id: user.id, secret, external_id: user.external_id, name: user.name };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Lists the calling client's users.
#[utoipa::path(get, path = paths::V1_USERS, tag = "service", params(ListQuery),
    responses((status = 200, body = UserList),
        (status = 400, body = ErrorBody,
            description = "`VALIDATION_ERROR`: a missing or malformed query parameter, or text holding U+0000"),
        (status = 401, body = ErrorBody, description = "`INVALID_CLIENT_KEY`")))]
pub async fn list_users(
    State(state): State<AppState>,
    ClientKey(client): ClientKey,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<UserList>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let offset = query.offset.unwrap_or(0).max(0);
    let users = super::store::list_users(&state.db, &client.id, limit, offset).await?;
    Ok(Json(UserList {
        users: users
            .into_iter()
            .map(|user| UserView {
                created_at: iso8601(user.created_at),
                user_id: user.id,
                external_id: user.external_id,
                name: user.name,
            })
            .collect(),
    }))
}

/// Deletes one of the calling client's users; its tokens die with it on every node.
#[utoipa::path(delete, path = paths::V1_USER, tag = "service", params(("id" = String, Path)),
    responses((status = 200, body = Deleted),
        (status = 400, body = ErrorBody, description = "`VALIDATION_ERROR`: an id holding U+0000 (`%00`)"),
        (status = 401, body = ErrorBody, description = "`INVALID_CLIENT_KEY`"),
        (status = 404, body = ErrorBody, description = "`NOT_FOUND`: no such user of this client"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn delete_user(
    State(state): State<AppState>,
    ClientKey(client): ClientKey,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Deleted>, ApiError> {
    let now = state.clock.now();
    // Another client's user is "not found": a client never learns of other clients' users.
    if !super::store::delete_user(&state.db, &client.id, &id).await? {
        return Err(ApiError::not_found("No such user"));
    }
    revocation::revoke_owner(
        &state.db,
        &state.tokens.revocations,
        Owner::Subject(&id),
        now + state.longest_token_life(),
        now,
    )
    .await?;
    state.service_tokens.user_changed(&state.db, &id, now).await?;
    audit::emit(AuditEvent::ServiceUserChanged { client_id: &client.id, user_id: &id, action: "deleted" });
    Ok(Json(Deleted { deleted: true }))
}
