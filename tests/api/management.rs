//! The management API (capability 5): `/api/v2/clients` (Auth0's shapes and defaults by `app_type`,
//! secrets shown once and stored hashed, updates and rotation), `/api/v2/resource-servers` and
//! `/api/v2/client-grants`; Auth0's error body, and who may call it.

use latchkey::paths;
use reqwest::{header, Method, Response};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{both_backends, helpers::*};

both_backends!(
    clients_get_auth0_defaults_by_app_type,
    a_confidential_clients_secret_is_shown_once_and_stored_only_hashed,
    clients_are_read_listed_and_paged,
    an_update_changes_fields_and_moves_the_secret_with_the_auth_method,
    deleting_a_client_makes_it_inexistent,
    bad_fields_are_refused_with_auth0s_error_body_and_change_nothing,
    only_the_master_credentials_manage_clients,
    apis_are_created_with_auth0_defaults_and_their_identifier_is_unique,
    an_api_changes_but_its_identifier_and_the_management_api_do_not,
    client_grants_name_an_existing_client_and_api_and_only_scopes_it_defines,
    deleting_an_api_or_a_client_deletes_their_grants,
    concurrent_changes_to_a_client_lose_nothing_and_keep_its_secret_consistent,
);

async fn spawn(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, with_master_credentials).await
}

async fn create(app: &TestApp, body: Value) -> Response {
    master(app, Method::POST, paths::MGMT_CLIENTS).json(&body).send().await.unwrap()
}

async fn created(app: &TestApp, body: Value) -> Value {
    let response = create(app, body.clone()).await;
    assert_eq!(response.status(), 201, "create {body}");
    response.json().await.unwrap()
}

async fn list(app: &TestApp, query: &str) -> Value {
    let response = master(app, Method::GET, &format!("{}{query}", paths::MGMT_CLIENTS)).send().await.unwrap();
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

fn client_path(id: &str) -> String {
    paths::MGMT_CLIENT.replace("{id}", id)
}

async fn get_client(app: &TestApp, id: &str) -> Response {
    master(app, Method::GET, &client_path(id)).send().await.unwrap()
}

async fn patch(app: &TestApp, id: &str, body: Value) -> Response {
    master(app, Method::PATCH, &client_path(id)).json(&body).send().await.unwrap()
}

async fn rotate(app: &TestApp, id: &str) -> Response {
    master(app, Method::POST, &paths::MGMT_CLIENT_ROTATE_SECRET.replace("{id}", id)).send().await.unwrap()
}

/// Asserts Auth0's error body with `status` and `error_code`.
async fn assert_auth0_error(response: Response, status: u16, error_code: &str) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["statusCode"], status, "{body}");
    assert_eq!(body["errorCode"], error_code, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body
}

