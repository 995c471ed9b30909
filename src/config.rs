//! Configuration (DESIGN.md "Configuration"): defaults → `latchkey.toml` → environment, env winning.
//!
//! The TOML file rejects unknown keys. Environment names follow DESIGN.md, with their Better Auth / Node
//! aliases (`BETTER_AUTH_URL`, `DATABASE_URL`, `NODE_ENV`, `FRONTEND_URL`); a `LATCHKEY_*` variable we do
//! not know gets a warning rather than being silently ignored. Secrets live in [`Secret`], whose
//! `Debug`/`Display` print `***`, and `Display for Settings` is the redacted view `config check` prints.

use std::{collections::BTreeMap, fmt, net::IpAddr, path::Path};

use figment::{
    providers::{Env, Format, Toml},
    Figment,
};
use serde::{Deserialize, Deserializer};

use crate::crypto::secret::lenient_string;

/// Settings hold secrets in the redacting [`Secret`] of `crypto::secret`; re-exported here, where callers
/// have always found it next to the settings that carry it.
pub use crate::crypto::secret::Secret;

/// `development` (safe local defaults) or `production` (strict checks, secure cookies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Local development: generated secret, host-only `SameSite=Lax` cookies, readable logs.
    #[default]
    Development,
    /// Production: required secret, https, `Secure` `SameSite=None` `__Secure-` cookies, JSON logs.
    Production,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON in production, readable text in development.
    #[default]
    Auto,
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Session lifetimes, in seconds (Better Auth's `session` options).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// Lifetime of a session from its last refresh (30 days).
    pub expires_in: u64,
    /// A session older than this since its last refresh is extended on use (7 days).
    pub update_age: u64,
    /// No session lives longer than this from sign-in, however often it is used (90 days).
    pub absolute_lifetime: u64,
    /// Lifetime of the signed `session_data` cookie cache (5 minutes); 0 disables it.
    pub cookie_cache_max_age: u64,
    /// Cookie name prefix; `better-auth` makes Latchkey a drop-in for a Better Auth server.
    #[serde(deserialize_with = "lenient_string")]
    pub cookie_prefix: String,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            expires_in: 30 * 86_400,
            update_age: 7 * 86_400,
            absolute_lifetime: 90 * 86_400,
            cookie_cache_max_age: 300,
            cookie_prefix: "latchkey".into(),
        }
    }
}

/// Rate limits (DESIGN.md contract details); windows in seconds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Failed sign-ins allowed per email per window.
    pub sign_in_failures_per_email: u32,
    /// Window of the per-email failure count (15 minutes).
    pub sign_in_email_window: u64,
    /// Sign-in attempts allowed per IP per window.
    pub sign_in_per_ip: u32,
    /// Window of the per-IP sign-in count (1 minute).
    pub sign_in_ip_window: u64,
    /// Sign-ups allowed per IP per window.
    pub sign_up_per_ip: u32,
    /// Window of the per-IP sign-up count (1 minute).
    pub sign_up_ip_window: u64,
    /// Calls of the verify and token endpoints allowed per IP per window.
    pub verify_per_ip: u32,
    /// Window of the per-IP verify/token count (1 minute).
    pub verify_ip_window: u64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            sign_in_failures_per_email: 10,
            sign_in_email_window: 15 * 60,
            sign_in_per_ip: 60,
            sign_in_ip_window: 60,
            sign_up_per_ip: 30,
            sign_up_ip_window: 60,
            verify_per_ip: 600,
            verify_ip_window: 60,
        }
    }
}

/// Extension tokens (DESIGN.md "Capability 3"); TTLs in seconds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtensionSettings {
    /// Signs (and verifies) extension tokens; development derives one from the server secret.
    pub secret: Option<Secret>,
    /// Earlier secrets, accepted for verification only (rotation).
    #[serde(deserialize_with = "secret_list")]
    pub previous_secrets: Vec<Secret>,
    /// Scopes an extension token may carry.
    #[serde(deserialize_with = "list")]
    pub allowed_scopes: Vec<String>,
    /// Lifetime when the request names none (5 minutes).
    pub default_ttl: u64,
    /// Longest lifetime a request may ask for (15 minutes).
    pub max_ttl: u64,
}

