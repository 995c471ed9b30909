//! The sign-in and sign-up pages of the authorization flow (`/login`, `/signup`): server-rendered forms
//! that work with JavaScript off, posted back form-encoded with a CSRF token bound to a cookie and to the
//! login transaction. They use capability 1's accounts, Argon2 pool, rate limits and session cookies: the
//! session they start is the browser's SSO session. One generic message for every failed sign-in.

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::{
    authorize::{load_transaction, redirect, unavailable},
    pages, paths,
};
// The routes sit above `state`, which is built on the capabilities' domain halves: the folders meet in a
// circle, the files do not (README, "Code tour").
use crate::{
    accounts::{self, email::Email, AccountError, NewUser},
    audit::{self, AuditEvent},
    config::Secret,
    crypto,
    http::{
        cookies,
        extractors::{ApiForm, ApiQuery, ClientInfo},
    },
    sessions::cookies::start_session,
    social::routes::{begin, Callbacks},
    state::AppState,
};

/// The CSRF cookie's name (`__Host-` when cookies are secure).
pub fn csrf_cookie_name(state: &AppState) -> &'static str {
    if state.cookies.secure() {
        "__Host-lk-csrf"
    } else {
        "lk-csrf"
    }
}

/// The browser's CSRF cookie value, and the `Set-Cookie` that plants a new one when it has none.
pub fn csrf_cookie(state: &AppState, headers: &HeaderMap) -> (String, Option<String>) {
    let name = csrf_cookie_name(state);
    if let Some(value) =
        cookies::get(headers, name).filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return (value.into_owned(), None);
    }
    let value = crypto::random_alphanumeric(32);
    let secure = if state.cookies.secure() { "; Secure" } else { "" };
    (value.clone(), Some(format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age=86400{secure}")))
}

/// The form token for a transaction in this browser.
pub fn csrf_token(state: &AppState, cookie: &str, transaction: &str) -> String {
    hex::encode(crypto::hmac_sha256(&state.oauth.csrf_key, format!("{cookie}|{transaction}").as_bytes()))
}

/// True if the form's token matches the browser's cookie and the transaction.
pub fn csrf_ok(state: &AppState, headers: &HeaderMap, transaction: &str, token: &str) -> bool {
    let Some(cookie) = cookies::get(headers, csrf_cookie_name(state)) else { return false };
    let expected = csrf_token(state, &cookie, transaction);
    crypto::constant_time_eq(expected.as_bytes(), token.as_bytes())
}

/// Adds a `Set-Cookie` to a response.
pub fn with_cookie(mut response: Response, cookie: Option<String>) -> Response {
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The transaction a page belongs to.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// The login transaction (from /authorize).
    pub state: Option<String>,
    /// The code a failed social sign-in came back with (`access_denied`, `account_not_linked`, …).
    pub error: Option<String>,
}

/// What the sign-in page says after a social sign-in came back with `code`.
fn social_error_message(code: &str) -> &'static str {
    match code {
        "access_denied" => "Sign-in with the provider was cancelled.",
        "account_not_linked" => {
            "An account with this email already exists, and the provider has not verified the email. Sign in with your password."
        }
        _ => "Sign-in with the provider did not complete. Please try again.",
    }
}

/// The transaction id, if the parameter can be one.
pub fn transaction_id(state: Option<String>) -> Option<String> {
    state.filter(|s| !s.is_empty() && s.len() <= 64)
}

/// The page for a form or link without a transaction.
fn no_transaction() -> Response {
    pages::message(
        StatusCode::BAD_REQUEST,
        "Nothing to sign in to",
        "Open the application you want to use and sign in from there.",
    )
}

struct LoginView<'a> {
    transaction: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    status: StatusCode,
}

async fn login_page(state: &AppState, headers: &HeaderMap, view: LoginView<'_>) -> Response {
    let (_, request) = match load_transaction(state, view.transaction).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let client_name = match super::store::find_client(&state.db, &request.client_id).await {
        Ok(Some((client, _))) => client.name,
        Ok(None) => String::new(),
        Err(error) => return unavailable(error),
    };
    let (cookie, set_cookie) = csrf_cookie(state, headers);
    let csrf = csrf_token(state, &cookie, view.transaction);
    let nonce = pages::nonce();
    let other = format!("{}?state={}", paths::SIGNUP, view.transaction);
    let providers = state
        .social
        .providers
        .values()
        .map(|provider| pages::SocialButton { id: provider.id.clone(), name: provider.display_name() })
        .collect();
    let page = pages::LoginPage {
        nonce: &nonce,
        action: paths::LOGIN,
        client_name: &client_name,
        transaction: view.transaction,
        csrf: &csrf,
        email: view.email,
        error: view.error,
        other_href: &other,
        social_action: paths::LOGIN_SOCIAL,
        providers,
    };
    with_cookie(pages::page(&page, view.status, nonce.clone(), None), set_cookie)
}

