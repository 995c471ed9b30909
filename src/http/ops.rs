//! Operations endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document
//! (DESIGN.md "Cross-cutting").

use std::sync::OnceLock;

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use utoipa::OpenApi;

use super::paths;
use crate::{app::AppState, error::ApiError};

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(paths::HEALTHZ, get(healthz))
        .route(paths::READYZ, get(readyz))
        .route(paths::METRICS, get(metrics_text))
        .route(paths::OPENAPI, get(openapi_json))
}

/// The process-wide Prometheus recorder (metrics macros use one global recorder; installed once).
pub fn metrics_handle() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("duration_seconds".into()),
            &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
        )?
        .build_recorder();
    let handle = recorder.handle();
    // Another thread may have won the race; then its recorder is the global one.
    if metrics::set_global_recorder(recorder).is_err() {
        return HANDLE.get().cloned().ok_or_else(|| anyhow::anyhow!("a different metrics recorder is installed"));
    }
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// `{status}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = paths::HEALTHZ, tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = paths::READYZ, tag = "ops",
    responses((status = 200, body = Health), (status = 503, body = crate::error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    match state.db.ping().await {
        Ok(()) => Ok(Json(Health { status: "ok" })),
        Err(error) => {
            tracing::warn!(request_id = %crate::telemetry::CurrentRequestId, error = %error, "readiness check failed");
            Err(ApiError::database_unavailable())
        }
    }
}

/// Prometheus text: requests and latency by route, sign-in outcomes, DB pool, revoked-session set, token
/// core (revocations held, verified tokens cached, signing keys published).
#[utoipa::path(get, path = paths::METRICS, tag = "ops", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let (size, idle) = state.db.pool_stats();
    metrics::gauge!("latchkey_db_pool_connections", "state" => "open").set(f64::from(size));
    metrics::gauge!("latchkey_db_pool_connections", "state" => "idle").set(idle as f64);
    metrics::gauge!("latchkey_revoked_sessions_cached").set(state.revoked.len() as f64);
    metrics::gauge!("latchkey_revoked_tokens_cached").set(state.revocations.len() as f64);
    metrics::gauge!("latchkey_verified_tokens_cached").set(state.service.verified.len() as f64);
    metrics::gauge!("latchkey_signing_keys_published").set(state.key_ring.kids().len() as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

/// The OpenAPI 3 document of every endpoint, generated from the handlers' annotations.
#[utoipa::path(get, path = paths::OPENAPI, tag = "ops", responses((status = 200, content_type = "application/json")))]
pub async fn openapi_json() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Latchkey",
        description = "Authentication server: accounts and cookie sessions, API keys, organizations, forward-auth and extension tokens (Better Auth-compatible), service tokens and the JWKS."
    ),
    paths(
        crate::accounts::routes::sign_up_email,
        crate::accounts::routes::sign_in_email,
        crate::sessions::routes::sign_out,
        crate::sessions::routes::get_session,
        crate::sessions::routes::list_sessions,
        crate::sessions::routes::revoke_session,
        crate::sessions::routes::revoke_sessions,
        crate::sessions::routes::revoke_other_sessions,
        crate::sessions::routes::api_session,
        crate::sessions::routes::debug_session,
        crate::api_keys::routes::create,
        crate::api_keys::routes::get_key,
        crate::api_keys::routes::list,
        crate::api_keys::routes::update,
        crate::api_keys::routes::delete,
        crate::api_keys::routes::verify,
        crate::orgs::routes::create,
        crate::orgs::routes::update,
        crate::orgs::routes::delete,
        crate::orgs::routes::list,
        crate::orgs::routes::check_slug,
        crate::orgs::routes::set_active,
        crate::orgs::routes::get_full,
        crate::orgs::routes::list_members,
        crate::orgs::routes::get_active_member,
        crate::orgs::routes::get_active_member_role,
        crate::orgs::routes::list_invitations,
        crate::orgs::routes::list_user_invitations,
        crate::orgs::routes::invite_member,
        crate::orgs::routes::accept_invitation,
        crate::orgs::routes::reject_invitation,
        crate::orgs::routes::cancel_invitation,
        crate::orgs::routes::remove_member,
        crate::orgs::routes::update_member_role,
        crate::orgs::routes::leave,
        crate::principal::routes::check,
        crate::extensions::routes::issue,
        crate::extensions::routes::verify,
        crate::service::routes::create_client,
        crate::service::routes::list_clients,
        crate::service::routes::rotate_client_key,
        crate::service::routes::delete_client,
        crate::service::routes::create_user,
        crate::service::routes::list_users,
        crate::service::routes::delete_user,
        crate::service::routes::issue_token,
        crate::service::routes::revoke_token,
        crate::service::routes::me,
        crate::service::routes::jwks,
        healthz,
        readyz,
        metrics_text,
        openapi_json,
    ),
    components(schemas(crate::error::ErrorBody))
)]
pub struct ApiDoc;
