//! `Application`: build the real app on a real socket and return the bound port, so tests run exactly
//! what production runs; [`app`] merges the capability routers and applies the layers.

use std::time::Duration;

use axum::body::Bytes;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use crate::state::AppState;
use crate::{
    api_keys,
    clock::Clock,
    config::{Secret, Settings},
    crypto, http, ops, orgs,
    storage::{notify, notify::BusMessage, Db},
};

/// Every capability's routes, each with its OpenAPI operation: the document is assembled from the same
/// calls that register the routes, so it cannot miss one. `/debug/session` only with `debug_endpoints`.
pub fn routes(debug_endpoints: bool) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ops::ApiDoc::openapi())
        .merge(crate::accounts::routes::router())
        .merge(crate::sessions::routes::router(debug_endpoints))
        .merge(api_keys::routes::router())
        .merge(orgs::routes::router())
        .merge(crate::principal::routes::router())
        .merge(crate::extensions::routes::router())
        .merge(crate::service_tokens::routes::router())
        .merge(crate::management::routes::router())
        .merge(crate::oauth::routes::router())
        .merge(crate::bff::routes::router())
        .merge(crate::social::routes::router())
        .merge(ops::router())
}

/// Paths that answer CORS themselves, per OAuth client (`oauth::cors`), rather than by the configured
/// origins.
const OWN_CORS_PATHS: &[&str] = &[
    crate::oauth::paths::TOKEN,
    crate::oauth::paths::USERINFO,
    crate::oauth::paths::REVOKE,
    crate::oauth::paths::DISCOVERY,
    // The token handler answers CORS per vendor, for every path under it (a trailing `*`: a prefix).
    "/auth/*",
];

/// The routes whose bodies pass through whatever their content type (the token handler's API proxy).
const RAW_BODY_ROUTES: &[&str] = &[crate::bff::paths::BFF_API];

/// The routes that take form bodies as well as JSON.
const FORM_ROUTES: &[&str] = &[
    crate::oauth::paths::TOKEN,
    crate::oauth::paths::LOGIN,
    crate::oauth::paths::LOGIN_SOCIAL,
    crate::oauth::paths::SIGNUP,
    crate::oauth::paths::CONSENT,
    crate::oauth::paths::USERINFO,
    crate::oauth::paths::REVOKE,
    crate::oauth::paths::INTROSPECT,
];

/// The OpenAPI document of an app with `debug_endpoints` on or off.
pub fn openapi(debug_endpoints: bool) -> serde_json::Value {
    let mut document = routes(debug_endpoints).into_openapi();
    openapi_wildcards(&mut document);
    serde_json::to_value(document).unwrap_or_default()
}

/// axum's catch-all segment (`{*path}`) is no OpenAPI syntax: the document names it `{path}`, the path
/// parameter the operation declares (its description says it may hold `/`).
fn openapi_wildcards(document: &mut utoipa::openapi::OpenApi) {
    if document.paths.paths.keys().any(|path| path.contains("{*")) {
        let paths = std::mem::take(&mut document.paths.paths);
        document.paths.paths = paths.into_iter().map(|(path, item)| (path.replace("{*", "{"), item)).collect();
    }
}

/// The whole application: every capability's routes merged, the per-route layer ([`http::RouteLayer`]:
/// JSON-only bodies, metrics), a JSON 404 for unknown paths, then the cross-cutting layers
/// ([`http::with_layers`]). The OpenAPI document of these routes is kept in the state for
/// `/openapi.json`.
pub fn app(
    state: AppState,
) -> impl tower::Service<
    axum::extract::Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone
       + Send
       + Sync
       + 'static {
    let (router, mut document) = routes(state.settings.debug_endpoints).split_for_parts();
    openapi_wildcards(&mut document);
    let cors_origins = state.settings.cors_origins.clone();
    // The first app built on a state renders its document; the routes do not change afterwards.
    state.openapi.get_or_init(|| Bytes::from(serde_json::to_vec(&document).unwrap_or_default()));
    let audit = state
        .audit
        .clone()
        .map(|sink| http::AuditRoute { sink, trusted_proxies: state.trusted_proxies.iter().copied().collect() });
    let router = router
        // Per matched route (it needs `MatchedPath`, which routing sets).
        .route_layer(http::RouteLayer { form_routes: FORM_ROUTES, raw_body_routes: RAW_BODY_ROUTES, audit })
        .fallback(|| async { crate::error::ApiError::not_found("No such endpoint") })
        .with_state(state);
    http::with_layers(router, &cors_origins, OWN_CORS_PATHS)
}

