//! `AppState` (everything a handler needs, passed by `State`) and `Application`: build the real app on a
//! real socket and return the bound port, so tests run exactly what production runs.

use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::{
    api_keys::{self, KeyCache, UsageBatch},
    clock::Clock,
    config::{Secret, Settings},
    crypto::{self, password::PasswordHasher},
    extensions::ExtensionKeys,
    http::{self, cookies::CookieSettings},
    orgs::{self, MembershipCache},
    rate_limit::RateLimits,
    service::ServiceState,
    sessions::{self, revoked::RevokedSessions, Policy},
    storage::{
        notify::{self, BusMessage, CacheEvent},
        Db,
    },
    tokens::{
        self,
        revocation::{Recorder, Revocations},
        Algorithm, KeyRing,
    },
};

/// Keys derived from the server secret.
pub struct Keys {
    /// Signs the session token cookie (the raw secret, as Better Auth does).
    pub cookie: Vec<u8>,
    /// Signs the cookie cache (a derived sub-key).
    pub cache: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

/// Shared application state: one `Arc`, so the per-request clones the extractors make cost one atomic
/// increment (measured: cloning a struct of a dozen `Arc`s was ~3% of a cached session check).
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// What `AppState` holds.
pub struct AppStateInner {
    /// Effective configuration.
    pub settings: Arc<Settings>,
    /// Database.
    pub db: Db,
    /// Time source.
    pub clock: Clock,
    /// Argon2id pool.
    pub hasher: PasswordHasher,
    /// Keys derived from the server secret.
    pub keys: Arc<Keys>,
    /// Session lifetimes.
    pub policy: Policy,
    /// Recently revoked sessions.
    pub revoked: Arc<RevokedSessions>,
    /// Rate limiters.
    pub limits: Arc<RateLimits>,
    /// Cookie names and flags.
    pub cookies: Arc<CookieSettings>,
    /// Trusted origins (base URL's origin included).
    pub trusted_origins: Arc<Vec<String>>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<Vec<IpAddr>>,
    /// Prometheus handle.
    pub metrics: PrometheusHandle,
    /// Verified `session_data` cookies.
    pub session_memo: sessions::cookie_cache::Memo,
    /// Verified API keys by hash.
    pub api_keys: KeyCache,
    /// API key uses not yet written.
    pub usage: UsageBatch,
    /// Users' memberships (tenant resolution).
    pub memberships: MembershipCache,
    /// Extension token keys.
    pub extension_keys: ExtensionKeys,
    /// Asymmetric signing keys (service tokens; OAuth next).
    pub key_ring: Arc<KeyRing>,
    /// Revoked tokens, in memory.
    pub revocations: Arc<Revocations>,
    /// Group commit of issued-token records.
    pub recorder: Recorder,
    /// Service-token API caches.
    pub service: ServiceState,
    /// Cache invalidations read from `cache_events` up to here (unix ms).
    events_synced_until: AtomicI64,
}

impl AppStateInner {
    /// True if `origin` (already normalised) is trusted.
    pub fn is_trusted_origin(&self, origin: &str) -> bool {
        self.trusted_origins.iter().any(|trusted| trusted == origin)
    }

    /// One round of maintenance: expired sessions and stale revocation records deleted, in-memory sets
    /// pruned. Safe to run on several nodes at once. Returns the number of sessions removed.
    pub async fn run_maintenance(&self) -> anyhow::Result<u64> {
        let now = self.clock.now();
        // Revocation rows are kept a little longer than the cache window so resyncs find them.
        let removed = sessions::store::cleanup(&self.db, now, now - self.policy.cache_max_age - 60_000).await?;
        self.revoked.prune(now);
        self.limits.prune(now);
        self.session_memo.prune(now);
        self.extension_keys.prune(now);
        self.api_keys.prune(now);
        self.memberships.prune(now);
        self.revocations.prune(now);
        self.service.prune(now);
        notify::cleanup_events(&self.db, now - EVENT_RETENTION).await?;
        // Records are kept a little past expiry: a token within the leeway may still be revoked.
        tokens::store::cleanup_issued(&self.db, now - self.leeway_ms() - 60_000).await?;
        tokens::store::delete_expired_keys(&self.db, now).await?;
        let interval = i64::try_from(self.settings.tokens.rotation_interval).unwrap_or(i64::MAX).saturating_mul(1000);
        if interval > 0 {
            self.key_ring.rotate_due(&self.db, now, interval, self.longest_token_life()).await?;
        }
        // Keys past their window leave the ring (and the JWKS) whether or not a rotation was due.
        self.key_ring.reload(&self.db, now).await?;
        Ok(removed)
    }

