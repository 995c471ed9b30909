//! OAuth clients in Auth0's model: the application type decides the defaults (spa and native are public
//! clients of the code flow, regular web apps confidential ones, non-interactive clients machines with
//! client credentials). A confidential client's secret is random, shown once, and stored as its SHA-256
//! (never Argon2: a client authenticates on every token request).
//!
//! Redirect and logout URLs are matched exactly later on, so they are checked here to be absolute URLs
//! without a fragment or wildcard; web origins are bare origins.

use serde::{Deserialize, Serialize};

use super::store;
use crate::{
    audit::{self, AuditEvent},
    clock::Millis,
    config::Secret,
    crypto,
    storage::{Db, StorageError},
    tokens::Algorithm,
};

/// Auth0's `app_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppType {
    /// A single-page app: public, code flow with PKCE.
    Spa,
    /// A mobile or desktop app: public, code flow with PKCE.
    Native,
    /// A server-side web app: confidential, code flow.
    RegularWeb,
    /// A machine: confidential, client credentials only.
    NonInteractive,
}

impl AppType {
    fn parse(text: &str) -> Option<AppType> {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AppType::Spa => "spa",
            AppType::Native => "native",
            AppType::RegularWeb => "regular_web",
            AppType::NonInteractive => "non_interactive",
        }
    }

    fn default_auth_method(self) -> AuthMethod {
        match self {
            AppType::Spa | AppType::Native => AuthMethod::None,
            AppType::RegularWeb | AppType::NonInteractive => AuthMethod::ClientSecretPost,
        }
    }

    fn default_grant_types(self) -> Vec<GrantType> {
        match self {
            AppType::NonInteractive => vec![GrantType::ClientCredentials],
            _ => vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        }
    }
}

/// How a client authenticates at the token endpoint (`token_endpoint_auth_method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A public client: no secret.
    None,
    /// `client_id` and `client_secret` in the body.
    ClientSecretPost,
    /// `Authorization: Basic` (RFC 6749 §2.3.1).
    ClientSecretBasic,
}

impl AuthMethod {
    fn parse(text: &str) -> Option<AuthMethod> {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::ClientSecretBasic => "client_secret_basic",
        }
    }

    /// True for the methods that present a secret.
    pub fn is_confidential(self) -> bool {
        self != AuthMethod::None
    }
}

/// A grant a client may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

/// Auth0's `refresh_token` settings of a client (seconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefreshTokenSettings {
    /// `rotating` (every use returns a new token) or `non-rotating`.
    pub rotation_type: String,
    /// Seconds the previous refresh token still returns the same successor (parallel tabs, retries).
    pub leeway: i64,
    /// Absolute lifetime of a refresh-token family, seconds.
    pub token_lifetime: i64,
    /// A family unused this long dies, seconds.
    pub idle_token_lifetime: i64,
}

impl Default for RefreshTokenSettings {
    fn default() -> RefreshTokenSettings {
        RefreshTokenSettings {
            rotation_type: "rotating".into(),
            leeway: 10,
            token_lifetime: 30 * 86_400,
            idle_token_lifetime: 15 * 86_400,
        }
    }
}

/// A registered client, as stored (without its secret's hash).
#[derive(Clone, Debug)]
pub struct OAuthClient {
    /// 32 random alphanumerics, as Auth0's.
    pub client_id: String,
    pub name: String,
    pub description: Option<String>,
    pub app_type: AppType,
    /// First-party clients skip the consent page.
    pub is_first_party: bool,
    pub token_endpoint_auth_method: AuthMethod,
    pub grant_types: Vec<GrantType>,
    /// Redirect URIs, matched exactly.
    pub callbacks: Vec<String>,
    /// `returnTo` URLs of logout, matched exactly.
    pub allowed_logout_urls: Vec<String>,
    /// Origins allowed to call the token, userinfo and revoke endpoints from a browser.
    pub web_origins: Vec<String>,
    /// Signs the client's ID tokens.
    pub jwt_alg: Algorithm,
    pub refresh_token: RefreshTokenSettings,
    /// Unix ms.
    pub created_at: Millis,
    /// Unix ms.
    pub updated_at: Millis,
}

