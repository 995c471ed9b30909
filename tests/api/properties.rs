//! Property tests (issue 15, item 3) of the parsers a client reaches with whatever it likes: cookie
//! headers, `Authorization` (Basic and Bearer), signed cookie values, sealed cookie values, emails, and the
//! token-type sniffing of bearer credentials. None may panic, and none may accept what it did not make.

use axum::http::{header, HeaderMap, HeaderValue};
use latchkey::{accounts::email::Email, crypto, http::cookies, principal::credentials};
use proptest::prelude::*;

fn headers(name: header::HeaderName, value: &str) -> Option<HeaderMap> {
    let value = HeaderValue::from_str(value).ok()?;
    let mut map = HeaderMap::new();
    map.insert(name, value);
    Some(map)
}

/// Visible ASCII and spaces: what a header value may carry, `;`, `=`, `%` and quotes included.
fn header_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ -~]{0,200}").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn cookie_headers_never_panic_and_find_only_what_was_sent(raw in header_text(), value in "[A-Za-z0-9._~-]{1,64}") {
        if let Some(map) = headers(header::COOKIE, &raw) {
            let _ = cookies::get(&map, "latchkey.session_token");
            if let Some(found) = cookies::get_raw(&map, "latchkey.session_token") {
                prop_assert!(raw.contains(found));
                let _ = cookies::decode(found);
            }
        }
        // A cookie among others is found exactly.
        let line = format!("a=1; latchkey.session_token={value}; b=2");
        let map = headers(header::COOKIE, &line).unwrap();
        prop_assert_eq!(cookies::get_raw(&map, "latchkey.session_token"), Some(value.as_str()));
    }

    #[test]
    fn authorization_headers_never_panic(raw in header_text()) {
        if let Some(map) = headers(header::AUTHORIZATION, &raw) {
            let bearer = credentials::bearer_token(&map);
            prop_assert!(bearer.is_none() || raw.to_ascii_lowercase().starts_with("bearer "));
            let basic = credentials::basic(&map);
            prop_assert!(basic.is_none() || raw.to_ascii_lowercase().starts_with("basic "));
            if let Some(token) = bearer {
                let _ = latchkey::oauth::access::is_access_token(token);
            }
        }
    }

    #[test]
    fn basic_credentials_round_trip(user in "[^:\\x00]{0,40}", password in ".{0,80}") {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let map = headers(header::AUTHORIZATION, &format!("Basic {encoded}")).unwrap();
        let (got_user, got_password) = credentials::basic(&map).expect("well-formed Basic credentials");
        prop_assert_eq!(got_user, user);
        prop_assert_eq!(got_password.expose(), password.as_str());
    }

    #[test]
    fn signed_cookie_values_verify_only_untouched(
        key in proptest::collection::vec(any::<u8>(), 32),
        value in "[ -~]{0,100}",
        forged in header_text(),
        flip in any::<usize>(),
    ) {
        let signed = crypto::sign_cookie_value(&key, &value);
        prop_assert_eq!(crypto::verify_cookie_value(&key, &signed), Some(value.as_str()));
        // Arbitrary text is not a signed value.
        prop_assert!(crypto::verify_cookie_value(&key, &forged).is_none() || forged == signed);
        // Any changed character of a signed value makes it refused.
        let mut bytes = signed.clone().into_bytes();
        let at = flip % bytes.len();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(bytes).unwrap();
        prop_assert!(changed == signed || crypto::verify_cookie_value(&key, &changed).is_none());
    }

    #[test]
    fn sealed_values_open_only_untouched_under_their_associated_data(
        plaintext in proptest::collection::vec(any::<u8>(), 0..200),
        aad in "[a-z:-]{0,40}",
        flip in any::<usize>(),
        garbage in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let key = crypto::derive_key(b"property-test-secret", "sealing");
        let sealed = crypto::seal(&key, aad.as_bytes(), &plaintext);
        prop_assert_eq!(crypto::open(&key, aad.as_bytes(), &sealed), Some(plaintext.clone()));
        let mut flipped = sealed.clone();
        let at = flip % flipped.len();
        flipped[at] ^= 0x01;
        prop_assert!(crypto::open(&key, aad.as_bytes(), &flipped).is_none(), "a flipped byte");
        prop_assert!(crypto::open(&key, format!("{aad}x").as_bytes(), &sealed).is_none(), "other associated data");
        prop_assert!(crypto::open(&key, aad.as_bytes(), &sealed[..sealed.len() - 1]).is_none(), "truncated");
        prop_assert!(crypto::open(&key, aad.as_bytes(), &garbage).is_none() || garbage == sealed);
    }

    #[test]
    fn emails_parse_to_a_normal_form_that_parses_to_itself(raw in "\\PC{0,80}", local in "[a-zA-Z0-9._+-]{1,20}", domain in "[a-zA-Z0-9-]{1,20}\\.[a-zA-Z]{2,6}") {
        if let Some(email) = Email::parse(&raw) {
            let normal = email.as_str();
            prop_assert_eq!(normal.trim(), normal);
            prop_assert_eq!(normal.to_lowercase(), normal);
            prop_assert_eq!(Email::parse(normal).map(|e| e.as_str().to_owned()), Some(normal.to_owned()));
            prop_assert!(normal.len() <= 254 && normal.contains('@'));
        }
        let candidate = format!("  {local}@{domain} ");
        if let Some(email) = Email::parse(&candidate) {
            prop_assert_eq!(email.as_str(), candidate.trim().to_lowercase());
        }
    }
}

/// Claims with the time fields the ring checks.
#[derive(serde::Deserialize)]
struct Claims {
    exp: i64,
    iat: i64,
    nbf: Option<i64>,
}

impl latchkey::tokens::TimeClaims for Claims {
    fn exp(&self) -> i64 {
        self.exp
    }
    fn iat(&self) -> i64 {
        self.iat
    }
    fn nbf(&self) -> Option<i64> {
        self.nbf
    }
}

/// The key ring verifies only what it signed, untouched: arbitrary text, and a signed token with any one
/// character replaced by another of the base64url alphabet (header, claims or signature), are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_verify_only_as_signed() {
    use latchkey::tokens::{Algorithm, Expectation};
    use proptest::test_runner::{Config, TestRunner};
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await.unwrap();
    let ring = &app.state.tokens.key_ring;
    let now = app.clock.now();
    let expected = Expectation::new("https://issuer.example/", "orders", 0);
    let claims = serde_json::json!({"iss": "https://issuer.example/", "aud": "orders", "sub": "usr_1",
        "iat": now / 1000, "exp": now / 1000 + 600});
    let token = ring.sign(Algorithm::Rs256, &claims).unwrap();
    assert!(ring.verify::<Claims>(&token, &expected, now).is_ok(), "the token as signed verifies");
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    let mut runner = TestRunner::new(Config { cases: 512, ..Config::default() });
    let strategy = (header_text(), any::<usize>(), any::<usize>());
    runner
        .run(&strategy, |(garbage, at, replacement)| {
            prop_assert!(ring.verify::<Claims>(&garbage, &expected, now).is_err());
            let mut bytes = token.clone().into_bytes();
            let at = at % bytes.len();
            if bytes[at] == b'.' {
                return Ok(());
            }
            let replacement = ALPHABET[replacement % ALPHABET.len()];
            if replacement == bytes[at] {
                return Ok(());
            }
            bytes[at] = replacement;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(ring.verify::<Claims>(&changed, &expected, now).is_err(), "position {at} changed");
            Ok(())
        })
        .unwrap();
}
