//! Session endpoints (Better Auth shapes): sign-out, get-session, list/revoke, `/api/session` and
//! `/debug/session`.

use axum::{
    extract::State,
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};

use utoipa_axum::{router::OpenApiRouter, routes};

use super::paths;
use super::{store, SessionView};
// The routes sit above `state` and `principal`, which are built on the domain half of this capability
// (and of the others): the folders meet in a circle, the files do not (README, "Code tour").
use crate::http::extractors::ClientInfo;
use crate::{
    accounts::UserView,
    api_keys::ApiKey,
    audit::{self, AuditEvent},
    clock::{iso8601, Millis},
    error::{ApiError, ErrorBody},
    http::{cookies::SetCookies, extractors::ApiJson},
    principal::extractors::{MaybeSession, SessionAuth, SessionOrKey},
    state::AppState,
};

/// The routes of this capability (`/debug/session` only when `debug_endpoints` is on).
pub fn router(debug_endpoints: bool) -> OpenApiRouter<AppState> {
    let router = OpenApiRouter::new()
        .routes(routes!(sign_out))
        .routes(routes!(get_session))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(revoke_sessions))
        .routes(routes!(revoke_other_sessions))
        .routes(routes!(api_session));
    if debug_endpoints {
        router.routes(routes!(debug_session))
    } else {
        router
    }
}

/// `{session, user}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionWithUser {
    /// The session (its `token` is a revocation handle).
    pub session: SessionView,
    /// The signed-in user; for an `x-api-key` caller, the key's owner.
    pub user: UserView,
}

/// `{success: true}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SuccessResponse {
    /// Always true.
    pub success: bool,
}

/// `{status: true}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatusResponse {
    /// Always true.
    pub status: bool,
}

/// Which of the caller's own sessions to revoke.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct RevokeSessionRequest {
    /// A session's revocation handle (`session.token` from list-sessions) or a raw session token.
    pub token: String,
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Signs out: deletes the session and expires the cookies. A cookie-authenticated call needs a trusted
/// origin. Without a valid session it still clears the cookies.
#[utoipa::path(post, path = paths::SIGN_OUT, tag = "sessions",
    responses((status = 200, body = SuccessResponse),
        (status = 403, body = ErrorBody, description = "`INVALID_ORIGIN` (cookie session from an untrusted origin)"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn sign_out(State(state): State<AppState>, maybe: MaybeSession) -> Result<Response, ApiError> {
    if let Some(auth) = maybe.auth {
        super::revoke(&state.db, &state.sessions.revoked, std::slice::from_ref(&auth.session.id), state.clock.now())
            .await?;
        audit::emit(AuditEvent::SessionsRevoked { user_id: &auth.user.id, count: 1, reason: "sign_out" });
    }
    Ok(no_store((state.cookies.clear_session(), Json(SuccessResponse { success: true })).into_response()))
}

/// The current session and user, or `null` (200) when signed out. Served from the signed cookie cache
/// within its max-age unless `?disableCookieCache=true`.
#[utoipa::path(get, path = paths::GET_SESSION, tag = "sessions",
    params(("disableCookieCache" = Option<bool>, Query, description = "Force a database read")),
    responses((status = 200, body = Option<SessionWithUser>, description = "The session and user, or `null`"),
        (status = 401, body = ErrorBody,
            description = "An `x-api-key` that is unknown (`INVALID_API_KEY`), disabled (`KEY_DISABLED`) or expired (`KEY_EXPIRED`)"),
        (status = 400, body = ErrorBody, description = "`VALIDATION_ERROR`: an `x-tenant-id` that is not UTF-8")))]