/// Every problem with `settings`: their shape (`Settings::validate`), then what each capability checks of
/// its own settings.
pub fn validate_settings(settings: &Settings) -> Vec<String> {
    let mut problems = settings.validate();
    problems.extend(crate::storage::validate_settings(settings));
    problems.extend(api_keys::validate_settings(&settings.api_keys));
    problems.extend(crate::service_tokens::validate_settings(&settings.service, settings.is_production()));
    problems.extend(crate::social::validate_settings(settings));
    problems
}

/// The server secret: configured, or in development generated once and kept next to the database.
pub fn server_secret(settings: &Settings) -> anyhow::Result<Secret> {
    if let Some(secret) = &settings.secret {
        return Ok(secret.clone());
    }
    anyhow::ensure!(!settings.is_production(), "LATCHKEY_SECRET is required in production");
    let path = settings.development_secret_path();
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if existing.len() >= 32 {
            return Ok(Secret::new(existing));
        }
    }
    let secret = crypto::random_alphanumeric(64);
    write_private(&path, &secret)?;
    tracing::warn!(path = %path.display(), "LATCHKEY_SECRET is not set: generated a development secret and stored it");
    Ok(Secret::new(secret))
}

fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())?;
    Ok(())
}

/// Opens the database named in the settings and applies migrations.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Db> {
    let db = Db::connect(&settings.database_url, settings.database_max_connections).await?;
    db.migrate().await?;
    Ok(db)
}

/// A built, bound, not yet running server.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    limits: http::serve::ConnectionLimits,
    signals: ShutdownSignals,
}

impl Application {
    /// Validates the settings, opens and migrates the database, starts the background tasks and binds
    /// the listener (port 0 picks a free port).
    pub async fn build(settings: Settings, clock: Clock) -> anyhow::Result<Application> {
        let problems = validate_settings(&settings);
        anyhow::ensure!(problems.is_empty(), "invalid configuration:\n  - {}", problems.join("\n  - "));
        let secret = server_secret(&settings)?;
        let db = open_database(&settings).await?;
        let state = AppState::build(settings, clock, db, &secret).await?;
        spawn_background_tasks(&state);
        let listener = TcpListener::bind(&state.settings.listen).await?;
        let server = &state.settings.server;
        let open_files = http::serve::raise_open_files_limit();
        // Room for the pool, the listener, the SQLite files and logs, beside the connections.
        let reserved =
            usize::try_from(state.settings.database_max_connections).unwrap_or(usize::MAX).saturating_add(64);
        let max_connections = http::serve::effective_max_connections(server.max_connections, open_files, reserved);
        if max_connections < server.max_connections {
            tracing::info!(
                max_connections,
                configured = server.max_connections,
                open_files_limit = open_files,
                "connection cap lowered to fit the open-files limit"
            );
        }
        let limits = http::serve::ConnectionLimits {
            header_read_timeout: Duration::from_secs(server.header_read_timeout),
            keep_alive_timeout: Duration::from_secs(server.keep_alive_timeout),
            max_connections,
        };
        Ok(Application { listener, state, limits, signals: ShutdownSignals::register() })
    }

    /// The port the listener is bound to (the one the OS picked if `listen` asked for port 0); 0 if it
    /// cannot be read.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|addr| addr.port()).unwrap_or_default()
    }

    /// The state (tests use it to reach the clock and the database).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM or Ctrl-C, then finishes in-flight requests and closes the pool.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application { listener, state, limits, signals } = self;
        let db = state.db.clone();
        let flush_state = state.clone();
        http::serve::serve(listener, app(state), limits, signals.received()).await;
        if let Err(error) = flush_state.flush_usage().await {
            tracing::warn!(error = %error, "final api key usage flush failed");
        }
        // Every audit record of a served request is written before the pool closes.
        if let Some(audit) = &flush_state.audit {
            audit.flush().await;
        }
        db.close().await;
        Ok(())
    }
}