    fn leeway_ms(&self) -> i64 {
        i64::try_from(self.settings.tokens.leeway).unwrap_or(0).saturating_mul(1000)
    }

    /// The longest a token of the core can live, leeway included: how long a retired signing key stays
    /// published, and how long an owner's revocation is remembered.
    pub fn longest_token_life(&self) -> i64 {
        i64::try_from(self.settings.service.token_ttl).unwrap_or(i64::MAX / 2).saturating_mul(1000) + self.leeway_ms()
    }

    /// Applies one cache invalidation (from NOTIFY or the `cache_events` table), in its wire form; a
    /// payload this version does not know (a newer node's) is ignored.
    pub fn apply_event(&self, payload: &str) {
        if let Some(event) = CacheEvent::decode(payload) {
            self.apply(event);
        }
    }

    /// Hands an invalidation to the capability whose cache it concerns.
    pub fn apply(&self, event: CacheEvent) {
        let now = self.clock.now();
        match event {
            CacheEvent::SessionRevoked { session_id } => self.revoked.insert(&session_id, now),
            CacheEvent::ApiKeyChanged { key_id } => self.api_keys.evict_id(&key_id),
            CacheEvent::AllApiKeysChanged => self.api_keys.clear(),
            CacheEvent::MembershipsChanged { user_id } => {
                self.memberships.evict(&user_id);
                // A key's owner's memberships are part of what the cached key grants.
                self.api_keys.evict_owner(&user_id);
            }
            CacheEvent::SigningKeysChanged => {
                let (ring, db) = (Arc::clone(&self.key_ring), self.db.clone());
                tokio::spawn(async move {
                    if let Err(error) = ring.reload(&db, now).await {
                        tracing::warn!(error = format!("{error:#}"), "signing key reload failed");
                    }
                });
            }
            CacheEvent::TokenRevoked { jti, expires_at } => self.revocations.insert_jti(&jti, expires_at),
            CacheEvent::OwnerTokensRevoked { owner, until } => self.revocations.insert_owner(&owner, until),
            CacheEvent::ServiceClientChanged { client_id } => self.service.forget_client(&client_id),
            CacheEvent::ServiceUserChanged { user_id } => self.service.forget_user(&user_id),
        }
    }