async fn stored_secret_hash(app: &TestApp, id: &str) -> Option<String> {
    let sql = format!("SELECT secret_hash FROM oauth_clients WHERE client_id = '{id}'");
    latchkey::db_run!(&app.state.db, |pool| sqlx::query_scalar::<_, Option<String>>(&sql)
        .fetch_one(pool)
        .await
        .unwrap())
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

async fn clients_get_auth0_defaults_by_app_type(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };

    let spa = created(&app, json!({"name": "  My SPA ", "app_type": "spa"})).await;
    assert_eq!(spa["name"], "My SPA");
    let id = spa["client_id"].as_str().unwrap();
    assert!(id.len() == 32 && id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
    assert_eq!(spa["token_endpoint_auth_method"], "none");
    assert_eq!(spa["grant_types"], json!(["authorization_code", "refresh_token"]));
    assert_eq!(spa["is_first_party"], true);
    assert_eq!(spa["jwt_configuration"], json!({"alg": "RS256"}));
    assert_eq!(
        spa["refresh_token"],
        json!({"rotation_type": "rotating", "leeway": 10, "token_lifetime": 2_592_000, "idle_token_lifetime": 1_296_000})
    );
    assert_eq!(spa["callbacks"], json!([]));
    assert!(spa.get("client_secret").is_none(), "a public client has no secret: {spa}");

    let native = created(
        &app,
        json!({"name": "App", "app_type": "native", "callbacks": ["com.example.app:/oauth"],
            "jwt_configuration": {"lifetime_in_seconds": 36000}}),
    )
    .await;
    assert_eq!(native["token_endpoint_auth_method"], "none");
    assert_eq!(native["callbacks"], json!(["com.example.app:/oauth"]), "a private-use scheme, for native apps");
    assert_eq!(native["jwt_configuration"]["alg"], "RS256", "Auth0's other jwt_configuration fields are ignored");
    let web = created(&app, json!({"name": "Web", "app_type": "regular_web"})).await;
    assert_eq!(web["token_endpoint_auth_method"], "client_secret_post");
    assert_eq!(web["grant_types"], json!(["authorization_code", "refresh_token"]));
    let machine = created(&app, json!({"name": "Cron", "app_type": "non_interactive"})).await;
    assert_eq!(machine["token_endpoint_auth_method"], "client_secret_post");
    assert_eq!(machine["grant_types"], json!(["client_credentials"]));

    // Given fields win over the defaults; Auth0's extra fields are ignored.
    let custom = created(
        &app,
        json!({"name": "Partner", "app_type": "regular_web", "is_first_party": false,
            "token_endpoint_auth_method": "client_secret_basic", "callbacks": ["https://partner.example/cb"],
            "allowed_logout_urls": ["https://partner.example/"], "web_origins": ["https://partner.example"],
            "jwt_configuration": {"alg": "ES256"}, "refresh_token": {"leeway": 0, "expiration_type": "expiring"},
            "description": "A partner", "oidc_conformant": true}),
    )
    .await;
    assert_eq!(custom["is_first_party"], false);
    assert_eq!(custom["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(custom["callbacks"], json!(["https://partner.example/cb"]));
    assert_eq!(custom["web_origins"], json!(["https://partner.example"]));
    assert_eq!(custom["jwt_configuration"]["alg"], "ES256");
    assert_eq!(custom["refresh_token"]["leeway"], 0);
    assert_eq!(custom["refresh_token"]["token_lifetime"], 2_592_000, "unset fields keep their defaults");
    assert_eq!(custom["description"], "A partner");
    assert_eq!(app.count("oauth_clients").await, 5);
}

async fn a_confidential_clients_secret_is_shown_once_and_stored_only_hashed(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };

    let response = create(&app, json!({"name": "Web", "app_type": "regular_web"})).await;
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store", "an answer holding a secret is not cached");
    let web: Value = response.json().await.unwrap();
    let id = web["client_id"].as_str().unwrap();
    let secret = web["client_secret"].as_str().expect("shown at creation").to_owned();
    assert!(secret.len() == 64 && secret.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(stored_secret_hash(&app, id).await.as_deref(), Some(sha256_hex(&secret).as_str()));

    let read: Value = get_client(&app, id).await.json().await.unwrap();
    assert!(read.get("client_secret").is_none(), "never shown again: {read}");
    let listed: Value = master(&app, Method::GET, paths::MGMT_CLIENTS).send().await.unwrap().json().await.unwrap();
    assert!(listed[0].get("client_secret").is_none());

    let response = rotate(&app, id).await;
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.unwrap();
    let new_secret = rotated["client_secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert_eq!(stored_secret_hash(&app, id).await.as_deref(), Some(sha256_hex(new_secret).as_str()));

    let spa = created(&app, json!({"name": "SPA", "app_type": "spa"})).await;
    let spa_id = spa["client_id"].as_str().unwrap();
    assert_eq!(stored_secret_hash(&app, spa_id).await, None);
    assert_auth0_error(rotate(&app, spa_id).await, 400, "invalid_body").await;
    assert_auth0_error(rotate(&app, "nope").await, 404, "inexistent_client").await;
}

async fn clients_are_read_listed_and_paged(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };

    let mut ids = Vec::new();
    for n in 0..3 {
        let client = created(&app, json!({"name": format!("Client {n}"), "app_type": "spa"})).await;
        ids.push(client["client_id"].as_str().unwrap().to_owned());
        app.clock.advance(std::time::Duration::from_millis(5));
    }
    let one: Value = get_client(&app, &ids[1]).await.json().await.unwrap();
    assert_eq!(one["name"], "Client 1");

    let all = list(&app, "").await;
    let names: Vec<&str> = all.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Client 0", "Client 1", "Client 2"], "oldest first");
    let page = list(&app, "?per_page=2&page=1&include_totals=true").await;
    assert_eq!(page["total"], 3);
    assert_eq!(page["start"], 2);
    assert_eq!(page["limit"], 2);
    assert_eq!(page["clients"].as_array().unwrap().len(), 1);
    assert_eq!(page["clients"][0]["client_id"], ids[2].as_str());

    let bad = master(&app, Method::GET, &format!("{}?per_page=many", paths::MGMT_CLIENTS)).send().await.unwrap();
    assert_auth0_error(bad, 400, "invalid_query_string").await;
    assert_auth0_error(get_client(&app, "nope").await, 404, "inexistent_client").await;
}

async fn an_update_changes_fields_and_moves_the_secret_with_the_auth_method(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };

    let spa = created(&app, json!({"name": "SPA", "app_type": "spa", "description": "first"})).await;
    let id = spa["client_id"].as_str().unwrap();
    app.clock.advance(std::time::Duration::from_secs(1));

    let response = patch(&app, id, json!({"name": "Renamed", "callbacks": ["http://localhost:3000/cb"]})).await;
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["name"], "Renamed");
    assert_eq!(updated["callbacks"], json!(["http://localhost:3000/cb"]));
    assert_eq!(updated["description"], "first", "absent fields stay");
    assert_ne!(updated["updated_at"], spa["updated_at"]);
    assert_eq!(updated["created_at"], spa["created_at"]);
    assert!(updated.get("client_secret").is_none());

    let refresh: Value =
        patch(&app, id, json!({"refresh_token": {"token_lifetime": 2_000_000}})).await.json().await.unwrap();
    assert_eq!(
        refresh["refresh_token"],
        json!({"rotation_type": "rotating", "leeway": 10, "token_lifetime": 2_000_000, "idle_token_lifetime": 1_296_000}),
        "the settings not sent keep their value"
    );
    let too_idle = patch(&app, id, json!({"refresh_token": {"idle_token_lifetime": 2_000_001}})).await;
    assert_auth0_error(too_idle, 400, "invalid_body").await;
    let cleared: Value = patch(&app, id, json!({"description": null})).await.json().await.unwrap();
    assert_eq!(cleared["description"], Value::Null);

    // Becoming confidential mints a secret, shown in that answer only; becoming public drops it.
    let confidential: Value =
        patch(&app, id, json!({"token_endpoint_auth_method": "client_secret_basic"})).await.json().await.unwrap();
    let secret = confidential["client_secret"].as_str().expect("a new confidential client's secret");
    assert_eq!(stored_secret_hash(&app, id).await.as_deref(), Some(sha256_hex(secret).as_str()));
    let again: Value = patch(&app, id, json!({"name": "Again"})).await.json().await.unwrap();
    assert!(again.get("client_secret").is_none(), "an existing secret is kept, not shown");
    assert_eq!(stored_secret_hash(&app, id).await.as_deref(), Some(sha256_hex(secret).as_str()));
    let public: Value = patch(&app, id, json!({"token_endpoint_auth_method": "none"})).await.json().await.unwrap();
    assert_eq!(public["token_endpoint_auth_method"], "none");
    assert_eq!(stored_secret_hash(&app, id).await, None);

    assert_auth0_error(patch(&app, id, json!({"app_type": "regular_web"})).await, 400, "invalid_body").await;
    assert_auth0_error(patch(&app, id, json!({"grant_types": ["client_credentials"]})).await, 400, "invalid_body")
        .await;
    let unchanged: Value = get_client(&app, id).await.json().await.unwrap();
    assert_eq!(unchanged["grant_types"], json!(["authorization_code", "refresh_token"]));
    assert_auth0_error(patch(&app, "nope", json!({"name": "x"})).await, 404, "inexistent_client").await;
}

async fn deleting_a_client_makes_it_inexistent(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };

    let client = created(&app, json!({"name": "Gone", "app_type": "regular_web"})).await;
    let id = client["client_id"].as_str().unwrap();
    let response = master(&app, Method::DELETE, &client_path(id)).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(app.count("oauth_clients").await, 0);
    assert_auth0_error(get_client(&app, id).await, 404, "inexistent_client").await;
    let again = master(&app, Method::DELETE, &client_path(id)).send().await.unwrap();
    assert_auth0_error(again, 404, "inexistent_client").await;
}

