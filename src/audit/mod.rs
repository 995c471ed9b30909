//! Security events, a category of their own (DESIGN.md "Cross-cutting"): typed, emitted through one
//! function as `tracing` events with target `audit`, and never carrying a secret — only ids and reasons.
//!
//! Inside a request (and in work a request hands to a task of its own, [`propagate`]) an event is also
//! stored: [`emit`] turns it into a [`Record`] with the caller's address, user agent and request id and
//! hands it to the request's [`AuditSink`] without waiting; [`writer`] writes the records in batches off
//! the request path ([`store`]), and `GET /api/v2/logs` and `latchkey admin logs` read them. A full queue
//! drops the record and counts it (`latchkey_audit_dropped_total`): an audit row never holds up a sign-in.

pub mod store;
pub mod writer;

use std::{net::IpAddr, sync::Arc};

use axum::http::HeaderValue;
use serde_json::{json, Map, Value};

use crate::telemetry::CurrentRequestId;

pub use writer::AuditSink;

/// A security-relevant event. Fields are ids and reason codes only.
#[derive(Debug)]
pub enum AuditEvent<'a> {
    /// A user signed up (`latchkey admin create-user` emits nothing).
    UserCreated { user_id: &'a str },
    /// An email/password sign-in succeeded.
    SignInSucceeded { user_id: &'a str },
    /// A sign-in failed (the email is not logged: it may be a password typed in the wrong field).
    SignInFailed { reason: &'a str },
    /// A session was started, at sign-up or sign-in.
    SessionCreated { user_id: &'a str, session_id: &'a str },
    /// Sessions were revoked; `reason` names the endpoint that did it (e.g. `sign_out`).
    SessionsRevoked { user_id: &'a str, count: usize, reason: &'a str },
    /// An API key was created, updated or deleted (`action`).
    ApiKeyChanged { actor_id: &'a str, key_id: &'a str, action: &'a str },
    /// An API key was refused as a credential.
    ApiKeyRefused { key_id: Option<&'a str>, reason: &'a str },
    /// An organization, membership or invitation changed (`action`, e.g. `member.removed`).
    OrganizationChanged { actor_id: &'a str, organization_id: &'a str, action: &'a str, target: Option<&'a str> },
    /// An extension token was issued, in the user's tenant organization.
    ExtensionTokenIssued { user_id: &'a str, organization_id: &'a str, extension_id: &'a str, jti: &'a str },
    /// A `/v1` credential (master, client key, user secret or service token) was refused; never the
    /// credential itself, only what is known of who presented it and why.
    ServiceAuthFailed { client_id: Option<&'a str>, user_id: Option<&'a str>, reason: &'a str },
    /// A service client was created, had its key rotated, or was deleted (`action`).
    ServiceClientChanged { client_id: &'a str, action: &'a str },
    /// An OAuth client was created, updated, had its secret rotated, or was deleted (`action`).
    OAuthClientChanged { client_id: &'a str, action: &'a str },
    /// A client failed to authenticate at the token endpoint (`client_id` when it named a known one).
    OAuthClientAuthFailed { client_id: Option<&'a str>, reason: &'a str },
    /// The token endpoint issued an access token.
    OAuthTokenIssued { client_id: &'a str, grant_type: &'a str, audience: &'a str, jti: &'a str },
    /// An API (resource server) was created, updated or deleted (`action`).
    ResourceServerChanged { id: &'a str, action: &'a str },
    /// A client grant was created, had its scopes changed, or was deleted (`action`).
    ClientGrantChanged { id: &'a str, client_id: &'a str, audience: &'a str, action: &'a str },
    /// An administrator acted through the management API on a user, organization or signing key (Auth0's
    /// `sapi`); `actor_id` is `master` or the management token's client.
    ManagementAction { actor_id: &'a str, resource: &'a str, id: &'a str, user_id: Option<&'a str>, action: &'a str },
    /// A service user was created or deleted (`action`).
    ServiceUserChanged { client_id: &'a str, user_id: &'a str, action: &'a str },
    /// A service token was issued to one of a client's users.
    TokenIssued { client_id: &'a str, user_id: &'a str, jti: &'a str },
    /// A client revoked one of its service tokens.
    TokenRevoked { client_id: &'a str, jti: &'a str, reason: &'a str },
    /// `/authorize` issued a code.
    OAuthCodeIssued { client_id: &'a str, user_id: &'a str, scope: &'a str },
    /// A user allowed or denied a third-party client's scopes.
    OAuthConsent { client_id: &'a str, user_id: &'a str, scope: &'a str, allowed: bool },
    /// A sign-in, sign-up or consent form came without a matching CSRF token.
    CsrfRefused { page: &'a str },
    /// A used code or a rotated refresh token came back (`what`): its grant was killed.
    OAuthReuseDetected { client_id: &'a str, grant_id: &'a str, what: &'a str },
    /// A code or refresh token was refused for a reason worth knowing (another client's, PKCE, …).
    OAuthGrantRefused { client_id: &'a str, reason: &'a str },
    /// The previous refresh token came back within the leeway and got the same successor.
    OAuthRefreshRetried { client_id: &'a str, grant_id: &'a str },
    /// A client revoked a token at `/oauth/revoke` (`what`: `refresh_token` kills its family).
    OAuthTokenRevoked { client_id: &'a str, what: &'a str },
    /// A token handler vendor was configured, re-keyed or deleted (`action`).
    BffVendorChanged { vendor_id: &'a str, action: &'a str },
    /// Someone signed in through a vendor's token handler (`sub` is the issuer's subject).
    BffSignedIn { vendor_id: &'a str, sub: &'a str },
    /// Someone signed out through a vendor's token handler.
    BffSignedOut { vendor_id: &'a str },
    /// A social sign-in (upstream OIDC provider) succeeded.
    SocialSignInSucceeded { user_id: &'a str, provider: &'a str },
    /// A social sign-in failed; `reason` is the error callback's code (`state_mismatch`, …).
    SocialSignInFailed { provider: &'a str, reason: &'a str },
    /// A provider's account was linked to the user with the same, upstream-verified, email.
    SocialAccountLinked { user_id: &'a str, provider: &'a str },
    /// The user unlinked one of their accounts (`provider` may be `credential`).
    SocialAccountUnlinked { user_id: &'a str, provider: &'a str },
}

/// Emits an audit event (with the current request's id): logged, and stored when a sink is in scope.
pub fn emit(event: AuditEvent<'_>) {
    let _ = CONTEXT.try_with(|context| {
        if let Some(context) = context {
            context.sink.submit(event.record(context));
        }
    });
    log(&event);
}

fn log(event: &AuditEvent<'_>) {
    match *event {
        AuditEvent::UserCreated { user_id } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, user_id, "user created")
        }
        AuditEvent::SignInSucceeded { user_id } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, user_id, "sign-in succeeded")
        }
        AuditEvent::SignInFailed { reason } => {
            tracing::warn!(target: "audit", request_id = %CurrentRequestId, reason, "sign-in failed")
        }
        AuditEvent::SessionCreated { user_id, session_id } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, user_id, session_id, "session created")
        }
        AuditEvent::SessionsRevoked { user_id, count, reason } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, user_id, count, reason, "sessions revoked")
        }
        AuditEvent::ApiKeyChanged { actor_id, key_id, action } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, actor_id, key_id, action, "api key changed")
        }
        AuditEvent::ApiKeyRefused { key_id, reason } => {
            tracing::warn!(target: "audit", request_id = %CurrentRequestId, key_id, reason, "api key refused")
        }
        AuditEvent::OrganizationChanged { actor_id, organization_id, action, target } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, actor_id, organization_id, action, target, "organization changed")
        }
        AuditEvent::ExtensionTokenIssued { user_id, organization_id, extension_id, jti } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, user_id, organization_id, extension_id, jti, "extension token issued")
        }
        AuditEvent::ServiceAuthFailed { client_id, user_id, reason } => {
            tracing::warn!(target: "audit", request_id = %CurrentRequestId, client_id, user_id, reason, "service authentication failed")
        }
        AuditEvent::OAuthClientAuthFailed { client_id, reason } => {
            tracing::warn!(target: "audit", request_id = %CurrentRequestId, client_id, reason, "oauth client authentication failed")
        }
        AuditEvent::OAuthTokenIssued { client_id, grant_type, audience, jti } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, client_id, grant_type, audience, jti, "oauth token issued")
        }
        AuditEvent::ResourceServerChanged { id, action } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, id, action, "resource server changed")
        }
        AuditEvent::ManagementAction { actor_id, resource, id, user_id, action } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, actor_id, resource, id, user_id, action, "management action")
        }
        AuditEvent::ClientGrantChanged { id, client_id, audience, action } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, id, client_id, audience, action, "client grant changed")
        }
        AuditEvent::OAuthClientChanged { client_id, action } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, client_id, action, "oauth client changed")
        }
        AuditEvent::ServiceClientChanged { client_id, action } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, client_id, action, "service client changed")
        }
        AuditEvent::ServiceUserChanged { client_id, user_id, action } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, client_id, user_id, action, "service user changed")
        }
        AuditEvent::TokenIssued { client_id, user_id, jti } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, client_id, user_id, jti, "token issued")
        }
        AuditEvent::TokenRevoked { client_id, jti, reason } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, client_id, jti, reason, "token revoked")
        }
        AuditEvent::OAuthCodeIssued { client_id, user_id, scope } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, client_id, user_id, scope, "oauth code issued")
        }
        AuditEvent::OAuthConsent { client_id, user_id, scope, allowed } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, client_id, user_id, scope, allowed, "oauth consent")
        }
        AuditEvent::CsrfRefused { page } => {
            tracing::warn!(target: "audit", request_id = %CurrentRequestId, page, "csrf token refused")
        }
        AuditEvent::OAuthReuseDetected { client_id, grant_id, what } => {
            tracing::warn!(target: "audit", request_id = %CurrentRequestId, client_id, grant_id, what, "oauth reuse detected: grant revoked")
        }
        AuditEvent::OAuthGrantRefused { client_id, reason } => {
            tracing::warn!(target: "audit", request_id = %CurrentRequestId, client_id, reason, "oauth grant refused")
        }
        AuditEvent::OAuthRefreshRetried { client_id, grant_id } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, client_id, grant_id, "oauth refresh retried within the leeway")
        }
        AuditEvent::OAuthTokenRevoked { client_id, what } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, client_id, what, "oauth token revoked")
        }
        AuditEvent::BffVendorChanged { vendor_id, action } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, vendor_id, action, "token handler vendor changed")
        }
        AuditEvent::BffSignedIn { vendor_id, sub } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, vendor_id, sub, "token handler sign-in")
        }
        AuditEvent::BffSignedOut { vendor_id } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, vendor_id, "token handler sign-out")
        }
        AuditEvent::SocialSignInSucceeded { user_id, provider } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, user_id, provider, "social sign-in succeeded")
        }
        AuditEvent::SocialSignInFailed { provider, reason } => {
            tracing::warn!(target: "audit", request_id = %CurrentRequestId, provider, reason, "social sign-in failed")
        }
        AuditEvent::SocialAccountLinked { user_id, provider } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, user_id, provider, "social account linked")
        }
        AuditEvent::SocialAccountUnlinked { user_id, provider } => {
            tracing::info!(target: "audit", request_id = %CurrentRequestId, user_id, provider, "account unlinked")
        }
    }
}