impl Default for ExtensionSettings {
    fn default() -> Self {
        ExtensionSettings {
            secret: None,
            previous_secrets: Vec::new(),
            allowed_scopes: vec!["read".into(), "write".into()],
            default_ttl: 300,
            max_ttl: 900,
        }
    }
}

/// API keys (DESIGN.md "Capability 2").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeySettings {
    /// Prefix of keys created without one.
    #[serde(deserialize_with = "lenient_string")]
    pub default_prefix: String,
    /// Seconds a verified key stays in the in-process cache (changes made through Latchkey evict it at
    /// once; this bounds what a change made behind its back can take).
    pub cache_ttl: u64,
    /// Seconds between flushes of batched `lastRequest` updates.
    pub usage_flush_interval: u64,
}

impl Default for ApiKeySettings {
    fn default() -> Self {
        ApiKeySettings { default_prefix: "lk_".into(), cache_ttl: 60, usage_flush_interval: 5 }
    }
}

/// Signing keys and JWT checks of the token core (DESIGN.md "Capability 4/5"); times in seconds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: u64,
    /// A signing key older than this is replaced by a new one (0: only `latchkey admin rotate-keys`).
    pub rotation_interval: u64,
    /// `Cache-Control: max-age` of the JWKS.
    pub jwks_max_age: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings { leeway: 30, rotation_interval: 30 * 86_400, jwks_max_age: 300 }
    }
}

/// The service-token API (DESIGN.md "Capability 4").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSettings {
    /// Master user name (Basic auth of `POST /v1/clients`); unset: client management answers 503.
    pub master_username: Option<Secret>,
    /// Password of the master user (set both or neither); production wants at least 16 characters, not a
    /// common password.
    pub master_password: Option<Secret>,
    /// Client key used by `/v1` requests that carry none.
    pub client_api_key: Option<Secret>,
    /// Lifetime of a service token (30 days).
    pub token_ttl: u64,
    /// `ES256` (default), `RS256` or `EdDSA`.
    #[serde(deserialize_with = "lenient_string")]
    pub algorithm: String,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            master_username: None,
            master_password: None,
            client_api_key: None,
            token_ttl: 30 * 86_400,
            algorithm: "ES256".into(),
        }
    }
}

/// Connection handling (see `http::serve`); times in seconds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// A request head must arrive within this of a connection opening, or of its first byte on a
    /// keep-alive connection (10 s).
    pub header_read_timeout: u64,
    /// An idle keep-alive connection is closed after this (75 s: longer than load balancers' usual 60 s
    /// idle timeout, so a balancer never reuses a connection Latchkey is closing).
    pub keep_alive_timeout: u64,
    /// Most connections open at once (10 000); kept below the open-files limit in any case.
    pub max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings { header_read_timeout: 10, keep_alive_timeout: 75, max_connections: 10_000 }
    }
}

/// The stored audit log (`[audit]`, `LATCHKEY_AUDIT_*`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Store audit events in the database (true); off, they are only logged.
    pub enabled: bool,
    /// Days an audit record is kept (30); 0 keeps them for ever.
    pub retention_days: u64,
    /// Records waiting to be written at most (10 000); more are dropped and counted in
    /// `latchkey_audit_dropped_total`.
    pub queue_capacity: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings { enabled: true, retention_days: 30, queue_capacity: 10_000 }
    }
}

/// One upstream OpenID Connect provider for social sign-in (`[social.<id>]`, `LATCHKEY_SOCIAL_<ID>_*`; for
/// `google` also `GOOGLE_CLIENT_ID` / `GOOGLE_CLIENT_SECRET`). Checked by `social::validate_settings`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocialProviderSettings {
    /// The issuer URL, found by OIDC discovery; `google` defaults to `https://accounts.google.com`.
    #[serde(deserialize_with = "lenient_string")]
    pub issuer: String,
    /// Latchkey's client id at the provider.
    #[serde(deserialize_with = "lenient_string")]
    pub client_id: String,
    /// Latchkey's client secret at the provider.
    pub client_secret: Option<Secret>,
    /// Scopes asked for (`openid email profile` when empty).
    #[serde(deserialize_with = "list")]
    pub scopes: Vec<String>,
}

