//! The rest of the management API (issue 14): users in Auth0's shapes (create, list and search, patch,
//! delete, their sessions, refresh tokens and identities), blocking that ends everything a user holds on
//! every node, organizations and members, signing keys, each operation's scope, and the audit rows the
//! actions leave.

use std::time::{Duration, Instant};

use latchkey::paths;
use reqwest::{header, Method, Response};
use serde_json::{json, Value};

use crate::{
    bff::management_token,
    both_backends,
    helpers::*,
    oauth_flow::{oauth_client, orders_api, refresh, signed_in_spa, userinfo, EMAIL},
};

both_backends!(
    users_are_created_read_searched_paged_and_deleted,
    a_patch_changes_what_it_names_and_merges_metadata,
    bad_user_bodies_are_refused_with_auth0s_error_body_and_change_nothing,
    blocking_ends_every_session_key_and_token_and_unblocking_lets_the_user_back,
    deleting_a_user_refuses_everything_they_held,
    sessions_and_refresh_tokens_are_listed_and_revoked,
    organizations_and_members_in_auth0s_shapes,
    signing_keys_rotate_and_a_revoked_key_verifies_nothing,
    every_operation_is_refused_without_its_scope,
    management_actions_are_audited_with_their_actor,
    with_the_database_unreachable_an_answer_says_when_to_retry,
);

async fn spawn(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, with_master_credentials).await
}

fn user_path(id: &str) -> String {
    paths::MGMT_USER.replace("{id}", id)
}

async fn call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Response {
    let request = master(app, method, path);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().await.unwrap()
}

async fn ok(app: &TestApp, method: Method, path: &str, body: Option<Value>, status: u16) -> Value {
    let response = call(app, method.clone(), path, body).await;
    assert_eq!(response.status(), status, "{method} {path}");
    let text = response.text().await.unwrap();
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

async fn create_user(app: &TestApp, email: &str, extra: Value) -> Value {
    let mut body = json!({"connection": "Username-Password-Authentication", "email": email, "password": PASSWORD});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    ok(app, Method::POST, paths::MGMT_USERS, Some(body), 201).await
}

async fn auth0_error(response: Response, status: u16, code: &str) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["statusCode"], status, "{body}");
    assert_eq!(body["errorCode"], code, "{body}");
}

async fn users_are_created_read_searched_paged_and_deleted(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let grace = create_user(&app, "Grace@Example.com", json!({"name": "Grace", "email_verified": true})).await;
    app.clock.advance(Duration::from_millis(5));
    assert!(grace["user_id"].as_str().unwrap().starts_with("usr_"), "{grace}");
    assert_eq!(grace["email"], "grace@example.com", "emails are normalised");
    assert_eq!(grace["email_verified"], true);
    assert_eq!(grace["blocked"], false);
    assert_eq!(
        grace["identities"],
        json!([{"connection": "Username-Password-Authentication", "provider": "auth0",
        "user_id": grace["user_id"], "isSocial": false}])
    );
    let ada = create_user(&app, "ada@example.com", json!({})).await;
    assert_eq!(ada["name"], "ada", "the name defaults to the email's local part");
    // The user signs in with the password set here.
    assert_eq!(app.sign_in("grace@example.com", PASSWORD).await.status(), 200);

    let got = ok(&app, Method::GET, &user_path(grace["user_id"].as_str().unwrap()), None, 200).await;
    assert_eq!(got["name"], "Grace");
    for i in 0..3 {
        app.clock.advance(Duration::from_millis(5));
        create_user(&app, &format!("user{i}@example.com"), json!({})).await;
    }
    let all =
        ok(&app, Method::GET, &format!("{}?include_totals=true&per_page=2&page=1", paths::MGMT_USERS), None, 200).await;
    assert_eq!((all["total"].as_i64(), all["start"].as_i64(), all["limit"].as_i64()), (Some(5), Some(2), Some(2)));
    assert_eq!(all["users"].as_array().unwrap().len(), 2);
    assert_eq!(all["length"], 2);
    let bare = ok(&app, Method::GET, &format!("{}?sort=created_at:1", paths::MGMT_USERS), None, 200).await;
    assert_eq!(bare.as_array().unwrap().len(), 5);
    assert_eq!(bare[0]["user_id"], grace["user_id"], "oldest first");

    let by_q = ok(
        &app,
        Method::GET,
        &format!("{}?q=email:%22ADA@example.com%22&search_engine=v3", paths::MGMT_USERS),
        None,
        200,
    )
    .await;
    assert_eq!(by_q.as_array().unwrap().len(), 1);
    assert_eq!(by_q[0]["user_id"], ada["user_id"]);
    let prefix = ok(&app, Method::GET, &format!("{}?q=email:user*", paths::MGMT_USERS), None, 200).await;
    assert_eq!(prefix.as_array().unwrap().len(), 3);
    let underscore = ok(&app, Method::GET, &format!("{}?q=email:user_*", paths::MGMT_USERS), None, 200).await;
    assert_eq!(underscore.as_array().unwrap().len(), 0, "LIKE wildcards in the prefix match themselves only");
    let by_email =
        ok(&app, Method::GET, &format!("{}?email=ada@example.com", paths::MGMT_USERS_BY_EMAIL), None, 200).await;
    assert_eq!(by_email[0]["user_id"], ada["user_id"]);
    auth0_error(
        call(&app, Method::GET, &format!("{}?q=name:ada", paths::MGMT_USERS), None).await,
        400,
        "invalid_query_string",
    )
    .await;

    let id = ada["user_id"].as_str().unwrap();
    assert_eq!(call(&app, Method::DELETE, &user_path(id), None).await.status(), 204);
    auth0_error(call(&app, Method::GET, &user_path(id), None).await, 404, "inexistent_user").await;
    auth0_error(call(&app, Method::DELETE, &user_path(id), None).await, 404, "inexistent_user").await;
    assert_eq!(app.count("users").await, 4);
    assert_eq!(app.count("accounts").await, 4, "the deleted user's account went with it");
}

