//! `GET|POST /userinfo` (OpenID Connect Core §5.3): a valid, unrevoked access token whose `aud` includes
//! `{issuer}userinfo` gets the user's claims by scope; anything else is a 401 with a Bearer challenge
//! (`error="invalid_token"`, or just the realm when no token was sent: RFC 6750 §3.1).

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;

use super::{access, cors, error::no_store, paths};
use crate::{accounts, principal::credentials, state::AppState};

/// The claims a userinfo answer may hold: `sub` always, the others by scope (`profile`, `email`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserInfo<'a> {
    pub sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// Present when the user has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<&'a str>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

/// The RFC 6750 error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BearerErrorBody {
    pub error: &'static str,
    pub error_description: &'static str,
}

fn refuse(token_sent: bool) -> Response {
    let challenge = if token_sent {
        "Bearer realm=\"latchkey\", error=\"invalid_token\", error_description=\"The access token is invalid\""
    } else {
        "Bearer realm=\"latchkey\""
    };
    let body = BearerErrorBody {
        error: if token_sent { "invalid_token" } else { "invalid_request" },
        error_description: if token_sent { "The access token is invalid" } else { "No access token was sent" },
    };
    let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    no_store(response.headers_mut());
    response
}

async fn answer(state: &AppState, headers: &HeaderMap) -> (Response, Option<cors::ClientRef>) {
    let Some(token) = credentials::bearer_token(headers) else { return (refuse(false), None) };
    let claims = match access::verify(state, token, Some(&state.oauth.userinfo_audience)) {
        Ok(claims) => claims,
        Err(_) => return (refuse(true), None),
    };
    let client = cors::ClientRef::named(Some(&claims.azp));
    let now = state.clock.now();
    let user = match state.oauth.users.get(&claims.sub, now) {
        Some(user) => user,
        None => match accounts::store::find_user_by_id(&state.db, &claims.sub).await {
            Ok(Some(user)) => {
                let user = std::sync::Arc::new(user);
                state.oauth.users.insert(&claims.sub, std::sync::Arc::clone(&user), now + state.oauth.user_ttl, now);
                user
            }
            Ok(None) => return (refuse(true), client),
            Err(error) => return (crate::error::ApiError::internal(error).into_response(), client),
        },
    };
    let (profile, email) = (claims.has_scope("profile"), claims.has_scope("email"));
    let info = UserInfo {
        sub: &user.id,
        name: profile.then_some(user.name.as_str()),
        picture: user.image.as_deref().filter(|_| profile),
        updated_at: profile.then_some(user.updated_at / 1000),
        email: email.then_some(user.email.as_str()),
        email_verified: email.then_some(user.email_verified),
    };
    let mut response = Json(info).into_response();
    no_store(response.headers_mut());
    (response, client)
}

/// The signed-in user's claims, by the token's scopes.
#[utoipa::path(get, path = paths::USERINFO, tag = "oauth",
    responses((status = 200, body = UserInfo),
        (status = 401, body = BearerErrorBody, description = "No token, or one that is invalid, expired or revoked (`WWW-Authenticate: Bearer`)")))]
pub async fn userinfo_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    with_cors(&state, &headers).await
}

/// The same as `GET /userinfo` (a form body, if any, is not read).
#[utoipa::path(post, path = paths::USERINFO, tag = "oauth",
    responses((status = 200, body = UserInfo),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`: a body that is neither a form nor JSON"),
        (status = 401, body = BearerErrorBody, description = "No token, or one that is invalid, expired or revoked (`WWW-Authenticate: Bearer`)")))]
pub async fn userinfo_post(State(state): State<AppState>, headers: HeaderMap) -> Response {
    with_cors(&state, &headers).await
}

async fn with_cors(state: &AppState, headers: &HeaderMap) -> Response {
    let (mut response, client) = answer(state, headers).await;
    cors::allow(state, &mut response, cors::origin(headers).as_deref(), client.as_ref()).await;
    response
}
