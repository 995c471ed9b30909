//! Sessions: get-session, the cookie cache, revocation, sliding expiry, expiry and cleanup, listing.

use std::time::Duration;

use latchkey::paths;
use reqwest::header;
use serde_json::{json, Value};

use crate::{both_backends, helpers::*};

const DAY: Duration = Duration::from_secs(86_400);

both_backends!(
    get_session_is_null_and_not_cached_when_signed_out,
    get_session_never_returns_the_raw_token,
    a_cached_session_check_reads_no_database,
    repeated_cached_checks_answer_what_the_database_answers_and_follow_session_changes,
    a_revoked_session_is_refused_at_once_despite_the_cookie_cache,
    sign_out_deletes_the_session_and_expires_the_cookies,
    a_session_older_than_update_age_slides_and_its_cookie_is_reissued,
    any_session_authenticated_endpoint_reissues_a_slid_session_cookie,
    sliding_never_extends_past_the_absolute_lifetime,
    an_expired_session_is_refused_and_deleted,
    the_cleanup_task_removes_expired_sessions,
    the_cleanup_removes_a_backlog_larger_than_a_batch_and_keeps_live_sessions,
    a_batched_delete_runs_statements_of_at_most_one_batch,
    list_sessions_shows_only_the_users_own_sessions,
    revoke_session_accepts_the_handle_or_a_raw_token_of_the_same_user_only,
    revoke_sessions_and_revoke_other_sessions,
    api_session_wraps_the_session_in_an_envelope,
    debug_session_exists_only_when_enabled,
    ip_address_and_user_agent_are_recorded,
    forwarded_for_is_used_only_from_a_trusted_proxy,
    a_session_token_works_as_a_bearer_credential,
    a_remembered_bearer_token_follows_sign_out_and_active_organization_changes,
    a_tampered_session_cookie_is_refused_and_cleared,
    remember_me_false_gives_a_one_day_browser_session_cookie,
);

async fn get_session_is_null_and_not_cached_when_signed_out(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };

    let response = app.get(paths::GET_SESSION).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(response.text().await.unwrap(), "null");
}

async fn get_session_never_returns_the_raw_token(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let token = app.sign_up("alice@example.com").await.json::<Value>().await.unwrap()["token"].clone();

    for path in [paths::GET_SESSION.to_owned(), format!("{}?disableCookieCache=true", paths::GET_SESSION)] {
        let response = app.get(&path).await;
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let text = response.text().await.unwrap();
        assert!(!text.contains(token.as_str().unwrap()));
        let body: Value = serde_json::from_str(&text).unwrap();
        let session = &body["session"];
        assert_eq!(session["token"], session["id"]);
        for field in
            ["id", "userId", "expiresAt", "ipAddress", "userAgent", "activeOrganizationId", "createdAt", "updatedAt"]
        {
            assert!(session.get(field).is_some(), "session.{field} missing");
        }
        assert_eq!(session["activeOrganizationId"], Value::Null);
        assert_eq!(session["expiresAt"], "2026-12-18T11:06:40.000Z");
    }
    let listed = app.get(paths::LIST_SESSIONS).await.text().await.unwrap();
    assert!(!listed.contains(token.as_str().unwrap()));
}

async fn a_cached_session_check_reads_no_database(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;
    // Remove the row behind the server's back (no revocation recorded): only a DB read would notice.
    app.execute("DELETE FROM sessions").await;

    let cached = app.get_session().await;
    let uncached = app.get(&format!("{}?disableCookieCache=true", paths::GET_SESSION)).await;

    assert_eq!(cached["user"]["email"], "alice@example.com");
    assert_eq!(uncached.text().await.unwrap(), "null");
}

async fn repeated_cached_checks_answer_what_the_database_answers_and_follow_session_changes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;
    let body = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        response.text().await.unwrap()
    };

    // The first check verifies and remembers the cookies; the next ones answer from the remembered entry
    // (its body rendered once): byte-for-byte the same, and what the database path answers.
    let first = body(app.get(paths::GET_SESSION).await).await;
    let second = body(app.get(paths::GET_SESSION).await).await;
    let third = body(app.get(paths::GET_SESSION).await).await;
    assert_eq!(first, second);
    assert_eq!(second, third);
    let from_db = body(app.get(&format!("{}?disableCookieCache=true", paths::GET_SESSION)).await).await;
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    assert_eq!(parse(&third), parse(&from_db));
    assert_eq!(parse(&third)["session"]["activeOrganizationId"], Value::Null);

    // A change to the session re-issues the cookie cache: the next checks show it, not the old body.
    let org: Value = app.post(paths::ORG_CREATE, &json!({"name": "Acme", "slug": "acme"})).await.json().await.unwrap();
    let response = app.post(paths::ORG_SET_ACTIVE, &json!({"organizationId": org["id"]})).await;
    assert_eq!(response.status(), 200);
    for _ in 0..3 {
        let text = body(app.get(paths::GET_SESSION).await).await;
        assert_eq!(parse(&text)["session"]["activeOrganizationId"], org["id"]);
    }
}

