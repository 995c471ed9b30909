//! User API keys: create (shown once, stored hashed), get/list/update/delete (owner only), verify (always
//! 200), `x-api-key` as a credential that is refused at once when deleted, disabled or expired, and the
//! refusal reaching another node within a second (PostgreSQL only).

use std::time::{Duration, Instant};

use reqwest::{header, Response};
use serde_json::{json, Value};
use sqlx::Row;

use crate::{both_backends, helpers::*};

const CREATE: &str = "/api/auth/api-key/create";
const GET: &str = "/api/auth/api-key/get";
const LIST: &str = "/api/auth/api-key/list";
const UPDATE: &str = "/api/auth/api-key/update";
const DELETE: &str = "/api/auth/api-key/delete";
const VERIFY: &str = "/api/auth/api-key/verify";
const CHECK: &str = "/api/auth/check";
const ORG_CREATE: &str = "/api/auth/organization/create";
const ORG_LIST: &str = "/api/auth/organization/list";

/// 2026-11-18T11:06:40.000Z, where every test app's manual clock starts.
const START: &str = "2026-11-18T11:06:40.000Z";

both_backends!(
    create_returns_the_key_once_and_get_and_list_never_show_it,
    a_custom_prefix_starts_the_key,
    the_database_stores_no_raw_key,
    an_api_key_authenticates_check_and_organization_list,
    check_lists_a_restricted_keys_permissions_as_sorted_scopes,
    list_has_the_documented_shape_is_newest_first_and_paginates,
    another_users_key_cannot_be_seen_changed_or_deleted,
    verify_accepts_a_valid_key_and_reports_unknown_ones_with_200,
    verify_reports_a_disabled_key,
    verify_reports_an_expired_key,
    verify_checks_requested_permissions,
    verify_is_rate_limited_per_ip_and_still_answers_200,
    a_deleted_key_is_refused_on_the_very_next_request,
    a_disabled_key_is_refused_at_once_and_works_again_when_re_enabled,
    an_expired_key_is_refused_as_a_credential,
    an_api_key_cannot_create_update_or_delete_api_keys,
    create_validates_prefix_expires_in_and_permissions,
    a_non_admin_cannot_create_a_key_for_another_user,
    last_request_is_recorded_after_use,
    a_usage_flush_of_many_keys_writes_every_count,
    an_org_scoped_key_needs_membership_in_that_org,
    checks_of_a_cached_key_read_no_database,
);

// ---------------------------------------------------------------------------------------------------------
// Helpers

