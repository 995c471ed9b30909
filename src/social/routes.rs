//! `POST /api/auth/sign-in/social`, `GET /api/auth/callback/{id}`, `GET /api/auth/list-accounts` and
//! `POST /api/auth/unlink-account` (Better Auth shapes, DESIGN.md "Social sign-in").
//!
//! Every failure after the flow cookie is read goes back to the error callback with `?error=<code>` and
//! no session; only a callback with no flow cookie of ours (so no callback URL is known) gets Latchkey's
//! own 400 page.

use axum::{
    extract::{Path, RawQuery, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{paths, store, FlowCookie, Found, Provider, SocialError, UnlinkError, FLOW_LIFETIME};
// The routes sit above `state` and `principal`, which are built on the domain half of this capability
// (and of the others): the folders meet in a circle, the files do not (README, "Code tour").
use crate::{
    accounts::{User, UserView},
    audit::{self, AuditEvent},
    clock::iso8601,
    error::{ApiError, ErrorBody},
    http::{
        cookies::{self, SetCookies},
        extractors::{ApiJson, ClientInfo},
    },
    oauth::pages,
    principal::extractors::{refuse_untrusted_origin, SessionAuth},
    sessions,
    state::AppState,
};

/// The four routes, each with its OpenAPI operation; `app::routes` merges them.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in_social))
        .routes(routes!(social_callback))
        .routes(routes!(list_accounts))
        .routes(routes!(unlink_account))
}

impl From<UnlinkError> for ApiError {
    fn from(error: UnlinkError) -> Self {
        match error {
            UnlinkError::NotFound => ApiError::bad_request("ACCOUNT_NOT_FOUND", "Account not found"),
            UnlinkError::LastAccount => {
                ApiError::bad_request("FAILED_TO_UNLINK_LAST_ACCOUNT", "You can't unlink your last account")
            }
            UnlinkError::Internal(error) => ApiError::internal(error),
        }
    }
}

/// The answers of the ID-token sign-in to a failure.
fn id_token_error(error: SocialError) -> ApiError {
    match error {
        SocialError::InvalidIdToken(_) => ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_TOKEN", "Invalid token"),
        SocialError::AccountNotLinked => {
            ApiError::new(StatusCode::UNAUTHORIZED, "ACCOUNT_NOT_LINKED", "Account not linked")
        }
        SocialError::EmailNotFound => ApiError::bad_request("EMAIL_NOT_FOUND", "The provider gave no email"),
        SocialError::Blocked => ApiError::new(StatusCode::FORBIDDEN, "BANNED_USER", "This user is blocked"),
        SocialError::Unavailable(_) => provider_unavailable(),
        other => ApiError::internal(anyhow::anyhow!("social sign-in: {other}")),
    }
}

fn provider_unavailable() -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "PROVIDER_UNAVAILABLE", "The sign-in provider cannot be reached")
}

/// An upstream ID token a mobile app got from the provider's own SDK.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdTokenInput {
    /// The ID token (a JWT signed by the provider, `aud` = our client id there).
    pub token: String,
    /// The nonce the app asked the provider for; when given, the token's must match.
    pub nonce: Option<String>,
    /// Accepted and ignored: Latchkey stores no upstream token.
    pub access_token: Option<String>,
    /// Accepted and ignored: Latchkey stores no upstream token.
    pub refresh_token: Option<String>,
}

/// `sign-in/social` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignInSocialRequest {
    /// A configured provider id (`google`, …).
    pub provider: String,
    /// Where the browser goes after sign-in: relative, or on a trusted origin (default `/`).
    #[serde(rename = "callbackURL")]
    pub callback_url: Option<String>,
    /// Where it goes after a failure, with `?error=<code>` (default: `callbackURL`).
    #[serde(rename = "errorCallbackURL")]
    pub error_callback_url: Option<String>,
    /// Where a newly created user goes (default: `callbackURL`).
    #[serde(rename = "newUserCallbackURL")]
    pub new_user_callback_url: Option<String>,
    /// `true`: answer `redirect: false` (the client navigates to `url` itself).
    pub disable_redirect: Option<bool>,
    /// Sign in with an upstream ID token instead of a redirect (mobile apps).
    pub id_token: Option<IdTokenInput>,
    /// `false`: a one-day session in a browser-session cookie (ID-token sign-in).
    pub remember_me: Option<bool>,
}

