//! The authorization-code grant (RFC 6749 §4.1.3, RFC 7636): a code is single-use and lives 60 s; it
//! must come back from the client it was issued to, with the redirect URI it was sent to and the PKCE
//! verifier of its challenge. A code presented a second time is refused and everything it led to dies
//! (its grant: the refresh family and every access token). A failed check burns the code as well.

use sha2::{Digest, Sha256};

use super::{access_terms, kill_family, new_refresh_token, user_tokens, UserGrant};
use crate::{
    accounts,
    audit::{self, AuditEvent},
    crypto,
    oauth::{
        clients::{GrantType, OAuthClient},
        error::OAuthError,
        flow_store::{self, CodeUse, GrantRow},
        token::{TokenRequest, TokenResponse},
    },
    state::AppState,
};

/// A PKCE verifier: 43–128 unreserved characters (RFC 7636 §4.1).
fn is_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// True if `verifier` hashes to `challenge` (S256).
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    use base64::Engine;
    let digest = Sha256::digest(verifier.as_bytes());
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    is_verifier(verifier) && crypto::constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

/// Runs the grant for an authenticated client that may use it.
pub async fn grant(state: &AppState, client: &OAuthClient, body: &TokenRequest) -> Result<TokenResponse, OAuthError> {
    let code = body
        .code
        .as_ref()
        .filter(|c| !c.expose().is_empty())
        .ok_or_else(|| OAuthError::invalid_request("Missing required parameter: code"))?;
    let now = state.clock.now();
    let invalid = || OAuthError::invalid_grant("Invalid authorization code");
    let row = match flow_store::use_code(&state.db, &crypto::sha256_hex(code.expose().as_bytes()), now).await? {
        CodeUse::First(row) => row,
        CodeUse::Unknown => return Err(invalid()),
        CodeUse::Reused(row) => {
            audit::emit(AuditEvent::OAuthReuseDetected {
                client_id: &row.client_id,
                grant_id: &row.grant_id,
                what: "code",
            });
            kill_family(state, &row.grant_id, row.audience.as_deref(), now).await?;
            return Err(invalid());
        }
    };
    // From here on the code is used up, whatever the answer.
    if row.client_id != client.client_id {
        audit::emit(AuditEvent::OAuthGrantRefused { client_id: &client.client_id, reason: "code of another client" });
        return Err(invalid());
    }
    if body.redirect_uri.as_deref() != Some(row.redirect_uri.as_str()) {
        audit::emit(AuditEvent::OAuthGrantRefused { client_id: &client.client_id, reason: "redirect_uri mismatch" });
        return Err(OAuthError::invalid_grant("redirect_uri does not match the authorization request"));
    }
    let verifier = body.code_verifier.as_ref().map(|v| v.expose());
    match (&row.code_challenge, verifier) {
        (None, None) => {}
        (Some(challenge), Some(verifier)) if pkce_matches(verifier, challenge) => {}
        (None, Some(_)) => return Err(OAuthError::invalid_grant("No code_challenge was sent for this code")),
        (Some(_), _) => {
            audit::emit(AuditEvent::OAuthGrantRefused {
                client_id: &client.client_id,
                reason: "PKCE verification failed",
            });
            return Err(OAuthError::invalid_grant("Failed to verify code verifier"));
        }
    }
    let user = accounts::store::find_user_by_id(&state.db, &row.user_id).await?.ok_or_else(invalid)?;
    let scope = crate::oauth::split_scope(&row.scope);
    let terms = access_terms(state, row.audience.as_deref(), &scope).await?;
    let wants_refresh =
        scope.iter().any(|s| s == "offline_access") && client.grant_types.contains(&GrantType::RefreshToken);
    let refresh_token = if wants_refresh {
        let token = new_refresh_token(&row.grant_id);
        let settings = &client.refresh_token;
        let family = GrantRow {
            id: row.grant_id.clone(),
            client_id: client.client_id.clone(),
            user_id: user.id.clone(),
            session_id: row.session_id.clone(),
            scope: row.scope.clone(),
            audience: row.audience.clone(),
            auth_time: row.auth_time,
            current_hash: crypto::sha256_hex(token.as_bytes()),
            previous_hash: None,
            rotated_at: None,
            successor: None,
            created_at: now,
            last_used_at: now,
            expires_at: now + settings.token_lifetime.saturating_mul(1000),
            idle_expires_at: now + settings.idle_token_lifetime.saturating_mul(1000),
            revoked_at: None,
        };
        flow_store::insert_grant(&state.db, &family).await?;
        Some(token)
    } else {
        None
    };
    let grant = UserGrant {
        client,
        user_id: &user.id,
        user: Some(&user),
        session_id: &row.session_id,
        scope: &scope,
        audience: row.audience.as_deref(),
        auth_time: row.auth_time,
        nonce: row.nonce.as_deref(),
        grant_id: &row.grant_id,
    };
    let answer = user_tokens(state, &grant, terms, refresh_token).await?;
    audit::emit(AuditEvent::OAuthTokenIssued {
        client_id: &client.client_id,
        grant_type: "authorization_code",
        audience: row.audience.as_deref().unwrap_or_default(),
        jti: &row.grant_id,
    });
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256() {
        let verifier = "dBjftJeZ4CVP-mJ92K1uDEqaJ7iU9ecLw6NLjb7XEnj";
        let challenge = "Eihd0elJro_jAa4mLFnh1idTXjTlIFmR2Z8n01fsLYM";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches("dBjftJeZ4CVP-mJ92K1uDEqaJ7iU9ecLw6NLjb7XEnk", challenge));
        assert!(!pkce_matches(challenge, challenge), "the challenge itself (plain) is refused");
        assert!(!pkce_matches("short", challenge));
    }
}