/// Signs up `email` on a fresh cookie-aware client; returns the client and the user id.
async fn sign_up_as(app: &TestApp, email: &str) -> (reqwest::Client, String) {
    let client = new_client();
    let response = client
        .post(app.url(latchkey::paths::SIGN_UP_EMAIL))
        .header(header::ORIGIN, ORIGIN)
        .json(&json!({"name": "Test User", "email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    (client, body["user"]["id"].as_str().unwrap().to_owned())
}

/// Signs up alice on the app's own client; returns her user id.
async fn sign_up_alice(app: &TestApp) -> String {
    let response = app.sign_up("alice@example.com").await;
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["user"]["id"].as_str().unwrap().to_owned()
}

/// POST with a session client (trusted Origin).
async fn post_with(app: &TestApp, client: &reqwest::Client, path: &str, body: &Value) -> Response {
    client.post(app.url(path)).header(header::ORIGIN, ORIGIN).json(body).send().await.unwrap()
}

/// Creates a key through the app's session client; returns the full create response.
async fn create_key(app: &TestApp, body: Value) -> Value {
    let response = app.post(CREATE, &body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `GET /api/auth/check` with only `x-api-key` (no cookies).
async fn check_with_key(app: &TestApp, key: &str) -> Response {
    bare_client().get(app.url(CHECK)).header("x-api-key", key).send().await.unwrap()
}

/// `POST verify` without any credential; asserts the status is 200 and returns the body.
async fn verify(app: &TestApp, body: Value) -> Value {
    let response = bare_client().post(app.url(VERIFY)).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200, "verify always answers 200");
    response.json().await.unwrap()
}

/// The error code of a failed verify (asserting it is a failure that, as Better Auth's, says nothing
/// about the key: `key: null`).
async fn verify_error(app: &TestApp, body: Value) -> String {
    let answer = verify(app, body).await;
    assert_eq!(answer["valid"], false, "{answer}");
    assert_eq!(answer["key"], Value::Null, "a refused key is not described: {answer}");
    answer["error"]["code"].as_str().expect("error.code").to_owned()
}

fn header_str<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|value| value.to_str().unwrap())
}

async fn error_code(response: Response) -> String {
    response.json::<Value>().await.unwrap()["code"].as_str().unwrap_or_default().to_owned()
}

const VIEW_FIELDS: [&str; 14] = [
    "id",
    "name",
    "start",
    "prefix",
    "referenceId",
    "organizationId",
    "enabled",
    "permissions",
    "metadata",
    "expiresAt",
    "lastRequest",
    "requestCount",
    "createdAt",
    "updatedAt",
];

fn assert_is_view_without_key(view: &Value) {
    for field in VIEW_FIELDS {
        assert!(view.get(field).is_some(), "{field} missing from {view}");
    }
    assert!(view.get("key").is_none(), "the key is shown again: {view}");
}

// ---------------------------------------------------------------------------------------------------------
// Create, get, list

async fn create_returns_the_key_once_and_get_and_list_never_show_it(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let user_id = sign_up_alice(&app).await;

    let created = create_key(&app, json!({"name": "ci"})).await;

    let key = created["key"].as_str().expect("key shown on create").to_owned();
    assert!(key.starts_with("lk_"), "{key}");
    assert!(key.len() >= 32, "a key needs enough entropy: {key}");
    assert_eq!(created["start"], key[..6]);
    assert_eq!(created["prefix"], "lk_");
    assert_eq!(created["name"], "ci");
    assert_eq!(created["referenceId"], user_id);
    assert_eq!(created["organizationId"], Value::Null);
    assert_eq!(created["enabled"], true);
    assert_eq!(created["permissions"], Value::Null);
    assert_eq!(created["metadata"], Value::Null);
    assert_eq!(created["expiresAt"], Value::Null);
    assert_eq!(created["lastRequest"], Value::Null);
    assert_eq!(created["requestCount"], 0);
    assert_eq!(created["createdAt"], START);
    assert_eq!(created["updatedAt"], START);
    for field in VIEW_FIELDS {
        assert!(created.get(field).is_some(), "{field} missing from {created}");
    }
    let id = created["id"].as_str().unwrap();

    let got = app.get(&format!("{GET}?id={id}")).await;
    assert_eq!(got.status(), 200);
    let got_text = got.text().await.unwrap();
    assert!(!got_text.contains(&key));
    let got: Value = serde_json::from_str(&got_text).unwrap();
    assert_is_view_without_key(&got);
    assert_eq!(got["id"], id);
    assert_eq!(got["start"], key[..6]);

    let listed = app.get(LIST).await;
    assert_eq!(listed.status(), 200);
    let listed_text = listed.text().await.unwrap();
    assert!(!listed_text.contains(&key));
    let listed: Value = serde_json::from_str(&listed_text).unwrap();
    assert_eq!(listed["apiKeys"].as_array().unwrap().len(), 1);
    assert_is_view_without_key(&listed["apiKeys"][0]);

    // A second key is a different key.
    let other = create_key(&app, json!({})).await;
    assert_ne!(other["key"], created["key"]);
    assert_ne!(other["id"], created["id"]);
}

async fn a_custom_prefix_starts_the_key(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;

    let created = create_key(&app, json!({"name": "bot", "prefix": "proj-X_"})).await;

    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("proj-X_"), "{key}");
    assert!(key.len() > "proj-X_".len() + 16, "{key}");
    assert_eq!(created["prefix"], "proj-X_");
    assert_eq!(created["start"], key[..6]);
    // The custom-prefixed key works like any other.
    assert_eq!(check_with_key(&app, key).await.status(), 200);
    assert_eq!(verify(&app, json!({"key": key})).await["valid"], true);
}

/// Every text (or blob) value of every row of every table, for searching.
async fn all_stored_text(app: &TestApp) -> Vec<String> {
    let mut found = Vec::new();
    match &app.state.db {
        latchkey::storage::Db::Sqlite(pool, _) => {
            let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(pool)
                .await
                .unwrap();
            for table in tables {
                let rows = sqlx::query(&format!("SELECT * FROM \"{table}\"")).fetch_all(pool).await.unwrap();
                for row in rows {
                    for i in 0..row.len() {
                        if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
                            found.push(text);
                        } else if let Ok(Some(bytes)) = row.try_get::<Option<Vec<u8>>, _>(i) {
                            found.push(String::from_utf8_lossy(&bytes).into_owned());
                        }
                    }
                }
            }
        }
        latchkey::storage::Db::Postgres(pool) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            for table in tables {
                let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT CAST(t AS TEXT) FROM \"{table}\" t"))
                    .fetch_all(pool)
                    .await
                    .unwrap();
                found.extend(rows);
            }
        }
    }
    found
}

