//! The OAuth provider's router.

use axum::routing::options;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{authorize, consent, cors, discovery, introspect, login, logout, paths, revoke, token, userinfo};
use crate::state::AppState;

/// The routes of the OAuth provider. The endpoints browser clients call cross-origin answer their own
/// CORS preflights ([`cors`]).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(token::token))
        .routes(routes!(discovery::openid_configuration))
        .routes(routes!(authorize::authorize))
        .routes(routes!(authorize::resume))
        .routes(routes!(login::login_get, login::login_post))
        .routes(routes!(login::login_social))
        .routes(routes!(login::signup_get, login::signup_post))
        .routes(routes!(consent::consent_get, consent::consent_post))
        .routes(routes!(userinfo::userinfo_get, userinfo::userinfo_post))
        .routes(routes!(revoke::revoke))
        .routes(routes!(introspect::introspect))
        .routes(routes!(logout::logout))
        .routes(routes!(logout::oidc_logout))
        .route(paths::TOKEN, options(cors::preflight))
        .route(paths::REVOKE, options(cors::preflight))
        .route(paths::USERINFO, options(cors::preflight))
}
