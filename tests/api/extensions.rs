//! Extension tokens: minting (claims, TTL, scopes, extension ids, tenant), verify, expiry, forged tokens
//! (alg none, other algorithms, wrong secret or audience, tampering, membership), the token as a credential
//! that only `/api/auth/check` and verify accept, API-key minting limited to its `extensions` permissions,
//! and secret rotation with previous secrets.

use std::time::Duration;

use hmac::{Hmac, Mac};
use latchkey::config::Secret;
use reqwest::{header, Response};
use serde_json::{json, Value};
use sha2::{Sha256, Sha384};

use crate::{both_backends, helpers::*};

const TOKEN: &str = "/api/extensions/token";
const VERIFY: &str = "/api/extensions/verify";
const CHECK: &str = "/api/auth/check";
const KEY_CREATE: &str = "/api/auth/api-key/create";
const ORG_CREATE: &str = "/api/auth/organization/create";
const ORG_LIST: &str = "/api/auth/organization/list";
const SET_ACTIVE: &str = "/api/auth/organization/set-active";
const INVITE: &str = "/api/auth/organization/invite-member";
const ACCEPT: &str = "/api/auth/organization/accept-invitation";
const REMOVE_MEMBER: &str = "/api/auth/organization/remove-member";
const LEAVE: &str = "/api/auth/organization/leave";

/// The manual clock's start, in seconds (2026-11-18T11:06:40Z).
const START_SECS: i64 = 1_795_000_000;
const SECRET_1: &str = "extension-secret-one-0123456789-abcdefghijklmnop";
const SECRET_2: &str = "extension-secret-two-0123456789-abcdefghijklmnop";

both_backends!(
    minting_with_a_session_gives_an_hs256_jwt_with_the_documented_claims,
    scopes_may_be_a_list_or_a_space_separated_string,
    the_org_claim_is_the_sessions_active_organization,
    ttl_must_be_between_1_and_900_seconds,
    unknown_or_empty_scopes_are_refused,
    configured_allowed_scopes_replace_the_default,
    bad_extension_ids_are_refused,
    minting_needs_a_credential_and_an_organization,
    verify_returns_the_claims_and_checks_requested_scopes,
    an_expired_token_is_refused,
    forged_tokens_are_refused,
    a_correctly_signed_token_for_an_org_the_user_is_not_in_is_refused,
    a_removed_members_tokens_die,
    a_member_who_leaves_loses_their_tokens,
    an_extension_token_is_a_credential_only_for_check_and_verify,
    an_api_key_with_permissions_mints_only_its_extension_scopes,
    a_rotated_secret_still_verifies_tokens_signed_with_a_previous_one,
);

// ---------------------------------------------------------------------------------------------------------
// Helpers

/// Signs up alice on the app's client and creates (and activates) her organization `acme`.
/// Returns (user id, organization id).
async fn alice_with_org(app: &TestApp) -> (String, String) {
    let signed_up = app.sign_up("alice@example.com").await;
    assert_eq!(signed_up.status(), 200);
    let user_id = signed_up.json::<Value>().await.unwrap()["user"]["id"].as_str().unwrap().to_owned();
    let org = app.post(ORG_CREATE, &json!({"name": "Acme", "slug": "acme"})).await;
    assert_eq!(org.status(), 200);
    let org_id = org.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    (user_id, org_id)
}