async fn the_database_stores_no_raw_key(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;
    let created = create_key(&app, json!({"name": "ci", "metadata": {"team": "ops"}})).await;
    let key = created["key"].as_str().unwrap().to_owned();
    // Use it, so whatever a use writes (last request, audit, caches) is written too.
    assert_eq!(check_with_key(&app, &key).await.status(), 200);
    assert_eq!(verify(&app, json!({"key": key})).await["valid"], true);

    assert_eq!(app.count("api_keys").await, 1);
    let stored = all_stored_text(&app).await;
    // Sanity: the scan does see the key's row (its id and its display start are stored).
    assert!(stored.iter().any(|text| text.contains(created["id"].as_str().unwrap())), "scan found no api key row");
    let secret_part = &key["lk_".len()..];
    for text in &stored {
        assert!(!text.contains(&key), "the raw key is stored: {text}");
        assert!(!text.contains(secret_part), "the key's secret part is stored: {text}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// The key as a credential

async fn an_api_key_authenticates_check_and_organization_list(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let user_id = sign_up_alice(&app).await;
    let key = create_key(&app, json!({"name": "ci"})).await["key"].as_str().unwrap().to_owned();

    let checked = check_with_key(&app, &key).await;
    assert_eq!(checked.status(), 200);
    assert_eq!(header_str(&checked, "x-auth-method"), Some("api-key"));
    assert_eq!(header_str(&checked, "x-auth-user-id"), Some(user_id.as_str()));
    assert_eq!(header_str(&checked, "x-auth-scopes").unwrap_or(""), "", "an unrestricted key has no scopes");
    assert_eq!(header_str(&checked, "x-auth-org-id"), None, "no organization yet");
    let body: Value = checked.json().await.unwrap();
    assert_eq!(body["userId"], user_id);
    assert_eq!(body["method"], "api-key");
    assert_eq!(body["organizationId"], Value::Null);

    // Once the user has an organization, the key resolves it as the tenant (first organization).
    let org = app.post(ORG_CREATE, &json!({"name": "Acme", "slug": "acme"})).await;
    assert_eq!(org.status(), 200);
    let org_id = org.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let checked = check_with_key(&app, &key).await;
    assert_eq!(checked.status(), 200);
    assert_eq!(header_str(&checked, "x-auth-org-id"), Some(org_id.as_str()));

    let orgs = bare_client().get(app.url(ORG_LIST)).header("x-api-key", &key).send().await.unwrap();
    assert_eq!(orgs.status(), 200);
    let orgs: Value = orgs.json().await.unwrap();
    assert_eq!(orgs.as_array().unwrap().len(), 1, "{orgs}");
    assert_eq!(orgs[0]["id"], org_id);

    // No credential, or a key that does not exist: 401.
    let anonymous = bare_client().get(app.url(CHECK)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let unknown = check_with_key(&app, "lk_thisKeyDoesNotExistAtAll0123456789").await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(error_code(unknown).await, "INVALID_API_KEY");
    let unknown_orgs = bare_client()
        .get(app.url(ORG_LIST))
        .header("x-api-key", "lk_thisKeyDoesNotExistAtAll0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_orgs.status(), 401);
}

async fn check_lists_a_restricted_keys_permissions_as_sorted_scopes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;
    let permissions = json!({"projects": ["write", "read"], "files": ["read"]});
    let created = create_key(&app, json!({"name": "narrow", "permissions": permissions})).await;
    assert_eq!(created["permissions"]["files"], json!(["read"]));
    let mut projects: Vec<&str> =
        created["permissions"]["projects"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    projects.sort_unstable();
    assert_eq!(projects, ["read", "write"]);

    let checked = check_with_key(&app, created["key"].as_str().unwrap()).await;

    assert_eq!(checked.status(), 200);
    assert_eq!(header_str(&checked, "x-auth-scopes"), Some("files:read projects:read projects:write"));
}

async fn list_has_the_documented_shape_is_newest_first_and_paginates(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;
    let mut ids = Vec::new();
    for name in ["k1", "k2", "k3"] {
        ids.push(create_key(&app, json!({"name": name})).await["id"].as_str().unwrap().to_owned());
        app.clock.advance(Duration::from_secs(1));
    }

    let all: Value = app.get(LIST).await.json().await.unwrap();
    assert_eq!(all["total"], 3);
    assert_eq!(all["limit"], 100);
    assert_eq!(all["offset"], 0);
    let names: Vec<&str> = all["apiKeys"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["k3", "k2", "k1"], "newest first");

    let page = app.get(&format!("{LIST}?limit=2&offset=0")).await;
    assert_eq!(page.status(), 200);
    let page: Value = page.json().await.unwrap();
    assert_eq!(page["total"], 3);
    assert_eq!(page["limit"], 2);
    assert_eq!(page["offset"], 0);
    let page_ids: Vec<&str> = page["apiKeys"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(page_ids, [ids[2].as_str(), ids[1].as_str()]);

    let rest: Value = app.get(&format!("{LIST}?limit=2&offset=2")).await.json().await.unwrap();
    assert_eq!(rest["total"], 3);
    assert_eq!(rest["offset"], 2);
    let rest_ids: Vec<&str> = rest["apiKeys"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(rest_ids, [ids[0].as_str()]);

    let beyond: Value = app.get(&format!("{LIST}?limit=2&offset=10")).await.json().await.unwrap();
    assert_eq!(beyond["total"], 3);
    assert_eq!(beyond["apiKeys"], json!([]));

    // Without a credential there is nothing to list.
    assert_eq!(bare_client().get(app.url(LIST)).send().await.unwrap().status(), 401);
}

async fn another_users_key_cannot_be_seen_changed_or_deleted(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;
    let alices = create_key(&app, json!({"name": "alice's"})).await;
    let alice_key_id = alices["id"].as_str().unwrap();
    let (bob, _) = sign_up_as(&app, "bob@example.com").await;
    let bobs = post_with(&app, &bob, CREATE, &json!({"name": "bob's"})).await;
    assert_eq!(bobs.status(), 200);

    let got = bob.get(app.url(&format!("{GET}?id={alice_key_id}"))).send().await.unwrap();
    assert_eq!(got.status(), 404);
    assert_eq!(error_code(got).await, "KEY_NOT_FOUND");
    let updated = post_with(&app, &bob, UPDATE, &json!({"keyId": alice_key_id, "enabled": false, "name": "x"})).await;
    assert_eq!(updated.status(), 404);
    assert_eq!(error_code(updated).await, "KEY_NOT_FOUND");
    let deleted = post_with(&app, &bob, DELETE, &json!({"keyId": alice_key_id})).await;
    assert_eq!(deleted.status(), 404);
    assert_eq!(error_code(deleted).await, "KEY_NOT_FOUND");
    // Bob's list holds only his own key.
    let bob_list: Value = bob.get(app.url(LIST)).send().await.unwrap().json().await.unwrap();
    assert_eq!(bob_list["total"], 1);
    assert_eq!(bob_list["apiKeys"][0]["name"], "bob's");
    // The same for a key id that does not exist at all.
    let unknown = post_with(&app, &bob, DELETE, &json!({"keyId": "key_doesnotexist"})).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(error_code(unknown).await, "KEY_NOT_FOUND");

    // Alice's key is untouched and still works.
    let still: Value = app.get(&format!("{GET}?id={alice_key_id}")).await.json().await.unwrap();
    assert_eq!(still["enabled"], true);
    assert_eq!(still["name"], "alice's");
    assert_eq!(check_with_key(&app, alices["key"].as_str().unwrap()).await.status(), 200);
    let alice_list: Value = app.get(LIST).await.json().await.unwrap();
    assert_eq!(alice_list["total"], 1);
    assert_eq!(alice_list["apiKeys"][0]["id"], alice_key_id);
}

// ---------------------------------------------------------------------------------------------------------
// Verify

async fn verify_accepts_a_valid_key_and_reports_unknown_ones_with_200(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;
    let created = create_key(&app, json!({"name": "ci"})).await;
    let key = created["key"].as_str().unwrap();

    let valid = verify(&app, json!({"key": key})).await;

    assert_eq!(valid["valid"], true);
    assert_eq!(valid["error"], Value::Null);
    assert_eq!(valid["key"]["id"], created["id"]);
    assert_is_view_without_key(&valid["key"]);

    let unknown = verify(&app, json!({"key": "lk_thisKeyDoesNotExistAtAll0123456789"})).await;
    assert_eq!(unknown["valid"], false);
    assert_eq!(unknown["error"]["code"], "KEY_NOT_FOUND");
    assert!(unknown["error"]["message"].is_string());
    assert_eq!(unknown["key"], Value::Null);
    // A near miss (one character changed) is unknown too.
    let mut near = key.to_owned();
    let last = near.pop().unwrap();
    near.push(if last == 'a' { 'b' } else { 'a' });
    assert_eq!(verify_error(&app, json!({"key": near})).await, "KEY_NOT_FOUND");
}

async fn verify_reports_a_disabled_key(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;
    let created = create_key(&app, json!({"name": "ci"})).await;
    let key = created["key"].as_str().unwrap();

    let updated = app.post(UPDATE, &json!({"keyId": created["id"], "enabled": false})).await;

    assert_eq!(updated.status(), 200);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["enabled"], false);
    assert_is_view_without_key(&updated);
    let answer = verify(&app, json!({"key": key})).await;
    assert_eq!(
        answer,
        json!({"valid": false, "error": {"code": "KEY_DISABLED", "message": "API Key is disabled"}, "key": null})
    );
}

async fn verify_reports_an_expired_key(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;
    let created = create_key(&app, json!({"name": "short", "expiresIn": 60})).await;
    assert_eq!(created["expiresAt"], "2026-11-18T11:07:40.000Z");
    let key = created["key"].as_str().unwrap();
    assert_eq!(verify(&app, json!({"key": key})).await["valid"], true);

    app.clock.advance(Duration::from_secs(61));

    assert_eq!(verify_error(&app, json!({"key": key})).await, "KEY_EXPIRED");
}

async fn verify_checks_requested_permissions(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;
    let restricted = create_key(&app, json!({"permissions": {"files": ["read", "write"], "projects": ["read"]}})).await;
    let restricted = restricted["key"].as_str().unwrap();
    let unrestricted = create_key(&app, json!({})).await;
    let unrestricted = unrestricted["key"].as_str().unwrap();

    for held in [json!({"files": ["read"]}), json!({"files": ["read", "write"], "projects": ["read"]})] {
        let answer = verify(&app, json!({"key": restricted, "permissions": held})).await;
        assert_eq!(answer["valid"], true, "{held}: {answer}");
        assert_eq!(answer["error"], Value::Null);
    }
    for not_held in [
        json!({"files": ["delete"]}),
        json!({"files": ["read", "delete"]}),
        json!({"projects": ["write"]}),
        json!({"billing": ["read"]}),
    ] {
        let code = verify_error(&app, json!({"key": restricted, "permissions": not_held})).await;
        assert_eq!(code, "INSUFFICIENT_PERMISSIONS", "{not_held}");
    }
    // A key without permissions answers valid when none are asked, and fails when some are.
    assert_eq!(verify(&app, json!({"key": unrestricted})).await["valid"], true);
    let code = verify_error(&app, json!({"key": unrestricted, "permissions": {"files": ["read"]}})).await;
    assert_eq!(code, "INSUFFICIENT_PERMISSIONS");
}

async fn verify_is_rate_limited_per_ip_and_still_answers_200(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |settings| settings.rate_limit.verify_per_ip = 3).await else { return };
    sign_up_alice(&app).await;
    let key = create_key(&app, json!({})).await["key"].as_str().unwrap().to_owned();

    for _ in 0..3 {
        assert_eq!(verify(&app, json!({"key": key})).await["valid"], true);
    }
    let limited = verify(&app, json!({"key": key})).await;

    assert_eq!(limited["valid"], false);
    assert_eq!(limited["error"]["code"], "RATE_LIMITED");
    // A new window (limits are per minute) lets it through again.
    app.clock.advance(Duration::from_secs(61));
    assert_eq!(verify(&app, json!({"key": key})).await["valid"], true);
}

// ---------------------------------------------------------------------------------------------------------
// Revocation takes effect at once

async fn a_deleted_key_is_refused_on_the_very_next_request(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;
    let created = create_key(&app, json!({"name": "ci"})).await;
    let key = created["key"].as_str().unwrap();
    // Used (and so possibly cached) before it is deleted.
    assert_eq!(check_with_key(&app, key).await.status(), 200);
    assert_eq!(verify(&app, json!({"key": key})).await["valid"], true);

    let deleted = app.post(DELETE, &json!({"keyId": created["id"]})).await;

    assert_eq!(deleted.status(), 200);
    assert_eq!(deleted.json::<Value>().await.unwrap(), json!({"success": true}));
    let refused = check_with_key(&app, key).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(error_code(refused).await, "INVALID_API_KEY");
    assert_eq!(verify_error(&app, json!({"key": key})).await, "KEY_NOT_FOUND");
    let got = app.get(&format!("{GET}?id={}", created["id"].as_str().unwrap())).await;
    assert_eq!(got.status(), 404);
    assert_eq!(app.count("api_keys").await, 0);
    // Deleting again: it is gone.
    let again = app.post(DELETE, &json!({"keyId": created["id"]})).await;
    assert_eq!(again.status(), 404);
    assert_eq!(error_code(again).await, "KEY_NOT_FOUND");
}

async fn a_disabled_key_is_refused_at_once_and_works_again_when_re_enabled(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;
    let created = create_key(&app, json!({"name": "ci"})).await;
    let key = created["key"].as_str().unwrap();
    assert_eq!(check_with_key(&app, key).await.status(), 200);

    let disabled = app.post(UPDATE, &json!({"keyId": created["id"], "enabled": false})).await;
    assert_eq!(disabled.status(), 200);

    // Better Auth's answer to a disabled key used as a credential.
    let refused = check_with_key(&app, key).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.json::<Value>().await.unwrap(),
        json!({"code": "KEY_DISABLED", "message": "API Key is disabled"})
    );
    let orgs = bare_client().get(app.url(ORG_LIST)).header("x-api-key", key).send().await.unwrap();
    assert_eq!(orgs.status(), 401);
    assert_eq!(error_code(orgs).await, "KEY_DISABLED");

    let enabled = app.post(UPDATE, &json!({"keyId": created["id"], "enabled": true})).await;
    assert_eq!(enabled.status(), 200);
    assert_eq!(enabled.json::<Value>().await.unwrap()["enabled"], true);

    assert_eq!(check_with_key(&app, key).await.status(), 200);
    assert_eq!(verify(&app, json!({"key": key})).await["valid"], true);
}

async fn an_expired_key_is_refused_as_a_credential(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;
    let created = create_key(&app, json!({"name": "short", "expiresIn": 60})).await;
    let key = created["key"].as_str().unwrap();
    assert_eq!(check_with_key(&app, key).await.status(), 200);

    app.clock.advance(Duration::from_secs(59));
    assert_eq!(check_with_key(&app, key).await.status(), 200, "not expired yet");
    app.clock.advance(Duration::from_secs(2));

    let refused = check_with_key(&app, key).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(error_code(refused).await, "KEY_EXPIRED");
    let orgs = bare_client().get(app.url(ORG_LIST)).header("x-api-key", key).send().await.unwrap();
    assert_eq!(orgs.status(), 401);
    assert_eq!(error_code(orgs).await, "KEY_EXPIRED");
}

async fn an_api_key_cannot_create_update_or_delete_api_keys(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;
    let created = create_key(&app, json!({"name": "ci"})).await;
    let key = created["key"].as_str().unwrap();
    let with_key = |path: &str, body: Value| {
        let request = bare_client().post(app.url(path)).header("x-api-key", key).json(&body);
        async move { request.send().await.unwrap() }
    };

    let attempts = [
        (CREATE, json!({"name": "minted by a key"})),
        (UPDATE, json!({"keyId": created["id"], "enabled": false, "name": "renamed"})),
        (DELETE, json!({"keyId": created["id"]})),
    ];
    for (path, body) in attempts {
        let response = with_key(path, body).await;
        assert_eq!(response.status(), 403, "{path}");
        assert_eq!(error_code(response).await, "SESSION_REQUIRED", "{path}");
    }

    assert_eq!(app.count("api_keys").await, 1);
    let unchanged: Value =
        app.get(&format!("{GET}?id={}", created["id"].as_str().unwrap())).await.json().await.unwrap();
    assert_eq!(unchanged["enabled"], true);
    assert_eq!(unchanged["name"], "ci");
    assert_eq!(check_with_key(&app, key).await.status(), 200);
}

async fn create_validates_prefix_expires_in_and_permissions(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;

    for prefix in ["lkc_x", "lkc_", "bad prefix", "a/b", "ünï"] {
        let response = app.post(CREATE, &json!({"prefix": prefix})).await;
        assert_eq!(response.status(), 400, "{prefix}");
        assert_eq!(error_code(response).await, "INVALID_PREFIX", "{prefix}");
    }
    // Better Auth's codes where it has the case.
    for prefix in ["", "abcdefghijklmnopq"] {
        let response = app.post(CREATE, &json!({"prefix": prefix})).await;
        assert_eq!(response.status(), 400, "{prefix}");
        assert_eq!(error_code(response).await, "INVALID_PREFIX_LENGTH", "{prefix}");
    }
    for (expires_in, code) in [
        (json!(0), "EXPIRES_IN_IS_TOO_SMALL"),
        (json!(-1), "EXPIRES_IN_IS_TOO_SMALL"),
        (json!(315_360_001), "EXPIRES_IN_IS_TOO_LARGE"),
    ] {
        let response = app.post(CREATE, &json!({"expiresIn": expires_in})).await;
        assert_eq!(response.status(), 400, "{expires_in}");
        assert_eq!(error_code(response).await, code, "{expires_in}");
    }
    let long_name = "n".repeat(257);
    let response = app.post(CREATE, &json!({"name": long_name})).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "INVALID_NAME_LENGTH");
    for permissions in [json!({"files": "read"}), json!(["files"]), json!({"files": [1]})] {
        let response = app.post(CREATE, &json!({"permissions": permissions})).await;
        assert_eq!(response.status(), 400, "{permissions}");
        assert_eq!(error_code(response).await, "VALIDATION_ERROR", "{permissions}");
    }
    assert_eq!(app.count("api_keys").await, 0);

    // The edges that are allowed.
    let sixteen = create_key(&app, json!({"prefix": "abcdefghijklmnop"})).await;
    assert!(sixteen["key"].as_str().unwrap().starts_with("abcdefghijklmnop"));
    let longest = create_key(&app, json!({"expiresIn": 315_360_000})).await;
    assert_eq!(longest["expiresAt"], "2036-11-15T11:06:40.000Z");
    let shortest = create_key(&app, json!({"expiresIn": 1})).await;
    assert_eq!(shortest["expiresAt"], "2026-11-18T11:06:41.000Z");
    let never = create_key(&app, json!({"expiresIn": null})).await;
    assert_eq!(never["expiresAt"], Value::Null);
    assert_eq!(app.count("api_keys").await, 4);

    // Without a session there is no creating at all.
    let anonymous = bare_client().post(app.url(CREATE)).json(&json!({})).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(app.count("api_keys").await, 4);
}

async fn a_non_admin_cannot_create_a_key_for_another_user(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice_id = sign_up_alice(&app).await;
    let (_bob, bob_id) = sign_up_as(&app, "bob@example.com").await;

    let response = app.post(CREATE, &json!({"name": "for bob", "userId": bob_id})).await;

    // Refused as Better Auth refuses a client naming a user: never a key acting as bob.
    assert_eq!(response.status(), 401);
    assert_eq!(error_code(response).await, "UNAUTHORIZED_SESSION");
    assert_eq!(app.count("api_keys").await, 0);
    // Naming oneself is no other user.
    let own = create_key(&app, json!({"name": "mine", "userId": alice_id})).await;
    assert_eq!(own["referenceId"], alice_id);
}

async fn last_request_is_recorded_after_use(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;
    let created = create_key(&app, json!({"name": "ci"})).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["lastRequest"], Value::Null);
    let before: Value = app.get(&format!("{GET}?id={id}")).await.json().await.unwrap();
    assert_eq!(before["lastRequest"], Value::Null);

    app.clock.advance(Duration::from_secs(5));
    assert_eq!(check_with_key(&app, created["key"].as_str().unwrap()).await.status(), 200);

    let after: Value = app.get(&format!("{GET}?id={id}")).await.json().await.unwrap();
    assert_eq!(after["lastRequest"], "2026-11-18T11:06:45.000Z");
    let listed: Value = app.get(LIST).await.json().await.unwrap();
    assert_eq!(listed["apiKeys"][0]["lastRequest"], "2026-11-18T11:06:45.000Z");
}

async fn a_usage_flush_of_many_keys_writes_every_count(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;
    // More keys than one usage statement takes (written directly: 1,200 creations would be slow), each
    // used once and the first one twice more, some earlier use already flushed on key 2.
    app.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1200) \
         INSERT INTO api_keys (id, name, start, prefix, key_hash, reference_id, request_count, created_at, updated_at) \
         SELECT 'key_many' || i, 'many', 'lk_xxx', 'lk_', 'hash' || i, \
         (SELECT id FROM users WHERE email = 'alice@example.com'), 0, 1, 1 FROM n",
    )
    .await;
    app.execute("UPDATE api_keys SET request_count = 7, last_request = 9999999999999 WHERE id = 'key_many2'").await;
    let now = app.clock.now();
    for i in 1..=1200 {
        app.state.api_keys.usage.record(&format!("key_many{i}"), now);
    }
    app.state.api_keys.usage.record("key_many1", now + 1);
    app.state.api_keys.usage.record("key_many1", now + 2);

    assert_eq!(app.state.flush_usage().await.unwrap(), 1200);

    let sum = latchkey::db_run!(&app.state.db, |pool| sqlx::query_scalar::<_, i64>(
        "SELECT CAST(SUM(request_count) AS BIGINT) FROM api_keys WHERE name = 'many'"
    )
    .fetch_one(pool)
    .await
    .unwrap());
    assert_eq!(sum, 1202 + 7);
    let last = |id: &'static str| {
        let db = app.state.db.clone();
        async move {
            latchkey::db_run!(&db, |pool| sqlx::query_as::<_, (i64, Option<i64>)>(
                "SELECT request_count, last_request FROM api_keys WHERE id = $1"
            )
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap())
        }
    };
    assert_eq!(last("key_many1").await, (3, Some(now + 2)));
    // A later last use already stored is kept.
    assert_eq!(last("key_many2").await, (8, Some(9_999_999_999_999)));
    assert_eq!(last("key_many1200").await, (1, Some(now)));
}

