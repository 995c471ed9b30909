//! Service tokens (capability 4): clients under the master credentials, users under a client key, tokens
//! for users, `/v1/me` with a token; every refusal (master, client key, user secret, token), forged tokens
//! (unknown key or kid, `alg: none`, HS/ES confusion, tampering, wrong claims under the real key), client
//! key rotation, the `CLIENT_API_KEY` fallback, the JWKS and signing-key rotation, verification with the
//! published JWKS alone, deleting clients and users, and malformed input.

use std::time::Duration;

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING},
};
use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine,
};
use hmac::{Hmac, Mac};
use latchkey::{
    config::{Secret, Settings},
    tokens::Algorithm,
};
use reqwest::{header, Method, RequestBuilder, Response};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::{both_backends, helpers::*};

const CLIENTS: &str = "/v1/clients";
const USERS: &str = "/v1/users";
const TOKEN: &str = "/v1/token";
const REVOKE: &str = "/v1/token/revoke";
const ME: &str = "/v1/me";
const JWKS: &str = "/.well-known/jwks.json";
const KEY_CREATE: &str = "/api/auth/api-key/create";
const CHECK: &str = "/api/auth/check";

/// `iss` of every service token (the base URL).
const ISSUER: &str = "http://localhost:3000";
/// `aud` of every service token.
const AUDIENCE: &str = "http://localhost:3000/v1";
/// The manual clock's start, in seconds (2026-11-18T11:06:40Z).
const START_SECS: i64 = 1_795_000_000;
/// The manual clock's start as the API writes it.
const START: &str = "2026-11-18T11:06:40.000Z";
/// Default token lifetime: 30 days.
const TTL_SECS: i64 = 2_592_000;
/// Default leeway on time claims.
const LEEWAY_SECS: u64 = 30;

both_backends!(
    the_full_flow_issues_a_token_that_identifies_its_user_until_it_is_revoked,
    wrong_master_credentials_are_refused_with_a_basic_challenge,
    client_management_answers_503_when_no_master_credentials_are_configured,
    the_master_credentials_are_not_a_client_key,
    missing_or_unknown_client_keys_are_refused_and_change_nothing,
    a_user_api_key_is_not_a_client_key_and_a_client_key_is_not_a_user_api_key,
    a_wrong_secret_or_an_unknown_user_gets_no_token,
    v1_me_refuses_anything_but_a_bearer_service_token,
    a_deleted_users_tokens_and_secret_stop_working,
    a_revoked_token_is_refused_and_revocation_is_idempotent,
    a_token_is_valid_until_30_days_and_the_leeway_have_passed,
    a_token_signed_by_a_key_the_server_never_issued_is_refused,
    alg_none_and_hmac_confusion_tokens_are_refused,
    a_tampered_payload_is_refused,
    tokens_with_wrong_claims_are_refused_even_when_signed_by_the_real_key,
    a_token_naming_an_unknown_kid_is_refused,
    a_client_cannot_reach_another_clients_users_or_tokens,
    an_external_id_is_unique_per_client_only,
    rotating_a_client_key_refuses_the_old_key_at_once_and_keeps_issued_tokens,
    client_api_key_is_used_only_when_a_request_carries_no_key,
    the_jwks_publishes_only_the_public_half_of_the_signing_key,
    a_rotated_signing_key_stays_published_until_its_tokens_have_expired,
    an_expired_retired_key_leaves_the_jwks_at_the_next_maintenance,
    a_token_verifies_with_the_published_jwks_alone,
    deleting_a_client_kills_its_key_its_users_and_their_tokens,
    malformed_requests_are_refused_and_change_nothing,
    forward_auth_accepts_a_service_token_until_it_is_revoked,
    records_of_expired_tokens_are_cleaned_up,
    a_signing_key_older_than_the_rotation_interval_is_rotated_by_maintenance,
    concurrent_token_requests_are_each_recorded_before_they_are_answered,
    an_rs256_or_eddsa_server_signs_with_that_algorithm,
    an_unknown_client_key_retried_costs_no_database_read,
    private_signing_keys_are_sealed_with_the_server_secret,
);

// ---------------------------------------------------------------------------------------------------------
// Helpers

/// An app with master credentials configured.
async fn spawn_service_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, with_master_credentials).await
}

/// `Authorization: Basic` for these credentials.
fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// A client, one user of it, and a token for that user.
async fn client_user_token(app: &TestApp) -> (TestClient, TestUser, String) {
    let client = create_client(app, "Acme").await;
    let user = create_user(app, &client.key, json!({"externalId": "ext-1", "name": "Ada"})).await;
    let token = issue(app, &client.key, &user).await;
    (client, user, token)
}

/// `GET /v1/me` with a bearer token.
async fn me(app: &TestApp, token: &str) -> Response {
    bare_client().get(app.url(ME)).bearer_auth(token).send().await.unwrap()
}

/// `POST /v1/token/revoke`.
async fn revoke(app: &TestApp, key: &str, token: &str) -> Response {
    with_key(app, Method::POST, REVOKE, key).json(&json!({"token": token})).send().await.unwrap()
}

/// `GET /v1/users` with a client key: the user ids listed (asserts 200).
async fn listed_user_ids(app: &TestApp, key: &str) -> Vec<String> {
    let response = with_key(app, Method::GET, USERS, key).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["users"].as_array().unwrap().iter().map(|user| user["userId"].as_str().unwrap().to_owned()).collect()
}

/// Asserts a response is `status` with error `code`.
async fn assert_error(response: Response, status: u16, code: &str, what: &str) {
    assert_eq!(response.status(), status, "{what}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{what}: {body}");
    assert!(body["message"].is_string(), "{what}: {body}");
}

/// Asserts `/v1/me` works with this token.
async fn assert_token_works(app: &TestApp, token: &str, what: &str) {
    let response = me(app, token).await;
    assert_eq!(response.status(), 200, "{what}: {}", response.text().await.unwrap());
}

/// Asserts `/v1/me` answers 401 `INVALID_TOKEN` with a Bearer challenge.
async fn assert_me_refused(response: Response, what: &str) {
    let challenge = header_str(&response, header::WWW_AUTHENTICATE.as_str()).map(str::to_owned);
    assert!(challenge.as_deref().is_some_and(|c| c.starts_with("Bearer")), "{what}: WWW-Authenticate {challenge:?}");
    assert_error(response, 401, "INVALID_TOKEN", what).await;
}

async fn assert_token_refused(app: &TestApp, token: &str, what: &str) {
    assert_me_refused(me(app, token).await, what).await;
}

fn header_str<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|value| value.to_str().unwrap())
}

/// One number from the database.
async fn scalar(app: &TestApp, sql: &str) -> i64 {
    latchkey::db_run!(&app.state.db, |pool| sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.expect(sql))
}

/// Rows of (service_clients, service_users, issued_tokens).
async fn service_counts(app: &TestApp) -> (i64, i64, i64) {
    (app.count("service_clients").await, app.count("service_users").await, app.count("issued_tokens").await)
}

/// Issued-token records of this subject that are revoked / not revoked.
async fn records_of(app: &TestApp, subject: &str, revoked: bool) -> i64 {
    let flag = if revoked { "TRUE" } else { "FALSE" };
    scalar(app, &format!("SELECT COUNT(*) FROM issued_tokens WHERE subject = '{subject}' AND revoked = {flag}")).await
}

fn signature_of(token: &str) -> &str {
    token.rsplit('.').next().unwrap()
}

/// `header.payload` (both base64url JSON).
fn signing_input(header: &Value, payload: &Value) -> String {
    format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload.to_string().as_bytes()))
}

/// A JWT with `header` and `payload` signed with HMAC-SHA256 under `secret`, whatever the header says.
fn sign_hs256(header: &Value, payload: &Value, secret: &[u8]) -> String {
    let input = signing_input(header, payload);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

/// A JWT with `header` and `payload` signed (ES256, fixed-size r||s) with `key`.
fn sign_es256(key: &EcdsaKeyPair, header: &Value, payload: &Value) -> String {
    let input = signing_input(header, payload);
    let signature = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64(signature.as_ref()))
}