/// Signs up `email` on a fresh cookie-aware client; returns the client and the user id.
async fn sign_up_as(app: &TestApp, email: &str) -> (reqwest::Client, String) {
    let client = new_client();
    let response = post_with(
        app,
        &client,
        latchkey::paths::SIGN_UP_EMAIL,
        &json!({"name": "Test User", "email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    (client, body["user"]["id"].as_str().unwrap().to_owned())
}

/// POST with a session client (trusted Origin).
async fn post_with(app: &TestApp, client: &reqwest::Client, path: &str, body: &Value) -> Response {
    client.post(app.url(path)).header(header::ORIGIN, ORIGIN).json(body).send().await.unwrap()
}

/// Mints through the app's session client; asserts 200 and returns the token.
async fn mint(app: &TestApp, body: Value) -> String {
    let response = app.post(TOKEN, &body).await;
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}

/// `POST /api/extensions/verify` with no other credential.
async fn verify(app: &TestApp, body: Value) -> Response {
    bare_client().post(app.url(VERIFY)).json(&body).send().await.unwrap()
}

/// `GET /api/auth/check` with only the token as a bearer credential.
async fn check_with_bearer(app: &TestApp, token: &str) -> Response {
    bare_client().get(app.url(CHECK)).bearer_auth(token).send().await.unwrap()
}

/// Asserts a response is `status` with error `code`.
async fn assert_error(response: Response, status: u16, code: &str, what: &str) {
    assert_eq!(response.status(), status, "{what}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{what}: {body}");
    assert!(body["message"].is_string(), "{what}: {body}");
}

/// Asserts verify refuses `token` with 401 INVALID_TOKEN and `/api/auth/check` with 401.
async fn assert_token_refused(app: &TestApp, token: &str, what: &str) {
    assert_error(verify(app, json!({"token": token})).await, 401, "INVALID_TOKEN", what).await;
    assert_eq!(check_with_bearer(app, token).await.status(), 401, "check accepts: {what}");
}

fn header_str<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|value| value.to_str().unwrap())
}

fn hmac_sha256(secret: &[u8], input: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha384(secret: &[u8], input: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha384> as Mac>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// `header.payload` (both base64url JSON).
fn signing_input(header: &Value, payload: &Value) -> String {
    format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload.to_string().as_bytes()))
}

/// A JWT with `header` and `payload`, signed with HMAC-SHA256 under `secret`, whatever the header claims.
fn sign_hs256(header: &Value, payload: &Value, secret: &str) -> String {
    let input = signing_input(header, payload);
    let signature = b64(&hmac_sha256(secret.as_bytes(), &input));
    format!("{input}.{signature}")
}

// ---------------------------------------------------------------------------------------------------------
// Minting

async fn minting_with_a_session_gives_an_hs256_jwt_with_the_documented_claims(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let (user_id, org_id) = alice_with_org(&app).await;

    let response = app.post(TOKEN, &json!({"extensionId": "crm.widget", "scopes": ["read", "write"]})).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "{token}");
    assert_eq!(jwt_part(token, 0)["alg"], "HS256");
    let claims = jwt_part(token, 1);
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["org"], org_id.as_str());
    assert_eq!(claims["ext"], "crm.widget");
    assert_eq!(claims["scope"], "read write");
    assert_eq!(claims["aud"], "action-api");
    assert_eq!(claims["iat"], START_SECS);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300);
    assert!(!claims["jti"].as_str().unwrap().is_empty());
    assert_eq!(body["expiresAt"], "2026-11-18T11:11:40.000Z");

    // Up to 15 minutes on request; each token has its own jti.
    let long = mint(&app, json!({"extensionId": "crm.widget", "scopes": ["read"], "ttlSeconds": 900})).await;
    let long_claims = jwt_part(&long, 1);
    assert_eq!(long_claims["exp"].as_i64().unwrap() - long_claims["iat"].as_i64().unwrap(), 900);
    assert_eq!(long_claims["scope"], "read");
    assert_ne!(long_claims["jti"], claims["jti"]);
    let short = mint(&app, json!({"extensionId": "crm.widget", "scopes": ["read"], "ttlSeconds": 1})).await;
    let short_claims = jwt_part(&short, 1);
    assert_eq!(short_claims["exp"].as_i64().unwrap() - short_claims["iat"].as_i64().unwrap(), 1);
}

async fn scopes_may_be_a_list_or_a_space_separated_string(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    alice_with_org(&app).await;

    let from_string = mint(&app, json!({"extensionId": "ext-1", "scopes": "read write"})).await;
    let only_write = mint(&app, json!({"extensionId": "ext-1", "scopes": ["write"]})).await;

    let scope = jwt_part(&from_string, 1)["scope"].as_str().unwrap().to_owned();
    let mut scopes: Vec<&str> = scope.split(' ').collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["read", "write"]);
    assert_eq!(jwt_part(&only_write, 1)["scope"], "write");
}