async fn bad_fields_are_refused_with_auth0s_error_body_and_change_nothing(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };

    let bad = [
        json!({"app_type": "spa"}),
        json!({"name": "", "app_type": "spa"}),
        json!({"name": "x".repeat(101), "app_type": "spa"}),
        json!({"name": "<script>", "app_type": "spa"}),
        json!({"name": "No type"}),
        json!({"name": "Bad type", "app_type": "desktop"}),
        json!({"name": "x", "app_type": "spa", "callbacks": ["/relative"]}),
        json!({"name": "x", "app_type": "spa", "callbacks": ["https://*.example.com/cb"]}),
        json!({"name": "x", "app_type": "spa", "callbacks": ["https://app.example.com/cb#fragment"]}),
        json!({"name": "x", "app_type": "spa", "callbacks": ["https://user:pw@app.example.com/cb"]}),
        json!({"name": "x", "app_type": "spa", "allowed_logout_urls": ["javascript"]}),
        json!({"name": "x", "app_type": "spa", "web_origins": ["https://app.example.com/path"]}),
        json!({"name": "x", "app_type": "spa", "grant_types": ["client_credentials"]}),
        json!({"name": "x", "app_type": "spa", "grant_types": ["password"]}),
        json!({"name": "x", "app_type": "spa", "token_endpoint_auth_method": "private_key_jwt"}),
        json!({"name": "x", "app_type": "spa", "jwt_configuration": {"alg": "HS256"}}),
        json!({"name": "x", "app_type": "spa", "refresh_token": {"leeway": 3600}}),
        json!({"name": "x", "app_type": "spa", "refresh_token": {"rotation_type": "sometimes"}}),
        json!({"name": "x", "app_type": "spa", "callbacks": "https://app.example.com/cb"}),
        json!({"name": "x", "app_type": "spa", "description": "d".repeat(141)}),
        json!({"name": "x", "app_type": "regular_web", "callbacks": ["javascript://x/%0aalert(1)"]}),
        json!({"name": "x", "app_type": "native", "allowed_logout_urls": ["data://text/html,x"]}),
        json!({"name": "x", "app_type": "spa", "callbacks": ["com.example.app:/oauth"]}),
        json!({"name": "x", "app_type": "spa", "callbacks": ["https://App.example.com/cb"]}),
        json!({"name": "x", "app_type": "spa", "web_origins": ["https://App.example.com"]}),
        json!({"name": "x", "app_type": "spa", "web_origins": ["https://app.example.com:443"]}),
        json!({"name": "x", "app_type": "spa", "web_origins": ["https://*.example.com"]}),
    ];
    for body in bad {
        let error = assert_auth0_error(create(&app, body.clone()).await, 400, "invalid_body").await;
        assert_eq!(error["error"], "Bad Request", "{body}");
    }
    let malformed = master(&app, Method::POST, paths::MGMT_CLIENTS)
        .header(header::CONTENT_TYPE, "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_auth0_error(malformed, 400, "invalid_body").await;
    assert_eq!(app.count("oauth_clients").await, 0);
}

