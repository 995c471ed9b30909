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

/// Any JSON value, a few levels deep, with the strings and numbers clients get wrong.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::from),
        Just(Value::from("a@example.com")),
        Just(Value::from("correct horse battery staple")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("email".to_owned()),
                    Just("password".to_owned()),
                    Just("name".to_owned()),
                    Just("organizationId".to_owned()),
                    Just("keyId".to_owned()),
                    Just("scopes".to_owned()),
                    Just("expiresIn".to_owned()),
                    Just("metadata".to_owned()),
                    "[a-zA-Z_]{1,12}",
                ],
                inner,
                0..5
            )
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Arbitrary JSON bodies (and arbitrary bytes) at the JSON endpoints, signed in and with the master
/// credentials: every answer is a 2xx or a 4xx with a JSON error body, never a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_bodies_get_a_4xx_json_error_never_a_5xx() {
    use latchkey::paths;
    use proptest::test_runner::{Config, TestRunner};
    let app = crate::helpers::spawn_app_with(crate::helpers::Backend::Sqlite, |settings| {
        crate::helpers::with_master_credentials(settings);
    })
    .await
    .unwrap();
    app.sign_up("alice@example.com").await;
    let endpoints = [
        paths::SIGN_UP_EMAIL,
        paths::SIGN_IN_EMAIL,
        paths::API_KEY_CREATE,
        paths::API_KEY_UPDATE,
        paths::API_KEY_VERIFY,
        paths::ORG_CREATE,
        paths::ORG_SET_ACTIVE,
        paths::EXTENSION_TOKEN,
        paths::EXTENSION_VERIFY,
        paths::MGMT_USERS,
        paths::MGMT_ORGANIZATIONS,
        paths::MGMT_CLIENTS,
        paths::V1_CLIENTS,
    ];
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config { cases: 120, ..Config::default() });
    let strategy = (json_value(), any::<usize>(), proptest::collection::vec(any::<u8>(), 0..64), any::<bool>());
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |(body, which, bytes, raw)| {
            let path = endpoints[which % endpoints.len()];
            let (status, text) = handle.block_on(async {
                let request = if path.starts_with("/api/v2/") || path.starts_with("/v1/") {
                    crate::helpers::master(&app, reqwest::Method::POST, path)
                } else {
                    app.client.post(app.url(path)).header(header::ORIGIN, crate::helpers::ORIGIN)
                };
                let request = if raw {
                    request.header(header::CONTENT_TYPE, "application/json").body(bytes)
                } else {
                    request.json(&body)
                };
                let response = request.send().await.unwrap();
                (response.status(), response.text().await.unwrap())
            });
            prop_assert!(!status.is_server_error(), "{path} answered {status}: {text}");
            if status.is_client_error() {
                let error: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let has_code = error.get("code").or(error.get("errorCode")).or(error.get("error")).is_some();
                prop_assert!(has_code, "{path} answered {status} without a JSON error: {text}");
            }
            Ok(())
        })
    });
    result.unwrap();
}

/// Redirect-URI matching: `/authorize` with the registered callback changed anywhere (one character
/// replaced, inserted or removed) answers Latchkey's own 400 page, never a redirect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_changed_redirect_uri_gets_the_error_page_never_a_redirect() {
    use crate::oauth_flow::{authorize_url, oauth_client, CALLBACK};
    use proptest::test_runner::{Config, TestRunner};
    let app = crate::helpers::spawn_app_with(crate::helpers::Backend::Sqlite, crate::helpers::with_master_credentials)
        .await
        .unwrap();
    let spa = oauth_client(&app, "spa", serde_json::json!({})).await;
    let id = spa["client_id"].as_str().unwrap().to_owned();
    let browser = crate::helpers::new_client();
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config { cases: 200, ..Config::default() });
    let strategy = (any::<usize>(), any::<char>(), 0..3u8);
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |(at, c, how)| {
            let mut chars: Vec<char> = CALLBACK.chars().collect();
            let at = at % chars.len();
            match how {
                0 => chars[at] = c,
                1 => chars.insert(at, c),
                _ => {
                    chars.remove(at);
                }
            }
            let changed: String = chars.into_iter().collect();
            if changed == CALLBACK {
                return Ok(());
            }
            let url = authorize_url(&app, &id, &[("redirect_uri", changed.as_str())]);
            let response = handle.block_on(browser.get(url).send()).unwrap();
            prop_assert_eq!(response.status().as_u16(), 400, "{:?}", changed);
            prop_assert!(response.headers().get(header::LOCATION).is_none(), "a redirect for {:?}", changed);
            Ok(())
        })
    });
    result.unwrap();
    let registered = browser.get(authorize_url(&app, &id, &[])).send().await.unwrap();
    assert_eq!(registered.status(), 302, "the registered callback itself goes on to sign-in");
}