/// The sign-in page.
#[utoipa::path(get, path = paths::LOGIN, tag = "oauth", params(PageQuery),
    responses((status = 200, description = "The sign-in page (HTML)", content_type = "text/html", body = String),
        (status = 400, description = "An HTML page: no, an unknown or an expired transaction; or `VALIDATION_ERROR` (JSON): a malformed query string",
            content((String = "text/html"), (crate::error::ErrorBody = "application/json")))))]
pub async fn login_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Response {
    let transaction = match transaction_id(query.state) {
        Some(id) => id,
        None => return no_transaction(),
    };
    let error = query.error.as_deref().map(social_error_message);
    let view = LoginView { transaction: &transaction, email: "", error, status: StatusCode::OK };
    login_page(&state, &headers, view).await
}

/// A "Continue with …" button.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SocialForm {
    pub state: Option<String>,
    pub csrf: Option<String>,
    /// The provider id.
    pub provider: Option<String>,
}

/// Starts a social sign-in from the sign-in page. The provider sends the browser back to
/// `/api/auth/callback/{id}`, whose session then resumes this authorization (`callbackURL` is
/// `/authorize/resume?state=…`); a failure comes back to this page with `?error=`.
#[utoipa::path(post, path = paths::LOGIN_SOCIAL, tag = "oauth",
    request_body(content = SocialForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`: not a form"),
        (status = 303, description = "On to the provider's authorization endpoint, with the flow cookie"),
        (status = 400, description = "The page again: an unknown provider, or one that cannot be reached; or no transaction; or `VALIDATION_ERROR` (JSON): a malformed form",
            content((String = "text/html"), (crate::error::ErrorBody = "application/json"))),
        (status = 403, description = "The page again: the CSRF token does not match", content_type = "text/html", body = String)))]
pub async fn login_social(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiForm(form): ApiForm<SocialForm>,
) -> Response {
    let transaction = match transaction_id(form.state) {
        Some(id) => id,
        None => return no_transaction(),
    };
    let again = |error: &'static str, status: StatusCode| LoginView {
        transaction: &transaction,
        email: "",
        error: Some(error),
        status,
    };
    if !csrf_ok(&state, &headers, &transaction, form.csrf.as_deref().unwrap_or_default()) {
        audit::emit(AuditEvent::CsrfRefused { page: "login" });
        return login_page(&state, &headers, again(CSRF_FAILED, StatusCode::FORBIDDEN)).await;
    }
    if let Err(page) = load_transaction(&state, &transaction).await {
        return page;
    }
    let Some(provider) = form.provider.as_deref().and_then(|id| state.social.providers.get(id)).cloned() else {
        return login_page(&state, &headers, again("Choose a way to sign in.", StatusCode::BAD_REQUEST)).await;
    };
    let callbacks = Callbacks {
        callback_url: Some(format!("{}?state={transaction}", paths::AUTHORIZE_RESUME)),
        error_callback_url: Some(format!("{}?state={transaction}", paths::LOGIN)),
        new_user_callback_url: None,
    };
    match begin(&state, &provider, callbacks).await {
        Ok((url, cookie)) => {
            let mut response = redirect(&url);
            *response.status_mut() = StatusCode::SEE_OTHER;
            with_cookie(response, Some(cookie))
        }
        Err(_) => {
            let error = "That provider cannot be reached right now. Try again in a moment.";
            login_page(&state, &headers, again(error, StatusCode::BAD_REQUEST)).await
        }
    }
}

/// The sign-in form.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginForm {
    pub state: Option<String>,
    pub csrf: Option<String>,
    pub email: Option<String>,
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<Secret>,
}

/// The generic answer to a failed sign-in.
const SIGN_IN_FAILED: &str = "Wrong email or password.";
const USER_BLOCKED: &str = "This account is blocked. Contact the administrator.";
const CSRF_FAILED: &str = "This form has expired. Please try again.";

/// The answer to too many attempts.
fn too_many(retry_after: u64) -> String {
    format!("Too many attempts. Try again in {} seconds.", retry_after.max(1))
}

/// Signs in from the form, then resumes the authorization.
#[utoipa::path(post, path = paths::LOGIN, tag = "oauth",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`: not a form"),
        (status = 303, description = "Signed in: on to /authorize/resume"),
        (status = 400, description = "The page again, with one generic error; or no transaction; or `VALIDATION_ERROR` (JSON): a malformed form",
            content((String = "text/html"), (crate::error::ErrorBody = "application/json"))),
        (status = 403, description = "The page again: the CSRF token does not match", content_type = "text/html", body = String),
        (status = 429, description = "The page again: too many attempts", content_type = "text/html", body = String)))]
