//! `POST /api/auth/sign-up/email` and `POST /api/auth/sign-in/email` (Better Auth shapes).

use axum::{extract::State, http::HeaderMap, http::StatusCode, Json};
use serde::{de::IgnoredAny, Deserialize, Serialize};

use utoipa_axum::{router::OpenApiRouter, routes};

use super::paths;
use super::{email::Email, AccountError, NewUser, UserView};
// The routes sit above `state` and `principal`, which are built on the domain half of this capability
// (and of the others): the folders meet in a circle, the files do not (README, "Code tour").
use crate::{
    audit::{self, AuditEvent},
    config::Secret,
    error::{ApiError, ErrorBody},
    http::extractors::ClientInfo,
    http::{cookies::SetCookies, extractors::ApiJson},
    principal::extractors::refuse_untrusted_origin,
    sessions,
    state::AppState,
};

/// Sign-up and sign-in, each registered with its OpenAPI operation; `app::routes` merges them.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sign_up_email)).routes(routes!(sign_in_email))
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        use AccountError::*;
        match error {
            InvalidEmail => ApiError::bad_request("INVALID_EMAIL", "Invalid email"),
            PasswordTooShort => {
                ApiError::bad_request("PASSWORD_TOO_SHORT", "Password is too short (minimum 8 characters)")
            }
            PasswordTooLong => {
                ApiError::bad_request("PASSWORD_TOO_LONG", "Password is too long (maximum 128 characters)")
            }
            PasswordCompromised => {
                ApiError::bad_request("PASSWORD_COMPROMISED", "This password is too common. Please choose another one.")
            }
            InvalidName => ApiError::bad_request("VALIDATION_ERROR", "Name or image is too long"),
            UserAlreadyExists => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL",
                "User already exists. Use another email.",
            ),
            InvalidCredentials => {
                ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_EMAIL_OR_PASSWORD", "Invalid email or password")
            }
            Blocked => ApiError::new(StatusCode::FORBIDDEN, "BANNED_USER", "This user is blocked"),
            Busy(_) => ApiError::server_busy(),
            Internal(error) => ApiError::internal(error),
        }
    }
}

/// Sign-up body. Unknown fields are ignored (Better Auth clients send extras), but `role` and
/// `emailVerified` are refused: they are never the client's to set.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignUpRequest {
    /// Display name, trimmed; at most 256 characters.
    pub name: String,
    /// Email (trimmed, lower-cased).
    pub email: String,
    /// 8–128 characters, not a common password.
    #[schema(value_type = String, format = Password)]
    pub password: Secret,
    /// Avatar URL, at most 2048 bytes.
    pub image: Option<String>,
    /// Where the client goes next; must be relative or on a trusted origin.
    #[serde(rename = "callbackURL")]
    pub callback_url: Option<String>,
    /// `false`: a one-day session in a browser-session cookie.
    pub remember_me: Option<bool>,
    #[serde(default)]
    #[schema(ignore)]
    role: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(ignore)]
    email_verified: Option<IgnoredAny>,
}

/// Sign-up answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SignUpResponse {
    /// The raw session token (for bearer use); also set as the session cookie.
    pub token: String,
    /// The new user.
    pub user: UserView,
}

/// Sign-in body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignInRequest {
    /// Email address; trimmed and lower-cased before the lookup.
    pub email: String,
    /// Password.
    #[schema(value_type = String, format = Password)]
    pub password: Secret,
    /// `false`: a one-day session in a browser-session cookie.
    pub remember_me: Option<bool>,
    /// Where the client goes next; must be relative or on a trusted origin.
    #[serde(rename = "callbackURL")]
    pub callback_url: Option<String>,
}

/// Sign-in answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SignInResponse {
    /// True when a `callbackURL` was given.
    pub redirect: bool,
    /// The raw session token (for bearer use).
    pub token: String,
    /// The `callbackURL`, or null.
    pub url: Option<String>,
    /// The user.
    pub user: UserView,
}

/// A `callbackURL` must be a relative path or on a trusted origin (no open redirect).
fn check_callback_url(state: &AppState, url: Option<&str>) -> Result<(), ApiError> {
    let Some(url) = url else { return Ok(()) };
    let relative = url.starts_with('/') && !url.starts_with("//") && !url.contains('\\');
    let trusted = crate::config::origin_of(url).is_some_and(|origin| state.is_trusted_origin(&origin));
    if relative || trusted {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "INVALID_CALLBACK_URL", "Invalid callbackURL"))
    }
}