/// The whole configuration. `Debug` is the redacted `Display` (the database URL may hold a password).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `ip:port` to listen on; the default, `127.0.0.1:8080`, takes local connections only.
    #[serde(deserialize_with = "lenient_string")]
    pub listen: String,
    /// Public base URL; its origin is always trusted.
    #[serde(deserialize_with = "lenient_string")]
    pub base_url: String,
    /// `sqlite://…` or `postgres://…`.
    #[serde(deserialize_with = "lenient_string")]
    pub database_url: String,
    /// Most connections the database pool opens (16); at least 1.
    pub database_max_connections: u32,
    /// `development` (the default) or `production`; `NODE_ENV` counts only when it says one of those two.
    pub env: Mode,
    /// Server secret (cookie signing, key encryption); generated in development when unset.
    pub secret: Option<Secret>,
    /// Origins allowed by CORS (with credentials).
    #[serde(deserialize_with = "list")]
    pub cors_origins: Vec<String>,
    /// Origins trusted for cookie-authenticated state changes, sign-in and callback URLs.
    #[serde(deserialize_with = "list")]
    pub trusted_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    #[serde(deserialize_with = "list")]
    pub trusted_proxies: Vec<String>,
    /// Cookie `Domain`; unset: host-only in development, derived from the base URL in production.
    pub cookie_domain: Option<String>,
    /// Enables `GET /debug/session`.
    pub debug_endpoints: bool,
    pub log_format: LogFormat,
    /// Argon2id worker threads (0: one per core).
    pub password_hash_threads: usize,
    /// Most password hashes (sign-ins, sign-ups) waiting or running at once; one more is answered 503
    /// `SERVER_BUSY` at once (0: 32 per worker thread).
    pub password_hash_queue: usize,
    /// Seconds a sign-in or sign-up waits at most for its password hash before it is answered 503
    /// `SERVER_BUSY` (5).
    pub password_hash_max_wait: u64,
    /// Seconds between expired-row cleanups.
    pub maintenance_interval: u64,
    /// Session lifetimes and cookie cache.
    pub session: SessionSettings,
    /// `[rate_limit]` in the file, `LATCHKEY_RATE_LIMIT_*` in the environment.
    pub rate_limit: RateLimitSettings,
    /// `[extensions]`, `LATCHKEY_EXTENSIONS_*`; the secrets also come from `EXTENSION_TOKEN_SECRET` and
    /// `EXTENSION_TOKEN_PREVIOUS_SECRETS`.
    pub extensions: ExtensionSettings,
    /// `[api_keys]` in the file, `LATCHKEY_API_KEYS_*` in the environment.
    pub api_keys: ApiKeySettings,
    /// Token core: signing keys and JWT checks.
    pub tokens: TokenSettings,
    /// `[service]`, `LATCHKEY_SERVICE_*`; the credentials also come from `MASTER_USERNAME`, `MASTER_PASSWORD`
    /// and `CLIENT_API_KEY`.
    pub service: ServiceSettings,
    /// Connection timeouts and cap.
    pub server: ServerSettings,
    /// The stored audit log.
    pub audit: AuditSettings,
    /// Social sign-in providers by id (`[social.<id>]`).
    pub social: BTreeMap<String, SocialProviderSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".into(),
            base_url: "http://localhost:8080".into(),
            database_url: "sqlite://latchkey.db".into(),
            database_max_connections: 16,
            env: Mode::Development,
            secret: None,
            cors_origins: Vec::new(),
            trusted_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            cookie_domain: None,
            debug_endpoints: false,
            log_format: LogFormat::Auto,
            password_hash_threads: 0,
            password_hash_queue: 0,
            password_hash_max_wait: 5,
            maintenance_interval: 600,
            session: SessionSettings::default(),
            rate_limit: RateLimitSettings::default(),
            extensions: ExtensionSettings::default(),
            api_keys: ApiKeySettings::default(),
            tokens: TokenSettings::default(),
            service: ServiceSettings::default(),
            server: ServerSettings::default(),
            audit: AuditSettings::default(),
            social: BTreeMap::new(),
        }
    }
}

