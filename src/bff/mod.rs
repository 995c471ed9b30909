//! Capability 6, the backend-for-frontend token handler (DESIGN.md "Capability 6", issue 13): single-page
//! apps sign in through Latchkey and never hold a token; the tokens live in encrypted, `HttpOnly` cookies
//! that only this server can read.
//!
//! Built so far: the cookie sealing every handler cookie goes through ([`cookies`]). Next (issue 13): the
//! vendor configuration (`/management/vendors/{vendorId}/token-handler`, per-vendor sealed keys and their
//! rotation), login and callback, session, refresh and logout, the API proxy and the gateway check.

pub mod cookies;

/// True for a vendor id the contract allows: `[a-z0-9-]{1,64}`.
pub fn is_vendor_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    #[test]
    fn vendor_ids_are_lowercase_letters_digits_and_dashes() {
        for good in ["acme", "acme-2", "a", &"a".repeat(64)] {
            assert!(super::is_vendor_id(good), "{good}");
        }
        for bad in ["", "Acme", "acme_2", "acme.com", "a/b", "ä", &"a".repeat(65)] {
            assert!(!super::is_vendor_id(bad), "{bad}");
        }
    }
}
