//! APIs (Auth0's resource servers) and client grants. An API is an audience a client may ask tokens for,
//! with the scopes it defines; a client grant lets one client obtain tokens for one API with client
//! credentials, limited to the scopes listed. The management API itself is the built-in API
//! `{issuer}api/v2/` ([`management_api`]): it has no row, cannot change, and grants may name it.

use serde::{Deserialize, Serialize};

use super::store;
use crate::{
    audit::{self, AuditEvent},
    clock::Millis,
    crypto,
    storage::{Db, StorageError},
    tokens::Algorithm,
};

/// A scope an API defines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScopeDefinition {
    /// `read:orders`: 1–280 visible characters, no spaces.
    pub value: String,
    #[serde(default)]
    pub description: String,
}

/// An API, as stored.
#[derive(Clone, Debug)]
pub struct ResourceServer {
    /// `api_…`.
    pub id: String,
    pub name: String,
    /// The `audience` clients ask for (usually a URL); unique, and cannot change.
    pub identifier: String,
    pub scopes: Vec<ScopeDefinition>,
    /// Signs the API's access tokens.
    pub signing_alg: Algorithm,
    /// Access-token lifetime, seconds.
    pub token_lifetime: i64,
    /// Whether refresh tokens may be issued for this audience.
    pub allow_offline_access: bool,
    /// First-party clients get no consent page for this API.
    pub skip_consent_for_verifiable_first_party_clients: bool,
    /// Unix ms.
    pub created_at: Millis,
    /// Unix ms.
    pub updated_at: Millis,
}

/// The management API's scopes, in the order Auth0 lists them.
pub const MANAGEMENT_SCOPES: [&str; 35] = [
    "read:clients",
    "create:clients",
    "update:clients",
    "delete:clients",
    "read:client_keys",
    "update:client_keys",
    "read:resource_servers",
    "create:resource_servers",
    "update:resource_servers",
    "delete:resource_servers",
    "read:client_grants",
    "create:client_grants",
    "update:client_grants",
    "delete:client_grants",
    "read:logs",
    "read:users",
    "create:users",
    "update:users",
    "delete:users",
    "read:sessions",
    "delete:sessions",
    "read:refresh_tokens",
    "delete:refresh_tokens",
    "read:organizations",
    "create:organizations",
    "update:organizations",
    "delete:organizations",
    "read:organization_members",
    "create:organization_members",
    "delete:organization_members",
    "read:signing_keys",
    "create:signing_keys",
    "update:signing_keys",
    // Latchkey's own: the token handler's vendor configuration (capability 6).
    "read:token_handlers",
    "update:token_handlers",
];

/// The built-in management API of the issuer `{base_url}/`.
pub fn management_api(base_url: &str) -> ResourceServer {
    ResourceServer {
        id: MANAGEMENT_API_ID.into(),
        name: "Latchkey Management API".into(),
        identifier: format!("{}/api/v2/", base_url.trim_end_matches('/')),
        scopes: MANAGEMENT_SCOPES
            .iter()
            .map(|value| ScopeDefinition { value: (*value).to_owned(), description: String::new() })
            .collect(),
        signing_alg: Algorithm::Rs256,
        token_lifetime: 86_400,
        allow_offline_access: false,
        skip_consent_for_verifiable_first_party_clients: false,
        created_at: 0,
        updated_at: 0,
    }
}

/// The management API's id.
pub const MANAGEMENT_API_ID: &str = "api_management";

impl ResourceServer {
    /// True for the built-in management API.
    pub fn is_system(&self) -> bool {
        self.id == MANAGEMENT_API_ID
    }
}

/// The API with this id or identifier (Auth0 accepts either in `/resource-servers/{id}`), the management
/// API included.
pub async fn find(db: &Db, base_url: &str, id_or_identifier: &str) -> Result<Option<ResourceServer>, StorageError> {
    if id_or_identifier == MANAGEMENT_API_ID {
        return Ok(Some(management_api(base_url)));
    }
    match store::find_resource_server(db, id_or_identifier).await? {
        Some(api) => Ok(Some(api)),
        None => by_identifier(db, base_url, id_or_identifier).await,
    }
}

