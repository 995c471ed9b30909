//! The consent page (`/consent`): a third-party client (`is_first_party: false`) asks the signed-in user
//! for scopes. The decision is remembered per user, client and audience; only new scopes ask again
//! (every scope with `prompt=consent`). CSRF-protected like the sign-in form.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::Deserialize;

use super::{
    apis,
    authorize::{
        issue_code, load_transaction, redirect, scopes_needing_consent, unavailable, AuthorizeRequest, Target,
    },
    flow_store,
    login::{csrf_cookie, csrf_ok, csrf_token, transaction_id, with_cookie, PageQuery},
    pages, paths,
};
// The routes sit above `state`, which is built on the capabilities' domain halves: the folders meet in a
// circle, the files do not (README, "Code tour").
use crate::{
    audit::{self, AuditEvent},
    http::extractors::{ApiForm, ApiQuery},
    principal::extractors::MaybeSession,
    state::AppState,
};

/// What an OpenID Connect scope lets the client do, in words.
fn describe(scope: &str, api: Option<&apis::ResourceServer>) -> String {
    match scope {
        "openid" => "Sign you in".to_owned(),
        "profile" => "See your name and picture".to_owned(),
        "email" => "See your email address".to_owned(),
        "offline_access" => "Stay signed in when you are away".to_owned(),
        other => api
            .and_then(|api| api.scopes.iter().find(|s| s.value == other))
            .map(|s| s.description.clone())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| format!("Use “{other}”")),
    }
}

fn missing_transaction() -> Response {
    pages::message(StatusCode::BAD_REQUEST, "Nothing to authorize", "Open the application and sign in from there.")
}

/// The consent page.
#[utoipa::path(get, path = paths::CONSENT, tag = "oauth", params(PageQuery),
    responses((status = 200, description = "The consent page (HTML)", content_type = "text/html", body = String),
        (status = 302, description = "No session: to /login; nothing to ask: back to /authorize/resume"),
        (status = 400, description = "An HTML page: no, an unknown or an expired transaction; or `VALIDATION_ERROR` (JSON): a malformed query string",
            content((String = "text/html"), (crate::error::ErrorBody = "application/json")))))]
pub async fn consent_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: MaybeSession,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Response {
    let Some(transaction) = transaction_id(query.state) else { return missing_transaction() };
    let (client, request) = match load_transaction(&state, &transaction).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let Some(auth) = session.auth else { return redirect(&format!("{}?state={transaction}", paths::LOGIN)) };
    let pending = match scopes_needing_consent(&state, &client, &request, &auth.user.id).await {
        Ok(pending) => pending,
        Err(page) => return page,
    };
    if pending.is_empty() {
        return redirect(&format!("{}?state={transaction}", paths::AUTHORIZE_RESUME));
    }
    let api = match api_of(&state, &request).await {
        Ok(api) => api,
        Err(page) => return page,
    };
    let scopes = request
        .scope
        .iter()
        .map(|scope| pages::ScopeLine { value: scope.clone(), description: describe(scope, api.as_ref()) })
        .collect();
    let (cookie, set_cookie) = csrf_cookie(&state, &headers);
    let csrf = csrf_token(&state, &cookie, &transaction);
    let nonce = pages::nonce();
    let page = pages::ConsentPage {
        nonce: &nonce,
        action: paths::CONSENT,
        client_name: &client.name,
        user_email: &auth.user.email,
        transaction: &transaction,
        csrf: &csrf,
        scopes,
    };
    with_cookie(pages::page(&page, StatusCode::OK, nonce.clone(), None), set_cookie)
}

async fn api_of(state: &AppState, request: &AuthorizeRequest) -> Result<Option<apis::ResourceServer>, Response> {
    match &request.audience {
        None => Ok(None),
        Some(audience) => apis::by_identifier(&state.db, &state.settings.base_url, audience).await.map_err(unavailable),
    }
}

/// The consent form.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ConsentForm {
    pub state: Option<String>,
    pub csrf: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
}

/// Records the user's decision: `allow` remembers the scopes and sends the code; `deny` sends
/// `access_denied` back to the client.
#[utoipa::path(post, path = paths::CONSENT, tag = "oauth",
    request_body(content = ConsentForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`: not a form"),
        (status = 302, description = "Back to the client with a code, or `access_denied`"),
        (status = 200, description = "`response_mode=form_post`: a page that posts the answer", content_type = "text/html", body = String),
        (status = 400, description = "An HTML page: no, an unknown or an expired transaction; or `VALIDATION_ERROR` (JSON): a malformed form",
            content((String = "text/html"), (crate::error::ErrorBody = "application/json"))),
        (status = 403, description = "An HTML page: the CSRF token does not match", content_type = "text/html", body = String)))]
pub async fn consent_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: MaybeSession,
    ApiForm(form): ApiForm<ConsentForm>,
) -> Response {
    let Some(transaction) = transaction_id(form.state) else { return missing_transaction() };
    if !csrf_ok(&state, &headers, &transaction, form.csrf.as_deref().unwrap_or_default()) {
        audit::emit(AuditEvent::CsrfRefused { page: "consent" });
        return pages::message(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "Go back to the application and start again.",
        );
    }
    let (client, request) = match load_transaction(&state, &transaction).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let Some(auth) = session.auth else { return redirect(&format!("{}?state={transaction}", paths::LOGIN)) };
    let audience = request.audience.as_deref().unwrap_or_default();
    match form.decision.as_deref() {
        Some("allow") => {}
        Some("deny") => {
            audit::emit(AuditEvent::OAuthConsent {
                client_id: &client.client_id,
                user_id: &auth.user.id,
                scope: &request.scope.join(" "),
                allowed: false,
            });
            if let Err(error) = flow_store::delete_transaction(&state.db, &transaction).await {
                return unavailable(error);
            }
            return Target::of(&request).error("access_denied", "User did not authorize the request");
        }
        _ => return pages::message(StatusCode::BAD_REQUEST, "Something went wrong", "Choose Allow or Deny."),
    }
    let now = state.clock.now();
    let given = match flow_store::consent(&state.db, &auth.user.id, &client.client_id, audience).await {
        Ok(given) => given.unwrap_or_default(),
        Err(error) => return unavailable(error),
    };
    let mut scopes = super::split_scope(&given);
    for scope in &request.scope {
        if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    let scope = scopes.join(" ");
    if let Err(error) =
        flow_store::save_consent(&state.db, &auth.user.id, &client.client_id, audience, &scope, now).await
    {
        return unavailable(error);
    }
    audit::emit(AuditEvent::OAuthConsent {
        client_id: &client.client_id,
        user_id: &auth.user.id,
        scope: &request.scope.join(" "),
        allowed: true,
    });
    issue_code(&state, &client, &request, Some(&transaction), &auth.session, &auth.user).await
}