async fn only_the_master_credentials_manage_clients(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let client = created(&app, json!({"name": "Kept", "app_type": "spa"})).await;
    let id = client["client_id"].as_str().unwrap();

    let bare = bare_client();
    let anonymous = bare.get(app.url(paths::MGMT_CLIENTS)).send().await.unwrap();
    assert_eq!(anonymous.headers()[header::WWW_AUTHENTICATE], "Basic realm=\"latchkey\"");
    assert_auth0_error(anonymous, 401, "missing_credentials").await;
    let wrong = bare.get(app.url(paths::MGMT_CLIENTS)).basic_auth(MASTER_USER, Some("wrong-password")).send().await;
    assert_auth0_error(wrong.unwrap(), 401, "invalid_credentials").await;
    let deleted = bare.delete(app.url(&client_path(id))).basic_auth("root", Some(MASTER_PASSWORD)).send().await;
    assert_auth0_error(deleted.unwrap(), 401, "invalid_credentials").await;
    // A signed-in user is not a manager either.
    assert_eq!(app.sign_up("someone@example.com").await.status(), 200);
    let with_session = app.client.delete(app.url(&client_path(id))).send().await.unwrap();
    assert_auth0_error(with_session, 401, "missing_credentials").await;
    assert_eq!(app.count("oauth_clients").await, 1);

    // Without master credentials configured the API is off.
    let Some(unconfigured) = spawn_app(backend).await else { return };
    let response = master(&unconfigured, Method::GET, paths::MGMT_CLIENTS).send().await.unwrap();
    assert_auth0_error(response, 503, "management_disabled").await;
}

/// The management API's identifier for the test apps' base URL.
fn management_audience(app: &TestApp) -> String {
    format!("{}/api/v2/", app.state.settings.base_url.trim_end_matches('/'))
}

