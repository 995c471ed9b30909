//! `GET /authorize` (RFC 6749 §4.1, OpenID Connect Core §3.1.2, Auth0's parameters) and its resumption
//! after sign-in or consent.
//!
//! An unknown client or a `redirect_uri` not registered exactly is a 400 page, never a redirect; every
//! other refusal goes back to the redirect URI with `error`, `error_description` and `state`. A request
//! that needs the user (no session, `prompt=login`, `max_age` passed) or their consent (a third-party
//! client asking for scopes not consented yet) is stored as a login transaction, whose id travels as
//! `state` to `/login` or `/consent` and back to `/authorize/resume`.

use axum::{
    extract::{RawQuery, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use super::{
    apis::{self, ResourceServer},
    clients::{AuthMethod, GrantType, OAuthClient},
    flow_store::{self, CodeRow, TransactionRow},
    pages, paths, store, OIDC_SCOPES,
};
// The routes sit above `state`, which is built on the capabilities' domain halves: the folders meet in a
// circle, the files do not (README, "Code tour").
use crate::{
    accounts::User,
    audit::{self, AuditEvent},
    clock::Millis,
    crypto,
    http::extractors::ApiQuery,
    principal::extractors::MaybeSession,
    sessions::Session,
    state::AppState,
};

/// A validated authorize request, as a login transaction keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// The scopes that may be granted (unknown ones already dropped).
    pub scope: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// The S256 challenge.
    pub code_challenge: Option<String>,
    pub audience: Option<String>,
    pub form_post: bool,
    pub prompt_none: bool,
    pub prompt_consent: bool,
    pub max_age: Option<i64>,
    /// A session that started before this instant does not do (`prompt=login`, or `max_age` passed).
    pub login_after: Option<Millis>,
}

/// Where errors go once the redirect URI is known to be the client's.
#[derive(Clone, Debug)]
pub struct Target {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub form_post: bool,
}

impl Target {
    pub fn of(request: &AuthorizeRequest) -> Target {
        Target {
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
            form_post: request.form_post,
        }
    }

    /// Sends `params` (and `state`) to the redirect URI, as a query or a self-submitting form.
    pub fn answer(&self, params: &[(&str, &str)]) -> Response {
        let mut fields: Vec<(&str, &str)> = params.to_vec();
        if let Some(state) = &self.state {
            fields.push(("state", state));
        }
        if self.form_post {
            return pages::form_post(&self.redirect_uri, &fields);
        }
        let Ok(mut url) = url::Url::parse(&self.redirect_uri) else {
            return pages::message(
                StatusCode::BAD_REQUEST,
                "Something went wrong",
                "The application's address is invalid.",
            );
        };
        url.query_pairs_mut().extend_pairs(fields.iter());
        redirect(url.as_str())
    }

    /// An error for the client.
    pub fn error(&self, error: &str, description: &str) -> Response {
        self.answer(&[("error", error), ("error_description", description)])
    }
}

/// A 302 that is never cached.
pub fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(location) => {
            let mut response = StatusCode::FOUND.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(_) => pages::message(StatusCode::BAD_REQUEST, "Something went wrong", "The address is invalid."),
    }
}