/// A page of the APIs: the management API first (as Auth0 lists its system API), then the stored ones,
/// oldest first; and the total.
pub async fn list(db: &Db, base_url: &str, limit: i64, start: i64) -> Result<(Vec<ResourceServer>, i64), StorageError> {
    let (mut page, stored_total) = if start == 0 {
        let (rows, total) = store::list_resource_servers(db, limit - 1, 0).await?;
        let mut page = vec![management_api(base_url)];
        page.extend(rows);
        (page, total)
    } else {
        store::list_resource_servers(db, limit, start - 1).await?
    };
    page.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok((page, stored_total + 1))
}

/// How long a retired `alg` key must stay published (ms): the longest lifetime of any token it may have
/// signed — service tokens, ID tokens (10 h), userinfo-only access tokens (RS256, 24 h), and the access
/// tokens of every API signing with `alg` (the management API's included) — plus the leeway.
pub async fn retire_window(
    db: &Db,
    settings: &crate::config::Settings,
    alg: Algorithm,
) -> Result<Millis, StorageError> {
    let service = crate::service_tokens::longest_token_life(settings);
    let leeway = i64::try_from(settings.tokens.leeway).unwrap_or(0).saturating_mul(1000);
    let mut longest_api = store::longest_api_token_lifetime(db, alg).await?.unwrap_or(0);
    let management = management_api(&settings.base_url);
    if management.signing_alg == alg {
        longest_api = longest_api.max(management.token_lifetime);
    }
    longest_api = longest_api.max(super::ID_TOKEN_LIFETIME);
    if alg == Algorithm::Rs256 {
        longest_api = longest_api.max(super::USERINFO_TOKEN_LIFETIME);
    }
    Ok(service.max(longest_api.saturating_mul(1000).saturating_add(leeway)))
}

/// Rotates the signing keys of `alg`, or of every algorithm with an active key (the configured service
/// algorithm's when there is none yet); each retired key stays published for its [`retire_window`]. Returns
/// each algorithm with its new `kid` (`None`: another node rotated at the same moment). `latchkey admin
/// rotate-keys` and `POST /api/v2/keys/signing/rotate` both rotate here.
pub async fn rotate_signing_keys(
    db: &Db,
    settings: &crate::config::Settings,
    ring: &crate::tokens::keys::KeyRing,
    alg: Option<Algorithm>,
    now: Millis,
) -> anyhow::Result<Vec<(Algorithm, Option<String>)>> {
    let algorithms: Vec<Algorithm> = match alg {
        Some(alg) => vec![alg],
        None => {
            let in_use: Vec<Algorithm> = Algorithm::ALL.into_iter().filter(|alg| ring.active(*alg).is_some()).collect();
            if in_use.is_empty() {
                vec![Algorithm::parse(&settings.service.algorithm).unwrap_or(Algorithm::Es256)]
            } else {
                in_use
            }
        }
    };
    let mut rotated = Vec::new();
    for alg in algorithms {
        let window = retire_window(db, settings, alg).await?;
        rotated.push((alg, ring.rotate(db, alg, now, window, None).await?));
    }
    Ok(rotated)
}

/// What a create or update request sets (`None`: unchanged, or the default on create).
#[derive(Debug, Default)]
pub struct ResourceServerFields {
    pub name: Option<String>,
    pub identifier: Option<String>,
    pub scopes: Option<Vec<ScopeDefinition>>,
    pub signing_alg: Option<String>,
    pub token_lifetime: Option<i64>,
    pub allow_offline_access: Option<bool>,
    pub skip_consent_for_verifiable_first_party_clients: Option<bool>,
}

/// Why an API or a grant was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// 400: a field is missing or malformed (the message names it).
    #[error("{0}")]
    Invalid(String),
    /// 404.
    #[error("The resource server does not exist")]
    NotFound,
    /// 409: an API with this identifier exists (or it is the management API's).
    #[error("A resource server with the same identifier already exists")]
    IdentifierTaken,
    /// 400: the management API cannot change.
    #[error("The management API cannot be changed")]
    System,
    /// 404.
    #[error("The client grant does not exist")]
    GrantNotFound,
    /// 404: the grant names a client that does not exist.
    #[error("The client does not exist")]
    ClientNotFound,
    /// 404: the grant names an audience no API has.
    #[error("No resource server with identifier {0}")]
    AudienceNotFound(String),
    /// 409: the client already has a grant for this audience.
    #[error("A client grant for this client and audience already exists")]
    GrantExists,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn invalid(message: impl Into<String>) -> ResourceError {
    ResourceError::Invalid(message.into())
}