async fn create_api(app: &TestApp, body: Value) -> Response {
    master(app, Method::POST, paths::MGMT_RESOURCE_SERVERS).json(&body).send().await.unwrap()
}

async fn created_api(app: &TestApp, body: Value) -> Value {
    let response = create_api(app, body.clone()).await;
    assert_eq!(response.status(), 201, "create {body}");
    response.json().await.unwrap()
}

fn api_path(id: &str) -> String {
    paths::MGMT_RESOURCE_SERVER.replace("{id}", id)
}

async fn create_grant(app: &TestApp, body: Value) -> Response {
    master(app, Method::POST, paths::MGMT_CLIENT_GRANTS).json(&body).send().await.unwrap()
}

async fn grants(app: &TestApp, query: &str) -> Value {
    let response = master(app, Method::GET, &format!("{}{query}", paths::MGMT_CLIENT_GRANTS)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn apis_are_created_with_auth0_defaults_and_their_identifier_is_unique(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };

    let api = created_api(
        &app,
        json!({"name": "Orders", "identifier": "https://api.example.com/orders",
            "scopes": [{"value": "read:orders", "description": "Read orders"}, {"value": "write:orders"}]}),
    )
    .await;
    assert!(api["id"].as_str().unwrap().starts_with("api_"), "{api}");
    assert_eq!(api["signing_alg"], "RS256");
    assert_eq!(api["token_lifetime"], 86_400);
    assert_eq!(api["allow_offline_access"], false);
    assert_eq!(api["skip_consent_for_verifiable_first_party_clients"], true);
    assert_eq!(api["scopes"][1], json!({"value": "write:orders", "description": ""}));

    let taken = create_api(&app, json!({"name": "Again", "identifier": "https://api.example.com/orders"})).await;
    assert_auth0_error(taken, 409, "resource_server_conflict").await;
    let system = create_api(&app, json!({"name": "Mine", "identifier": management_audience(&app)})).await;
    assert_auth0_error(system, 409, "resource_server_conflict").await;
    for bad in [
        json!({"identifier": "https://x"}),
        json!({"name": "No identifier"}),
        json!({"name": "x", "identifier": "has space"}),
        json!({"name": "x", "identifier": "https://y/\u{7f}"}),
        json!({"name": "x", "identifier": "https://y", "scopes": [{"value": "two words"}]}),
        json!({"name": "x", "identifier": "https://y", "scopes": [{"value": "a"}, {"value": "a"}]}),
        json!({"name": "x", "identifier": "https://y", "signing_alg": "HS256"}),
        json!({"name": "x", "identifier": "https://y", "token_lifetime": 10}),
    ] {
        assert_auth0_error(create_api(&app, bad).await, 400, "invalid_body").await;
    }
    assert_eq!(app.count("oauth_resource_servers").await, 1);

    let listed: Value =
        master(&app, Method::GET, paths::MGMT_RESOURCE_SERVERS).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed[0]["identifier"], management_audience(&app).as_str(), "the management API comes first");
    assert_eq!(listed[0]["is_system"], true);
    assert!(listed[0]["scopes"].as_array().unwrap().iter().any(|s| s["value"] == "create:client_grants"));
    assert_eq!(listed[1]["is_system"], false);
    let page: Value = master(&app, Method::GET, &format!("{}?include_totals=true", paths::MGMT_RESOURCE_SERVERS))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 2);
    assert_eq!(page["resource_servers"][1]["identifier"], "https://api.example.com/orders");
    let second: Value = master(&app, Method::GET, &format!("{}?per_page=1&page=1", paths::MGMT_RESOURCE_SERVERS))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(second[0]["identifier"], "https://api.example.com/orders", "paging counts the management API");

    // Auth0 accepts the identifier in place of the id.
    let by_identifier = api_path("https:%2F%2Fapi.example.com%2Forders");
    let read: Value = master(&app, Method::GET, &by_identifier).send().await.unwrap().json().await.unwrap();
    assert_eq!(read["id"], api["id"]);
    let system: Value =
        master(&app, Method::GET, &api_path("api_management")).send().await.unwrap().json().await.unwrap();
    assert_eq!(system["is_system"], true);
}