/// The published JWKS.
async fn jwks(app: &TestApp) -> Value {
    let response = bare_client().get(app.url(JWKS)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The `kid`s of the published ES256 keys (the service tokens'; the JWKS also holds the OAuth provider's
/// RS256 key).
fn jwks_kids(jwks: &Value) -> Vec<String> {
    es256_keys(jwks).iter().map(|key| key["kid"].as_str().unwrap().to_owned()).collect()
}

fn es256_keys(jwks: &Value) -> Vec<Value> {
    jwks["keys"].as_array().unwrap().iter().filter(|key| key["alg"] == "ES256").cloned().collect()
}

/// The published JWK with this `kid`.
fn jwk_for<'a>(jwks: &'a Value, kid: &str) -> &'a Value {
    jwks["keys"].as_array().unwrap().iter().find(|key| key["kid"] == kid).unwrap_or_else(|| panic!("{kid} in {jwks}"))
}

/// Claims as the server issues them, for a token signed here with the real key.
fn claims_for(user_id: &str, client_id: &str) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user_id,
        "client_id": client_id,
        "jti": "jti_forgedbythetest",
        "iat": START_SECS,
        "exp": START_SECS + 3600,
    })
}

// ---------------------------------------------------------------------------------------------------------
// The flow

async fn the_full_flow_issues_a_token_that_identifies_its_user_until_it_is_revoked(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };

    // Client.
    let created = master(&app, Method::POST, CLIENTS).json(&json!({"name": "Billing"})).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let client_id = created["clientId"].as_str().unwrap().to_owned();
    let key = created["apiKey"].as_str().unwrap().to_owned();
    assert!(client_id.starts_with("cli_"), "{created}");
    assert!(key.starts_with("lkc_"), "{created}");
    assert_eq!(created["name"], "Billing");
    let listed = master(&app, Method::GET, CLIENTS).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.unwrap();
    let clients = listed["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{listed}");
    assert_eq!(clients[0]["clientId"], client_id.as_str());
    assert_eq!(clients[0]["name"], "Billing");
    assert_eq!(clients[0]["createdAt"], START);
    assert_eq!(clients[0]["updatedAt"], START);
    let key_start = clients[0]["keyStart"].as_str().unwrap();
    assert!(!key_start.is_empty() && key.starts_with(key_start) && key_start.len() < key.len(), "{listed}");
    assert!(clients[0].get("apiKey").is_none(), "the key is shown only once: {listed}");

    // User.
    let created = with_key(&app, Method::POST, USERS, &key)
        .json(&json!({"externalId": "ext-42", "name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let user_id = created["userId"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(user_id.starts_with("svu_"), "{created}");
    assert!(secret.starts_with("lks_"), "{created}");
    assert_eq!(created["externalId"], "ext-42");
    assert_eq!(created["name"], "Ada");
    let users = with_key(&app, Method::GET, USERS, &key).send().await.unwrap();
    assert_eq!(users.status(), 200);
    assert_eq!(
        users.json::<Value>().await.unwrap(),
        json!({"users": [{"userId": user_id, "externalId": "ext-42", "name": "Ada", "createdAt": START}]})
    );

    // Token.
    let issued = request_token(&app, &key, &user_id, &secret).await;
    assert_eq!(issued.status(), 200);
    assert_eq!(header_str(&issued, "cache-control"), Some("no-store"));
    let issued: Value = issued.json().await.unwrap();
    assert_eq!(issued["tokenType"], "Bearer");
    assert_eq!(issued["expiresIn"], 2_592_000);
    let token = issued["accessToken"].as_str().unwrap().to_owned();
    let header = jwt_part(&token, 0);
    assert_eq!(header["alg"], "ES256");
    let active = app.state.tokens.key_ring.active(Algorithm::Es256).expect("an active ES256 key");
    assert_eq!(header["kid"], active.kid.as_str());
    let claims = jwt_part(&token, 1);
    let jti = claims["jti"].as_str().unwrap().to_owned();
    assert!(!jti.is_empty());
    assert_eq!(
        claims,
        json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": user_id,
            "client_id": client_id,
            "jti": jti,
            "iat": START_SECS,
            "exp": START_SECS + TTL_SECS,
        })
    );

    // The record is committed before the token is handed out.
    assert_eq!(app.count("issued_tokens").await, 1);
    let record = format!(
        "SELECT COUNT(*) FROM issued_tokens WHERE jti = '{jti}' AND subject = '{user_id}' AND client_id = '{client_id}' \
         AND expires_at = {} AND revoked = FALSE AND created_at = {}",
        (START_SECS + TTL_SECS) * 1000,
        START_SECS * 1000
    );
    assert_eq!(scalar(&app, &record).await, 1);

    // Identity.
    let identity = me(&app, &token).await;
    assert_eq!(identity.status(), 200);
    assert_eq!(
        identity.json::<Value>().await.unwrap(),
        json!({
            "userId": user_id,
            "clientId": client_id,
            "externalId": "ext-42",
            "name": "Ada",
            "expiresAt": "2026-12-18T11:06:40.000Z",
        })
    );

    // Revocation.
    let revoked = revoke(&app, &key, &token).await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(revoked.json::<Value>().await.unwrap(), json!({"revoked": true}));
    assert_token_refused(&app, &token, "revoked token").await;
    assert_eq!(records_of(&app, &user_id, true).await, 1);
    assert_eq!(app.count("issued_tokens").await, 1);
}

// ---------------------------------------------------------------------------------------------------------
// Refusals: master credentials