fn check_scope_value(value: &str) -> bool {
    (1..=280).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

fn check_scopes(scopes: &[ScopeDefinition]) -> Result<(), ResourceError> {
    if scopes.len() > 200 {
        return Err(invalid("scopes: at most 200"));
    }
    for (at, scope) in scopes.iter().enumerate() {
        if !check_scope_value(&scope.value) {
            return Err(invalid(format!("scopes: {:?} is not 1-280 visible characters without spaces", scope.value)));
        }
        if scope.description.chars().count() > 500 {
            return Err(invalid("scopes: a description is at most 500 characters"));
        }
        if scopes[..at].iter().any(|other| other.value == scope.value) {
            return Err(invalid(format!("scopes: {:?} is listed twice", scope.value)));
        }
    }
    Ok(())
}

fn apply(api: &mut ResourceServer, fields: ResourceServerFields) -> Result<(), ResourceError> {
    if let Some(name) = fields.name {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.contains(['<', '>']) {
            return Err(invalid("name: 1-200 characters, without < or >"));
        }
        api.name = name.to_owned();
    }
    if let Some(scopes) = fields.scopes {
        check_scopes(&scopes)?;
        api.scopes = scopes;
    }
    if let Some(alg) = fields.signing_alg {
        api.signing_alg = Algorithm::parse(&alg).ok_or_else(|| invalid("signing_alg: RS256, ES256 or EdDSA"))?;
    }
    if let Some(lifetime) = fields.token_lifetime {
        if !(60..=2_592_000).contains(&lifetime) {
            return Err(invalid("token_lifetime: 60-2592000 seconds"));
        }
        api.token_lifetime = lifetime;
    }
    if let Some(offline) = fields.allow_offline_access {
        api.allow_offline_access = offline;
    }
    if let Some(skip) = fields.skip_consent_for_verifiable_first_party_clients {
        api.skip_consent_for_verifiable_first_party_clients = skip;
    }
    Ok(())
}

/// Creates an API. `name` and `identifier` are required; the identifier (usually a URL, as Auth0 advises)
/// is at most 600 characters without spaces or control characters, and cannot be the management API's.
pub async fn create(
    db: &Db,
    base_url: &str,
    mut fields: ResourceServerFields,
    now: Millis,
) -> Result<ResourceServer, ResourceError> {
    let identifier = fields.identifier.take().ok_or_else(|| invalid("identifier is required"))?;
    if identifier.is_empty()
        || identifier.len() > 600
        || identifier.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid("identifier: 1-600 characters without spaces or control characters"));
    }
    if identifier == management_api(base_url).identifier {
        return Err(ResourceError::IdentifierTaken);
    }
    if fields.name.is_none() {
        return Err(invalid("name is required"));
    }
    let mut api = ResourceServer {
        id: crypto::new_id("api"),
        name: String::new(),
        identifier,
        scopes: Vec::new(),
        signing_alg: Algorithm::Rs256,
        token_lifetime: 86_400,
        allow_offline_access: false,
        skip_consent_for_verifiable_first_party_clients: true,
        created_at: now,
        updated_at: now,
    };
    apply(&mut api, fields)?;
    match store::insert_resource_server(db, &api).await {
        Err(StorageError::UniqueViolation(_)) => return Err(ResourceError::IdentifierTaken),
        other => other?,
    }
    audit::emit(AuditEvent::ResourceServerChanged { id: &api.id, action: "created" });
    Ok(api)
}

/// Updates an API (`identifier` cannot change).
pub async fn update(
    db: &Db,
    id: &str,
    mut fields: ResourceServerFields,
    now: Millis,
) -> Result<ResourceServer, ResourceError> {
    if id == MANAGEMENT_API_ID {
        return Err(ResourceError::System);
    }
    let mut api = store::find_resource_server(db, id).await?.ok_or(ResourceError::NotFound)?;
    if let Some(identifier) = fields.identifier.take() {
        if identifier != api.identifier {
            return Err(invalid("identifier cannot change"));
        }
    }
    apply(&mut api, fields)?;
    api.updated_at = now;
    if !store::update_resource_server(db, &api).await? {
        return Err(ResourceError::NotFound);
    }
    audit::emit(AuditEvent::ResourceServerChanged { id: &api.id, action: "updated" });
    Ok(api)
}