async fn an_api_changes_but_its_identifier_and_the_management_api_do_not(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let api = created_api(&app, json!({"name": "Orders", "identifier": "https://api.example.com/orders"})).await;
    let id = api["id"].as_str().unwrap();

    let response = master(&app, Method::PATCH, &api_path(id))
        .json(&json!({"name": "Orders v2", "allow_offline_access": true, "signing_alg": "ES256",
            "scopes": [{"value": "read:orders"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!((updated["name"].as_str(), updated["allow_offline_access"].as_bool()), (Some("Orders v2"), Some(true)));
    assert_eq!(updated["signing_alg"], "ES256");
    let read: Value = master(&app, Method::GET, &api_path(id)).send().await.unwrap().json().await.unwrap();
    assert_eq!(read["scopes"], json!([{"value": "read:orders", "description": ""}]));

    let moved = master(&app, Method::PATCH, &api_path(id)).json(&json!({"identifier": "https://other"})).send().await;
    assert_auth0_error(moved.unwrap(), 400, "invalid_body").await;
    let system = master(&app, Method::PATCH, &api_path("api_management")).json(&json!({"name": "x"})).send().await;
    assert_auth0_error(system.unwrap(), 400, "operation_not_supported").await;
    let system = master(&app, Method::DELETE, &api_path("api_management")).send().await.unwrap();
    assert_auth0_error(system, 400, "operation_not_supported").await;
    let missing = master(&app, Method::GET, &api_path("api_nope")).send().await.unwrap();
    assert_auth0_error(missing, 404, "inexistent_resource_server").await;
}

async fn client_grants_name_an_existing_client_and_api_and_only_scopes_it_defines(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let machine = created(&app, json!({"name": "Cron", "app_type": "non_interactive"})).await;
    let client_id = machine["client_id"].as_str().unwrap();
    created_api(
        &app,
        json!({"name": "Orders", "identifier": "https://api.example.com/orders",
            "scopes": [{"value": "read:orders"}, {"value": "write:orders"}]}),
    )
    .await;

    let response = create_grant(
        &app,
        json!({"client_id": client_id, "audience": "https://api.example.com/orders", "scope": ["read:orders"]}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let grant: Value = response.json().await.unwrap();
    let grant_id = grant["id"].as_str().unwrap();
    assert!(grant_id.starts_with("cgr_"));
    assert_eq!(grant["scope"], json!(["read:orders"]));
    // The management API is an audience too.
    let management = create_grant(
        &app,
        json!({"client_id": client_id, "audience": management_audience(&app), "scope": ["read:clients"]}),
    )
    .await;
    assert_eq!(management.status(), 201);

    let again =
        create_grant(&app, json!({"client_id": client_id, "audience": "https://api.example.com/orders", "scope": []}));
    assert_auth0_error(again.await, 409, "client_grant_conflict").await;
    let undefined = create_grant(
        &app,
        json!({"client_id": client_id, "audience": management_audience(&app), "scope": ["delete:everything"]}),
    );
    assert_auth0_error(undefined.await, 400, "invalid_body").await;
    let other = created(&app, json!({"name": "Other", "app_type": "non_interactive"})).await;
    let other_id = other["client_id"].as_str().unwrap();
    let undefined = create_grant(
        &app,
        json!({"client_id": other_id, "audience": "https://api.example.com/orders", "scope": ["delete:orders"]}),
    );
    assert_auth0_error(undefined.await, 400, "invalid_body").await;
    let no_client =
        create_grant(&app, json!({"client_id": "nope", "audience": "https://api.example.com/orders", "scope": []}));
    assert_auth0_error(no_client.await, 404, "inexistent_client").await;
    let no_api = create_grant(&app, json!({"client_id": other_id, "audience": "https://nowhere", "scope": []}));
    assert_auth0_error(no_api.await, 404, "inexistent_resource_server").await;
    assert_eq!(app.count("oauth_client_grants").await, 2);

    assert_eq!(grants(&app, "").await.as_array().unwrap().len(), 2);
    let of_client = grants(&app, &format!("?client_id={client_id}&audience=https://api.example.com/orders")).await;
    assert_eq!(of_client.as_array().unwrap().len(), 1);
    assert_eq!(of_client[0]["id"], grant_id);
    assert_eq!(grants(&app, &format!("?client_id={other_id}")).await, json!([]));
    let page = grants(&app, &format!("?client_id={client_id}&per_page=1&page=1&include_totals=true")).await;
    assert_eq!((page["total"].as_i64(), page["start"].as_i64(), page["limit"].as_i64()), (Some(2), Some(1), Some(1)));
    let first = grants(&app, &format!("?client_id={client_id}&per_page=1&page=0")).await;
    let mut audiences = [first[0]["audience"].clone(), page["client_grants"][0]["audience"].clone()];
    audiences.sort_by_key(|a| a.to_string());
    let mut expected = [json!("https://api.example.com/orders"), json!(management_audience(&app))];
    expected.sort_by_key(|a| a.to_string());
    assert_eq!(audiences, expected, "the two pages hold the two grants");

    let grant_path = paths::MGMT_CLIENT_GRANT.replace("{id}", grant_id);
    let widened = master(&app, Method::PATCH, &grant_path)
        .json(&json!({"scope": ["read:orders", "write:orders", "read:orders"]}))
        .send()
        .await;
    let widened: Value = widened.unwrap().json().await.unwrap();
    assert_eq!(widened["scope"], json!(["read:orders", "write:orders"]));
    let bad = master(&app, Method::PATCH, &grant_path).json(&json!({"scope": ["nope"]})).send().await.unwrap();
    assert_auth0_error(bad, 400, "invalid_body").await;
    assert_eq!(master(&app, Method::DELETE, &grant_path).send().await.unwrap().status(), 204);
    let gone = master(&app, Method::DELETE, &grant_path).send().await.unwrap();
    assert_auth0_error(gone, 404, "inexistent_client_grant").await;
}

async fn deleting_an_api_or_a_client_deletes_their_grants(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let a = created(&app, json!({"name": "A", "app_type": "non_interactive"})).await;
    let b = created(&app, json!({"name": "B", "app_type": "non_interactive"})).await;
    let api =
        created_api(&app, json!({"name": "Orders", "identifier": "https://orders", "scopes": [{"value": "r"}]})).await;
    for client in [&a, &b] {
        for audience in ["https://orders".to_owned(), management_audience(&app)] {
            let response =
                create_grant(&app, json!({"client_id": client["client_id"], "audience": audience, "scope": []})).await;
            assert_eq!(response.status(), 201);
        }
    }
    assert_eq!(app.count("oauth_client_grants").await, 4);

    let response = master(&app, Method::DELETE, &api_path(api["id"].as_str().unwrap())).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(grants(&app, "?audience=https://orders").await, json!([]));
    assert_eq!(app.count("oauth_client_grants").await, 2);

    let response = master(&app, Method::DELETE, &client_path(a["client_id"].as_str().unwrap())).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let left = grants(&app, "").await;
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["client_id"], b["client_id"]);
}

async fn concurrent_changes_to_a_client_lose_nothing_and_keep_its_secret_consistent(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let client = created(&app, json!({"name": "Busy", "app_type": "regular_web"})).await;
    let id = client["client_id"].as_str().unwrap();
    let consistent = |app: &TestApp| {
        let sql = format!(
            "SELECT COUNT(*) FROM oauth_clients WHERE client_id = '{id}' AND \
             ((token_endpoint_auth_method = 'none') = (secret_hash IS NULL))"
        );
        let db = app.state.db.clone();
        async move { latchkey::db_run!(&db, |pool| sqlx::query_scalar::<_, i64>(&sql).fetch_one(pool).await.unwrap()) }
    };
    for round in 0..8 {
        // Two updates of different fields at once: both land (or one is told to retry).
        let name = format!("Busy {round}");
        let description = format!("round {round}");
        let (a, b) =
            tokio::join!(patch(&app, id, json!({"name": name})), patch(&app, id, json!({"description": description})));
        let (a, b) = (a.status().as_u16(), b.status().as_u16());
        assert!([200, 409].contains(&a) && [200, 409].contains(&b), "{a} {b}");
        let now: Value = get_client(&app, id).await.json().await.unwrap();
        if a == 200 {
            assert_eq!(now["name"], name.as_str(), "round {round}: the name was lost");
        }
        if b == 200 {
            assert_eq!(now["description"], description.as_str(), "round {round}: the description was lost");
        }
        // Rotation racing a switch of the auth method never leaves a public client with a secret, nor a
        // confidential one without.
        let method = if round % 2 == 0 { "none" } else { "client_secret_post" };
        let _ = tokio::join!(rotate(&app, id), patch(&app, id, json!({"token_endpoint_auth_method": method})));
        assert_eq!(consistent(&app).await, 1, "round {round}: secret and auth method disagree");
    }
}