/// Why a request cannot go on.
enum Refusal {
    /// The 400 page: no trustworthy place to send the user back to.
    Page(&'static str),
    /// Back to the client.
    Redirect(Target, &'static str, String),
}

/// The query, each parameter once; a repeated parameter is `None` (RFC 6749 §3.1).
fn single_params(query: Option<&str>) -> (Vec<(String, String)>, Option<String>) {
    let mut params: Vec<(String, String)> = Vec::new();
    let mut repeated = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if params.iter().any(|(known, _)| *known == name) {
            repeated.get_or_insert_with(|| name.clone().into_owned());
        } else {
            params.push((name.into_owned(), value.into_owned()));
        }
    }
    (params, repeated)
}

/// True for an S256 challenge: 43 base64url characters (RFC 7636 §4.2).
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks the request against the client and the API, in the order the contract gives.
async fn validate(
    state: &AppState,
    query: Option<&str>,
    now: Millis,
) -> Result<(OAuthClient, AuthorizeRequest), Refusal> {
    let (params, repeated) = single_params(query);
    let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let has_nul = params.iter().any(|(n, v)| n.contains('\0') || v.contains('\0'));
    let client_id = get("client_id").ok_or(Refusal::Page("The request names no application (client_id)."))?;
    if has_nul {
        return Err(Refusal::Page("The request is malformed."));
    }
    let client = match store::find_client(&state.db, client_id).await {
        Ok(Some((client, _))) => client,
        Ok(None) => return Err(Refusal::Page("The application making this request is not known here.")),
        Err(error) => {
            crate::error::ApiError::internal(error);
            return Err(Refusal::Page("The service is unavailable right now. Try again in a moment."));
        }
    };
    let redirect_uri = get("redirect_uri").ok_or(Refusal::Page("The request gives no redirect_uri."))?;
    if !client.callbacks.iter().any(|registered| registered == redirect_uri) {
        return Err(Refusal::Page("The redirect_uri is not registered for this application."));
    }
    let form_post = get("response_mode") == Some("form_post");
    let target = Target { redirect_uri: redirect_uri.to_owned(), state: get("state").map(str::to_owned), form_post };
    let refuse =
        |error: &'static str, description: &str| Refusal::Redirect(target.clone(), error, description.to_owned());
    if let Some(name) = repeated {
        return Err(refuse("invalid_request", &format!("Parameter '{name}' is repeated")));
    }
    match get("response_mode") {
        None | Some("query" | "form_post") => {}
        Some(other) => return Err(refuse("invalid_request", &format!("Unsupported response_mode: {other}"))),
    }
    match get("response_type") {
        Some("code") => {}
        None => return Err(refuse("invalid_request", "Missing required parameter: response_type")),
        Some(other) => return Err(refuse("unsupported_response_type", &format!("Unsupported response type: {other}"))),
    }
    if !client.grant_types.contains(&GrantType::AuthorizationCode) {
        return Err(refuse("unauthorized_client", "Grant type 'authorization_code' not allowed for the client."));
    }
    let code_challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (None, None) if client.token_endpoint_auth_method == AuthMethod::None => {
            return Err(refuse("invalid_request", "A public client must send a code_challenge (PKCE, S256)"))
        }
        (None, None) => None,
        (Some(challenge), Some("S256")) if is_s256_challenge(challenge) => Some(challenge.to_owned()),
        (Some(_), Some("S256")) => {
            return Err(refuse("invalid_request", "The code_challenge is not an S256 challenge"))
        }
        (None, Some(_)) => return Err(refuse("invalid_request", "code_challenge_method without a code_challenge")),
        (Some(_), None | Some(_)) => {
            return Err(refuse("invalid_request", "Only code_challenge_method=S256 is supported (not plain)"))
        }
    };
    let prompts: Vec<&str> =
        get("prompt").map(|p| p.split(' ').filter(|s| !s.is_empty()).collect()).unwrap_or_default();
    if prompts.contains(&"none") && prompts.len() > 1 {
        return Err(refuse("invalid_request", "prompt=none cannot be combined with other values"));
    }
    let max_age = match get("max_age") {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(seconds) if seconds >= 0 => Some(seconds),
            _ => return Err(refuse("invalid_request", "max_age must be a whole number of seconds")),
        },
    };
    let audience = get("audience").map(str::to_owned);
    let api = match &audience {
        None => None,
        Some(audience) => match apis::by_identifier(&state.db, &state.settings.base_url, audience).await {
            Ok(Some(api)) => Some(api),
            Ok(None) => return Err(refuse("access_denied", &format!("Service not found: {audience}"))),
            Err(error) => {
                crate::error::ApiError::internal(error);
                return Err(refuse("server_error", "The service is unavailable right now"));
            }
        },
    };
    let scope = grantable_scopes(&client, api.as_ref(), get("scope").unwrap_or_default());
    let request = AuthorizeRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scope,
        state: target.state.clone(),
        nonce: get("nonce").map(str::to_owned),
        code_challenge,
        audience,
        form_post,
        prompt_none: prompts.contains(&"none"),
        prompt_consent: prompts.contains(&"consent"),
        max_age,
        login_after: prompts.contains(&"login").then_some(now),
    };
    Ok((client, request))
}