async fn wrong_master_credentials_are_refused_with_a_basic_challenge(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let real = create_client(&app, "Real").await;
    let rotate = format!("{CLIENTS}/{}/rotate-key", real.id);
    let delete = format!("{CLIENTS}/{}", real.id);
    let endpoints = [
        (Method::POST, CLIENTS, Some(json!({"name": "Evil"}))),
        (Method::GET, CLIENTS, None),
        (Method::DELETE, delete.as_str(), None),
        (Method::POST, rotate.as_str(), None),
    ];
    let credentials = [
        ("wrong password", Some(basic(MASTER_USER, "wrong-password-0123456789"))),
        ("wrong username", Some(basic("admin", MASTER_PASSWORD))),
        ("swapped", Some(basic(MASTER_PASSWORD, MASTER_USER))),
        ("password with a suffix", Some(basic(MASTER_USER, &format!("{MASTER_PASSWORD}x")))),
        ("password prefix", Some(basic(MASTER_USER, &MASTER_PASSWORD[..10]))),
        ("empty password", Some(basic(MASTER_USER, ""))),
        ("empty username", Some(basic("", MASTER_PASSWORD))),
        ("no colon", Some(format!("Basic {}", STANDARD.encode(MASTER_USER)))),
        ("not base64", Some("Basic !!!not-base64!!!".to_owned())),
        ("bearer scheme", Some(format!("Bearer {MASTER_PASSWORD}"))),
        ("the client key as bearer", Some(format!("Bearer {}", real.key))),
        ("no credentials", None),
    ];

    for (method, path, body) in &endpoints {
        for (what, authorization) in &credentials {
            let mut request = bare_client().request(method.clone(), app.url(path));
            if let Some(authorization) = authorization {
                request = request.header(header::AUTHORIZATION, authorization);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            let what = format!("{method} {path} with {what}");
            assert_eq!(header_str(&response, "www-authenticate"), Some("Basic realm=\"latchkey\""), "{what}");
            assert_error(response, 401, "INVALID_MASTER_CREDENTIALS", &what).await;
        }
    }

    // Nothing was created, deleted or rotated: the client and its key still work.
    assert_eq!(app.count("service_clients").await, 1);
    assert_eq!(listed_user_ids(&app, &real.key).await, Vec::<String>::new());
    // The right credentials do work (the scheme is case-insensitive).
    let listed = bare_client()
        .get(app.url(CLIENTS))
        .header(header::AUTHORIZATION, basic(MASTER_USER, MASTER_PASSWORD).replacen("Basic", "basic", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
}

async fn client_management_answers_503_when_no_master_credentials_are_configured(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let endpoints = [
        (Method::POST, CLIENTS.to_owned(), Some(json!({"name": "Evil"}))),
        (Method::GET, CLIENTS.to_owned(), None),
        (Method::DELETE, format!("{CLIENTS}/cli_x"), None),
        (Method::POST, format!("{CLIENTS}/cli_x/rotate-key"), None),
    ];

    for (method, path, body) in &endpoints {
        for credentials in [Some(basic(MASTER_USER, MASTER_PASSWORD)), Some(basic("", "")), None] {
            let mut request = bare_client().request(method.clone(), app.url(path));
            if let Some(credentials) = &credentials {
                request = request.header(header::AUTHORIZATION, credentials);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let what = format!("{method} {path} with {credentials:?}");
            assert_error(request.send().await.unwrap(), 503, "MASTER_CREDENTIALS_NOT_CONFIGURED", &what).await;
        }
    }
    assert_eq!(app.count("service_clients").await, 0);
}

async fn the_master_credentials_are_not_a_client_key(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (client, user, token) = client_user_token(&app).await;
    let delete_user = format!("{USERS}/{}", user.id);
    let requests = [
        ("create user", master(&app, Method::POST, USERS).json(&json!({"externalId": "x"}))),
        ("list users", master(&app, Method::GET, USERS)),
        ("delete user", master(&app, Method::DELETE, &delete_user)),
        ("token", master(&app, Method::POST, TOKEN).json(&json!({"userId": user.id, "secret": user.secret}))),
        ("revoke", master(&app, Method::POST, REVOKE).json(&json!({"token": token}))),
        ("master password as x-api-key", bare_client().get(app.url(USERS)).header("x-api-key", MASTER_PASSWORD)),
        (
            "master Basic value as x-api-key",
            bare_client().get(app.url(USERS)).header("x-api-key", basic(MASTER_USER, MASTER_PASSWORD)),
        ),
    ];

    for (what, request) in requests {
        assert_error(request.send().await.unwrap(), 401, "INVALID_CLIENT_KEY", what).await;
    }
    // Nor are they a token.
    let response = bare_client()
        .get(app.url(ME))
        .header(header::AUTHORIZATION, basic(MASTER_USER, MASTER_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_me_refused(response, "master credentials on /v1/me").await;

    assert_eq!(app.count("service_users").await, 1);
    assert_eq!(app.count("issued_tokens").await, 1);
    assert_eq!(listed_user_ids(&app, &client.key).await, [user.id.as_str()]);
    assert_token_works(&app, &token, "not revoked by the master credentials").await;
}

// ---------------------------------------------------------------------------------------------------------
// Refusals: client keys

async fn missing_or_unknown_client_keys_are_refused_and_change_nothing(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (client, user, token) = client_user_token(&app).await;
    let mut last_changed = client.key.clone();
    let replaced = if last_changed.ends_with('A') { 'B' } else { 'A' };
    last_changed.pop();
    last_changed.push(replaced);
    let unknown = format!("lkc_{}", "x".repeat(48));
    let extended = format!("{}x", client.key);
    let truncated = client.key[..client.key.len() - 1].to_owned();
    let upper = format!("LKC_{}", &client.key[4..]);
    let bearer_key = format!("Bearer {}", client.key);
    let keys: [(&str, Option<&str>); 9] = [
        ("no key", None),
        ("empty key", Some("")),
        ("unknown client key", Some(&unknown)),
        ("last character changed", Some(&last_changed)),
        ("extra character", Some(&extended)),
        ("truncated", Some(&truncated)),
        ("upper-case prefix", Some(&upper)),
        ("the user's secret", Some(&user.secret)),
        ("Bearer + client key in x-api-key", Some(&bearer_key)),
    ];
    let delete_user = format!("{USERS}/{}", user.id);

    for (what, key) in keys {
        let requests = [
            ("create user", bare_client().post(app.url(USERS)).json(&json!({"externalId": "evil"}))),
            ("list users", bare_client().get(app.url(USERS))),
            ("delete user", bare_client().delete(app.url(&delete_user))),
            ("token", bare_client().post(app.url(TOKEN)).json(&json!({"userId": user.id, "secret": user.secret}))),
            ("revoke", bare_client().post(app.url(REVOKE)).json(&json!({"token": token}))),
        ];
        for (endpoint, request) in requests {
            let request = match key {
                Some(key) => request.header("x-api-key", key),
                None => request,
            };
            let what = format!("{endpoint} with {what}");
            assert_error(request.send().await.unwrap(), 401, "INVALID_CLIENT_KEY", &what).await;
        }
    }
    // The key in `Authorization: Bearer` is not a client key either.
    let response = bare_client().get(app.url(USERS)).bearer_auth(&client.key).send().await.unwrap();
    assert_error(response, 401, "INVALID_CLIENT_KEY", "client key as a bearer token").await;

    assert_eq!(app.count("service_users").await, 1);
    assert_eq!(app.count("issued_tokens").await, 1);
    assert_eq!(records_of(&app, &user.id, true).await, 0);
    assert_token_works(&app, &token, "not revoked").await;
    assert_eq!(listed_user_ids(&app, &client.key).await, [user.id.as_str()]);
}

async fn a_user_api_key_is_not_a_client_key_and_a_client_key_is_not_a_user_api_key(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (client, user, token) = client_user_token(&app).await;
    assert_eq!(app.sign_up("alice@example.com").await.status(), 200);
    let created = app.post(KEY_CREATE, &json!({"name": "ci"})).await;
    assert_eq!(created.status(), 200);
    let user_key = created.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_owned();
    assert!(user_key.starts_with("lk_"), "{user_key}");
    // The user key is a working credential where it belongs.
    let checked = bare_client().get(app.url(CHECK)).header("x-api-key", &user_key).send().await.unwrap();
    assert_eq!(checked.status(), 200);

    let delete_user = format!("{USERS}/{}", user.id);
    let requests = [
        ("create user", with_key(&app, Method::POST, USERS, &user_key).json(&json!({"externalId": "x"}))),
        ("list users", with_key(&app, Method::GET, USERS, &user_key)),
        ("delete user", with_key(&app, Method::DELETE, &delete_user, &user_key)),
        (
            "token",
            with_key(&app, Method::POST, TOKEN, &user_key).json(&json!({"userId": user.id, "secret": user.secret})),
        ),
        ("revoke", with_key(&app, Method::POST, REVOKE, &user_key).json(&json!({"token": token}))),
    ];
    for (what, request) in requests {
        assert_error(request.send().await.unwrap(), 401, "INVALID_CLIENT_KEY", what).await;
    }
    // A user key cannot be given the client-key prefix.
    let disguised = app.post(KEY_CREATE, &json!({"name": "disguised", "prefix": "lkc_"})).await;
    assert_eq!(disguised.status(), 400, "a user API key with the lkc_ prefix");
    assert_eq!(app.count("api_keys").await, 1);

    // The other way round: neither the client key nor a user secret is a user API key.
    for (what, key) in [("client key", client.key.as_str()), ("user secret", user.secret.as_str())] {
        let response = bare_client().get(app.url(CHECK)).header("x-api-key", key).send().await.unwrap();
        assert_eq!(response.status(), 401, "{what} on /api/auth/check");
    }

    assert_eq!(app.count("service_users").await, 1);
    assert_eq!(app.count("issued_tokens").await, 1);
    assert_token_works(&app, &token, "not revoked").await;
}

// ---------------------------------------------------------------------------------------------------------
// Refusals: user secrets and tokens

async fn a_wrong_secret_or_an_unknown_user_gets_no_token(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let client = create_client(&app, "Acme").await;
    let ada = create_user(&app, &client.key, json!({"name": "Ada"})).await;
    let bob = create_user(&app, &client.key, json!({"name": "Bob"})).await;
    let mut last_changed = ada.secret.clone();
    let replaced = if last_changed.ends_with('A') { 'B' } else { 'A' };
    last_changed.pop();
    last_changed.push(replaced);
    let cases = [
        ("another user's secret", ada.id.as_str(), bob.secret.as_str()),
        ("last character changed", ada.id.as_str(), last_changed.as_str()),
        ("truncated secret", ada.id.as_str(), &ada.secret[..ada.secret.len() - 1]),
        ("empty secret", ada.id.as_str(), ""),
        ("the client key as secret", ada.id.as_str(), client.key.as_str()),
        ("unknown user", "svu_doesnotexist", ada.secret.as_str()),
        ("empty user id", "", ada.secret.as_str()),
        ("secret as user id", ada.secret.as_str(), ada.id.as_str()),
    ];

    for (what, user_id, secret) in cases {
        assert_error(request_token(&app, &client.key, user_id, secret).await, 401, "INVALID_CREDENTIALS", what).await;
    }

    assert_eq!(app.count("issued_tokens").await, 0);
    let token = issue(&app, &client.key, &ada).await;
    assert_eq!(jwt_part(&token, 1)["sub"], ada.id.as_str());
}

async fn v1_me_refuses_anything_but_a_bearer_service_token(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (client, user, token) = client_user_token(&app).await;
    let authorizations = [
        ("empty bearer", "Bearer ".to_owned()),
        ("garbage", "Bearer garbage".to_owned()),
        ("three empty parts", "Bearer ..".to_owned()),
        ("a.b.c", "Bearer a.b.c".to_owned()),
        ("client key as bearer", format!("Bearer {}", client.key)),
        ("user secret as bearer", format!("Bearer {}", user.secret)),
        ("token without a scheme", token.clone()),
        ("token under Basic", format!("Basic {token}")),
        ("token with its signature stripped", format!("Bearer {}.", token.rsplit_once('.').unwrap().0)),
        ("header and payload only", format!("Bearer {}", token.rsplit_once('.').unwrap().0)),
    ];

    let none = bare_client().get(app.url(ME)).send().await.unwrap();
    assert_me_refused(none, "no Authorization").await;
    let in_key = bare_client().get(app.url(ME)).header("x-api-key", &token).send().await.unwrap();
    assert_me_refused(in_key, "token in x-api-key").await;
    let client_key = bare_client().get(app.url(ME)).header("x-api-key", &client.key).send().await.unwrap();
    assert_me_refused(client_key, "client key in x-api-key").await;
    for (what, authorization) in authorizations {
        let response =
            bare_client().get(app.url(ME)).header(header::AUTHORIZATION, authorization).send().await.unwrap();
        assert_me_refused(response, what).await;
    }
    assert_token_works(&app, &token, "the real token").await;
}

async fn a_deleted_users_tokens_and_secret_stop_working(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let client = create_client(&app, "Acme").await;
    let ada = create_user(&app, &client.key, json!({"externalId": "ada"})).await;
    let bob = create_user(&app, &client.key, json!({"externalId": "bob"})).await;
    let ada_1 = issue(&app, &client.key, &ada).await;
    let ada_2 = issue(&app, &client.key, &ada).await;
    let bob_token = issue(&app, &client.key, &bob).await;
    // Warm every cache: the user, the verified token.
    assert_token_works(&app, &ada_1, "before deletion").await;

    let deleted = with_key(&app, Method::DELETE, &format!("{USERS}/{}", ada.id), &client.key).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(deleted.json::<Value>().await.unwrap(), json!({"deleted": true}));

    assert_token_refused(&app, &ada_1, "a deleted user's token (verified before)").await;
    assert_token_refused(&app, &ada_2, "a deleted user's token (never verified)").await;
    let again = request_token(&app, &client.key, &ada.id, &ada.secret).await;
    assert_error(again, 401, "INVALID_CREDENTIALS", "token for a deleted user").await;
    let twice = with_key(&app, Method::DELETE, &format!("{USERS}/{}", ada.id), &client.key).send().await.unwrap();
    assert_error(twice, 404, "NOT_FOUND", "deleting twice").await;
    assert_eq!(listed_user_ids(&app, &client.key).await, [bob.id.as_str()]);
    // Its records are revoked; the other user's are not.
    assert_eq!(records_of(&app, &ada.id, false).await, 0);
    assert_eq!(records_of(&app, &ada.id, true).await, 2);
    assert_eq!(records_of(&app, &bob.id, false).await, 1);
    assert_token_works(&app, &bob_token, "another user's token").await;
}

async fn a_revoked_token_is_refused_and_revocation_is_idempotent(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (client, user, token) = client_user_token(&app).await;
    let other = issue(&app, &client.key, &user).await;
    assert_token_works(&app, &token, "before revocation").await;

    for round in 0..2 {
        let revoked = revoke(&app, &client.key, &token).await;
        assert_eq!(revoked.status(), 200, "round {round}");
        assert_eq!(revoked.json::<Value>().await.unwrap(), json!({"revoked": true}));
    }
    for garbage in ["", "garbage", "a.b.c"] {
        let response = revoke(&app, &client.key, garbage).await;
        assert_eq!(response.status(), 200, "{garbage:?}");
        assert_eq!(response.json::<Value>().await.unwrap(), json!({"revoked": true}));
    }

    assert_token_refused(&app, &token, "revoked token").await;
    assert_eq!(records_of(&app, &user.id, true).await, 1);
    // Only that token: the user's other token and the user itself are fine.
    assert_token_works(&app, &other, "another token of the same user").await;
    let fresh = issue(&app, &client.key, &user).await;
    assert_token_works(&app, &fresh, "a new token").await;
}

async fn a_token_is_valid_until_30_days_and_the_leeway_have_passed(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (client, user, token) = client_user_token(&app).await;
    let unverified = issue(&app, &client.key, &user).await;
    assert_token_works(&app, &token, "fresh").await;

    app.clock.advance(Duration::from_secs(TTL_SECS as u64));
    assert_token_works(&app, &token, "at exp, inside the leeway").await;
    app.clock.advance(Duration::from_secs(LEEWAY_SECS - 1));
    assert_token_works(&app, &token, "exp + 29 s").await;
    assert_token_works(&app, &unverified, "exp + 29 s, first verification").await;

    app.clock.advance(Duration::from_secs(1));
    assert_token_refused(&app, &token, "exp + 30 s").await;
    assert_token_refused(&app, &unverified, "exp + 30 s, never cached").await;

    // Revoking an expired token is still a 200; a new token works.
    assert_eq!(revoke(&app, &client.key, &token).await.status(), 200);
    let fresh = issue(&app, &client.key, &user).await;
    assert_eq!(jwt_part(&fresh, 1)["iat"], START_SECS + TTL_SECS + LEEWAY_SECS as i64);
    assert_token_works(&app, &fresh, "a token issued now").await;
}

async fn a_token_signed_by_a_key_the_server_never_issued_is_refused(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (_, _, token) = client_user_token(&app).await;
    let real_kid = kid_of(&token);
    let payload = jwt_part(&token, 1);
    let own = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = own.public_key().as_ref();
    let own_jwk = json!({
        "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        "kid": "key_attacker", "alg": "ES256", "use": "sig",
    });

    let forgeries = [
        ("own key, the real kid", sign_es256(&own, &json!({"alg": "ES256", "typ": "JWT", "kid": real_kid}), &payload)),
        (
            "own key, its own kid",
            sign_es256(&own, &json!({"alg": "ES256", "typ": "JWT", "kid": "key_attacker"}), &payload),
        ),
        ("own key, no kid", sign_es256(&own, &json!({"alg": "ES256", "typ": "JWT"}), &payload)),
        (
            "own key, embedded jwk",
            sign_es256(&own, &json!({"alg": "ES256", "typ": "JWT", "kid": real_kid, "jwk": own_jwk}), &payload),
        ),
        (
            "own key, jku",
            sign_es256(
                &own,
                &json!({"alg": "ES256", "typ": "JWT", "kid": "key_attacker", "jku": "https://evil.example/jwks.json"}),
                &payload,
            ),
        ),
    ];

    for (what, forged) in &forgeries {
        // Control: each forgery is a well-formed ES256 token that verifies under the attacker's key.
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(own_jwk.clone()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_exp = false;
        let decoded =
            jsonwebtoken::decode::<Value>(forged, &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(), &validation);
        assert!(decoded.is_ok(), "control failed for {what}: {decoded:?}");

        assert_token_refused(&app, forged, what).await;
    }
    assert_token_works(&app, &token, "the real token").await;
}

async fn alg_none_and_hmac_confusion_tokens_are_refused(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (_, _, token) = client_user_token(&app).await;
    let kid = kid_of(&token);
    let payload = jwt_part(&token, 1);
    let signature = signature_of(&token).to_owned();
    let jwks = jwks(&app).await;
    let jwk = jwk_for(&jwks, &kid).clone();
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
    let point: Vec<u8> = [&[4u8][..], &x, &y].concat();
    let spki: Vec<u8> =
        [hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap(), point.clone()].concat();
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(&spki));
    let jwk_text = jwk.to_string();
    let public_forms: [(&str, &[u8]); 6] = [
        ("uncompressed point", &point),
        ("x || y", &point[1..]),
        ("SPKI DER", &spki),
        ("SPKI PEM", pem.as_bytes()),
        ("the JWK as published", jwk_text.as_bytes()),
        ("x (base64url text)", jwk["x"].as_str().unwrap().as_bytes()),
    ];

    let mut forgeries: Vec<(String, String)> = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        for with_kid in [true, false] {
            let header = if with_kid {
                json!({"alg": alg, "typ": "JWT", "kid": kid})
            } else {
                json!({"alg": alg, "typ": "JWT"})
            };
            let input = signing_input(&header, &payload);
            forgeries.push((format!("alg {alg} (kid {with_kid}), empty signature"), format!("{input}.")));
            forgeries.push((format!("alg {alg} (kid {with_kid}), original signature"), format!("{input}.{signature}")));
        }
    }
    for (form, secret) in public_forms {
        for alg in ["HS256", "HS384", "HS512"] {
            let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
            forgeries
                .push((format!("{alg} keyed with the public key ({form})"), sign_hs256(&header, &payload, secret)));
        }
        let header = json!({"alg": "HS256", "typ": "JWT"});
        forgeries.push((format!("HS256 without kid ({form})"), sign_hs256(&header, &payload, secret)));
    }
    // The original signature under another algorithm's name.
    for alg in ["ES384", "ES512", "RS256", "PS256", "EdDSA", "HS256"] {
        let input = signing_input(&json!({"alg": alg, "typ": "JWT", "kid": kid}), &payload);
        forgeries.push((format!("header alg {alg}, original signature"), format!("{input}.{signature}")));
    }

    for (what, forged) in &forgeries {
        assert_token_refused(&app, forged, what).await;
    }
    assert_token_works(&app, &token, "the real token").await;
}

async fn a_tampered_payload_is_refused(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (client, ada, token) = client_user_token(&app).await;
    let bob = create_user(&app, &client.key, json!({"externalId": "bob"})).await;
    let other_client = create_client(&app, "Other").await;
    let bob_token = issue(&app, &client.key, &bob).await;
    let (header_b64, rest) = token.split_once('.').unwrap();
    let signature = signature_of(&token);
    let payload = jwt_part(&token, 1);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut changed = payload.clone();
        change(&mut changed);
        format!("{header_b64}.{}.{signature}", b64(changed.to_string().as_bytes()))
    };
    let forgeries = [
        ("sub: another user of the same client", with(&|p| p["sub"] = json!(bob.id))),
        ("client_id: another client", with(&|p| p["client_id"] = json!(other_client.id))),
        ("exp extended", with(&|p| p["exp"] = json!(START_SECS + 10 * TTL_SECS))),
        ("jti changed", with(&|p| p["jti"] = json!("jti_other"))),
        ("extra claim", with(&|p| p["admin"] = json!(true))),
        ("same claims, re-encoded", with(&|_| {})),
        (
            "bob's payload, ada's signature",
            format!("{header_b64}.{}.{signature}", bob_token.split('.').nth(1).unwrap()),
        ),
        (
            "ada's payload, bob's signature",
            format!("{header_b64}.{}.{}", rest.split('.').next().unwrap(), signature_of(&bob_token)),
        ),
        ("signature bit flipped", {
            let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
            bytes[10] ^= 1;
            format!("{}.{}", token.rsplit_once('.').unwrap().0, b64(&bytes))
        }),
        ("signature truncated", format!("{}.{}", token.rsplit_once('.').unwrap().0, &signature[..signature.len() - 4])),
    ];

    for (what, forged) in &forgeries {
        if *forged == token {
            continue; // `serde_json` re-encoded the claims byte for byte: nothing was tampered.
        }
        assert_token_refused(&app, forged, what).await;
    }
    assert_token_works(&app, &token, "ada's real token").await;
    assert_token_works(&app, &bob_token, "bob's real token").await;
    let who = me(&app, &token).await.json::<Value>().await.unwrap();
    assert_eq!(who["userId"], ada.id.as_str());
}

async fn tokens_with_wrong_claims_are_refused_even_when_signed_by_the_real_key(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let acme = create_client(&app, "Acme").await;
    let ada = create_user(&app, &acme.key, json!({"externalId": "ada"})).await;
    let globex = create_client(&app, "Globex").await;
    let gus = create_user(&app, &globex.key, json!({"externalId": "gus"})).await;
    let sign =
        |claims: &Value| app.state.tokens.key_ring.sign(Algorithm::Es256, claims).expect("sign with the real key");
    let base = claims_for(&ada.id, &acme.id);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = base.clone();
        change(&mut claims);
        sign(&claims)
    };
    let without = |claim: &str| {
        let mut claims = base.clone();
        claims.as_object_mut().unwrap().remove(claim);
        sign(&claims)
    };

    // Controls: built this way, the right claims are accepted (time claims inside the leeway too).
    for (what, accepted) in [
        ("the right claims", sign(&base)),
        ("iat 29 s in the future", with(&|c| c["iat"] = json!(START_SECS + 29))),
        ("exp 29 s ago", with(&|c| c["exp"] = json!(START_SECS - 29))),
    ] {
        assert_token_works(&app, &accepted, what).await;
    }

    let refused = [
        ("aud: the issuer", with(&|c| c["aud"] = json!(ISSUER))),
        ("aud: another service", with(&|c| c["aud"] = json!("http://evil.example/v1"))),
        ("aud: a list without ours", with(&|c| c["aud"] = json!(["http://evil.example/v1"]))),
        ("aud: with a trailing slash", with(&|c| c["aud"] = json!(format!("{AUDIENCE}/")))),
        ("iss: another issuer", with(&|c| c["iss"] = json!("http://evil.example"))),
        ("iss: with a trailing slash", with(&|c| c["iss"] = json!(format!("{ISSUER}/")))),
        ("iss: the audience", with(&|c| c["iss"] = json!(AUDIENCE))),
        ("exp 30 s ago", with(&|c| c["exp"] = json!(START_SECS - 30))),
        ("iat 31 s in the future", with(&|c| c["iat"] = json!(START_SECS + 31))),
        ("exp as a string", with(&|c| c["exp"] = json!((START_SECS + 3600).to_string()))),
        ("no exp", without("exp")),
        ("no iat", without("iat")),
        ("no iss", without("iss")),
        ("no aud", without("aud")),
        ("no sub", without("sub")),
        ("no client_id", without("client_id")),
        ("no jti", without("jti")),
        ("sub: unknown user", with(&|c| c["sub"] = json!("svu_doesnotexist"))),
        ("sub: another client's user", with(&|c| c["sub"] = json!(gus.id))),
        ("client_id: another client", with(&|c| c["client_id"] = json!(globex.id))),
        ("client_id: unknown client", with(&|c| c["client_id"] = json!("cli_doesnotexist"))),
    ];
    for (what, forged) in &refused {
        assert_token_refused(&app, forged, what).await;
    }
}

async fn a_token_naming_an_unknown_kid_is_refused(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (_, _, token) = client_user_token(&app).await;
    let header = jwt_part(&token, 0);
    let (_, payload_and_signature) = token.split_once('.').unwrap();
    let with_header = |header: Value| format!("{}.{payload_and_signature}", b64(header.to_string().as_bytes()));
    let mut unknown = header.clone();
    unknown["kid"] = json!("key_doesnotexist");
    let mut empty = header.clone();
    empty["kid"] = json!("");
    let mut numeric = header.clone();
    numeric["kid"] = json!(1);
    let mut traversal = header.clone();
    traversal["kid"] = json!("../../etc/passwd");
    let mut missing = header.clone();
    missing.as_object_mut().unwrap().remove("kid");

    for (what, forged) in [
        ("unknown kid", with_header(unknown)),
        ("empty kid", with_header(empty)),
        ("numeric kid", with_header(numeric)),
        ("path-like kid", with_header(traversal)),
        ("no kid", with_header(missing)),
    ] {
        assert_token_refused(&app, &forged, what).await;
    }
    assert_token_works(&app, &token, "the real token").await;
}

// ---------------------------------------------------------------------------------------------------------
// Clients and their users

async fn a_client_cannot_reach_another_clients_users_or_tokens(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (acme, ada, ada_token) = client_user_token(&app).await;
    let globex = create_client(&app, "Globex").await;

    let stolen = request_token(&app, &globex.key, &ada.id, &ada.secret).await;
    assert_error(stolen, 401, "INVALID_CREDENTIALS", "token for another client's user").await;
    let deleted = with_key(&app, Method::DELETE, &format!("{USERS}/{}", ada.id), &globex.key).send().await.unwrap();
    assert_error(deleted, 404, "NOT_FOUND", "deleting another client's user").await;
    assert_eq!(listed_user_ids(&app, &globex.key).await, Vec::<String>::new());
    let gus = create_user(&app, &globex.key, json!({"externalId": "gus"})).await;
    assert_eq!(listed_user_ids(&app, &globex.key).await, [gus.id.as_str()]);
    assert_eq!(listed_user_ids(&app, &acme.key).await, [ada.id.as_str()]);
    let revoked = revoke(&app, &globex.key, &ada_token).await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(revoked.json::<Value>().await.unwrap(), json!({"revoked": true}), "says nothing either way");

    // Ada, her token and her record are untouched.
    assert_token_works(&app, &ada_token, "not revoked by another client").await;
    assert_eq!(records_of(&app, &ada.id, true).await, 0);
    assert_eq!(app.count("issued_tokens").await, 1);
    let unknown = with_key(&app, Method::DELETE, &format!("{USERS}/svu_doesnotexist"), &acme.key).send().await.unwrap();
    assert_error(unknown, 404, "NOT_FOUND", "deleting an unknown user").await;
}

async fn an_external_id_is_unique_per_client_only(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let acme = create_client(&app, "Acme").await;
    let globex = create_client(&app, "Globex").await;
    create_user(&app, &acme.key, json!({"externalId": "u-1"})).await;

    let duplicate = with_key(&app, Method::POST, USERS, &acme.key).json(&json!({"externalId": "u-1"})).send().await;
    assert_error(duplicate.unwrap(), 409, "EXTERNAL_ID_TAKEN", "same externalId, same client").await;
    create_user(&app, &globex.key, json!({"externalId": "u-1"})).await;
    // Users without an externalId do not collide.
    create_user(&app, &acme.key, json!({})).await;
    create_user(&app, &acme.key, json!({"name": "No external id"})).await;

    assert_eq!(app.count("service_users").await, 4);
    assert_eq!(listed_user_ids(&app, &acme.key).await.len(), 3);
}

async fn rotating_a_client_key_refuses_the_old_key_at_once_and_keeps_issued_tokens(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (client, user, token) = client_user_token(&app).await;
    // Warm the client cache with the old key.
    assert_eq!(listed_user_ids(&app, &client.key).await, [user.id.as_str()]);
    app.clock.advance(Duration::from_secs(60));

    let rotated = master(&app, Method::POST, &format!("{CLIENTS}/{}/rotate-key", client.id)).send().await.unwrap();
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    assert_eq!(rotated["clientId"], client.id.as_str());
    assert_eq!(rotated["name"], "Acme");
    let new_key = rotated["apiKey"].as_str().unwrap().to_owned();
    assert!(new_key.starts_with("lkc_") && new_key != client.key, "{rotated}");

    let old_list = with_key(&app, Method::GET, USERS, &client.key).send().await.unwrap();
    assert_error(old_list, 401, "INVALID_CLIENT_KEY", "old key, list").await;
    let old_token = request_token(&app, &client.key, &user.id, &user.secret).await;
    assert_error(old_token, 401, "INVALID_CLIENT_KEY", "old key, token").await;
    assert_eq!(listed_user_ids(&app, &new_key).await, [user.id.as_str()]);
    let fresh = issue(&app, &new_key, &user).await;
    assert_token_works(&app, &fresh, "issued with the new key").await;
    assert_token_works(&app, &token, "issued before the rotation").await;

    let listed: Value = master(&app, Method::GET, CLIENTS).send().await.unwrap().json().await.unwrap();
    let listed = &listed["clients"][0];
    assert!(new_key.starts_with(listed["keyStart"].as_str().unwrap()), "{listed}");
    assert_eq!(listed["createdAt"], START);
    assert_eq!(listed["updatedAt"], "2026-11-18T11:07:40.000Z");

    let unknown = master(&app, Method::POST, &format!("{CLIENTS}/cli_doesnotexist/rotate-key")).send().await.unwrap();
    assert_error(unknown, 404, "NOT_FOUND", "rotating an unknown client").await;
    assert_eq!(app.count("service_clients").await, 1);
}

async fn client_api_key_is_used_only_when_a_request_carries_no_key(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let default = create_client(&app, "Default").await;
    let other = create_client(&app, "Other").await;
    let fallback = default.key.clone();
    let node = spawn_node(&app._db.as_ref().unwrap().url(), move |settings| {
        with_master_credentials(settings);
        settings.service.client_api_key = Some(Secret::new(fallback));
    })
    .await;

    // No x-api-key: the configured client.
    let created = bare_client().post(node.url(USERS)).json(&json!({"externalId": "via-fallback"})).send().await;
    let created = created.unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let user = TestUser {
        id: created["userId"].as_str().unwrap().to_owned(),
        secret: created["secret"].as_str().unwrap().to_owned(),
    };
    assert_eq!(listed_user_ids(&app, &default.key).await, [user.id.as_str()]);
    let listed: Value = bare_client().get(node.url(USERS)).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["users"][0]["userId"], user.id.as_str());
    let issued = bare_client()
        .post(node.url(TOKEN))
        .json(&json!({"userId": user.id, "secret": user.secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status(), 200);
    let token = issued.json::<Value>().await.unwrap()["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(jwt_part(&token, 1)["client_id"], default.id.as_str());
    assert_token_works(&node, &token, "issued through the fallback").await;

    // A key in the request wins over the fallback.
    assert_eq!(listed_user_ids(&node, &other.key).await, Vec::<String>::new());
    let stolen = request_token(&node, &other.key, &user.id, &user.secret).await;
    assert_error(stolen, 401, "INVALID_CREDENTIALS", "explicit other key").await;
    // A wrong key does not fall back.
    let unknown = format!("lkc_{}", "x".repeat(48));
    for (what, key) in [("unknown key", unknown.as_str()), ("empty key", ""), ("user secret", user.secret.as_str())] {
        let listed = with_key(&node, Method::GET, USERS, key).send().await.unwrap();
        assert_error(listed, 401, "INVALID_CLIENT_KEY", what).await;
        let issued = request_token(&node, key, &user.id, &user.secret).await;
        assert_error(issued, 401, "INVALID_CLIENT_KEY", what).await;
    }
    // Revocation through the fallback.
    let revoked = bare_client().post(node.url(REVOKE)).json(&json!({"token": token})).send().await.unwrap();
    assert_eq!(revoked.status(), 200);
    assert_token_refused(&node, &token, "revoked through the fallback").await;
    // The node without a fallback still needs a key.
    let keyless = bare_client().get(app.url(USERS)).send().await.unwrap();
    assert_error(keyless, 401, "INVALID_CLIENT_KEY", "no key, no fallback").await;
}

// ---------------------------------------------------------------------------------------------------------
// JWKS and signing keys

async fn the_jwks_publishes_only_the_public_half_of_the_signing_key(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (_, _, token) = client_user_token(&app).await;

    let response = bare_client().get(app.url(JWKS)).send().await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(header_str(&response, "cache-control"), Some("public, max-age=300"));
    assert!(header_str(&response, "content-type").unwrap().starts_with("application/json"));
    let jwks: Value = response.json().await.unwrap();
    let keys = es256_keys(&jwks);
    assert_eq!(keys.len(), 1, "{jwks}");
    assert!(jwks["keys"].as_array().unwrap().iter().all(|key| key.get("d").is_none()), "{jwks}");
    let key = &keys[0];
    let mut fields: Vec<&str> = key.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["alg", "crv", "kid", "kty", "use", "x", "y"], "no private or extra fields: {key}");
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"], kid_of(&token).as_str());
    for coordinate in ["x", "y"] {
        let bytes = URL_SAFE_NO_PAD.decode(key[coordinate].as_str().unwrap()).unwrap();
        assert_eq!(bytes.len(), 32, "{coordinate}");
    }
    assert!(jwks.as_object().unwrap().len() == 1, "{jwks}");
}

async fn a_rotated_signing_key_stays_published_until_its_tokens_have_expired(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (client, user, old_token) = client_user_token(&app).await;
    let old_kid = kid_of(&old_token);
    let window = app.state.longest_token_life();
    let now = app.state.clock.now();

    let new_kid = app
        .state
        .tokens
        .key_ring
        .rotate(&app.state.db, Algorithm::Es256, now, window, None)
        .await
        .unwrap()
        .expect("rotated");

    assert_ne!(new_kid, old_kid);
    assert_eq!(jwks_kids(&jwks(&app).await), [new_kid.clone(), old_kid.clone()], "the active key first");
    let new_token = issue(&app, &client.key, &user).await;
    assert_eq!(kid_of(&new_token), new_kid);
    // The old token was never verified before the rotation: it verifies with the retired key.
    assert_token_works(&app, &old_token, "signed by the retired key").await;
    assert_token_works(&app, &new_token, "signed by the new key").await;

    // Past the window (the old key's tokens have all expired), maintenance drops the old key.
    app.clock.advance(Duration::from_millis(u64::try_from(window).unwrap() + 1000));
    app.state.run_maintenance().await.unwrap();

    let kids = jwks_kids(&jwks(&app).await);
    assert!(!kids.contains(&old_kid), "{old_kid} still published: {kids:?}");
    assert!(kids.contains(&new_kid), "{new_kid} not published: {kids:?}");
    let old_rows = scalar(&app, &format!("SELECT COUNT(*) FROM signing_keys WHERE id = '{old_kid}'")).await;
    assert_eq!(old_rows, 0, "the expired key is deleted");
    assert_token_refused(&app, &old_token, "signed by a key past its window").await;
}

/// With tokens shorter-lived than the rotation interval, a retired key expires long before the next
/// scheduled rotation; maintenance must still take it out of the JWKS (and out of the verifying ring).
/// (Maintenance used to reload the ring only when a rotation was due.)
async fn an_expired_retired_key_leaves_the_jwks_at_the_next_maintenance(backend: Backend) {
    let short_tokens = |settings: &mut Settings| {
        with_master_credentials(settings);
        settings.service.token_ttl = 3600;
    };
    let Some(app) = spawn_app_with(backend, short_tokens).await else { return };
    let (client, user, old_token) = client_user_token(&app).await;
    let old_kid = kid_of(&old_token);
    let window = app.state.longest_token_life();
    assert_eq!(window, 3_630_000);
    let now = app.state.clock.now();
    let new_kid = app
        .state
        .tokens
        .key_ring
        .rotate(&app.state.db, Algorithm::Es256, now, window, None)
        .await
        .unwrap()
        .expect("rotated");
    assert_eq!(jwks_kids(&jwks(&app).await), [new_kid.clone(), old_kid.clone()]);

    app.clock.advance(Duration::from_millis(u64::try_from(window).unwrap() + 1000));
    app.state.run_maintenance().await.unwrap();

    assert_eq!(scalar(&app, &format!("SELECT COUNT(*) FROM signing_keys WHERE id = '{old_kid}'")).await, 0);
    assert_eq!(jwks_kids(&jwks(&app).await), [new_kid.as_str()], "the expired key is no longer published");
    assert!(!app.state.tokens.key_ring.kids().contains(&old_kid), "the expired key no longer verifies");
    let fresh = issue(&app, &client.key, &user).await;
    assert_eq!(kid_of(&fresh), new_kid);
}

async fn a_token_verifies_with_the_published_jwks_alone(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (client, user, token) = client_user_token(&app).await;
    let jwks = jwks(&app).await;

    // Independent of Latchkey's verifier: the JWK as published, jsonwebtoken's own checks.
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let kid = header.kid.expect("kid");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk_for(&jwks, &kid).clone()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // The server runs on a manual clock; `exp` is checked against it below instead of the wall clock.
    validation.validate_exp = false;

    let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).expect("verifies with the JWKS");

    let claims = data.claims;
    assert_eq!(claims["sub"], user.id.as_str());
    assert_eq!(claims["client_id"], client.id.as_str());
    assert_eq!(claims["iat"], START_SECS);
    assert_eq!(claims["exp"], START_SECS + TTL_SECS);
    assert!(claims["exp"].as_i64().unwrap() > app.state.clock.now() / 1000);

    // The same checks refuse another audience or issuer, another algorithm, and a tampered token.
    let mut other_audience = validation.clone();
    other_audience.set_audience(&["http://evil.example/v1"]);
    assert!(jsonwebtoken::decode::<Value>(&token, &key, &other_audience).is_err());
    let mut other_issuer = validation.clone();
    other_issuer.set_issuer(&["http://evil.example"]);
    assert!(jsonwebtoken::decode::<Value>(&token, &key, &other_issuer).is_err());
    let mut other_alg = validation.clone();
    other_alg.algorithms = vec![jsonwebtoken::Algorithm::RS256];
    assert!(jsonwebtoken::decode::<Value>(&token, &key, &other_alg).is_err());
    let mut payload = jwt_part(&token, 1);
    payload["sub"] = json!("svu_someoneelse");
    let (header_b64, _) = token.split_once('.').unwrap();
    let tampered = format!("{header_b64}.{}.{}", b64(payload.to_string().as_bytes()), signature_of(&token));
    assert!(jsonwebtoken::decode::<Value>(&tampered, &key, &validation).is_err());
}

async fn deleting_a_client_kills_its_key_its_users_and_their_tokens(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let acme = create_client(&app, "Acme").await;
    let ada = create_user(&app, &acme.key, json!({"externalId": "ada"})).await;
    let abe = create_user(&app, &acme.key, json!({"externalId": "abe"})).await;
    let ada_token = issue(&app, &acme.key, &ada).await;
    let abe_token = issue(&app, &acme.key, &abe).await;
    let globex = create_client(&app, "Globex").await;
    let gus = create_user(&app, &globex.key, json!({"externalId": "gus"})).await;
    let gus_token = issue(&app, &globex.key, &gus).await;
    // Warm every cache.
    assert_token_works(&app, &ada_token, "before deletion").await;
    assert_eq!(listed_user_ids(&app, &acme.key).await.len(), 2);

    let deleted = master(&app, Method::DELETE, &format!("{CLIENTS}/{}", acme.id)).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(deleted.json::<Value>().await.unwrap(), json!({"deleted": true}));

    // Its key.
    let listed = with_key(&app, Method::GET, USERS, &acme.key).send().await.unwrap();
    assert_error(listed, 401, "INVALID_CLIENT_KEY", "deleted client's key, list").await;
    let created = with_key(&app, Method::POST, USERS, &acme.key).json(&json!({})).send().await.unwrap();
    assert_error(created, 401, "INVALID_CLIENT_KEY", "deleted client's key, create").await;
    let issued = request_token(&app, &acme.key, &ada.id, &ada.secret).await;
    assert_error(issued, 401, "INVALID_CLIENT_KEY", "deleted client's key, token").await;
    // Its users' tokens.
    assert_token_refused(&app, &ada_token, "deleted client's token (verified before)").await;
    assert_token_refused(&app, &abe_token, "deleted client's token (never verified)").await;
    // Its users and records.
    assert_eq!(app.count("service_users").await, 1);
    assert_eq!(records_of(&app, &ada.id, false).await + records_of(&app, &abe.id, false).await, 0);
    // Its users cannot get a token through another client either.
    let issued = request_token(&app, &globex.key, &ada.id, &ada.secret).await;
    assert_error(issued, 401, "INVALID_CREDENTIALS", "deleted client's user through another client").await;
    let clients: Value = master(&app, Method::GET, CLIENTS).send().await.unwrap().json().await.unwrap();
    assert_eq!(clients["clients"].as_array().unwrap().len(), 1, "{clients}");
    assert_eq!(clients["clients"][0]["clientId"], globex.id.as_str());
    let twice = master(&app, Method::DELETE, &format!("{CLIENTS}/{}", acme.id)).send().await.unwrap();
    assert_error(twice, 404, "NOT_FOUND", "deleting twice").await;

    // The other client is untouched.
    assert_token_works(&app, &gus_token, "another client's token").await;
    let fresh = issue(&app, &globex.key, &gus).await;
    assert_token_works(&app, &fresh, "another client's new token").await;
}

// ---------------------------------------------------------------------------------------------------------
// Input

async fn malformed_requests_are_refused_and_change_nothing(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (client, user, token) = client_user_token(&app).await;
    let before = service_counts(&app).await;
    let too_long = "a".repeat(101);
    let json_text = |request: RequestBuilder, body: &str| {
        request.header(header::CONTENT_TYPE, "application/json").body(body.to_owned())
    };
    let plain = |request: RequestBuilder| request.header(header::CONTENT_TYPE, "text/plain").body("name=x");
    let post_clients = || master(&app, Method::POST, CLIENTS);
    let post_users = || with_key(&app, Method::POST, USERS, &client.key);
    let post_token = || with_key(&app, Method::POST, TOKEN, &client.key);
    let post_revoke = || with_key(&app, Method::POST, REVOKE, &client.key);
    let cases: Vec<(&str, RequestBuilder, u16, &str)> = vec![
        ("client: no name", post_clients().json(&json!({})), 400, "VALIDATION_ERROR"),
        ("client: name not a string", post_clients().json(&json!({"name": 42})), 400, "VALIDATION_ERROR"),
        ("client: text/plain", plain(post_clients()), 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("client: no body", post_clients(), 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("client: invalid JSON", json_text(post_clients(), "{\"name\": "), 400, "INVALID_JSON"),
        ("client: name too long", post_clients().json(&json!({"name": too_long})), 400, "INVALID_NAME"),
        ("client: empty name", post_clients().json(&json!({"name": ""})), 400, "INVALID_NAME"),
        ("client: blank name", post_clients().json(&json!({"name": "   "})), 400, "INVALID_NAME"),
        ("user: name too long", post_users().json(&json!({"name": too_long})), 400, "INVALID_NAME"),
        ("user: empty name", post_users().json(&json!({"name": ""})), 400, "INVALID_NAME"),
        ("user: empty externalId", post_users().json(&json!({"externalId": ""})), 400, "INVALID_EXTERNAL_ID"),
        (
            "user: externalId too long",
            post_users().json(&json!({"externalId": "e".repeat(256)})),
            400,
            "INVALID_EXTERNAL_ID",
        ),
        ("user: externalId not a string", post_users().json(&json!({"externalId": 5})), 400, "VALIDATION_ERROR"),
        ("user: text/plain", plain(post_users()), 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("user: invalid JSON", json_text(post_users(), "{"), 400, "INVALID_JSON"),
        ("token: empty object", post_token().json(&json!({})), 400, "VALIDATION_ERROR"),
        ("token: no secret", post_token().json(&json!({"userId": user.id})), 400, "VALIDATION_ERROR"),
        ("token: no userId", post_token().json(&json!({"secret": user.secret})), 400, "VALIDATION_ERROR"),
        ("token: text/plain", plain(post_token()), 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("token: no body", post_token(), 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("token: invalid JSON", json_text(post_token(), "{\"userId\""), 400, "INVALID_JSON"),
        ("revoke: no token", post_revoke().json(&json!({})), 400, "VALIDATION_ERROR"),
        ("revoke: text/plain", plain(post_revoke()), 415, "UNSUPPORTED_MEDIA_TYPE"),
    ];

    for (what, request, status, code) in cases {
        assert_error(request.send().await.unwrap(), status, code, what).await;
    }

    assert_eq!(service_counts(&app).await, before, "nothing was created");
    assert_eq!(records_of(&app, &user.id, true).await, 0, "nothing was revoked");
    assert_token_works(&app, &token, "untouched").await;
    // The limits themselves are fine; the user body is optional.
    let longest = "n".repeat(100);
    let created = post_clients().json(&json!({"name": longest})).send().await.unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.json::<Value>().await.unwrap()["name"], longest.as_str());
    let created = post_users().json(&json!({"externalId": "é".repeat(255), "name": longest})).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let no_body = post_users().send().await.unwrap();
    assert_eq!(no_body.status(), 201);
    let no_body: Value = no_body.json().await.unwrap();
    assert!(no_body["externalId"].is_null() && no_body["name"].is_null(), "{no_body}");
    assert!(no_body["secret"].as_str().unwrap().starts_with("lks_"));
}

/// `/api/auth/check` (forward-auth) accepts a service token with `x-auth-method: service-token`, and
/// refuses it once revoked; a lower-case `bearer` scheme works on `/v1/me` too.
async fn forward_auth_accepts_a_service_token_until_it_is_revoked(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (client, user, token) = client_user_token(&app).await;

    let response = bare_client().get(app.url(CHECK)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header_str(&response, "x-auth-user-id"), Some(user.id.as_str()));
    assert_eq!(header_str(&response, "x-auth-method"), Some("service-token"));
    assert_eq!(header_str(&response, "x-auth-org-id"), None);
    let lower = bare_client().get(app.url(ME)).header(header::AUTHORIZATION, format!("bearer {token}")).send().await;
    assert_eq!(lower.unwrap().status(), 200, "the scheme is case-insensitive");

    assert_eq!(revoke(&app, &client.key, &token).await.status(), 200);
    let response = bare_client().get(app.url(CHECK)).bearer_auth(&token).send().await.unwrap();
    assert_error(response, 401, "INVALID_TOKEN", "revoked service token on /api/auth/check").await;
}

/// Records of tokens past their expiry (and the leeway) are deleted by maintenance; live ones stay.
async fn records_of_expired_tokens_are_cleaned_up(backend: Backend) {
    let short = |settings: &mut Settings| {
        with_master_credentials(settings);
        settings.service.token_ttl = 600;
    };
    let Some(app) = spawn_app_with(backend, short).await else { return };
    let (client, user, _old) = client_user_token(&app).await;
    app.clock.advance(Duration::from_secs(400));
    let _young = issue(&app, &client.key, &user).await;
    assert_eq!(app.count("issued_tokens").await, 2);

    // The first token expired 600 s after issue; with the leeway and a minute of grace it is gone at 700 s.
    app.clock.advance(Duration::from_secs(301));
    app.state.run_maintenance().await.unwrap();
    assert_eq!(app.count("issued_tokens").await, 1, "only the live token's record is left");
}

/// Maintenance rotates a key older than `rotation_interval`; the old one stays published.
async fn a_signing_key_older_than_the_rotation_interval_is_rotated_by_maintenance(backend: Backend) {
    let hourly = |settings: &mut Settings| {
        with_master_credentials(settings);
        settings.tokens.rotation_interval = 3600;
    };
    let Some(app) = spawn_app_with(backend, hourly).await else { return };
    let (client, user, old_token) = client_user_token(&app).await;
    let first = jwks_kids(&jwks(&app).await);
    assert_eq!(first.len(), 1);

    app.clock.advance(Duration::from_secs(1800));
    app.state.run_maintenance().await.unwrap();
    assert_eq!(jwks_kids(&jwks(&app).await), first, "not due yet");

    app.clock.advance(Duration::from_secs(1801));
    app.state.run_maintenance().await.unwrap();
    let kids = jwks_kids(&jwks(&app).await);
    assert_eq!(kids.len(), 2, "{kids:?}");
    let new_token = issue(&app, &client.key, &user).await;
    assert_ne!(kid_of(&new_token), first[0], "new tokens are signed by the new key");
    assert_token_works(&app, &old_token, "token signed before the scheduled rotation").await;
}

/// Many token requests at once (they share commits): every token answered has its record, and works.
async fn concurrent_token_requests_are_each_recorded_before_they_are_answered(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let client = create_client(&app, "Acme").await;
    let user = create_user(&app, &client.key, json!({})).await;
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let request =
            with_key(&app, Method::POST, TOKEN, &client.key).json(&json!({"userId": user.id, "secret": user.secret}));
        requests.spawn(request.send());
    }
    let mut jtis = Vec::new();
    while let Some(response) = requests.join_next().await {
        let response = response.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        let token = response.json::<Value>().await.unwrap()["accessToken"].as_str().unwrap().to_owned();
        jtis.push(jwt_part(&token, 1)["jti"].as_str().unwrap().to_owned());
    }
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), 40, "distinct jtis");
    assert_eq!(records_of(&app, &user.id, false).await, 40, "each answered token was recorded first");
}

/// `service.algorithm` picks the signing algorithm: the header, the JWKS key type and verification follow.
async fn an_rs256_or_eddsa_server_signs_with_that_algorithm(backend: Backend) {
    for (name, kty) in [("RS256", "RSA"), ("EdDSA", "OKP")] {
        let configure = |settings: &mut Settings| {
            with_master_credentials(settings);
            settings.service.algorithm = name.to_owned();
        };
        let Some(app) = spawn_app_with(backend, configure).await else { return };
        let (_client, _user, token) = client_user_token(&app).await;
        assert_eq!(jwt_part(&token, 0)["alg"], name);
        let published = jwks(&app).await;
        assert_eq!(jwk_for(&published, &kid_of(&token))["kty"], kty);
        assert_token_works(&app, &token, name).await;
    }
}

/// A wrong client key is remembered as unknown for a few seconds: retries are refused without a DB read
/// (shown by taking the clients table away under the server), while a known key keeps working.
async fn an_unknown_client_key_retried_costs_no_database_read(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let client = create_client(&app, "Acme").await;
    let wrong = format!("lkc_{}", "x".repeat(48));
    let response = with_key(&app, Method::GET, USERS, &wrong).send().await.unwrap();
    assert_error(response, 401, "INVALID_CLIENT_KEY", "unknown key").await;
    assert_eq!(with_key(&app, Method::GET, USERS, &client.key).send().await.unwrap().status(), 200);

    app.execute("ALTER TABLE service_clients RENAME TO service_clients_away").await;
    let response = with_key(&app, Method::GET, USERS, &wrong).send().await.unwrap();
    app.execute("ALTER TABLE service_clients_away RENAME TO service_clients").await;
    assert_error(response, 401, "INVALID_CLIENT_KEY", "unknown key, retried: no DB read").await;

    app.clock.advance(Duration::from_secs(11));
    let response = with_key(&app, Method::GET, USERS, &wrong).send().await.unwrap();
    assert_error(response, 401, "INVALID_CLIENT_KEY", "unknown key after the memory ran out").await;
}

/// The private half of a signing key is stored sealed (AES-256-GCM under a key derived from the server
/// secret): the column is not a PKCS#8 key, and a node with another secret refuses to start rather than
/// sign with nothing.
async fn private_signing_keys_are_sealed_with_the_server_secret(backend: Backend) {
    let Some(app) = spawn_service_app(backend).await else { return };
    let (_client, _user, token) = client_user_token(&app).await;
    let kid = kid_of(&token);
    let stored: String = latchkey::db_run!(&app.state.db, |pool| {
        sqlx::query_scalar("SELECT private_key FROM signing_keys WHERE id = $1")
            .bind(&kid)
            .fetch_one(pool)
            .await
            .unwrap()
    });
    let sealed = STANDARD.decode(&stored).expect("base64");
    assert!(
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &sealed).is_err(),
        "the stored bytes are not a usable private key"
    );
    assert!(sealed.len() > 12 + 16, "nonce, ciphertext and tag");

    let mut other = test_settings(app.state.settings.database_url.clone());
    other.secret = Some(Secret::new("another-secret-another-secret-0123456789abcdef"));
    let refused = latchkey::app::Application::build(other, latchkey::clock::Clock::System).await;
    let error = format!("{:#}", refused.err().expect("a node with another secret does not start"));
    assert!(error.contains("cannot be decrypted"), "{error}");
}
