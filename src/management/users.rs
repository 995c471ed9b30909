//! `/api/v2/users`, `/api/v2/users-by-email`, `/api/v2/sessions/{id}` and `/api/v2/refresh-tokens/{id}`:
//! users in Auth0's shape (create, list with paging and `q` by email, get, patch, delete), and what they
//! hold — sessions, refresh-token families, linked identities.
//!
//! Blocking or deleting a user ends everything they hold at once, here and on every node within the bus's
//! latency ([`cut_off`]): their sessions are revoked (every node refuses the cached cookies), their
//! refresh-token families revoked, every token issued to them so far refused by subject, and their API
//! keys dropped from every cache (the database lookup refuses a blocked owner).

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{paths, ManagementError, ManagementErrorBody, ManagementJson, ManagementPath, ManagementQuery, Manager};
// The routes sit above `state`, which is built on the capabilities' domain halves: the folders meet in a
// circle, the files do not (README, "Code tour").
use crate::{
    accounts::{self, email::Email, store as users, AccountError, Extras, NewUser},
    audit::{self, AuditEvent},
    clock::{iso8601, Millis},
    config::Secret,
    oauth::flow_store,
    sessions,
    state::{AppState, AppStateInner},
    storage::{notify::CacheEvent, StorageError},
    tokens::Algorithm,
};

/// The database connection of an email/password user, as Auth0 names it.
pub const PASSWORD_CONNECTION: &str = "Username-Password-Authentication";
/// The most JSON text either metadata object may hold (Auth0's limit).
const METADATA_LIMIT: usize = 16 * 1024;

/// One way a user signs in, as Auth0 lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Identity {
    /// `Username-Password-Authentication` for the password, else the social provider's id.
    pub connection: String,
    /// `auth0` for the password, else the social provider's id.
    pub provider: String,
    /// The account's id at the provider (the user's own id for the password).
    pub user_id: String,
    #[serde(rename = "isSocial")]
    pub is_social: bool,
}

/// A user, as Auth0's management API shows one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ManagedUser {
    /// `usr_…`.
    pub user_id: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    /// The avatar URL, or null.
    pub picture: Option<String>,
    pub blocked: bool,
    /// ISO 8601.
    pub created_at: String,
    /// ISO 8601.
    pub updated_at: String,
    pub identities: Vec<Identity>,
    #[schema(value_type = Object)]
    pub app_metadata: Map<String, Value>,
    #[schema(value_type = Object)]
    pub user_metadata: Map<String, Value>,
}

fn identity(user_id: &str, provider_id: &str, account_id: &str) -> Identity {
    if provider_id == "credential" {
        Identity {
            connection: PASSWORD_CONNECTION.into(),
            provider: "auth0".into(),
            user_id: user_id.to_owned(),
            is_social: false,
        }
    } else {
        Identity {
            connection: provider_id.to_owned(),
            provider: provider_id.to_owned(),
            user_id: account_id.to_owned(),
            is_social: true,
        }
    }
}

fn object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// The views of some users, with their identities in one query.
async fn views(state: &AppStateInner, rows: Vec<users::ProfileRow>) -> Result<Vec<ManagedUser>, StorageError> {
    let ids: Vec<String> = rows.iter().map(|row| row.user.id.clone()).collect();
    let identities = users::identities(&state.db, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let user = row.user;
            ManagedUser {
                identities: identities
                    .iter()
                    .filter(|(owner, ..)| *owner == user.id)
                    .map(|(_, provider, account, _)| identity(&user.id, provider, account))
                    .collect(),
                app_metadata: object(&row.app_metadata),
                user_metadata: object(&row.user_metadata),
                created_at: iso8601(user.created_at),
                updated_at: iso8601(user.updated_at),
                user_id: user.id,
                email: user.email,
                email_verified: user.email_verified,
                name: user.name,
                picture: user.image,
                blocked: user.blocked,
            }
        })
        .collect())
}

