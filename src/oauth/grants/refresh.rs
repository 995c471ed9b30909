//! The refresh-token grant with rotation that never logs a user out by accident (DESIGN.md "Capability 5"):
//! one family per grant, rotated atomically on every use; the immediately previous token presented again
//! within the client's `refresh_token.leeway` gets the very same successor (kept sealed for the leeway
//! only), so parallel tabs and retried calls keep their session; an older token, or the previous one after
//! the leeway, kills the family — its refresh tokens and every access token issued from it, on every node.
//! Families have an absolute and an idle lifetime. `scope` may narrow the access token, never widen it.

use super::{access_terms, grant_id_of, kill_family, new_refresh_token, user_tokens, UserGrant};
use crate::{
    accounts,
    audit::{self, AuditEvent},
    clock::Millis,
    crypto,
    oauth::{
        clients::OAuthClient,
        error::OAuthError,
        flow_store::{self, GrantRow, Rotated, Rotation},
        split_scope,
        token::{TokenRequest, TokenResponse},
    },
    state::AppState,
};

/// How many times a lost rotation race is retried before giving up (each loss means another request
/// rotated the family just now, so the next read sees its successor).
const RACE_RETRIES: usize = 3;

fn invalid() -> OAuthError {
    OAuthError::invalid_grant("Unknown or invalid refresh token.")
}

/// Runs the grant for an authenticated client that may use it.
pub async fn grant(state: &AppState, client: &OAuthClient, body: &TokenRequest) -> Result<TokenResponse, OAuthError> {
    let presented = body
        .refresh_token
        .as_ref()
        .filter(|t| !t.expose().is_empty())
        .ok_or_else(|| OAuthError::invalid_request("Missing required parameter: refresh_token"))?;
    let presented = presented.expose();
    let grant_id = grant_id_of(presented).ok_or_else(invalid)?;
    let presented_hash = crypto::sha256_hex(presented.as_bytes());
    let rotating = client.refresh_token.rotation_type != "non-rotating";
    // The usual case — the family's current token, all scopes, a rotating client — rotates first and reads
    // nothing: the rotation's own conditions (this client's, live, current) are the checks. Anything else,
    // or a rotation that did not take, goes the careful way below.
    if rotating && body.scope.as_deref().is_none_or(|s| s.trim().is_empty()) {
        let now = state.clock.now();
        let successor = new_refresh_token(grant_id);
        let rotation = Rotation {
            grant_id: grant_id.to_owned(),
            client_id: client.client_id.clone(),
            presented_hash: presented_hash.clone(),
            new_hash: crypto::sha256_hex(successor.as_bytes()),
            successor: seal(state, grant_id, &successor),
            now,
            idle_expires_at: now + client.refresh_token.idle_token_lifetime.saturating_mul(1000),
        };
        if let Some(family) = state.oauth.rotator.rotate(rotation).await.map_err(OAuthError::internal)? {
            let family = Family::from(family);
            let scope = split_scope(&family.scope);
            return answer(state, client, &family, &scope, successor).await;
        }
    }
    for _ in 0..RACE_RETRIES {
        let now = state.clock.now();
        let family = flow_store::find_grant(&state.db, grant_id).await?.ok_or_else(invalid)?;
        if family.client_id != client.client_id {
            audit::emit(AuditEvent::OAuthGrantRefused {
                client_id: &client.client_id,
                reason: "refresh token of another client",
            });
            return Err(invalid());
        }
        if family.revoked_at.is_some() {
            return Err(invalid());
        }
        if family.expires_at <= now || family.idle_expires_at <= now {
            return Err(OAuthError::invalid_grant("The refresh token has expired."));
        }
        let scope = narrowed_scope(&family, body.scope.as_deref())?;
        let leeway = client.refresh_token.leeway.max(0).saturating_mul(1000);
        let is_current = crypto::constant_time_eq(presented_hash.as_bytes(), family.current_hash.as_bytes());
        let is_previous = family
            .previous_hash
            .as_ref()
            .is_some_and(|h| crypto::constant_time_eq(presented_hash.as_bytes(), h.as_bytes()));
        let idle_expires_at =
            (now + client.refresh_token.idle_token_lifetime.saturating_mul(1000)).min(family.expires_at);
        if is_current {
            let successor = if rotating { new_refresh_token(grant_id) } else { presented.to_owned() };
            let rotation = Rotation {
                grant_id: grant_id.to_owned(),
                client_id: client.client_id.clone(),
                presented_hash: presented_hash.clone(),
                new_hash: crypto::sha256_hex(successor.as_bytes()),
                successor: seal(state, grant_id, &successor),
                now,
                idle_expires_at,
            };
            if state.oauth.rotator.rotate(rotation).await.map_err(OAuthError::internal)?.is_none() {
                // Another request rotated it a moment ago: read again, as the previous token.
                continue;
            }
            return answer(state, client, &Family::from(family), &scope, successor).await;
        }
        if is_previous && within_leeway(&family, leeway, now) {
            if let Some(successor) = family.successor.as_deref().and_then(|sealed| open(state, grant_id, sealed)) {
                audit::emit(AuditEvent::OAuthRefreshRetried { client_id: &client.client_id, grant_id });
                return answer(state, client, &Family::from(family), &scope, successor).await;
            }
        }
        // An older token, or the previous one after the leeway: someone else holds this family's tokens.
        audit::emit(AuditEvent::OAuthReuseDetected { client_id: &client.client_id, grant_id, what: "refresh_token" });
        kill_family(state, grant_id, family.audience.as_deref(), now).await?;
        return Err(invalid());
    }
    Err(OAuthError::internal(anyhow::anyhow!("refresh rotation lost {RACE_RETRIES} races in a row")))
}