async fn the_org_claim_is_the_sessions_active_organization(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let (_, acme) = alice_with_org(&app).await;
    let globex = app.post(ORG_CREATE, &json!({"name": "Globex", "slug": "globex"})).await;
    assert_eq!(globex.status(), 200);
    let globex = globex.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let token = mint(&app, json!({"extensionId": "ext", "scopes": ["read"]})).await;
    assert_eq!(jwt_part(&token, 1)["org"], globex.as_str(), "the newest org was made active");

    assert_eq!(app.post(SET_ACTIVE, &json!({"organizationId": acme})).await.status(), 200);
    let token = mint(&app, json!({"extensionId": "ext", "scopes": ["read"]})).await;
    assert_eq!(jwt_part(&token, 1)["org"], acme.as_str());
}

async fn ttl_must_be_between_1_and_900_seconds(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    alice_with_org(&app).await;

    for ttl in [0, 901, 3600] {
        let response = app.post(TOKEN, &json!({"extensionId": "ext", "scopes": ["read"], "ttlSeconds": ttl})).await;
        assert_error(response, 400, "INVALID_TTL", &format!("ttl {ttl}")).await;
    }
    mint(&app, json!({"extensionId": "ext", "scopes": ["read"], "ttlSeconds": 900})).await;
}

async fn unknown_or_empty_scopes_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    alice_with_org(&app).await;

    for scopes in [json!(["admin"]), json!(["read", "admin"]), json!("read delete"), json!([]), json!("")] {
        let response = app.post(TOKEN, &json!({"extensionId": "ext", "scopes": scopes})).await;
        assert_error(response, 400, "INVALID_SCOPE", &scopes.to_string()).await;
    }
}

async fn configured_allowed_scopes_replace_the_default(backend: Backend) {
    let configure = |settings: &mut latchkey::config::Settings| {
        settings.extensions.allowed_scopes = vec!["contacts:read".into(), "deals:write".into()];
    };
    let Some(app) = spawn_app_with(backend, configure).await else { return };
    alice_with_org(&app).await;

    let token = mint(&app, json!({"extensionId": "ext", "scopes": ["contacts:read", "deals:write"]})).await;
    assert_eq!(jwt_part(&token, 1)["scope"], "contacts:read deals:write");
    let response = app.post(TOKEN, &json!({"extensionId": "ext", "scopes": ["read"]})).await;
    assert_error(response, 400, "INVALID_SCOPE", "read is no longer allowed").await;
}

async fn bad_extension_ids_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    alice_with_org(&app).await;
    let too_long = "a".repeat(129);

    for id in ["", too_long.as_str(), "has space", "a/b", "ext\"quote", "é"] {
        let response = app.post(TOKEN, &json!({"extensionId": id, "scopes": ["read"]})).await;
        assert_error(response, 400, "INVALID_EXTENSION_ID", &format!("extensionId {id:?}")).await;
    }
    let longest = "b".repeat(128);
    for id in [longest.as_str(), "crm.widget:v1-2_X"] {
        let token = mint(&app, json!({"extensionId": id, "scopes": ["read"]})).await;
        assert_eq!(jwt_part(&token, 1)["ext"], id);
    }
}

async fn minting_needs_a_credential_and_an_organization(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let body = json!({"extensionId": "ext", "scopes": ["read"]});

    let anonymous = bare_client().post(app.url(TOKEN)).json(&body).send().await.unwrap();
    assert_error(anonymous, 401, "UNAUTHORIZED", "no credential").await;

    assert_eq!(app.sign_up("alice@example.com").await.status(), 200);
    let no_org = app.post(TOKEN, &body).await;
    assert_eq!(no_org.status(), 401);
    assert_eq!(
        no_org.json::<Value>().await.unwrap(),
        json!({"code": "NO_ORGANIZATION", "message": "User has no organization"})
    );
}

// ---------------------------------------------------------------------------------------------------------
// Verify

