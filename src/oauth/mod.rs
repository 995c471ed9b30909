//! Capability 5, the OAuth 2.0 / OpenID Connect provider in Auth0's wire format (DESIGN.md "Capability 5"
//! and its contract details): the client registry ([`clients`]) and the APIs with their client grants
//! ([`apis`]), managed through `/api/v2` (`crate::management`) and `latchkey admin`; discovery; the
//! authorization-code flow ([`authorize`], the [`login`] and [`consent`] pages); the token endpoint
//! ([`token`], one module per grant in [`grants`]); userinfo, revocation, introspection and logout.
//!
//! Revocation reads no database: an access token's `jti` starts with the handle of the grant (refresh
//! family) it came from ([`family_handle`]), so killing a family puts one entry in the token core's
//! in-memory set ([`crate::tokens::revocation::Revocations`]) and every node refuses all its tokens.

pub mod access;
pub mod apis;
pub mod authorize;
pub mod clients;
pub mod config;
pub mod consent;
pub mod cors;
pub mod discovery;
pub mod error;
pub mod flow_store;
pub mod grants;
pub mod introspect;
pub mod login;
pub mod logout;
pub mod pages;
pub mod revoke;
pub mod routes;
pub mod store;
pub mod token;
pub mod userinfo;

use crate::{
    cache::TtlCache,
    clock::Millis,
    config::Secret,
    crypto,
    storage::{notify, Db, StorageError},
    tokens::{revocation::Revocations, Expectation},
};

/// The URL paths of the OAuth endpoints.
pub mod paths {
    /// `POST` tokens (form or JSON).
    pub const TOKEN: &str = "/oauth/token";
    /// `GET` the authorization endpoint.
    pub const AUTHORIZE: &str = "/authorize";
    /// `GET` an authorize request resumed after sign-in or consent.
    pub const AUTHORIZE_RESUME: &str = "/authorize/resume";
    /// `GET` the sign-in page, `POST` its form.
    pub const LOGIN: &str = "/login";
    /// `POST` a "Continue with …" button of the sign-in page: on to a social provider.
    pub const LOGIN_SOCIAL: &str = "/login/social";
    /// `GET` the sign-up page, `POST` its form.
    pub const SIGNUP: &str = "/signup";
    /// `GET` the consent page, `POST` the decision.
    pub const CONSENT: &str = "/consent";
    /// `GET` OpenID Connect discovery.
    pub const DISCOVERY: &str = "/.well-known/openid-configuration";
    /// `GET`/`POST` the OpenID Connect userinfo endpoint.
    pub const USERINFO: &str = "/userinfo";
    /// `POST` token revocation (RFC 7009).
    pub const REVOKE: &str = "/oauth/revoke";
    /// `POST` token introspection (RFC 7662).
    pub const INTROSPECT: &str = "/oauth/introspect";
    /// `GET` Auth0's logout.
    pub const LOGOUT: &str = "/v2/logout";
    /// `GET` OpenID Connect RP-initiated logout.
    pub const OIDC_LOGOUT: &str = "/oidc/logout";
}

/// Scopes of OpenID Connect itself, granted whatever the audience.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// How long a login transaction waits for the user.
pub const TRANSACTION_LIFETIME: Millis = 15 * 60 * 1000;
/// How long an authorization code lives.
pub const CODE_LIFETIME: Millis = 60 * 1000;
/// How long an ID token lives (seconds).
pub const ID_TOKEN_LIFETIME: i64 = 36_000;
/// How long an access token for userinfo only lives (seconds).
pub const USERINFO_TOKEN_LIFETIME: i64 = 86_400;

/// What the OAuth provider keeps in memory: keys derived from the server secret, and what an access
/// token is checked against.
pub struct OAuthState {
    /// Binds a login form's CSRF token to the browser's CSRF cookie and the transaction.
    pub csrf_key: [u8; 32],
    /// Seals a rotated family's successor refresh token for the leeway.
    pub successor_key: [u8; 32],
    /// `{issuer}userinfo`, the audience `/userinfo` requires.
    pub userinfo_audience: String,
    /// Access tokens of this issuer for any audience (the audience is checked on the claims).
    pub any_audience: Expectation,
    /// Access tokens verified before, by token, until their `exp` plus the leeway.
    pub verified: TtlCache<crate::tokens::keys::Verified<access::AccessTokenClaims>>,
    /// Users as `/userinfo` shows them, for `user_ttl` ms (users are not changed or deleted through any
    /// endpoint yet; a user-management API must invalidate this).
    pub users: TtlCache<crate::accounts::User>,
    pub user_ttl: Millis,
    /// Group commit of refresh-token rotations.
    pub rotator: grants::rotator::Rotator,
    /// Clients, APIs and client grants in memory.
    pub config: config::ConfigCache,
}

