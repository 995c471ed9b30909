//! `POST /oauth/revoke` (RFC 7009, form or JSON): the client authenticates as at the token endpoint; a
//! refresh token of its own kills its family, an access token of its own (`azp`) its `jti` — on every node,
//! at once. Anything else (unknown, malformed, expired, another client's) is a 200 that changes nothing,
//! so the answer tells a caller nothing about tokens it does not hold.

use axum::{
    extract::{Request, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::{
    access, cors,
    error::{no_store, OAuthError, OAuthErrorBody},
    flow_store,
    grants::{grant_id_of, kill_family},
    paths, revoke_access_token,
    token::{authenticate, basic_credentials, read_body},
};
use crate::{
    audit::{self, AuditEvent},
    config::Secret,
    crypto,
    http::extractors::ClientInfo,
    state::AppState,
};

/// The revocation request (RFC 7009 §2.1).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RevokeRequest {
    /// The token to revoke.
    #[schema(value_type = String, format = Password)]
    pub token: Option<Secret>,
    /// `refresh_token` or `access_token` (a hint: both are tried).
    pub token_type_hint: Option<String>,
    pub client_id: Option<String>,
    #[schema(value_type = Option<String>, format = Password)]
    pub client_secret: Option<Secret>,
}

/// Revokes a token.
#[utoipa::path(post, path = paths::REVOKE, tag = "oauth",
    request_body(description = "A form, or the same fields as JSON",
        content((RevokeRequest = "application/x-www-form-urlencoded"), (RevokeRequest = "application/json"))),
    responses((status = 200, description = "Revoked, or nothing to revoke (RFC 7009 §2.2)"),
        (status = 400, body = OAuthErrorBody, description = "`invalid_request`: no token"),
        (status = 401, body = OAuthErrorBody, description = "`invalid_client`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`: neither a form nor JSON"),
        (status = 429, body = OAuthErrorBody, description = "`too_many_requests`: too many failed client authentications")))]
pub async fn revoke(State(state): State<AppState>, caller: ClientInfo, request: Request) -> Response {
    let headers = request.headers().clone();
    let origin = cors::origin(&headers);
    let (answer, client) = run(&state, &headers, &caller, request).await;
    let mut response = answer.unwrap_or_else(IntoResponse::into_response);
    cors::allow(&state, &mut response, origin.as_deref(), client.as_ref()).await;
    response
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    caller: &ClientInfo,
    request: Request,
) -> (Result<Response, OAuthError>, Option<cors::ClientRef>) {
    let body: RevokeRequest = match read_body(request, state).await {
        Ok(body) => body,
        Err(error) => return (Err(error), None),
    };
    let named =
        cors::ClientRef::named(body.client_id.as_deref().or(basic_credentials(headers).map(|b| b.0).as_deref()));
    let client =
        match authenticate(state, headers, caller, body.client_id.as_deref(), body.client_secret.as_ref()).await {
            Ok(client) => client,
            Err(error) => return (Err(error), named),
        };
    let known = Some(cors::ClientRef::Known(client.web_origins.clone()));
    let Some(token) = body.token.as_ref().map(Secret::expose).filter(|t| !t.is_empty() && !t.contains('\0')) else {
        return (Err(OAuthError::invalid_request("Missing required parameter: token")), known);
    };
    if let Err(error) = revoke_token(state, &client.client_id, token).await {
        return (Err(error), known);
    }
    let mut response = axum::http::StatusCode::OK.into_response();
    no_store(response.headers_mut());
    (Ok(response), known)
}

/// Revokes `token` if it is the client's own refresh or access token.
pub async fn revoke_token(state: &AppState, client_id: &str, token: &str) -> Result<(), OAuthError> {
    let now = state.clock.now();
    if let Some(grant_id) = grant_id_of(token) {
        let Some(family) = flow_store::find_grant(&state.db, grant_id).await? else { return Ok(()) };
        let hash = crypto::sha256_hex(token.as_bytes());
        let known = crypto::constant_time_eq(hash.as_bytes(), family.current_hash.as_bytes())
            || family.previous_hash.as_ref().is_some_and(|h| crypto::constant_time_eq(hash.as_bytes(), h.as_bytes()));
        if family.client_id != client_id || !known || family.revoked_at.is_some() {
            return Ok(());
        }
        kill_family(state, grant_id, family.audience.as_deref(), now).await?;
        audit::emit(AuditEvent::OAuthTokenRevoked { client_id, what: "refresh_token" });
        return Ok(());
    }
    // An access token: only one this client holds (`azp`), and only while it could still be used.
    if let Ok(claims) = access::verify(state, token, None) {
        if claims.azp == client_id {
            let leeway = i64::try_from(state.settings.tokens.leeway).unwrap_or(0);
            let until = (claims.exp + leeway).saturating_mul(1000);
            revoke_access_token(&state.db, &state.tokens.revocations, &claims.jti, until, now).await?;
            audit::emit(AuditEvent::OAuthTokenRevoked { client_id, what: "access_token" });
        }
    }
    Ok(())
}