/// Deletes the records older than `before`, a batch at a time so that no statement holds the table for
/// long (maintenance). Returns how many went.
pub async fn cleanup(
    db: &crate::storage::Db,
    before: crate::clock::Millis,
) -> Result<u64, crate::storage::StorageError> {
    const BATCH: i64 = 5_000;
    let mut removed = 0;
    loop {
        let done = store::cleanup(db, before, BATCH).await?;
        removed += done;
        if done < BATCH as u64 {
            return Ok(removed);
        }
    }
}

/// Where the events of a request go, and what is known of its caller (set by the route layer, carried
/// into tasks with [`propagate`]).
#[derive(Clone, Debug)]
pub struct AuditContext {
    pub sink: AuditSink,
    /// The caller's address as this server determined it (socket, or a trusted proxy's word).
    pub ip: Option<IpAddr>,
    pub user_agent: Option<HeaderValue>,
    pub request_id: Option<HeaderValue>,
}

tokio::task_local! {
    static CONTEXT: Option<Arc<AuditContext>>;
}

/// Runs `future` with `context` as the place its audit events go.
pub fn scope<F: std::future::Future>(
    context: Option<Arc<AuditContext>>,
    future: F,
) -> tokio::task::futures::TaskLocalFuture<Option<Arc<AuditContext>>, F> {
    CONTEXT.scope(context, future)
}