async fn a_revoked_session_is_refused_at_once_despite_the_cookie_cache(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let signed_up = app.sign_up("alice@example.com").await;
    let stolen_cookies = cookie_header(&signed_up);
    let other = bare_client();
    let check = |cookies: String| {
        let request = other.get(app.url(paths::GET_SESSION)).header(header::COOKIE, cookies);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    assert_ne!(check(stolen_cookies.clone()).await, "null");

    let response = app.post(paths::SIGN_OUT, &json!({})).await;

    assert_eq!(response.status(), 200);
    // Same session_data cookie, still inside its max-age: refused because the session is revoked.
    assert_eq!(check(stolen_cookies).await, "null");
}

async fn sign_out_deletes_the_session_and_expires_the_cookies(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;

    let response = app.post(paths::SIGN_OUT, &json!({})).await;

    assert_eq!(response.status(), 200);
    let cookies = set_cookies(&response);
    for name in ["latchkey.session_token", "latchkey.session_data"] {
        let cookie = cookies.iter().find(|c| c.starts_with(&format!("{name}="))).expect(name);
        assert!(cookie.contains("Max-Age=0"), "{cookie}");
    }
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"success": true}));
    assert_eq!(app.count("sessions").await, 0);
    assert_eq!(app.get_session().await, Value::Null);
}

async fn a_session_older_than_update_age_slides_and_its_cookie_is_reissued(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;
    let before = app.get_session().await;

    app.clock.advance(6 * DAY);
    let early = app.get(paths::GET_SESSION).await;
    assert!(cookie_pair(&set_cookies(&early), "latchkey.session_token").is_none(), "refreshed too early");
    let early: Value = early.json().await.unwrap();
    assert_eq!(early["session"]["expiresAt"], before["session"]["expiresAt"]);

    app.clock.advance(2 * DAY);
    let response = app.get(paths::GET_SESSION).await;

    let cookies = set_cookies(&response);
    let reissued = cookies.iter().find(|c| c.starts_with("latchkey.session_token=")).expect("cookie re-issued");
    assert!(reissued.contains("Max-Age=2592000"), "{reissued}");
    let after: Value = response.json().await.unwrap();
    // Signed up at 2026-11-18T11:06:40Z, refreshed 8 days later: now + 30 days.
    assert_eq!(after["session"]["expiresAt"], "2026-12-26T11:06:40.000Z");
    assert_eq!(after["session"]["id"], before["session"]["id"]);
}

async fn any_session_authenticated_endpoint_reissues_a_slid_session_cookie(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;
    let created = app.post(paths::ORG_CREATE, &serde_json::json!({"name": "Acme", "slug": "acme"})).await;
    assert_eq!(created.status(), 200);
    // set-active answers with its own fresh cache cookie: exactly one session_data, the handler's.
    let cookies = set_cookies(&created);
    assert_eq!(cookies.iter().filter(|c| c.starts_with("latchkey.session_data=")).count(), 1, "{cookies:?}");

    app.clock.advance(8 * DAY);
    let listed = app.get(paths::ORG_LIST).await;

    assert_eq!(listed.status(), 200);
    let cookies = set_cookies(&listed);
    let reissued = cookies.iter().find(|c| c.starts_with("latchkey.session_token=")).expect("cookie re-issued");
    assert!(reissued.contains("Max-Age=2592000"), "{reissued}");
    assert_eq!(cookies.iter().filter(|c| c.starts_with("latchkey.session_data=")).count(), 1, "{cookies:?}");
    // And an endpoint answering with its own cookie keeps only its own.
    app.clock.advance(8 * DAY);
    let activated = app.post(paths::ORG_SET_ACTIVE, &serde_json::json!({"organizationSlug": "acme"})).await;
    assert_eq!(activated.status(), 200);
    let cookies = set_cookies(&activated);
    assert_eq!(cookies.iter().filter(|c| c.starts_with("latchkey.session_data=")).count(), 1, "{cookies:?}");
    assert_eq!(cookies.iter().filter(|c| c.starts_with("latchkey.session_token=")).count(), 1, "{cookies:?}");
}