/// What a create or update request sets; `None` leaves a field as it is (or at its default on create).
#[derive(Clone, Debug, Default)]
pub struct ClientFields {
    pub name: Option<String>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    pub app_type: Option<String>,
    pub is_first_party: Option<bool>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub callbacks: Option<Vec<String>>,
    pub allowed_logout_urls: Option<Vec<String>>,
    pub web_origins: Option<Vec<String>>,
    pub jwt_alg: Option<String>,
    pub refresh_token: Option<RefreshTokenPatch>,
}

/// The refresh-token settings a request sets; the others keep their value (or default).
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct RefreshTokenPatch {
    pub rotation_type: Option<String>,
    pub leeway: Option<i64>,
    pub token_lifetime: Option<i64>,
    pub idle_token_lifetime: Option<i64>,
}

/// Why a client's fields were refused: the field and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 400: a field is missing or malformed (the message names it).
    #[error("{0}")]
    Invalid(String),
    /// 404: no such client.
    #[error("The client does not exist")]
    NotFound,
    /// 409: the client kept changing under this update (three tries).
    #[error("The client was changed by another request at the same time; try again")]
    Conflict,
    /// 400: a public client has no secret to rotate.
    #[error("A client with token_endpoint_auth_method none has no secret")]
    NoSecret,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn invalid(message: impl Into<String>) -> ClientError {
    ClientError::Invalid(message.into())
}

/// Most URLs a list may hold, and the longest URL.
const MAX_URLS: usize = 100;
const MAX_URL_LEN: usize = 2048;

/// An absolute URL usable as a redirect or logout target: no fragment (RFC 6749 §3.1.2), no wildcard
/// (matching is exact), no credentials; `http(s)`, or for native apps a private-use scheme
/// (`com.example.app:/cb`, RFC 8252 §7.1) — never a scheme that runs script or reads local data, as the
/// form_post page and logout redirect to it.
fn check_redirect_url(field: &str, value: &str, app_type: AppType) -> Result<(), ClientError> {
    let problem =
        || invalid(format!("{field}: {value:?} is not an absolute, normalised URL without a fragment or wildcard"));
    if value.len() > MAX_URL_LEN || value.contains('*') || value.contains('#') {
        return Err(problem());
    }
    let url = url::Url::parse(value).map_err(|_| problem())?;
    let scheme_allowed = match url.scheme() {
        "http" | "https" => true,
        "javascript" | "data" | "vbscript" | "file" | "blob" | "about" | "ws" | "wss" | "ftp" => false,
        _ => app_type == AppType::Native,
    };
    if !scheme_allowed {
        return Err(invalid(format!(
            "{field}: {value:?}: only http and https (and private-use schemes for native apps) are allowed"
        )));
    }
    if url.cannot_be_a_base() || !url.username().is_empty() || url.password().is_some() {
        return Err(problem());
    }
    // Written as the URL standard writes it (a bare host may lack the final `/`): matching is by string,
    // so a form browsers rewrite (`https:///cb`, an upper-case host) could never match.
    let written = url.as_str();
    if written != value && written.strip_suffix('/') != Some(value) {
        return Err(problem());
    }
    Ok(())
}

/// A bare origin (`scheme://host[:port]`), as a browser sends in `Origin`.
fn check_origin(value: &str) -> Result<(), ClientError> {
    let problem = || invalid(format!("web_origins: {value:?} is not an origin (scheme://host[:port])"));
    let url = url::Url::parse(value).map_err(|_| problem())?;
    // Exactly as a browser writes it in `Origin` (lower-case ASCII host, no default port), so that a
    // string comparison is the check.
    let bare = matches!(url.scheme(), "http" | "https")
        && !value.contains('*')
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && url.origin().ascii_serialization() == value;
    if bare {
        Ok(())
    } else {
        Err(problem())
    }
}

