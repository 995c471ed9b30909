//! `/api/auth/api-key/*` (Better Auth api-key plugin shapes, plus `verify` for resource servers).

use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};

use utoipa_axum::{router::OpenApiRouter, routes};

use super::paths;
use super::{
    cache::CachedKey, check_expires_in, check_name, check_permissions, ApiKey, ApiKeyError, ApiKeyView, KeyFields,
    KeyProblem, NewKey, Permissions,
};
// The routes sit above `state` and `principal`, which are built on the domain half of this capability
// (and of the others): the folders meet in a circle, the files do not (README, "Code tour").
use crate::{
    audit::{self, AuditEvent},
    clock::Millis,
    error::{ApiError, ErrorBody},
    http::extractors::ClientInfo,
    http::extractors::{json_column, ApiJson, ApiQuery},
    principal::Principal,
    state::AppState,
};

/// The six `/api/auth/api-key/*` endpoints, each registered with its OpenAPI operation; `app::routes` merges them.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(get_key))
        .routes(routes!(list))
        .routes(routes!(update))
        .routes(routes!(delete))
        .routes(routes!(verify))
}

impl From<ApiKeyError> for ApiError {
    fn from(error: ApiKeyError) -> Self {
        use ApiKeyError::*;
        let (status, code, message) = match error {
            NotFound => (StatusCode::NOT_FOUND, KeyProblem::NotFound.code(), KeyProblem::NotFound.message()),
            ExpiresInTooSmall => (
                StatusCode::BAD_REQUEST,
                "EXPIRES_IN_IS_TOO_SMALL",
                "The expiresIn is smaller than the predefined minimum value.",
            ),
            ExpiresInTooLarge => (
                StatusCode::BAD_REQUEST,
                "EXPIRES_IN_IS_TOO_LARGE",
                "The expiresIn is larger than the predefined maximum value.",
            ),
            InvalidPrefixLength => (
                StatusCode::BAD_REQUEST,
                "INVALID_PREFIX_LENGTH",
                "The prefix length is either too large or too small.",
            ),
            InvalidPrefix => (
                StatusCode::BAD_REQUEST,
                "INVALID_PREFIX",
                "prefix must be 1-16 of A-Z a-z 0-9 _ - and must not start with lkc_",
            ),
            InvalidNameLength => {
                (StatusCode::BAD_REQUEST, "INVALID_NAME_LENGTH", "The name length is either too large or too small.")
            }
            InvalidPermissions => (
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "permissions must be {resource: [actions]} of short words",
            ),
            UnauthorizedSession => {
                (StatusCode::UNAUTHORIZED, "UNAUTHORIZED_SESSION", "Unauthorized or invalid session")
            }
            UserNotFound => return ApiError::not_found("No such user"),
            NotMemberOfOrganization => (
                StatusCode::FORBIDDEN,
                "USER_NOT_MEMBER_OF_ORGANIZATION",
                "You are not a member of the organization that owns this API key.",
            ),
            Internal(error) => return ApiError::internal(error),
        };
        ApiError::new(status, code, message)
    }
}

/// A key the caller may manage: their own, or any for admins; anything else is not found.
async fn owned_key(state: &AppState, principal: &Principal, id: &str) -> Result<ApiKey, ApiKeyError> {
    match super::store::find(&state.db, id).await? {
        Some(key) if key.reference_id == principal.user.id || principal.is_admin() => Ok(key),
        _ => Err(ApiKeyError::NotFound),
    }
}

/// Every field is optional: `{}` creates an unnamed key of the caller with the default prefix, no
/// expiry and the owner's rights.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ApiKeyCreateRequest)]
pub struct CreateRequest {
    /// Display name, at most 256 characters.
    pub name: Option<String>,
    /// Key prefix: 1–16 of `A-Z a-z 0-9 _ -`, not starting with `lkc_` (default `lk_`, or the prefix the
    /// server is configured with).
    pub prefix: Option<String>,
    /// Lifetime in seconds; null: never expires.
    pub expires_in: Option<i64>,
    /// `{resource: [actions]}`: narrows what the key may do.
    #[schema(value_type = Option<Object>)]
    pub permissions: Option<Permissions>,
    /// Arbitrary JSON.
    #[schema(value_type = Option<serde_json::Value>)]
    pub metadata: Option<serde_json::Value>,
    /// Scope the key to this organization (the owner must be a member).
    pub organization_id: Option<String>,
    /// Create for another user (admins only).
    pub user_id: Option<String>,
}

