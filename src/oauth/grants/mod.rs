//! The grants of the token endpoint, one module each, and what they share: the access and ID tokens
//! they sign (RFC 9068 access tokens, OpenID Connect ID tokens) and the token answer.

pub mod client_credentials;
pub mod code;
pub mod refresh;
pub mod rotator;

use axum::{
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;

use super::{
    clients::{GrantType, OAuthClient},
    error::{no_store, OAuthError},
    family_handle, issuer,
    token::TokenResponse,
    ID_TOKEN_LIFETIME, USERINFO_TOKEN_LIFETIME,
};
// The grants sit above `state`, which is built on the capabilities' domain halves: the folders meet in a
// circle, the files do not (README, "Code tour").
use crate::{
    accounts::User,
    clock::Millis,
    crypto,
    state::AppState,
    tokens::{Algorithm, TokenType},
};

/// The token answer, never cached.
pub fn answer(body: TokenResponse) -> Response {
    let mut response = Json(body).into_response();
    no_store(response.headers_mut());
    response
}

/// `aud` of an access token: one audience, or several.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, value: &str) -> bool {
        match self {
            Audience::One(one) => one == value,
            Audience::Many(many) => many.iter().any(|a| a == value),
        }
    }
}

/// The claims of an access token (RFC 9068).
#[derive(Debug, Serialize)]
pub struct AccessClaims<'a> {
    pub iss: String,
    pub sub: &'a str,
    pub aud: Audience,
    pub azp: &'a str,
    pub scope: &'a str,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gty: Option<&'static str>,
}

/// The claims of an ID token (OpenID Connect Core §2, Auth0's profile claims by scope).
#[derive(Debug, Serialize)]
struct IdClaims<'a> {
    iss: String,
    sub: &'a str,
    aud: &'a str,
    azp: &'a str,
    iat: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    auth_time: i64,
    sid: &'a str,
    #[serde(flatten)]
    profile: Option<ProfileClaims<'a>>,
    #[serde(flatten)]
    email: Option<EmailClaims<'a>>,
}

/// The `profile` scope's claims (those Latchkey has).
#[derive(Debug, Serialize)]
pub struct ProfileClaims<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<&'a str>,
    /// Unix seconds.
    pub updated_at: i64,
}

/// The `email` scope's claims.
#[derive(Debug, Serialize)]
pub struct EmailClaims<'a> {
    pub email: &'a str,
    pub email_verified: bool,
}

impl<'a> ProfileClaims<'a> {
    pub fn of(user: &'a User) -> ProfileClaims<'a> {
        ProfileClaims { name: &user.name, picture: user.image.as_deref(), updated_at: user.updated_at / 1000 }
    }
}

impl<'a> EmailClaims<'a> {
    pub fn of(user: &'a User) -> EmailClaims<'a> {
        EmailClaims { email: &user.email, email_verified: user.email_verified }
    }
}

/// What a user's grant (a code, or a refresh family) stands for.
#[derive(Debug)]
pub struct UserGrant<'a> {
    pub client: &'a OAuthClient,
    pub user_id: &'a str,
    /// The user, needed for an ID token (`openid` in scope) only.
    pub user: Option<&'a User>,
    pub session_id: &'a str,
    /// The scopes of this answer.
    pub scope: &'a [String],
    pub audience: Option<&'a str>,
    /// Unix ms of the sign-in.
    pub auth_time: Millis,
    pub nonce: Option<&'a str>,
    pub grant_id: &'a str,
}

/// An access token's audience, lifetime (seconds) and algorithm: the API's, or userinfo's.
pub struct AccessTerms {
    pub aud: Audience,
    pub lifetime: i64,
    pub alg: Algorithm,
}

/// The terms of an access token for `audience` with `scope`; `invalid_grant` if the API is gone.
pub async fn access_terms(
    state: &AppState,
    audience: Option<&str>,
    scope: &[String],
) -> Result<AccessTerms, OAuthError> {
    let userinfo = format!("{}userinfo", issuer(&state.settings.base_url));
    let Some(audience) = audience else {
        return Ok(AccessTerms {
            aud: Audience::One(userinfo),
            lifetime: USERINFO_TOKEN_LIFETIME,
            alg: Algorithm::Rs256,
        });
    };
    let now = state.clock.now();
    let api = state
        .oauth
        .config
        .api(&state.db, &state.settings.base_url, audience, now)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant(format!("Service not found: {audience}")))?;
    let aud = if scope.iter().any(|s| s == "openid") {
        Audience::Many(vec![audience.to_owned(), userinfo])
    } else {
        Audience::One(audience.to_owned())
    };
    Ok(AccessTerms { aud, lifetime: api.token_lifetime, alg: api.signing_alg })
}