fn check_list(
    field: &str,
    values: &[String],
    check: impl Fn(&str) -> Result<(), ClientError>,
) -> Result<(), ClientError> {
    if values.len() > MAX_URLS {
        return Err(invalid(format!("{field}: at most {MAX_URLS} entries")));
    }
    values.iter().try_for_each(|value| check(value))
}

fn check_name(name: &str) -> Result<String, ClientError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.contains(['<', '>']) {
        return Err(invalid("name: 1-100 characters, without < or >"));
    }
    Ok(name.to_owned())
}

fn check_refresh_token(settings: &RefreshTokenSettings) -> Result<(), ClientError> {
    if !matches!(settings.rotation_type.as_str(), "rotating" | "non-rotating") {
        return Err(invalid("refresh_token.rotation_type: rotating or non-rotating"));
    }
    if !(0..=60).contains(&settings.leeway) {
        return Err(invalid("refresh_token.leeway: 0-60 seconds"));
    }
    if !(1..=31_557_600).contains(&settings.token_lifetime) {
        return Err(invalid("refresh_token.token_lifetime: 1-31557600 seconds"));
    }
    if !(1..=settings.token_lifetime).contains(&settings.idle_token_lifetime) {
        return Err(invalid("refresh_token.idle_token_lifetime: 1 second up to token_lifetime"));
    }
    Ok(())
}

/// Applies `fields` to `client` (a new client's defaults, or a stored one), checking each and the whole.
fn apply(client: &mut OAuthClient, fields: ClientFields) -> Result<(), ClientError> {
    if let Some(name) = fields.name {
        client.name = check_name(&name)?;
    }
    if let Some(description) = fields.description {
        if description.as_ref().is_some_and(|d| d.chars().count() > 140) {
            return Err(invalid("description: at most 140 characters"));
        }
        client.description = description;
    }
    if let Some(first_party) = fields.is_first_party {
        client.is_first_party = first_party;
    }
    if let Some(method) = fields.token_endpoint_auth_method {
        client.token_endpoint_auth_method = AuthMethod::parse(&method)
            .ok_or_else(|| invalid("token_endpoint_auth_method: none, client_secret_post or client_secret_basic"))?;
    }
    if let Some(grants) = fields.grant_types {
        let mut parsed = Vec::with_capacity(grants.len());
        for grant in &grants {
            let grant =
                serde_json::from_value::<GrantType>(serde_json::Value::String(grant.clone())).map_err(|_| {
                    invalid(format!(
                        "grant_types: {grant:?} is not one of authorization_code, refresh_token, client_credentials"
                    ))
                })?;
            if !parsed.contains(&grant) {
                parsed.push(grant);
            }
        }
        client.grant_types = parsed;
    }
    if let Some(callbacks) = fields.callbacks {
        check_list("callbacks", &callbacks, |url| check_redirect_url("callbacks", url, client.app_type))?;
        client.callbacks = callbacks;
    }
    if let Some(urls) = fields.allowed_logout_urls {
        check_list("allowed_logout_urls", &urls, |url| {
            check_redirect_url("allowed_logout_urls", url, client.app_type)
        })?;
        client.allowed_logout_urls = urls;
    }
    if let Some(origins) = fields.web_origins {
        check_list("web_origins", &origins, check_origin)?;
        client.web_origins = origins;
    }
    if let Some(alg) = fields.jwt_alg {
        client.jwt_alg =
            Algorithm::parse(&alg).ok_or_else(|| invalid("jwt_configuration.alg: RS256, ES256 or EdDSA"))?;
    }
    if let Some(patch) = fields.refresh_token {
        let mut refresh = client.refresh_token.clone();
        refresh.rotation_type = patch.rotation_type.unwrap_or(refresh.rotation_type);
        refresh.leeway = patch.leeway.unwrap_or(refresh.leeway);
        refresh.token_lifetime = patch.token_lifetime.unwrap_or(refresh.token_lifetime);
        refresh.idle_token_lifetime = patch.idle_token_lifetime.unwrap_or(refresh.idle_token_lifetime);
        check_refresh_token(&refresh)?;
        client.refresh_token = refresh;
    }
    if !client.token_endpoint_auth_method.is_confidential()
        && client.grant_types.contains(&GrantType::ClientCredentials)
    {
        return Err(invalid(
            "grant_types: a public client (token_endpoint_auth_method none) cannot use client_credentials",
        ));
    }
    Ok(())
}