async fn sliding_never_extends_past_the_absolute_lifetime(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;

    // Use it every 8 days: it keeps sliding, but never past 90 days from sign-in.
    for _ in 0..11 {
        app.clock.advance(8 * DAY);
        let body = app.get_session().await;
        assert_ne!(body, Value::Null);
        let expires = body["session"]["expiresAt"].as_str().unwrap().to_owned();
        assert!(expires.as_str() <= "2027-02-16T11:06:40.000Z", "{expires}");
    }
    app.clock.advance(2 * DAY); // day 90
    assert_eq!(app.get_session().await, Value::Null);
}

async fn an_expired_session_is_refused_and_deleted(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;

    app.clock.advance(31 * DAY);
    let response = app.get(paths::GET_SESSION).await;

    let cookies = set_cookies(&response);
    assert!(cookies.iter().any(|c| c.starts_with("latchkey.session_token=;") && c.contains("Max-Age=0")));
    assert_eq!(response.text().await.unwrap(), "null");
    assert_eq!(app.count("sessions").await, 0);
    assert_eq!(app.get(paths::LIST_SESSIONS).await.status(), 401);
}

async fn the_cleanup_task_removes_expired_sessions(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;
    app.sign_up("bob@example.com").await;
    app.clock.advance(10 * DAY);
    app.sign_in("alice@example.com", PASSWORD).await;

    app.clock.advance(25 * DAY);
    let removed = app.state.run_maintenance().await.unwrap();

    assert_eq!(removed, 2);
    assert_eq!(app.count("sessions").await, 1);
}

async fn the_cleanup_removes_a_backlog_larger_than_a_batch_and_keeps_live_sessions(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;
    let now = app.clock.now();
    // 2.5 batches of sessions that expire within the hour, and as many revocation records, written directly
    // (thousands of sign-ins would take minutes of Argon2id); none is due yet, so the start-up
    // maintenance leaves them, and a day later all are.
    let rows = 2 * latchkey::storage::cleanup::BATCH + 500;
    app.execute(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
         INSERT INTO sessions (id, token_hash, user_id, expires_at, created_at, updated_at) \
         SELECT 'ses_old' || i, 'hash' || i, (SELECT id FROM users WHERE email = 'alice@example.com'), \
         {now} + 1000 + i, {now}, {now} FROM n"
    ))
    .await;
    app.execute(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
         INSERT INTO session_revocations (session_id, revoked_at) SELECT 'ses_gone' || i, {now} - i FROM n"
    ))
    .await;
    app.clock.advance(DAY);

    let removed = app.state.run_maintenance().await.unwrap();

    assert_eq!(removed, u64::try_from(rows).unwrap());
    assert_eq!(app.count("sessions").await, 1);
    assert_eq!(app.count("session_revocations").await, 0);
    assert_eq!(app.get_session().await["user"]["email"], "alice@example.com");
}

async fn a_batched_delete_runs_statements_of_at_most_one_batch(backend: Backend) {
    use latchkey::storage::cleanup::{delete_in_batches, BATCH};
    let Some(app) = spawn_app(backend).await else { return };
    let now = app.clock.now();
    // Recent events (the maintenance's own cleanup keeps them), all older than the bound given below.
    let rows = 2 * BATCH + 500;
    app.execute(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
         INSERT INTO cache_events (id, payload, at) SELECT 'evt_old' || i, '{{}}', {now} - i FROM n"
    ))
    .await;
    app.execute(&format!("INSERT INTO cache_events (id, payload, at) VALUES ('evt_new', '{{}}', {now} + 1)")).await;
    const SQL: &str =
        "DELETE FROM cache_events WHERE id IN (SELECT id FROM cache_events WHERE at < $1 ORDER BY at LIMIT $2)";

    let done = delete_in_batches(&app.state.db, "cache_events", SQL, now).await.unwrap();

    // Two full batches and the rest: three statements, none over a batch.
    assert_eq!((done.rows, done.batches), (u64::try_from(rows).unwrap(), 3));
    assert_eq!(app.count("cache_events").await, 1);
}

