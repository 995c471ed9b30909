//! Capability 5, the OAuth 2.0 / OpenID Connect provider in Auth0's wire format (DESIGN.md "Capability 5"
//! and its contract details). Built so far: the client registry ([`clients`]) and the APIs with their client grants
//! ([`apis`]), managed through `/api/v2` (`crate::management`) and `latchkey admin`, and the token
//! endpoint with the client-credentials grant ([`token`]).

pub mod apis;
pub mod clients;
pub mod routes;
pub mod store;
pub mod token;

/// The URL paths of the OAuth endpoints.
pub mod paths {
    /// `POST` tokens (form or JSON).
    pub const TOKEN: &str = "/oauth/token";
}
