//! `POST /oauth/introspect` (RFC 7662, form or JSON): a confidential client asks about a token. The
//! answer is `{active: false}` for anything invalid, expired or revoked, and for a token neither issued
//! to the caller nor addressed (`aud`) to an API the caller holds a client grant for; otherwise the
//! token's `scope, client_id, sub, aud, iss, exp, iat, token_type`.

use axum::{
    extract::{Request, State},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};

use super::{
    access,
    error::{no_store, OAuthError, OAuthErrorBody},
    flow_store,
    grants::{grant_id_of, Audience},
    issuer, paths, store,
    token::{authenticate, read_body},
};
use crate::{config::Secret, crypto, http::extractors::ClientInfo, state::AppState};

/// The introspection request (RFC 7662 §2.1).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct IntrospectRequest {
    #[schema(value_type = String, format = Password)]
    pub token: Option<Secret>,
    /// `access_token` or `refresh_token` (a hint: both are tried).
    pub token_type_hint: Option<String>,
    pub client_id: Option<String>,
    #[schema(value_type = Option<String>, format = Password)]
    pub client_secret: Option<Secret>,
}

/// The introspection answer (RFC 7662 §2.2): only `active` when inactive.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// A string or a list of strings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// `Bearer` for an access token, `refresh_token` for a refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
}

/// Describes a token to a confidential client.
#[utoipa::path(post, path = paths::INTROSPECT, tag = "oauth",
    request_body(description = "A form, or the same fields as JSON",
        content((IntrospectRequest = "application/x-www-form-urlencoded"), (IntrospectRequest = "application/json"))),
    responses((status = 200, body = Introspection),
        (status = 400, body = OAuthErrorBody, description = "`invalid_request`: no token"),
        (status = 401, body = OAuthErrorBody, description = "`invalid_client` (public clients cannot introspect)"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`: neither a form nor JSON"),
        (status = 429, body = OAuthErrorBody, description = "`too_many_requests`: too many failed client authentications")))]
pub async fn introspect(State(state): State<AppState>, caller: ClientInfo, request: Request) -> Response {
    match run(&state, &caller, request).await {
        Ok(answer) => {
            let mut response = Json(answer).into_response();
            no_store(response.headers_mut());
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn run(state: &AppState, caller: &ClientInfo, request: Request) -> Result<Introspection, OAuthError> {
    let headers = request.headers().clone();
    let body: IntrospectRequest = read_body(request, state).await?;
    let client = authenticate(state, &headers, caller, body.client_id.as_deref(), body.client_secret.as_ref()).await?;
    if !client.token_endpoint_auth_method.is_confidential() {
        let message = "Only a confidential client may introspect";
        return Err(OAuthError::new(axum::http::StatusCode::UNAUTHORIZED, "invalid_client", message));
    }
    let Some(token) = body.token.as_ref().map(Secret::expose).filter(|t| !t.is_empty() && !t.contains('\0')) else {
        return Err(OAuthError::invalid_request("Missing required parameter: token"));
    };
    let now = state.clock.now();
    if let Some(grant_id) = grant_id_of(token) {
        let Some(family) = flow_store::find_grant(&state.db, grant_id).await? else {
            return Ok(Introspection::default());
        };
        let hash = crypto::sha256_hex(token.as_bytes());
        let current = crypto::constant_time_eq(hash.as_bytes(), family.current_hash.as_bytes());
        let live = family.revoked_at.is_none() && family.expires_at > now && family.idle_expires_at > now;
        if !current || !live || family.client_id != client.client_id {
            return Ok(Introspection::default());
        }
        return Ok(Introspection {
            active: true,
            scope: Some(family.scope),
            client_id: Some(family.client_id),
            sub: Some(family.user_id),
            aud: family.audience.map(Audience::One),
            iss: Some(issuer(&state.settings.base_url)),
            exp: Some(family.expires_at.min(family.idle_expires_at) / 1000),
            iat: Some(family.created_at / 1000),
            token_type: Some("refresh_token"),
        });
    }
    let Ok(claims) = access::verify(state, token, None) else {
        return Ok(Introspection::default());
    };
    let addressed = if claims.azp == client.client_id {
        true
    } else {
        let audiences: Vec<String> = match &claims.aud {
            Audience::One(one) => vec![one.clone()],
            Audience::Many(many) => many.clone(),
        };
        let mut granted = false;
        for audience in &audiences {
            if store::client_grant_for(&state.db, &client.client_id, audience).await?.is_some() {
                granted = true;
                break;
            }
        }
        granted
    };
    if !addressed {
        return Ok(Introspection::default());
    }
    Ok(Introspection {
        active: true,
        scope: Some(claims.scope.clone()),
        client_id: Some(claims.azp.clone()),
        sub: Some(claims.sub.clone()),
        aud: Some(claims.aud.clone()),
        iss: Some(claims.iss.clone()),
        exp: Some(claims.exp),
        iat: Some(claims.iat),
        token_type: Some("Bearer"),
    })
}
