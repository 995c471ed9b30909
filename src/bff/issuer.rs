//! The issuer a vendor signs in with: Latchkey itself (no `issuer` configured: the code and refresh grants,
//! revocation and ID-token checks run in-process, through the provider's own functions — no HTTP hop to
//! our own base URL, which a node may not even reach), or any other OpenID Connect provider, found by
//! discovery and called over HTTP with the kept client.
//!
//! An external issuer's metadata is cached for an hour; its JWKS is cached and fetched again when an ID
//! token names a `kid` it does not hold (at most every [`JWKS_REFETCH_GAP`], so a stream of made-up
//! `kid`s cannot make us hammer the issuer).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use jsonwebtoken::{jwk::JwkSet, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::vendors::Vendor;
use crate::{
    clock::Millis,
    config::Secret,
    oauth::{
        clients::GrantType,
        error::OAuthError,
        grants,
        token::{TokenRequest, TokenResponse},
    },
    state::AppState,
};

/// How long an external issuer's discovery document is trusted before it is fetched again.
const METADATA_TTL: Millis = 3_600_000;
/// The least time between two JWKS fetches for an unknown `kid`.
const JWKS_REFETCH_GAP: Millis = 30_000;
/// The whole of one call to an issuer (discovery, JWKS, token, revocation).
pub const ISSUER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to the issuer did not give what was asked.
#[derive(Debug)]
pub enum IssuerError {
    /// The issuer answered with an OAuth error (`invalid_grant`, …): the credential is no good.
    Refused {
        /// The OAuth `error` code.
        error: String,
    },
    /// The issuer could not be reached, or answered with something unusable (5xx, bad JSON).
    Unavailable(String),
    /// The ID token failed a check (signature, iss, aud, nonce, exp); the reason, for logs only.
    InvalidIdToken(&'static str),
    /// The vendor's configuration no longer fits the issuer (its Latchkey client is gone or changed).
    Misconfigured(&'static str),
}

impl std::fmt::Display for IssuerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IssuerError::Refused { error } => write!(f, "the issuer refused: {error}"),
            IssuerError::Unavailable(why) => write!(f, "the issuer is unavailable: {why}"),
            IssuerError::InvalidIdToken(why) => write!(f, "invalid ID token: {why}"),
            IssuerError::Misconfigured(why) => write!(f, "the vendor is misconfigured: {why}"),
        }
    }
}

/// What a token endpoint answered.
#[derive(Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    /// Seconds.
    pub expires_in: Option<i64>,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

impl From<TokenResponse> for TokenSet {
    fn from(answer: TokenResponse) -> TokenSet {
        TokenSet {
            access_token: answer.access_token,
            expires_in: Some(answer.expires_in),
            refresh_token: answer.refresh_token,
            id_token: answer.id_token,
        }
    }
}

/// The parts of an OpenID Connect discovery document the handler uses.
#[derive(Clone, Debug, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub end_session_endpoint: Option<String>,
    pub revocation_endpoint: Option<String>,
}

/// An external issuer: its metadata and its keys.
#[derive(Debug)]
pub struct ExternalIssuer {
    pub metadata: Metadata,
    fetched_at: Millis,
    /// The JWKS and when it was fetched (0: never).
    jwks: RwLock<(Arc<JwkSet>, Millis)>,
    /// Serialises JWKS fetches.
    jwks_fetch: tokio::sync::Mutex<()>,
}

/// The external issuers met so far, by configured issuer URL, and the HTTP client that reaches them.
#[derive(Debug)]
pub struct Issuers {
    http: reqwest::Client,
    known: Mutex<HashMap<String, Arc<ExternalIssuer>>>,
}

/// The discovery document's URL for an issuer (OpenID Connect Discovery 1.0 §4).
fn discovery_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
}

