//! A vendor's token handler configuration (DESIGN.md "Contract details → Capability 6"): validated and
//! stored by `PUT /management/vendors/{vendorId}/token-handler`, read on every handler request from an
//! in-memory cache (no database read on the proxy or check path), dropped from every node's cache by
//! `CacheEvent::BffVendorChanged` when it changes.
//!
//! The client secret is sealed under a key derived from the server secret and never returned. Each vendor
//! has its own AES-256-GCM cookie key, sealed the same way; rotating it keeps the previous key opening
//! what it sealed until the longest cookie it could have sealed has expired (the refresh cookie's 30 days).

use std::sync::Arc;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde::{Deserialize, Serialize};

use super::{cookies::VendorKey, store, BffState, REFRESH_COOKIE_MAX_AGE};
use crate::{
    clock::{iso8601, Millis},
    config::Secret,
    crypto,
    oauth::clients::{AppType, GrantType},
    state::AppState,
    storage::{notify::CacheEvent, StorageError},
};

/// The default scopes asked of the issuer.
pub const DEFAULT_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];
/// The default name of the access-token cookie.
pub const DEFAULT_ACCESS_TOKEN_COOKIE: &str = "__Secure-at";

/// The body of `PUT /management/vendors/{vendorId}/token-handler`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VendorInput {
    /// The OAuth client the handler signs in as.
    pub client_id: String,
    /// Its secret; stored encrypted, never returned. Left out on a PUT that keeps the same `clientId`, the
    /// stored one is kept.
    #[schema(value_type = Option<String>, format = Password)]
    pub client_secret: Option<Secret>,
    /// Any OpenID Connect provider, found by discovery; absent or null: Latchkey itself.
    pub issuer: Option<String>,
    /// The `Domain` of the access-token cookie: the base URL's host or a parent of it that the SPA's and
    /// the API's hosts share (e.g. `example.com`).
    pub cookie_domain: String,
    /// Origins (`https://app.example.com`) the browser may be sent back to and may call from.
    pub allowed_return_to: Vec<String>,
    /// Where `/auth/{vendorId}/api/*` forwards to.
    pub api_upstream: Option<String>,
    /// Asked of the issuer; default `openid profile email offline_access` (`openid` is required).
    pub scopes: Option<Vec<String>>,
    /// The API the access token is for.
    pub audience: Option<String>,
    /// The access-token cookie's name (default `__Secure-at`).
    pub access_token_cookie: Option<String>,
    /// `client_secret_post` (the default with a secret), `client_secret_basic`, or `none` (the default
    /// without one).
    pub token_endpoint_auth_method: Option<String>,
}

/// A vendor's stored configuration, as answered (never the client secret).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VendorConfig {
    pub vendor_id: String,
    pub client_id: String,
    /// Null: Latchkey itself.
    pub issuer: Option<String>,
    pub cookie_domain: String,
    pub allowed_return_to: Vec<String>,
    pub api_upstream: Option<String>,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub access_token_cookie: String,
    pub token_endpoint_auth_method: String,
    /// True when a client secret is stored (the secret itself is never returned).
    #[serde(default)]
    pub has_client_secret: bool,
    /// Where the issuer sends the browser back: `{base_url}/auth/{vendorId}/callback`.
    #[serde(default)]
    pub redirect_uri: String,
    /// ISO 8601.
    #[serde(default)]
    pub created_at: String,
    /// ISO 8601.
    #[serde(default)]
    pub updated_at: String,
}

/// A vendor as the handler uses it: its configuration, opened client secret and cookie keys.
pub struct Vendor {
    pub config: VendorConfig,
    pub client_secret: Option<Secret>,
    /// The current key first, then retired keys still within their window.
    pub keys: Vec<VendorKey>,
    /// `{base_url}/auth/{vendorId}/callback`.
    pub callback: String,
    /// `apiUpstream`, parsed once (the proxy joins each path to it without parsing the host again).
    pub upstream: Option<url::Url>,
}

impl std::fmt::Debug for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vendor").field("config", &self.config).field("keys", &self.keys.len()).finish_non_exhaustive()
    }
}

impl Vendor {
    /// The key new cookies are sealed with.
    pub fn current_key(&self) -> Option<&[u8; 32]> {
        self.keys.first().filter(|key| key.opens_until.is_none()).map(|key| &key.key)
    }