/// The shutdown signals, registered when the application is built: a SIGTERM that arrives between
/// "listening" and the first poll of the serve loop must not meet the default action (which kills the
/// process without draining).
struct ShutdownSignals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn register() -> ShutdownSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            ShutdownSignals {
                terminate: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    /// Resolves at SIGTERM or Ctrl-C.
    async fn received(self) {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(self.terminate) => {},
                () = wait(self.interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}

/// Maintenance on an interval; other nodes' cache invalidations (NOTIFY, with a resync on reconnect); a
/// slow poll that bounds staleness if notifications stop; Prometheus upkeep; the API key usage flush.
fn spawn_background_tasks(state: &AppState) {
    let maintenance = state.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(maintenance.settings.maintenance_interval.max(1)));
        loop {
            interval.tick().await;
            if maintenance.db.is_closed() {
                return;
            }
            match maintenance.run_maintenance().await {
                Ok(removed) if removed > 0 => tracing::info!(removed, "expired sessions removed"),
                Ok(_) => {}
                Err(error) => tracing::warn!(error = format!("{error:#}"), "maintenance failed"),
            }
        }
    });

    if let Some(mut events) = notify::spawn_listener(&state.db) {
        let listener_state = state.clone();
        tokio::spawn(async move {
            while let Some(message) = events.recv().await {
                match message {
                    BusMessage::Event(payload) => listener_state.apply_event(&payload),
                    BusMessage::Reconnected => {
                        let now = listener_state.clock.now();
                        if let Err(error) = listener_state.sessions.revoked.resync(&listener_state.db, now).await {
                            tracing::warn!(error = %error, "revocation resync failed");
                        }
                        if let Err(error) = listener_state.resync_events().await {
                            tracing::warn!(error = %error, "cache invalidation resync failed");
                        }
                    }
                }
            }
        });
    }

    // The poll also catches revocations made by another process on SQLite (`latchkey admin`), which
    // has no NOTIFY; there it runs more often, and the query is one indexed range scan.
    let poll_every = match state.db.backend() {
        crate::storage::Backend::Postgres => Duration::from_secs(10),
        crate::storage::Backend::Sqlite => Duration::from_secs(2),
    };
    let poll_state = state.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(poll_every);
        loop {
            interval.tick().await;
            if poll_state.db.is_closed() {
                return;
            }
            let now = poll_state.clock.now();
            if let Err(error) = poll_state.sessions.revoked.resync(&poll_state.db, now).await {
                tracing::warn!(error = %error, "revocation poll failed");
            }
            if let Err(error) = poll_state.resync_events().await {
                tracing::warn!(error = %error, "cache invalidation poll failed");
            }
        }
    });

    // The Prometheus recorder keeps histogram samples until upkeep folds them into buckets; without it
    // they pile up between scrapes.
    let metrics = state.metrics.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(5));
        loop {
            interval.tick().await;
            metrics.run_upkeep();
        }
    });

    let usage_state = state.clone();
    let flush_every = Duration::from_secs(state.settings.api_keys.usage_flush_interval.max(1));
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(flush_every);
        loop {
            interval.tick().await;
            if usage_state.db.is_closed() {
                return;
            }
            if let Err(error) = usage_state.flush_usage().await {
                tracing::warn!(error = %error, "api key usage flush failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_session_and_the_schemas_only_it_uses_are_documented_only_with_debug_endpoints() {
        let on = super::openapi(true);
        let off = super::openapi(false);

        assert!(on["paths"][crate::sessions::paths::DEBUG_SESSION].is_object());
        assert!(off["paths"].get(crate::sessions::paths::DEBUG_SESSION).is_none());
        assert!(on["components"]["schemas"]["DebugSessionResponse"].is_object());
        assert!(off["components"]["schemas"].get("DebugSessionResponse").is_none());
        // Schemas other endpoints use stay.
        assert!(off["components"]["schemas"]["SessionView"].is_object());
        assert!(off["components"]["schemas"]["ErrorBody"].is_object());
    }
}