async fn a_patch_changes_what_it_names_and_merges_metadata(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let user = create_user(
        &app,
        "grace@example.com",
        json!({"app_metadata": {"plan": "pro", "seats": 3},
        "user_metadata": {"theme": "light"}, "picture": "https://img.example/g.png"}),
    )
    .await;
    let path = user_path(user["user_id"].as_str().unwrap());
    let patched = ok(&app, Method::PATCH, &path,
        Some(json!({"name": "Rear Admiral Hopper", "email_verified": true, "app_metadata": {"plan": null, "team": "navy"},
            "user_metadata": {"theme": "dark"}})), 200)
    .await;
    assert_eq!(patched["name"], "Rear Admiral Hopper");
    assert_eq!(patched["email_verified"], true);
    assert_eq!(patched["app_metadata"], json!({"seats": 3, "team": "navy"}), "merged key by key, null removes");
    assert_eq!(patched["user_metadata"], json!({"theme": "dark"}));
    assert_eq!(patched["picture"], "https://img.example/g.png", "left as it was");
    let cleared = ok(&app, Method::PATCH, &path, Some(json!({"app_metadata": {}, "picture": null})), 200).await;
    assert_eq!(cleared["app_metadata"], json!({}), "{{}} empties it");
    assert_eq!(cleared["picture"], Value::Null);
    let moved = ok(&app, Method::PATCH, &path, Some(json!({"email": "Hopper@Navy.mil"})), 200).await;
    assert_eq!(moved["email"], "hopper@navy.mil");
    assert_eq!(app.sign_in("hopper@navy.mil", PASSWORD).await.status(), 200, "signs in with the new email");
    assert_eq!(ok(&app, Method::GET, &path, None, 200).await["name"], "Rear Admiral Hopper");
}

async fn bad_user_bodies_are_refused_with_auth0s_error_body_and_change_nothing(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let user = create_user(&app, "grace@example.com", json!({})).await;
    let post = |body: Value| call(&app, Method::POST, paths::MGMT_USERS, Some(body));
    auth0_error(post(json!({"email": "grace@example.com", "password": PASSWORD})).await, 409, "user_exists").await;
    auth0_error(post(json!({"email": "a@example.com", "password": "short"})).await, 400, "password_strength_error")
        .await;
    auth0_error(post(json!({"email": "not an email", "password": PASSWORD})).await, 400, "invalid_body").await;
    auth0_error(
        post(json!({"email": "b@example.com", "password": PASSWORD, "role": "admin"})).await,
        400,
        "invalid_body",
    )
    .await;
    auth0_error(
        post(json!({"email": "c@example.com", "password": PASSWORD, "connection": "google-oauth2"})).await,
        400,
        "inexistent_connection",
    )
    .await;
    let huge = json!({"blob": "x".repeat(17 * 1024)});
    auth0_error(
        post(json!({"email": "d@example.com", "password": PASSWORD, "app_metadata": huge})).await,
        400,
        "invalid_body",
    )
    .await;
    assert_eq!(app.count("users").await, 1, "nothing was created");

    let other = create_user(&app, "ada@example.com", json!({})).await;
    let path = user_path(user["user_id"].as_str().unwrap());
    auth0_error(call(&app, Method::PATCH, &path, Some(json!({"email": "ada@example.com"}))).await, 409, "user_exists")
        .await;
    auth0_error(call(&app, Method::PATCH, &path, Some(json!({"password": PASSWORD}))).await, 400, "invalid_body").await;
    auth0_error(call(&app, Method::PATCH, &path, Some(json!({"blocked": "yes"}))).await, 400, "invalid_body").await;
    auth0_error(
        call(&app, Method::PATCH, &user_path("usr_nope"), Some(json!({"name": "x"}))).await,
        404,
        "inexistent_user",
    )
    .await;
    let unchanged = ok(&app, Method::GET, &path, None, 200).await;
    assert_eq!(unchanged["email"], "grace@example.com");
    assert_eq!(unchanged["blocked"], false);
    assert_ne!(other["user_id"], unchanged["user_id"]);
}

