//! Who is calling, and in which organization (DESIGN.md "Architecture" extractors, "Capability 2"
//! tenant context).
//!
//! The extractors (`principal::extractors`) turn a session cookie, a bearer session token or an
//! `x-api-key` into one [`Principal`]; an extension token becomes a [`Credential::Extension`], which only
//! `/api/auth/check` and `/api/extensions/verify` accept. [`resolve_tenant`] applies the tenant rules to
//! either, reading memberships from the in-process cache.

pub mod credentials;
pub mod extractors;
pub mod routes;

/// The URL paths of this capability's endpoints, also re-exported by `latchkey::paths`.
pub mod paths {
    /// `GET` forward-auth check.
    pub const AUTH_CHECK: &str = "/api/auth/check";
}

use std::sync::Arc;

use axum::http::StatusCode;

// `principal` stands between the capabilities' domain halves (sessions, keys, memberships, which it reads)
// and their routes (which extract a `Principal`): the folders meet in a circle, the files do not.
use crate::{
    accounts::User,
    api_keys::{cache::CachedKey, ApiKey, KeyFields},
    error::ApiError,
    extensions::ExtensionClaims,
    orgs::{Membership, Role},
    sessions::Session,
    state::AppState,
    storage::StorageError,
};

/// How a principal authenticated.
#[derive(Debug)]
pub enum Via {
    /// A session cookie or bearer session token.
    Session(Box<Session>),
    /// An `x-api-key` user key.
    ApiKey(Arc<CachedKey>),
}

/// An authenticated user acting through a session or an API key.
#[derive(Debug)]
pub struct Principal {
    /// The user (shared with the API key cache entry, so a key check copies no strings).
    pub user: Arc<User>,
    pub via: Via,
    /// The `x-tenant-id` header, trimmed, of a request made with an API key; `None` for sessions, which
    /// act in their active organization.
    pub tenant_header: Option<String>,
    /// The session token's SHA-256 when it came in a cookie (see `SessionAuth`).
    pub cookie_token_hash: Option<String>,
}

impl Principal {
    /// `session` or `api-key` (`x-auth-method`).
    pub fn method(&self) -> &'static str {
        match self.via {
            Via::Session(_) => "session",
            Via::ApiKey(_) => "api-key",
        }
    }

    /// The session, when authenticated by one.
    pub fn session(&self) -> Option<&Session> {
        match &self.via {
            Via::Session(session) => Some(session),
            Via::ApiKey(_) => None,
        }
    }

    /// The API key, when authenticated by one.
    pub fn api_key(&self) -> Option<&ApiKey> {
        match &self.via {
            Via::ApiKey(cached) => Some(&cached.key),
            Via::Session(_) => None,
        }
    }

    /// The API key's fields as parsed once for the cache (its permissions), when authenticated by one.
    pub fn api_key_fields(&self) -> Option<&KeyFields> {
        match &self.via {
            Via::ApiKey(cached) => Some(&cached.fields),
            Via::Session(_) => None,
        }
    }

    /// The session, or 403 `SESSION_REQUIRED` (key management and set-active are a person's acts).
    pub fn require_session(&self) -> Result<&Session, ApiError> {
        self.session().ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "SESSION_REQUIRED",
                "This action needs a signed-in session, not an API key",
            )
        })
    }

    /// 403 `INSUFFICIENT_PERMISSIONS` unless an API key's `permissions` allow `resource: action` (sessions
    /// and keys without permissions act with the user's own rights).
    pub fn require_permission(&self, resource: &str, action: &str) -> Result<(), ApiError> {
        match self.api_key_fields() {
            Some(key) if !key.allows(resource, action) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "INSUFFICIENT_PERMISSIONS",
                format!("The API key lacks the permission {resource}:{action}"),
            )),
            _ => Ok(()),
        }
    }

    /// True for users with the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.user.role == "admin"
    }

    /// `x-auth-scopes`: an API key's `resource:action` pairs; empty for sessions and unrestricted keys.
    pub fn scopes(&self) -> Vec<String> {
        self.api_key_fields().map(KeyFields::scopes).unwrap_or_default()
    }
}

/// Any credential: a principal, or an extension token (accepted only where an endpoint says so).
#[derive(Debug)]
pub enum Credential {
    /// Session or API key.
    Principal(Box<Principal>),
    /// A verified extension token.
    Extension(ExtensionClaims),
    /// A verified, unrevoked service token (capability 4).
    Service(std::sync::Arc<crate::service_tokens::ServiceClaims>),
    /// A verified, unrevoked OAuth access token of this issuer (capability 5), for any audience.
    OAuth(std::sync::Arc<crate::oauth::access::AccessTokenClaims>),
}

