//! The authorization-code flow of the OAuth / OIDC provider (capability 5), driven as a browser and a
//! client would: discovery, `/authorize` and its refusals, the login, sign-up and consent pages (CSRF,
//! CSP, escaping), codes (PKCE, single use, expiry, reuse revoking what they issued), ID tokens,
//! `/userinfo`, refresh-token rotation with its leeway and reuse detection, and per-client CORS.

use std::collections::HashMap;

use latchkey::paths;
use reqwest::{header, Method, Response};
use serde_json::{json, Value};

use crate::{both_backends, helpers::*};

both_backends!(
    discovery_describes_the_provider,
    code_flow_signs_in_through_the_login_page_and_issues_verifiable_tokens,
    authorize_refuses_unknown_clients_and_redirect_uris_with_a_page,
    authorize_sends_every_other_error_back_with_state,
    codes_are_single_use_bound_and_short_lived,
    refresh_tokens_rotate_with_a_leeway_and_reuse_kills_the_family,
    concurrent_refreshes_all_get_the_same_successor,
    third_party_clients_ask_for_consent_once_per_scope_set,
    login_signup_and_consent_forms_refuse_csrf,
    prompt_login_and_max_age_ask_for_a_new_sign_in,
    the_signup_page_creates_an_account_and_continues,
    token_and_userinfo_answer_cors_for_the_clients_web_origins_only,
    pages_escape_what_they_echo_and_carry_a_strict_csp,
    failed_client_authentication_is_rate_limited,
    revocation_kills_what_the_caller_holds_and_nothing_else,
    introspection_answers_confidential_clients_about_their_tokens,
    logout_ends_the_session_and_redirects_only_to_allowed_urls,
    deleting_a_client_refuses_its_tokens_everywhere,
    per_client_cors_works_beside_the_configured_origins,
    a_gateway_accepts_oauth_access_tokens_at_the_check,
    id_and_access_tokens_use_the_clients_and_the_apis_algorithms,
);

pub const CALLBACK: &str = "https://app.example/callback";
pub const APP_ORIGIN: &str = "https://app.example";
pub const API: &str = "https://api.example.com/orders";
pub const EMAIL: &str = "ada@example.com";
/// A PKCE verifier and its S256 challenge.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K1uDEqaJ7iU9ecLw6NLjb7XEnj";
pub const CHALLENGE: &str = "Eihd0elJro_jAa4mLFnh1idTXjTlIFmR2Z8n01fsLYM";

async fn spawn(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, with_master_credentials).await
}

/// Creates something through the management API (master credentials).
pub async fn mgmt(app: &TestApp, path: &str, body: Value) -> Value {
    let response = master(app, Method::POST, path).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201, "{path} {body}");
    response.json().await.unwrap()
}

/// A client of `app_type` with the test callback and origin; `extra` fields override.
pub async fn oauth_client(app: &TestApp, app_type: &str, extra: Value) -> Value {
    let mut body = json!({"name": "Shop", "app_type": app_type, "callbacks": [CALLBACK],
        "web_origins": [APP_ORIGIN], "allowed_logout_urls": ["https://app.example/bye"]});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    mgmt(app, paths::MGMT_CLIENTS, body).await
}

/// The orders API, offline access allowed.
pub async fn orders_api(app: &TestApp) {
    let scopes = json!([{"value": "read:orders", "description": "Read your orders"}, {"value": "write:orders"}]);
    mgmt(
        app,
        paths::MGMT_RESOURCE_SERVERS,
        json!({"name": "Orders", "identifier": API, "scopes": scopes, "allow_offline_access": true}),
    )
    .await;
}