fn within_leeway(family: &GrantRow, leeway: Millis, now: Millis) -> bool {
    family.rotated_at.is_some_and(|at| now - at <= leeway)
}

/// The scopes of this answer: the family's, or a subset asked for (`invalid_scope` beyond it).
fn narrowed_scope(family: &GrantRow, requested: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let granted = split_scope(&family.scope);
    let Some(requested) = requested.map(split_scope).filter(|r| !r.is_empty()) else { return Ok(granted) };
    let extra: Vec<&str> = requested.iter().filter(|s| !granted.contains(s)).map(String::as_str).collect();
    if !extra.is_empty() {
        return Err(OAuthError::invalid_scope(format!("Scopes not granted: {}", extra.join(", "))));
    }
    Ok(requested)
}

/// The successor sealed under the server secret, bound to its family.
fn seal(state: &AppState, grant_id: &str, token: &str) -> String {
    use base64::Engine;
    let sealed = crypto::seal(&state.oauth.successor_key, grant_id.as_bytes(), token.as_bytes());
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(sealed)
}

fn open(state: &AppState, grant_id: &str, sealed: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD.decode(sealed).ok()?;
    String::from_utf8(crypto::open(&state.oauth.successor_key, grant_id.as_bytes(), &bytes)?).ok()
}

/// What a token answer needs of a family.
struct Family {
    id: String,
    user_id: String,
    session_id: String,
    scope: String,
    audience: Option<String>,
    auth_time: Millis,
}

impl From<GrantRow> for Family {
    fn from(row: GrantRow) -> Family {
        let GrantRow { id, user_id, session_id, scope, audience, auth_time, .. } = row;
        Family { id, user_id, session_id, scope, audience, auth_time }
    }
}

impl From<Rotated> for Family {
    fn from(row: Rotated) -> Family {
        let Rotated { id, user_id, session_id, scope, audience, auth_time, .. } = row;
        Family { id, user_id, session_id, scope, audience, auth_time }
    }
}

async fn answer(
    state: &AppState,
    client: &OAuthClient,
    family: &Family,
    scope: &[String],
    refresh_token: String,
) -> Result<TokenResponse, OAuthError> {
    // The family exists, so its user does (deleting a user deletes its families); it is read only for an
    // ID token.
    let user = if scope.iter().any(|s| s == "openid") {
        Some(accounts::store::find_user_by_id(&state.db, &family.user_id).await?.ok_or_else(invalid)?)
    } else {
        None
    };
    let terms = access_terms(state, family.audience.as_deref(), scope).await?;
    let grant = UserGrant {
        client,
        user_id: &family.user_id,
        user: user.as_ref(),
        session_id: &family.session_id,
        scope,
        audience: family.audience.as_deref(),
        auth_time: family.auth_time,
        nonce: None,
        grant_id: &family.id,
    };
    let answer = user_tokens(state, &grant, terms, Some(refresh_token)).await?;
    audit::emit(AuditEvent::OAuthTokenIssued {
        client_id: &client.client_id,
        grant_type: "refresh_token",
        audience: family.audience.as_deref().unwrap_or_default(),
        jti: &family.id,
    });
    Ok(answer)
}