impl std::fmt::Debug for OAuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OAuthState(***)")
    }
}

impl OAuthState {
    /// Builds the state and starts the rotation writer (on the current runtime).
    pub fn new(db: &Db, base_url: &str, leeway_secs: u64, secret: &Secret, user_ttl: Millis) -> OAuthState {
        let issuer = issuer(base_url);
        OAuthState {
            csrf_key: crypto::derive_key(secret.expose().as_bytes(), "latchkey oauth csrf"),
            successor_key: crypto::derive_key(secret.expose().as_bytes(), "latchkey oauth refresh successor"),
            userinfo_audience: format!("{issuer}userinfo"),
            any_audience: Expectation::any_audience(&issuer, leeway_secs),
            verified: TtlCache::default(),
            users: TtlCache::default(),
            user_ttl,
            rotator: grants::rotator::Rotator::start(db.clone()),
            config: config::ConfigCache::new(user_ttl),
        }
    }

    /// Forgets expired entries (maintenance).
    pub fn prune(&self, now: Millis) {
        self.verified.prune(now);
        self.users.prune(now);
        self.config.prune(now);
    }

    /// Applies an invalidation that concerns the OAuth configuration.
    pub fn apply(&self, event: &notify::CacheEvent) {
        if matches!(event, notify::CacheEvent::OAuthConfigChanged) {
            self.config.clear();
        }
    }
}

/// The issuer: the base URL with one trailing slash, as Auth0.
pub fn issuer(base_url: &str) -> String {
    format!("{}/", base_url.trim_end_matches('/'))
}

/// The handle a grant's access tokens carry as the start of their `jti` (`{handle}.{random}`): derived
/// from the grant id, which only its refresh tokens carry, so a resource server that sees access tokens
/// learns nothing it could present at the token endpoint.
pub fn family_handle(grant_id: &str) -> String {
    format!("fam{}", &crypto::sha256_hex(grant_id.as_bytes())[..24])
}

/// Loads the OAuth revocations still in force into the token core's set (start-up).
pub async fn load_revocations(db: &Db, revocations: &Revocations, now: Millis) -> Result<(), StorageError> {
    for (id, kind, until, issued_before) in flow_store::revocations(db, now).await? {
        match (kind.as_str(), issued_before) {
            ("jti", _) => revocations.insert_jti(&id, until),
            ("subject", Some(issued_before)) => revocations.cut_off(&id, issued_before, until),
            _ => revocations.insert_owner(&id, until),
        }
    }
    Ok(())
}

/// Cuts a user off (blocked or deleted): every token with `sub` = the user issued until now — OAuth access
/// tokens, extension tokens — is refused here and on every node through the bus, until `until` (when the
/// longest-lived of them has expired). Tokens issued after the cut (an unblocked user's) are good.
pub async fn cut_off_user(
    db: &Db,
    revocations: &Revocations,
    user_id: &str,
    until: Millis,
    now: Millis,
) -> Result<(), StorageError> {
    flow_store::insert_cutoff(db, user_id, now, until).await?;
    revocations.cut_off(user_id, now, until);
    let event = notify::CacheEvent::SubjectCutOff { subject: user_id.to_owned(), issued_before: now, until };
    notify::publish_event(db, &event, now).await
}

/// Kills a grant: its refresh tokens (the row) and every access token issued from it (its handle, here
/// and on every node through the bus). `until` is when the last of its access tokens expires at the latest.
pub async fn revoke_family(
    db: &Db,
    revocations: &Revocations,
    grant_id: &str,
    until: Millis,
    now: Millis,
) -> Result<(), StorageError> {
    flow_store::revoke_grant(db, grant_id, now).await?;
    let handle = family_handle(grant_id);
    flow_store::insert_revocation(db, &handle, "family", until).await?;
    revocations.insert_owner(&handle, until);
    notify::publish_event(db, &notify::CacheEvent::OwnerTokensRevoked { owner: handle, until }, now).await
}

/// Revokes one access token by `jti`, until its `exp` (unix ms).
pub async fn revoke_access_token(
    db: &Db,
    revocations: &Revocations,
    jti: &str,
    expires_at: Millis,
    now: Millis,
) -> Result<(), StorageError> {
    flow_store::insert_revocation(db, jti, "jti", expires_at).await?;
    revocations.insert_jti(jti, expires_at);
    notify::publish_event(db, &notify::CacheEvent::TokenRevoked { jti: jti.to_owned(), expires_at }, now).await
}

/// Splits a space-separated scope string, dropping duplicates and keeping the order.
pub fn split_scope(scope: &str) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !scopes.iter().any(|known| known == s) {
            scopes.push(s.to_owned());
        }
    }
    scopes
}