/// Wraps `future` (about to be spawned) so that its events go where the current request's go.
pub fn propagate<F: std::future::Future>(
    future: F,
) -> tokio::task::futures::TaskLocalFuture<Option<Arc<AuditContext>>, F> {
    CONTEXT.scope(CONTEXT.try_with(Clone::clone).ok().flatten(), future)
}

/// One stored audit event (a row of `audit_log`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `log_…`.
    pub id: String,
    pub at: crate::clock::Millis,
    /// Auth0's log type code where the event is one of Auth0's (`s`, `f`, `ss`, `slo`, `seccft`, `seacft`,
    /// `sertft`, `ferrt`, `srrt`, `sapi`), else Latchkey's own snake_case name.
    pub kind: String,
    pub description: String,
    /// `success` or `failure`.
    pub outcome: String,
    pub actor_id: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// The event's other fields, as a JSON object.
    pub details: Map<String, Value>,
}

/// What an event says, before the caller's side is added.
struct Parts {
    kind: &'static str,
    description: String,
    failure: bool,
    actor_id: Option<String>,
    user_id: Option<String>,
    client_id: Option<String>,
    details: Value,
}

impl Parts {
    fn new(kind: &'static str, description: impl Into<String>) -> Parts {
        Parts {
            kind,
            description: description.into(),
            failure: false,
            actor_id: None,
            user_id: None,
            client_id: None,
            details: json!({}),
        }
    }
    fn failed(mut self) -> Parts {
        self.failure = true;
        self
    }
    fn actor(mut self, id: &str) -> Parts {
        self.actor_id = Some(id.to_owned());
        self
    }
    fn user(mut self, id: Option<&str>) -> Parts {
        self.user_id = id.map(str::to_owned);
        self
    }
    fn client(mut self, id: Option<&str>) -> Parts {
        self.client_id = id.map(str::to_owned);
        self
    }
    fn details(mut self, details: Value) -> Parts {
        self.details = details;
        self
    }
}

