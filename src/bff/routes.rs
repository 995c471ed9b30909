//! The token handler's router: the vendor configuration under `/management/vendors/{vendorId}/…` and the
//! handler itself under `/auth/{vendorId}/…`. Errors are capability 1's `{code, message}` body, the
//! management calls' included.

use axum::{
    extract::{FromRequest, FromRequestParts, Request, State},
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::options,
    Json,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    flow, is_vendor_id, paths, proxy, session,
    vendors::{self, KeyRotation, VendorConfig, VendorInput},
};
// The routes sit above `state`, which is built on the capabilities' domain halves: the folders meet in a
// circle, the files do not (README, "Code tour").
use crate::{
    audit::{self, AuditEvent},
    error::ApiError,
    http::extractors::{ApiJson, ApiPath},
    management::{ManagementError, Manager},
    state::AppState,
};

/// The routes of the token handler.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_vendor, get_vendor, delete_vendor))
        .routes(routes!(rotate_key))
        .routes(routes!(flow::login))
        .routes(routes!(flow::callback))
        .routes(routes!(session::session))
        .routes(routes!(session::refresh))
        .routes(routes!(session::logout))
        .routes(routes!(proxy::proxy))
        .routes(routes!(proxy::check))
        // Preflights: the SPA calls the handler cross-origin, with credentials.
        .route(paths::BFF_SESSION, options(proxy::endpoint_preflight))
        .route(paths::BFF_REFRESH, options(proxy::endpoint_preflight))
        .route(paths::BFF_LOGOUT, options(proxy::endpoint_preflight))
        .route(paths::BFF_API, options(proxy::proxy))
}

/// A caller allowed to manage token handlers: the master credentials, or a management API token with the
/// operation's scope — refused in capability 1's shape.
pub struct VendorManager(Manager);

impl VendorManager {
    fn require(&self, scope: &str) -> Result<(), ApiError> {
        self.0.require(scope).map_err(api_error)
    }
}

/// A management refusal as `{code, message}`: the same status, the code upper-cased.
fn api_error(error: ManagementError) -> ApiError {
    let code = match error.error_code {
        "insufficient_scope" => "INSUFFICIENT_SCOPE",
        "invalid_token" => "INVALID_TOKEN",
        "missing_credentials" => "UNAUTHORIZED",
        "invalid_credentials" => "INVALID_CREDENTIALS",
        "management_disabled" => "MANAGEMENT_DISABLED",
        _ if error.status.is_client_error() => "BAD_REQUEST",
        _ => "INTERNAL_SERVER_ERROR",
    };
    ApiError::new(error.status, code, error.message)
}

impl FromRequestParts<AppState> for VendorManager {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match Manager::from_request_parts(parts, state).await {
            Ok(manager) => Ok(VendorManager(manager)),
            Err(error) => {
                let bearer = error.bearer;
                let mut response = api_error(error).into_response();
                if response.status() == StatusCode::UNAUTHORIZED {
                    let challenge = if bearer {
                        "Bearer realm=\"latchkey\", error=\"invalid_token\""
                    } else {
                        "Basic realm=\"latchkey\""
                    };
                    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
                }
                Err(response)
            }
        }
    }
}

fn vendor_id(id: String) -> Result<String, ApiError> {
    if is_vendor_id(&id) {
        Ok(id)
    } else {
        Err(ApiError::bad_request("INVALID_VENDOR_ID", "A vendor id is 1–64 lower-case letters, digits and dashes"))
    }
}

fn no_store(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Creates or replaces a vendor's token handler.
#[utoipa::path(put, path = paths::BFF_VENDOR, tag = "token-handler",
    params(("vendorId" = String, Path, description = "`[a-z0-9-]{1,64}`")),
    request_body = VendorInput,
    security(("basic" = []), ("bearer" = ["update:token_handlers"])),
    responses(
        (status = 200, body = VendorConfig, description = "Stored (never the client secret)"),
        (status = 400, body = crate::error::ErrorBody, description = "`INVALID_VENDOR_ID`, `VALIDATION_ERROR`, `INVALID_JSON`, `ISSUER_DISCOVERY_FAILED`"),
        (status = 401, body = crate::error::ErrorBody, description = "`UNAUTHORIZED`, `INVALID_CREDENTIALS`, `INVALID_TOKEN`"),
        (status = 403, body = crate::error::ErrorBody, description = "`INSUFFICIENT_SCOPE`: the token lacks `update:token_handlers`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`"),
        (status = 503, body = crate::error::ErrorBody, description = "`MANAGEMENT_DISABLED`: no master credentials are configured")))]
