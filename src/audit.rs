//! Security events, a category of their own (DESIGN.md "Cross-cutting"): typed, emitted through one
//! function as `tracing` events with target `audit`, and never carrying a secret — only ids and reasons.
//! (Storing and querying them comes with the management API.)

/// A security-relevant event. Fields are ids and reason codes only.
#[derive(Debug)]
#[allow(missing_docs)]
pub enum AuditEvent<'a> {
    /// A user was created.
    UserCreated { user_id: &'a str },
    /// A sign-in succeeded.
    SignInSucceeded { user_id: &'a str },
    /// A sign-in failed (the email is not logged: it may be a password typed in the wrong field).
    SignInFailed { reason: &'a str },
    /// A session was created.
    SessionCreated { user_id: &'a str, session_id: &'a str },
    /// Sessions were revoked.
    SessionsRevoked { user_id: &'a str, count: usize, reason: &'a str },
}

/// Emits an audit event.
pub fn emit(event: AuditEvent<'_>) {
    match event {
        AuditEvent::UserCreated { user_id } => tracing::info!(target: "audit", user_id, "user created"),
        AuditEvent::SignInSucceeded { user_id } => tracing::info!(target: "audit", user_id, "sign-in succeeded"),
        AuditEvent::SignInFailed { reason } => tracing::warn!(target: "audit", reason, "sign-in failed"),
        AuditEvent::SessionCreated { user_id, session_id } => {
            tracing::info!(target: "audit", user_id, session_id, "session created")
        }
        AuditEvent::SessionsRevoked { user_id, count, reason } => {
            tracing::info!(target: "audit", user_id, count, reason, "sessions revoked")
        }
    }
}