async fn an_org_scoped_key_needs_membership_in_that_org(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;
    let acme = app.post(ORG_CREATE, &json!({"name": "Acme", "slug": "acme"})).await;
    assert_eq!(acme.status(), 200);
    let acme_id = acme.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let (bob, _) = sign_up_as(&app, "bob@example.com").await;
    let globex = post_with(&app, &bob, ORG_CREATE, &json!({"name": "Globex", "slug": "globex"})).await;
    assert_eq!(globex.status(), 200);
    let globex_id = globex.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    for foreign in [globex_id.as_str(), "org_doesnotexist"] {
        let response = app.post(CREATE, &json!({"name": "foreign", "organizationId": foreign})).await;
        assert_eq!(response.status(), 403, "{foreign}");
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({
                "code": "USER_NOT_MEMBER_OF_ORGANIZATION",
                "message": "You are not a member of the organization that owns this API key."
            })
        );
    }
    assert_eq!(app.count("api_keys").await, 0);

    let scoped = create_key(&app, json!({"name": "acme key", "organizationId": acme_id})).await;
    assert_eq!(scoped["organizationId"], acme_id);
    let checked = check_with_key(&app, scoped["key"].as_str().unwrap()).await;
    assert_eq!(checked.status(), 200);
    assert_eq!(header_str(&checked, "x-auth-org-id"), Some(acme_id.as_str()));
}