pub async fn put_vendor(
    State(state): State<AppState>,
    manager: VendorManager,
    ApiPath(id): ApiPath<String>,
    request: Request,
) -> Result<Response, ApiError> {
    // Who may ask comes before what they ask: the body is read after the scope check.
    manager.require("update:token_handlers")?;
    let id = vendor_id(id)?;
    let ApiJson(input) = ApiJson::<VendorInput>::from_request(request, &state).await?;
    let (config, created) = vendors::put(&state, &id, input).await?;
    audit::emit(AuditEvent::BffVendorChanged { vendor_id: &id, action: if created { "created" } else { "updated" } });
    Ok(no_store(Json(config)))
}

/// A vendor's token handler configuration.
#[utoipa::path(get, path = paths::BFF_VENDOR, tag = "token-handler",
    params(("vendorId" = String, Path, description = "`[a-z0-9-]{1,64}`")),
    security(("basic" = []), ("bearer" = ["read:token_handlers"])),
    responses(
        (status = 200, body = VendorConfig),
        (status = 400, body = crate::error::ErrorBody, description = "`INVALID_VENDOR_ID`"),
        (status = 401, body = crate::error::ErrorBody, description = "`UNAUTHORIZED`, `INVALID_CREDENTIALS`, `INVALID_TOKEN`"),
        (status = 403, body = crate::error::ErrorBody, description = "`INSUFFICIENT_SCOPE`: the token lacks `read:token_handlers`"),
        (status = 404, body = crate::error::ErrorBody, description = "`VENDOR_NOT_FOUND`"),
        (status = 503, body = crate::error::ErrorBody, description = "`MANAGEMENT_DISABLED`")))]
pub async fn get_vendor(
    State(state): State<AppState>,
    manager: VendorManager,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    manager.require("read:token_handlers")?;
    let id = vendor_id(id)?;
    Ok(no_store(Json(vendors::get(&state, &id).await?)))
}

/// Deletes a vendor's token handler: its cookies stop working at once.
#[utoipa::path(delete, path = paths::BFF_VENDOR, tag = "token-handler",
    params(("vendorId" = String, Path, description = "`[a-z0-9-]{1,64}`")),
    security(("basic" = []), ("bearer" = ["update:token_handlers"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, body = crate::error::ErrorBody, description = "`INVALID_VENDOR_ID`"),
        (status = 401, body = crate::error::ErrorBody, description = "`UNAUTHORIZED`, `INVALID_CREDENTIALS`, `INVALID_TOKEN`"),
        (status = 403, body = crate::error::ErrorBody, description = "`INSUFFICIENT_SCOPE`"),
        (status = 404, body = crate::error::ErrorBody, description = "`VENDOR_NOT_FOUND`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`: a body that is not JSON"),
        (status = 503, body = crate::error::ErrorBody, description = "`MANAGEMENT_DISABLED`")))]
pub async fn delete_vendor(
    State(state): State<AppState>,
    manager: VendorManager,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    manager.require("update:token_handlers")?;
    let id = vendor_id(id)?;
    vendors::delete(&state, &id).await?;
    audit::emit(AuditEvent::BffVendorChanged { vendor_id: &id, action: "deleted" });
    Ok(no_store(StatusCode::NO_CONTENT))
}

/// Makes a new cookie key current; the previous one keeps opening the cookies it sealed until they
/// expire (30 days).
#[utoipa::path(post, path = paths::BFF_VENDOR_ROTATE_KEY, tag = "token-handler",
    params(("vendorId" = String, Path, description = "`[a-z0-9-]{1,64}`")),
    security(("basic" = []), ("bearer" = ["update:token_handlers"])),
    responses(
        (status = 200, body = KeyRotation),
        (status = 400, body = crate::error::ErrorBody, description = "`INVALID_VENDOR_ID`"),
        (status = 401, body = crate::error::ErrorBody, description = "`UNAUTHORIZED`, `INVALID_CREDENTIALS`, `INVALID_TOKEN`"),
        (status = 403, body = crate::error::ErrorBody, description = "`INSUFFICIENT_SCOPE`"),
        (status = 404, body = crate::error::ErrorBody, description = "`VENDOR_NOT_FOUND`"),
        (status = 415, body = crate::error::ErrorBody, description = "`UNSUPPORTED_MEDIA_TYPE`: a body that is not JSON"),
        (status = 503, body = crate::error::ErrorBody, description = "`MANAGEMENT_DISABLED`")))]
pub async fn rotate_key(
    State(state): State<AppState>,
    manager: VendorManager,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    manager.require("update:token_handlers")?;
    let id = vendor_id(id)?;
    let rotation = vendors::rotate_key(&state, &id).await?;
    audit::emit(AuditEvent::BffVendorChanged { vendor_id: &id, action: "key_rotated" });
    Ok(no_store(Json(rotation)))
}