/// A new client's secret: 64 random alphanumerics (~380 bits), and its hash.
fn new_secret() -> (Secret, String) {
    let secret = crypto::random_alphanumeric(64);
    let hash = crypto::sha256_hex(secret.as_bytes());
    (Secret::new(secret), hash)
}

/// Creates a client; returns it and, for a confidential client, its secret (shown only now). `name` and
/// `app_type` are required; everything else defaults by `app_type` (DESIGN.md "Capability 5").
pub async fn create(
    db: &Db,
    mut fields: ClientFields,
    now: Millis,
) -> Result<(OAuthClient, Option<Secret>), ClientError> {
    let name = fields.name.as_deref().ok_or_else(|| invalid("name is required"))?;
    let name = check_name(name)?;
    let app_type = fields.app_type.take().ok_or_else(|| invalid("app_type is required"))?;
    let app_type =
        AppType::parse(&app_type).ok_or_else(|| invalid("app_type: spa, native, regular_web or non_interactive"))?;
    let mut client = OAuthClient {
        client_id: crypto::random_alphanumeric(32),
        name,
        description: None,
        app_type,
        is_first_party: true,
        token_endpoint_auth_method: app_type.default_auth_method(),
        grant_types: app_type.default_grant_types(),
        callbacks: Vec::new(),
        allowed_logout_urls: Vec::new(),
        web_origins: Vec::new(),
        jwt_alg: Algorithm::Rs256,
        refresh_token: RefreshTokenSettings::default(),
        created_at: now,
        updated_at: now,
    };
    apply(&mut client, fields)?;
    let secret = client.token_endpoint_auth_method.is_confidential().then(new_secret);
    store::insert_client(db, &client, secret.as_ref().map(|(_, hash)| hash.as_str())).await?;
    audit::emit(AuditEvent::OAuthClientChanged { client_id: &client.client_id, action: "created" });
    Ok((client, secret.map(|(secret, _)| secret)))
}

/// Updates a client (`app_type` cannot change). A client that becomes confidential without a secret
/// gets one, returned (shown only now); one that becomes public loses its secret.
pub async fn update(
    db: &Db,
    client_id: &str,
    mut fields: ClientFields,
    now: Millis,
) -> Result<(OAuthClient, Option<Secret>), ClientError> {
    if let Some(app_type) = fields.app_type.take() {
        let (client, _) = store::find_client(db, client_id).await?.ok_or(ClientError::NotFound)?;
        if AppType::parse(&app_type) != Some(client.app_type) {
            return Err(invalid("app_type cannot change"));
        }
    }
    // Read, change, write only if nobody wrote in between (`updated_at` is the version): the secret
    // decision below is made from the row it is written to.
    for _ in 0..3 {
        let (mut client, had_secret) = store::find_client(db, client_id).await?.ok_or(ClientError::NotFound)?;
        let read_version = client.updated_at;
        apply(&mut client, fields.clone())?;
        client.updated_at = now.max(read_version + 1);
        let confidential = client.token_endpoint_auth_method.is_confidential();
        let new_secret = (confidential && !had_secret).then(new_secret);
        let secret_hash = match (&new_secret, confidential) {
            (Some((_, hash)), _) => SecretChange::Set(hash.clone()),
            (None, true) => SecretChange::Keep,
            (None, false) => SecretChange::Clear,
        };
        match store::update_client(db, &client, secret_hash, read_version).await? {
            store::Written::Yes => {
                audit::emit(AuditEvent::OAuthClientChanged { client_id: &client.client_id, action: "updated" });
                return Ok((client, new_secret.map(|(secret, _)| secret)));
            }
            store::Written::Missing => return Err(ClientError::NotFound),
            store::Written::Changed => continue,
        }
    }
    Err(ClientError::Conflict)
}

