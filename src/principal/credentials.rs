//! Reading credentials off a request, in one place: the bearer token and Basic credentials of
//! `Authorization`, and the `x-api-key` header. What they are worth is decided by the extractors (`principal::extractors`) and,
//! for service tokens, by the service-token API.

use axum::http::{header, HeaderMap, HeaderName};
use base64::{engine::general_purpose::STANDARD, Engine};

use crate::crypto::secret::Secret;

/// The token of `Authorization: Bearer <token>`, trimmed. The scheme name is case-insensitive (RFC 9110
/// §11.1): `bearer` and `BEARER` are read as `Bearer`.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// `Authorization: Basic base64(user:password)`, decoded (the scheme name in any case).
pub fn basic(headers: &HeaderMap) -> Option<(String, Secret)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), Secret::new(password)))
}

/// The `x-api-key` header, trimmed; a value that is not visible ASCII reads as empty (and is refused as
/// an unknown key).
pub fn api_key(headers: &HeaderMap) -> Option<&str> {
    // A prebuilt name: `get("x-api-key")` parses the string on every call.
    static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
    headers.get(&X_API_KEY).map(|v| v.to_str().unwrap_or_default().trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case_and_other_schemes_are_not() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        assert_eq!(bearer_token(&with("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&with("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&with("BEARER abc")), Some("abc"));
        assert_eq!(bearer_token(&with("Basic abc")), None);
        assert_eq!(bearer_token(&with("Bearerabc")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
