//! OpenID Connect Discovery 1.0: `/.well-known/openid-configuration`, issuer `{base_url}/` (trailing
//! slash, as Auth0) and every endpoint as an absolute URL.

use axum::{
    extract::State,
    http::{header, HeaderValue},
    response::IntoResponse,
    Json,
};
use serde::Serialize;

use super::{issuer, paths};
use crate::{service_tokens, state::AppState};

/// The provider's metadata (the fields OpenID Connect Discovery and RFC 8414 define that apply).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: String,
    pub jwks_uri: String,
    pub end_session_endpoint: String,
    pub revocation_endpoint: String,
    pub introspection_endpoint: String,
    pub scopes_supported: Vec<&'static str>,
    pub response_types_supported: Vec<&'static str>,
    pub response_modes_supported: Vec<&'static str>,
    pub grant_types_supported: Vec<&'static str>,
    pub subject_types_supported: Vec<&'static str>,
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    pub code_challenge_methods_supported: Vec<&'static str>,
    pub claims_supported: Vec<&'static str>,
    pub prompt_values_supported: Vec<&'static str>,
    pub request_parameter_supported: bool,
    pub request_uri_parameter_supported: bool,
    pub claims_parameter_supported: bool,
}

/// The metadata for a base URL.
pub fn metadata(base_url: &str) -> ProviderMetadata {
    let base = base_url.trim_end_matches('/');
    let at = |path: &str| format!("{base}{path}");
    ProviderMetadata {
        issuer: issuer(base_url),
        authorization_endpoint: at(paths::AUTHORIZE),
        token_endpoint: at(paths::TOKEN),
        userinfo_endpoint: at(paths::USERINFO),
        jwks_uri: at(service_tokens::paths::JWKS),
        end_session_endpoint: at(paths::OIDC_LOGOUT),
        revocation_endpoint: at(paths::REVOKE),
        introspection_endpoint: at(paths::INTROSPECT),
        scopes_supported: super::OIDC_SCOPES.to_vec(),
        response_types_supported: vec!["code"],
        response_modes_supported: vec!["query", "form_post"],
        grant_types_supported: vec!["authorization_code", "refresh_token", "client_credentials"],
        subject_types_supported: vec!["public"],
        id_token_signing_alg_values_supported: vec!["RS256", "ES256", "EdDSA"],
        token_endpoint_auth_methods_supported: vec!["client_secret_basic", "client_secret_post", "none"],
        revocation_endpoint_auth_methods_supported: vec!["client_secret_basic", "client_secret_post", "none"],
        introspection_endpoint_auth_methods_supported: vec!["client_secret_basic", "client_secret_post"],
        code_challenge_methods_supported: vec!["S256"],
        claims_supported: vec![
            "sub",
            "iss",
            "aud",
            "azp",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "sid",
            "name",
            "picture",
            "updated_at",
            "email",
            "email_verified",
        ],
        prompt_values_supported: vec!["none", "login", "consent"],
        request_parameter_supported: false,
        request_uri_parameter_supported: false,
        claims_parameter_supported: false,
    }
}

/// The OpenID Provider's configuration (public: any origin may read it).
#[utoipa::path(get, path = paths::DISCOVERY, tag = "oauth",
    responses((status = 200, body = ProviderMetadata)))]
pub async fn openid_configuration(State(state): State<AppState>) -> impl IntoResponse {
    let headers = [
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")),
        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
    ];
    (headers, Json(metadata(&state.settings.base_url)))
}