/// Reads a JSON answer, or says why not (the status and, for an OAuth error, its code).
async fn read_json<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> Result<T, IssuerError> {
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| IssuerError::Unavailable(format!("reading the answer: {e}")))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| IssuerError::Unavailable(format!("unreadable answer: {e}")));
    }
    #[derive(Deserialize)]
    struct ErrorAnswer {
        error: String,
    }
    match serde_json::from_slice::<ErrorAnswer>(&bytes) {
        Ok(answer) if status.is_client_error() => Err(IssuerError::Refused { error: answer.error }),
        _ => Err(IssuerError::Unavailable(format!("answered {status}"))),
    }
}

fn unavailable(error: reqwest::Error) -> IssuerError {
    // Without the URL: a token endpoint's query could carry something; the host is in the config anyway.
    IssuerError::Unavailable(error.without_url().to_string())
}

impl Issuers {
    pub fn new(http: reqwest::Client) -> Issuers {
        Issuers { http, known: Mutex::new(HashMap::new()) }
    }

    /// Fetches `issuer`'s discovery document (now, not from the cache), checks it names the same issuer,
    /// and keeps it.
    pub async fn discover(&self, issuer: &str, now: Millis) -> Result<Arc<ExternalIssuer>, IssuerError> {
        let response =
            self.http.get(discovery_url(issuer)).timeout(ISSUER_TIMEOUT).send().await.map_err(unavailable)?;
        let metadata: Metadata = read_json(response).await?;
        if metadata.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(IssuerError::Unavailable(format!(
                "the discovery document names another issuer: {}",
                metadata.issuer
            )));
        }
        for endpoint in [&metadata.authorization_endpoint, &metadata.token_endpoint, &metadata.jwks_uri] {
            if url::Url::parse(endpoint).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true) {
                return Err(IssuerError::Unavailable(format!("not an http(s) endpoint: {endpoint}")));
            }
        }
        let external = Arc::new(ExternalIssuer {
            metadata,
            fetched_at: now,
            jwks: RwLock::new((Arc::new(JwkSet { keys: Vec::new() }), 0)),
            jwks_fetch: tokio::sync::Mutex::new(()),
        });
        if let Ok(mut known) = self.known.lock() {
            known.insert(issuer.to_owned(), Arc::clone(&external));
        }
        Ok(external)
    }

    /// `issuer`'s metadata: cached, or discovered again when older than an hour.
    pub async fn get(&self, issuer: &str, now: Millis) -> Result<Arc<ExternalIssuer>, IssuerError> {
        let cached = self.known.lock().ok().and_then(|known| known.get(issuer).cloned());
        match cached {
            Some(external) if now.saturating_sub(external.fetched_at) < METADATA_TTL && external.fetched_at <= now => {
                Ok(external)
            }
            _ => self.discover(issuer, now).await,
        }
    }

    /// Calls the token endpoint with `form` and the vendor's client authentication.
    async fn token(
        &self,
        external: &ExternalIssuer,
        vendor: &Vendor,
        form: &[(&str, &str)],
    ) -> Result<TokenSet, IssuerError> {
        let request = self.http.post(&external.metadata.token_endpoint).timeout(ISSUER_TIMEOUT);
        let request = authenticate(request, vendor, form);
        let response = request.send().await.map_err(unavailable)?;
        read_json(response).await
    }

    /// The issuer's JWKS: cached, or fetched again when `kid` is not in it and the last fetch is old enough.
    async fn key_for(
        &self,
        external: &ExternalIssuer,
        kid: Option<&str>,
        now: Millis,
    ) -> Result<DecodingKeyFor, IssuerError> {
        let find = |set: &JwkSet| -> Option<DecodingKeyFor> {
            let jwk = match kid {
                Some(kid) => set.find(kid)?,
                // No `kid`: only a set of one key says which.
                None if set.keys.len() == 1 => &set.keys[0],
                None => return None,
            };
            Some(DecodingKeyFor { key: DecodingKey::from_jwk(jwk).ok()?, alg: jwk.common.key_algorithm })
        };
        let (set, fetched_at) = external.jwks_now();
        if let Some(found) = find(&set) {
            return Ok(found);
        }
        let _one_at_a_time = external.jwks_fetch.lock().await;
        // Another request may have fetched while this one waited.
        let (set, fetched_at) = match external.jwks_now() {
            (newer, at) if at != fetched_at => (newer, at),
            _ => (set, fetched_at),
        };
        if let Some(found) = find(&set) {
            return Ok(found);
        }
        if fetched_at != 0 && now.saturating_sub(fetched_at) < JWKS_REFETCH_GAP {
            return Err(IssuerError::InvalidIdToken("unknown kid"));
        }
        let response =
            self.http.get(&external.metadata.jwks_uri).timeout(ISSUER_TIMEOUT).send().await.map_err(unavailable)?;
        let fresh: Arc<JwkSet> = Arc::new(read_json(response).await?);
        if let Ok(mut jwks) = external.jwks.write() {
            *jwks = (Arc::clone(&fresh), now.max(1));
        }
        find(&fresh).ok_or(IssuerError::InvalidIdToken("unknown kid"))
    }
}

