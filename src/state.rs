//! `AppState`: everything a handler needs, passed by `State`. What the whole process shares (settings,
//! database, clock, password hasher, rate limits, cookie settings, metrics) sits at the top; what a
//! capability keeps in memory is that capability's own struct (`state.sessions`, `state.api_keys`, …),
//! built, invalidated and pruned by the capability.
//!
//! Handlers take `State<AppState>` and reach into the part they need rather than a per-capability
//! `FromRef` state: the whole state is one `Arc`, so the per-request clones the extractors make cost one
//! atomic increment (measured: cloning a struct of a dozen `Arc`s was ~3% of a cached session check).

use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, OnceLock,
    },
    time::Duration,
};

use axum::body::Bytes;

use metrics_exporter_prometheus::PrometheusHandle;

// Each capability's state struct comes from its domain half (mod.rs); its routes take `AppState` back: the
// folders meet in a circle, the files do not (README, "Code tour").
use crate::{
    api_keys::ApiKeyState,
    bff::BffState,
    clock::Clock,
    config::{Secret, Settings},
    crypto::password::{PasswordHasher, QueueBounds},
    extensions::ExtensionKeys,
    http::cookies::CookieSettings,
    oauth::OAuthState,
    orgs::OrgState,
    rate_limit::RateLimits,
    service_tokens::ServiceState,
    sessions::{self, SessionState},
    social::SocialState,
    storage::{
        notify::{self, CacheEvent},
        Db, StorageError,
    },
    tokens::{self, Algorithm, TokenState},
};

/// Shared application state: one `Arc` (see the module comment).
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
    pub db: Db,
    pub clock: Clock,
    /// The Argon2id pool (password hashing off the async runtime).
    pub hasher: PasswordHasher,
    pub limits: RateLimits,
    /// Cookie names and flags.
    pub cookies: CookieSettings,
    /// Trusted origins (base URL's origin included).
    pub trusted_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    pub metrics: PrometheusHandle,
    /// The OpenAPI document of the routes served on this state, rendered when [`crate::app::app`]
    /// assembles them.
    pub openapi: OnceLock<Bytes>,
    pub sessions: SessionState,
    pub api_keys: ApiKeyState,
    pub orgs: OrgState,
    pub extensions: ExtensionKeys,
    pub tokens: TokenState,
    pub service_tokens: ServiceState,
    pub oauth: OAuthState,
    pub bff: BffState,
    /// Social sign-in: the upstream providers and their cached discovery.
    pub social: SocialState,
    /// Where audit events are stored (`None` when `audit.enabled` is off: they are only logged).
    pub audit: Option<crate::audit::AuditSink>,
    /// Cache invalidations read from `cache_events` up to here (unix ms).
    events_synced_until: AtomicI64,
}