    /// True if `origin` is one of the vendor's allowed origins (exact: scheme, host, port).
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.config.allowed_return_to.iter().any(|allowed| allowed == origin)
    }
}

/// What went wrong with a vendor operation.
#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error("{0}")]
    Invalid(String),
    #[error("the issuer could not be discovered: {0}")]
    Discovery(String),
    #[error("no token handler is configured for this vendor")]
    NotFound,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn invalid(message: impl Into<String>) -> VendorError {
    VendorError::Invalid(message.into())
}

/// `{base_url}/auth/{vendorId}/callback`.
pub fn callback_url(base_url: &str, vendor_id: &str) -> String {
    format!("{}/auth/{vendor_id}/callback", base_url.trim_end_matches('/'))
}

/// An allowed origin as given: `scheme://host[:port]`, nothing else.
fn origin(text: &str) -> Result<String, VendorError> {
    let bad = || invalid(format!("allowedReturnTo holds origins (scheme://host[:port]); not {text:?}"));
    let url = url::Url::parse(text).map_err(|_| bad())?;
    let only_origin = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && !text.trim_end_matches('/').ends_with(':');
    let serialized = url.origin().ascii_serialization();
    // `https://a.example/` parses to the same as `https://a.example`; anything with a path does not.
    if !only_origin || text.trim_end_matches('/') != serialized {
        return Err(bad());
    }
    Ok(serialized)
}

/// The cookie `Domain`: the base URL's host or a parent of it that is not a public suffix.
fn cookie_domain(text: &str, base_url: &str) -> Result<String, VendorError> {
    let domain = text.trim().trim_start_matches('.').to_ascii_lowercase();
    let host =
        url::Url::parse(base_url).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase)).unwrap_or_default();
    let valid_chars = !domain.is_empty() && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid_chars {
        return Err(invalid("cookieDomain must be a host name"));
    }
    if domain != host && !host.ends_with(&format!(".{domain}")) {
        return Err(invalid(format!(
            "cookieDomain must be this server's host ({host}) or a parent of it: a browser refuses a cookie for another domain"
        )));
    }
    if domain != host && psl::suffix_str(&domain) == Some(domain.as_str()) {
        return Err(invalid("cookieDomain must not be a public suffix"));
    }
    Ok(domain)
}