// ---------------------------------------------------------------------------------------------------------
// Several nodes on one PostgreSQL

/// Polls `check` with `key` on `node` until it answers 401, failing after a second.
async fn assert_refused_within_a_second(node: &TestApp, key: &str, what: &str) {
    let since = Instant::now();
    loop {
        if check_with_key(node, key).await.status() == 401 {
            break;
        }
        assert!(since.elapsed() < Duration::from_secs(1), "node B still accepts the {what} key after 1 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn a_key_deleted_on_one_node_is_refused_by_another_within_a_second() {
    let Some(db) = PgDatabase::create().await else { return };
    let url = db.url.clone();
    let node_a = spawn_app_on(TestDb::Postgres(db), |_| {}).await;
    let node_b = spawn_node(&url, |_| {}).await;
    sign_up_alice(&node_a).await;
    let created = create_key(&node_a, json!({"name": "ci"})).await;
    let key = created["key"].as_str().unwrap();
    // Node B has seen (and may cache) the key.
    for _ in 0..2 {
        assert_eq!(check_with_key(&node_b, key).await.status(), 200);
    }

    let deleted = node_a.post(DELETE, &json!({"keyId": created["id"]})).await;
    assert_eq!(deleted.status(), 200);

    assert_refused_within_a_second(&node_b, key, "deleted").await;
    assert_eq!(verify_error(&node_b, json!({"key": key})).await, "KEY_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn a_key_disabled_on_one_node_is_refused_by_another_within_a_second() {
    let Some(db) = PgDatabase::create().await else { return };
    let url = db.url.clone();
    let node_a = spawn_app_on(TestDb::Postgres(db), |_| {}).await;
    let node_b = spawn_node(&url, |_| {}).await;
    sign_up_alice(&node_a).await;
    let created = create_key(&node_a, json!({"name": "ci"})).await;
    let key = created["key"].as_str().unwrap();
    for _ in 0..2 {
        assert_eq!(check_with_key(&node_b, key).await.status(), 200);
    }

    let disabled = node_a.post(UPDATE, &json!({"keyId": created["id"], "enabled": false})).await;
    assert_eq!(disabled.status(), 200);

    assert_refused_within_a_second(&node_b, key, "disabled").await;
}

async fn checks_of_a_cached_key_read_no_database(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    sign_up_alice(&app).await;
    let key = create_key(&app, json!({"name": "ci"})).await["key"].as_str().unwrap().to_owned();
    let unknown = "lk_thisKeyDoesNotExistAtAll0123456789";
    assert_eq!(check_with_key(&app, &key).await.status(), 200);
    assert_eq!(check_with_key(&app, unknown).await.status(), 401);

    // Take the table away behind the server's back: only a DB read would notice (with a 500).
    app.execute("ALTER TABLE api_keys RENAME TO api_keys_away").await;
    let known = check_with_key(&app, &key).await.status();
    let still_unknown = check_with_key(&app, unknown).await.status();
    let verified = verify(&app, json!({"key": key})).await;
    app.execute("ALTER TABLE api_keys_away RENAME TO api_keys").await;

    assert_eq!(known, 200, "a cached key is checked from memory");
    assert_eq!(still_unknown, 401, "a recently unknown key is refused from memory");
    assert_eq!(verified["valid"], true);
}