/// Creates the test user (through the JSON sign-up, with a client that is then thrown away).
pub async fn user(app: &TestApp) {
    let response = bare_client()
        .post(app.url(paths::SIGN_UP_EMAIL))
        .header(header::ORIGIN, ORIGIN)
        .json(&json!({"name": "Ada Lovelace", "email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// An `/authorize` URL for a client with PKCE and the usual parameters; `extra` adds or replaces.
pub fn authorize_url(app: &TestApp, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", CALLBACK),
        ("scope", "openid profile email offline_access"),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    for (name, value) in extra {
        params.retain(|(n, _)| n != name);
        if !value.is_empty() {
            params.push((name, value));
        }
    }
    let mut url = url::Url::parse(&app.url(paths::AUTHORIZE)).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

/// The `Location` of a redirect.
pub fn location(response: &Response) -> String {
    response.headers().get(header::LOCATION).expect("a Location").to_str().unwrap().to_owned()
}

/// The query parameters of a URL.
pub fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

/// A hidden input's value on a page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in {html}")) + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// Follows a same-server redirect.
pub async fn follow(browser: &reqwest::Client, app: &TestApp, response: &Response) -> Response {
    let target = location(response);
    let url = if target.starts_with('/') { app.url(&target) } else { target };
    browser.get(url).send().await.unwrap()
}

/// Signs in on the login page the browser was sent to; returns the answer to the form.
pub async fn sign_in_on_page(browser: &reqwest::Client, app: &TestApp, login: Response, password: &str) -> Response {
    assert_eq!(login.status(), 200);
    let html = login.text().await.unwrap();
    let form = [
        ("state", hidden(&html, "state")),
        ("csrf", hidden(&html, "csrf")),
        ("email", EMAIL.into()),
        ("password", password.into()),
    ];
    browser.post(app.url(paths::LOGIN)).header(header::ORIGIN, ORIGIN).form(&form).send().await.unwrap()
}

/// Runs `/authorize` in a fresh browser through the login page; returns the browser and the final
/// redirect to the client.
pub async fn authorize_with_login(app: &TestApp, url: &str) -> (reqwest::Client, Response) {
    let browser = new_client();
    let start = browser.get(url).send().await.unwrap();
    assert_eq!(start.status(), 302);
    assert!(location(&start).starts_with("/login?state=ltx_"), "{}", location(&start));
    let login = follow(&browser, app, &start).await;
    let signed_in = sign_in_on_page(&browser, app, login, PASSWORD).await;
    assert_eq!(signed_in.status(), 303);
    assert!(location(&signed_in).starts_with("/authorize/resume?state=ltx_"));
    let back = follow(&browser, app, &signed_in).await;
    (browser, back)
}

/// The code in a redirect to the callback (checking `state`).
pub fn code_of(response: &Response) -> String {
    assert_eq!(response.status(), 302, "{:?}", response.headers());
    let to = location(response);
    assert!(to.starts_with(CALLBACK), "{to}");
    let query = query_of(&to);
    assert_eq!(query.get("state").map(String::as_str), Some("st-123"), "{to}");
    query.get("code").unwrap_or_else(|| panic!("no code in {to}")).clone()
}

/// Exchanges a code (public client, PKCE).
pub async fn exchange(app: &TestApp, client_id: &str, code: &str, verifier: &str) -> Response {
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("code", code),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier),
    ];
    bare_client().post(app.url(paths::TOKEN)).form(&form).send().await.unwrap()
}

pub async fn refresh(app: &TestApp, client_id: &str, token: &str) -> Response {
    let form = [("grant_type", "refresh_token"), ("client_id", client_id), ("refresh_token", token)];
    bare_client().post(app.url(paths::TOKEN)).form(&form).send().await.unwrap()
}

pub async fn userinfo(app: &TestApp, access_token: &str) -> Response {
    bare_client().get(app.url(paths::USERINFO)).bearer_auth(access_token).send().await.unwrap()
}

async fn oauth_error(response: Response, status: u16, error: &str) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    body
}

/// A signed-in SPA session: the client id and the token answer.
pub async fn signed_in_spa(app: &TestApp, extra: Value) -> (String, Value) {
    let spa = oauth_client(app, "spa", extra).await;
    let id = spa["client_id"].as_str().unwrap().to_owned();
    user(app).await;
    let (_, back) = authorize_with_login(app, &authorize_url(app, &id, &[])).await;
    let tokens = exchange(app, &id, &code_of(&back), VERIFIER).await;
    assert_eq!(tokens.status(), 200);
    (id, tokens.json().await.unwrap())
}

async fn discovery_describes_the_provider(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let response = bare_client().get(app.url(paths::DISCOVERY)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    let base = app.state.settings.base_url.trim_end_matches('/').to_owned();
    assert_eq!(doc["issuer"], format!("{base}/"));
    for (field, path) in [
        ("authorization_endpoint", paths::AUTHORIZE),
        ("token_endpoint", paths::TOKEN),
        ("userinfo_endpoint", paths::USERINFO),
        ("jwks_uri", paths::JWKS),
    ] {
        assert_eq!(doc[field], format!("{base}{path}"), "{field}");
    }
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    // The JWKS publishes an RS256 key (OIDC's mandatory algorithm) from the start.
    let jwks: Value = bare_client().get(app.url(paths::JWKS)).send().await.unwrap().json().await.unwrap();
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["alg"] == "RS256"), "{jwks}");
}

async fn code_flow_signs_in_through_the_login_page_and_issues_verifiable_tokens(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    orders_api(&app).await;
    let spa = oauth_client(&app, "spa", json!({})).await;
    let id = spa["client_id"].as_str().unwrap();
    user(&app).await;
    let url = authorize_url(
        &app,
        id,
        &[("audience", API), ("scope", "openid profile email offline_access read:orders nope")],
    );
    let (browser, back) = authorize_with_login(&app, &url).await;
    let code = code_of(&back);

    let response = exchange(&app, id, &code, VERIFIER).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "openid profile email offline_access read:orders", "unknown scopes dropped");
    assert!(tokens["refresh_token"].as_str().is_some_and(|t| t.len() > 40));
    let issuer = format!("{}/", app.state.settings.base_url.trim_end_matches('/'));

    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(jwt_part(access, 0)["typ"], "at+jwt");
    let claims = jwt_part(access, 1);
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["aud"], json!([API, format!("{issuer}userinfo")]));
    assert_eq!(claims["azp"], id);
    assert!(claims["sub"].as_str().unwrap().starts_with("usr_"));

    let id_token = tokens["id_token"].as_str().unwrap();
    let header = jwt_part(id_token, 0);
    assert_eq!(header["alg"], "RS256");
    let idc = jwt_part(id_token, 1);
    assert_eq!((idc["aud"].as_str(), idc["azp"].as_str()), (Some(id), Some(id)));
    assert_eq!(idc["nonce"], "n-456");
    assert_eq!(idc["sub"], claims["sub"]);
    assert_eq!(idc["email"], EMAIL);
    assert_eq!(idc["name"], "Ada Lovelace");
    assert_eq!(idc["exp"].as_i64().unwrap() - idc["iat"].as_i64().unwrap(), 36_000);
    assert!(idc["auth_time"].as_i64().is_some() && idc["sid"].as_str().is_some_and(|s| s.starts_with("ses_")));

    // The ID token verifies with the published JWKS.
    let jwks: Value = bare_client().get(app.url(paths::JWKS)).send().await.unwrap().json().await.unwrap();
    let kid = kid_of(id_token);
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[id]);
    validation.set_issuer(&[issuer.as_str()]);
    validation.validate_exp = false;
    assert!(jsonwebtoken::decode::<Value>(id_token, &key, &validation).is_ok());

    // Userinfo by scope.
    let info = userinfo(&app, access).await;
    assert_eq!(info.status(), 200);
    let info: Value = info.json().await.unwrap();
    assert_eq!((info["sub"].clone(), info["email"].clone()), (claims["sub"].clone(), json!(EMAIL)));
    assert_eq!(info["name"], "Ada Lovelace");
    let post = bare_client().post(app.url(paths::USERINFO)).bearer_auth(access).send().await.unwrap();
    assert_eq!(post.status(), 200, "POST /userinfo too");

    // The SSO session: a second authorize in the same browser needs no sign-in.
    let again = browser.get(&url).send().await.unwrap();
    let second = code_of(&again);
    assert_ne!(second, code);

    // The code again: refused, and what it issued dies (access token and refresh family).
    oauth_error(exchange(&app, id, &code, VERIFIER).await, 400, "invalid_grant").await;
    let refused = userinfo(&app, access).await;
    assert_eq!(refused.status(), 401);
    assert!(refused.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().contains("invalid_token"));
    let rt = tokens["refresh_token"].as_str().unwrap();
    oauth_error(refresh(&app, id, rt).await, 400, "invalid_grant").await;
    // The other code's tokens live on.
    let fresh: Value = exchange(&app, id, &second, VERIFIER).await.json().await.unwrap();
    assert_eq!(userinfo(&app, fresh["access_token"].as_str().unwrap()).await.status(), 200);

    // No token: a bare challenge.
    let none = bare_client().get(app.url(paths::USERINFO)).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()[header::WWW_AUTHENTICATE], "Bearer realm=\"latchkey\"");
    // An ID token is not an access token.
    assert_eq!(userinfo(&app, id_token).await.status(), 401);
}

