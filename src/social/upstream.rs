//! The upstream OpenID Connect providers, through the kept relying-party crate `openidconnect`: discovery,
//! the authorization URL (S256 PKCE, state, nonce), the code exchange and ID-token validation (signature
//! from the JWKS, `iss`, `aud`/`azp`, `exp` on our clock, nonce). Upstream access and refresh tokens are
//! dropped as soon as the ID token is read: Latchkey stores none.
//!
//! A provider's discovery document (with its JWKS) is cached for an hour. An ID token naming a `kid` the
//! cached JWKS lacks (the upstream rotated its keys) makes us fetch the JWKS again, at most every
//! [`JWKS_REFETCH_GAP`], so a stream of forged `kid`s cannot make us hammer the upstream.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use openidconnect::{
    core::{
        CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreIdToken, CoreIdTokenClaims, CoreJsonWebKeySet,
        CoreJwsSigningAlgorithm, CoreProviderMetadata,
    },
    AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, SignatureVerificationError,
};

use super::{Profile, Provider};
use crate::clock::Millis;

/// How long a provider's discovery document is trusted before it is fetched again.
const METADATA_TTL: Millis = 3_600_000;
/// The least time between two JWKS fetches for an unknown `kid`.
const JWKS_REFETCH_GAP: Millis = 30_000;
/// The whole of one call to a provider (discovery, JWKS, token).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an upstream step failed. The strings are for logs only: they never hold a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Discovery, the JWKS or the token endpoint could not be reached or answered nonsense.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The token endpoint refused the code (used, expired, another client's, PKCE).
    #[error("the provider refused the code: {0}")]
    CodeRefused(String),
    /// The ID token is missing or failed a check.
    #[error("invalid ID token: {0}")]
    InvalidIdToken(String),
}

/// A provider's discovery document and JWKS, and when each was fetched.
struct Cached {
    metadata: CoreProviderMetadata,
    fetched_at: Millis,
    jwks_fetched_at: Millis,
}

/// What the browser must carry to the callback: the authorization URL and the secrets bound to it.
pub struct Authorization {
    /// The provider's authorization endpoint with every parameter.
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// The providers' cached metadata and the HTTP client that reaches them.
pub struct Upstreams {
    http: reqwest::Client,
    cache: Mutex<HashMap<String, Arc<Cached>>>,
    /// One lock per provider serialises its discovery and JWKS fetches (a burst of sign-ins fetches
    /// once; a slow provider holds up only its own sign-ins).
    fetch: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Upstreams {
    /// An HTTP client that follows no redirect (as the crate asks: no SSRF through a redirect).
    pub fn new() -> anyhow::Result<Upstreams> {
        let http =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(UPSTREAM_TIMEOUT).build()?;
        Ok(Upstreams { http, cache: Mutex::new(HashMap::new()), fetch: Mutex::new(HashMap::new()) })
    }

    fn fetch_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.fetch.lock() {
            Ok(mut locks) => Arc::clone(locks.entry(id.to_owned()).or_default()),
            Err(_) => Arc::default(),
        }
    }

    fn cached(&self, id: &str) -> Option<Arc<Cached>> {
        self.cache.lock().ok().and_then(|cache| cache.get(id).cloned())
    }

    fn keep(&self, id: &str, cached: Cached) -> Arc<Cached> {
        let cached = Arc::new(cached);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(id.to_owned(), Arc::clone(&cached));
        }
        cached
    }

