//! The handler's cookie values (DESIGN.md "Contract details → Capability 6"): `base64url(nonce ‖
//! AES-256-GCM ciphertext ‖ tag)` under the vendor's key, with the vendor id and the cookie's name as
//! associated data, so a value never opens for another vendor or as another cookie (an `at` presented as
//! `rt`, vendor A's cookie at vendor B). The plaintext starts with the value's own expiry (8 bytes, unix ms,
//! big-endian): a cookie's `Max-Age` is the browser's to keep, this one is the server's. A vendor's keys
//! rotate; a retired key still opens values until the last cookie it sealed has expired.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

use crate::{clock::Millis, crypto};

/// One of a vendor's keys.
pub struct VendorKey {
    pub key: [u8; 32],
    /// `None` for the current key; for a retired one, until when it still opens values.
    pub opens_until: Option<Millis>,
}

impl std::fmt::Debug for VendorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorKey").field("key", &"***").field("opens_until", &self.opens_until).finish()
    }
}

/// The associated data: the vendor id (`[a-z0-9-]`, so no NUL), NUL, the cookie name.
fn context(vendor_id: &str, cookie_name: &str) -> Vec<u8> {
    [vendor_id.as_bytes(), b"\0", cookie_name.as_bytes()].concat()
}

/// Seals `value` as the cookie `cookie_name` of `vendor_id`, valid until `expires_at` (unix ms).
pub fn seal(key: &[u8; 32], vendor_id: &str, cookie_name: &str, value: &str, expires_at: Millis) -> String {
    let plaintext = [&expires_at.to_be_bytes()[..], value.as_bytes()].concat();
    URL_SAFE_NO_PAD.encode(crypto::seal(key, &context(vendor_id, cookie_name), &plaintext))
}

/// Opens a cookie value with the first of `keys` that can, if it has not expired at `now`; `None` for
/// anything tampered, truncated, sealed for another vendor or cookie, sealed with a key past its window,
/// or expired.
pub fn open(keys: &[VendorKey], vendor_id: &str, cookie_name: &str, sealed: &str, now: Millis) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    let aad = context(vendor_id, cookie_name);
    let plaintext = keys
        .iter()
        .filter(|key| key.opens_until.is_none_or(|until| now < until))
        .find_map(|key| crypto::open(&key.key, &aad, &bytes))?;
    let (expiry, value) = plaintext.split_at_checked(8)?;
    let expires_at = Millis::from_be_bytes(expiry.try_into().ok()?);
    if now >= expires_at {
        return None;
    }
    String::from_utf8(value.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_800_000_000_000;

    fn current(byte: u8) -> VendorKey {
        VendorKey { key: [byte; 32], opens_until: None }
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_vendor_and_cookie_until_it_expires() {
        let keys = [current(7)];
        let sealed = seal(&keys[0].key, "acme", "__Secure-at", "token-1", NOW + 1_000);
        assert_eq!(open(&keys, "acme", "__Secure-at", &sealed, NOW).as_deref(), Some("token-1"));
        assert!(!sealed.contains("token-1") && !sealed.contains('='), "{sealed}");
        assert_eq!(open(&keys, "other", "__Secure-at", &sealed, NOW), None, "vendor A's cookie at vendor B");
        assert_eq!(open(&keys, "acme", "__Host-rt", &sealed, NOW), None, "an access-token cookie as the refresh one");
        assert_eq!(open(&keys, "acme", "__Secure-at", &sealed, NOW + 1_000), None, "expired");
        assert_eq!(open(&[current(8)], "acme", "__Secure-at", &sealed, NOW), None, "another vendor's key");
    }

    #[test]
    fn any_change_to_a_sealed_value_is_refused() {
        let keys = [current(7)];
        let sealed = seal(&keys[0].key, "acme", "__Host-rt", "refresh", NOW + 60_000);
        let bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x01;
            assert_eq!(open(&keys, "acme", "__Host-rt", &URL_SAFE_NO_PAD.encode(&flipped), NOW), None, "byte {i}");
        }
        for cut in [0, 1, 12, bytes.len() - 1] {
            let truncated = URL_SAFE_NO_PAD.encode(&bytes[..cut]);
            assert_eq!(open(&keys, "acme", "__Host-rt", &truncated, NOW), None, "truncated to {cut}");
        }
        for garbage in ["", "not base64!", "AAAA"] {
            assert_eq!(open(&keys, "acme", "__Host-rt", garbage, NOW), None, "{garbage:?}");
        }
    }

    #[test]
    fn a_retired_key_opens_what_it_sealed_until_its_window_ends() {
        let old = VendorKey { key: [1; 32], opens_until: Some(NOW + 10_000) };
        let keys = [current(2), old];
        let sealed = seal(&[1; 32], "acme", "__Secure-at", "old-token", NOW + 60_000);
        assert_eq!(open(&keys, "acme", "__Secure-at", &sealed, NOW).as_deref(), Some("old-token"));
        assert_eq!(open(&keys, "acme", "__Secure-at", &sealed, NOW + 10_000), None, "the retired key's window is over");
        let fresh = seal(&keys[0].key, "acme", "__Secure-at", "new-token", NOW + 60_000);
        assert_eq!(open(&keys, "acme", "__Secure-at", &fresh, NOW + 10_000).as_deref(), Some("new-token"));
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        assert!(!format!("{:?}", current(65)).contains("65"));
    }
}