pub async fn get_session(caller: SessionOrKey, State(state): State<AppState>) -> Response {
    let maybe = match caller {
        SessionOrKey::Session(maybe) => maybe,
        SessionOrKey::Key(principal, client) => {
            let Some(key) = principal.api_key() else { return no_store(Json(None::<SessionWithUser>).into_response()) };
            let session = key_session_view(key, &client, state.clock.now(), state.sessions.policy.expires_in);
            let body = SessionWithUser { session, user: UserView::from(&*principal.user) };
            return no_store(Json(body).into_response());
        }
    };
    let response = match maybe.auth {
        Some(auth) => {
            let render = || {
                let body =
                    SessionWithUser { session: SessionView::from(&auth.session), user: UserView::from(&*auth.user) };
                axum::body::Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
            };
            // A session from a remembered cookie-cache entry, unchanged: its body was rendered before.
            let body = match &auth.remembered {
                Some(remembered) => remembered.get_session_body.get_or_init(render).clone(),
                None => render(),
            };
            let json = [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
            (json, body).into_response()
        }
        None if maybe.clear_cookies => (state.cookies.clear_session(), Json(None::<SessionWithUser>)).into_response(),
        None => Json(None::<SessionWithUser>).into_response(),
    };
    no_store(response)
}

/// The session view of a request authenticated by an API key, as Better Auth's `enableSessionForAPIKeys`
/// builds it: the key's id stands for the session's (and, as everywhere, `token` is an opaque handle,
/// never the key); `expiresAt` is the key's, or a session lifetime from now for a key that never expires;
/// `activeOrganizationId` is the organization the key is scoped to, as a session's is the one it chose.
fn key_session_view(key: &ApiKey, client: &ClientInfo, now: Millis, lifetime: Millis) -> SessionView {
    SessionView {
        id: key.id.clone(),
        token: key.id.clone(),
        user_id: key.reference_id.clone(),
        expires_at: iso8601(key.expires_at.unwrap_or(now.saturating_add(lifetime))),
        ip_address: client.ip.map(|ip| ip.to_string()),
        user_agent: client.user_agent.clone(),
        active_organization_id: key.organization_id.clone(),
        created_at: iso8601(key.created_at),
        updated_at: iso8601(key.updated_at),
    }
}

/// The signed-in user's sessions.
#[utoipa::path(get, path = paths::LIST_SESSIONS, tag = "sessions",
    responses((status = 200, body = Vec<SessionView>),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`")))]
pub async fn list_sessions(State(state): State<AppState>, auth: SessionAuth) -> Result<Response, ApiError> {
    let sessions = store::list_for_user(&state.db, &auth.user.id, state.clock.now()).await?;
    let views: Vec<SessionView> = sessions.iter().map(SessionView::from).collect();
    Ok(no_store(Json(views).into_response()))
}

/// Revokes one of the user's own sessions, by handle or raw token. Another user's session, or an unknown
/// one, is 404.
#[utoipa::path(post, path = paths::REVOKE_SESSION, tag = "sessions", request_body = RevokeSessionRequest,
    responses((status = 200, body = StatusResponse),
        (status = 400, body = ErrorBody, description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_BODY`"),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`"),
        (status = 403, body = ErrorBody, description = "`INVALID_ORIGIN` (cookie session from an untrusted origin)"),
        (status = 404, body = ErrorBody, description = "`NOT_FOUND`: no such session of this user"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn revoke_session(
    State(state): State<AppState>,
    auth: SessionAuth,
    ApiJson(body): ApiJson<RevokeSessionRequest>,
) -> Result<(SetCookies, Json<StatusResponse>), ApiError> {
    let target = if body.token.starts_with("ses_") {
        store::find_by_id(&state.db, &body.token).await?
    } else {
        store::find_by_token_hash(&state.db, &super::token_hash(&body.token)).await?.map(|(session, _)| session)
    };
    let target = target
        .filter(|session| session.user_id == auth.user.id)
        .ok_or_else(|| ApiError::not_found("Session not found"))?;
    super::revoke(&state.db, &state.sessions.revoked, std::slice::from_ref(&target.id), state.clock.now()).await?;
    audit::emit(AuditEvent::SessionsRevoked { user_id: &auth.user.id, count: 1, reason: "revoke_session" });
    let cookies = if target.id == auth.session.id { state.cookies.clear_session() } else { SetCookies::default() };
    Ok((cookies, Json(StatusResponse { status: true })))
}

/// Revokes all of the user's sessions, this one included, and clears the cookies.
#[utoipa::path(post, path = paths::REVOKE_SESSIONS, tag = "sessions",
    responses((status = 200, body = StatusResponse),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`"),
        (status = 403, body = ErrorBody, description = "`INVALID_ORIGIN` (cookie session from an untrusted origin)"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn revoke_sessions(
    State(state): State<AppState>,
    auth: SessionAuth,
) -> Result<(SetCookies, Json<StatusResponse>), ApiError> {
    let ids = store::ids_for_user(&state.db, &auth.user.id).await?;
    super::revoke(&state.db, &state.sessions.revoked, &ids, state.clock.now()).await?;
    audit::emit(AuditEvent::SessionsRevoked { user_id: &auth.user.id, count: ids.len(), reason: "revoke_sessions" });
    Ok((state.cookies.clear_session(), Json(StatusResponse { status: true })))
}

/// Revokes all of the user's sessions except this one.
#[utoipa::path(post, path = paths::REVOKE_OTHER_SESSIONS, tag = "sessions",
    responses((status = 200, body = StatusResponse),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`"),
        (status = 403, body = ErrorBody, description = "`INVALID_ORIGIN` (cookie session from an untrusted origin)"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE` (a body that is not JSON)")))]
pub async fn revoke_other_sessions(
    State(state): State<AppState>,
    auth: SessionAuth,
) -> Result<Json<StatusResponse>, ApiError> {
    let mut ids = store::ids_for_user(&state.db, &auth.user.id).await?;
    ids.retain(|id| *id != auth.session.id);
    super::revoke(&state.db, &state.sessions.revoked, &ids, state.clock.now()).await?;
    audit::emit(AuditEvent::SessionsRevoked {
        user_id: &auth.user.id,
        count: ids.len(),
        reason: "revoke_other_sessions",
    });
    Ok(Json(StatusResponse { status: true }))
}

/// `{id, expiresAt}` of the session in the `/api/session` envelope.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    /// `ses_…`: also the session's revocation handle.
    pub id: String,
    /// ISO 8601.
    pub expires_at: String,
}

/// `data` of the `/api/session` envelope.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionData {
    /// The signed-in user.
    pub user: UserView,
    /// The session's id and expiry.
    pub session: SessionSummary,
}

/// `{success: true, data}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiSessionResponse {
    /// Always true.
    pub success: bool,
    /// The session, or null when signed out.
    pub data: Option<SessionData>,
}

/// The session in the `{success, data}` envelope; `data: null` when signed out.
#[utoipa::path(get, path = paths::API_SESSION, tag = "sessions", responses((status = 200, body = ApiSessionResponse)))]
pub async fn api_session(maybe: MaybeSession, State(state): State<AppState>) -> Response {
    let response = match maybe.auth {
        Some(auth) => {
            let data = SessionData {
                user: UserView::from(&*auth.user),
                session: SessionSummary {
                    id: auth.session.id.clone(),
                    expires_at: crate::clock::iso8601(auth.session.expires_at),
                },
            };
            Json(ApiSessionResponse { success: true, data: Some(data) }).into_response()
        }
        None if maybe.clear_cookies => {
            (state.cookies.clear_session(), Json(ApiSessionResponse { success: true, data: None })).into_response()
        }
        None => Json(ApiSessionResponse { success: true, data: None }).into_response(),
    };
    no_store(response)
}

/// `{user, session, org}` for debugging (only with `debug_endpoints = true`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct DebugSessionResponse {
    /// The signed-in user.
    pub user: UserView,
    /// The session, as get-session shows it.
    pub session: SessionView,
    /// Same as `session.activeOrganizationId`.
    pub org: Option<String>,
}

/// The resolved identity, for debugging. Requires a session.
#[utoipa::path(get, path = paths::DEBUG_SESSION, tag = "debug",
    responses((status = 200, body = DebugSessionResponse),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`")))]
pub async fn debug_session(auth: SessionAuth) -> Response {
    let body = DebugSessionResponse {
        user: UserView::from(&*auth.user),
        session: SessionView::from(&auth.session),
        org: auth.session.active_organization_id.clone(),
    };
    no_store(Json(body).into_response())
}