    /// The provider's metadata: cached, or discovered (the crate checks the document names the very
    /// issuer configured).
    async fn metadata(&self, provider: &Provider, now: Millis) -> Result<Arc<Cached>, UpstreamError> {
        let fresh = |cached: &Cached| cached.fetched_at <= now && now - cached.fetched_at < METADATA_TTL;
        if let Some(cached) = self.cached(&provider.id).filter(|cached| fresh(cached)) {
            return Ok(cached);
        }
        let lock = self.fetch_lock(&provider.id);
        let _one_at_a_time = lock.lock().await;
        if let Some(cached) = self.cached(&provider.id).filter(|cached| fresh(cached)) {
            return Ok(cached);
        }
        let issuer = IssuerUrl::new(provider.issuer.clone()).map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
        match CoreProviderMetadata::discover_async(issuer, &self.http).await {
            Ok(metadata) => Ok(self.keep(&provider.id, Cached { metadata, fetched_at: now, jwks_fetched_at: now })),
            Err(error) => {
                let why = format!("discovery: {}", error_chain(&error));
                // A provider that is down for a moment keeps working with what we knew of it.
                match self.cached(&provider.id) {
                    Some(stale) => {
                        tracing::warn!(provider = %provider.id, error = %why, "social provider discovery failed; using the cached document");
                        Ok(stale)
                    }
                    None => Err(UpstreamError::Unavailable(why)),
                }
            }
        }
    }

    /// Fetches the JWKS again after an unknown `kid`, unless that was done within [`JWKS_REFETCH_GAP`].
    async fn refresh_jwks(&self, provider: &Provider, now: Millis) -> Result<Option<Arc<Cached>>, UpstreamError> {
        let lock = self.fetch_lock(&provider.id);
        let _one_at_a_time = lock.lock().await;
        let Some(cached) = self.cached(&provider.id) else { return Ok(None) };
        if now.saturating_sub(cached.jwks_fetched_at) < JWKS_REFETCH_GAP {
            return Ok(None);
        }
        let jwks = CoreJsonWebKeySet::fetch_async(cached.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| UpstreamError::Unavailable(format!("jwks: {}", error_chain(&e))))?;
        let metadata = cached.metadata.clone().set_jwks(jwks);
        Ok(Some(self.keep(&provider.id, Cached { metadata, fetched_at: cached.fetched_at, jwks_fetched_at: now })))
    }

    /// The authorization URL for a new sign-in, with fresh state, nonce and PKCE verifier.
    pub async fn authorize(
        &self,
        provider: &Provider,
        redirect_uri: &str,
        now: Millis,
    ) -> Result<Authorization, UpstreamError> {
        let cached = self.metadata(provider, now).await?;
        let client = client(provider, &cached.metadata, redirect_uri)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .set_pkce_challenge(challenge);
        // The crate adds `openid` itself.
        for scope in provider.scopes.iter().filter(|scope| *scope != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges a code (with the PKCE verifier) and validates the ID token against `nonce`.
    pub async fn exchange(
        &self,
        provider: &Provider,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        now: Millis,
    ) -> Result<Profile, UpstreamError> {
        let cached = self.metadata(provider, now).await?;
        let client = client(provider, &cached.metadata, redirect_uri)?;
        let request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| UpstreamError::Unavailable(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()));
        let tokens = request.request_async(&self.http).await.map_err(|error| match error {
            RequestTokenError::ServerResponse(answer) => UpstreamError::CodeRefused(answer.error().to_string()),
            other => UpstreamError::Unavailable(format!("token endpoint: {}", error_chain(&other))),
        })?;
        // Only the ID token is read; the access and refresh tokens go out of scope here, unstored.
        let id_token = openidconnect::TokenResponse::id_token(&tokens)
            .ok_or_else(|| UpstreamError::InvalidIdToken("the token endpoint answered no ID token".into()))?
            .clone();
        self.verify(provider, &id_token, Some(nonce), now).await
    }

    /// Validates an ID token the caller got from the provider itself (a mobile app's native sign-in):
    /// the same checks, with the nonce checked only when the caller names one.
    pub async fn verify_id_token(
        &self,
        provider: &Provider,
        token: &str,
        nonce: Option<&str>,
        now: Millis,
    ) -> Result<Profile, UpstreamError> {
        let id_token: CoreIdToken =
            token.parse().map_err(|_| UpstreamError::InvalidIdToken("not a signed JWT".into()))?;
        self.verify(provider, &id_token, nonce, now).await
    }

    async fn verify(
        &self,
        provider: &Provider,
        id_token: &CoreIdToken,
        nonce: Option<&str>,
        now: Millis,
    ) -> Result<Profile, UpstreamError> {
        let cached = self.metadata(provider, now).await?;
        match check(provider, &cached.metadata, id_token, nonce, now) {
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                match self.refresh_jwks(provider, now).await? {
                    Some(refreshed) => check(provider, &refreshed.metadata, id_token, nonce, now),
                    None => {
                        Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey))
                    }
                }
            }
            other => other,
        }
        .map(|claims| profile(&claims))
        .map_err(|e| UpstreamError::InvalidIdToken(e.to_string()))
    }
}

