//! Operations endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document
//! (DESIGN.md "Cross-cutting").

use std::sync::OnceLock;

use axum::{
    body::Bytes,
    extract::State,
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde::Serialize;
use utoipa::OpenApi;

use crate::http::paths;
use crate::{error::ApiError, state::AppState};

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(paths::HEALTHZ, get(healthz))
        .route(paths::READYZ, get(readyz))
        .route(paths::METRICS, get(metrics_text))
        .route(paths::OPENAPI, get(openapi_json))
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
    metrics::gauge!("latchkey_revoked_sessions_cached").set(state.sessions.revoked.len() as f64);
    metrics::gauge!("latchkey_revoked_tokens_cached").set(state.tokens.revocations.len() as f64);
    metrics::gauge!("latchkey_verified_tokens_cached").set(state.service.verified.len() as f64);
    metrics::gauge!("latchkey_signing_keys_published").set(state.tokens.key_ring.kids().len() as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

/// The OpenAPI 3.1 document of every endpoint this app serves, generated from the handlers' annotations.
#[utoipa::path(get, path = paths::OPENAPI, tag = "ops",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    // Rendered once per process for each `debug_endpoints` value (tests run apps with both).
    static RENDERED: [OnceLock<Bytes>; 2] = [OnceLock::new(), OnceLock::new()];
    let debug = state.settings.debug_endpoints;
    let body = RENDERED[usize::from(debug)]
        .get_or_init(|| Bytes::from(serde_json::to_vec(&openapi(debug)).unwrap_or_default()))
        .clone();
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// The document of an app with `debug_endpoints` on or off: `/debug/session` (and the schemas only it
/// uses) only when on, as the router serves it only then.
pub fn openapi(debug_endpoints: bool) -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if !debug_endpoints {
        if let Some(paths) = doc.get_mut("paths").and_then(serde_json::Value::as_object_mut) {
            paths.remove(paths::DEBUG_SESSION);
        }
        prune_unused_schemas(&mut doc);
    }
    doc
}

const SCHEMA_REF: &str = "#/components/schemas/";

/// Removes the component schemas that no path refers to, directly or through other schemas.
fn prune_unused_schemas(doc: &mut serde_json::Value) {
    fn refs<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(name) = map.get("$ref").and_then(|r| r.as_str()).and_then(|r| r.strip_prefix(SCHEMA_REF)) {
                    out.push(name);
                }
                map.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let schemas = &doc["components"]["schemas"];
    let mut pending = Vec::new();
    refs(&doc["paths"], &mut pending);
    let mut used = std::collections::BTreeSet::new();
    while let Some(name) = pending.pop() {
        if used.insert(name.to_owned()) {
            refs(&schemas[name], &mut pending);
        }
    }
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(serde_json::Value::as_object_mut) {
        schemas.retain(|name, _| used.contains(name));
    }
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Latchkey",
        description = "Authentication server: accounts and cookie sessions, API keys, organizations, forward-auth and extension tokens (Better Auth-compatible), service tokens and the JWKS.\n\nBesides the answers listed per operation, any endpoint may answer `{code, message}` with 408 `REQUEST_TIMEOUT` (30 s), 413 `PAYLOAD_TOO_LARGE` (64 KiB), 503 `DATABASE_UNAVAILABLE` (the database cannot be reached; `Retry-After: 1`) or 500 `INTERNAL_SERVER_ERROR`; an endpoint that accepts `x-api-key` answers 400 `VALIDATION_ERROR` to an `x-tenant-id` that is not UTF-8. No text sent may hold U+0000 (400 `VALIDATION_ERROR`)."
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
        crate::orgs::members::list_members,
        crate::orgs::members::get_active_member,
        crate::orgs::members::get_active_member_role,
        crate::orgs::invitations::list_invitations,
        crate::orgs::invitations::list_user_invitations,
        crate::orgs::invitations::invite_member,
        crate::orgs::invitations::accept_invitation,
        crate::orgs::invitations::reject_invitation,
        crate::orgs::invitations::cancel_invitation,
        crate::orgs::members::remove_member,
        crate::orgs::members::update_member_role,
        crate::orgs::members::leave,
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

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, path::Path};

    /// Each `#[derive(.., ToSchema)]` item under `dir`: (schema name, `file: type`).
    fn schema_types(dir: &Path, found: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                schema_types(&path, found);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().map(str::trim_start).collect();
            for (at, line) in lines.iter().enumerate() {
                if !(line.starts_with("#[derive(") && line.contains("ToSchema")) {
                    continue;
                }
                let mut schema_as = None;
                for line in &lines[at + 1..] {
                    if let Some(name) = line.strip_prefix("#[schema(as = ") {
                        schema_as = Some(name.trim_end_matches(")]").to_owned());
                    }
                    let item = line.strip_prefix("pub ").unwrap_or(line);
                    if let Some(rest) = item.strip_prefix("struct ").or_else(|| item.strip_prefix("enum ")) {
                        let ident: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                        let name = schema_as.unwrap_or_else(|| ident.clone());
                        found.push((name, format!("{}: {ident}", path.display())));
                        break;
                    }
                }
            }
        }
    }

    /// utoipa keys components by schema name and keeps one of two same-named types: the document would
    /// describe one type's shape for the other's endpoints. Every `ToSchema` type needs its own name
    /// (`#[schema(as = …)]` when the Rust names clash).
    #[test]
    fn no_two_types_share_a_schema_name() {
        let mut found = Vec::new();
        schema_types(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut found);
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, item) in found {
            by_name.entry(name).or_default().push(item);
        }
        assert!(by_name.contains_key("ApiKeyVerifyResponse") && by_name.len() > 50, "the scan found {by_name:?}");
        let clashes: Vec<_> = by_name.iter().filter(|(_, items)| items.len() > 1).collect();
        assert!(clashes.is_empty(), "schema names shared by several types: {clashes:?}");
    }

    #[test]
    fn debug_session_and_the_schemas_only_it_uses_are_documented_only_with_debug_endpoints() {
        let on = super::openapi(true);
        let off = super::openapi(false);

        assert!(on["paths"][super::paths::DEBUG_SESSION].is_object());
        assert!(off["paths"].get(super::paths::DEBUG_SESSION).is_none());
        assert!(on["components"]["schemas"]["DebugSessionResponse"].is_object());
        assert!(off["components"]["schemas"].get("DebugSessionResponse").is_none());
        // Schemas other endpoints use stay.
        assert!(off["components"]["schemas"]["SessionView"].is_object());
        assert!(off["components"]["schemas"]["ErrorBody"].is_object());
    }
}