async fn authorize_refuses_unknown_clients_and_redirect_uris_with_a_page(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let spa = oauth_client(&app, "spa", json!({"callbacks": [CALLBACK, "http://localhost:3000/cb"]})).await;
    let id = spa["client_id"].as_str().unwrap();
    let browser = new_client();
    let unknown = browser.get(authorize_url(&app, "nope", &[])).send().await.unwrap();
    assert_eq!(unknown.status(), 400);
    assert!(unknown.headers().get(header::LOCATION).is_none());
    assert!(unknown.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    for variant in [
        "https://app.example/callback/",
        "https://APP.example/callback",
        "https://app.example/Callback",
        "https://app.example/callback/extra",
        "https://app.example/callback?x=1",
        "https://app.example/callback#frag",
        "https://evil@app.example/callback",
        "https://app.example:8443/callback",
        "http://app.example/callback",
        "https://app.example.evil.com/callback",
        "http://localhost:3001/cb",
        "",
    ] {
        let response = browser.get(authorize_url(&app, id, &[("redirect_uri", variant)])).send().await.unwrap();
        assert_eq!(response.status(), 400, "{variant:?}");
        assert!(response.headers().get(header::LOCATION).is_none(), "never a redirect: {variant:?}");
    }
    // Registered exactly: on to sign-in.
    let ok =
        browser.get(authorize_url(&app, id, &[("redirect_uri", "http://localhost:3000/cb")])).send().await.unwrap();
    assert_eq!(ok.status(), 302);
    assert!(location(&ok).starts_with("/login?state="));
}

async fn authorize_sends_every_other_error_back_with_state(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let spa = oauth_client(&app, "spa", json!({})).await;
    let id = spa["client_id"].as_str().unwrap();
    let web = oauth_client(&app, "regular_web", json!({})).await;
    let web_id = web["client_id"].as_str().unwrap();
    let machine = oauth_client(&app, "non_interactive", json!({})).await;
    let browser = new_client();
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (id, vec![("response_type", "token")], "unsupported_response_type"),
        (id, vec![("response_type", "")], "invalid_request"),
        (id, vec![("code_challenge", ""), ("code_challenge_method", "")], "invalid_request"),
        (id, vec![("code_challenge_method", "plain")], "invalid_request"),
        (id, vec![("code_challenge_method", "")], "invalid_request"),
        (id, vec![("code_challenge", "too-short")], "invalid_request"),
        (id, vec![("audience", "https://unknown.example")], "access_denied"),
        (id, vec![("prompt", "none")], "login_required"),
        (id, vec![("prompt", "none login")], "invalid_request"),
        (id, vec![("max_age", "-1")], "invalid_request"),
        (id, vec![("response_mode", "fragment")], "invalid_request"),
        (machine["client_id"].as_str().unwrap(), vec![], "unauthorized_client"),
    ];
    for (client_id, extra, error) in cases {
        let mut url = authorize_url(&app, client_id, &extra);
        if client_id == machine["client_id"] {
            // The machine client has no callbacks: register one to get this far.
            let patch = json!({"callbacks": [CALLBACK]});
            let path = format!("{}/{}", paths::MGMT_CLIENTS, client_id);
            assert_eq!(master(&app, Method::PATCH, &path).json(&patch).send().await.unwrap().status(), 200);
            url = authorize_url(&app, client_id, &extra);
        }
        let response = browser.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 302, "{extra:?}");
        let to = location(&response);
        assert!(to.starts_with(CALLBACK), "{to}");
        let query = query_of(&to);
        assert_eq!(query["error"], error, "{extra:?} → {to}");
        assert_eq!(query["state"], "st-123");
        assert!(!query["error_description"].is_empty());
    }
    // "Service not found", as Auth0 says it.
    let response =
        browser.get(authorize_url(&app, id, &[("audience", "https://unknown.example")])).send().await.unwrap();
    assert_eq!(query_of(&location(&response))["error_description"], "Service not found: https://unknown.example");
    // A confidential client may skip PKCE; unknown parameters are ignored.
    let response = browser
        .get(authorize_url(
            &app,
            web_id,
            &[("code_challenge", ""), ("code_challenge_method", ""), ("auth0Client", "eyJ9")],
        ))
        .send()
        .await
        .unwrap();
    assert!(location(&response).starts_with("/login?state="));
    // A repeated parameter is refused.
    let repeated = format!("{}&state=again", authorize_url(&app, id, &[]));
    let response = browser.get(&repeated).send().await.unwrap();
    assert_eq!(query_of(&location(&response))["error"], "invalid_request");
}

async fn codes_are_single_use_bound_and_short_lived(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let spa = oauth_client(&app, "spa", json!({})).await;
    let id = spa["client_id"].as_str().unwrap();
    let other = oauth_client(&app, "spa", json!({"name": "Other"})).await;
    let other_id = other["client_id"].as_str().unwrap();
    user(&app).await;
    let (browser, first) = authorize_with_login(&app, &authorize_url(&app, id, &[])).await;
    let url = authorize_url(&app, id, &[]);
    let next_code = || {
        let (browser, url) = (browser.clone(), url.clone());
        async move { code_of(&browser.get(&url).send().await.unwrap()) }
    };

    // A wrong verifier burns the code: the right one afterwards is refused too.
    let code = code_of(&first);
    let wrong = "A".repeat(43);
    oauth_error(exchange(&app, id, &code, &wrong).await, 400, "invalid_grant").await;
    oauth_error(exchange(&app, id, &code, VERIFIER).await, 400, "invalid_grant").await;

    // No verifier at all.
    let code = next_code().await;
    let form = [("grant_type", "authorization_code"), ("client_id", id), ("code", &code), ("redirect_uri", CALLBACK)];
    let response = bare_client().post(app.url(paths::TOKEN)).form(&form).send().await.unwrap();
    oauth_error(response, 400, "invalid_grant").await;

    // A different redirect_uri burns it.
    let code = next_code().await;
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", id),
        ("code", &code),
        ("redirect_uri", "https://app.example/callback/"),
        ("code_verifier", VERIFIER),
    ];
    oauth_error(bare_client().post(app.url(paths::TOKEN)).form(&form).send().await.unwrap(), 400, "invalid_grant")
        .await;
    oauth_error(exchange(&app, id, &code, VERIFIER).await, 400, "invalid_grant").await;

    // Client A's code at client B.
    let code = next_code().await;
    oauth_error(exchange(&app, other_id, &code, VERIFIER).await, 400, "invalid_grant").await;

    // 60 s, by the server's clock.
    let code = next_code().await;
    app.clock.advance(std::time::Duration::from_millis(61_000));
    oauth_error(exchange(&app, id, &code, VERIFIER).await, 400, "invalid_grant").await;

    // A fresh code works once; concurrent presentations: exactly one wins.
    let code = next_code().await;
    let answers = futures_join(&app, id, &code, 6).await;
    assert_eq!(answers.iter().filter(|s| **s == 200).count(), 1, "{answers:?}");
    // Codes are stored hashed.
    let stored: i64 = app.count(&format!("oauth_codes WHERE code_hash = '{code}'")).await;
    assert_eq!(stored, 0);
}

