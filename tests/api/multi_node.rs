//! Several nodes on one PostgreSQL: a revocation on one node reaches the others' cookie-cache guard
//! through LISTEN/NOTIFY within a second (PostgreSQL only; SQLite is single-node).

use std::time::{Duration, Instant};

use latchkey::paths;
use reqwest::header;
use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn a_sign_out_on_one_node_refuses_the_cached_cookie_on_another_within_a_second() {
    let Some(db) = PgDatabase::create().await else { return };
    let url = db.url.clone();
    let node_a = spawn_app_on(TestDb::Postgres(db), |_| {}).await;
    let node_b = spawn_node(&url, |_| {}).await;
    let cookies = cookie_header(&node_a.sign_up("alice@example.com").await);
    let client = bare_client();
    let get_session_on_a = || client.get(node_a.url(paths::GET_SESSION)).header(header::COOKIE, &cookies).send();
    assert_ne!(get_session_on_a().await.unwrap().text().await.unwrap(), "null");

    let signed_out = client
        .post(node_b.url(paths::SIGN_OUT))
        .header(header::COOKIE, &cookies)
        .header(header::ORIGIN, ORIGIN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();

    assert_eq!(signed_out.status(), 200);
    let revoked_at = Instant::now();
    loop {
        // The cookie cache is still valid for minutes: only the revoked-session set can refuse it.
        if get_session_on_a().await.unwrap().text().await.unwrap() == "null" {
            break;
        }
        assert!(revoked_at.elapsed() < Duration::from_secs(1), "node A still accepts the revoked session");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn a_node_started_after_a_revocation_learns_it_from_the_database() {
    let Some(db) = PgDatabase::create().await else { return };
    let url = db.url.clone();
    let node_a = spawn_app_on(TestDb::Postgres(db), |_| {}).await;
    let cookies = cookie_header(&node_a.sign_up("alice@example.com").await);
    node_a.post(paths::SIGN_OUT, &json!({})).await;
    node_a.sign_in("alice@example.com", PASSWORD).await;

    let node_b = spawn_node(&url, |_| {}).await;

    let answer =
        bare_client().get(node_b.url(paths::GET_SESSION)).header(header::COOKIE, &cookies).send().await.unwrap();
    assert_eq!(answer.text().await.unwrap(), "null");
    assert_eq!(node_b.state.sessions.revoked.len(), 1);
}

/// OAuth refresh families across nodes: the leeway answer is the same on both, and a family killed on
/// one node (reuse of an older token) is refused on the other within a second — its refresh tokens and
/// its access tokens, which the other node checks without a database read; a node started later learns
/// it from the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn a_refresh_family_killed_on_one_node_is_refused_on_another_within_a_second() {
    use crate::oauth_flow::{
        authorize_url, authorize_with_login, code_of, exchange, oauth_client, refresh, user, userinfo, VERIFIER,
    };
    let Some(db) = PgDatabase::create().await else { return };
    let url = db.url.clone();
    let node_a = spawn_app_on(TestDb::Postgres(db), with_master_credentials).await;
    let node_b = spawn_node(&url, with_master_credentials).await;
    let spa = oauth_client(&node_a, "spa", json!({})).await;
    let id = spa["client_id"].as_str().unwrap();
    user(&node_a).await;
    let (_, back) = authorize_with_login(&node_a, &authorize_url(&node_a, id, &[])).await;
    let tokens: serde_json::Value = exchange(&node_a, id, &code_of(&back), VERIFIER).await.json().await.unwrap();
    let t0 = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(&node_b, tokens["access_token"].as_str().unwrap()).await.status(), 200, "B verifies A's token");

    // Rotated on A; the previous token within the leeway on B gets the very same successor.
    let on_a: serde_json::Value = refresh(&node_a, id, &t0).await.json().await.unwrap();
    let t1 = on_a["refresh_token"].as_str().unwrap().to_owned();
    let on_b = refresh(&node_b, id, &t0).await;
    assert_eq!(on_b.status(), 200);
    let on_b: serde_json::Value = on_b.json().await.unwrap();
    assert_eq!(on_b["refresh_token"], t1.as_str(), "the same successor on both nodes");

    // Truly concurrent refreshes of one token on both nodes: all succeed, with one successor.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let url = if i % 2 == 0 { node_a.url(paths::TOKEN) } else { node_b.url(paths::TOKEN) };
        let (id, t1) = (id.to_owned(), t1.clone());
        tasks.push(tokio::spawn(async move {
            let form = [("grant_type", "refresh_token"), ("client_id", id.as_str()), ("refresh_token", t1.as_str())];
            let response = bare_client().post(url).form(&form).send().await.unwrap();
            assert_eq!(response.status(), 200, "parallel refreshes on two nodes never log a user out");
            response.json::<serde_json::Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned()
        }));
    }
    let mut successors = Vec::new();
    for task in tasks {
        successors.push(task.await.unwrap());
    }
    successors.dedup();
    assert_eq!(successors.len(), 1, "{successors:?}");
    let t1 = successors.remove(0);

    // Rotated again on B; the older token on A kills the family.
    let live: serde_json::Value = refresh(&node_b, id, &t1).await.json().await.unwrap();
    let access = live["access_token"].as_str().unwrap().to_owned();
    let t2 = live["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(&node_b, &access).await.status(), 200);
    assert_eq!(refresh(&node_a, id, &t0).await.status(), 400);
    let killed_at = Instant::now();
    loop {
        if userinfo(&node_b, &access).await.status() == 401 {
            break;
        }
        assert!(killed_at.elapsed() < Duration::from_secs(1), "node B still accepts the killed family's access token");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refresh(&node_b, id, &t2).await.status(), 400, "and its refresh tokens");
    let check = bare_client().get(node_b.url(paths::AUTH_CHECK)).bearer_auth(&access).send().await.unwrap();
    assert_eq!(check.status(), 401);

    let node_c = spawn_node(&url, |_| {}).await;
    assert_eq!(userinfo(&node_c, &access).await.status(), 401, "a node started later loads the revocation");
}

/// The OAuth configuration each node keeps in memory follows changes made on another node within a
/// second: a rotated client secret and a deleted client grant stop working everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn an_oauth_client_change_on_one_node_reaches_the_others_within_a_second() {
    use crate::oauth_flow::{mgmt, oauth_client, API};
    let Some(db) = PgDatabase::create().await else { return };
    let url = db.url.clone();
    let node_a = spawn_app_on(TestDb::Postgres(db), with_master_credentials).await;
    let node_b = spawn_node(&url, with_master_credentials).await;
    mgmt(
        &node_a,
        paths::MGMT_RESOURCE_SERVERS,
        json!({"name": "Orders", "identifier": API, "scopes": [{"value": "read:orders"}]}),
    )
    .await;
    let machine = oauth_client(&node_a, "non_interactive", json!({})).await;
    let id = machine["client_id"].as_str().unwrap().to_owned();
    let secret = machine["client_secret"].as_str().unwrap().to_owned();
    let grant =
        mgmt(&node_a, paths::MGMT_CLIENT_GRANTS, json!({"client_id": id, "audience": API, "scope": ["read:orders"]}))
            .await;
    let token_on_b = |secret: String| {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
            ("audience", API),
        ];
        bare_client().post(node_b.url(paths::TOKEN)).form(&form).send()
    };
    // Node B has the client, its secret hash and its grant in memory now.
    assert_eq!(token_on_b(secret.clone()).await.unwrap().status(), 200);

    let rotated = master(&node_a, reqwest::Method::POST, &format!("{}/{id}/rotate-secret", paths::MGMT_CLIENTS))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 200);
    let new_secret = rotated.json::<serde_json::Value>().await.unwrap()["client_secret"].as_str().unwrap().to_owned();
    let changed_at = Instant::now();
    while token_on_b(secret.clone()).await.unwrap().status() != 401 {
        assert!(changed_at.elapsed() < Duration::from_secs(1), "node B still takes the old secret");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(token_on_b(new_secret.clone()).await.unwrap().status(), 200);

    let grant_path = format!("{}/{}", paths::MGMT_CLIENT_GRANTS, grant["id"].as_str().unwrap());
    assert_eq!(master(&node_a, reqwest::Method::DELETE, &grant_path).send().await.unwrap().status(), 204);
    let changed_at = Instant::now();
    while token_on_b(new_secret.clone()).await.unwrap().status() != 403 {
        assert!(changed_at.elapsed() < Duration::from_secs(1), "node B still issues tokens for the deleted grant");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The token handler's vendor cache on several nodes: a key rotated on one node opens the new cookies on
/// another within a second, and a vendor deleted on one node is gone on the other within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn a_token_handler_vendor_change_on_one_node_reaches_the_others_within_a_second() {
    use crate::bff::{echo_upstream, latchkey_vendor, sign_in, SPA};
    let Some(db) = PgDatabase::create().await else { return };
    let url = db.url.clone();
    let node_a = spawn_app_on(TestDb::Postgres(db), with_master_credentials).await;
    let node_b = spawn_node(&url, with_master_credentials).await;
    crate::oauth_flow::user(&node_a).await;
    let api = json!({"name": "Orders", "identifier": crate::oauth_flow::API, "allow_offline_access": true});
    crate::oauth_flow::mgmt(&node_a, paths::MGMT_RESOURCE_SERVERS, api).await;
    latchkey_vendor(&node_a, "acme", &echo_upstream().await).await;
    let check_on_b = |jar: &crate::bff::Jar| {
        bare_client().get(node_b.url("/auth/acme/check")).header(header::COOKIE, jar.header()).send()
    };
    let (before, _) = sign_in(&node_a, "acme", SPA).await;
    // Node B has the vendor and its current key in memory now.
    assert_eq!(check_on_b(&before).await.unwrap().status(), 200);

    let rotated = master(&node_a, reqwest::Method::POST, "/management/vendors/acme/token-handler/rotate-key");
    assert_eq!(rotated.send().await.unwrap().status(), 200);
    let (after, _) = sign_in(&node_a, "acme", SPA).await;
    let changed_at = Instant::now();
    while check_on_b(&after).await.unwrap().status() != 200 {
        assert!(changed_at.elapsed() < Duration::from_secs(1), "node B does not know the new key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(check_on_b(&before).await.unwrap().status(), 200, "the retired key still opens its cookies");

    let deleted = master(&node_a, reqwest::Method::DELETE, "/management/vendors/acme/token-handler");
    assert_eq!(deleted.send().await.unwrap().status(), 204);
    let changed_at = Instant::now();
    while check_on_b(&after).await.unwrap().status() != 404 {
        assert!(changed_at.elapsed() < Duration::from_secs(1), "node B still serves the deleted vendor");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The per-email failure limit holds across nodes: failures made on two nodes add up, and both refuse the
/// email, even with the right password, until the window ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn sign_in_failures_on_two_nodes_add_up() {
    let Some(db) = PgDatabase::create().await else { return };
    let url = db.url.clone();
    let limit = |s: &mut latchkey::config::Settings| s.rate_limit.sign_in_failures_per_email = 4;
    let node_a = spawn_app_on(TestDb::Postgres(db), limit).await;
    let node_b = spawn_node(&url, limit).await;
    node_a.sign_up("alice@example.com").await;
    for node in [&node_a, &node_b, &node_a, &node_b] {
        assert_eq!(node.sign_in("alice@example.com", "wrong password!").await.status(), 401);
    }
    // Each node saw two failures, under the limit of four on its own.
    assert_eq!(node_a.sign_in("alice@example.com", PASSWORD).await.status(), 429);
    assert_eq!(node_b.sign_in("alice@example.com", PASSWORD).await.status(), 429);
    assert_eq!(node_b.sign_in("bob@example.com", "wrong password!").await.status(), 401, "another email is not locked");
}

/// A bearer session token remembered on one node is refused there within a second of a sign-out on
/// another, and shows an active organization set on another within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn a_remembered_bearer_token_follows_changes_made_on_another_node() {
    let Some(db) = PgDatabase::create().await else { return };
    let url = db.url.clone();
    let node_a = spawn_app_on(TestDb::Postgres(db), |_| {}).await;
    let node_b = spawn_node(&url, |_| {}).await;
    let signed_up: serde_json::Value = node_a.sign_up("alice@example.com").await.json().await.unwrap();
    let token = signed_up["token"].as_str().unwrap().to_owned();
    let client = bare_client();
    let session_on_b = || client.get(node_b.url(paths::GET_SESSION)).bearer_auth(&token).send();
    assert_ne!(session_on_b().await.unwrap().text().await.unwrap(), "null");
    assert_eq!(node_b.state.sessions.bearer.len(), 1);

    let org: serde_json::Value = client
        .post(node_a.url(paths::ORG_CREATE))
        .bearer_auth(&token)
        .header(header::ORIGIN, ORIGIN)
        .json(&json!({"name": "Acme", "slug": "acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let changed_at = Instant::now();
    loop {
        let answer: serde_json::Value = session_on_b().await.unwrap().json().await.unwrap();
        if answer["session"]["activeOrganizationId"] == org["id"] {
            break;
        }
        assert!(changed_at.elapsed() < Duration::from_secs(1), "node B still shows {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let signed_out = client
        .post(node_a.url(paths::SIGN_OUT))
        .bearer_auth(&token)
        .header(header::ORIGIN, ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 200);
    let revoked_at = Instant::now();
    loop {
        if session_on_b().await.unwrap().text().await.unwrap() == "null" {
            break;
        }
        assert!(revoked_at.elapsed() < Duration::from_secs(1), "node B still accepts the signed-out bearer token");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