/// A decoding key and the algorithm its JWK pins, if it pins one.
struct DecodingKeyFor {
    key: DecodingKey,
    alg: Option<jsonwebtoken::jwk::KeyAlgorithm>,
}

impl ExternalIssuer {
    /// The JWKS held now and when it was fetched (an empty set never fetched if the lock is poisoned).
    fn jwks_now(&self) -> (Arc<JwkSet>, Millis) {
        match self.jwks.read() {
            Ok(held) => (Arc::clone(&held.0), held.1),
            Err(_) => (Arc::new(JwkSet { keys: Vec::new() }), 0),
        }
    }
}

/// Adds the vendor's client authentication to a form POST: `client_secret_basic` (each half
/// form-encoded, RFC 6749 §2.3.1), `client_secret_post`, or `none` (the client id in the form).
fn authenticate(request: reqwest::RequestBuilder, vendor: &Vendor, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let client_id = vendor.config.client_id.as_str();
    let mut fields: Vec<(&str, &str)> = form.to_vec();
    match (vendor.config.token_endpoint_auth_method.as_str(), &vendor.client_secret) {
        ("client_secret_basic", Some(secret)) => {
            let encode = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
            return request.basic_auth(encode(client_id), Some(encode(secret.expose()))).form(&fields);
        }
        ("client_secret_post", Some(secret)) => {
            fields.push(("client_id", client_id));
            fields.push(("client_secret", secret.expose()));
        }
        _ => fields.push(("client_id", client_id)),
    }
    request.form(&fields)
}

/// The Latchkey client a vendor without an `issuer` signs in with.
async fn own_client(state: &AppState, vendor: &Vendor) -> Result<crate::oauth::clients::OAuthClient, IssuerError> {
    let now = state.clock.now();
    match state.oauth.config.client(&state.db, &vendor.config.client_id, now).await {
        Ok(Some(entry)) => Ok(entry.0.clone()),
        Ok(None) => Err(IssuerError::Misconfigured("the vendor's Latchkey client no longer exists")),
        Err(error) => Err(IssuerError::Unavailable(format!("{error}"))),
    }
}

fn refused(error: OAuthError) -> IssuerError {
    if error.status.is_server_error() {
        IssuerError::Unavailable(error.description)
    } else {
        IssuerError::Refused { error: error.error.to_owned() }
    }
}