impl AppState {
    /// Builds every capability's state on an open, migrated database and loads what must be in memory
    /// before the first request (signing keys, token and session revocations).
    pub async fn build(settings: Settings, clock: Clock, db: Db, secret: &Secret) -> anyhow::Result<AppState> {
        let now = clock.now();
        let cache_ttl = i64::try_from(settings.api_keys.cache_ttl).unwrap_or(60).saturating_mul(1000);
        let service_alg = Algorithm::parse(&settings.service.algorithm).unwrap_or(Algorithm::Es256);
        let tokens = TokenState::start(&db, secret.expose().as_bytes(), service_alg, now).await?;
        let state = AppState(Arc::new(AppStateInner {
            hasher: PasswordHasher::start(
                settings.password_hash_threads,
                QueueBounds {
                    queue: settings.password_hash_queue,
                    max_wait: Duration::from_secs(settings.password_hash_max_wait),
                },
            )?,
            limits: RateLimits::new(&settings.rate_limit),
            cookies: CookieSettings::new(&settings),
            trusted_origins: settings.effective_trusted_origins(),
            trusted_proxies: settings.trusted_proxies.iter().filter_map(|p| p.parse().ok()).collect(),
            metrics: crate::telemetry::metrics_handle()?,
            openapi: OnceLock::new(),
            sessions: SessionState::new(&settings.session, secret),
            api_keys: ApiKeyState::new(cache_ttl),
            orgs: OrgState::new(cache_ttl),
            extensions: ExtensionKeys::new(&settings.extensions, secret),
            tokens,
            service_tokens: ServiceState::new(&settings.base_url, settings.tokens.leeway, cache_ttl),
            oauth: OAuthState::new(&db, &settings.base_url, settings.tokens.leeway, secret, cache_ttl),
            bff: BffState::new(secret, cache_ttl)?,
            social: SocialState::new(&settings, secret)?,
            audit: settings
                .audit
                .enabled
                .then(|| crate::audit::AuditSink::start(db.clone(), clock.clone(), settings.audit.queue_capacity)),
            events_synced_until: AtomicI64::new(now),
            settings: Arc::new(settings),
            db,
            clock,
        }));
        state.sessions.revoked.resync(&state.db, now).await?;
        crate::oauth::load_revocations(&state.db, &state.tokens.revocations, now).await?;
        // OpenID Connect's mandatory algorithm: the JWKS publishes an RS256 key from the start.
        state.tokens.key_ring.ensure(&state.db, Algorithm::Rs256, now).await?;
        Ok(state)
    }
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
        let removed =
            sessions::store::cleanup(&self.db, now, now - self.sessions.policy.cache_max_age - 60_000).await?;
        self.sessions.prune(now);
        self.limits.prune(now);
        crate::accounts::failures::cleanup(&self.db, &self.limits.sign_in_email, now).await?;
        self.extensions.prune(now);
        self.api_keys.cache.prune(now);
        self.orgs.memberships.prune(now);
        self.tokens.revocations.prune(now);
        self.service_tokens.prune(now);
        self.oauth.prune(now);
        self.bff.prune(now);
        notify::cleanup_events(&self.db, now - EVENT_RETENTION).await?;
        // Records are kept a little past expiry: a token within the leeway may still be revoked.
        tokens::store::cleanup_issued(&self.db, now - self.leeway_ms() - 60_000).await?;
        tokens::store::delete_expired_keys(&self.db, now).await?;
        // Sealed refresh successors are needed for a client's leeway at most (an hour is past any sane one).
        crate::oauth::flow_store::cleanup(&self.db, now, now - 3_600_000).await?;
        crate::bff::cleanup(&self.db, now).await?;
        if self.settings.audit.retention_days > 0 {
            let days = i64::try_from(self.settings.audit.retention_days).unwrap_or(i64::MAX / 86_400_000);
            crate::audit::cleanup(&self.db, now - days.saturating_mul(86_400_000)).await?;
        }
        let interval = i64::try_from(self.settings.tokens.rotation_interval).unwrap_or(i64::MAX).saturating_mul(1000);
        if interval > 0 {
            let mut windows = std::collections::HashMap::new();
            for alg in tokens::Algorithm::ALL {
                windows.insert(alg, crate::oauth::apis::retire_window(&self.db, &self.settings, alg).await?);
            }
            let window = |alg| windows.get(&alg).copied().unwrap_or_else(|| self.longest_token_life());
            self.tokens.key_ring.rotate_due(&self.db, now, interval, window).await?;
        }
        // Keys past their window leave the ring (and the JWKS) whether or not a rotation was due.
        self.tokens.key_ring.reload(&self.db, now).await?;
        Ok(removed)
    }

    fn leeway_ms(&self) -> i64 {
        i64::try_from(self.settings.tokens.leeway).unwrap_or(0).saturating_mul(1000)
    }

    /// See [`crate::service_tokens::longest_token_life`].
    pub fn longest_token_life(&self) -> i64 {
        crate::service_tokens::longest_token_life(&self.settings)
    }

    /// Applies one cache invalidation (from NOTIFY or the `cache_events` table), in its wire form; a
    /// payload this version does not know (a newer node's) is ignored.
    pub fn apply_event(&self, payload: &str) {
        if let Some(event) = CacheEvent::decode(payload) {
            self.apply(&event);
        }
    }

    /// Hands an invalidation to every capability; each applies the ones that concern its caches.
    pub fn apply(&self, event: &CacheEvent) {
        let now = self.clock.now();
        self.sessions.apply(event, now);
        self.api_keys.apply(event);
        self.orgs.apply(event);
        self.tokens.apply(event, &self.db, now);
        self.service_tokens.apply(event);
        self.oauth.apply(event);
        self.bff.apply(event);
    }

    /// Applies an invalidation here and publishes it to every other node, for a change whose caches
    /// belong to another capability than the one making it.
    pub async fn publish(&self, event: CacheEvent) -> Result<(), StorageError> {
        self.apply(&event);
        notify::publish_event(&self.db, &event, self.clock.now()).await
    }

    /// Re-reads invalidations recorded since the last read (with an overlap: they are idempotent, and a
    /// row may commit a little after its timestamp).
    pub async fn resync_events(&self) -> Result<(), StorageError> {
        let since = self.events_synced_until.load(Ordering::Relaxed) - EVENT_OVERLAP;
        let events = notify::events_since(&self.db, since).await?;
        for (payload, at) in &events {
            self.apply_event(payload);
            self.events_synced_until.fetch_max(*at, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes batched API key usage.
    pub async fn flush_usage(&self) -> Result<usize, StorageError> {
        self.api_keys.usage.flush(&self.db).await
    }
}

/// How long `cache_events` rows are kept (a reconnecting node catches up from them).
const EVENT_RETENTION: i64 = 10 * 60_000;
/// How far back each read of `cache_events` reaches before the last one seen.
const EVENT_OVERLAP: i64 = 5_000;