/// The organization a request acts in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub organization_id: String,
    pub slug: String,
    /// The caller's role in it.
    pub role: Role,
}

impl From<&Membership> for Tenant {
    fn from(m: &Membership) -> Self {
        Tenant { organization_id: m.organization_id.clone(), slug: m.slug.clone(), role: m.role() }
    }
}

/// 401 `User does not have access to organization`.
pub fn access_denied() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "ORGANIZATION_ACCESS_DENIED", "User does not have access to organization")
}

/// 401 `User has no organization`.
pub fn no_organization() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "NO_ORGANIZATION", "User has no organization")
}

/// Why no tenant resolved. The tenant path (forward-auth, extension tokens) answers each with DESIGN's
/// messages through `From`; the organization endpoints answer Better Auth's codes instead (`orgs::routes`).
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// 401 [`access_denied`]: the named organization is unknown, or the user is not a member of it, or
    /// (`outside_key_scope`) an org-scoped API key names another organization the user is a member of.
    #[error("no access to the organization")]
    Denied {
        /// True when only the key's organization scope stands in the way.
        outside_key_scope: bool,
    },
    /// 401 [`no_organization`]: nothing named, and the user belongs to no organization.
    #[error("no organization")]
    NoOrganization,
    /// 500.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<TenantError> for ApiError {
    fn from(error: TenantError) -> Self {
        match error {
            TenantError::Denied { .. } => access_denied(),
            TenantError::NoOrganization => no_organization(),
            TenantError::Storage(error) => error.into(),
        }
    }
}

/// The tenant of a principal (DESIGN.md): `explicit` (an `organizationId` the endpoint was given) wins;
/// then a session's active organization, or an API key's `x-tenant-id` (id or slug), else the key's
/// organization; else the user's first organization. Naming an organization the user is not a member
/// of — or, for an org-scoped key, any other organization — is `Denied`; having none is
/// `NoOrganization`. A session whose active organization the user has since left falls back to the
/// first one, as the DB row (cleared on leave) does.
pub async fn resolve_tenant(
    state: &AppState,
    principal: &Principal,
    explicit: Option<&str>,
) -> Result<Tenant, TenantError> {
    let memberships = state.orgs.memberships.get(&state.db, &principal.user.id, state.clock.now()).await?;
    let find = |id_or_slug: &str| {
        memberships
            .iter()
            .find(|m| m.organization_id == id_or_slug)
            .or_else(|| memberships.iter().find(|m| m.slug == id_or_slug))
    };
    let key_org = principal.api_key().and_then(|key| key.organization_id.as_deref());
    let scoped = |m: &Membership| key_org.is_none_or(|org| org == m.organization_id);

    let named = match (&principal.via, explicit) {
        (_, Some(explicit)) => Some(explicit),
        (Via::ApiKey(_), None) => principal.tenant_header.as_deref(),
        (Via::Session(session), None) => {
            if let Some(active) = session.active_organization_id.as_deref().and_then(find) {
                return Ok(Tenant::from(active));
            }
            None
        }
    };
    if let Some(named) = named {
        return match find(named) {
            Some(m) if scoped(m) => Ok(Tenant::from(m)),
            Some(_) => Err(TenantError::Denied { outside_key_scope: true }),
            None => Err(TenantError::Denied { outside_key_scope: false }),
        };
    }
    if let Some(org) = key_org {
        return find(org).map(Tenant::from).ok_or(TenantError::Denied { outside_key_scope: false });
    }
    memberships.first().map(Tenant::from).ok_or(TenantError::NoOrganization)
}

/// The tenant of an extension token: its `org`, if its subject is still a member.
pub async fn extension_tenant(state: &AppState, claims: &ExtensionClaims) -> Result<Option<Tenant>, ApiError> {
    // A blocked or deleted user's tokens (the cut is by subject and `iat`; extension tokens have no client).
    if state.tokens.revocations.is_revoked(&claims.jti, &claims.sub, "", claims.iat) {
        return Ok(None);
    }
    let memberships = state.orgs.memberships.get(&state.db, &claims.sub, state.clock.now()).await?;
    Ok(memberships.iter().find(|m| m.organization_id == claims.org).map(Tenant::from))
}