async fn verify_returns_the_claims_and_checks_requested_scopes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    alice_with_org(&app).await;
    let token = mint(&app, json!({"extensionId": "crm.widget", "scopes": ["read"]})).await;

    let verified = verify(&app, json!({"token": token})).await;

    assert_eq!(verified.status(), 200);
    let verified: Value = verified.json().await.unwrap();
    assert_eq!(verified["valid"], true);
    assert_eq!(verified["claims"], jwt_part(&token, 1));
    for field in ["sub", "org", "ext", "scope", "aud", "iat", "exp", "jti"] {
        assert!(verified["claims"].get(field).is_some(), "claims.{field} missing: {verified}");
    }

    let held = verify(&app, json!({"token": token, "scopes": ["read"]})).await;
    assert_eq!(held.status(), 200);
    assert_eq!(held.json::<Value>().await.unwrap()["valid"], true);
    for not_held in [json!(["write"]), json!(["read", "write"])] {
        let response = verify(&app, json!({"token": token, "scopes": not_held})).await;
        assert_error(response, 403, "INSUFFICIENT_SCOPE", &not_held.to_string()).await;
    }
    // Verify needs no other credential, and a missing or garbage token is simply invalid.
    for garbage in ["", "not-a-jwt", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30."] {
        assert_error(verify(&app, json!({"token": garbage})).await, 401, "INVALID_TOKEN", garbage).await;
    }
}

async fn an_expired_token_is_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    alice_with_org(&app).await;
    let token = mint(&app, json!({"extensionId": "ext", "scopes": ["read"]})).await;
    app.clock.advance(Duration::from_secs(290));
    assert_eq!(verify(&app, json!({"token": token})).await.status(), 200, "not expired yet");

    app.clock.advance(Duration::from_secs(11));

    assert_error(verify(&app, json!({"token": token})).await, 401, "TOKEN_EXPIRED", "expired").await;
    assert_eq!(check_with_bearer(&app, &token).await.status(), 401);
}

async fn forged_tokens_are_refused(backend: Backend) {
    let configure =
        |settings: &mut latchkey::config::Settings| settings.extensions.secret = Some(Secret::new(SECRET_1));
    let Some(app) = spawn_app_with(backend, configure).await else { return };
    alice_with_org(&app).await;
    let token = mint(&app, json!({"extensionId": "crm.widget", "scopes": ["read"]})).await;
    let header = jwt_part(&token, 0);
    let payload = jwt_part(&token, 1);
    let signature = token.rsplit('.').next().unwrap().to_owned();

    // Control: this helper's own HS256 signing under the configured secret is accepted, so the
    // forgeries below fail for what they change, not for how they were built.
    let resigned = sign_hs256(&json!({"alg": "HS256", "typ": "JWT"}), &payload, SECRET_1);
    let control = verify(&app, json!({"token": resigned})).await;
    assert_eq!(control.status(), 200, "a correctly signed token must verify");
    assert_eq!(check_with_bearer(&app, &resigned).await.status(), 200);

    let mut forgeries: Vec<(String, String)> = Vec::new();
    for alg in ["none", "None", "NONE"] {
        let input = signing_input(&json!({"alg": alg, "typ": "JWT"}), &payload);
        forgeries.push((format!("alg {alg}, empty signature"), format!("{input}.")));
        forgeries.push((format!("alg {alg}, original signature"), format!("{input}.{signature}")));
    }
    let hs384_input = signing_input(&json!({"alg": "HS384", "typ": "JWT"}), &payload);
    let hs384 = format!("{hs384_input}.{}", b64(&hmac_sha384(SECRET_1.as_bytes(), &hs384_input)));
    forgeries.push(("re-signed HS384 with the real secret".into(), hs384));
    for alg in ["RS256", "ES256", "PS256", "EdDSA"] {
        let forged = sign_hs256(&json!({"alg": alg, "typ": "JWT"}), &payload, SECRET_1);
        forgeries.push((format!("header claims {alg}, HMAC-SHA256 signature"), forged));
    }
    forgeries.push(("wrong secret".into(), sign_hs256(&header, &payload, SECRET_2)));
    let mut other_aud = payload.clone();
    other_aud["aud"] = json!("other");
    forgeries.push(("aud other".into(), sign_hs256(&header, &other_aud, SECRET_1)));
    let mut aud_list = payload.clone();
    aud_list["aud"] = json!(["other"]);
    forgeries.push(("aud [other]".into(), sign_hs256(&header, &aud_list, SECRET_1)));
    let mut no_exp = payload.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    forgeries.push(("no exp".into(), sign_hs256(&header, &no_exp, SECRET_1)));
    let mut tampered = payload.clone();
    tampered["org"] = json!("org_someoneelse");
    let tampered_token =
        format!("{}.{}.{signature}", token.split('.').next().unwrap(), b64(tampered.to_string().as_bytes()));
    forgeries.push(("payload tampered (org), signature kept".into(), tampered_token));
    let mut wider = payload.clone();
    wider["scope"] = json!("read write");
    let wider_token = format!("{}.{}.{signature}", token.split('.').next().unwrap(), b64(wider.to_string().as_bytes()));
    forgeries.push(("payload tampered (scope), signature kept".into(), wider_token));
    forgeries.push(("signature stripped".into(), format!("{}.", token.rsplit_once('.').unwrap().0)));

    for (what, forged) in &forgeries {
        assert_token_refused(&app, forged, what).await;
    }
    // The genuine token is still fine.
    assert_eq!(verify(&app, json!({"token": token})).await.status(), 200);
}