pub async fn login_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    ApiForm(form): ApiForm<LoginForm>,
) -> Response {
    let transaction = match transaction_id(form.state) {
        Some(id) => id,
        None => return no_transaction(),
    };
    let email_text = form.email.unwrap_or_default();
    let again = |error: &'static str, status: StatusCode| LoginView {
        transaction: &transaction,
        email: &email_text,
        error: Some(error),
        status,
    };
    if !csrf_ok(&state, &headers, &transaction, form.csrf.as_deref().unwrap_or_default()) {
        audit::emit(AuditEvent::CsrfRefused { page: "login" });
        return login_page(&state, &headers, again(CSRF_FAILED, StatusCode::FORBIDDEN)).await;
    }
    let now = state.clock.now();
    if let Err(retry) = state.limits.sign_in_ip.hit(&client.rate_limit_key(), now) {
        let message = too_many(retry);
        let view = LoginView { error: Some(&message), ..again("", StatusCode::TOO_MANY_REQUESTS) };
        return login_page(&state, &headers, view).await;
    }
    let (Some(email), Some(password)) = (Email::parse(&email_text), form.password) else {
        return login_page(&state, &headers, again(SIGN_IN_FAILED, StatusCode::BAD_REQUEST)).await;
    };
    match accounts::failures::check(&state.db, &state.limits.sign_in_email, &email, now).await {
        Ok(Ok(())) => {}
        Ok(Err(retry)) => {
            let message = too_many(retry);
            let view = LoginView { error: Some(&message), ..again("", StatusCode::TOO_MANY_REQUESTS) };
            return login_page(&state, &headers, view).await;
        }
        Err(error) => return unavailable(anyhow::Error::from(error)),
    }
    let user = match accounts::verify_credentials(&state.db, &state.hasher, &email, password).await {
        Ok(user) => user,
        Err(AccountError::InvalidCredentials) => {
            let failed = accounts::failures::record(&state.db, &state.limits.sign_in_email, &email, state.clock.now());
            if let Err(error) = failed.await {
                return unavailable(anyhow::Error::from(error));
            }
            metrics::counter!("latchkey_sign_in_total", "outcome" => "failure").increment(1);
            audit::emit(AuditEvent::SignInFailed { reason: "invalid_credentials" });
            return login_page(&state, &headers, again(SIGN_IN_FAILED, StatusCode::BAD_REQUEST)).await;
        }
        Err(AccountError::Blocked) => {
            metrics::counter!("latchkey_sign_in_total", "outcome" => "failure").increment(1);
            audit::emit(AuditEvent::SignInFailed { reason: "blocked" });
            return login_page(&state, &headers, again(USER_BLOCKED, StatusCode::FORBIDDEN)).await;
        }
        Err(error) => return unavailable(anyhow::Error::from(error)),
    };
    metrics::counter!("latchkey_sign_in_total", "outcome" => "success").increment(1);
    audit::emit(AuditEvent::SignInSucceeded { user_id: &user.id });
    signed_in(&state, &client, &user, &transaction).await
}

/// Starts the SSO session and sends the browser on to resume the authorization.
async fn signed_in(state: &AppState, client: &ClientInfo, user: &accounts::User, transaction: &str) -> Response {
    match start_session(state, &user.id, client, true, user).await {
        Ok((_, cookies)) => {
            let mut response = redirect(&format!("{}?state={transaction}", paths::AUTHORIZE_RESUME));
            *response.status_mut() = StatusCode::SEE_OTHER;
            (cookies, response).into_response()
        }
        Err(error) => pages::message(error.status, "Something went wrong", "Try again in a moment."),
    }
}

struct SignupView<'a> {
    transaction: &'a str,
    name: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    status: StatusCode,
}

