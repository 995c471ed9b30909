//! Capability 5, the OAuth 2.0 / OpenID Connect provider in Auth0's wire format (DESIGN.md "Capability 5"
//! and its contract details). Built so far: the client registry ([`clients`]), managed through
//! `/api/v2/clients` (`crate::management`) and `latchkey admin create-oauth-client`.

pub mod clients;
pub mod store;
