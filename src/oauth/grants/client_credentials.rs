//! The client-credentials grant (RFC 6749 §4.4, Auth0's rules): an access token for an API the client
//! holds a client grant for, `sub` = `{client_id}@clients`, scopes within the grant (no `scope`: all of
//! them; any scope outside it: 403 `access_denied`, as Auth0). No row per token: revocation is a deny list.

use super::{AccessClaims, Audience};
use crate::{
    audit::{self, AuditEvent},
    crypto,
    oauth::{
        clients::OAuthClient,
        error::OAuthError,
        issuer,
        token::{TokenRequest, TokenResponse},
    },
    state::AppState,
    tokens::TokenType,
};

/// Runs the grant for an authenticated client that may use it.
pub async fn grant(state: &AppState, client: &OAuthClient, body: &TokenRequest) -> Result<TokenResponse, OAuthError> {
    let audience = body
        .audience
        .as_deref()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| OAuthError::access_denied("No audience parameter was provided"))?;
    let base_url = &state.settings.base_url;
    let now = state.clock.now();
    let api = state
        .oauth
        .config
        .api(&state.db, base_url, audience, now)
        .await?
        .ok_or_else(|| OAuthError::access_denied(format!("Service not found: {audience}")))?;
    let grant = state
        .oauth
        .config
        .grant(&state.db, &client.client_id, audience, now)
        .await?
        .ok_or_else(|| OAuthError::access_denied(format!("Client is not authorized to access \"{audience}\".")))?;
    // What the grant holds and the API still defines.
    let granted: Vec<&str> =
        grant.scope.iter().map(String::as_str).filter(|s| api.scopes.iter().any(|d| d.value == *s)).collect();
    let scope: Vec<&str> = match body.scope.as_deref().map(str::split_whitespace) {
        Some(requested) => {
            let requested: Vec<&str> = requested.collect();
            let missing: Vec<&str> = requested.iter().copied().filter(|s| !granted.contains(s)).collect();
            if !missing.is_empty() {
                return Err(OAuthError::access_denied(format!(
                    "Client has not been granted scopes: {}",
                    missing.join(", ")
                )));
            }
            requested
        }
        None => granted,
    };
    let scope = scope.join(" ");
    let now = state.clock.now();
    let iat = now / 1000;
    let sub = format!("{}@clients", client.client_id);
    let claims = AccessClaims {
        iss: issuer(base_url),
        sub: &sub,
        aud: Audience::One(audience.to_owned()),
        azp: &client.client_id,
        scope: &scope,
        iat,
        exp: iat + api.token_lifetime,
        jti: crypto::random_alphanumeric(24),
        gty: Some("client-credentials"),
    };
    let access_token = state
        .tokens
        .key_ring
        .sign_ensuring(&state.db, api.signing_alg, &claims, TokenType::AccessToken, now)
        .await
        .map_err(OAuthError::internal)?;
    audit::emit(AuditEvent::OAuthTokenIssued {
        client_id: &client.client_id,
        grant_type: "client_credentials",
        audience,
        jti: &claims.jti,
    });
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: api.token_lifetime,
        scope,
        id_token: None,
        refresh_token: None,
    })
}