/// `sign-in/social` answer: a redirect to the provider, or (ID token) a session.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SignInSocialResponse {
    /// The provider's authorization URL; null after an ID-token sign-in.
    pub url: Option<String>,
    /// True when the client should navigate to `url`.
    pub redirect: bool,
    /// The raw session token (ID-token sign-in only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The signed-in user (ID-token sign-in only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserView>,
}

/// An absolute callback URL on a trusted origin: a relative path is resolved against the base URL.
fn trusted_url(state: &AppState, url: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(url) = url else { return Ok(None) };
    let refused = || ApiError::new(StatusCode::FORBIDDEN, "INVALID_CALLBACK_URL", "Invalid callbackURL");
    let relative = url.starts_with('/') && !url.starts_with("//") && !url.contains('\\');
    let absolute = if relative {
        url::Url::parse(&state.settings.base_url).and_then(|base| base.join(url)).map_err(|_| refused())?.to_string()
    } else {
        url.to_owned()
    };
    match crate::config::origin_of(&absolute) {
        Some(origin) if state.is_trusted_origin(&origin) => Ok(Some(absolute)),
        _ => Err(refused()),
    }
}

/// Where a started sign-in sends its browser back to.
pub struct Callbacks {
    pub callback_url: Option<String>,
    pub error_callback_url: Option<String>,
    pub new_user_callback_url: Option<String>,
}

/// Starts a redirect sign-in (the JSON endpoint and the login page's buttons): checks the callback URLs,
/// asks the provider's metadata for the authorization URL, and seals the flow into its cookie.
pub async fn begin(state: &AppState, provider: &Provider, callbacks: Callbacks) -> Result<(String, String), ApiError> {
    let callback_url = trusted_url(state, callbacks.callback_url.as_deref())?
        .unwrap_or_else(|| format!("{}/", state.settings.base_origin()));
    let error_callback_url = trusted_url(state, callbacks.error_callback_url.as_deref())?;
    let new_user_callback_url = trusted_url(state, callbacks.new_user_callback_url.as_deref())?;
    let now = state.clock.now();
    let authorization =
        state.social.upstreams.authorize(provider, &redirect_uri(state, &provider.id), now).await.map_err(|error| {
            tracing::warn!(provider = %provider.id, error = %error, "social sign-in could not start");
            provider_unavailable()
        })?;
    let flow = FlowCookie {
        provider: provider.id.clone(),
        state: authorization.state,
        nonce: authorization.nonce,
        pkce_verifier: authorization.pkce_verifier,
        callback_url,
        error_callback_url,
        new_user_callback_url,
        expires_at: now + FLOW_LIFETIME,
    };
    let cookie = state.cookies.set(&state.social.flow_cookie, &state.social.seal(&flow), Some(FLOW_LIFETIME / 1000));
    Ok((authorization.url, cookie))
}

/// Latchkey's redirect URI at the provider.
fn redirect_uri(state: &AppState, provider: &str) -> String {
    format!("{}{}", state.settings.base_url.trim_end_matches('/'), paths::SOCIAL_CALLBACK.replace("{id}", provider))
}

fn provider_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "PROVIDER_NOT_FOUND", "Provider not found")
}