/// An absolute http(s) URL without credentials, query or fragment, trailing `/` removed.
fn base_url_field(name: &str, text: &str) -> Result<String, VendorError> {
    let url = url::Url::parse(text).map_err(|_| invalid(format!("{name} must be an absolute URL")))?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
        || url.host_str().is_none()
    {
        return Err(invalid(format!("{name} must be an http(s) URL without credentials, query or fragment")));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A cookie name (RFC 6265 token) the handler may use for the access token: not one of the handler's
/// other cookies, and not one of Latchkey's own (`session_prefix` is the session cookies' prefix), which
/// share its host.
fn access_token_cookie(name: &str, session_prefix: &str) -> Result<String, VendorError> {
    let token = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(invalid("accessTokenCookie must be a cookie name"));
    }
    let latchkey_own =
        name.trim_start_matches("__Secure-").starts_with(&format!("{session_prefix}.")) || name.ends_with("lk-csrf");
    if name.starts_with("__Host-") || [super::REFRESH_COOKIE, super::TX_COOKIE].contains(&name) || latchkey_own {
        return Err(invalid(
            "accessTokenCookie may not be a __Host- name, one of the handler's other cookies or one of Latchkey's own",
        ));
    }
    Ok(name.to_owned())
}

/// Validates a PUT body into the configuration to store (without the timestamps) and the secret.
async fn validate(
    state: &AppState,
    vendor_id: &str,
    input: VendorInput,
    kept_secret: Option<Secret>,
) -> Result<(VendorConfig, Option<Secret>), VendorError> {
    let base_url = &state.settings.base_url;
    let client_id = input.client_id.trim().to_owned();
    if client_id.is_empty() || client_id.len() > 255 {
        return Err(invalid("clientId is required (at most 255 characters)"));
    }
    if input.allowed_return_to.is_empty() {
        return Err(invalid("allowedReturnTo must hold at least one origin"));
    }
    let allowed_return_to = input.allowed_return_to.iter().map(|o| origin(o)).collect::<Result<Vec<_>, _>>()?;
    let scopes = input.scopes.unwrap_or_else(|| DEFAULT_SCOPES.map(str::to_owned).to_vec());
    if scopes.iter().any(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control())) {
        return Err(invalid("scopes are single words"));
    }
    if !scopes.iter().any(|s| s == "openid") {
        return Err(invalid("scopes must include openid: the handler verifies an ID token"));
    }
    let audience = input.audience.map(|a| a.trim().to_owned()).filter(|a| !a.is_empty());
    let secret = input.client_secret.filter(|s| !s.expose().is_empty()).or(kept_secret);
    let method = match input.token_endpoint_auth_method.as_deref() {
        None if secret.is_some() => "client_secret_post",
        None => "none",
        Some(method @ ("client_secret_post" | "client_secret_basic")) if secret.is_some() => method,
        Some("client_secret_post" | "client_secret_basic") => {
            return Err(invalid("this tokenEndpointAuthMethod needs a clientSecret"))
        }
        Some("none") => "none",
        Some(_) => return Err(invalid("tokenEndpointAuthMethod is client_secret_post, client_secret_basic or none")),
    };
    let issuer = match input.issuer.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
        None => {
            check_own_client(state, vendor_id, &client_id).await?;
            None
        }
        Some(issuer) => {
            let url = url::Url::parse(issuer).map_err(|_| invalid("issuer must be an absolute URL"))?;
            let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            if !(url.scheme() == "https" || (url.scheme() == "http" && (loopback || !state.settings.is_production()))) {
                return Err(invalid("issuer must be an https URL"));
            }
            if !url.username().is_empty()
                || url.password().is_some()
                || url.query().is_some()
                || url.fragment().is_some()
            {
                return Err(invalid("issuer must not hold credentials, a query or a fragment"));
            }
            state
                .bff
                .issuers
                .discover(issuer, state.clock.now())
                .await
                .map_err(|error| VendorError::Discovery(error.to_string()))?;
            Some(issuer.to_owned())
        }
    };
    let config = VendorConfig {
        vendor_id: vendor_id.to_owned(),
        client_id,
        issuer,
        cookie_domain: cookie_domain(&input.cookie_domain, base_url)?,
        allowed_return_to,
        api_upstream: input.api_upstream.as_deref().map(|u| base_url_field("apiUpstream", u)).transpose()?,
        scopes,
        audience,
        access_token_cookie: access_token_cookie(
            input.access_token_cookie.as_deref().unwrap_or(DEFAULT_ACCESS_TOKEN_COOKIE),
            &state.settings.session.cookie_prefix,
        )?,
        token_endpoint_auth_method: method.to_owned(),
        has_client_secret: secret.is_some(),
        redirect_uri: callback_url(base_url, vendor_id),
        created_at: String::new(),
        updated_at: String::new(),
    };
    Ok((config, secret))
}

/// With no issuer the client must be a Latchkey `regular_web` client whose callbacks hold the handler's.
async fn check_own_client(state: &AppState, vendor_id: &str, client_id: &str) -> Result<(), VendorError> {
    let Some(entry) = state.oauth.config.client(&state.db, client_id, state.clock.now()).await? else {
        return Err(invalid("clientId names no Latchkey client (set issuer for another provider)"));
    };
    let client = &entry.0;
    if client.app_type != AppType::RegularWeb {
        return Err(invalid("the Latchkey client must be a regular_web client"));
    }
    let callback = callback_url(&state.settings.base_url, vendor_id);
    if !client.callbacks.iter().any(|c| c == &callback) {
        return Err(invalid(format!("the Latchkey client's callbacks must contain {callback}")));
    }
    if !client.grant_types.contains(&GrantType::AuthorizationCode) {
        return Err(invalid("the Latchkey client must allow the authorization_code grant"));
    }
    Ok(())
}

impl BffState {
    fn seal_secret(&self, vendor_id: &str, secret: &Secret) -> String {
        URL_SAFE_NO_PAD.encode(crypto::seal(&self.sealing_key, &secret_context(vendor_id), secret.expose().as_bytes()))
    }