/// A user holding a cached session cookie, an API key, an OAuth refresh token and an access token.
struct Holder {
    user_id: String,
    cookies: String,
    api_key: String,
    client_id: String,
    refresh_token: String,
    access_token: String,
}

async fn holder(app: &TestApp) -> Holder {
    orders_api(app).await;
    let (client_id, tokens) = signed_in_spa(app, json!({})).await;
    let signed_in = app.sign_in(EMAIL, PASSWORD).await;
    assert_eq!(signed_in.status(), 200);
    let cookies = cookie_header(&signed_in);
    let created: Value = bare_client()
        .post(app.url(paths::API_KEY_CREATE))
        .header(header::COOKIE, &cookies)
        .header(header::ORIGIN, ORIGIN)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let users = ok(app, Method::GET, &format!("{}?email={EMAIL}", paths::MGMT_USERS_BY_EMAIL), None, 200).await;
    Holder {
        user_id: users[0]["user_id"].as_str().unwrap().to_owned(),
        cookies,
        api_key: created["key"].as_str().unwrap_or_else(|| panic!("{created}")).to_owned(),
        client_id,
        refresh_token: tokens["refresh_token"].as_str().unwrap().to_owned(),
        access_token: tokens["access_token"].as_str().unwrap().to_owned(),
    }
}

/// Whether the holder's session cookie, API key and access token are accepted on `app`.
async fn accepted(app: &TestApp, holder: &Holder) -> (bool, bool, bool) {
    let client = bare_client();
    let session = client.get(app.url(paths::GET_SESSION)).header(header::COOKIE, &holder.cookies).send().await.unwrap();
    let session = session.text().await.unwrap() != "null";
    let key = client.get(app.url(paths::AUTH_CHECK)).header("x-api-key", &holder.api_key).send().await.unwrap();
    let access = userinfo(app, &holder.access_token).await.status() == 200;
    (session, key.status() == 200, access)
}

async fn refresh_accepted(app: &TestApp, holder: &Holder) -> bool {
    refresh(app, &holder.client_id, &holder.refresh_token).await.status() == 200
}

async fn blocking_ends_every_session_key_and_token_and_unblocking_lets_the_user_back(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let holder = holder(&app).await;
    assert_eq!(accepted(&app, &holder).await, (true, true, true), "all good before");

    let path = user_path(&holder.user_id);
    let blocked = ok(&app, Method::PATCH, &path, Some(json!({"blocked": true})), 200).await;
    assert_eq!(blocked["blocked"], true);

    assert_eq!(accepted(&app, &holder).await, (false, false, false), "everything refused at once");
    assert!(!refresh_accepted(&app, &holder).await, "the refresh token too");
    let signed_in = app.sign_in(EMAIL, PASSWORD).await;
    assert_eq!(signed_in.status(), 403);
    assert_eq!(signed_in.json::<Value>().await.unwrap()["code"], "BANNED_USER");
    let wrong = app.sign_in(EMAIL, "not the password at all").await;
    assert_eq!(wrong.status(), 401, "a wrong password does not learn that the user is blocked");

    app.clock.advance(Duration::from_secs(2));
    ok(&app, Method::PATCH, &path, Some(json!({"blocked": false})), 200).await;
    let again = app.sign_in(EMAIL, PASSWORD).await;
    assert_eq!(again.status(), 200, "unblocked: signs in again");
    let key = bare_client().get(app.url(paths::AUTH_CHECK)).header("x-api-key", &holder.api_key).send().await.unwrap();
    assert_eq!(key.status(), 200, "the API key was refused while blocked, not deleted");
    assert!(!refresh_accepted(&app, &holder).await, "revoked refresh tokens stay revoked");
    assert_eq!(userinfo(&app, &holder.access_token).await.status(), 401, "tokens issued before the block stay refused");
}