async fn view(state: &AppStateInner, id: &str) -> Result<ManagedUser, ManagementError> {
    let row = users::find_profile(&state.db, id).await?.ok_or_else(inexistent_user)?;
    Ok(views(state, vec![row]).await?.remove(0))
}

fn inexistent_user() -> ManagementError {
    ManagementError::new(StatusCode::NOT_FOUND, "inexistent_user", "The user does not exist.")
}

/// Ends everything a user holds, here and on every node: sessions, refresh-token families, tokens issued
/// so far (cut off by subject until the longest-lived of them expires) and cached API keys. Called when a
/// user is blocked, and before one is deleted.
pub async fn cut_off(state: &AppStateInner, user_id: &str) -> Result<(), ManagementError> {
    let now = state.clock.now();
    let session_ids: Vec<String> =
        sessions::store::list_for_user(&state.db, user_id, 0).await?.into_iter().map(|s| s.id).collect();
    sessions::revoke(&state.db, &state.sessions.revoked, &session_ids, now).await?;
    flow_store::revoke_user_grants(&state.db, user_id, now).await?;
    let until = now + token_window(state).await?;
    crate::oauth::cut_off_user(&state.db, &state.tokens.revocations, user_id, until, now).await?;
    forget_keys(state, user_id).await
}

/// How long a revocation of a user's tokens made now must be remembered: the longest lifetime of a token
/// the user may hold (every algorithm's retire window; extension tokens' 15 minutes), leeway included.
async fn token_window(state: &AppStateInner) -> Result<Millis, StorageError> {
    let mut window = 900_000 + i64::try_from(state.settings.tokens.leeway).unwrap_or(0).saturating_mul(1000);
    for alg in Algorithm::ALL {
        window = window.max(crate::oauth::apis::retire_window(&state.db, &state.settings, alg).await?);
    }
    Ok(window)
}

/// Drops the user's API keys from every node's cache (they are read again, with the owner's state).
async fn forget_keys(state: &AppStateInner, user_id: &str) -> Result<(), ManagementError> {
    for key_id in crate::api_keys::store::ids_for_user(&state.db, user_id).await? {
        state.publish(CacheEvent::ApiKeyChanged { key_id }).await?;
    }
    Ok(())
}

/// `POST /api/v2/users` body (Auth0's, for the password connection).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// `Username-Password-Authentication` (the only connection that takes a password); may be left out.
    pub connection: Option<String>,
    pub email: String,
    /// 8–128 characters, not a common password.
    #[schema(value_type = String)]
    pub password: Secret,
    /// Defaults to the part of the email before `@`.
    pub name: Option<String>,
    /// Avatar URL.
    pub picture: Option<String>,
    pub email_verified: Option<bool>,
    pub blocked: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub app_metadata: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    pub user_metadata: Option<Map<String, Value>>,
}

fn check_metadata(map: &Map<String, Value>) -> Result<(), ManagementError> {
    if Value::Object(map.clone()).to_string().len() > METADATA_LIMIT {
        return Err(ManagementError::invalid_body("Metadata may hold at most 16 KB"));
    }
    Ok(())
}

fn account_error(error: AccountError) -> ManagementError {
    match error {
        AccountError::UserAlreadyExists => {
            ManagementError::new(StatusCode::CONFLICT, "user_exists", "The user already exists.")
        }
        AccountError::InvalidEmail => ManagementError::invalid_body("Payload validation error: invalid email"),
        AccountError::PasswordTooShort | AccountError::PasswordTooLong | AccountError::PasswordCompromised => {
            ManagementError::new(
                StatusCode::BAD_REQUEST,
                "password_strength_error",
                "PasswordStrengthError: Password is too weak (8–128 characters, not a common password)",
            )
        }
        AccountError::InvalidName => ManagementError::invalid_body("Name or picture is too long"),
        other => crate::error::ApiError::from(other).into(),
    }
}