async fn futures_join(app: &TestApp, id: &str, code: &str, n: usize) -> Vec<u16> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (url, id, code) = (app.url(paths::TOKEN), id.to_owned(), code.to_owned());
        tasks.push(tokio::spawn(async move {
            let form = [
                ("grant_type", "authorization_code"),
                ("client_id", id.as_str()),
                ("code", code.as_str()),
                ("redirect_uri", CALLBACK),
                ("code_verifier", VERIFIER),
            ];
            bare_client().post(url).form(&form).send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}

async fn refresh_tokens_rotate_with_a_leeway_and_reuse_kills_the_family(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let (id, tokens) = signed_in_spa(&app, json!({"refresh_token": {"leeway": 10}})).await;
    let t0 = tokens["refresh_token"].as_str().unwrap().to_owned();

    let r1: Value = refresh(&app, &id, &t0).await.json().await.unwrap();
    let t1 = r1["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(t0, t1, "rotated");
    assert!(r1["access_token"].is_string() && r1["id_token"].is_string());

    // The previous token within the leeway: the very same successor, and a working access token.
    app.clock.advance(std::time::Duration::from_millis(5_000));
    let again = refresh(&app, &id, &t0).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["refresh_token"], t1.as_str());
    assert_eq!(userinfo(&app, again["access_token"].as_str().unwrap()).await.status(), 200);

    // Scope may narrow, never widen.
    let narrow = bare_client()
        .post(app.url(paths::TOKEN))
        .form(&[("grant_type", "refresh_token"), ("client_id", &id), ("refresh_token", &t1), ("scope", "openid email")])
        .send()
        .await
        .unwrap();
    assert_eq!(narrow.status(), 200);
    let narrow: Value = narrow.json().await.unwrap();
    assert_eq!(narrow["scope"], "openid email");
    let t2 = narrow["refresh_token"].as_str().unwrap().to_owned();
    let wide = bare_client()
        .post(app.url(paths::TOKEN))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &id),
            ("refresh_token", &t2),
            ("scope", "openid write:all"),
        ])
        .send()
        .await
        .unwrap();
    oauth_error(wide, 400, "invalid_scope").await;

    // Another client presenting it: refused, and the family lives.
    let other = oauth_client(&app, "spa", json!({"name": "Other"})).await;
    oauth_error(refresh(&app, other["client_id"].as_str().unwrap(), &t2).await, 400, "invalid_grant").await;

    // An older ancestor (t0, two rotations ago): the whole family dies, on this node at once.
    let live: Value = refresh(&app, &id, &t2).await.json().await.unwrap();
    let t3 = live["refresh_token"].as_str().unwrap().to_owned();
    let access = live["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(&app, &access).await.status(), 200);
    oauth_error(refresh(&app, &id, &t0).await, 400, "invalid_grant").await;
    oauth_error(refresh(&app, &id, &t3).await, 400, "invalid_grant").await;
    assert_eq!(userinfo(&app, &access).await.status(), 401, "the family's access tokens die with it");

    // The previous token after the leeway kills its family too.
    let (id, tokens) = signed_in_spa_again(&app, &id).await;
    let t0 = tokens["refresh_token"].as_str().unwrap().to_owned();
    let r1: Value = refresh(&app, &id, &t0).await.json().await.unwrap();
    let t1 = r1["refresh_token"].as_str().unwrap().to_owned();
    app.clock.advance(std::time::Duration::from_millis(11_000));
    oauth_error(refresh(&app, &id, &t0).await, 400, "invalid_grant").await;
    oauth_error(refresh(&app, &id, &t1).await, 400, "invalid_grant").await;

    // Idle and absolute lifetimes (15 and 30 days by default).
    let (id, tokens) = signed_in_spa_again(&app, &id).await;
    let t0 = tokens["refresh_token"].as_str().unwrap().to_owned();
    app.clock.advance(std::time::Duration::from_millis(14 * 86_400_000));
    let r1: Value = refresh(&app, &id, &t0).await.json().await.unwrap();
    let t1 = r1["refresh_token"].as_str().unwrap().to_owned();
    app.clock.advance(std::time::Duration::from_millis(15 * 86_400_000 + 1_000));
    oauth_error(refresh(&app, &id, &t1).await, 400, "invalid_grant").await;

    // Only hashes are stored; garbage is refused.
    assert_eq!(app.count(&format!("oauth_grants WHERE current_hash = '{t1}'")).await, 0);
    oauth_error(refresh(&app, &id, "grt_nope.nope").await, 400, "invalid_grant").await;
    oauth_error(refresh(&app, &id, "").await, 400, "invalid_request").await;
}

/// Another sign-in of the same user for the same client (the browser keeps its SSO session).
async fn signed_in_spa_again(app: &TestApp, id: &str) -> (String, Value) {
    let (_, back) = authorize_with_login(app, &authorize_url(app, id, &[])).await;
    let tokens = exchange(app, id, &code_of(&back), VERIFIER).await;
    assert_eq!(tokens.status(), 200);
    (id.to_owned(), tokens.json().await.unwrap())
}

async fn concurrent_refreshes_all_get_the_same_successor(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let (id, tokens) = signed_in_spa(&app, json!({})).await;
    let t0 = tokens["refresh_token"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (url, id, t0) = (app.url(paths::TOKEN), id.clone(), t0.clone());
        tasks.push(tokio::spawn(async move {
            let form = [("grant_type", "refresh_token"), ("client_id", id.as_str()), ("refresh_token", t0.as_str())];
            let response = bare_client().post(url).form(&form).send().await.unwrap();
            assert_eq!(response.status(), 200, "parallel tabs never log a user out");
            let body: Value = response.json().await.unwrap();
            body["refresh_token"].as_str().unwrap().to_owned()
        }));
    }
    let mut successors = Vec::new();
    for task in tasks {
        successors.push(task.await.unwrap());
    }
    successors.dedup();
    assert_eq!(successors.len(), 1, "one successor for all: {successors:?}");
    // And it works.
    assert_eq!(refresh(&app, &id, &successors[0]).await.status(), 200);
}

async fn third_party_clients_ask_for_consent_once_per_scope_set(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    orders_api(&app).await;
    let spa = oauth_client(&app, "spa", json!({"is_first_party": false, "name": "Partner \"Shop\" & Co"})).await;
    let id = spa["client_id"].as_str().unwrap();
    user(&app).await;
    let url = authorize_url(&app, id, &[("audience", API), ("scope", "openid email read:orders")]);
    let browser = new_client();
    let start = browser.get(&url).send().await.unwrap();
    let login = follow(&browser, &app, &start).await;
    let signed_in = sign_in_on_page(&browser, &app, login, PASSWORD).await;
    let resume = follow(&browser, &app, &signed_in).await;
    assert_eq!(resume.status(), 302);
    assert!(location(&resume).starts_with("/consent?state=ltx_"), "{}", location(&resume));
    let page = follow(&browser, &app, &resume).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Partner &#34;Shop&#34; &#38; Co") || html.contains("Partner &quot;Shop&quot; &amp; Co"),
        "{html}"
    );
    assert!(html.contains("Read your orders") && html.contains("read:orders"), "scopes listed: {html}");
    let (state, csrf) = (hidden(&html, "state"), hidden(&html, "csrf"));

    // Deny: access_denied back to the client, with state.
    let deny = browser
        .post(app.url(paths::CONSENT))
        .header(header::ORIGIN, ORIGIN)
        .form(&[("state", state.as_str()), ("csrf", csrf.as_str()), ("decision", "deny")])
        .send()
        .await
        .unwrap();
    assert_eq!(deny.status(), 302);
    let query = query_of(&location(&deny));
    assert_eq!((query["error"].as_str(), query["state"].as_str()), ("access_denied", "st-123"));

    // Again, and allow: a code.
    let resume = browser.get(&url).send().await.unwrap();
    assert!(location(&resume).starts_with("/consent?state="));
    let html = follow(&browser, &app, &resume).await.text().await.unwrap();
    let allow = browser
        .post(app.url(paths::CONSENT))
        .header(header::ORIGIN, ORIGIN)
        .form(&[("state", hidden(&html, "state")), ("csrf", hidden(&html, "csrf")), ("decision", "allow".into())])
        .send()
        .await
        .unwrap();
    code_of(&allow);

    // Remembered: the same scopes go straight through, and so does prompt=none.
    code_of(&browser.get(&url).send().await.unwrap());
    code_of(
        &browser
            .get(authorize_url(
                &app,
                id,
                &[("audience", API), ("scope", "openid email read:orders"), ("prompt", "none")],
            ))
            .send()
            .await
            .unwrap(),
    );
    // A new scope asks again (prompt=none: consent_required); prompt=consent always asks.
    let wider = authorize_url(&app, id, &[("audience", API), ("scope", "openid email read:orders write:orders")]);
    assert!(location(&browser.get(&wider).send().await.unwrap()).starts_with("/consent?state="));
    let none = authorize_url(&app, id, &[("audience", API), ("scope", "openid profile"), ("prompt", "none")]);
    assert_eq!(query_of(&location(&browser.get(&none).send().await.unwrap()))["error"], "consent_required");
    let forced =
        authorize_url(&app, id, &[("audience", API), ("scope", "openid email read:orders"), ("prompt", "consent")]);
    assert!(location(&browser.get(&forced).send().await.unwrap()).starts_with("/consent?state="));

    // A first-party client never asks.
    let own = oauth_client(&app, "spa", json!({})).await;
    let own_url = authorize_url(&app, own["client_id"].as_str().unwrap(), &[("audience", API)]);
    code_of(&browser.get(&own_url).send().await.unwrap());
}