/// The requested scopes that may be granted: OpenID Connect's (`offline_access` only with the refresh
/// grant, and an API that allows it), and the audience's own; the rest are dropped, never granted.
pub fn grantable_scopes(client: &OAuthClient, api: Option<&ResourceServer>, requested: &str) -> Vec<String> {
    super::split_scope(requested)
        .into_iter()
        .filter(|scope| match scope.as_str() {
            "offline_access" => {
                client.grant_types.contains(&GrantType::RefreshToken) && api.is_none_or(|api| api.allow_offline_access)
            }
            s if OIDC_SCOPES.contains(&s) => true,
            s => api.is_some_and(|api| api.scopes.iter().any(|defined| defined.value == s)),
        })
        .collect()
}

/// Starts an authorization.
#[utoipa::path(get, path = paths::AUTHORIZE, tag = "oauth",
    params(
        ("response_type" = String, Query, description = "`code`"),
        ("client_id" = String, Query),
        ("redirect_uri" = String, Query, description = "Exactly as registered"),
        ("scope" = Option<String>, Query),
        ("state" = Option<String>, Query),
        ("nonce" = Option<String>, Query),
        ("code_challenge" = Option<String>, Query, description = "PKCE S256; required for public clients"),
        ("code_challenge_method" = Option<String>, Query, description = "`S256`"),
        ("audience" = Option<String>, Query, description = "An API's identifier"),
        ("prompt" = Option<String>, Query, description = "`none`, `login`, `consent`"),
        ("max_age" = Option<i64>, Query),
        ("response_mode" = Option<String>, Query, description = "`query` (default) or `form_post`")),
    responses((status = 302, description = "To the redirect URI (a code, or an error), or to /login or /consent"),
        (status = 200, description = "`response_mode=form_post`: a page that posts the answer", content_type = "text/html", body = String),
        (status = 400, description = "An HTML page: unknown client, or a redirect_uri not registered", content_type = "text/html", body = String)))]
pub async fn authorize(State(state): State<AppState>, session: MaybeSession, RawQuery(query): RawQuery) -> Response {
    let now = state.clock.now();
    match validate(&state, query.as_deref(), now).await {
        Err(Refusal::Page(message)) => pages::message(StatusCode::BAD_REQUEST, "This request cannot go on", message),
        Err(Refusal::Redirect(target, error, description)) => target.error(error, &description),
        Ok((client, request)) => proceed(&state, &client, request, None, session).await,
    }
}

/// The transaction to resume.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ResumeQuery {
    /// The login transaction.
    pub state: String,
}

/// Resumes an authorization after sign-in.
#[utoipa::path(get, path = paths::AUTHORIZE_RESUME, tag = "oauth", params(ResumeQuery),
    responses((status = 302, description = "To the redirect URI, or to /login or /consent"),
        (status = 400, description = "An HTML page: the transaction is unknown or expired; or `VALIDATION_ERROR` (JSON): no `state`, or a malformed query string",
            content((String = "text/html"), (crate::error::ErrorBody = "application/json")))))]
pub async fn resume(
    State(state): State<AppState>,
    session: MaybeSession,
    ApiQuery(query): ApiQuery<ResumeQuery>,
) -> Response {
    match load_transaction(&state, &query.state).await {
        Ok((client, request)) => proceed(&state, &client, request, Some(query.state), session).await,
        Err(page) => page,
    }
}

/// A transaction and its client, or the page that says it cannot go on.
pub async fn load_transaction(state: &AppState, id: &str) -> Result<(OAuthClient, AuthorizeRequest), Response> {
    let expired = || {
        pages::message(
            StatusCode::BAD_REQUEST,
            "This sign-in request has expired",
            "Go back to the application and start again.",
        )
    };
    let now = state.clock.now();
    let row = match flow_store::find_transaction(&state.db, id, now).await {
        Ok(Some(row)) => row,
        Ok(None) => return Err(expired()),
        Err(error) => return Err(unavailable(error)),
    };
    let Ok(request) = serde_json::from_str::<AuthorizeRequest>(&row.request) else { return Err(expired()) };
    match store::find_client(&state.db, &row.client_id).await {
        Ok(Some((client, _))) => Ok((client, request)),
        Ok(None) => Err(expired()),
        Err(error) => Err(unavailable(error)),
    }
}

/// The page for a storage failure (logged).
pub fn unavailable(error: impl Into<anyhow::Error>) -> Response {
    let error = crate::error::ApiError::internal(error);
    pages::message(error.status, "Something went wrong", "The service is unavailable right now. Try again in a moment.")
}

/// True if the session does not satisfy the request (`prompt=login`, `max_age`).
fn needs_login(request: &AuthorizeRequest, session: &Session, now: Millis) -> bool {
    request.login_after.is_some_and(|after| session.created_at < after)
        || request.max_age.is_some_and(|max_age| now - session.created_at > max_age.saturating_mul(1000))
}