/// A client for one provider; the secret travels as the provider's metadata prefers (Basic by default,
/// as RFC 6749 §2.3.1 asks servers to support).
fn client(
    provider: &Provider,
    metadata: &CoreProviderMetadata,
    redirect_uri: &str,
) -> Result<
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    UpstreamError,
> {
    let post_only = metadata.token_endpoint_auth_methods_supported().is_some_and(|methods| {
        !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
            && methods.contains(&CoreClientAuthMethod::ClientSecretPost)
    });
    let redirect = RedirectUrl::new(redirect_uri.to_owned()).map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
    let secret = provider.client_secret.as_ref().map(|secret| ClientSecret::new(secret.expose().to_owned()));
    Ok(CoreClient::from_provider_metadata(metadata.clone(), ClientId::new(provider.client_id.clone()), secret)
        .set_redirect_uri(redirect)
        .set_auth_type(if post_only { AuthType::RequestBody } else { AuthType::BasicAuth }))
}

/// The crate's checks, on our clock, asymmetric algorithms only (an HS256 token "signed" with our own
/// client secret proves nothing about the upstream).
fn check(
    provider: &Provider,
    metadata: &CoreProviderMetadata,
    id_token: &CoreIdToken,
    nonce: Option<&str>,
    now: Millis,
) -> Result<CoreIdTokenClaims, ClaimsVerificationError> {
    let verifier = openidconnect::core::CoreIdTokenVerifier::new_public_client(
        ClientId::new(provider.client_id.clone()),
        metadata.issuer().clone(),
        metadata.jwks().clone(),
    )
    .set_allowed_algs([
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
        CoreJwsSigningAlgorithm::RsaSsaPssSha256,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::EcdsaP384Sha384,
        CoreJwsSigningAlgorithm::EdDsa,
    ])
    .set_time_fn(move || chrono::DateTime::from_timestamp_millis(now).unwrap_or_default());
    let expected = nonce.map(|nonce| Nonce::new(nonce.to_owned()));
    let nonce_check = move |got: Option<&Nonce>| match (&expected, got) {
        (None, _) => Ok(()),
        (Some(expected), Some(got))
            if crate::crypto::constant_time_eq(expected.secret().as_bytes(), got.secret().as_bytes()) =>
        {
            Ok(())
        }
        _ => Err("the nonce does not match".to_owned()),
    };
    id_token.clone().into_claims(&verifier, nonce_check)
}

/// What Latchkey keeps of the claims.
fn profile(claims: &CoreIdTokenClaims) -> Profile {
    let name = claims.name().and_then(|name| name.get(None)).map(|name| name.as_str().to_owned()).or_else(|| {
        let given = claims.given_name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned());
        let family = claims.family_name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned());
        let joined = [given, family].into_iter().flatten().collect::<Vec<_>>().join(" ");
        (!joined.is_empty()).then_some(joined)
    });
    Profile {
        subject: claims.subject().as_str().to_owned(),
        email: claims.email().map(|email| email.as_str().to_owned()),
        email_verified: claims.email_verified() == Some(true),
        name,
        picture: claims.picture().and_then(|p| p.get(None)).map(|p| p.as_str().to_owned()),
    }
}

/// An error and its causes on one line (the crate's top-level messages say little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