async fn login_signup_and_consent_forms_refuse_csrf(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let spa = oauth_client(&app, "spa", json!({"is_first_party": false})).await;
    let id = spa["client_id"].as_str().unwrap();
    user(&app).await;
    let browser = new_client();
    let start = browser.get(authorize_url(&app, id, &[])).send().await.unwrap();
    let html = follow(&browser, &app, &start).await.text().await.unwrap();
    let state = hidden(&html, "state");
    let csrf = hidden(&html, "csrf");

    // No token, a wrong token, the right token from another browser (no cookie): refused, no session.
    let attacker = new_client();
    for (client, token) in [(&browser, ""), (&browser, "00ff"), (&attacker, csrf.as_str())] {
        let response = client
            .post(app.url(paths::LOGIN))
            .form(&[("state", state.as_str()), ("csrf", token), ("email", EMAIL), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{token:?}");
        assert!(set_cookies(&response).iter().all(|c| !c.contains("session_token")), "no session");
    }
    let response = browser
        .post(app.url(paths::SIGNUP))
        .form(&[
            ("state", state.as_str()),
            ("csrf", "x"),
            ("name", "M"),
            ("email", "m@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(app.count("users").await, 1, "no account created");

    // The token of one transaction does not work for another.
    let other_start = browser.get(authorize_url(&app, id, &[("state", "other")])).send().await.unwrap();
    let other_html = follow(&browser, &app, &other_start).await.text().await.unwrap();
    let other_state = hidden(&other_html, "state");
    assert_ne!(other_state, state);
    let response = browser
        .post(app.url(paths::LOGIN))
        .form(&[("state", other_state.as_str()), ("csrf", csrf.as_str()), ("email", EMAIL), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // The real form signs in; the consent form checks its token too.
    let login = browser.get(app.url(&format!("{}?state={state}", paths::LOGIN))).send().await.unwrap();
    let resume = sign_in_on_page(&browser, &app, login, PASSWORD).await;
    let consent = follow(&browser, &app, &follow(&browser, &app, &resume).await).await;
    let consent_html = consent.text().await.unwrap();
    let response = browser
        .post(app.url(paths::CONSENT))
        .header(header::ORIGIN, ORIGIN)
        .form(&[("state", state.as_str()), ("csrf", "bad"), ("decision", "allow")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(app.count("oauth_consents").await, 0);
    let response = attacker
        .post(app.url(paths::CONSENT))
        .header(header::ORIGIN, ORIGIN)
        .form(&[("state", state.as_str()), ("csrf", hidden(&consent_html, "csrf").as_str()), ("decision", "allow")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "another browser cannot consent");

    // A wrong password: one generic message, the email kept, the password not.
    let login = browser.get(app.url(&format!("{}?state={other_state}", paths::LOGIN))).send().await.unwrap();
    let response = sign_in_on_page(&new_client(), &app, login, "wrong-password").await;
    assert_eq!(response.status(), 403, "a browser without the cookie");
    let login = browser.get(app.url(&format!("{}?state={other_state}", paths::LOGIN))).send().await.unwrap();
    let response = sign_in_on_page(&browser, &app, login, "wrong-password").await;
    assert_eq!(response.status(), 400);
    let html = response.text().await.unwrap();
    assert!(html.contains("Wrong email or password.") && html.contains(EMAIL) && !html.contains("wrong-password"));
}

async fn prompt_login_and_max_age_ask_for_a_new_sign_in(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let spa = oauth_client(&app, "spa", json!({})).await;
    let id = spa["client_id"].as_str().unwrap();
    user(&app).await;
    let (browser, back) = authorize_with_login(&app, &authorize_url(&app, id, &[])).await;
    let first: Value = exchange(&app, id, &code_of(&back), VERIFIER).await.json().await.unwrap();
    let auth_time = jwt_part(first["id_token"].as_str().unwrap(), 1)["auth_time"].as_i64().unwrap();

    // prompt=login: back to the login page, and the new sign-in shows in auth_time.
    app.clock.advance(std::time::Duration::from_millis(120_000));
    let forced = browser.get(authorize_url(&app, id, &[("prompt", "login")])).send().await.unwrap();
    assert!(location(&forced).starts_with("/login?state="));
    let login = follow(&browser, &app, &forced).await;
    let signed_in = sign_in_on_page(&browser, &app, login, PASSWORD).await;
    let back = follow(&browser, &app, &signed_in).await;
    let second: Value = exchange(&app, id, &code_of(&back), VERIFIER).await.json().await.unwrap();
    let later = jwt_part(second["id_token"].as_str().unwrap(), 1)["auth_time"].as_i64().unwrap();
    assert!(later >= auth_time + 120, "{auth_time} → {later}");

    // max_age: a session younger than it goes through; an older one signs in again.
    code_of(&browser.get(authorize_url(&app, id, &[("max_age", "300")])).send().await.unwrap());
    app.clock.advance(std::time::Duration::from_millis(301_000));
    let old = browser.get(authorize_url(&app, id, &[("max_age", "300")])).send().await.unwrap();
    assert!(location(&old).starts_with("/login?state="));
    let none = browser.get(authorize_url(&app, id, &[("max_age", "300"), ("prompt", "none")])).send().await.unwrap();
    assert_eq!(query_of(&location(&none))["error"], "login_required");
}

async fn the_signup_page_creates_an_account_and_continues(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let spa = oauth_client(&app, "spa", json!({})).await;
    let id = spa["client_id"].as_str().unwrap();
    let browser = new_client();
    let start = browser.get(authorize_url(&app, id, &[])).send().await.unwrap();
    let state = query_of(&app.url(&location(&start)))["state"].clone();
    let page = browser.get(app.url(&format!("{}?state={state}", paths::SIGNUP))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("autocomplete=\"new-password\"") && html.contains("autocomplete=\"email\""));
    let csrf = hidden(&html, "csrf");
    let form = |password: &'static str| {
        [
            ("state", state.clone()),
            ("csrf", csrf.clone()),
            ("name", "Grace".into()),
            ("email", "grace@example.com".into()),
            ("password", password.into()),
        ]
    };
    let short = browser.post(app.url(paths::SIGNUP)).form(&form("short")).send().await.unwrap();
    assert_eq!(short.status(), 400);
    assert!(short.text().await.unwrap().contains("too short"));
    let created = browser.post(app.url(paths::SIGNUP)).form(&form(PASSWORD)).send().await.unwrap();
    assert_eq!(created.status(), 303);
    let back = follow(&browser, &app, &created).await;
    let tokens: Value = exchange(&app, id, &code_of(&back), VERIFIER).await.json().await.unwrap();
    assert_eq!(jwt_part(tokens["id_token"].as_str().unwrap(), 1)["email"], "grace@example.com");
    // The same email again: told to sign in instead.
    let start = new_client().get(authorize_url(&app, id, &[])).send().await.unwrap();
    assert_eq!(start.status(), 302);
}

async fn token_and_userinfo_answer_cors_for_the_clients_web_origins_only(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let (id, tokens) = signed_in_spa(&app, json!({})).await;
    let access = tokens["access_token"].as_str().unwrap();
    for path in [paths::TOKEN, paths::USERINFO] {
        let preflight = |origin: &'static str| {
            bare_client()
                .request(Method::OPTIONS, app.url(path))
                .header(header::ORIGIN, origin)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
                .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
                .send()
        };
        let ok = preflight(APP_ORIGIN).await.unwrap();
        assert!(ok.status().is_success(), "{path}");
        assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP_ORIGIN);
        let evil = preflight("https://evil.example").await.unwrap();
        assert!(evil.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "{path}");
    }
    let rt = tokens["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("client_id", id.as_str()), ("refresh_token", rt)];
    let ok =
        bare_client().post(app.url(paths::TOKEN)).header(header::ORIGIN, APP_ORIGIN).form(&form).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP_ORIGIN);
    // An error for the client is readable by its origin too.
    let bad = bare_client()
        .post(app.url(paths::TOKEN))
        .header(header::ORIGIN, APP_ORIGIN)
        .form(&[("grant_type", "refresh_token"), ("client_id", id.as_str()), ("refresh_token", "grt_x.y")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP_ORIGIN);
    let evil = bare_client()
        .post(app.url(paths::TOKEN))
        .header(header::ORIGIN, "https://evil.example")
        .form(&[("grant_type", "refresh_token"), ("client_id", id.as_str()), ("refresh_token", "grt_x.y")])
        .send()
        .await
        .unwrap();
    assert!(evil.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    // Another client's origin is not this client's.
    oauth_client(&app, "spa", json!({"web_origins": ["https://other.example"]})).await;
    let other = bare_client()
        .get(app.url(paths::USERINFO))
        .header(header::ORIGIN, "https://other.example")
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert!(other.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    let own = bare_client()
        .get(app.url(paths::USERINFO))
        .header(header::ORIGIN, APP_ORIGIN)
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(own.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP_ORIGIN);
}

async fn pages_escape_what_they_echo_and_carry_a_strict_csp(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let spa = oauth_client(&app, "spa", json!({})).await;
    let id = spa["client_id"].as_str().unwrap();
    user(&app).await;
    let xss = "\"><script>alert(1)</script>";
    // form_post echoes state into the page: escaped, and the page posts to the callback only.
    let (_, back) =
        authorize_with_login(&app, &authorize_url(&app, id, &[("response_mode", "form_post"), ("state", xss)])).await;
    assert_eq!(back.status(), 200);
    let csp = back.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("form-action 'self' https://app.example"), "{csp}");
    let html = back.text().await.unwrap();
    assert!(!html.contains("<script>alert(1)"), "{html}");
    assert!(html.contains(&format!("action=\"{CALLBACK}\"")), "{html}");
    assert!(html.contains("name=\"code\""));

    // Error redirects carry state as a query value, encoded.
    let response =
        new_client().get(authorize_url(&app, id, &[("response_type", "token"), ("state", xss)])).send().await.unwrap();
    assert_eq!(query_of(&location(&response))["state"], xss);
    // The login page: CSP, no framing, no third-party assets, labelled inputs.
    let start = new_client().get(authorize_url(&app, id, &[])).send().await.unwrap();
    let page = bare_client().get(app.url(&location(&start))).send().await.unwrap();
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers()[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(page.headers()[header::CACHE_CONTROL], "no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains("<label for=\"email\">") && html.contains("autocomplete=\"username\""));
    assert!(html.contains("autocomplete=\"current-password\""));
    assert!(!html.contains("http://") && !html.contains("https://"), "no third-party assets");
    // An unknown transaction, and an XSS attempt in it: a plain 400 page.
    let page = bare_client().get(app.url(&format!("{}?state=%3Cscript%3E", paths::LOGIN))).send().await.unwrap();
    assert_eq!(page.status(), 400);
    assert!(!page.text().await.unwrap().contains("<script>"));
}

async fn failed_client_authentication_is_rate_limited(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |settings| {
        with_master_credentials(settings);
        settings.rate_limit.sign_in_per_ip = 5;
    })
    .await
    else {
        return;
    };
    let web = oauth_client(&app, "regular_web", json!({})).await;
    let id = web["client_id"].as_str().unwrap();
    let secret = web["client_secret"].as_str().unwrap();
    let attempt = |secret: &str| {
        bare_client()
            .post(app.url(paths::TOKEN))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", id),
                ("client_secret", secret),
                ("refresh_token", "x"),
            ])
            .send()
    };
    for _ in 0..5 {
        assert_eq!(attempt("wrong").await.unwrap().status(), 401);
    }
    let limited = attempt("wrong").await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key(header::RETRY_AFTER));
    // Even the right secret waits for the window (the IP is limited).
    assert_eq!(attempt(secret).await.unwrap().status(), 429);
    app.clock.advance(std::time::Duration::from_millis(16 * 60_000));
    let ok = attempt(secret).await.unwrap();
    assert_eq!(ok.status(), 400, "authenticated again: the refresh token itself is refused");
}

async fn revoke(app: &TestApp, form: &[(&str, &str)]) -> Response {
    bare_client().post(app.url(paths::REVOKE)).form(form).send().await.unwrap()
}

async fn revocation_kills_what_the_caller_holds_and_nothing_else(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let (id, tokens) = signed_in_spa(&app, json!({})).await;
    let (_, second) = signed_in_spa_again(&app, &id).await;
    let access = tokens["access_token"].as_str().unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap();

    // Another client, someone else's token, garbage: 200 and nothing changes.
    let other = oauth_client(&app, "spa", json!({"name": "Other"})).await;
    let other_id = other["client_id"].as_str().unwrap();
    assert_eq!(revoke(&app, &[("client_id", other_id), ("token", rt)]).await.status(), 200);
    assert_eq!(revoke(&app, &[("client_id", other_id), ("token", access)]).await.status(), 200);
    assert_eq!(revoke(&app, &[("client_id", &id), ("token", "garbage")]).await.status(), 200);
    assert_eq!(
        revoke(&app, &[("client_id", &id), ("token", "grt_nope.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")])
            .await
            .status(),
        200
    );
    assert_eq!(userinfo(&app, access).await.status(), 200);
    assert_eq!(refresh(&app, &id, rt).await.status(), 200, "still alive");
    // Missing token; unknown client.
    oauth_error(revoke(&app, &[("client_id", &id)]).await, 400, "invalid_request").await;
    oauth_error(revoke(&app, &[("client_id", "nope"), ("token", rt)]).await, 401, "invalid_client").await;

    // An access token: that token only.
    let fresh: Value = refresh(&app, &id, second["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    let access2 = fresh["access_token"].as_str().unwrap();
    let response = bare_client()
        .post(app.url(paths::REVOKE))
        .json(&json!({"client_id": id, "token": access2}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "JSON bodies too");
    assert_eq!(userinfo(&app, access2).await.status(), 401);
    let still = second["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&app, still).await.status(), 200, "another token of the same family lives");

    // A refresh token: its whole family.
    let rt2 = fresh["refresh_token"].as_str().unwrap();
    assert_eq!(
        revoke(&app, &[("client_id", &id), ("token", rt2), ("token_type_hint", "refresh_token")]).await.status(),
        200
    );
    oauth_error(refresh(&app, &id, rt2).await, 400, "invalid_grant").await;
    assert_eq!(userinfo(&app, still).await.status(), 401, "the family's access tokens die with it");
}

async fn introspection_answers_confidential_clients_about_their_tokens(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    orders_api(&app).await;
    let spa = oauth_client(&app, "spa", json!({})).await;
    let spa_id = spa["client_id"].as_str().unwrap();
    user(&app).await;
    let url = authorize_url(&app, spa_id, &[("audience", API), ("scope", "openid offline_access read:orders")]);
    let (_, back) = authorize_with_login(&app, &url).await;
    let tokens: Value = exchange(&app, spa_id, &code_of(&back), VERIFIER).await.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();

    // The API's own machine client, holding a grant for it, may introspect; a stranger may not learn anything.
    let api_client = oauth_client(&app, "non_interactive", json!({"name": "Orders API"})).await;
    let (api_id, api_secret) =
        (api_client["client_id"].as_str().unwrap(), api_client["client_secret"].as_str().unwrap());
    mgmt(&app, paths::MGMT_CLIENT_GRANTS, json!({"client_id": api_id, "audience": API, "scope": ["read:orders"]}))
        .await;
    let stranger = oauth_client(&app, "non_interactive", json!({"name": "Stranger"})).await;
    let ask = |id: &str, secret: &str, token: &str| {
        bare_client()
            .post(app.url(paths::INTROSPECT))
            .form(&[("client_id", id), ("client_secret", secret), ("token", token)])
            .send()
    };
    let answer: Value = ask(api_id, api_secret, access).await.unwrap().json().await.unwrap();
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["scope"], "openid offline_access read:orders");
    assert_eq!(answer["client_id"], spa_id);
    assert_eq!(answer["token_type"], "Bearer");
    assert!(answer["sub"].as_str().unwrap().starts_with("usr_") && answer["exp"].is_i64() && answer["iat"].is_i64());
    let stranger_answer: Value =
        ask(stranger["client_id"].as_str().unwrap(), stranger["client_secret"].as_str().unwrap(), access)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(stranger_answer, json!({"active": false}));
    let garbage: Value = ask(api_id, api_secret, "x.y.z").await.unwrap().json().await.unwrap();
    assert_eq!(garbage, json!({"active": false}));
    // A public client cannot introspect; a wrong secret is invalid_client.
    let public = bare_client()
        .post(app.url(paths::INTROSPECT))
        .form(&[("client_id", spa_id), ("token", access)])
        .send()
        .await
        .unwrap();
    oauth_error(public, 401, "invalid_client").await;
    oauth_error(ask(api_id, "wrong", access).await.unwrap(), 401, "invalid_client").await;
    // Revoked, then expired: inactive.
    let rt = tokens["refresh_token"].as_str().unwrap();
    let live: Value = refresh(&app, spa_id, rt).await.json().await.unwrap();
    let access2 = live["access_token"].as_str().unwrap();
    assert_eq!(ask(api_id, api_secret, access2).await.unwrap().json::<Value>().await.unwrap()["active"], true);
    assert_eq!(revoke(&app, &[("client_id", spa_id), ("token", access2)]).await.status(), 200);
    assert_eq!(
        ask(api_id, api_secret, access2).await.unwrap().json::<Value>().await.unwrap(),
        json!({"active": false})
    );
    app.clock.advance(std::time::Duration::from_secs(86_400 + 3_600));
    assert_eq!(ask(api_id, api_secret, access).await.unwrap().json::<Value>().await.unwrap(), json!({"active": false}));
}

async fn logout_ends_the_session_and_redirects_only_to_allowed_urls(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let (id, tokens) = signed_in_spa(&app, json!({})).await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();

    // Auth0's /v2/logout: an allowed returnTo; the session is over (the next authorize asks to sign in).
    let (browser, _) = authorize_with_login(&app, &authorize_url(&app, &id, &[])).await;
    let query = [("client_id", id.as_str()), ("returnTo", "https://app.example/bye")];
    let out = browser.get(app.url(paths::LOGOUT)).query(&query).send().await.unwrap();
    assert_eq!(out.status(), 302);
    assert_eq!(location(&out), "https://app.example/bye");
    assert!(
        set_cookies(&out).iter().any(|c| c.contains("session_token=;") && c.contains("Max-Age=0")),
        "{:?}",
        set_cookies(&out)
    );
    let again = browser.get(authorize_url(&app, &id, &[])).send().await.unwrap();
    assert!(location(&again).starts_with("/login?state="), "signed out");
    // Refresh tokens survive logout (offline access).
    assert_eq!(refresh(&app, &id, &rt).await.status(), 200);

    // Open-redirect attempts: a signed-out page, never a redirect.
    for to in [
        "https://evil.example/",
        "https://app.example/bye/",
        "https://app.example/byeX",
        "//evil.example",
        "javascript:alert(1)",
    ] {
        let response = new_client()
            .get(app.url(paths::LOGOUT))
            .query(&[("client_id", id.as_str()), ("returnTo", to)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{to}");
        assert!(response.headers().get(header::LOCATION).is_none());
    }
    let no_client = new_client()
        .get(app.url(paths::LOGOUT))
        .query(&[("returnTo", "https://app.example/bye")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_client.status(), 200);

    // RP-initiated logout: the client from the ID token hint, state echoed.
    let (browser, back) = authorize_with_login(&app, &authorize_url(&app, &id, &[])).await;
    let fresh: Value = exchange(&app, &id, &code_of(&back), VERIFIER).await.json().await.unwrap();
    let hint = fresh["id_token"].as_str().unwrap();
    let query = [("id_token_hint", hint), ("post_logout_redirect_uri", "https://app.example/bye"), ("state", "s&1")];
    let out = browser.get(app.url(paths::OIDC_LOGOUT)).query(&query).send().await.unwrap();
    assert_eq!(out.status(), 302);
    assert_eq!(location(&out), "https://app.example/bye?state=s%261");
    let evil = [("client_id", id.as_str()), ("post_logout_redirect_uri", "https://evil.example/"), ("state", "x")];
    let out = new_client().get(app.url(paths::OIDC_LOGOUT)).query(&evil).send().await.unwrap();
    assert_eq!(out.status(), 200);
    assert!(out.text().await.unwrap().contains("signed out"));
}

async fn deleting_a_client_refuses_its_tokens_everywhere(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let (id, tokens) = signed_in_spa(&app, json!({})).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&app, access).await.status(), 200);
    let path = format!("{}/{}", paths::MGMT_CLIENTS, id);
    assert_eq!(master(&app, Method::DELETE, &path).send().await.unwrap().status(), 204);
    assert_eq!(userinfo(&app, access).await.status(), 401);
    oauth_error(refresh(&app, &id, tokens["refresh_token"].as_str().unwrap()).await, 401, "invalid_client").await;
    assert_eq!(app.count("oauth_grants").await, 0, "its families went with it");
}

async fn per_client_cors_works_beside_the_configured_origins(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |settings| {
        with_master_credentials(settings);
        settings.cors_origins = vec!["https://dashboard.example".into()];
    })
    .await
    else {
        return;
    };
    oauth_client(&app, "spa", json!({})).await;
    let preflight = |path: &str, origin: &'static str| {
        bare_client()
            .request(Method::OPTIONS, app.url(path))
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .send()
    };
    // The token endpoint answers the client's web origin, not the configured one.
    let ok = preflight(paths::TOKEN, APP_ORIGIN).await.unwrap();
    assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP_ORIGIN);
    let configured = preflight(paths::TOKEN, "https://dashboard.example").await.unwrap();
    assert!(configured.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    // The rest of the API still answers the configured origin only.
    let api = preflight(paths::SIGN_IN_EMAIL, "https://dashboard.example").await.unwrap();
    assert_eq!(api.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://dashboard.example");
    let api = preflight(paths::SIGN_IN_EMAIL, APP_ORIGIN).await.unwrap();
    assert!(api.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    // Discovery is public.
    let doc = bare_client()
        .get(app.url(paths::DISCOVERY))
        .header(header::ORIGIN, "https://any.example")
        .send()
        .await
        .unwrap();
    assert_eq!(doc.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}

async fn a_gateway_accepts_oauth_access_tokens_at_the_check(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    orders_api(&app).await;
    let spa = oauth_client(&app, "spa", json!({})).await;
    let id = spa["client_id"].as_str().unwrap();
    user(&app).await;
    let url = authorize_url(&app, id, &[("audience", API), ("scope", "openid read:orders")]);
    let (_, back) = authorize_with_login(&app, &url).await;
    let tokens: Value = exchange(&app, id, &code_of(&back), VERIFIER).await.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let check = |token: &str, audience: Option<&str>| {
        let mut request = bare_client().get(app.url(paths::AUTH_CHECK)).bearer_auth(token);
        if let Some(audience) = audience {
            request = request.query(&[("audience", audience)]);
        }
        request.send()
    };
    let ok = check(access, None).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-auth-method"], "oauth");
    assert_eq!(ok.headers()["x-auth-scopes"], "openid read:orders");
    assert!(ok.headers()["x-auth-user-id"].to_str().unwrap().starts_with("usr_"));
    assert_eq!(check(access, Some(API)).await.unwrap().status(), 200, "addressed to the API");
    assert_eq!(check(access, Some("https://other.example")).await.unwrap().status(), 401, "another API's gateway");
    // An ID token is not an access token; a revoked one is refused.
    assert_eq!(check(tokens["id_token"].as_str().unwrap(), None).await.unwrap().status(), 401);
    assert_eq!(revoke(&app, &[("client_id", id), ("token", access)]).await.status(), 200);
    assert_eq!(check(access, None).await.unwrap().status(), 401);

    // A machine's client-credentials token: the subject is the client.
    let machine = oauth_client(&app, "non_interactive", json!({"name": "Cron"})).await;
    let (machine_id, secret) = (machine["client_id"].as_str().unwrap(), machine["client_secret"].as_str().unwrap());
    mgmt(&app, paths::MGMT_CLIENT_GRANTS, json!({"client_id": machine_id, "audience": API, "scope": ["read:orders"]}))
        .await;
    let form =
        [("grant_type", "client_credentials"), ("client_id", machine_id), ("client_secret", secret), ("audience", API)];
    let cc: Value = bare_client().post(app.url(paths::TOKEN)).form(&form).send().await.unwrap().json().await.unwrap();
    let ok = check(cc["access_token"].as_str().unwrap(), Some(API)).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-auth-user-id"].to_str().unwrap(), format!("{machine_id}@clients"));
}

async fn id_and_access_tokens_use_the_clients_and_the_apis_algorithms(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let scopes = json!([{"value": "read:orders"}]);
    mgmt(
        &app,
        paths::MGMT_RESOURCE_SERVERS,
        json!({"name": "Orders", "identifier": API, "scopes": scopes, "signing_alg": "EdDSA"}),
    )
    .await;
    let spa = oauth_client(&app, "spa", json!({"jwt_configuration": {"alg": "ES256"}})).await;
    let id = spa["client_id"].as_str().unwrap();
    user(&app).await;
    let (_, back) =
        authorize_with_login(&app, &authorize_url(&app, id, &[("audience", API), ("scope", "openid read:orders")]))
            .await;
    let tokens: Value = exchange(&app, id, &code_of(&back), VERIFIER).await.json().await.unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(jwt_part(id_token, 0)["alg"], "ES256", "the client's jwt_configuration.alg");
    assert_eq!(jwt_part(access, 0)["alg"], "EdDSA", "the API's signing_alg");
    // Both verify with the published keys, and the access token works where one is checked.
    let jwks: Value = bare_client().get(app.url(paths::JWKS)).send().await.unwrap().json().await.unwrap();
    for (token, alg) in [(id_token, jsonwebtoken::Algorithm::ES256), (access, jsonwebtoken::Algorithm::EdDSA)] {
        let kid = kid_of(token);
        let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).expect("published");
        let key = jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.validate_aud = false;
        validation.validate_exp = false;
        assert!(jsonwebtoken::decode::<Value>(token, &key, &validation).is_ok(), "{alg:?}");
    }
    assert_eq!(userinfo(&app, access).await.status(), 200);
}
