//! Security events, a category of their own (DESIGN.md "Cross-cutting"): typed, emitted through one
//! function as `tracing` events with target `audit`, and never carrying a secret — only ids and reasons.
//! (Storing and querying them comes with the management API.)

use crate::telemetry::CurrentRequestId;

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
}

/// Emits an audit event (with the current request's id).
pub fn emit(event: AuditEvent<'_>) {
    match event {
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
    }
}
