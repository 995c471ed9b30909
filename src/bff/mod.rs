//! Capability 6, the backend-for-frontend token handler (DESIGN.md "Capability 6", issue 13): single-page
//! apps sign in through Latchkey and never hold a token; the tokens live in encrypted, `HttpOnly` cookies
//! that only this server can read.
//!
//! - [`vendors`]: a vendor's configuration (`/management/vendors/{vendorId}/token-handler`), its sealed
//!   client secret and cookie keys, and the in-memory cache every handler request reads it from.
//! - [`cookies`]: the sealing every handler cookie goes through.
//! - [`issuer`]: Latchkey itself (in-process) or any OpenID Connect provider (discovery, JWKS, HTTP).
//! - [`flow`]: login and callback (PKCE, state and nonce in the temporary cookie).
//! - [`session`]: `/session`, `/refresh`, `/logout`, and the one-refresh-per-token renewal the proxy
//!   shares.
//! - [`proxy`]: the API proxy and the gateway check.
//! - [`routes`]: the router and the management handlers.

pub mod cookies;
pub mod flow;
pub mod issuer;
pub mod proxy;
pub mod routes;
pub mod session;
pub mod store;
pub mod vendors;

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};

use crate::{
    cache::TtlCache,
    clock::Millis,
    config::Secret,
    crypto,
    error::ApiError,
    storage::{notify::CacheEvent, Db, StorageError},
};

/// The URL paths of the token handler.
pub mod paths {
    /// `PUT`, `GET`, `DELETE` a vendor's configuration.
    pub const BFF_VENDOR: &str = "/management/vendors/{vendorId}/token-handler";
    /// `POST` a new cookie key.
    pub const BFF_VENDOR_ROTATE_KEY: &str = "/management/vendors/{vendorId}/token-handler/rotate-key";
    /// `GET` start signing in.
    pub const BFF_LOGIN: &str = "/auth/{vendorId}/login";
    /// `GET` the issuer's redirect back.
    pub const BFF_CALLBACK: &str = "/auth/{vendorId}/callback";
    /// `GET` who is signed in.
    pub const BFF_SESSION: &str = "/auth/{vendorId}/session";
    /// `POST` rotate both token cookies.
    pub const BFF_REFRESH: &str = "/auth/{vendorId}/refresh";
    /// `POST` sign out.
    pub const BFF_LOGOUT: &str = "/auth/{vendorId}/logout";
    /// Any method: forwarded to the vendor's API.
    pub const BFF_API: &str = "/auth/{vendorId}/api/{*path}";
    /// `GET` forward-auth for a gateway.
    pub const BFF_CHECK: &str = "/auth/{vendorId}/check";
}

/// The temporary cookie of a sign-in in progress.
pub const TX_COOKIE: &str = "__Host-lk-tx";
/// Its lifetime, seconds.
pub const TX_MAX_AGE: i64 = 300;
/// The refresh-token cookie.
pub const REFRESH_COOKIE: &str = "__Host-rt";
/// Its lifetime, seconds (30 days).
pub const REFRESH_COOKIE_MAX_AGE: i64 = 2_592_000;
/// The access-token cookie's lifetime, seconds (one day).
pub const ACCESS_COOKIE_MAX_AGE: i64 = 86_400;

/// True for a vendor id the contract allows: `[a-z0-9-]{1,64}`.
pub fn is_vendor_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What the token handler keeps in memory.
pub struct BffState {
    /// Vendors by id (configuration, opened secret and keys), until changed or the TTL.
    pub vendors: TtlCache<vendors::Vendor>,
    /// External issuers and the HTTP client that reaches them.
    pub issuers: issuer::Issuers,
    /// The kept HTTP client (connection reuse) for external issuers.
    pub http: reqwest::Client,
    /// The pooled client the API proxy forwards with (hyper's own: no per-request URL re-parsing or
    /// request building on top of it).
    pub upstream: proxy::UpstreamClient,
    /// Refreshes in flight or just done, by refresh token.
    pub renewals: session::Renewals,
    /// Seals client secrets and vendor keys at rest (derived from the server secret).
    sealing_key: [u8; 32],
    ttl: Millis,
}

impl std::fmt::Debug for BffState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BffState(***)")
    }
}

impl BffState {
    pub fn new(secret: &Secret, ttl: Millis) -> anyhow::Result<BffState> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .tcp_nodelay(true)
            .build()?;
        Ok(BffState {
            vendors: TtlCache::default(),
            issuers: issuer::Issuers::new(http.clone()),
            http,
            upstream: proxy::upstream_client()?,
            renewals: session::Renewals::default(),
            sealing_key: crypto::derive_key(secret.expose().as_bytes(), "latchkey bff vendor secrets"),
            ttl,
        })
    }

    /// Forgets expired entries (maintenance).
    pub fn prune(&self, now: Millis) {
        self.vendors.prune(now);
        self.renewals.prune(now);
    }

    /// Applies an invalidation that concerns a vendor.
    pub fn apply(&self, event: &CacheEvent) {
        if let CacheEvent::BffVendorChanged { vendor_id } = event {
            self.vendors.remove(vendor_id);
        }
    }
}