/// Exchanges an authorization code (with its PKCE verifier) for tokens.
pub async fn exchange_code(
    state: &AppState,
    vendor: &Vendor,
    code: &str,
    verifier: &str,
) -> Result<TokenSet, IssuerError> {
    match &vendor.config.issuer {
        None => {
            let client = own_client(state, vendor).await?;
            if !client.grant_types.contains(&GrantType::AuthorizationCode) {
                return Err(IssuerError::Misconfigured("the client may not use the authorization-code grant"));
            }
            let request = TokenRequest {
                grant_type: Some("authorization_code".into()),
                client_id: Some(client.client_id.clone()),
                code: Some(Secret::new(code)),
                redirect_uri: Some(vendor.callback.clone()),
                code_verifier: Some(Secret::new(verifier)),
                ..TokenRequest::default()
            };
            grants::code::grant(state, &client, &request).await.map(TokenSet::from).map_err(refused)
        }
        Some(issuer) => {
            let external = state.bff.issuers.get(issuer, state.clock.now()).await?;
            let form = [
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", vendor.callback.as_str()),
                ("code_verifier", verifier),
            ];
            state.bff.issuers.token(&external, vendor, &form).await
        }
    }
}

/// Runs the refresh grant.
pub async fn refresh(state: &AppState, vendor: &Vendor, refresh_token: &str) -> Result<TokenSet, IssuerError> {
    match &vendor.config.issuer {
        None => {
            let client = own_client(state, vendor).await?;
            if !client.grant_types.contains(&GrantType::RefreshToken) {
                return Err(IssuerError::Refused { error: "unauthorized_client".into() });
            }
            let request = TokenRequest {
                grant_type: Some("refresh_token".into()),
                client_id: Some(client.client_id.clone()),
                refresh_token: Some(Secret::new(refresh_token)),
                ..TokenRequest::default()
            };
            grants::refresh::grant(state, &client, &request).await.map(TokenSet::from).map_err(refused)
        }
        Some(issuer) => {
            let external = state.bff.issuers.get(issuer, state.clock.now()).await?;
            let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
            state.bff.issuers.token(&external, vendor, &form).await
        }
    }
}

/// Revokes a refresh token at the issuer (RFC 7009); an issuer without a revocation endpoint is done.
pub async fn revoke(state: &AppState, vendor: &Vendor, refresh_token: &str) -> Result<(), IssuerError> {
    match &vendor.config.issuer {
        None => {
            crate::oauth::revoke::revoke_token(state, &vendor.config.client_id, refresh_token).await.map_err(refused)
        }
        Some(issuer) => {
            let external = state.bff.issuers.get(issuer, state.clock.now()).await?;
            let Some(endpoint) = &external.metadata.revocation_endpoint else { return Ok(()) };
            let form = [("token", refresh_token), ("token_type_hint", "refresh_token")];
            let request = authenticate(state.bff.issuers.http.post(endpoint).timeout(ISSUER_TIMEOUT), vendor, &form);
            let response = request.send().await.map_err(unavailable)?;
            if response.status().is_success() {
                Ok(())
            } else {
                read_json::<Value>(response).await.map(|_| ())
            }
        }
    }
}

/// Where the browser goes to sign in: the issuer's authorization endpoint.
pub async fn authorization_endpoint(state: &AppState, vendor: &Vendor) -> Result<String, IssuerError> {
    match &vendor.config.issuer {
        None => Ok(format!("{}{}", state.settings.base_url.trim_end_matches('/'), crate::oauth::paths::AUTHORIZE)),
        Some(issuer) => {
            Ok(state.bff.issuers.get(issuer, state.clock.now()).await?.metadata.authorization_endpoint.clone())
        }
    }
}

/// Where the SPA sends the browser to end the issuer's own session, if the issuer has such a place.
pub async fn end_session_url(state: &AppState, vendor: &Vendor) -> Result<Option<String>, IssuerError> {
    let endpoint = match &vendor.config.issuer {
        None => Some(format!("{}{}", state.settings.base_url.trim_end_matches('/'), crate::oauth::paths::OIDC_LOGOUT)),
        Some(issuer) => state.bff.issuers.get(issuer, state.clock.now()).await?.metadata.end_session_endpoint.clone(),
    };
    Ok(endpoint.and_then(|endpoint| {
        let mut url = url::Url::parse(&endpoint).ok()?;
        url.query_pairs_mut().append_pair("client_id", &vendor.config.client_id);
        Some(url.to_string())
    }))
}

