//! Operations endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document
//! (DESIGN.md "Cross-cutting").

/// The URL paths of this module's endpoints, also re-exported by `latchkey::paths`.
pub mod paths {
    /// `GET` liveness.
    pub const HEALTHZ: &str = "/healthz";
    /// `GET` readiness (DB reachable).
    pub const READYZ: &str = "/readyz";
    /// `GET` Prometheus metrics.
    pub const METRICS: &str = "/metrics";
    /// `GET` the OpenAPI document.
    pub const OPENAPI: &str = "/openapi.json";
}

use axum::{
    extract::State,
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{error::ApiError, state::AppState};

/// Liveness, readiness, metrics and the OpenAPI document, each registered with its OpenAPI operation;
/// `app::routes` merges them.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics_text))
        .routes(routes!(openapi_json))
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

/// How long `/readyz` waits for the database before it answers "not ready" (health checkers' own timeouts
/// are often a second or two; the pool's acquire timeout is longer).
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness: the database answers (within 2 s).
#[utoipa::path(get, path = paths::READYZ, tag = "ops",
    responses((status = 200, body = Health), (status = 503, body = crate::error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let error = match tokio::time::timeout(READY_WITHIN, state.db.ping()).await {
        Ok(Ok(())) => return Ok(Json(Health { status: "ok" })),
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no answer within {READY_WITHIN:?}"),
    };
    tracing::warn!(request_id = %crate::telemetry::CurrentRequestId, error = %error, "readiness check failed");
    Err(ApiError::database_unavailable())
}

/// Prometheus text: requests and latency by route, sign-in outcomes, password hashes shed, DB pool,
/// revoked-session set, token core (revocations held, verified tokens cached, signing keys published),
/// the entries of the in-memory caches.
#[utoipa::path(get, path = paths::METRICS, tag = "ops", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let (size, idle) = state.db.pool_stats();
    metrics::gauge!("latchkey_db_pool_connections", "state" => "open").set(f64::from(size));
    metrics::gauge!("latchkey_db_pool_connections", "state" => "idle").set(idle as f64);
    metrics::gauge!("latchkey_revoked_sessions_cached").set(state.sessions.revoked.len() as f64);
    metrics::gauge!("latchkey_revoked_tokens_cached").set(state.tokens.revocations.len() as f64);
    metrics::gauge!("latchkey_verified_tokens_cached").set(state.service_tokens.verified.len() as f64);
    metrics::gauge!("latchkey_signing_keys_published").set(state.tokens.key_ring.kids().len() as f64);
    cache_gauges(&state);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

/// Entries held by the in-memory maps a client's credentials reach, by map: each is capped, and a flood
/// of unknown credentials adds to none but `api_keys_unknown` (a TTL'd negative cache, capped too).
fn cache_gauges(state: &AppState) {
    let (keys, unknown_keys) = state.api_keys.cache.lens();
    for (cache, entries) in [
        ("api_keys", keys),
        ("api_keys_unknown", unknown_keys),
        ("session_cookies", state.sessions.memo.len()),
        ("session_bearer_tokens", state.sessions.bearer.len()),
        ("extension_tokens", state.extensions.remembered()),
        ("oauth_access_tokens", state.oauth.verified.len()),
        ("service_tokens", state.service_tokens.verified.len()),
        ("service_clients", state.service_tokens.clients.len()),
        ("service_clients_unknown", state.service_tokens.unknown_keys.len()),
        ("rate_limit_windows", state.limits.windows()),
    ] {
        metrics::gauge!("latchkey_cache_entries", "cache" => cache).set(entries as f64);
    }
}

// Rendered by `app::app` as it assembled the routes, from the same calls.
/// The OpenAPI 3.1 document of every endpoint this app serves, generated from the handlers' annotations.
#[utoipa::path(get, path = paths::OPENAPI, tag = "ops",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    let body = state.openapi.get().cloned().unwrap_or_default();
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// What the OpenAPI document says besides its paths (each capability's router adds those).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Latchkey",
        description = "Authentication server: accounts and cookie sessions, API keys, organizations, forward-auth and extension tokens (Better Auth-compatible), service tokens and the JWKS.\n\nBesides the answers listed per operation, any endpoint may answer `{code, message}` with 408 `REQUEST_TIMEOUT` (30 s), 413 `PAYLOAD_TOO_LARGE` (64 KiB), 503 `DATABASE_UNAVAILABLE` (the database cannot be reached; `Retry-After: 1`) or 500 `INTERNAL_SERVER_ERROR`; an endpoint that accepts `x-api-key` answers 400 `VALIDATION_ERROR` to an `x-tenant-id` that is not UTF-8. No text sent may hold U+0000 (400 `VALIDATION_ERROR`)."
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
}