async fn signup_page(state: &AppState, headers: &HeaderMap, view: SignupView<'_>) -> Response {
    let (client, _) = match load_transaction(state, view.transaction).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let (cookie, set_cookie) = csrf_cookie(state, headers);
    let csrf = csrf_token(state, &cookie, view.transaction);
    let nonce = pages::nonce();
    let other = format!("{}?state={}", paths::LOGIN, view.transaction);
    let page = pages::SignupPage {
        nonce: &nonce,
        action: paths::SIGNUP,
        client_name: &client.name,
        transaction: view.transaction,
        csrf: &csrf,
        name: view.name,
        email: view.email,
        min_password: accounts::password::MIN_LENGTH,
        error: view.error,
        other_href: &other,
    };
    with_cookie(pages::page(&page, view.status, nonce.clone(), None), set_cookie)
}

/// The sign-up page.
#[utoipa::path(get, path = paths::SIGNUP, tag = "oauth", params(PageQuery),
    responses((status = 200, description = "The sign-up page (HTML)", content_type = "text/html", body = String),
        (status = 400, description = "An HTML page: no, an unknown or an expired transaction; or `VALIDATION_ERROR` (JSON): a malformed query string",
            content((String = "text/html"), (crate::error::ErrorBody = "application/json")))))]
pub async fn signup_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Response {
    let transaction = match transaction_id(query.state) {
        Some(id) => id,
        None => return no_transaction(),
    };
    let view = SignupView { transaction: &transaction, name: "", email: "", error: None, status: StatusCode::OK };
    signup_page(&state, &headers, view).await
}

/// The sign-up form.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SignupForm {
    pub state: Option<String>,
    pub csrf: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<Secret>,
}

/// Creates an account from the form, signs it in, then resumes the authorization.
#[utoipa::path(post, path = paths::SIGNUP, tag = "oauth",
    request_body(content = SignupForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`: not a form"),
        (status = 303, description = "Signed up and in: on to /authorize/resume"),
        (status = 400, description = "The page again, with what to fix; or `VALIDATION_ERROR` (JSON): a malformed form",
            content((String = "text/html"), (crate::error::ErrorBody = "application/json"))),
        (status = 403, description = "The page again: the CSRF token does not match", content_type = "text/html", body = String),
        (status = 429, description = "The page again: too many attempts", content_type = "text/html", body = String)))]
pub async fn signup_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    ApiForm(form): ApiForm<SignupForm>,
) -> Response {
    let transaction = match transaction_id(form.state) {
        Some(id) => id,
        None => return no_transaction(),
    };
    let name = form.name.unwrap_or_default();
    let email = form.email.unwrap_or_default();
    let again = |error: String, status: StatusCode| {
        let (state, headers, transaction, name, email) = (&state, &headers, &transaction, &name, &email);
        async move {
            let view = SignupView { transaction, name, email, error: Some(&error), status };
            signup_page(state, headers, view).await
        }
    };
    if !csrf_ok(&state, &headers, &transaction, form.csrf.as_deref().unwrap_or_default()) {
        audit::emit(AuditEvent::CsrfRefused { page: "signup" });
        return again(CSRF_FAILED.to_owned(), StatusCode::FORBIDDEN).await;
    }
    let now = state.clock.now();
    if let Err(retry) = state.limits.sign_up_ip.hit(&client.rate_limit_key(), now) {
        return again(too_many(retry), StatusCode::TOO_MANY_REQUESTS).await;
    }
    let Some(password) = form.password else {
        return again("Choose a password.".to_owned(), StatusCode::BAD_REQUEST).await;
    };
    if name.trim().is_empty() {
        return again("Enter your name.".to_owned(), StatusCode::BAD_REQUEST).await;
    }
    let new = NewUser { name: name.clone(), email: email.clone(), password, image: None, admin: false };
    let user = match accounts::sign_up(&state.db, &state.hasher, new, now).await {
        Ok(user) => user,
        Err(error) => {
            let message = match error {
                AccountError::InvalidEmail => "Enter a valid email address.",
                AccountError::PasswordTooShort => "That password is too short.",
                AccountError::PasswordTooLong => "That password is too long.",
                AccountError::PasswordCompromised => "That password is too common. Choose another one.",
                AccountError::InvalidName => "That name is too long.",
                AccountError::UserAlreadyExists => "An account with this email already exists. Sign in instead.",
                // A saturated hashing queue is a 503 page (`unavailable` reads it in the chain).
                AccountError::Busy(busy) => return unavailable(busy),
                AccountError::InvalidCredentials | AccountError::Blocked | AccountError::Internal(_) => {
                    return unavailable(anyhow::anyhow!("sign-up failed: {error}"))
                }
            };
            return again(message.to_owned(), StatusCode::BAD_REQUEST).await;
        }
    };
    audit::emit(AuditEvent::UserCreated { user_id: &user.id });
    signed_in(&state, &client, &user, &transaction).await
}