async fn a_correctly_signed_token_for_an_org_the_user_is_not_in_is_refused(backend: Backend) {
    let configure =
        |settings: &mut latchkey::config::Settings| settings.extensions.secret = Some(Secret::new(SECRET_1));
    let Some(app) = spawn_app_with(backend, configure).await else { return };
    alice_with_org(&app).await;
    let token = mint(&app, json!({"extensionId": "ext", "scopes": ["read"]})).await;
    let (bob, _) = sign_up_as(&app, "bob@example.com").await;
    let globex = post_with(&app, &bob, ORG_CREATE, &json!({"name": "Globex", "slug": "globex"})).await;
    assert_eq!(globex.status(), 200);
    let globex = globex.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    // Signed with the real secret (as a leaked secret or a bug elsewhere would allow), but alice is not
    // a member of bob's organization: membership is checked at verify and at use.
    let mut payload = jwt_part(&token, 1);
    payload["org"] = json!(globex);
    let forged = sign_hs256(&jwt_part(&token, 0), &payload, SECRET_1);

    assert_token_refused(&app, &forged, "token for an org the user is not in").await;
}

/// Alice's org `acme`, bob invited and accepted as a member; returns (bob's client, org id).
async fn bob_joins_alices_org(app: &TestApp) -> (reqwest::Client, String) {
    let (_, org_id) = alice_with_org(app).await;
    let invited = app.post(INVITE, &json!({"email": "bob@example.com", "role": "member"})).await;
    assert_eq!(invited.status(), 200);
    let invitation_id = invited.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let (bob, _) = sign_up_as(app, "bob@example.com").await;
    let accepted = post_with(app, &bob, ACCEPT, &json!({"invitationId": invitation_id})).await;
    assert_eq!(accepted.status(), 200);
    (bob, org_id)
}

/// Bob mints a token in the org and it works.
async fn bob_mints(app: &TestApp, bob: &reqwest::Client, org_id: &str) -> String {
    let minted = post_with(app, bob, TOKEN, &json!({"extensionId": "ext", "scopes": ["read"]})).await;
    assert_eq!(minted.status(), 200);
    let token = minted.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_part(&token, 1)["org"], org_id);
    assert_eq!(verify(app, json!({"token": token})).await.status(), 200);
    assert_eq!(check_with_bearer(app, &token).await.status(), 200);
    token
}