    fn open_secret(&self, vendor_id: &str, sealed: &str) -> Option<Secret> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let plain = crypto::open(&self.sealing_key, &secret_context(vendor_id), &bytes)?;
        String::from_utf8(plain).ok().map(Secret::new)
    }

    fn seal_key(&self, vendor_id: &str, key_id: &str, key: &[u8; 32]) -> String {
        URL_SAFE_NO_PAD.encode(crypto::seal(&self.sealing_key, &key_context(vendor_id, key_id), key))
    }

    fn open_key(&self, vendor_id: &str, row: &store::KeyRow) -> Option<VendorKey> {
        let bytes = URL_SAFE_NO_PAD.decode(&row.sealed_key).ok()?;
        let plain = crypto::open(&self.sealing_key, &key_context(vendor_id, &row.id), &bytes)?;
        Some(VendorKey { key: plain.try_into().ok()?, opens_until: row.opens_until })
    }

    /// A vendor, from the cache or the database; `None` if there is no such vendor.
    pub async fn vendor(&self, state: &AppState, vendor_id: &str) -> Result<Option<Arc<Vendor>>, StorageError> {
        let now = state.clock.now();
        if let Some(vendor) = self.vendors.get(vendor_id, now) {
            return Ok(Some(vendor));
        }
        let Some((row, keys)) = store::find(&state.db, vendor_id, now).await? else { return Ok(None) };
        let vendor = Arc::new(self.open_vendor(&state.settings.base_url, row, &keys)?);
        // Until the vendor changes (an event drops it), the cache TTL passes, or a retired key's window ends.
        let until = vendor.keys.iter().filter_map(|k| k.opens_until).fold(now + self.ttl, Millis::min);
        self.vendors.insert(vendor_id, Arc::clone(&vendor), until, now);
        Ok(Some(vendor))
    }

    fn open_vendor(
        &self,
        base_url: &str,
        row: store::VendorRow,
        keys: &[store::KeyRow],
    ) -> Result<Vendor, StorageError> {
        let mut config: VendorConfig =
            serde_json::from_str(&row.config).map_err(|e| StorageError::Other(sqlx::Error::Decode(Box::new(e))))?;
        // Derived, not stored: it follows the base URL.
        config.redirect_uri = callback_url(base_url, &row.id);
        config.created_at = iso8601(row.created_at);
        config.updated_at = iso8601(row.updated_at);
        let client_secret = row.client_secret_sealed.as_deref().and_then(|sealed| self.open_secret(&row.id, sealed));
        if row.client_secret_sealed.is_some() && client_secret.is_none() {
            tracing::error!(vendor_id = %row.id, "a vendor's client secret does not open: was the server secret changed?");
        }
        let keys: Vec<VendorKey> = keys.iter().filter_map(|key| self.open_key(&row.id, key)).collect();
        let upstream = config.api_upstream.as_deref().and_then(|u| url::Url::parse(u).ok());
        Ok(Vendor { callback: config.redirect_uri.clone(), config, client_secret, keys, upstream })
    }
}

fn secret_context(vendor_id: &str) -> Vec<u8> {
    [b"bff-client-secret\0", vendor_id.as_bytes()].concat()
}

fn key_context(vendor_id: &str, key_id: &str) -> Vec<u8> {
    [b"bff-vendor-key\0", vendor_id.as_bytes(), b"\0", key_id.as_bytes()].concat()
}

fn new_key() -> [u8; 32] {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
}

/// Drops the vendor from this node's cache and every other node's.
async fn changed(state: &AppState, vendor_id: &str) -> Result<(), StorageError> {
    state.publish(CacheEvent::BffVendorChanged { vendor_id: vendor_id.to_owned() }).await
}

/// Creates or replaces a vendor's configuration; a new vendor gets its first cookie key. Returns what is
/// stored and whether the vendor is new.
pub async fn put(state: &AppState, vendor_id: &str, input: VendorInput) -> Result<(VendorConfig, bool), VendorError> {
    let stored = store::client_secret_of(&state.db, vendor_id).await?;
    // A PUT without a secret keeps the stored one, if it is for the same client.
    let kept_secret = stored.as_ref().and_then(|(config, sealed)| {
        let same_client =
            serde_json::from_str::<VendorConfig>(config).is_ok_and(|c| c.client_id == input.client_id.trim());
        sealed.as_deref().filter(|_| same_client).and_then(|sealed| state.bff.open_secret(vendor_id, sealed))
    });
    let (config, secret) = validate(state, vendor_id, input, kept_secret).await?;
    let sealed_secret = secret.as_ref().map(|secret| state.bff.seal_secret(vendor_id, secret));
    let json = serde_json::to_string(&config).map_err(|e| StorageError::Other(sqlx::Error::Encode(Box::new(e))))?;
    let key_id = crypto::new_id("bfk");
    let sealed_key = state.bff.seal_key(vendor_id, &key_id, &new_key());
    let now = state.clock.now();
    let first_key = store::NewKey { id: &key_id, sealed_key: &sealed_key };
    let row = store::upsert(&state.db, vendor_id, &json, sealed_secret.as_deref(), first_key, now).await?;
    changed(state, vendor_id).await?;
    let created = stored.is_none();
    Ok((VendorConfig { created_at: iso8601(row.created_at), updated_at: iso8601(row.updated_at), ..config }, created))
}