/// What an update does to the stored secret hash.
pub enum SecretChange {
    Keep,
    Set(String),
    Clear,
}

/// Replaces a confidential client's secret; the old one is refused from now on. Returns the client and
/// the new secret (shown only now).
pub async fn rotate_secret(db: &Db, client_id: &str, now: Millis) -> Result<(OAuthClient, Secret), ClientError> {
    let (secret, hash) = new_secret();
    // One statement: a concurrent update cannot be undone by this, nor can a client made public get a
    // secret.
    match store::set_client_secret(db, client_id, &hash, now).await? {
        Some(client) => {
            audit::emit(AuditEvent::OAuthClientChanged { client_id: &client.client_id, action: "secret_rotated" });
            Ok((client, secret))
        }
        None if store::find_client(db, client_id).await?.is_some() => Err(ClientError::NoSecret),
        None => Err(ClientError::NotFound),
    }
}

/// Deletes a client; false if there was none.
pub async fn delete(db: &Db, client_id: &str) -> Result<bool, StorageError> {
    let deleted = store::delete_client(db, client_id).await?;
    if deleted {
        audit::emit(AuditEvent::OAuthClientChanged { client_id, action: "deleted" });
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_urls_are_absolute_without_fragment_wildcard_or_credentials() {
        for good in ["https://app.example.com/callback", "http://localhost:3000/cb?x=1", "com.example.app:/oauth"] {
            assert!(check_redirect_url("callbacks", good, AppType::Native).is_ok(), "{good}");
        }
        for bad in [
            "/callback",
            "https://*.example.com/cb",
            "https://app.example.com/cb#frag",
            "https://user:pw@app.example.com/cb",
            "https:///cb",
            "https://App.example.com/cb",
            "not a url",
        ] {
            assert!(check_redirect_url("callbacks", bad, AppType::Native).is_err(), "{bad}");
        }
        for script in ["javascript://x/%0aalert(1)", "data://text/html,x", "file:///etc/passwd"] {
            assert!(check_redirect_url("callbacks", script, AppType::Native).is_err(), "{script}");
        }
        assert!(check_redirect_url("callbacks", "com.example.app:/oauth", AppType::Spa).is_err(), "native only");
    }

    #[test]
    fn web_origins_are_bare_origins() {
        assert!(check_origin("https://app.example.com").is_ok());
        assert!(check_origin("http://localhost:3000").is_ok());
        for bad in [
            "https://app.example.com/",
            "https://app.example.com/path",
            "app.example.com",
            "https://a.com?x",
            "https://App.example.com",
            "https://a.com:443",
            "https://*.example.com",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refresh_token_settings_are_bounded() {
        assert!(check_refresh_token(&RefreshTokenSettings::default()).is_ok());
        let with = |change: fn(&mut RefreshTokenSettings)| {
            let mut settings = RefreshTokenSettings::default();
            change(&mut settings);
            check_refresh_token(&settings)
        };
        assert!(with(|s| s.leeway = 61).is_err());
        assert!(with(|s| s.rotation_type = "sometimes".into()).is_err());
        assert!(with(|s| s.idle_token_lifetime = s.token_lifetime + 1).is_err());
        assert!(with(|s| s.token_lifetime = 0).is_err());
    }
}