async fn a_removed_members_tokens_die(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let (bob, org_id) = bob_joins_alices_org(&app).await;
    let token = bob_mints(&app, &bob, &org_id).await;

    let removed = app.post(REMOVE_MEMBER, &json!({"memberIdOrEmail": "bob@example.com"})).await;
    assert_eq!(removed.status(), 200);

    assert_token_refused(&app, &token, "token of a removed member").await;
    // And bob, with no organization left, cannot mint another.
    let again = post_with(&app, &bob, TOKEN, &json!({"extensionId": "ext", "scopes": ["read"]})).await;
    assert_eq!(again.status(), 401);
    let code = again.json::<Value>().await.unwrap()["code"].as_str().unwrap().to_owned();
    // His session may still name the org as active (access denied) or fall back to none (no org).
    assert!(code == "NO_ORGANIZATION" || code == "ORGANIZATION_ACCESS_DENIED", "{code}");
}

async fn a_member_who_leaves_loses_their_tokens(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let (bob, org_id) = bob_joins_alices_org(&app).await;
    let token = bob_mints(&app, &bob, &org_id).await;

    let left = post_with(&app, &bob, LEAVE, &json!({"organizationId": org_id})).await;
    assert_eq!(left.status(), 200);

    assert_token_refused(&app, &token, "token of a member who left").await;
}

// ---------------------------------------------------------------------------------------------------------
// The token as a credential

async fn an_extension_token_is_a_credential_only_for_check_and_verify(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let (user_id, org_id) = alice_with_org(&app).await;
    let token = mint(&app, json!({"extensionId": "crm.widget", "scopes": "read write"})).await;

    let checked = check_with_bearer(&app, &token).await;
    assert_eq!(checked.status(), 200);
    assert_eq!(header_str(&checked, "x-auth-method"), Some("extension-token"));
    assert_eq!(header_str(&checked, "x-auth-user-id"), Some(user_id.as_str()));
    assert_eq!(header_str(&checked, "x-auth-org-id"), Some(org_id.as_str()));
    let scope = jwt_part(&token, 1)["scope"].as_str().unwrap().to_owned();
    assert_eq!(header_str(&checked, "x-auth-scopes"), Some(scope.as_str()));
    let body: Value = checked.json().await.unwrap();
    assert_eq!(body["method"], "extension-token");
    assert_eq!(body["userId"], user_id);
    assert_eq!(body["organizationId"], org_id);

    let client = bare_client();
    // It cannot mint further tokens.
    let minted = client
        .post(app.url(TOKEN))
        .bearer_auth(&token)
        .json(&json!({"extensionId": "ext", "scopes": ["read"]}))
        .send()
        .await
        .unwrap();
    assert_error(minted, 401, "UNAUTHORIZED", "extension token minting a token").await;
    // Nor create API keys (with or without an Origin).
    for origin in [None, Some(ORIGIN)] {
        let mut request = client.post(app.url(KEY_CREATE)).bearer_auth(&token).json(&json!({"name": "x"}));
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let status = request.send().await.unwrap().status();
        assert!(status == 401 || status == 403, "api-key/create with an extension token: {status}");
    }
    assert_eq!(app.count("api_keys").await, 0);
    // Nor organizations.
    let org = client
        .post(app.url(ORG_CREATE))
        .bearer_auth(&token)
        .header(header::ORIGIN, ORIGIN)
        .json(&json!({"name": "Evil", "slug": "evil"}))
        .send()
        .await
        .unwrap();
    assert!(org.status() == 401 || org.status() == 403, "organization/create: {}", org.status());
    let orgs: Value = app.get(ORG_LIST).await.json().await.unwrap();
    assert_eq!(orgs.as_array().unwrap().len(), 1, "{orgs}");
    // Nor read what needs a user credential.
    let listed = client.get(app.url(ORG_LIST)).bearer_auth(&token).send().await.unwrap();
    assert_error(listed, 401, "UNAUTHORIZED", "organization/list with an extension token").await;
    // Nor is it a session.
    let session = client.get(app.url(latchkey::paths::GET_SESSION)).bearer_auth(&token).send().await.unwrap();
    assert!(session.status() == 401 || session.text().await.unwrap() == "null", "get-session with an extension token");
}