/// Environment names that map to a setting, primary names first. Aliases lose to primaries.
const PRIMARY_ENV: &[(&str, &str)] = &[
    ("LATCHKEY_LISTEN", "listen"),
    ("LATCHKEY_BASE_URL", "base_url"),
    ("LATCHKEY_DATABASE_URL", "database_url"),
    ("LATCHKEY_DATABASE_MAX_CONNECTIONS", "database_max_connections"),
    ("LATCHKEY_ENV", "env"),
    ("LATCHKEY_SECRET", "secret"),
    ("CORS_ORIGIN", "cors_origins"),
    ("LATCHKEY_TRUSTED_ORIGINS", "trusted_origins"),
    ("LATCHKEY_TRUSTED_PROXIES", "trusted_proxies"),
    ("LATCHKEY_COOKIE_DOMAIN", "cookie_domain"),
    ("LATCHKEY_DEBUG_ENDPOINTS", "debug_endpoints"),
    ("LATCHKEY_LOG_FORMAT", "log_format"),
    ("LATCHKEY_PASSWORD_HASH_THREADS", "password_hash_threads"),
    ("LATCHKEY_PASSWORD_HASH_QUEUE", "password_hash_queue"),
    ("LATCHKEY_PASSWORD_HASH_MAX_WAIT", "password_hash_max_wait"),
    ("LATCHKEY_MAINTENANCE_INTERVAL", "maintenance_interval"),
    ("EXTENSION_TOKEN_SECRET", "extensions.secret"),
    ("EXTENSION_TOKEN_PREVIOUS_SECRETS", "extensions.previous_secrets"),
    ("MASTER_USERNAME", "service.master_username"),
    ("MASTER_PASSWORD", "service.master_password"),
    ("CLIENT_API_KEY", "service.client_api_key"),
    ("GOOGLE_CLIENT_ID", "social.google.client_id"),
    ("GOOGLE_CLIENT_SECRET", "social.google.client_secret"),
];
const ALIAS_ENV: &[(&str, &str)] = &[
    ("BETTER_AUTH_URL", "base_url"),
    ("DATABASE_URL", "database_url"),
    ("NODE_ENV", "env"),
    ("FRONTEND_URL", "trusted_origins"),
];
/// Sections whose keys come from `LATCHKEY_<SECTION>_<KEY>`.
const SECTIONS: &[(&str, &str)] = &[
    ("LATCHKEY_SESSION_", "session."),
    ("LATCHKEY_RATE_LIMIT_", "rate_limit."),
    ("LATCHKEY_EXTENSIONS_", "extensions."),
    ("LATCHKEY_API_KEYS_", "api_keys."),
    ("LATCHKEY_TOKENS_", "tokens."),
    ("LATCHKEY_SERVICE_", "service."),
    ("LATCHKEY_SERVER_", "server."),
    ("LATCHKEY_AUDIT_", "audit."),
];
/// Not settings, but known: the config path, the test harness's database and the log filter.
const OTHER_KNOWN_ENV: &[&str] = &["LATCHKEY_CONFIG", "LATCHKEY_TEST_POSTGRES_URL", "LATCHKEY_LOG"];

fn primary_key(name: &str) -> Option<String> {
    if let Some((_, key)) = PRIMARY_ENV.iter().find(|(env, _)| name.eq_ignore_ascii_case(env)) {
        return Some((*key).to_owned());
    }
    if let Some(key) = social_key(name) {
        return Some(key);
    }
    SECTIONS.iter().find_map(|(prefix, section)| {
        let upper = name.to_ascii_uppercase();
        upper.strip_prefix(prefix).map(|rest| format!("{section}{}", rest.to_ascii_lowercase()))
    })
}

/// `LATCHKEY_SOCIAL_<ID>_{ISSUER,CLIENT_ID,CLIENT_SECRET,SCOPES}` → `social.<id>.<key>`; the id may hold
/// underscores (`LATCHKEY_SOCIAL_MY_IDP_CLIENT_ID` is `my_idp`), so the key is matched from the end.
fn social_key(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    let rest = upper.strip_prefix("LATCHKEY_SOCIAL_")?;
    ["_ISSUER", "_CLIENT_ID", "_CLIENT_SECRET", "_SCOPES"].iter().find_map(|suffix| {
        let id = rest.strip_suffix(suffix).filter(|id| !id.is_empty())?;
        Some(format!("social.{}.{}", id.to_ascii_lowercase(), suffix[1..].to_ascii_lowercase()))
    })
}

fn alias_key(name: &str) -> Option<String> {
    ALIAS_ENV.iter().find(|(env, _)| name.eq_ignore_ascii_case(env)).map(|(_, key)| (*key).to_owned())
}

