//! Capability 5, the OAuth 2.0 / OpenID Connect provider in Auth0's wire format (DESIGN.md "Capability 5"
//! and its contract details). Built so far: the client registry ([`clients`]) and the APIs with their client grants
//! ([`apis`]), managed through `/api/v2` (`crate::management`) and `latchkey admin`.

pub mod apis;
pub mod clients;
pub mod store;