async fn an_api_key_with_permissions_mints_only_its_extension_scopes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let (user_id, org_id) = alice_with_org(&app).await;
    let app = &app;
    let create_key = |permissions: Value| {
        let body = if permissions.is_null() { json!({}) } else { json!({"permissions": permissions}) };
        async move {
            let response = app.post(KEY_CREATE, &body).await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_owned()
        }
    };
    let mint_with_key = |key: String, scopes: Value| {
        let request = bare_client()
            .post(app.url(TOKEN))
            .header("x-api-key", key)
            .json(&json!({"extensionId": "ext", "scopes": scopes}));
        async move { request.send().await.unwrap() }
    };
    let read_only = create_key(json!({"extensions": ["read"]})).await;
    let no_extensions = create_key(json!({"files": ["read", "write"]})).await;
    let unrestricted = create_key(Value::Null).await;

    let minted = mint_with_key(read_only.clone(), json!(["read"])).await;
    assert_eq!(minted.status(), 200);
    let claims = jwt_part(minted.json::<Value>().await.unwrap()["token"].as_str().unwrap(), 1);
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["org"], org_id.as_str());
    assert_eq!(claims["scope"], "read");
    for scopes in [json!(["write"]), json!(["read", "write"])] {
        let response = mint_with_key(read_only.clone(), scopes.clone()).await;
        assert_error(response, 403, "INSUFFICIENT_SCOPE", &format!("read-only key minting {scopes}")).await;
    }
    let response = mint_with_key(no_extensions, json!(["read"])).await;
    assert_error(response, 403, "INSUFFICIENT_SCOPE", "key without an extensions permission").await;

    let minted = mint_with_key(unrestricted, json!(["read", "write"])).await;
    assert_eq!(minted.status(), 200);
    let claims = jwt_part(minted.json::<Value>().await.unwrap()["token"].as_str().unwrap(), 1);
    assert_eq!(claims["scope"], "read write");
}

// ---------------------------------------------------------------------------------------------------------
// Rotation

async fn a_rotated_secret_still_verifies_tokens_signed_with_a_previous_one(backend: Backend) {
    let old = |settings: &mut latchkey::config::Settings| settings.extensions.secret = Some(Secret::new(SECRET_1));
    let Some(node1) = spawn_app_with(backend, old).await else { return };
    let url = node1._db.as_ref().unwrap().url();
    let node2 = spawn_node(&url, |settings| {
        settings.extensions.secret = Some(Secret::new(SECRET_2));
        settings.extensions.previous_secrets = vec![Secret::new(SECRET_1)];
    })
    .await;
    let node3 = spawn_node(&url, |settings| settings.extensions.secret = Some(Secret::new(SECRET_2))).await;
    alice_with_org(&node1).await;
    let key =
        node1.post(KEY_CREATE, &json!({})).await.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_owned();
    let old_token = mint(&node1, json!({"extensionId": "ext", "scopes": ["read"]})).await;

    // The node with S1 as a previous secret verifies it (and accepts it as a credential).
    let verified = verify(&node2, json!({"token": old_token})).await;
    assert_eq!(verified.status(), 200);
    assert_eq!(verified.json::<Value>().await.unwrap()["claims"], jwt_part(&old_token, 1));
    assert_eq!(check_with_bearer(&node2, &old_token).await.status(), 200);
    // Without it, the token is just badly signed.
    assert_token_refused(&node3, &old_token, "signed with a secret node 3 does not know").await;

    // Node 2 signs with its current secret only: node 3 accepts that, node 1 does not.
    let minted = bare_client()
        .post(node2.url(TOKEN))
        .header("x-api-key", &key)
        .json(&json!({"extensionId": "ext", "scopes": ["read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status(), 200);
    let new_token = minted.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    assert_eq!(verify(&node3, json!({"token": new_token})).await.status(), 200);
    assert_eq!(verify(&node2, json!({"token": new_token})).await.status(), 200);
    assert_token_refused(&node1, &new_token, "signed with a secret node 1 does not know").await;
}