/// Stores the request as a transaction (once) and returns its id.
async fn transaction(state: &AppState, request: &AuthorizeRequest, id: Option<String>) -> Result<String, Response> {
    if let Some(id) = id {
        return Ok(id);
    }
    let now = state.clock.now();
    let row = TransactionRow {
        id: crypto::new_id("ltx"),
        client_id: request.client_id.clone(),
        request: serde_json::to_string(request).map_err(unavailable)?,
        created_at: now,
        expires_at: now + super::TRANSACTION_LIFETIME,
    };
    flow_store::insert_transaction(&state.db, &row).await.map_err(unavailable)?;
    Ok(row.id)
}

/// The scopes a third-party client still needs consent for (all of them with `prompt=consent`).
pub async fn scopes_needing_consent(
    state: &AppState,
    client: &OAuthClient,
    request: &AuthorizeRequest,
    user_id: &str,
) -> Result<Vec<String>, Response> {
    if client.is_first_party {
        return Ok(Vec::new());
    }
    if request.prompt_consent {
        return Ok(request.scope.clone());
    }
    let audience = request.audience.as_deref().unwrap_or_default();
    let given = flow_store::consent(&state.db, user_id, &client.client_id, audience)
        .await
        .map_err(unavailable)?
        .unwrap_or_default();
    let given = super::split_scope(&given);
    Ok(request.scope.iter().filter(|s| !given.contains(s)).cloned().collect())
}

/// Goes on with a valid request: to sign-in, to consent, or straight back to the client with a code.
async fn proceed(
    state: &AppState,
    client: &OAuthClient,
    mut request: AuthorizeRequest,
    transaction_id: Option<String>,
    session: MaybeSession,
) -> Response {
    let now = state.clock.now();
    let target = Target::of(&request);
    let auth = session.auth.filter(|auth| !needs_login(&request, &auth.session, now));
    let Some(auth) = auth else {
        if request.prompt_none {
            return target.error("login_required", "Login required");
        }
        // `max_age` passed: the sign-in that follows must be new.
        if request.max_age.is_some() && request.login_after.is_none() {
            request.login_after = Some(now);
        }
        return match transaction(state, &request, transaction_id).await {
            Ok(id) => redirect(&format!("{}?state={id}", paths::LOGIN)),
            Err(page) => page,
        };
    };
    let pending = match scopes_needing_consent(state, client, &request, &auth.user.id).await {
        Ok(pending) => pending,
        Err(page) => return page,
    };
    // `prompt=consent` asks once per transaction: the consent page's answer issues the code itself.
    if !pending.is_empty() {
        if request.prompt_none {
            return target.error("consent_required", "Consent required");
        }
        return match transaction(state, &request, transaction_id).await {
            Ok(id) => redirect(&format!("{}?state={id}", paths::CONSENT)),
            Err(page) => page,
        };
    }
    issue_code(state, client, &request, transaction_id.as_deref(), &auth.session, &auth.user).await
}

/// Issues a code for the request and sends it to the client; ends the transaction.
pub async fn issue_code(
    state: &AppState,
    client: &OAuthClient,
    request: &AuthorizeRequest,
    transaction_id: Option<&str>,
    session: &Session,
    user: &User,
) -> Response {
    let now = state.clock.now();
    let code = crypto::random_alphanumeric(43);
    let row = CodeRow {
        client_id: client.client_id.clone(),
        user_id: user.id.clone(),
        session_id: session.id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        nonce: request.nonce.clone(),
        scope: request.scope.join(" "),
        audience: request.audience.clone(),
        auth_time: session.created_at,
        grant_id: crypto::new_id("grt"),
        created_at: now,
        expires_at: now + super::CODE_LIFETIME,
    };
    if let Err(error) = flow_store::insert_code(&state.db, &crypto::sha256_hex(code.as_bytes()), &row).await {
        return unavailable(error);
    }
    if let Some(id) = transaction_id {
        if let Err(error) = flow_store::delete_transaction(&state.db, id).await {
            return unavailable(error);
        }
    }
    audit::emit(AuditEvent::OAuthCodeIssued { client_id: &client.client_id, user_id: &user.id, scope: &row.scope });
    Target::of(request).answer(&[("code", &code)])
}