async fn list_sessions_shows_only_the_users_own_sessions(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;
    app.sign_in("alice@example.com", PASSWORD).await;
    let bob = new_client();
    bob.post(app.url(paths::SIGN_UP_EMAIL))
        .json(&json!({"name": "Bob", "email": "bob@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();

    let response = app.get(paths::LIST_SESSIONS).await;

    assert_eq!(response.status(), 200);
    let sessions: Vec<Value> = response.json().await.unwrap();
    assert_eq!(sessions.len(), 2);
    let user_id = app.get_session().await["user"]["id"].clone();
    assert!(sessions.iter().all(|s| s["userId"] == user_id));
    assert_eq!(bare_client().get(app.url(paths::LIST_SESSIONS)).send().await.unwrap().status(), 401);
}

async fn revoke_session_accepts_the_handle_or_a_raw_token_of_the_same_user_only(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;
    let second = app.sign_in("alice@example.com", PASSWORD).await.json::<Value>().await.unwrap();
    let third_client = new_client();
    let third = third_client
        .post(app.url(paths::SIGN_IN_EMAIL))
        .json(&json!({"email": "alice@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let bob = new_client();
    let bob_token = bob
        .post(app.url(paths::SIGN_UP_EMAIL))
        .json(&json!({"name": "Bob", "email": "bob@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["token"]
        .clone();
    let current = app.get_session().await["session"]["id"].as_str().unwrap().to_owned();
    let third_id = third_client.get(app.url(paths::GET_SESSION)).send().await.unwrap().json::<Value>().await.unwrap()
        ["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The first session (from sign-up) is the one that is neither current nor the third client's.
    let first_handle = app
        .get(paths::LIST_SESSIONS)
        .await
        .json::<Vec<Value>>()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s["token"].as_str().unwrap().to_owned())
        .find(|handle| *handle != current && *handle != third_id)
        .unwrap();

    let by_handle = app.post(paths::REVOKE_SESSION, &json!({"token": first_handle})).await;
    let by_raw = app.post(paths::REVOKE_SESSION, &json!({"token": third["token"]})).await;
    let other_users = app.post(paths::REVOKE_SESSION, &json!({"token": bob_token})).await;
    let unknown = app.post(paths::REVOKE_SESSION, &json!({"token": "ses_doesnotexist"})).await;

    assert_eq!(by_handle.status(), 200);
    assert_eq!(by_handle.json::<Value>().await.unwrap(), json!({"status": true}));
    assert_eq!(by_raw.status(), 200);
    assert_eq!(other_users.status(), 404);
    assert_eq!(unknown.status(), 404);
    // Alice keeps only her current session (the second sign-in); Bob's is untouched.
    assert_eq!(app.count("sessions").await, 2);
    assert_eq!(app.get_session().await["session"]["id"], current.as_str());
    assert_eq!(third_client.get(app.url(paths::GET_SESSION)).send().await.unwrap().text().await.unwrap(), "null");
    assert_ne!(bob.get(app.url(paths::GET_SESSION)).send().await.unwrap().text().await.unwrap(), "null");
    assert!(second["token"].is_string());
}

async fn revoke_sessions_and_revoke_other_sessions(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;
    let other = new_client();
    let sign_in = || {
        other
            .post(app.url(paths::SIGN_IN_EMAIL))
            .json(&json!({"email": "alice@example.com", "password": PASSWORD}))
            .send()
    };
    sign_in().await.unwrap();
    sign_in().await.unwrap();
    assert_eq!(app.count("sessions").await, 3);

    let response = app.post(paths::REVOKE_OTHER_SESSIONS, &json!({})).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"status": true}));
    assert_eq!(app.count("sessions").await, 1);
    assert_ne!(app.get_session().await, Value::Null);
    assert_eq!(other.get(app.url(paths::GET_SESSION)).send().await.unwrap().text().await.unwrap(), "null");

    sign_in().await.unwrap();
    let response = app.post(paths::REVOKE_SESSIONS, &json!({})).await;

    assert_eq!(response.status(), 200);
    assert_eq!(app.count("sessions").await, 0);
    assert_eq!(app.get_session().await, Value::Null);
}

async fn api_session_wraps_the_session_in_an_envelope(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let signed_out: Value = app.get(paths::API_SESSION).await.json().await.unwrap();
    app.sign_up("alice@example.com").await;

    let signed_in: Value = app.get(paths::API_SESSION).await.json().await.unwrap();

    assert_eq!(signed_out, json!({"success": true, "data": null}));
    assert_eq!(signed_in["success"], true);
    assert_eq!(signed_in["data"]["user"]["email"], "alice@example.com");
    let session = signed_in["data"]["session"].as_object().unwrap();
    assert_eq!(session.len(), 2);
    assert!(session["id"].as_str().unwrap().starts_with("ses_"));
    assert_eq!(session["expiresAt"], "2026-12-18T11:06:40.000Z");
}

async fn debug_session_exists_only_when_enabled(backend: Backend) {
    let Some(off) = spawn_app(backend).await else { return };
    off.sign_up("alice@example.com").await;
    let Some(on) = spawn_app_with(backend, |s| s.debug_endpoints = true).await else { return };
    on.sign_up("alice@example.com").await;

    let hidden = off.get(paths::DEBUG_SESSION).await;
    let shown = on.get(paths::DEBUG_SESSION).await;

    assert_eq!(hidden.status(), 404);
    assert_eq!(shown.status(), 200);
    let body: Value = shown.json().await.unwrap();
    assert_eq!(body["user"]["email"], "alice@example.com");
    assert!(body["session"]["id"].is_string());
    assert_eq!(body["org"], Value::Null);
}

async fn ip_address_and_user_agent_are_recorded(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let client = bare_client();
    client
        .post(app.url(paths::SIGN_UP_EMAIL))
        .header(header::USER_AGENT, "latchkey-tests/1.0")
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"name": "A", "email": "alice@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();

    let sql = "SELECT ip_address, user_agent FROM sessions";
    let (ip, ua): (String, String) =
        latchkey::db_run!(&app.state.db, |pool| sqlx::query_as(sql).fetch_one(pool).await.unwrap());

    // No trusted proxies configured: X-Forwarded-For is ignored.
    assert_eq!(ip, "127.0.0.1");
    assert_eq!(ua, "latchkey-tests/1.0");
}

async fn forwarded_for_is_used_only_from_a_trusted_proxy(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| s.trusted_proxies = vec!["127.0.0.1".into()]).await else { return };
    bare_client()
        .post(app.url(paths::SIGN_UP_EMAIL))
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
        .json(&json!({"name": "A", "email": "alice@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();

    let sql = "SELECT ip_address FROM sessions";
    let ip: String = latchkey::db_run!(&app.state.db, |pool| sqlx::query_scalar(sql).fetch_one(pool).await.unwrap());

    assert_eq!(ip, "203.0.113.9");
}

async fn a_session_token_works_as_a_bearer_credential(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let token =
        app.sign_up("alice@example.com").await.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let client = bare_client();

    let ok = client.get(app.url(paths::GET_SESSION)).bearer_auth(&token).send().await.unwrap();
    let listed = client.get(app.url(paths::LIST_SESSIONS)).bearer_auth(&token).send().await.unwrap();
    let bad = client.get(app.url(paths::LIST_SESSIONS)).bearer_auth("A".repeat(32)).send().await.unwrap();

    assert_eq!(ok.json::<Value>().await.unwrap()["user"]["email"], "alice@example.com");
    assert_eq!(listed.status(), 200);
    assert_eq!(bad.status(), 401);
    assert_eq!(bad.json::<Value>().await.unwrap()["code"], "UNAUTHORIZED");
}

/// A bearer session token is remembered after its first check (as a cached cookie is), and what happens to
/// its session shows at once: a new active organization, a sign-out.
async fn a_remembered_bearer_token_follows_sign_out_and_active_organization_changes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let token =
        app.sign_up("alice@example.com").await.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let client = bare_client();
    let session = || client.get(app.url(paths::GET_SESSION)).bearer_auth(&token).send();
    assert_eq!(session().await.unwrap().json::<Value>().await.unwrap()["user"]["email"], "alice@example.com");
    assert_eq!(app.state.sessions.bearer.len(), 1, "remembered after the first check");
    // Served from memory: a changed name in the database shows only after the window (as a cached cookie).
    app.execute("UPDATE users SET name = 'Renamed'").await;
    assert_eq!(session().await.unwrap().json::<Value>().await.unwrap()["user"]["name"], "Test User");

    let org: Value = client
        .post(app.url(paths::ORG_CREATE))
        .bearer_auth(&token)
        .header(header::ORIGIN, ORIGIN)
        .json(&json!({"name": "Acme", "slug": "acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let active = session().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(active["session"]["activeOrganizationId"], org["id"], "the new active organization shows at once");

    let signed_out =
        client.post(app.url(paths::SIGN_OUT)).bearer_auth(&token).header(header::ORIGIN, ORIGIN).send().await.unwrap();
    assert_eq!(signed_out.status(), 200);
    assert_eq!(session().await.unwrap().text().await.unwrap(), "null", "a signed-out bearer token is refused at once");
    app.clock.advance(std::time::Duration::from_secs(301));
    assert_eq!(session().await.unwrap().text().await.unwrap(), "null", "and after the window too");
}

async fn a_tampered_session_cookie_is_refused_and_cleared(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let response = app.sign_up("alice@example.com").await;
    let cookies = set_cookies(&response);
    let pair = cookie_pair(&cookies, "latchkey.session_token").unwrap();
    let token = response.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    // Right token, signature made with another secret.
    let forged = format!(
        "latchkey.session_token={}",
        latchkey::crypto::sign_cookie_value(b"another-secret", &token)
            .replace('=', "%3D")
            .replace('+', "%2B")
            .replace('/', "%2F")
    );
    let unsigned = format!("latchkey.session_token={token}");
    // Percent-escapes that do not decode to UTF-8.
    let undecodable = "latchkey.session_token=%FF%FE.%C0".to_owned();
    let client = bare_client();

    for cookie in [forged, unsigned, undecodable] {
        let answer = client.get(app.url(paths::GET_SESSION)).header(header::COOKIE, &cookie).send().await.unwrap();
        assert!(set_cookies(&answer).iter().any(|c| c.starts_with("latchkey.session_token=;")));
        assert_eq!(answer.text().await.unwrap(), "null");
        let listed = client.get(app.url(paths::LIST_SESSIONS)).header(header::COOKIE, &cookie).send().await.unwrap();
        assert_eq!(listed.status(), 401);
    }
    let genuine = client.get(app.url(paths::LIST_SESSIONS)).header(header::COOKIE, &pair).send().await.unwrap();
    assert_eq!(genuine.status(), 200);

    // The same token cookie spelled with lower-case escapes decodes to the same value: it is accepted, with
    // or without the cookie cache, repeatedly (remembered pairs are compared as sent, so this spelling
    // takes the full verification each time rather than matching the remembered one).
    let data = cookie_pair(&cookies, "latchkey.session_data").unwrap();
    let lower = pair.replace("%3D", "%3d").replace("%2B", "%2b").replace("%2F", "%2f");
    for cookie in [lower.clone(), format!("{lower}; {data}"), format!("{lower}; {data}"), format!("{pair}; {data}")] {
        let answer = client.get(app.url(paths::GET_SESSION)).header(header::COOKIE, &cookie).send().await.unwrap();
        let session: Value = answer.json().await.unwrap();
        assert_eq!(session["user"]["email"], "alice@example.com", "{cookie}");
    }
}

async fn remember_me_false_gives_a_one_day_browser_session_cookie(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;
    let client = new_client();

    let response = client
        .post(app.url(paths::SIGN_IN_EMAIL))
        .json(&json!({"email": "alice@example.com", "password": PASSWORD, "rememberMe": false}))
        .send()
        .await
        .unwrap();

    let cookies = set_cookies(&response);
    let cookie = cookies.iter().find(|c| c.starts_with("latchkey.session_token=")).unwrap();
    assert!(!cookie.contains("Max-Age"), "{cookie}");
    let session: Value = client.get(app.url(paths::GET_SESSION)).send().await.unwrap().json().await.unwrap();
    assert_eq!(session["session"]["expiresAt"], "2026-11-19T11:06:40.000Z");
}

/// SQLite's synchronous read path: a session check that skips the cookie cache reads the session on the
/// request's own thread, through a reader connection, so it answers even while every pool connection is
/// taken (through the pool it would wait the 5 s acquire timeout and answer 503). Afterwards the pool path
/// still answers, with the same session.
#[tokio::test]
async fn on_sqlite_a_database_session_check_reads_without_the_pool() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.sign_up("alice@example.com").await;
    let latchkey::storage::Db::Sqlite(pool, _) = &app.state.db else { panic!("not SQLite") };
    let mut held = Vec::new();
    for _ in 0..app.state.settings.database_max_connections {
        held.push(pool.acquire().await.unwrap());
    }
    let uncached = format!("{}?disableCookieCache=true", paths::GET_SESSION);

    let started = std::time::Instant::now();
    let answer = app.get(&uncached).await;
    assert_eq!(answer.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1), "waited {:?} for the pool", started.elapsed());
    let read = answer.json::<Value>().await.unwrap();
    assert_eq!(read["user"]["email"], "alice@example.com");

    drop(held);
    app.state.db.sqlite_readers().unwrap().close();
    let through_the_pool = app.get(&uncached).await.json::<Value>().await.unwrap();
    assert_eq!(through_the_pool, read);
}
