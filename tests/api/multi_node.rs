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
