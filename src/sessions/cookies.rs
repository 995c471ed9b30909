//! Issuing the `session_data` cookie cache (DESIGN.md "Capability 1"): a signed, expiring copy of
//! `{session, user}` bound to the hash of the session token it travels with, so a session check within its
//! max-age reads no database. Sign-in and sign-up issue it with the new session; the session extractor
//! re-issues it after a database read; a change to the session (its active organization) re-issues it
//! bound to the token cookie the request carried.

use std::sync::Arc;

use super::{cookie_cache, token_hash, Session};
// Issuing cookies reads the whole state (keys, policy, cookie settings), which is built on this folder's
// domain half: the folders meet in a circle, the files do not (README, "Code tour").
use crate::{
    accounts::User,
    audit::{self, AuditEvent},
    clock::Millis,
    config::Secret,
    error::ApiError,
    http::{cookies::SetCookies, extractors::ClientInfo},
    state::AppState,
};

/// Starts a session (sign-in, sign-up, the login page) and builds its cookies: the signed token and,
/// when the cache is on, the cookie cache.
pub async fn start_session(
    state: &AppState,
    user_id: &str,
    client: &ClientInfo,
    remember_me: bool,
    user: &User,
) -> Result<(Secret, SetCookies), ApiError> {
    let now = state.clock.now();
    let (token, session) = super::create(&state.db, &state.sessions.policy, user_id, client, remember_me, now).await?;
    let signed = crate::crypto::sign_cookie_value(&state.sessions.keys.cookie, token.expose());
    let max_age = remember_me.then_some((session.expires_at - now) / 1000);
    let mut cookies = vec![state.cookies.set(&state.cookies.session_token, &signed, max_age)];
    if state.sessions.policy.cache_max_age > 0 {
        cookies.push(session_data_cookie(state, &session, user, token.expose(), now));
    }
    audit::emit(AuditEvent::SessionCreated { user_id, session_id: &session.id });
    Ok((token, SetCookies(cookies)))
}

/// A fresh `session_data` cookie for a session just read from, or written to, the database.
pub fn session_data_cookie(state: &AppState, session: &Session, user: &User, token: &str, now: Millis) -> String {
    cache_cookie(state, session, user, token_hash(token), now)
}

/// The `session_data` cookie re-issued after `session` changed, bound to the hash of the token cookie the
/// request carried; `None` when the cache is off or the session did not come in a cookie (a bearer
/// token gets no cookies).
pub fn reissued_session_data_cookie(
    state: &AppState,
    session: &Session,
    user: &User,
    cookie_token_hash: Option<&str>,
    now: Millis,
) -> Option<String> {
    let token_hash = cookie_token_hash?.to_owned();
    (state.sessions.policy.cache_max_age > 0).then(|| cache_cookie(state, session, user, token_hash, now))
}

fn cache_cookie(state: &AppState, session: &Session, user: &User, token_hash: String, now: Millis) -> String {
    let cached = cookie_cache::Cached {
        session: session.clone(),
        user: Arc::new(user.clone()),
        token_hash,
        expires_at: now + state.sessions.policy.cache_max_age,
    };
    let value = cookie_cache::encode(&state.sessions.keys.cache, &cached);
    state.cookies.set(&state.cookies.session_data, &value, Some(state.sessions.policy.cache_max_age / 1000))
}