/// Signs the access token (and the ID token when `openid` is in scope) of a user's grant.
pub async fn user_tokens(
    state: &AppState,
    grant: &UserGrant<'_>,
    terms: AccessTerms,
    refresh_token: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    let now = state.clock.now();
    let iat = now / 1000;
    let iss = issuer(&state.settings.base_url);
    let scope = grant.scope.join(" ");
    let claims = AccessClaims {
        iss: iss.clone(),
        sub: grant.user_id,
        aud: terms.aud,
        azp: &grant.client.client_id,
        scope: &scope,
        iat,
        exp: iat + terms.lifetime,
        jti: format!("{}.{}", family_handle(grant.grant_id), crypto::random_alphanumeric(16)),
        gty: None,
    };
    let ring = &state.tokens.key_ring;
    let access_token = ring
        .sign_ensuring(&state.db, terms.alg, &claims, TokenType::AccessToken, now)
        .await
        .map_err(OAuthError::internal)?;
    let id_token = if let (true, Some(user)) = (grant.scope.iter().any(|s| s == "openid"), grant.user) {
        let has = |s: &str| grant.scope.iter().any(|granted| granted == s);
        let claims = IdClaims {
            iss,
            sub: &user.id,
            aud: &grant.client.client_id,
            azp: &grant.client.client_id,
            iat,
            exp: iat + ID_TOKEN_LIFETIME,
            nonce: grant.nonce,
            auth_time: grant.auth_time / 1000,
            sid: grant.session_id,
            profile: has("profile").then(|| ProfileClaims::of(user)),
            email: has("email").then(|| EmailClaims::of(user)),
        };
        let token = ring
            .sign_ensuring(&state.db, grant.client.jwt_alg, &claims, TokenType::Jwt, now)
            .await
            .map_err(OAuthError::internal)?;
        Some(token)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: terms.lifetime,
        scope,
        id_token,
        refresh_token: refresh_token.filter(|_| grant.client.grant_types.contains(&GrantType::RefreshToken)),
    })
}

/// A new refresh token of a family: `{grant_id}.{secret}` (the secret ~256 bits; only its hash is stored).
pub fn new_refresh_token(grant_id: &str) -> String {
    format!("{grant_id}.{}", crypto::random_alphanumeric(43))
}

/// The grant id a refresh token names, if it has the shape of one.
pub fn grant_id_of(refresh_token: &str) -> Option<&str> {
    let (grant_id, secret) = refresh_token.split_once('.')?;
    (grant_id.starts_with("grt_") && grant_id.len() <= 64 && secret.len() == 43).then_some(grant_id)
}

/// Kills a grant (`oauth::revoke_family`), remembered until the last access token it may have issued
/// has expired: the longer of the audience's token lifetime (if the API still exists) and a
/// userinfo-only token's, plus the leeway.
pub async fn kill_family(
    state: &AppState,
    grant_id: &str,
    audience: Option<&str>,
    now: Millis,
) -> Result<(), OAuthError> {
    let lifetime = match audience {
        Some(audience) => state
            .oauth
            .config
            .api(&state.db, &state.settings.base_url, audience, now)
            .await?
            .map_or(0, |api| api.token_lifetime),
        None => 0,
    };
    let leeway = i64::try_from(state.settings.tokens.leeway).unwrap_or(0);
    let until = now + (lifetime.max(USERINFO_TOKEN_LIFETIME) + leeway) * 1000;
    super::revoke_family(&state.db, &state.tokens.revocations, grant_id, until, now).await?;
    Ok(())
}