/// Starts a sign-in with a provider (`{url, redirect: true}` and the flow cookie), or signs in with an
/// upstream ID token (`idToken`, mobile apps): a session cookie and `{redirect: false, token, url: null,
/// user}`.
///
/// Anyone may call it; an untrusted `Origin` is refused, the ID-token sign-in is rate-limited per IP.
#[utoipa::path(post, path = paths::SIGN_IN_SOCIAL, tag = "accounts", request_body = SignInSocialRequest,
    responses((status = 200, body = SignInSocialResponse),
        (status = 400, body = ErrorBody, description = "`INVALID_JSON`, `VALIDATION_ERROR`, `EMAIL_NOT_FOUND`"),
        (status = 401, body = ErrorBody, description = "`INVALID_TOKEN` (ID token refused), `ACCOUNT_NOT_LINKED`"),
        (status = 403, body = ErrorBody, description = "`INVALID_ORIGIN`, `INVALID_CALLBACK_URL`, `BANNED_USER` (ID token of a blocked user)"),
        (status = 404, body = ErrorBody, description = "`PROVIDER_NOT_FOUND`"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 429, body = ErrorBody, description = "`TOO_MANY_REQUESTS`, with `Retry-After`"),
        (status = 502, body = ErrorBody, description = "`PROVIDER_UNAVAILABLE`: discovery or its keys failed")))]
pub async fn sign_in_social(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    ApiJson(body): ApiJson<SignInSocialRequest>,
) -> Result<Response, ApiError> {
    refuse_untrusted_origin(&state, &headers)?;
    let provider = state.social.providers.get(&body.provider).ok_or_else(provider_not_found)?.clone();
    if let Some(id_token) = body.id_token {
        let now = state.clock.now();
        state.limits.sign_in_ip.hit(&client.rate_limit_key(), now).map_err(ApiError::too_many_requests)?;
        let signed_in = async {
            let profile = state
                .social
                .upstreams
                .verify_id_token(&provider, &id_token.token, id_token.nonce.as_deref(), now)
                .await?;
            super::resolve_user(&state.db, &provider.id, &profile, now).await
        }
        .await;
        let (user, found) = match signed_in {
            Ok(found) => found,
            Err(error) => {
                sign_in_failed(&provider.id, &error);
                return Err(id_token_error(error));
            }
        };
        signed_in_audit(&provider.id, &user, found);
        let (token, cookies) =
            sessions::cookies::start_session(&state, &user.id, &client, body.remember_me.unwrap_or(true), &user)
                .await?;
        let answer = SignInSocialResponse {
            url: None,
            redirect: false,
            token: Some(token.expose().to_owned()),
            user: Some(UserView::from(&user)),
        };
        return Ok((cookies, Json(answer)).into_response());
    }
    let callbacks = Callbacks {
        callback_url: body.callback_url,
        error_callback_url: body.error_callback_url,
        new_user_callback_url: body.new_user_callback_url,
    };
    let (url, cookie) = begin(&state, &provider, callbacks).await?;
    let answer = SignInSocialResponse {
        url: Some(url),
        redirect: !body.disable_redirect.unwrap_or(false),
        token: None,
        user: None,
    };
    Ok((SetCookies(vec![cookie]), Json(answer)).into_response())
}

fn sign_in_failed(provider: &str, error: &SocialError) {
    metrics::counter!("latchkey_sign_in_total", "outcome" => "failure").increment(1);
    let code = error.code();
    // The cause (for operators; never a token: the upstream errors hold none) is logged, not audited.
    match error {
        SocialError::Internal(cause) => {
            tracing::error!(provider, error = format!("{cause:#}"), "social sign-in failed")
        }
        SocialError::Unavailable(_) => tracing::warn!(provider, code = %code, error = %error, "social sign-in failed"),
        _ => tracing::info!(provider, code = %code, error = %error, "social sign-in failed"),
    }
    audit::emit(AuditEvent::SocialSignInFailed { provider, reason: &code });
}

fn signed_in_audit(provider: &str, user: &User, found: Found) {
    metrics::counter!("latchkey_sign_in_total", "outcome" => "success").increment(1);
    match found {
        Found::Created => audit::emit(AuditEvent::UserCreated { user_id: &user.id }),
        Found::Linked => audit::emit(AuditEvent::SocialAccountLinked { user_id: &user.id, provider }),
        Found::Existing => {}
    }
    audit::emit(AuditEvent::SocialSignInSucceeded { user_id: &user.id, provider });
}

