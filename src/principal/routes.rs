//! `GET /api/auth/check`: forward-auth for gateways (nginx `auth_request`, Traefik `forwardAuth`).

use axum::{
    extract::State,
    http::{HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};

use utoipa_axum::{router::OpenApiRouter, routes};

use super::paths;
use super::{extension_tenant, resolve_tenant, Credential, TenantError};
// The routes sit above `state` and `principal`, which are built on the domain half of this capability
// (and of the others): the folders meet in a circle, the files do not (README, "Code tour").
use crate::{
    error::{ApiError, ErrorBody},
    http::extractors::ApiQuery,
    state::AppState,
};

/// The forward-auth check, registered with its OpenAPI operation; `app::routes` merges it.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(check))
}

/// What a gateway learns about the caller (also sent as `x-auth-*` headers).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckResponse {
    /// `x-auth-user-id`.
    pub user_id: String,
    /// `x-auth-org-id` (absent header when null).
    pub organization_id: Option<String>,
    /// `x-auth-method`: `session`, `api-key`, `extension-token`, `service-token` or `oauth`.
    pub method: &'static str,
    /// `x-auth-scopes`, space-separated (empty: the user's own rights).
    pub scopes: String,
}

/// What a gateway may require of the credential.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CheckQuery {
    /// An OAuth access token must be addressed to this API (its `aud`); other credentials ignore it.
    pub audience: Option<String>,
}

/// 200 with `x-auth-user-id`, `x-auth-method`, `x-auth-scopes` and, when a tenant resolves,
/// `x-auth-org-id` for any valid credential (session cookie or bearer session token, `x-api-key`, bearer
/// extension, service or OAuth access token; for the last, `x-auth-method: oauth`, its scopes, and its
/// `sub`, which is `{client_id}@clients` for a client-credentials token); 401 otherwise, or when `x-tenant-id` names an organization the caller cannot access.
#[utoipa::path(get, path = paths::AUTH_CHECK, tag = "forward-auth", params(CheckQuery),
    responses((status = 200, body = CheckResponse),
        (status = 400, body = ErrorBody, description = "`VALIDATION_ERROR`: a malformed query string"),
        (status = 401, body = ErrorBody, description = "`UNAUTHORIZED`, `INVALID_TOKEN`, \
            `ORGANIZATION_ACCESS_DENIED` (`x-tenant-id`)")))]
pub async fn check(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<CheckQuery>,
    credential: Credential,
) -> Result<Response, ApiError> {
    let body = match &credential {
        Credential::Principal(principal) => {
            let organization_id = match resolve_tenant(&state, principal, None).await {
                Ok(tenant) => Some(tenant.organization_id),
                Err(TenantError::NoOrganization) => None,
                Err(error) => return Err(error.into()),
            };
            CheckResponse {
                user_id: principal.user.id.clone(),
                organization_id,
                method: principal.method(),
                scopes: principal.scopes().join(" "),
            }
        }
        Credential::Extension(claims) => {
            // The extractor already checked membership; this re-read is from the cache.
            let tenant = extension_tenant(&state, claims).await?;
            CheckResponse {
                user_id: claims.sub.clone(),
                organization_id: tenant.map(|t| t.organization_id),
                method: "extension-token",
                scopes: claims.scope.clone(),
            }
        }
        Credential::Service(claims) => CheckResponse {
            user_id: claims.sub.clone(),
            organization_id: None,
            method: "service-token",
            scopes: String::new(),
        },
        Credential::OAuth(claims) => {
            if query.audience.as_deref().is_some_and(|audience| !claims.aud.contains(audience)) {
                return Err(ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_TOKEN", "Invalid or expired token"));
            }
            CheckResponse {
                user_id: claims.sub.clone(),
                organization_id: None,
                method: "oauth",
                scopes: claims.scope.clone(),
            }
        }
    };
    let mut headers = Vec::with_capacity(4);
    let mut push = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.push((HeaderName::from_static(name), value));
        }
    };
    push("x-auth-user-id", &body.user_id);
    push("x-auth-method", body.method);
    push("x-auth-scopes", &body.scopes);
    if let Some(org) = &body.organization_id {
        push("x-auth-org-id", org);
    }
    let mut response = Json(body).into_response();
    response.headers_mut().extend(headers);
    Ok(response)
}