/// Creates a user with a password.
#[utoipa::path(post, path = paths::MGMT_USERS, tag = "management", request_body = CreateUserRequest,
    responses((status = 201, body = ManagedUser),
        (status = 400, body = ManagementErrorBody, description = "`invalid_body`, `password_strength_error`, `inexistent_connection`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 409, body = ManagementErrorBody, description = "`user_exists`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`; `server_busy` (too many password hashes waiting)")))]
pub async fn create_user(
    State(state): State<AppState>,
    manager: Manager,
    ManagementJson(body): ManagementJson<CreateUserRequest>,
) -> Result<Response, ManagementError> {
    manager.require("create:users")?;
    if body.connection.as_deref().is_some_and(|c| c != PASSWORD_CONNECTION) {
        return Err(ManagementError::new(
            StatusCode::BAD_REQUEST,
            "inexistent_connection",
            format!("The connection does not exist; users with a password use {PASSWORD_CONNECTION}"),
        ));
    }
    for map in [&body.app_metadata, &body.user_metadata].into_iter().flatten() {
        check_metadata(map)?;
    }
    let name = body.name.unwrap_or_else(|| body.email.split('@').next().unwrap_or_default().to_owned());
    let new = NewUser { name, email: body.email, password: body.password, image: body.picture, admin: false };
    let extras = Extras {
        email_verified: body.email_verified.unwrap_or(false),
        blocked: body.blocked.unwrap_or(false),
        app_metadata: body.app_metadata.unwrap_or_default(),
        user_metadata: body.user_metadata.unwrap_or_default(),
    };
    let user =
        accounts::create(&state.db, &state.hasher, new, extras, state.clock.now()).await.map_err(account_error)?;
    audit::emit(AuditEvent::ManagementAction {
        actor_id: manager.actor(),
        resource: "user",
        id: &user.id,
        user_id: Some(&user.id),
        action: "created",
    });
    Ok((StatusCode::CREATED, Json(view(&state, &user.id).await?)).into_response())
}

/// `GET /api/v2/users` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UsersQuery {
    /// Page number, from 0.
    pub page: Option<i64>,
    /// 1–100, default 50.
    pub per_page: Option<i64>,
    /// `true`: answer `{users, start, limit, length, total}` instead of the bare array.
    pub include_totals: Option<bool>,
    /// `created_at:1` (oldest first) or `created_at:-1` (newest first, the default).
    pub sort: Option<String>,
    /// By email: `email:"jane@example.com"`, `email:jane@example.com`, or a prefix `email:jane*`.
    pub q: Option<String>,
    /// Accepted as Auth0's clients send it (`v3`); there is one search engine.
    pub search_engine: Option<String>,
}

/// The list: the bare array, or the page with `include_totals=true`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ManagedUserList {
    List(Vec<ManagedUser>),
    Page(ManagedUserPage),
}

/// `include_totals=true` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ManagedUserPage {
    pub users: Vec<ManagedUser>,
    pub start: i64,
    pub limit: i64,
    pub length: i64,
    pub total: i64,
}

fn query_error(message: impl Into<String>) -> ManagementError {
    ManagementError::new(StatusCode::BAD_REQUEST, "invalid_query_string", message)
}

/// The supported part of Auth0's user search: one `email:` term, exact or as a prefix.
fn email_filter(q: &str) -> Result<users::EmailFilter, ManagementError> {
    let q = q.trim();
    if q.is_empty() {
        return Ok(users::EmailFilter::All);
    }
    let value = q
        .strip_prefix("email:")
        .ok_or_else(|| query_error("Only `email:` searches are supported, e.g. email:\"jane@example.com\""))?
        .trim();
    let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
    if value.is_empty() || value.contains(char::is_whitespace) {
        return Err(query_error("email: takes one address or prefix"));
    }
    Ok(match value.strip_suffix('*') {
        Some(prefix) if !prefix.contains('*') => users::EmailFilter::Prefix(prefix.to_lowercase()),
        Some(_) => return Err(query_error("Only a trailing * is supported")),
        None if value.contains('*') => return Err(query_error("Only a trailing * is supported")),
        None => users::EmailFilter::Exact(value.to_lowercase()),
    })
}

/// Lists users, with Auth0's paging and search by email.
#[utoipa::path(get, path = paths::MGMT_USERS, tag = "management", params(UsersQuery),
    responses((status = 200, body = ManagedUserList),
        (status = 400, body = ManagementErrorBody, description = "`invalid_query_string`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn list_users(
    State(state): State<AppState>,
    manager: Manager,
    ManagementQuery(query): ManagementQuery<UsersQuery>,
) -> Result<Json<ManagedUserList>, ManagementError> {
    manager.require("read:users")?;
    let filter = email_filter(query.q.as_deref().unwrap_or_default())?;
    let oldest_first = match query.sort.as_deref() {
        None | Some("created_at:-1") => false,
        Some("created_at:1") => true,
        Some(other) => return Err(query_error(format!("sort: created_at:1 or created_at:-1, not {other}"))),
    };
    let (limit, start) = super::page(query.page, query.per_page);
    let totals = query.include_totals == Some(true);
    let (rows, total) = users::list_profiles(&state.db, &filter, oldest_first, limit, start, totals).await?;
    let list = views(&state, rows).await?;
    Ok(Json(match total {
        Some(total) => {
            let length = i64::try_from(list.len()).unwrap_or(i64::MAX);
            ManagedUserList::Page(ManagedUserPage { users: list, start, limit, length, total })
        }
        None => ManagedUserList::List(list),
    }))
}

/// `GET /api/v2/users-by-email` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ByEmailQuery {
    pub email: String,
}

/// The users with an email (at most one: emails are unique).
#[utoipa::path(get, path = paths::MGMT_USERS_BY_EMAIL, tag = "management", params(ByEmailQuery),
    responses((status = 200, body = Vec<ManagedUser>),
        (status = 400, body = ManagementErrorBody, description = "`invalid_query_string`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn users_by_email(
    State(state): State<AppState>,
    manager: Manager,
    ManagementQuery(query): ManagementQuery<ByEmailQuery>,
) -> Result<Json<Vec<ManagedUser>>, ManagementError> {
    manager.require("read:users")?;
    let Some(email) = Email::parse(&query.email) else { return Ok(Json(Vec::new())) };
    let filter = users::EmailFilter::Exact(email.as_str().to_owned());
    let (rows, _) = users::list_profiles(&state.db, &filter, true, 1, 0, false).await?;
    Ok(Json(views(&state, rows).await?))
}

/// One user.
#[utoipa::path(get, path = paths::MGMT_USER, tag = "management", params(("id" = String, Path)),
    responses((status = 200, body = ManagedUser),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_user`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn get_user(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<Json<ManagedUser>, ManagementError> {
    manager.require("read:users")?;
    Ok(Json(view(&state, &id).await?))
}

/// `PATCH /api/v2/users/{id}` body: only what is sent changes. Metadata objects merge into the stored
/// ones key by key (a `null` value removes a key; `{}` empties the object), as Auth0's.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    pub name: Option<String>,
    /// Avatar URL; null removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub picture: Option<Option<String>>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    /// `true` ends every session, refresh-token family, token and API key of the user on every node.
    pub blocked: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub app_metadata: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    pub user_metadata: Option<Map<String, Value>>,
    /// Accepted (Auth0's clients send it); must be the password connection.
    pub connection: Option<String>,
}

/// Tells a field sent as `null` from a field left out.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

fn merge(stored: &str, patch: Map<String, Value>) -> Result<String, ManagementError> {
    let mut map = if patch.is_empty() { Map::new() } else { object(stored) };
    for (key, value) in patch {
        if value.is_null() {
            map.remove(&key);
        } else {
            map.insert(key, value);
        }
    }
    check_metadata(&map)?;
    Ok(Value::Object(map).to_string())
}

/// Changes a user. Blocking ends everything the user holds at once.
#[utoipa::path(patch, path = paths::MGMT_USER, tag = "management", params(("id" = String, Path)),
    request_body = UpdateUserRequest,
    responses((status = 200, body = ManagedUser),
        (status = 400, body = ManagementErrorBody, description = "`invalid_body`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_user`"),
        (status = 409, body = ManagementErrorBody, description = "`user_exists`: another user has this email"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn update_user(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
    ManagementJson(body): ManagementJson<UpdateUserRequest>,
) -> Result<Json<ManagedUser>, ManagementError> {
    manager.require("update:users")?;
    if body.connection.as_deref().is_some_and(|c| c != PASSWORD_CONNECTION) {
        return Err(ManagementError::invalid_body(format!("connection: only {PASSWORD_CONNECTION}")));
    }
    let stored = users::find_profile(&state.db, &id).await?.ok_or_else(inexistent_user)?;
    let name = body.name.map(|name| name.trim().to_owned());
    if name.as_ref().is_some_and(|name| name.chars().count() > 256)
        || body.picture.as_ref().is_some_and(|p| p.as_ref().is_some_and(|p| p.len() > 2048))
    {
        return Err(ManagementError::invalid_body("Name or picture is too long"));
    }
    let email = match body.email {
        Some(raw) => Some(
            Email::parse(&raw)
                .ok_or_else(|| ManagementError::invalid_body("Payload validation error: invalid email"))?
                .as_str()
                .to_owned(),
        ),
        None => None,
    };
    let change = users::ProfileChange {
        name,
        image: body.picture,
        email,
        email_verified: body.email_verified,
        blocked: body.blocked,
        app_metadata: body.app_metadata.map(|patch| merge(&stored.app_metadata, patch)).transpose()?,
        user_metadata: body.user_metadata.map(|patch| merge(&stored.user_metadata, patch)).transpose()?,
    };
    match users::update_profile(&state.db, &id, &change, state.clock.now()).await {
        Ok(true) => {}
        Ok(false) => return Err(inexistent_user()),
        Err(StorageError::UniqueViolation(_)) => {
            return Err(ManagementError::new(StatusCode::CONFLICT, "user_exists", "Another user has this email."))
        }
        Err(error) => return Err(error.into()),
    }
    let newly_blocked = body.blocked == Some(true) && !stored.user.blocked;
    if newly_blocked {
        cut_off(&state, &id).await?;
    } else if body.blocked == Some(false) && stored.user.blocked {
        // Caches hold the user's keys as blocked: forget them so they are read again.
        forget_keys(&state, &id).await?;
    }
    let action = match body.blocked {
        Some(true) if newly_blocked => "blocked",
        Some(false) if stored.user.blocked => "unblocked",
        _ => "updated",
    };
    audit::emit(AuditEvent::ManagementAction {
        actor_id: manager.actor(),
        resource: "user",
        id: &id,
        user_id: Some(&id),
        action,
    });
    Ok(Json(view(&state, &id).await?))
}

/// Deletes a user and everything they hold.
#[utoipa::path(delete, path = paths::MGMT_USER, tag = "management", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_user`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn delete_user(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<StatusCode, ManagementError> {
    manager.require("delete:users")?;
    if users::find_profile(&state.db, &id).await?.is_none() {
        return Err(inexistent_user());
    }
    // Cut off first: the keys' ids and the sessions must still be found to be refused everywhere.
    cut_off(&state, &id).await?;
    users::delete_user(&state.db, &id).await?;
    state.publish(CacheEvent::MembershipsChanged { user_id: id.clone() }).await?;
    audit::emit(AuditEvent::ManagementAction {
        actor_id: manager.actor(),
        resource: "user",
        id: &id,
        user_id: Some(&id),
        action: "deleted",
    });
    Ok(StatusCode::NO_CONTENT)
}

/// Auth0's checkpoint paging (`from`, `take`) over a short list held whole: `from` is the index to start
/// at, and `next` is given when more follow.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CheckpointQuery {
    /// Where to start: the `next` of the previous page.
    pub from: Option<String>,
    /// 1–100, default 50.
    pub take: Option<i64>,
    /// Accepted (Auth0's clients send it); checkpoint pages carry no total.
    pub include_totals: Option<bool>,
}

/// The slice of `items` a checkpoint query asks for, and the next checkpoint.
pub fn checkpoint<T>(items: Vec<T>, query: &CheckpointQuery) -> Result<(Vec<T>, Option<String>), ManagementError> {
    let start = match query.from.as_deref() {
        None | Some("") => 0,
        Some(from) => from.parse::<usize>().map_err(|_| query_error("from: the `next` of a previous page"))?,
    };
    let take = usize::try_from(query.take.unwrap_or(50).clamp(1, 100)).unwrap_or(50);
    let more = items.len() > start.saturating_add(take);
    let page: Vec<T> = items.into_iter().skip(start).take(take).collect();
    Ok((page, more.then(|| (start + take).to_string())))
}

/// The device a session was started from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionDevice {
    pub initial_ip: Option<String>,
    pub initial_user_agent: Option<String>,
}

/// A session, as Auth0 shows one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    /// `ses_…` (the `sid` of ID tokens).
    pub id: String,
    pub user_id: String,
    /// ISO 8601.
    pub created_at: String,
    /// ISO 8601: the last sliding refresh.
    pub updated_at: String,
    /// ISO 8601: the sign-in.
    pub authenticated_at: String,
    /// ISO 8601.
    pub expires_at: String,
    pub device: SessionDevice,
}