/// Creates an account with email and password and signs it in.
///
/// Anyone may call it (rate-limited per IP); an untrusted `Origin` is refused.
#[utoipa::path(post, path = paths::SIGN_UP_EMAIL, tag = "accounts", request_body = SignUpRequest,
    responses((status = 200, body = SignUpResponse),
        (status = 400, body = ErrorBody, description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_EMAIL`, \
            `PASSWORD_TOO_SHORT`, `PASSWORD_TOO_LONG`, `PASSWORD_COMPROMISED`, `FIELD_NOT_ALLOWED`"),
        (status = 403, body = ErrorBody, description = "`INVALID_ORIGIN`, `INVALID_CALLBACK_URL`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 422, body = ErrorBody, description = "`USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL`"),
        (status = 429, body = ErrorBody, description = "`TOO_MANY_REQUESTS`, with `Retry-After`"),
        (status = 503, body = ErrorBody, description = "`SERVER_BUSY`: too many password hashes waiting (a sign-in or sign-up flood), with `Retry-After`")))]
pub async fn sign_up_email(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    ApiJson(body): ApiJson<SignUpRequest>,
) -> Result<(SetCookies, Json<SignUpResponse>), ApiError> {
    refuse_untrusted_origin(&state, &headers)?;
    check_callback_url(&state, body.callback_url.as_deref())?;
    let now = state.clock.now();
    state.limits.sign_up_ip.hit(&client.rate_limit_key(), now).map_err(ApiError::too_many_requests)?;
    if body.role.is_some() || body.email_verified.is_some() {
        return Err(ApiError::bad_request("FIELD_NOT_ALLOWED", "role and emailVerified cannot be set at sign-up"));
    }
    let new = NewUser { name: body.name, email: body.email, password: body.password, image: body.image, admin: false };
    let user = super::sign_up(&state.db, &state.hasher, new, now).await?;
    audit::emit(AuditEvent::UserCreated { user_id: &user.id });
    let (token, cookies) =
        sessions::cookies::start_session(&state, &user.id, &client, body.remember_me.unwrap_or(true), &user).await?;
    Ok((cookies, Json(SignUpResponse { token: token.expose().to_owned(), user: UserView::from(&user) })))
}

/// Signs in with email and password: a new session every time (no fixation).
///
/// Anyone may call it; rate-limited per IP and per email (failures); an untrusted `Origin` is refused.
/// An unknown email and a wrong password get the same answer in about the same time.
#[utoipa::path(post, path = paths::SIGN_IN_EMAIL, tag = "accounts", request_body = SignInRequest,
    responses((status = 200, body = SignInResponse),
        (status = 400, body = ErrorBody, description = "`INVALID_JSON`, `VALIDATION_ERROR`, `INVALID_EMAIL`"),
        (status = 401, body = ErrorBody, description = "`INVALID_EMAIL_OR_PASSWORD`"),
        (status = 403, body = ErrorBody, description = "`INVALID_ORIGIN`, `INVALID_CALLBACK_URL`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 429, body = ErrorBody, description = "`TOO_MANY_REQUESTS`, with `Retry-After`"),
        (status = 503, body = ErrorBody, description = "`SERVER_BUSY`: too many password hashes waiting (a sign-in or sign-up flood), with `Retry-After`")))]
pub async fn sign_in_email(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    ApiJson(body): ApiJson<SignInRequest>,
) -> Result<(SetCookies, Json<SignInResponse>), ApiError> {
    refuse_untrusted_origin(&state, &headers)?;
    check_callback_url(&state, body.callback_url.as_deref())?;
    let now = state.clock.now();
    state.limits.sign_in_ip.hit(&client.rate_limit_key(), now).map_err(ApiError::too_many_requests)?;
    let email = Email::parse(&body.email).ok_or(AccountError::InvalidEmail)?;
    super::failures::check(&state.db, &state.limits.sign_in_email, &email, now).await?.map_err(|retry| {
        metrics::counter!("latchkey_sign_in_total", "outcome" => "rate_limited").increment(1);
        ApiError::too_many_requests(retry)
    })?;
    let user = match super::verify_credentials(&state.db, &state.hasher, &email, body.password).await {
        Ok(user) => user,
        Err(error) => {
            if matches!(error, AccountError::InvalidCredentials) {
                super::failures::record(&state.db, &state.limits.sign_in_email, &email, state.clock.now()).await?;
                metrics::counter!("latchkey_sign_in_total", "outcome" => "failure").increment(1);
                audit::emit(AuditEvent::SignInFailed { reason: "invalid_credentials" });
            }
            if matches!(error, AccountError::Blocked) {
                metrics::counter!("latchkey_sign_in_total", "outcome" => "failure").increment(1);
                audit::emit(AuditEvent::SignInFailed { reason: "blocked" });
            }
            return Err(error.into());
        }
    };
    metrics::counter!("latchkey_sign_in_total", "outcome" => "success").increment(1);
    audit::emit(AuditEvent::SignInSucceeded { user_id: &user.id });
    let (token, cookies) =
        sessions::cookies::start_session(&state, &user.id, &client, body.remember_me.unwrap_or(true), &user).await?;
    let response = SignInResponse {
        redirect: body.callback_url.is_some(),
        token: token.expose().to_owned(),
        url: body.callback_url,
        user: UserView::from(&user),
    };
    Ok((cookies, Json(response)))
}