/// Deletes an API and its client grants.
pub async fn delete(db: &Db, id: &str) -> Result<(), ResourceError> {
    if id == MANAGEMENT_API_ID {
        return Err(ResourceError::System);
    }
    if !store::delete_resource_server(db, id).await? {
        return Err(ResourceError::NotFound);
    }
    audit::emit(AuditEvent::ResourceServerChanged { id, action: "deleted" });
    Ok(())
}

/// A client grant, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientGrant {
    /// `cgr_…`.
    pub id: String,
    pub client_id: String,
    /// An API's identifier.
    pub audience: String,
    /// The scopes the client may ask for (a subset of the API's).
    pub scope: Vec<String>,
    /// Unix ms.
    pub created_at: Millis,
}

/// The API with this identifier: a stored one, or the management API.
pub async fn by_identifier(db: &Db, base_url: &str, identifier: &str) -> Result<Option<ResourceServer>, StorageError> {
    let management = management_api(base_url);
    if identifier == management.identifier {
        return Ok(Some(management));
    }
    store::resource_server_by_identifier(db, identifier).await
}

/// Drops repeated scopes, keeping the first of each.
fn dedup(scope: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    scope.retain(|s| seen.insert(s.clone()));
}

fn check_grant_scope(api: &ResourceServer, scope: &[String]) -> Result<(), ResourceError> {
    let undefined: Vec<&str> =
        scope.iter().filter(|s| !api.scopes.iter().any(|d| d.value == **s)).map(String::as_str).collect();
    if undefined.is_empty() {
        Ok(())
    } else {
        Err(invalid(format!("scope: not defined by {}: {}", api.identifier, undefined.join(", "))))
    }
}

/// Grants `client_id` client-credentials access to `audience` with `scope` (each defined by the API).
pub async fn grant(
    db: &Db,
    base_url: &str,
    client_id: &str,
    audience: &str,
    mut scope: Vec<String>,
    now: Millis,
) -> Result<ClientGrant, ResourceError> {
    if store::find_client(db, client_id).await?.is_none() {
        return Err(ResourceError::ClientNotFound);
    }
    let api =
        by_identifier(db, base_url, audience).await?.ok_or_else(|| ResourceError::AudienceNotFound(audience.into()))?;
    dedup(&mut scope);
    check_grant_scope(&api, &scope)?;
    let grant = ClientGrant {
        id: crypto::new_id("cgr"),
        client_id: client_id.to_owned(),
        audience: audience.to_owned(),
        scope,
        created_at: now,
    };
    match store::insert_client_grant(db, &grant).await {
        Err(StorageError::UniqueViolation(_)) => return Err(ResourceError::GrantExists),
        other => other?,
    }
    audit::emit(AuditEvent::ClientGrantChanged { id: &grant.id, client_id, audience, action: "created" });
    Ok(grant)
}

/// Replaces a grant's scopes.
pub async fn update_grant(
    db: &Db,
    base_url: &str,
    id: &str,
    mut scope: Vec<String>,
) -> Result<ClientGrant, ResourceError> {
    let mut grant = store::find_client_grant(db, id).await?.ok_or(ResourceError::GrantNotFound)?;
    let api = by_identifier(db, base_url, &grant.audience)
        .await?
        .ok_or_else(|| ResourceError::AudienceNotFound(grant.audience.clone()))?;
    dedup(&mut scope);
    check_grant_scope(&api, &scope)?;
    grant.scope = scope;
    if !store::update_client_grant(db, &grant).await? {
        return Err(ResourceError::GrantNotFound);
    }
    let (client_id, audience) = (&grant.client_id, &grant.audience);
    audit::emit(AuditEvent::ClientGrantChanged { id, client_id, audience, action: "updated" });
    Ok(grant)
}

/// Deletes a grant.
pub async fn delete_grant(db: &Db, id: &str) -> Result<(), ResourceError> {
    let grant = store::find_client_grant(db, id).await?.ok_or(ResourceError::GrantNotFound)?;
    if !store::delete_client_grant(db, id).await? {
        return Err(ResourceError::GrantNotFound);
    }
    let (client_id, audience) = (&grant.client_id, &grant.audience);
    audit::emit(AuditEvent::ClientGrantChanged { id, client_id, audience, action: "deleted" });
    Ok(())
}