/// Layers defaults, the TOML file (explicit `path`, else `./latchkey.toml` if present) and the environment.
pub fn load(path: Option<&Path>) -> Result<Settings, Box<figment::Error>> {
    let mut figment = Figment::new();
    match path {
        Some(path) => figment = figment.merge(Toml::file_exact(path)),
        None => figment = figment.merge(Toml::file("latchkey.toml")),
    }
    // NODE_ENV=test (common in Node stacks) means development to us.
    let figment = figment
        .merge(Env::raw().filter_map(|name| alias_key(name.as_str()).map(Into::into)).filter(|name| {
            !(name.as_str().eq_ignore_ascii_case("NODE_ENV")
                && std::env::var("NODE_ENV").is_ok_and(|v| v != "production" && v != "development"))
        }))
        .merge(Env::raw().filter_map(|name| primary_key(name.as_str()).map(Into::into)));
    figment.extract().map_err(Box::new)
}

/// A loading error as an operator can act on it: a bad environment value names the variable it came
/// from (`LATCHKEY_SESSION_EXPIRES_IN: invalid type…`), not figment's internal key (`SESSION.EXPIRES_IN`);
/// a bad file value names the key and the file. One line per problem.
pub fn describe_load_error(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|error| {
            let key = error.path.join(".").to_ascii_lowercase();
            let from_env = error.metadata.as_ref().is_some_and(|m| m.name.contains("environment"));
            let source = if from_env {
                let names: Vec<String> = std::env::vars()
                    .map(|(name, _)| name)
                    .filter(|name| {
                        primary_key(name).or_else(|| alias_key(name)).is_some_and(|k| k.eq_ignore_ascii_case(&key))
                    })
                    .collect();
                if names.is_empty() {
                    format!("environment ({key})")
                } else {
                    names.join(" / ")
                }
            } else {
                match error.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                    Some(source) if !key.is_empty() => format!("`{key}` in {source}"),
                    Some(source) => source.to_string(),
                    None if !key.is_empty() => format!("`{key}`"),
                    None => "configuration".into(),
                }
            };
            format!("{source}: {}", error.kind)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `LATCHKEY_*` variables that set nothing: likely typos, worth a warning.
pub fn unknown_env_vars() -> Vec<String> {
    std::env::vars()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("LATCHKEY_"))
        .filter(|name| primary_key(name).is_none() && !OTHER_KNOWN_ENV.contains(&name.as_str()))
        .collect()
}