/// A 302 that also clears the flow cookie (and sets whatever else is given).
fn redirect_with(state: &AppState, location: &str, mut cookies: Vec<String>) -> Response {
    cookies.push(state.cookies.clear(&state.social.flow_cookie));
    match HeaderValue::from_str(location) {
        Ok(location) => {
            let mut response = (StatusCode::FOUND, SetCookies(cookies), ()).into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(_) => no_flow(),
    }
}

/// Latchkey's own 400 page: a callback with no flow of ours, so nowhere known to send the browser. The
/// flow cookie is left alone: a link to another provider's callback must not end a sign-in in progress.
fn no_flow() -> Response {
    pages::message(
        StatusCode::BAD_REQUEST,
        "This sign-in cannot go on",
        "It has expired or was started in another browser. Go back to the application and sign in again.",
    )
}

/// `url` with `error=<code>` added to its query.
fn with_error(url: &str, code: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut url) => {
            url.query_pairs_mut().append_pair("error", code);
            url.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

/// The provider's redirect back: checks the flow, exchanges the code, finds, links or creates the user,
/// starts a session, and sends the browser on (`newUserCallbackURL` for a new user); any failure goes to
/// the error callback with `?error=<code>` (`state_mismatch`, `access_denied`, `account_not_linked`,
/// `invalid_code`, `invalid_id_token`, `email_not_found`, …) and no session.
#[utoipa::path(get, path = paths::SOCIAL_CALLBACK, tag = "accounts",
    params(("id" = String, Path, description = "The provider id"),
        ("code" = Option<String>, Query, description = "The provider's authorization code"),
        ("state" = Option<String>, Query, description = "The state this server sent"),
        ("error" = Option<String>, Query, description = "The provider's error code")),
    responses((status = 302, description = "On to callbackURL (with the session cookie), or to the error callback with `?error=`"),
        (status = 400, description = "No flow cookie of this server for this provider: an HTML page", content_type = "text/html", body = String)))]
pub async fn social_callback(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    client: ClientInfo,
    RawQuery(query): RawQuery,
) -> Response {
    let now = state.clock.now();
    let flow = cookies::get(&headers, &state.social.flow_cookie)
        .and_then(|value| state.social.open(&value, now))
        .filter(|flow| flow.provider == id);
    let (Some(flow), Some(provider)) = (flow, state.social.providers.get(&id).cloned()) else {
        // The path is the caller's: only a configured provider's id reaches the audit log.
        let provider = if state.social.providers.contains_key(&id) { id.as_str() } else { "unknown" };
        audit::emit(AuditEvent::SocialSignInFailed { provider, reason: "no_flow" });
        return no_flow();
    };
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let outcome = async {
        if let Some(error) = param("error") {
            return Err(SocialError::Upstream(super::upstream_error_code(&error)));
        }
        let state_ok =
            param("state").is_some_and(|got| crate::crypto::constant_time_eq(got.as_bytes(), flow.state.as_bytes()));
        if !state_ok {
            return Err(SocialError::StateMismatch);
        }
        let code = param("code").filter(|code| !code.is_empty()).ok_or(SocialError::NoCode)?;
        let profile = state
            .social
            .upstreams
            .exchange(&provider, &redirect_uri(&state, &id), &code, &flow.pkce_verifier, &flow.nonce, now)
            .await?;
        super::resolve_user(&state.db, &provider.id, &profile, now).await
    }
    .await;
    let (user, found) = match outcome {
        Ok(found) => found,
        Err(error) => {
            sign_in_failed(&id, &error);
            let target = flow.error_callback_url.as_deref().unwrap_or(&flow.callback_url);
            return redirect_with(&state, &with_error(target, &error.code()), Vec::new());
        }
    };
    signed_in_audit(&id, &user, found);
    let (_, session_cookies) = match sessions::cookies::start_session(&state, &user.id, &client, true, &user).await {
        Ok(started) => started,
        Err(error) => {
            tracing::warn!(code = error.code, "social sign-in: the session could not start");
            let target = flow.error_callback_url.as_deref().unwrap_or(&flow.callback_url);
            return redirect_with(&state, &with_error(target, "internal_error"), Vec::new());
        }
    };
    let target = match found {
        Found::Created => flow.new_user_callback_url.as_deref().unwrap_or(&flow.callback_url),
        Found::Existing | Found::Linked => &flow.callback_url,
    };
    redirect_with(&state, target, session_cookies.0)
}