/// Maintenance: vendor keys past their window deleted.
pub async fn cleanup(db: &Db, now: Millis) -> Result<u64, StorageError> {
    store::cleanup(db, now).await
}

impl From<vendors::VendorError> for ApiError {
    fn from(error: vendors::VendorError) -> ApiError {
        match error {
            vendors::VendorError::Invalid(message) => ApiError::bad_request("VALIDATION_ERROR", message),
            vendors::VendorError::Discovery(message) => ApiError::bad_request(
                "ISSUER_DISCOVERY_FAILED",
                format!("The issuer's OpenID Connect discovery failed: {message}"),
            ),
            vendors::VendorError::NotFound => vendor_not_found(),
            vendors::VendorError::Storage(error) => ApiError::internal(error),
        }
    }
}

/// 404 `VENDOR_NOT_FOUND`.
pub fn vendor_not_found() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "VENDOR_NOT_FOUND",
        "No token handler is configured for this vendor",
    )
}

/// 502 `ISSUER_UNAVAILABLE`, logged with why.
pub fn issuer_unavailable(vendor_id: &str, error: &issuer::IssuerError) -> ApiError {
    tracing::warn!(vendor_id, error = %error, "token handler: the issuer failed");
    ApiError::new(
        axum::http::StatusCode::BAD_GATEWAY,
        "ISSUER_UNAVAILABLE",
        "The identity provider could not be reached",
    )
}

/// The request's `Origin` if it is one of the vendor's.
pub fn allowed_origin<'h>(headers: &'h HeaderMap, vendor: &vendors::Vendor) -> Option<&'h str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).filter(|origin| vendor.allows_origin(origin))
}

/// 403 `INVALID_ORIGIN` unless the request's `Origin` is one of the vendor's (every state-changing call).
pub fn require_origin(headers: &HeaderMap, vendor: &vendors::Vendor) -> Result<(), ApiError> {
    allowed_origin(headers, vendor).map(|_| ()).ok_or_else(ApiError::invalid_origin)
}

/// CORS with credentials for one of the vendor's origins (the SPA calls the handler cross-origin).
pub fn add_cors(response_headers: &mut HeaderMap, request_headers: &HeaderMap, vendor: &vendors::Vendor) {
    response_headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(value) = allowed_origin(request_headers, vendor).and_then(|o| HeaderValue::from_str(o).ok()) {
        response_headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        response_headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
}

/// `Set-Cookie` values for the handler's cookies (names, flags and lifetimes fixed by the contract).
pub mod set_cookie {
    use super::{
        vendors::Vendor, ACCESS_COOKIE_MAX_AGE, REFRESH_COOKIE, REFRESH_COOKIE_MAX_AGE, TX_COOKIE, TX_MAX_AGE,
    };

    /// The access-token cookie: the vendor's cookie domain, `SameSite=Lax`, one day.
    pub fn access(vendor: &Vendor, value: &str) -> String {
        access_with(vendor, value, ACCESS_COOKIE_MAX_AGE)
    }

    fn access_with(vendor: &Vendor, value: &str, max_age: i64) -> String {
        format!(
            "{}={value}; Domain={}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax",
            vendor.config.access_token_cookie, vendor.config.cookie_domain
        )
    }

    /// The refresh-token cookie: host-only, `SameSite=Strict`, 30 days.
    pub fn refresh(value: &str) -> String {
        refresh_with(value, REFRESH_COOKIE_MAX_AGE)
    }

    fn refresh_with(value: &str, max_age: i64) -> String {
        format!("{REFRESH_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict")
    }

    /// The temporary cookie of a sign-in: host-only, `SameSite=Lax` (it must come back on the issuer's
    /// top-level redirect), five minutes.
    pub fn tx(value: &str) -> String {
        tx_with(value, TX_MAX_AGE)
    }

    fn tx_with(value: &str, max_age: i64) -> String {
        format!("{TX_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax")
    }

    /// Deletes both token cookies, with the attributes they were set with.
    pub fn clear_tokens(vendor: &Vendor) -> [String; 2] {
        [access_with(vendor, "", 0), refresh_with("", 0)]
    }

    /// Deletes the temporary cookie.
    pub fn clear_tx() -> String {
        tx_with("", 0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn vendor_ids_are_lowercase_letters_digits_and_dashes() {
        for good in ["acme", "acme-2", "a", &"a".repeat(64)] {
            assert!(super::is_vendor_id(good), "{good}");
        }
        for bad in ["", "Acme", "acme_2", "acme.com", "a/b", "ä", &"a".repeat(65)] {
            assert!(!super::is_vendor_id(bad), "{bad}");
        }
    }
}