impl Settings {
    /// Every problem with the shape of this configuration (empty: fine). Settings that only a
    /// capability can judge (a key prefix, a signing algorithm, a database scheme) are checked by that
    /// capability's `validate_settings`; `app::validate_settings` runs them all.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!("listen: `{}` is not a socket address like 127.0.0.1:8080", self.listen));
        }
        match url::Url::parse(&self.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
                if self.env == Mode::Production && url.scheme() == "http" && !is_localhost(&url) {
                    problems.push("base_url: production requires an https:// base URL".into());
                }
            }
            _ => problems.push(format!("base_url: `{}` is not an http(s) URL", self.base_url)),
        }
        for origin in self.trusted_origins.iter().chain(&self.cors_origins) {
            if origin_of(origin).is_none() {
                problems.push(format!("`{origin}` is not an origin like https://app.example.com"));
            }
        }
        for proxy in &self.trusted_proxies {
            if proxy.parse::<IpAddr>().is_err() {
                problems.push(format!("trusted_proxies: `{proxy}` is not an IP address"));
            }
        }
        if self.env == Mode::Production {
            match &self.secret {
                None => problems.push("secret: LATCHKEY_SECRET is required in production".into()),
                Some(secret) if secret.expose().len() < 32 => {
                    problems.push("secret: LATCHKEY_SECRET must be at least 32 bytes".into())
                }
                Some(_) => {}
            }
        }
        let session = &self.session;
        if session.expires_in == 0 || session.update_age > session.expires_in {
            problems.push("session: need 0 < update_age <= expires_in".into());
        }
        if session.absolute_lifetime < session.expires_in {
            problems.push("session: absolute_lifetime must be >= expires_in".into());
        }
        if session.cookie_prefix.is_empty()
            || !session.cookie_prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problems.push("session.cookie_prefix: letters, digits, - and _ only".into());
        }
        let ext = &self.extensions;
        if self.env == Mode::Production {
            match &ext.secret {
                None => problems.push("extensions.secret: EXTENSION_TOKEN_SECRET is required in production".into()),
                Some(secret) if secret.expose().len() < 32 => {
                    problems.push("extensions.secret: EXTENSION_TOKEN_SECRET must be at least 32 bytes".into())
                }
                Some(_) => {}
            }
        }
        if ext.max_ttl == 0 || ext.max_ttl > 900 || ext.default_ttl == 0 || ext.default_ttl > ext.max_ttl {
            problems.push("extensions: need 0 < default_ttl <= max_ttl <= 900".into());
        }
        if ext.allowed_scopes.iter().any(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace())) {
            problems.push("extensions.allowed_scopes: scopes are non-empty words".into());
        }
        if self.tokens.rotation_interval != 0 && self.tokens.rotation_interval < 3600 {
            problems.push("tokens.rotation_interval: 0 (manual) or at least 3600 seconds".into());
        }
        let server = &self.server;
        if server.header_read_timeout == 0 || server.keep_alive_timeout == 0 {
            problems.push("server: header_read_timeout and keep_alive_timeout must be at least 1 second".into());
        }
        if !(1..=1_000_000).contains(&server.max_connections) {
            problems.push("server.max_connections: 1 to 1000000".into());
        }
        if self.database_max_connections == 0 {
            problems.push("database_max_connections must be at least 1".into());
        }
        if !(1..=300).contains(&self.password_hash_max_wait) {
            problems.push("password_hash_max_wait: 1 to 300 seconds".into());
        }
        problems
    }

    /// The base URL's origin (`scheme://host[:port]`).
    pub fn base_origin(&self) -> String {
        origin_of(&self.base_url).unwrap_or_default()
    }

    /// The trusted origins in force: the base URL's origin, then the configured ones (normalised).
    pub fn effective_trusted_origins(&self) -> Vec<String> {
        let mut origins = vec![self.base_origin()];
        for origin in self.trusted_origins.iter().filter_map(|o| origin_of(o)) {
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        origins
    }

    /// Where the development secret lives when `secret` is unset: next to the SQLite database
    /// (`latchkey.db.secret`), or `latchkey.secret` in the working directory for other databases.
    pub fn development_secret_path(&self) -> std::path::PathBuf {
        let url = &self.database_url;
        let file = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"));
        match file.map(|f| f.split('?').next().unwrap_or_default()) {
            Some(file) if !file.is_empty() && !file.contains(":memory:") => format!("{file}.secret").into(),
            _ => "latchkey.secret".into(),
        }
    }

    /// What `config check` shows for the server secret: never the secret, but where it comes from.
    fn secret_source(&self) -> String {
        match (&self.secret, self.env) {
            (Some(_), _) => "***".into(),
            (None, Mode::Production) => "(unset: required in production)".into(),
            (None, Mode::Development) => {
                let path = self.development_secret_path();
                if path.exists() {
                    format!("(development secret from {})", path.display())
                } else {
                    format!("(unset: a development secret is generated into {} on first start)", path.display())
                }
            }
        }
    }

    pub fn is_production(&self) -> bool {
        self.env == Mode::Production
    }
}