/// A key with the secret, returned once by `create`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey<'a> {
    /// The key: shown only now.
    pub key: String,
    /// The key's other fields, flattened beside `key`.
    #[serde(flatten)]
    pub view: ApiKeyView<'a>,
}

/// Creates an API key for the signed-in user.
#[utoipa::path(post, path = paths::API_KEY_CREATE, tag = "api-keys", request_body = CreateRequest,
    responses((status = 200, body = CreatedKey),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, `INVALID_PREFIX`, \
            `INVALID_PREFIX_LENGTH`, `INVALID_NAME_LENGTH`, `EXPIRES_IN_IS_TOO_SMALL`, `EXPIRES_IN_IS_TOO_LARGE`"),
        (status = 401, body = ErrorBody,
            description = "`UNAUTHORIZED`; `UNAUTHORIZED_SESSION` (`userId` of another user, not an admin)"),
        (status = 403, body = ErrorBody, description = "`SESSION_REQUIRED` (an API key cannot manage keys), \
            `INVALID_ORIGIN`, `USER_NOT_MEMBER_OF_ORGANIZATION` (the owner is not in `organizationId`)"),
        (status = 404, body = ErrorBody, description = "`NOT_FOUND`: an admin named an unknown `userId`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateRequest>,
) -> Result<Response, ApiError> {
    principal.require_session()?;
    let now = state.clock.now();
    let owner_id = match &body.user_id {
        Some(user_id) if *user_id != principal.user.id => {
            // Better Auth refuses `userId` from every client; Latchkey lets admins name another user.
            if !principal.is_admin() {
                return Err(ApiKeyError::UnauthorizedSession.into());
            }
            crate::accounts::store::find_user_by_id(&state.db, user_id).await?.ok_or(ApiKeyError::UserNotFound)?.id
        }
        _ => principal.user.id.clone(),
    };
    let owner_organizations = match &body.organization_id {
        Some(_) => state
            .orgs
            .memberships
            .get(&state.db, &owner_id, now)
            .await?
            .iter()
            .map(|m| m.organization_id.clone())
            .collect(),
        None => Vec::new(),
    };
    let new = NewKey {
        owner_id,
        name: body.name,
        prefix: body.prefix.unwrap_or_else(|| state.settings.api_keys.default_prefix.clone()),
        organization_id: body.organization_id,
        permissions: body.permissions,
        metadata: json_column(body.metadata.as_ref())?,
        expires_in: body.expires_in,
    };
    let (secret, key) = super::create_key(&state.db, new, &owner_organizations, &principal.user.id, now).await?;
    let fields = KeyFields::of(&key);
    Ok(Json(CreatedKey { key: secret, view: ApiKeyView::new(&key, &fields, &state.api_keys.usage) }).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct GetQuery {
    /// The key's `id` (`key_…`).
    pub id: String,
}

/// One of the caller's keys (never the key itself).
#[utoipa::path(get, path = paths::API_KEY_GET, tag = "api-keys", params(GetQuery),
    responses((status = 200, body = ApiKeyView),
        (status = 400, body = ErrorBody,
            description = "`VALIDATION_ERROR`: a missing or malformed query parameter, or text holding U+0000"),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`: no valid session or API key"),
        (status = 404, body = ErrorBody, description = "`KEY_NOT_FOUND`: no such key of this user")))]
pub async fn get_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<GetQuery>,
) -> Result<Response, ApiError> {
    let key = owned_key(&state, &principal, &query.id).await?;
    let fields = KeyFields::of(&key);
    Ok(Json(ApiKeyView::new(&key, &fields, &state.api_keys.usage)).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Page size (default 100, at most 1000).
    pub limit: Option<i64>,
    /// Keys to skip.
    pub offset: Option<i64>,
}

/// A page of the caller's keys.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ApiKeyListResponse)]
pub struct ListResponse<'a> {
    /// This page of keys, newest first.
    pub api_keys: Vec<ApiKeyView<'a>>,
    /// How many keys the caller has, over all pages.
    pub total: i64,
    /// Page size used.
    pub limit: i64,
    /// Offset used.
    pub offset: i64,
}

/// The caller's keys, newest first.
#[utoipa::path(get, path = paths::API_KEY_LIST, tag = "api-keys", params(ListQuery),
    responses((status = 200, body = ListResponse),
        (status = 400, body = ErrorBody,
            description = "`VALIDATION_ERROR`: a missing or malformed query parameter, or text holding U+0000"),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`: no valid session or API key")))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let offset = query.offset.unwrap_or(0).max(0);
    let (keys, total) = super::store::list_for_user(&state.db, &principal.user.id, limit, offset).await?;
    let fields: Vec<KeyFields> = keys.iter().map(KeyFields::of).collect();
    let api_keys =
        keys.iter().zip(&fields).map(|(key, fields)| ApiKeyView::new(key, fields, &state.api_keys.usage)).collect();
    Ok(Json(ListResponse { api_keys, total, limit, offset }).into_response())
}

/// Update body: fields left out are unchanged.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ApiKeyUpdateRequest)]
pub struct UpdateRequest {
    /// The key's `id` (`key_…`).
    pub key_id: String,
    /// New display name, at most 256 characters.
    pub name: Option<String>,
    /// False disables the key (refused with `KEY_DISABLED` from the next request on every node); true
    /// enables it again.
    pub enabled: Option<bool>,
    /// New lifetime in seconds from now.
    pub expires_in: Option<i64>,
    /// Replaces the key's `{resource: [actions]}`; null or absent leaves them unchanged.
    #[schema(value_type = Option<Object>)]
    pub permissions: Option<Permissions>,
    /// Replaces the key's metadata (arbitrary JSON); null or absent leaves it unchanged.
    #[schema(value_type = Option<serde_json::Value>)]
    pub metadata: Option<serde_json::Value>,
}

/// Updates one of the caller's keys; the change applies to the very next request on every node.
#[utoipa::path(post, path = paths::API_KEY_UPDATE, tag = "api-keys", request_body = UpdateRequest,
    responses((status = 200, body = ApiKeyView),
        (status = 400, body = ErrorBody,
            description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`, \
            `INVALID_NAME_LENGTH`, `EXPIRES_IN_IS_TOO_SMALL`, `EXPIRES_IN_IS_TOO_LARGE`"),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`: no valid session or API key"),
        (status = 403, body = ErrorBody,
            description = "`SESSION_REQUIRED` (an API key cannot manage keys), `INVALID_ORIGIN`"),
        (status = 404, body = ErrorBody, description = "`KEY_NOT_FOUND`: no such key of this user"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<UpdateRequest>,
) -> Result<Response, ApiError> {
    principal.require_session()?;
    let now = state.clock.now();
    let mut key = owned_key(&state, &principal, &body.key_id).await?;
    check_name(&body.name)?;
    if let Some(name) = body.name {
        key.name = Some(name);
    }
    if let Some(enabled) = body.enabled {
        key.enabled = enabled;
    }
    if body.expires_in.is_some() {
        key.expires_at = check_expires_in(body.expires_in, now)?;
    }
    if body.permissions.is_some() {
        key.permissions = check_permissions(&body.permissions)?;
    }
    if body.metadata.is_some() {
        key.metadata = json_column(body.metadata.as_ref())?;
    }
    key.updated_at = now;
    super::store::update(&state.db, &key).await?;
    super::key_changed(&state.db, &state.api_keys.cache, &key.id, now).await?;
    audit::emit(AuditEvent::ApiKeyChanged { actor_id: &principal.user.id, key_id: &key.id, action: "updated" });
    let fields = KeyFields::of(&key);
    Ok(Json(ApiKeyView::new(&key, &fields, &state.api_keys.usage)).into_response())
}

/// The key to delete: one of the caller's own (any key, for an admin).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ApiKeyDeleteRequest)]
pub struct DeleteRequest {
    /// The key's `id` (`key_…`).
    pub key_id: String,
}

/// `{success: true}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ApiKeySuccess)]
pub struct Success {
    /// Always true.
    pub success: bool,
}

/// Deletes one of the caller's keys; it is refused from the very next request on every node.
#[utoipa::path(post, path = paths::API_KEY_DELETE, tag = "api-keys", request_body = DeleteRequest,
    responses((status = 200, body = Success),
        (status = 400, body = ErrorBody, description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`"),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`: no valid session or API key"),
        (status = 403, body = ErrorBody,
            description = "`SESSION_REQUIRED` (an API key cannot manage keys), `INVALID_ORIGIN`"),
        (status = 404, body = ErrorBody, description = "`KEY_NOT_FOUND`: no such key of this user"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<DeleteRequest>,
) -> Result<Json<Success>, ApiError> {
    principal.require_session()?;
    let key = owned_key(&state, &principal, &body.key_id).await?;
    let now = state.clock.now();
    if !super::delete_key(&state.db, &state.api_keys.cache, &key.id, &principal.user.id, now).await? {
        return Err(ApiKeyError::NotFound.into());
    }
    Ok(Json(Success { success: true }))
}

/// A key to check, as a resource server received it; no other credential is needed.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ApiKeyVerifyRequest)]
pub struct VerifyRequest {
    /// The key to check.
    #[schema(value_type = String, format = Password)]
    pub key: crate::config::Secret,
    /// Permissions the key must hold.
    #[schema(value_type = Option<Object>)]
    pub permissions: Option<Permissions>,
}

/// `{code, message}` of a refused key.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ApiKeyVerifyError)]
pub struct VerifyError {
    /// `KEY_NOT_FOUND`, `KEY_DISABLED`, `KEY_EXPIRED`, `INSUFFICIENT_PERMISSIONS` or `RATE_LIMITED`.
    pub code: &'static str,
    /// Human-readable.
    pub message: &'static str,
}

/// Verify answer (always 200).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ApiKeyVerifyResponse)]
pub struct VerifyResponse<'a> {
    /// True if the key may be used (with the requested permissions).
    pub valid: bool,
    /// Why not.
    pub error: Option<VerifyError>,
    /// The key's fields when `valid`; null otherwise (as Better Auth: a refused key, even an existing
    /// one, tells the caller nothing about itself).
    pub key: Option<ApiKeyView<'a>>,
}

fn refused(code: &'static str, message: &'static str) -> Response {
    Json(VerifyResponse { valid: false, error: Some(VerifyError { code, message }), key: None }).into_response()
}

/// Checks a key for a resource server; needs no other credential, rate-limited per IP.
#[utoipa::path(post, path = paths::API_KEY_VERIFY, tag = "api-keys", request_body = VerifyRequest,
    responses((status = 200, body = VerifyResponse,
            description = "Always 200 for a well-formed request; `valid: false` with `error` when refused"),
        (status = 400, body = ErrorBody, description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn verify(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<VerifyRequest>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    if state.limits.verify_ip.hit(&client.rate_limit_key(), now).is_err() {
        return Ok(refused("RATE_LIMITED", "Too many requests. Please try again later."));
    }
    let cached = state.api_keys.cache.lookup(&state.db, &super::hash_key(body.key.expose()), now).await?;
    let Some(cached) = cached else {
        return Ok(refused(KeyProblem::NotFound.code(), KeyProblem::NotFound.message()));
    };
    if let Some(problem) = cached.key.unusable(now) {
        return Ok(refused(problem.code(), problem.message()));
    }
    if let Some(wanted) = body.permissions.as_ref().filter(|wanted| !wanted.is_empty()) {
        if !cached.fields.holds(wanted) {
            return Ok(refused("INSUFFICIENT_PERMISSIONS", "The API key lacks a requested permission"));
        }
    }
    let pending = state.api_keys.usage.record(&cached.key.id, now);
    let body = verified_body(&cached, pending);
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
}

/// The `{valid: true, error: null, key}` answer for `key` with this node's pending usage: exactly
/// `VerifyResponse` serialized, but rendered once per cached key apart from the two fields a use changes
/// (`lastRequest`, `requestCount`), which are spliced in. Escaping every string of the view on each
/// request was the largest single cost of this hot path.
fn verified_body(cached: &CachedKey, pending: (Option<Millis>, i64)) -> Vec<u8> {
    const VARIABLE: &str = r#""lastRequest":null,"requestCount":0"#;
    let (key, fields) = (&cached.key, &cached.fields);
    let view = ApiKeyView::with_pending(key, fields, pending);
    let parts = cached.verified_body.get_or_init(|| {
        let template =
            ApiKeyView { last_request: None, request_count: 0, ..ApiKeyView::with_pending(key, fields, (None, 0)) };
        let json = serde_json::to_string(&VerifyResponse { valid: true, error: None, key: Some(template) }).ok()?;
        // The last occurrence: metadata (rendered earlier in the object) may contain the same text, and
        // the fields after these two are timestamps.
        let at = json.rfind(VARIABLE)?;
        Some((format!("{}\"lastRequest\":", &json[..at]), json[at + VARIABLE.len()..].to_owned()))
    });
    let Some((head, tail)) = parts else {
        return serde_json::to_vec(&VerifyResponse { valid: true, error: None, key: Some(view) }).unwrap_or_default();
    };
    let mut body = Vec::with_capacity(head.len() + tail.len() + 64);
    body.extend_from_slice(head.as_bytes());
    match view.last_request {
        Some(last) => {
            body.push(b'"');
            body.extend_from_slice(last.as_bytes());
            body.push(b'"');
        }
        None => body.extend_from_slice(b"null"),
    }
    body.extend_from_slice(b",\"requestCount\":");
    body.extend_from_slice(itoa::Buffer::new().format(view.request_count).as_bytes());
    body.extend_from_slice(tail.as_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(metadata: Option<&str>, last_request: Option<Millis>) -> ApiKey {
        ApiKey {
            id: "key_1".into(),
            name: Some("a \"quoted\" name\n".into()),
            start: "lk_abc".into(),
            prefix: "lk_".into(),
            reference_id: "usr_1".into(),
            organization_id: Some("org_1".into()),
            permissions: Some(r#"{"files":["read","write"]}"#.into()),
            metadata: metadata.map(str::to_owned),
            enabled: true,
            expires_at: Some(1_700_000_000_000),
            last_request,
            request_count: 7,
            created_at: 1_600_000_000_000,
            updated_at: 1_650_000_000_123,
        }
    }

    fn owner() -> std::sync::Arc<crate::accounts::User> {
        std::sync::Arc::new(crate::accounts::User {
            id: "usr_1".into(),
            email: "a@example.com".into(),
            name: "A".into(),
            image: None,
            email_verified: false,
            role: "user".into(),
            blocked: false,
            created_at: 0,
            updated_at: 0,
        })
    }

    #[test]
    fn the_spliced_verify_body_is_the_serialized_response() {
        let tricky = r#"{"nested":{"lastRequest":null,"requestCount":0},"x":"\u0000é"}"#;
        for metadata in [None, Some(r#"{"team":"a"}"#), Some(tricky)] {
            for stored_last in [None, Some(1_690_000_000_000)] {
                let cached = CachedKey::new(key(metadata, stored_last), owner());
                for pending in [(None, 0), (Some(1_695_000_000_456), 3), (Some(1_680_000_000_000), 1)] {
                    let expected = serde_json::to_vec(&VerifyResponse {
                        valid: true,
                        error: None,
                        key: Some(ApiKeyView::with_pending(&cached.key, &cached.fields, pending)),
                    })
                    .unwrap();
                    // Twice: the first call renders the template, the second reuses it.
                    assert_eq!(
                        String::from_utf8(verified_body(&cached, pending)).unwrap(),
                        String::from_utf8(expected.clone()).unwrap()
                    );
                    assert_eq!(verified_body(&cached, pending), expected);
                }
            }
        }
    }
}