/// One way of signing in (Better Auth's `list-accounts` item).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    /// `acc_…`
    pub id: String,
    /// `credential` (the password) or a social provider's id.
    pub provider_id: String,
    /// The provider's subject; the user id for `credential`.
    pub account_id: String,
    /// The owner (`usr_…`).
    pub user_id: String,
    /// Scopes granted upstream: always empty, as Latchkey keeps no upstream token.
    pub scopes: Vec<String>,
    /// ISO 8601.
    pub created_at: String,
    /// ISO 8601.
    pub updated_at: String,
}

/// The signed-in user's accounts: the password (`credential`) and each linked provider.
///
/// Needs a session (cookie or bearer).
#[utoipa::path(get, path = paths::LIST_ACCOUNTS, tag = "accounts",
    responses((status = 200, body = Vec<AccountView>),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`")))]
pub async fn list_accounts(
    State(state): State<AppState>,
    auth: SessionAuth,
) -> Result<Json<Vec<AccountView>>, ApiError> {
    let rows = store::list_accounts(&state.db, &auth.user.id).await?;
    let views = rows
        .into_iter()
        .map(|row| AccountView {
            id: row.id,
            provider_id: row.provider_id,
            account_id: row.account_id,
            user_id: row.user_id,
            scopes: Vec::new(),
            created_at: iso8601(row.created_at),
            updated_at: iso8601(row.updated_at),
        })
        .collect();
    Ok(Json(views))
}

/// Which account to unlink.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnlinkAccountRequest {
    /// The provider id (`google`, …, or `credential`).
    pub provider_id: String,
    /// The provider's subject, when the user has several accounts there.
    pub account_id: Option<String>,
}

/// `{status: true}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UnlinkAccountResponse {
    /// Always true.
    pub status: bool,
}

/// Unlinks one of the signed-in user's accounts; the last way to sign in is never removed.
///
/// Needs a session; a cookie session needs a trusted `Origin`.
#[utoipa::path(post, path = paths::UNLINK_ACCOUNT, tag = "accounts", request_body = UnlinkAccountRequest,
    responses((status = 200, body = UnlinkAccountResponse),
        (status = 400, body = ErrorBody, description = "`INVALID_JSON`, `VALIDATION_ERROR`, `ACCOUNT_NOT_FOUND`, \
            `FAILED_TO_UNLINK_LAST_ACCOUNT`"),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`"),
        (status = 403, body = ErrorBody, description = "`INVALID_ORIGIN` (cookie session from an untrusted origin)"),
        (status = 415, body = ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`")))]
pub async fn unlink_account(
    State(state): State<AppState>,
    auth: SessionAuth,
    ApiJson(body): ApiJson<UnlinkAccountRequest>,
) -> Result<Json<UnlinkAccountResponse>, ApiError> {
    let outcome = store::unlink(&state.db, &auth.user.id, &body.provider_id, body.account_id.as_deref())
        .await
        .map_err(UnlinkError::from)?;
    match outcome {
        store::Unlinked::Done => {}
        store::Unlinked::NotFound => return Err(UnlinkError::NotFound.into()),
        store::Unlinked::Last => return Err(UnlinkError::LastAccount.into()),
    }
    audit::emit(AuditEvent::SocialAccountUnlinked { user_id: &auth.user.id, provider: &body.provider_id });
    Ok(Json(UnlinkAccountResponse { status: true }))
}