fn is_localhost(url: &url::Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

/// The ASCII origin of a URL, or `None` if it has none.
pub fn origin_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    match parsed.origin() {
        origin @ url::Origin::Tuple(..) => Some(origin.ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Settings {
    /// The effective configuration as TOML-ish lines, secrets redacted and the database password hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut database = url::Url::parse(&self.database_url).ok();
        if let Some(url) = database.as_mut().filter(|url| url.password().is_some()) {
            let _ = url.set_password(Some("***"));
        }
        let database = database.map(|url| url.to_string()).unwrap_or_else(|| self.database_url.clone());
        writeln!(f, "env = {:?}", format!("{:?}", self.env).to_lowercase())?;
        writeln!(f, "listen = {:?}", self.listen)?;
        writeln!(f, "base_url = {:?}", self.base_url)?;
        writeln!(f, "database_url = {database:?}")?;
        writeln!(f, "database_max_connections = {}", self.database_max_connections)?;
        writeln!(f, "secret = {:?}", self.secret_source())?;
        writeln!(f, "cors_origins = {:?}", self.cors_origins)?;
        writeln!(
            f,
            "trusted_origins = {:?}  # the base URL's origin is always trusted",
            self.effective_trusted_origins()
        )?;
        writeln!(f, "trusted_proxies = {:?}", self.trusted_proxies)?;
        writeln!(f, "cookie_domain = {:?}", self.cookie_domain.as_deref().unwrap_or("(derived)"))?;
        writeln!(f, "debug_endpoints = {}", self.debug_endpoints)?;
        writeln!(f, "log_format = {:?}", format!("{:?}", self.log_format).to_lowercase())?;
        writeln!(f, "password_hash_threads = {}", self.password_hash_threads)?;
        writeln!(f, "password_hash_queue = {}", self.password_hash_queue)?;
        writeln!(f, "password_hash_max_wait = {}", self.password_hash_max_wait)?;
        writeln!(f, "maintenance_interval = {}", self.maintenance_interval)?;
        let s = &self.session;
        writeln!(f, "\n[session]")?;
        writeln!(f, "expires_in = {}\nupdate_age = {}", s.expires_in, s.update_age)?;
        writeln!(f, "absolute_lifetime = {}\ncookie_cache_max_age = {}", s.absolute_lifetime, s.cookie_cache_max_age)?;
        writeln!(f, "cookie_prefix = {:?}", s.cookie_prefix)?;
        let r = &self.rate_limit;
        writeln!(f, "\n[rate_limit]")?;
        writeln!(
            f,
            "sign_in_failures_per_email = {}\nsign_in_email_window = {}",
            r.sign_in_failures_per_email, r.sign_in_email_window
        )?;
        writeln!(f, "sign_in_per_ip = {}\nsign_in_ip_window = {}", r.sign_in_per_ip, r.sign_in_ip_window)?;
        writeln!(f, "sign_up_per_ip = {}\nsign_up_ip_window = {}", r.sign_up_per_ip, r.sign_up_ip_window)?;
        writeln!(f, "verify_per_ip = {}\nverify_ip_window = {}", r.verify_per_ip, r.verify_ip_window)?;
        let e = &self.extensions;
        writeln!(f, "\n[extensions]")?;
        writeln!(f, "secret = {:?}", e.secret.as_ref().map_or("(derived)", |_| "***"))?;
        writeln!(f, "previous_secrets = {:?}", e.previous_secrets.iter().map(|_| "***").collect::<Vec<_>>())?;
        writeln!(f, "allowed_scopes = {:?}", e.allowed_scopes)?;
        writeln!(f, "default_ttl = {}\nmax_ttl = {}", e.default_ttl, e.max_ttl)?;
        let k = &self.api_keys;
        writeln!(f, "\n[api_keys]")?;
        writeln!(f, "default_prefix = {:?}\ncache_ttl = {}", k.default_prefix, k.cache_ttl)?;
        writeln!(f, "usage_flush_interval = {}", k.usage_flush_interval)?;
        let t = &self.tokens;
        writeln!(f, "\n[tokens]")?;
        writeln!(f, "leeway = {}\nrotation_interval = {}", t.leeway, t.rotation_interval)?;
        writeln!(f, "jwks_max_age = {}", t.jwks_max_age)?;
        let v = &self.service;
        let shown = |secret: &Option<Secret>| if secret.is_some() { "***" } else { "(unset)" };
        writeln!(f, "\n[service]")?;
        writeln!(f, "master_username = {:?}", shown(&v.master_username))?;
        writeln!(f, "master_password = {:?}", shown(&v.master_password))?;
        writeln!(f, "client_api_key = {:?}", shown(&v.client_api_key))?;
        writeln!(f, "token_ttl = {}\nalgorithm = {:?}", v.token_ttl, v.algorithm)?;
        let n = &self.server;
        writeln!(f, "\n[server]")?;
        writeln!(f, "header_read_timeout = {}\nkeep_alive_timeout = {}", n.header_read_timeout, n.keep_alive_timeout)?;
        writeln!(f, "max_connections = {}", n.max_connections)?;
        let a = &self.audit;
        writeln!(f, "\n[audit]")?;
        writeln!(f, "enabled = {}\nretention_days = {}", a.enabled, a.retention_days)?;
        writeln!(f, "queue_capacity = {}", a.queue_capacity)?;
        for (id, provider) in &self.social {
            writeln!(f, "\n[social.{id}]")?;
            writeln!(f, "issuer = {:?}\nclient_id = {:?}", provider.issuer, provider.client_id)?;
            writeln!(f, "client_secret = {:?}", shown(&provider.client_secret))?;
            writeln!(f, "scopes = {:?}", provider.scopes)?;
        }
        Ok(())
    }
}

/// A comma-separated string (environment) or a list (TOML).
fn list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        OneOrMany::Many(v) => v,
    })
}