/// A resource code as the start of a description: `signing_key` → `Signing key`.
fn resource_words(resource: &str) -> String {
    let words = resource.replace('_', " ");
    let mut chars = words.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// An action code as words for a description: `member.removed` → `member removed`.
fn action_words(action: &str) -> String {
    action.replace(['_', '.'], " ")
}

impl AuditEvent<'_> {
    /// The event as a row, with the caller's side from `context`, timed by the sink's clock.
    fn record(&self, context: &AuditContext) -> Record {
        let parts = self.parts();
        let text = |value: &Option<HeaderValue>| value.as_ref().and_then(|v| v.to_str().ok()).map(str::to_owned);
        Record {
            id: crate::crypto::new_id("log"),
            at: context.sink.clock().now(),
            kind: parts.kind.to_owned(),
            description: parts.description,
            outcome: if parts.failure { "failure" } else { "success" }.to_owned(),
            actor_id: parts.actor_id,
            user_id: parts.user_id,
            client_id: parts.client_id,
            ip: context.ip.map(|ip| ip.to_string()),
            user_agent: text(&context.user_agent).map(|agent| agent.chars().take(512).collect()),
            request_id: text(&context.request_id).filter(|id| !id.is_empty()),
            details: match parts.details {
                Value::Object(map) => map,
                _ => Map::new(),
            },
        }
    }

    fn parts(&self) -> Parts {
        match *self {
            AuditEvent::UserCreated { user_id } => Parts::new("ss", "Success Signup").user(Some(user_id)),
            AuditEvent::SignInSucceeded { user_id } => Parts::new("s", "Success Login").user(Some(user_id)),
            AuditEvent::SignInFailed { reason } => {
                Parts::new("f", "Failed Login").failed().details(json!({ "reason": reason }))
            }
            AuditEvent::SessionCreated { user_id, session_id } => Parts::new("session_created", "Session created")
                .user(Some(user_id))
                .details(json!({ "session_id": session_id })),
            AuditEvent::SessionsRevoked { user_id, count, reason } => {
                let kind = if reason == "sign_out" { "slo" } else { "sessions_revoked" };
                let description = if reason == "sign_out" { "Success Logout" } else { "Sessions revoked" };
                Parts::new(kind, description).user(Some(user_id)).details(json!({ "count": count, "reason": reason }))
            }
            AuditEvent::ApiKeyChanged { actor_id, key_id, action } => {
                Parts::new("api_key_changed", format!("API key {}", action_words(action)))
                    .actor(actor_id)
                    .details(json!({ "key_id": key_id, "action": action }))
            }
            AuditEvent::ApiKeyRefused { key_id, reason } => Parts::new("api_key_refused", "API key refused")
                .failed()
                .details(json!({ "key_id": key_id, "reason": reason })),
            AuditEvent::OrganizationChanged { actor_id, organization_id, action, target } => {
                Parts::new("organization_changed", format!("Organization {}", action_words(action)))
                    .actor(actor_id)
                    .details(json!({ "organization_id": organization_id, "action": action, "target": target }))
            }
            AuditEvent::ExtensionTokenIssued { user_id, organization_id, extension_id, jti } => {
                Parts::new("extension_token_issued", "Extension token issued")
                    .user(Some(user_id))
                    .details(json!({ "organization_id": organization_id, "extension_id": extension_id, "jti": jti }))
            }
            AuditEvent::ServiceAuthFailed { client_id, user_id, reason } => {
                Parts::new("service_auth_failed", "Service credential refused")
                    .failed()
                    .client(client_id)
                    .details(json!({ "service_user_id": user_id, "reason": reason }))
            }
            AuditEvent::ServiceClientChanged { client_id, action } => {
                Parts::new("service_client_changed", format!("Service client {}", action_words(action)))
                    .actor("master")
                    .client(Some(client_id))
                    .details(json!({ "action": action }))
            }
            AuditEvent::OAuthClientChanged { client_id, action } => {
                Parts::new("sapi", format!("Client {}", action_words(action)))
                    .client(Some(client_id))
                    .details(json!({ "resource": "client", "action": action }))
            }
            AuditEvent::OAuthClientAuthFailed { client_id, reason } => {
                Parts::new("oauth_client_auth_failed", "Client authentication failed")
                    .failed()
                    .client(client_id)
                    .details(json!({ "reason": reason }))
            }
            AuditEvent::OAuthTokenIssued { client_id, grant_type, audience, jti } => {
                let (kind, description) = match grant_type {
                    "client_credentials" => ("seccft", "Success Exchange (client credentials for access token)"),
                    "authorization_code" => ("seacft", "Success Exchange (authorization code for access token)"),
                    "refresh_token" => ("sertft", "Success Exchange (refresh token for access token)"),
                    _ => ("oauth_token_issued", "Access token issued"),
                };
                Parts::new(kind, description)
                    .client(Some(client_id))
                    .details(json!({ "grant_type": grant_type, "audience": audience, "jti": jti }))
            }
            AuditEvent::ResourceServerChanged { id, action } => {
                Parts::new("sapi", format!("API {}", action_words(action)))
                    .details(json!({ "resource": "resource_server", "id": id, "action": action }))
            }
            AuditEvent::ManagementAction { actor_id, resource, id, user_id, action } => {
                Parts::new("sapi", format!("{} {}", resource_words(resource), action_words(action)))
                    .actor(actor_id)
                    .user(user_id)
                    .details(json!({ "resource": resource, "id": id, "action": action }))
            }
            AuditEvent::ClientGrantChanged { id, client_id, audience, action } => {
                Parts::new("sapi", format!("Client grant {}", action_words(action)))
                    .client(Some(client_id))
                    .details(json!({ "resource": "client_grant", "id": id, "audience": audience, "action": action }))
            }
            AuditEvent::ServiceUserChanged { client_id, user_id, action } => {
                Parts::new("service_user_changed", format!("Service user {}", action_words(action)))
                    .actor(client_id)
                    .client(Some(client_id))
                    .details(json!({ "service_user_id": user_id, "action": action }))
            }
            AuditEvent::TokenIssued { client_id, user_id, jti } => {
                Parts::new("service_token_issued", "Service token issued")
                    .client(Some(client_id))
                    .details(json!({ "service_user_id": user_id, "jti": jti }))
            }
            AuditEvent::TokenRevoked { client_id, jti, reason } => {
                Parts::new("service_token_revoked", "Service token revoked")
                    .actor(client_id)
                    .client(Some(client_id))
                    .details(json!({ "jti": jti, "reason": reason }))
            }
            AuditEvent::OAuthCodeIssued { client_id, user_id, scope } => {
                Parts::new("oauth_code_issued", "Authorization code issued")
                    .user(Some(user_id))
                    .client(Some(client_id))
                    .details(json!({ "scope": scope }))
            }
            AuditEvent::OAuthConsent { client_id, user_id, scope, allowed } => {
                let description = if allowed { "Consent given" } else { "Consent denied" };
                let parts = Parts::new("oauth_consent", description)
                    .user(Some(user_id))
                    .client(Some(client_id))
                    .details(json!({ "scope": scope, "allowed": allowed }));
                if allowed {
                    parts
                } else {
                    parts.failed()
                }
            }
            AuditEvent::CsrfRefused { page } => Parts::new("csrf_refused", "Form refused: no matching CSRF token")
                .failed()
                .details(json!({ "page": page })),
            AuditEvent::OAuthReuseDetected { client_id, grant_id, what } => {
                let (kind, description) = if what == "refresh_token" {
                    ("ferrt", "Failed Exchange (rotated refresh token reused: family revoked)")
                } else {
                    ("oauth_reuse_detected", "Used authorization code presented again: grant revoked")
                };
                Parts::new(kind, description)
                    .failed()
                    .client(Some(client_id))
                    .details(json!({ "grant_id": grant_id, "what": what }))
            }
            AuditEvent::OAuthGrantRefused { client_id, reason } => Parts::new("oauth_grant_refused", "Grant refused")
                .failed()
                .client(Some(client_id))
                .details(json!({ "reason": reason })),
            AuditEvent::OAuthRefreshRetried { client_id, grant_id } => {
                Parts::new("oauth_refresh_retried", "Refresh token retried within the leeway")
                    .client(Some(client_id))
                    .details(json!({ "grant_id": grant_id }))
            }
            AuditEvent::OAuthTokenRevoked { client_id, what } => {
                let (kind, description) = if what == "refresh_token" {
                    ("srrt", "Success Revocation (refresh token)")
                } else {
                    ("oauth_token_revoked", "Access token revoked")
                };
                Parts::new(kind, description).actor(client_id).client(Some(client_id)).details(json!({ "what": what }))
            }
            AuditEvent::BffVendorChanged { vendor_id, action } => {
                Parts::new("sapi", format!("Token handler vendor {}", action_words(action)))
                    .details(json!({ "resource": "token_handler", "vendor_id": vendor_id, "action": action }))
            }
            AuditEvent::BffSignedIn { vendor_id, sub } => Parts::new("bff_sign_in", "Token handler sign-in")
                .details(json!({ "vendor_id": vendor_id, "sub": sub })),
            AuditEvent::BffSignedOut { vendor_id } => {
                Parts::new("bff_sign_out", "Token handler sign-out").details(json!({ "vendor_id": vendor_id }))
            }
            AuditEvent::SocialSignInSucceeded { user_id, provider } => {
                Parts::new("s", "Success Login").user(Some(user_id)).details(json!({ "connection": provider }))
            }
            AuditEvent::SocialSignInFailed { provider, reason } => {
                Parts::new("f", "Failed Login").failed().details(json!({ "connection": provider, "reason": reason }))
            }
            AuditEvent::SocialAccountLinked { user_id, provider } => {
                Parts::new("sui", "Account linked").user(Some(user_id)).details(json!({ "connection": provider }))
            }
            AuditEvent::SocialAccountUnlinked { user_id, provider } => {
                Parts::new("sui", "Account unlinked").user(Some(user_id)).details(json!({ "connection": provider }))
            }
        }
    }
}