impl From<sessions::Session> for SessionInfo {
    fn from(session: sessions::Session) -> SessionInfo {
        SessionInfo {
            created_at: iso8601(session.created_at),
            updated_at: iso8601(session.updated_at),
            authenticated_at: iso8601(session.created_at),
            expires_at: iso8601(session.expires_at),
            device: SessionDevice { initial_ip: session.ip_address, initial_user_agent: session.user_agent },
            id: session.id,
            user_id: session.user_id,
        }
    }
}

/// A user's sessions (checkpoint page).
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

async fn existing_user(state: &AppStateInner, id: &str) -> Result<(), ManagementError> {
    users::find_profile(&state.db, id).await?.map(|_| ()).ok_or_else(inexistent_user)
}

/// A user's live sessions, newest first.
#[utoipa::path(get, path = paths::MGMT_USER_SESSIONS, tag = "management", params(("id" = String, Path), CheckpointQuery),
    responses((status = 200, body = SessionList),
        (status = 400, body = ManagementErrorBody, description = "`invalid_query_string`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_user`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn list_user_sessions(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
    ManagementQuery(query): ManagementQuery<CheckpointQuery>,
) -> Result<Json<SessionList>, ManagementError> {
    manager.require("read:sessions")?;
    existing_user(&state, &id).await?;
    let all = sessions::store::list_for_user(&state.db, &id, state.clock.now()).await?;
    let (page, next) = checkpoint(all, &query)?;
    Ok(Json(SessionList { sessions: page.into_iter().map(SessionInfo::from).collect(), next }))
}

/// Ends every session of a user, on every node.
#[utoipa::path(delete, path = paths::MGMT_USER_SESSIONS, tag = "management", params(("id" = String, Path)),
    responses((status = 202, description = "Revoked"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_user`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn delete_user_sessions(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<StatusCode, ManagementError> {
    manager.require("delete:sessions")?;
    existing_user(&state, &id).await?;
    let ids: Vec<String> = sessions::store::list_for_user(&state.db, &id, 0).await?.into_iter().map(|s| s.id).collect();
    sessions::revoke(&state.db, &state.sessions.revoked, &ids, state.clock.now()).await?;
    audit::emit(AuditEvent::SessionsRevoked { user_id: &id, count: ids.len(), reason: "management" });
    Ok(StatusCode::ACCEPTED)
}

fn inexistent_session() -> ManagementError {
    ManagementError::new(StatusCode::NOT_FOUND, "inexistent_session", "The session does not exist.")
}

/// One session.
#[utoipa::path(get, path = paths::MGMT_SESSION, tag = "management", params(("id" = String, Path)),
    responses((status = 200, body = SessionInfo),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_session`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn get_session(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<Json<SessionInfo>, ManagementError> {
    manager.require("read:sessions")?;
    let session = sessions::store::find_by_id(&state.db, &id).await?.ok_or_else(inexistent_session)?;
    if session.expires_at <= state.clock.now() {
        return Err(inexistent_session());
    }
    Ok(Json(session.into()))
}

/// Ends one session, on every node.
#[utoipa::path(delete, path = paths::MGMT_SESSION, tag = "management", params(("id" = String, Path)),
    responses((status = 200, description = "Revoked"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_session`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn delete_session(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<StatusCode, ManagementError> {
    manager.require("delete:sessions")?;
    let session = sessions::store::find_by_id(&state.db, &id).await?.ok_or_else(inexistent_session)?;
    sessions::revoke(&state.db, &state.sessions.revoked, std::slice::from_ref(&session.id), state.clock.now()).await?;
    audit::emit(AuditEvent::SessionsRevoked { user_id: &session.user_id, count: 1, reason: "management" });
    Ok(StatusCode::OK)
}

/// The API a refresh token is for, and the scopes granted there.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResourceServer {
    pub audience: Option<String>,
    /// Space-separated.
    pub scopes: String,
}

/// A refresh-token family, as Auth0 shows a refresh token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefreshTokenInfo {
    /// The family's id (`grt_…`): every rotation of the token keeps it.
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    /// The session the family was started from.
    pub session_id: String,
    pub rotating: bool,
    /// ISO 8601.
    pub created_at: String,
    /// ISO 8601.
    pub expires_at: String,
    /// ISO 8601.
    pub idle_expires_at: String,
    /// ISO 8601.
    pub last_exchanged_at: String,
    pub resource_servers: Vec<TokenResourceServer>,
}

impl From<flow_store::GrantRow> for RefreshTokenInfo {
    fn from(grant: flow_store::GrantRow) -> RefreshTokenInfo {
        RefreshTokenInfo {
            rotating: true,
            created_at: iso8601(grant.created_at),
            expires_at: iso8601(grant.expires_at),
            idle_expires_at: iso8601(grant.idle_expires_at),
            last_exchanged_at: iso8601(grant.last_used_at),
            resource_servers: vec![TokenResourceServer { audience: grant.audience, scopes: grant.scope }],
            id: grant.id,
            user_id: grant.user_id,
            client_id: grant.client_id,
            session_id: grant.session_id,
        }
    }
}

/// A user's refresh tokens (checkpoint page).
#[derive(Serialize, utoipa::ToSchema)]
pub struct RefreshTokenList {
    pub tokens: Vec<RefreshTokenInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A user's live refresh-token families, newest first.
#[utoipa::path(get, path = paths::MGMT_USER_REFRESH_TOKENS, tag = "management", params(("id" = String, Path), CheckpointQuery),
    responses((status = 200, body = RefreshTokenList),
        (status = 400, body = ManagementErrorBody, description = "`invalid_query_string`"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_user`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn list_user_refresh_tokens(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
    ManagementQuery(query): ManagementQuery<CheckpointQuery>,
) -> Result<Json<RefreshTokenList>, ManagementError> {
    manager.require("read:refresh_tokens")?;
    existing_user(&state, &id).await?;
    let all = flow_store::grants_of_user(&state.db, &id, state.clock.now()).await?;
    let (page, next) = checkpoint(all, &query)?;
    Ok(Json(RefreshTokenList { tokens: page.into_iter().map(RefreshTokenInfo::from).collect(), next }))
}

/// Revokes a family and every access token issued from it, on every node, remembered for `window` ms.
async fn revoke_family(
    state: &AppStateInner,
    grant: &flow_store::GrantRow,
    window: Millis,
) -> Result<(), ManagementError> {
    let now = state.clock.now();
    crate::oauth::revoke_family(&state.db, &state.tokens.revocations, &grant.id, now + window, now).await?;
    Ok(())
}

/// Revokes every refresh-token family of a user, and the access tokens issued from them.
#[utoipa::path(delete, path = paths::MGMT_USER_REFRESH_TOKENS, tag = "management", params(("id" = String, Path)),
    responses((status = 202, description = "Revoked"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_user`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn delete_user_refresh_tokens(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<StatusCode, ManagementError> {
    manager.require("delete:refresh_tokens")?;
    existing_user(&state, &id).await?;
    let window = token_window(&state).await?;
    for grant in flow_store::grants_of_user(&state.db, &id, state.clock.now()).await? {
        revoke_family(&state, &grant, window).await?;
    }
    audit::emit(AuditEvent::ManagementAction {
        actor_id: manager.actor(),
        resource: "refresh_tokens",
        id: &id,
        user_id: Some(&id),
        action: "revoked",
    });
    Ok(StatusCode::ACCEPTED)
}

fn inexistent_refresh_token() -> ManagementError {
    ManagementError::new(StatusCode::NOT_FOUND, "inexistent_refresh_token", "The refresh token does not exist.")
}

async fn live_grant(state: &AppStateInner, id: &str, now: Millis) -> Result<flow_store::GrantRow, ManagementError> {
    flow_store::find_grant(&state.db, id)
        .await?
        .filter(|g| g.revoked_at.is_none() && g.expires_at > now && g.idle_expires_at > now)
        .ok_or_else(inexistent_refresh_token)
}

/// One refresh-token family.
#[utoipa::path(get, path = paths::MGMT_REFRESH_TOKEN, tag = "management", params(("id" = String, Path)),
    responses((status = 200, body = RefreshTokenInfo),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_refresh_token`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn get_refresh_token(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<Json<RefreshTokenInfo>, ManagementError> {
    manager.require("read:refresh_tokens")?;
    Ok(Json(live_grant(&state, &id, state.clock.now()).await?.into()))
}

/// Revokes one refresh-token family and the access tokens issued from it.
#[utoipa::path(delete, path = paths::MGMT_REFRESH_TOKEN, tag = "management", params(("id" = String, Path)),
    responses((status = 202, description = "Revoked"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_refresh_token`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn delete_refresh_token(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<StatusCode, ManagementError> {
    manager.require("delete:refresh_tokens")?;
    let grant = live_grant(&state, &id, state.clock.now()).await?;
    revoke_family(&state, &grant, token_window(&state).await?).await?;
    audit::emit(AuditEvent::ManagementAction {
        actor_id: manager.actor(),
        resource: "refresh_token",
        id: &grant.id,
        user_id: Some(&grant.user_id),
        action: "revoked",
    });
    Ok(StatusCode::ACCEPTED)
}

/// Unlinks one identity from a user (never the last way to sign in); answers the identities left.
#[utoipa::path(delete, path = paths::MGMT_USER_IDENTITY, tag = "management",
    params(("id" = String, Path), ("provider" = String, Path, description = "`auth0` for the password, else the social provider's id"),
        ("user_id" = String, Path, description = "The account's id at the provider")),
    responses((status = 200, body = Vec<Identity>),
        (status = 400, body = ManagementErrorBody, description = "`last_identity`: the user's only way to sign in"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without the operation\'s scope"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_user`, `inexistent_identity`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn unlink_identity(
    State(state): State<AppState>,
    manager: Manager,
    axum::extract::Path((id, provider, account)): axum::extract::Path<(String, String, String)>,
) -> Result<Json<Vec<Identity>>, ManagementError> {
    manager.require("update:users")?;
    existing_user(&state, &id).await?;
    let provider_id = if provider == "auth0" { "credential" } else { provider.as_str() };
    match users::unlink(&state.db, &id, provider_id, &account).await? {
        None => {
            return Err(ManagementError::new(
                StatusCode::NOT_FOUND,
                "inexistent_identity",
                "The user has no such identity.",
            ))
        }
        Some(false) => {
            return Err(ManagementError::new(
                StatusCode::BAD_REQUEST,
                "last_identity",
                "This is the user's only way to sign in.",
            ))
        }
        Some(true) => {}
    }
    audit::emit(AuditEvent::ManagementAction {
        actor_id: manager.actor(),
        resource: "identity",
        id: &format!("{provider}|{account}"),
        user_id: Some(&id),
        action: "unlinked",
    });
    Ok(Json(view(&state, &id).await?.identities))
}