/// Secrets as a comma-separated string (environment) or a list (TOML).
fn secret_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Secret>, D::Error> {
    list(deserializer).map(|values| values.into_iter().map(Secret::new).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_missing_secret_and_plain_http() {
        let settings =
            Settings { env: Mode::Production, base_url: "http://auth.example.com".into(), ..Settings::default() };
        let problems = settings.validate().join("\n");
        assert!(problems.contains("LATCHKEY_SECRET is required"), "{problems}");
        assert!(problems.contains("https"), "{problems}");
    }

    #[test]
    fn production_refuses_a_short_secret_but_accepts_a_long_one() {
        let mut settings = Settings {
            env: Mode::Production,
            base_url: "https://auth.example.com".into(),
            secret: Some(Secret::new("short")),
            ..Settings::default()
        };
        assert!(settings.validate().join("").contains("at least 32 bytes"));
        settings.secret = Some(Secret::new("x".repeat(32)));
        assert!(settings.validate().join("").contains("EXTENSION_TOKEN_SECRET is required"));
        settings.extensions.secret = Some(Secret::new("y".repeat(31)));
        assert!(settings.validate().join("").contains("EXTENSION_TOKEN_SECRET must be at least 32 bytes"));
        settings.extensions.secret = Some(Secret::new("y".repeat(32)));
        assert!(settings.validate().is_empty(), "{:?}", settings.validate());
    }

    #[test]
    fn development_defaults_are_valid() {
        assert!(Settings::default().validate().is_empty());
    }

    #[test]
    fn env_names_map_to_settings() {
        assert_eq!(primary_key("LATCHKEY_RATE_LIMIT_SIGN_IN_PER_IP").as_deref(), Some("rate_limit.sign_in_per_ip"));
        assert_eq!(primary_key("LATCHKEY_SESSION_EXPIRES_IN").as_deref(), Some("session.expires_in"));
        assert_eq!(primary_key("CORS_ORIGIN").as_deref(), Some("cors_origins"));
        assert_eq!(alias_key("BETTER_AUTH_URL").as_deref(), Some("base_url"));
        assert_eq!(primary_key("LATCHKEY_NOPE"), None);
        assert_eq!(primary_key("LATCHKEY_SOCIAL_MY_IDP_CLIENT_ID").as_deref(), Some("social.my_idp.client_id"));
        assert_eq!(primary_key("LATCHKEY_SOCIAL_OKTA_ISSUER").as_deref(), Some("social.okta.issuer"));
        assert_eq!(primary_key("GOOGLE_CLIENT_SECRET").as_deref(), Some("social.google.client_secret"));
        assert_eq!(primary_key("LATCHKEY_SOCIAL_ISSUER"), None);
    }

    #[test]
    fn display_shows_social_providers_without_their_secret() {
        let provider = SocialProviderSettings {
            issuer: "https://idp.example/".into(),
            client_id: "latchkey".into(),
            client_secret: Some(Secret::new("provider-secret-value")),
            scopes: vec!["openid".into()],
        };
        let settings =
            Settings { social: [("corp".to_owned(), provider)].into_iter().collect(), ..Settings::default() };
        let shown = settings.to_string();
        assert!(shown.contains("[social.corp]") && shown.contains("\"latchkey\""), "{shown}");
        assert!(!shown.contains("provider-secret-value"), "{shown}");
    }

    #[test]
    fn display_redacts_the_secret_and_the_database_password() {
        let settings = Settings {
            secret: Some(Secret::new("super-secret-value-that-is-long-enough")),
            database_url: "postgres://app:hunter2@db/latchkey".into(),
            ..Settings::default()
        };
        let shown = settings.to_string();
        assert!(!shown.contains("super-secret"));
        assert!(!shown.contains("hunter2"));
        assert!(format!("{settings:?}").contains("***"));
        assert!(!format!("{settings:?}").contains("super-secret"));
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