async fn deleting_a_user_refuses_everything_they_held(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let holder = holder(&app).await;
    assert_eq!(call(&app, Method::DELETE, &user_path(&holder.user_id), None).await.status(), 204);
    assert_eq!(accepted(&app, &holder).await, (false, false, false));
    assert!(!refresh_accepted(&app, &holder).await);
    assert_eq!(app.count("sessions").await, 0);
    assert_eq!(app.count("api_keys").await, 0);
    assert_eq!(app.sign_in(EMAIL, PASSWORD).await.status(), 401);
}

/// Two nodes on one PostgreSQL: blocking on one refuses the user's cached session, API key, access token
/// and refresh token on the other within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn a_blocked_user_is_refused_on_a_second_node_within_a_second() {
    refused_on_a_second_node_within_a_second(Method::PATCH, Some(json!({"blocked": true})), 200).await;
}

/// The same for a deleted user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn a_deleted_user_is_refused_on_a_second_node_within_a_second() {
    refused_on_a_second_node_within_a_second(Method::DELETE, None, 204).await;
}

/// Acts on the holder through node A's management API (`method` on the user), then waits for node B —
/// which has seen and cached every credential — to refuse them all.
async fn refused_on_a_second_node_within_a_second(method: Method, body: Option<Value>, status: u16) {
    let Some(db) = PgDatabase::create().await else { return };
    let url = db.url.clone();
    let node_a = spawn_app_on(TestDb::Postgres(db), with_master_credentials).await;
    let node_b = spawn_node(&url, with_master_credentials).await;
    let holder = holder(&node_a).await;
    assert_eq!(accepted(&node_b, &holder).await, (true, true, true));

    let acted = call(&node_a, method, &user_path(&holder.user_id), body).await;
    assert_eq!(acted.status(), status);
    let at = Instant::now();
    loop {
        let now = accepted(&node_b, &holder).await;
        if now == (false, false, false) {
            break;
        }
        assert!(at.elapsed() < Duration::from_secs(1), "node B still accepts {now:?} after {:?}", at.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!refresh_accepted(&node_b, &holder).await, "the refresh token on node B");
}

async fn sessions_and_refresh_tokens_are_listed_and_revoked(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let holder = holder(&app).await;
    let sessions_path = paths::MGMT_USER_SESSIONS.replace("{id}", &holder.user_id);
    let sessions = ok(&app, Method::GET, &sessions_path, None, 200).await;
    let list = sessions["sessions"].as_array().unwrap();
    // The sign-up's, the login page's (OAuth) and the JSON sign-in's.
    assert_eq!(list.len(), 3, "{sessions}");
    assert!(sessions.get("next").is_none());
    assert_eq!(list[0]["user_id"], holder.user_id);
    let paged = ok(&app, Method::GET, &format!("{sessions_path}?take=2"), None, 200).await;
    assert_eq!(paged["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(paged["next"], "2");
    let rest = ok(&app, Method::GET, &format!("{sessions_path}?take=2&from=2"), None, 200).await;
    assert_eq!(rest["sessions"].as_array().unwrap().len(), 1);

    let one = list[0]["id"].as_str().unwrap();
    let session_path = paths::MGMT_SESSION.replace("{id}", one);
    assert_eq!(ok(&app, Method::GET, &session_path, None, 200).await["id"], one);
    assert_eq!(call(&app, Method::DELETE, &session_path, None).await.status(), 200);
    auth0_error(call(&app, Method::GET, &session_path, None).await, 404, "inexistent_session").await;
    assert_eq!(call(&app, Method::DELETE, &sessions_path, None).await.status(), 202);
    assert_eq!(ok(&app, Method::GET, &sessions_path, None, 200).await["sessions"], json!([]));
    let session = bare_client().get(app.url(paths::GET_SESSION)).header(header::COOKIE, &holder.cookies).send().await;
    assert_eq!(session.unwrap().text().await.unwrap(), "null", "the cached cookie is refused");

    let tokens_path = paths::MGMT_USER_REFRESH_TOKENS.replace("{id}", &holder.user_id);
    let tokens = ok(&app, Method::GET, &tokens_path, None, 200).await;
    let family = &tokens["tokens"][0];
    assert_eq!(family["client_id"], holder.client_id, "{tokens}");
    assert_eq!(family["resource_servers"][0]["scopes"], "openid profile email offline_access");
    let family_path = paths::MGMT_REFRESH_TOKEN.replace("{id}", family["id"].as_str().unwrap());
    assert_eq!(ok(&app, Method::GET, &family_path, None, 200).await["id"], family["id"]);
    assert_eq!(call(&app, Method::DELETE, &family_path, None).await.status(), 202);
    assert!(!refresh_accepted(&app, &holder).await);
    assert_eq!(userinfo(&app, &holder.access_token).await.status(), 401, "its access tokens with it");
    auth0_error(call(&app, Method::GET, &family_path, None).await, 404, "inexistent_refresh_token").await;
    assert_eq!(call(&app, Method::DELETE, &tokens_path, None).await.status(), 202);
    assert_eq!(ok(&app, Method::GET, &tokens_path, None, 200).await["tokens"], json!([]));

    let identity = paths::MGMT_USER_IDENTITY
        .replace("{id}", &holder.user_id)
        .replace("{provider}", "auth0")
        .replace("{user_id}", &holder.user_id);
    auth0_error(call(&app, Method::DELETE, &identity, None).await, 400, "last_identity").await;
    let missing = identity.replace("/auth0/", "/google/");
    auth0_error(call(&app, Method::DELETE, &missing, None).await, 404, "inexistent_identity").await;
}

async fn organizations_and_members_in_auth0s_shapes(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let org = ok(
        &app,
        Method::POST,
        paths::MGMT_ORGANIZATIONS,
        Some(json!({"name": "navy", "display_name": "US Navy", "metadata": {"tier": "gold"}})),
        201,
    )
    .await;
    assert!(org["id"].as_str().unwrap().starts_with("org_"));
    assert_eq!(
        (&org["name"], &org["display_name"], &org["metadata"]),
        (&json!("navy"), &json!("US Navy"), &json!({"tier": "gold"}))
    );
    auth0_error(
        call(&app, Method::POST, paths::MGMT_ORGANIZATIONS, Some(json!({"name": "navy"}))).await,
        409,
        "organization_conflict",
    )
    .await;
    auth0_error(
        call(&app, Method::POST, paths::MGMT_ORGANIZATIONS, Some(json!({"name": "Not A Slug"}))).await,
        400,
        "invalid_body",
    )
    .await;
    app.clock.advance(Duration::from_millis(5));
    ok(&app, Method::POST, paths::MGMT_ORGANIZATIONS, Some(json!({"name": "army"})), 201).await;

    let bare = ok(&app, Method::GET, paths::MGMT_ORGANIZATIONS, None, 200).await;
    assert_eq!(bare.as_array().unwrap().len(), 2);
    let totals =
        ok(&app, Method::GET, &format!("{}?include_totals=true&per_page=1", paths::MGMT_ORGANIZATIONS), None, 200)
            .await;
    assert_eq!((totals["total"].as_i64(), totals["organizations"].as_array().unwrap().len()), (Some(2), 1));
    let first = ok(&app, Method::GET, &format!("{}?take=1", paths::MGMT_ORGANIZATIONS), None, 200).await;
    assert_eq!((first["organizations"][0]["name"].as_str(), first["next"].as_str()), (Some("navy"), Some("1")));
    let second = ok(&app, Method::GET, &format!("{}?take=1&from=1", paths::MGMT_ORGANIZATIONS), None, 200).await;
    assert_eq!(second["organizations"][0]["name"], "army");
    assert!(second.get("next").is_none());

    let id = org["id"].as_str().unwrap();
    let org_path = paths::MGMT_ORGANIZATION.replace("{id}", id);
    assert_eq!(
        ok(&app, Method::GET, &paths::MGMT_ORGANIZATION_BY_NAME.replace("{name}", "navy"), None, 200).await["id"],
        id
    );
    let renamed =
        ok(&app, Method::PATCH, &org_path, Some(json!({"name": "us-navy", "display_name": "United States Navy"})), 200)
            .await;
    assert_eq!((&renamed["name"], &renamed["display_name"]), (&json!("us-navy"), &json!("United States Navy")));

    // A member added here sees the organization through capability 2's own API.
    let grace = create_user(&app, "grace@example.com", json!({})).await;
    let grace_id = grace["user_id"].as_str().unwrap();
    let members_path = paths::MGMT_ORGANIZATION_MEMBERS.replace("{id}", id);
    assert_eq!(call(&app, Method::POST, &members_path, Some(json!({"members": [grace_id]}))).await.status(), 204);
    assert_eq!(
        call(&app, Method::POST, &members_path, Some(json!({"members": [grace_id]}))).await.status(),
        204,
        "adding a member twice is harmless"
    );
    auth0_error(
        call(&app, Method::POST, &members_path, Some(json!({"members": ["usr_nope"]}))).await,
        400,
        "invalid_body",
    )
    .await;
    let members = ok(&app, Method::GET, &members_path, None, 200).await;
    assert_eq!(
        members,
        json!([{"user_id": grace_id, "email": "grace@example.com", "name": "grace", "picture": null,
        "role": "member"}])
    );
    app.sign_in("grace@example.com", PASSWORD).await;
    let listed: Value = app.get(paths::ORG_LIST).await.json().await.unwrap();
    assert_eq!(listed[0]["slug"], "us-navy", "{listed}");
    let checkpoint = ok(&app, Method::GET, &format!("{members_path}?take=50&include_totals=true"), None, 200).await;
    assert_eq!(checkpoint["members"].as_array().unwrap().len(), 1);

    assert_eq!(call(&app, Method::DELETE, &members_path, Some(json!({"members": [grace_id]}))).await.status(), 204);
    assert_eq!(ok(&app, Method::GET, &members_path, None, 200).await, json!([]));
    let listed: Value = app.get(paths::ORG_LIST).await.json().await.unwrap();
    assert_eq!(listed, json!([]), "removed from capability 2's view too");

    assert_eq!(call(&app, Method::DELETE, &org_path, None).await.status(), 204);
    auth0_error(call(&app, Method::GET, &org_path, None).await, 404, "inexistent_organization").await;
}

async fn signing_keys_rotate_and_a_revoked_key_verifies_nothing(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let holder = holder(&app).await;
    let keys = ok(&app, Method::GET, paths::MGMT_SIGNING_KEYS, None, 200).await;
    let current =
        keys.as_array().unwrap().iter().find(|k| k["alg"] == "RS256" && k["current"] == true).unwrap().clone();
    let old_kid = current["kid"].as_str().unwrap();
    assert_eq!(kid_of(&holder.access_token), old_kid, "the access token is signed by the current RS256 key");
    assert_eq!(current["jwk"]["kid"], old_kid);

    let rotated = ok(&app, Method::POST, &format!("{}?alg=RS256", paths::MGMT_SIGNING_KEYS_ROTATE), None, 201).await;
    let new_kid = rotated["kid"].as_str().unwrap();
    assert_ne!(new_kid, old_kid);
    assert_eq!(rotated["alg"], "RS256");
    let old = ok(&app, Method::GET, &paths::MGMT_SIGNING_KEY.replace("{kid}", old_kid), None, 200).await;
    assert_eq!(
        (old["current"].as_bool(), old["previous"].as_bool(), old["revoked"].as_bool()),
        (Some(false), Some(true), Some(false))
    );
    assert_eq!(userinfo(&app, &holder.access_token).await.status(), 200, "rotation never invalidates a token");
    auth0_error(
        call(&app, Method::POST, &format!("{}?alg=HS256", paths::MGMT_SIGNING_KEYS_ROTATE), None).await,
        400,
        "invalid_query_string",
    )
    .await;

    let revoke = |kid: &str| {
        let path = paths::MGMT_SIGNING_KEY_REVOKE.replace("{kid}", kid);
        let app = &app;
        async move { call(app, Method::PUT, &path, None).await }
    };
    auth0_error(revoke(new_kid).await, 400, "current_key").await;
    auth0_error(revoke("key_nope").await, 404, "inexistent_signing_key").await;
    let revoked: Value = revoke(old_kid).await.json().await.unwrap();
    assert_eq!(revoked["revoked"], true, "{revoked}");
    assert_eq!(userinfo(&app, &holder.access_token).await.status(), 401, "a revoked key verifies nothing");
    let jwks = bare_client().get(app.url(paths::JWKS)).send().await.unwrap().text().await.unwrap();
    assert!(!jwks.contains(old_kid) && jwks.contains(new_kid), "{jwks}");
    let listed = ok(&app, Method::GET, paths::MGMT_SIGNING_KEYS, None, 200).await;
    assert!(listed.as_array().unwrap().iter().any(|k| k["kid"] == old_kid && k["revoked"] == true), "{listed}");
}

async fn every_operation_is_refused_without_its_scope(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let user = create_user(&app, "grace@example.com", json!({})).await;
    let user_id = user["user_id"].as_str().unwrap().to_owned();
    let org = ok(&app, Method::POST, paths::MGMT_ORGANIZATIONS, Some(json!({"name": "navy"})), 201).await;
    let org_id = org["id"].as_str().unwrap().to_owned();
    let u = |path: &str| path.replace("{id}", &user_id);
    let o = |path: &str| path.replace("{id}", &org_id);
    let operations: Vec<(Method, String, Option<Value>, &str)> = vec![
        (
            Method::POST,
            paths::MGMT_USERS.into(),
            Some(json!({"email": "x@example.com", "password": PASSWORD})),
            "create:users",
        ),
        (Method::GET, paths::MGMT_USERS.into(), None, "read:users"),
        (Method::GET, format!("{}?email=grace@example.com", paths::MGMT_USERS_BY_EMAIL), None, "read:users"),
        (Method::GET, u(paths::MGMT_USER), None, "read:users"),
        (Method::PATCH, u(paths::MGMT_USER), Some(json!({"name": "G"})), "update:users"),
        (
            Method::DELETE,
            u(paths::MGMT_USER_IDENTITY).replace("{provider}", "auth0").replace("{user_id}", &user_id),
            None,
            "update:users",
        ),
        (Method::GET, u(paths::MGMT_USER_SESSIONS), None, "read:sessions"),
        (Method::DELETE, u(paths::MGMT_USER_SESSIONS), None, "delete:sessions"),
        (Method::GET, paths::MGMT_SESSION.replace("{id}", "ses_x"), None, "read:sessions"),
        (Method::DELETE, paths::MGMT_SESSION.replace("{id}", "ses_x"), None, "delete:sessions"),
        (Method::GET, u(paths::MGMT_USER_REFRESH_TOKENS), None, "read:refresh_tokens"),
        (Method::DELETE, u(paths::MGMT_USER_REFRESH_TOKENS), None, "delete:refresh_tokens"),
        (Method::GET, paths::MGMT_REFRESH_TOKEN.replace("{id}", "grt_x"), None, "read:refresh_tokens"),
        (Method::DELETE, paths::MGMT_REFRESH_TOKEN.replace("{id}", "grt_x"), None, "delete:refresh_tokens"),
        (Method::POST, paths::MGMT_ORGANIZATIONS.into(), Some(json!({"name": "army"})), "create:organizations"),
        (Method::GET, paths::MGMT_ORGANIZATIONS.into(), None, "read:organizations"),
        (Method::GET, o(paths::MGMT_ORGANIZATION), None, "read:organizations"),
        (Method::GET, paths::MGMT_ORGANIZATION_BY_NAME.replace("{name}", "navy"), None, "read:organizations"),
        (Method::PATCH, o(paths::MGMT_ORGANIZATION), Some(json!({"display_name": "Navy"})), "update:organizations"),
        (Method::GET, o(paths::MGMT_ORGANIZATION_MEMBERS), None, "read:organization_members"),
        (
            Method::POST,
            o(paths::MGMT_ORGANIZATION_MEMBERS),
            Some(json!({"members": [user_id]})),
            "create:organization_members",
        ),
        (
            Method::DELETE,
            o(paths::MGMT_ORGANIZATION_MEMBERS),
            Some(json!({"members": [user_id]})),
            "delete:organization_members",
        ),
        (Method::GET, paths::MGMT_SIGNING_KEYS.into(), None, "read:signing_keys"),
        (Method::GET, paths::MGMT_SIGNING_KEY.replace("{kid}", "key_x"), None, "read:signing_keys"),
        (Method::POST, paths::MGMT_SIGNING_KEYS_ROTATE.into(), None, "create:signing_keys"),
        (Method::PUT, paths::MGMT_SIGNING_KEY_REVOKE.replace("{kid}", "key_x"), None, "update:signing_keys"),
        (Method::DELETE, o(paths::MGMT_ORGANIZATION), None, "delete:organizations"),
        (Method::DELETE, u(paths::MGMT_USER), None, "delete:users"),
    ];
    // A token with every other scope, then one with just this operation's.
    let all: Vec<&str> = operations.iter().map(|(.., scope)| *scope).collect();
    for (method, path, body, scope) in &operations {
        let others: Vec<&str> = all.iter().copied().filter(|s| s != scope).collect();
        let without = management_token(&app, &others).await;
        let send = |token: String| {
            let request = bare_client().request(method.clone(), app.url(path)).bearer_auth(token);
            match body {
                Some(body) => request.json(body),
                None => request,
            }
            .send()
        };
        let refused = send(without).await.unwrap();
        assert_eq!(refused.status(), 403, "{method} {path} without {scope}");
        assert_eq!(refused.json::<Value>().await.unwrap()["errorCode"], "insufficient_scope");
        let with = management_token(&app, &[scope]).await;
        let answer = send(with).await.unwrap();
        assert!(answer.status() != 403 && answer.status() != 401, "{method} {path} with {scope}: {}", answer.status());
    }
}

async fn management_actions_are_audited_with_their_actor(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let user = create_user(&app, "grace@example.com", json!({"password": "a long secret passphrase"})).await;
    let id = user["user_id"].as_str().unwrap();
    app.clock.advance(Duration::from_millis(5));
    ok(&app, Method::PATCH, &user_path(id), Some(json!({"blocked": true})), 200).await;
    app.clock.advance(Duration::from_secs(2));
    let token = management_token(&app, &["update:users", "read:logs"]).await;
    let unblocked = bare_client()
        .patch(app.url(&user_path(id)))
        .bearer_auth(&token)
        .json(&json!({"blocked": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(unblocked.status(), 200);
    app.state.audit.as_ref().unwrap().flush().await;
    let logs: Value = bare_client()
        .get(app.url(&format!("{}?q=type:sapi AND user_id:{id}&sort=date:1", paths::MGMT_LOGS)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["details"]["action"].as_str().unwrap(), l["actor_id"].as_str().unwrap()))
        .collect();
    let machine = jwt_part(&token, 1)["azp"].as_str().unwrap().to_owned();
    assert_eq!(actions, vec![("created", "master"), ("blocked", "master"), ("unblocked", machine.as_str())], "{logs}");
    assert!(!logs.to_string().contains("a long secret passphrase"), "no password in the log");
    assert_eq!(logs[0]["description"], "User created");
}

/// Auth0's Node SDK (`auth0`'s `ManagementClient`) against the management API: see
/// `tests/auth0-node/management.mjs`. Needs Node and `npm ci` in tests/auth0-node.
mod auth0s_node_sdk_manages_users_organizations_keys_and_logs {
    use crate::helpers::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(latchkey_node_tests), ignore = "needs Node: npm ci in tests/auth0-node, LATCHKEY_REQUIRE_NODE=1")]
    async fn sqlite() {
        super::auth0s_node_sdk_manages_users_organizations_keys_and_logs(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        any(not(latchkey_node_tests), not(latchkey_postgres_tests)),
        ignore = "needs Node and PostgreSQL: LATCHKEY_REQUIRE_NODE=1, LATCHKEY_TEST_POSTGRES_URL"
    )]
    async fn postgres() {
        super::auth0s_node_sdk_manages_users_organizations_keys_and_logs(Backend::Postgres).await
    }
}

async fn auth0s_node_sdk_manages_users_organizations_keys_and_logs(backend: Backend) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("auth0-node");
    let installed = dir.join("node_modules").join("auth0");
    let node = tokio::process::Command::new("node").arg("--version").output().await;
    if !node.is_ok_and(|o| o.status.success()) || !installed.is_dir() {
        let reason = "needs `node` and `npm ci` in tests/auth0-node";
        if std::env::var("LATCHKEY_REQUIRE_NODE").is_ok_and(|v| v == "1") {
            panic!("LATCHKEY_REQUIRE_NODE=1 but the Auth0 SDK test {reason}");
        }
        eprintln!("SKIPPED the Auth0 Node SDK test: {reason}");
        return;
    }
    let Some(app) = spawn(backend).await else { return };
    let machine = oauth_client(&app, "non_interactive", json!({"callbacks": []})).await;
    let scopes: Vec<&str> = latchkey::oauth::apis::MANAGEMENT_SCOPES.to_vec();
    crate::oauth_flow::mgmt(
        &app,
        paths::MGMT_CLIENT_GRANTS,
        json!({"client_id": machine["client_id"], "audience": format!("{BASE_URL}/api/v2/"), "scope": scopes}),
    )
    .await;
    let run = tokio::process::Command::new("node")
        .arg("management.mjs")
        .current_dir(&dir)
        .env("LATCHKEY_ADDRESS", &app.address)
        .env("LATCHKEY_AUDIENCE", format!("{BASE_URL}/api/v2/"))
        .env("LATCHKEY_CLIENT_ID", machine["client_id"].as_str().unwrap())
        .env("LATCHKEY_CLIENT_SECRET", machine["client_secret"].as_str().unwrap())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output =
        tokio::time::timeout(Duration::from_secs(120), run).await.expect("the SDK script finishes").expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "management.mjs failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("checks passed"), "{stdout}\n{stderr}");
}

/// A 503 the caller may retry keeps `Retry-After` in the management API's error shape too.
async fn with_the_database_unreachable_an_answer_says_when_to_retry(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    app.state.db.close().await;
    let response = call(&app, Method::GET, paths::MGMT_USERS, None).await;
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    auth0_error(response, 503, "database_unavailable").await;
}