/// A vendor's stored configuration.
pub async fn get(state: &AppState, vendor_id: &str) -> Result<VendorConfig, VendorError> {
    let vendor = state.bff.vendor(state, vendor_id).await?.ok_or(VendorError::NotFound)?;
    Ok(vendor.config.clone())
}

/// Deletes a vendor and its keys: its cookies open nowhere from then on.
pub async fn delete(state: &AppState, vendor_id: &str) -> Result<(), VendorError> {
    if !store::delete(&state.db, vendor_id).await? {
        return Err(VendorError::NotFound);
    }
    changed(state, vendor_id).await?;
    Ok(())
}

/// The answer of a key rotation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotation {
    pub vendor_id: String,
    /// ISO 8601.
    pub rotated_at: String,
    /// Until when the previous key still opens the cookies it sealed (ISO 8601).
    pub previous_key_opens_until: String,
}

/// Makes a new cookie key current; the previous one opens what it sealed for the refresh cookie's lifetime.
pub async fn rotate_key(state: &AppState, vendor_id: &str) -> Result<KeyRotation, VendorError> {
    let now = state.clock.now();
    let key_id = crypto::new_id("bfk");
    let sealed_key = state.bff.seal_key(vendor_id, &key_id, &new_key());
    let opens_until = now + REFRESH_COOKIE_MAX_AGE * 1000;
    let key = store::NewKey { id: &key_id, sealed_key: &sealed_key };
    if !store::rotate(&state.db, vendor_id, key, opens_until, now).await? {
        return Err(VendorError::NotFound);
    }
    changed(state, vendor_id).await?;
    Ok(KeyRotation {
        vendor_id: vendor_id.to_owned(),
        rotated_at: iso8601(now),
        previous_key_opens_until: iso8601(opens_until),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_return_to_holds_bare_origins_only() {
        assert_eq!(origin("https://app.example.com").unwrap(), "https://app.example.com");
        assert_eq!(origin("https://app.example.com/").unwrap(), "https://app.example.com");
        assert_eq!(origin("http://localhost:5173").unwrap(), "http://localhost:5173");
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "https://app.example.com?q",
            "https://user@app.example.com",
            "javascript:alert(1)",
            "ftp://app.example.com",
            "https://APP.example.com:443",
            "null",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cookie_domain_is_the_host_or_a_parent_that_is_not_a_public_suffix() {
        let base = "https://auth.crm.example.com";
        assert_eq!(cookie_domain("example.com", base).unwrap(), "example.com");
        assert_eq!(cookie_domain(".crm.example.com", base).unwrap(), "crm.example.com");
        assert_eq!(cookie_domain("auth.crm.example.com", base).unwrap(), "auth.crm.example.com");
        assert_eq!(cookie_domain("localhost", "http://localhost:3000").unwrap(), "localhost");
        for bad in ["com", "other.com", "xample.com", "", "exa mple.com", "api.crm.example.com"] {
            assert!(cookie_domain(bad, base).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_access_token_cookie_name_is_a_token_and_not_the_handlers_own() {
        assert!(access_token_cookie("__Secure-at", "latchkey").is_ok());
        assert!(access_token_cookie("at", "latchkey").is_ok());
        for bad in [
            "",
            "a b",
            "a;b",
            "__Host-at",
            "__Host-rt",
            "__Host-lk-tx",
            "latchkey.session_token",
            "__Secure-latchkey.session_data",
            "lk-csrf",
        ] {
            assert!(access_token_cookie(bad, "latchkey").is_err(), "{bad}");
        }
    }
}