    /// Re-reads invalidations recorded since the last read (with an overlap: they are idempotent, and a
    /// row may commit a little after its timestamp).
    pub async fn resync_events(&self) -> Result<(), crate::storage::StorageError> {
        let since = self.events_synced_until.load(Ordering::Relaxed) - EVENT_OVERLAP;
        let events = notify::events_since(&self.db, since).await?;
        for (payload, at) in &events {
            self.apply_event(payload);
            self.events_synced_until.fetch_max(*at, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes batched API key usage.
    pub async fn flush_usage(&self) -> Result<usize, crate::storage::StorageError> {
        self.usage.flush(&self.db).await
    }
}

/// How long `cache_events` rows are kept (a reconnecting node catches up from them).
const EVENT_RETENTION: i64 = 10 * 60_000;
/// How far back each read of `cache_events` reaches before the last one seen.
const EVENT_OVERLAP: i64 = 5_000;

/// The whole application: every capability's routes merged, the per-route layer ([`http::RouteLayer`]:
/// JSON-only bodies, metrics), a JSON 404 for unknown paths, then the cross-cutting layers
/// ([`http::with_layers`]).
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
    let debug = state.settings.debug_endpoints;
    let cors_origins = state.settings.cors_origins.clone();
    let router = axum::Router::new()
        .merge(crate::accounts::routes::router())
        .merge(crate::sessions::routes::router(debug))
        .merge(api_keys::routes::router())
        .merge(orgs::routes::router())
        .merge(crate::principal::routes::router())
        .merge(crate::extensions::routes::router())
        .merge(crate::service::routes::router())
        .merge(crate::ops::router())
        // Per matched route (it needs `MatchedPath`, which routing sets).
        .route_layer(http::RouteLayer)
        .fallback(|| async { crate::error::ApiError::not_found("No such endpoint") })
        .with_state(state);
    http::with_layers(router, &cors_origins)
}

/// Every problem with `settings`: their shape (`Settings::validate`), then what each capability checks of
/// its own settings.
pub fn validate_settings(settings: &Settings) -> Vec<String> {
    let mut problems = settings.validate();
    problems.extend(crate::storage::validate_settings(settings));
    problems.extend(api_keys::validate_settings(&settings.api_keys));
    problems.extend(crate::service::validate_settings(&settings.service, settings.is_production()));
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
}

impl Application {
    /// Validates the settings, opens and migrates the database, starts the background tasks and binds
    /// the listener (port 0 picks a free port).
    pub async fn build(settings: Settings, clock: Clock) -> anyhow::Result<Application> {
        let problems = validate_settings(&settings);
        anyhow::ensure!(problems.is_empty(), "invalid configuration:\n  - {}", problems.join("\n  - "));
        let secret = server_secret(&settings)?;
        let db = open_database(&settings).await?;
        let policy = Policy::from(&settings.session);
        let trusted_origins = settings.effective_trusted_origins();
        let cache_ttl = i64::try_from(settings.api_keys.cache_ttl).unwrap_or(60).saturating_mul(1000);
        let extension_keys = ExtensionKeys::new(&settings.extensions, &secret);
        let events_from = clock.now();
        let key_ring = Arc::new(KeyRing::new(secret.expose().as_bytes()));
        let service_alg = Algorithm::parse(&settings.service.algorithm).unwrap_or(Algorithm::Es256);
        key_ring.ensure(&db, service_alg, clock.now()).await?;
        let revocations = Arc::new(Revocations::default());
        revocations.load(&db, clock.now()).await?;
        let service = ServiceState::new(&settings.base_url, settings.tokens.leeway, cache_ttl);
        let recorder = Recorder::start(db.clone());
        let state = AppState(Arc::new(AppStateInner {
            db,
            clock,
            hasher: PasswordHasher::start(settings.password_hash_threads)?,
            keys: Arc::new(Keys {
                cookie: secret.expose().as_bytes().to_vec(),
                cache: crypto::derive_key(secret.expose().as_bytes(), "session-data/v1"),
            }),
            policy,
            revoked: Arc::new(RevokedSessions::new(policy.cache_max_age.max(1))),
            limits: Arc::new(RateLimits::new(&settings.rate_limit)),
            cookies: Arc::new(CookieSettings::new(&settings)),
            trusted_origins: Arc::new(trusted_origins),
            trusted_proxies: Arc::new(settings.trusted_proxies.iter().filter_map(|p| p.parse().ok()).collect()),
            metrics: crate::ops::metrics_handle()?,
            session_memo: Default::default(),
            api_keys: KeyCache::new(cache_ttl),
            usage: UsageBatch::default(),
            memberships: MembershipCache::new(cache_ttl),
            extension_keys,
            key_ring,
            revocations,
            recorder,
            service,
            events_synced_until: AtomicI64::new(events_from),
            settings: Arc::new(settings),
        }));
        state.revoked.resync(&state.db, state.clock.now()).await?;
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
        Ok(Application { listener, state, limits })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|addr| addr.port()).unwrap_or_default()
    }

    /// The state (tests use it to reach the clock and the database).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM or Ctrl-C, then finishes in-flight requests and closes the pool.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application { listener, state, limits } = self;
        let db = state.db.clone();
        let flush_state = state.clone();
        http::serve::serve(listener, app(state), limits, shutdown_signal()).await;
        if let Err(error) = flush_state.flush_usage().await {
            tracing::warn!(error = %error, "final api key usage flush failed");
        }
        db.close().await;
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// Maintenance on an interval; revocation events from other nodes; a slow poll that bounds staleness
/// if notifications stop.
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
                        if let Err(error) = listener_state.revoked.resync(&listener_state.db, now).await {
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
            if let Err(error) = poll_state.revoked.resync(&poll_state.db, now).await {
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