/// The claims of an ID token, time claims taken out.
#[derive(Deserialize)]
struct IdClaims {
    exp: i64,
    iat: i64,
    nbf: Option<i64>,
    nonce: Option<String>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

impl crate::tokens::TimeClaims for IdClaims {
    fn exp(&self) -> i64 {
        self.exp
    }
    fn iat(&self) -> i64 {
        self.iat
    }
    fn nbf(&self) -> Option<i64> {
        self.nbf
    }
}

/// Claims that say nothing about the user: left out of what `/session` shows.
const PROTOCOL_CLAIMS: &[&str] =
    &["iss", "aud", "azp", "nonce", "at_hash", "c_hash", "s_hash", "sid", "jti", "auth_time", "acr", "amr", "typ"];

/// Verifies an ID token — signature against the issuer's keys, `iss`, `aud` (the vendor's client),
/// `exp`/`iat`/`nbf` with the leeway, and `nonce` when one is expected — and returns the user's claims.
pub async fn verify_id_token(
    state: &AppState,
    vendor: &Vendor,
    id_token: &str,
    nonce: Option<&str>,
) -> Result<Map<String, Value>, IssuerError> {
    let now = state.clock.now();
    let leeway = state.settings.tokens.leeway;
    let claims: IdClaims = match &vendor.config.issuer {
        None => {
            let issuer = crate::oauth::issuer(&state.settings.base_url);
            let expected = crate::tokens::Expectation::new(&issuer, &vendor.config.client_id, leeway);
            state
                .tokens
                .key_ring
                .verify(id_token, &expected, now)
                .map_err(|_| IssuerError::InvalidIdToken("signature or claims"))?
        }
        Some(issuer) => {
            let external = state.bff.issuers.get(issuer, now).await?;
            let header = jsonwebtoken::decode_header(id_token).map_err(|_| IssuerError::InvalidIdToken("malformed"))?;
            if header.crit.is_some() {
                return Err(IssuerError::InvalidIdToken("crit header"));
            }
            // Only a public key proves the issuer signed: no HMAC (`alg` HS*) over a key anyone may hold.
            use jsonwebtoken::Algorithm as Alg;
            if matches!(header.alg, Alg::HS256 | Alg::HS384 | Alg::HS512) {
                return Err(IssuerError::InvalidIdToken("symmetric algorithm"));
            }
            let found = state.bff.issuers.key_for(&external, header.kid.as_deref(), now).await?;
            if found.alg.is_some_and(|alg| format!("{alg:?}") != format!("{:?}", header.alg)) {
                return Err(IssuerError::InvalidIdToken("algorithm differs from the key's"));
            }
            let mut validation = Validation::new(header.alg);
            validation.set_issuer(&[external.metadata.issuer.as_str()]);
            validation.set_audience(&[vendor.config.client_id.as_str()]);
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
            let data = jsonwebtoken::decode::<IdClaims>(id_token, &found.key, &validation)
                .map_err(|_| IssuerError::InvalidIdToken("signature or claims"))?;
            let expected = crate::tokens::Expectation::any_audience(&external.metadata.issuer, leeway);
            expected
                .check_times(&data.claims, now)
                .map_err(|_| IssuerError::InvalidIdToken("expired or not yet valid"))?;
            data.claims
        }
    };
    if let Some(expected) = nonce {
        let matches =
            claims.nonce.as_deref().is_some_and(|n| crate::crypto::constant_time_eq(n.as_bytes(), expected.as_bytes()));
        if !matches {
            return Err(IssuerError::InvalidIdToken("nonce mismatch"));
        }
    }
    let mut user = claims.rest;
    user.retain(|name, _| !PROTOCOL_CLAIMS.contains(&name.as_str()));
    Ok(user)
}
