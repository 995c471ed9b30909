//! The stored audit log (issue 14): events written off the request path with the caller's address, user
//! agent and request id; `GET /api/v2/logs` in Auth0's shape with its paging, `sort` and `q`; one record by
//! id; `read:logs` required; no secret in any record; retention by maintenance; off when configured off;
//! `latchkey admin logs`.

use std::time::Duration;

use latchkey::paths;
use reqwest::{header, Method, Response};
use serde_json::{json, Value};

use crate::{both_backends, helpers::*};

both_backends!(
    events_are_stored_with_their_caller_and_listed_in_auth0s_shape,
    the_log_is_filtered_paged_and_sorted,
    reading_the_log_needs_read_logs,
    records_past_their_retention_are_removed_by_maintenance,
    with_the_audit_log_off_nothing_is_stored,
    every_event_type_is_stored_as_one_row_with_its_type_and_outcome,
);

const AGENT: &str = "audit-test/1.0";

async fn spawn(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, with_master_credentials).await
}

/// `GET /api/v2/logs{query}` with the master credentials.
async fn logs(app: &TestApp, query: &str) -> Value {
    let response = master(app, Method::GET, &format!("{}{query}", paths::MGMT_LOGS)).send().await.unwrap();
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

/// Waits (up to 5 s: the writer is asynchronous) until `GET /api/v2/logs{query}` lists `count` records.
async fn logs_when(app: &TestApp, query: &str, count: usize) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        let listed = logs(app, query).await;
        let records = listed.as_array().unwrap().clone();
        if records.len() >= count {
            return records;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{query}: {} of {count} records: {listed}", records.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs JSON as a browser on the trusted origin, with the test user agent.
async fn post(app: &TestApp, path: &str, body: Value) -> Response {
    app.client
        .post(app.url(path))
        .header(header::ORIGIN, ORIGIN)
        .header(header::USER_AGENT, AGENT)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn of_type<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|record| record["type"] == kind).collect()
}

async fn events_are_stored_with_their_caller_and_listed_in_auth0s_shape(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let signed_up =
        post(&app, paths::SIGN_UP_EMAIL, json!({"name": "Ada", "email": "ada@example.com", "password": PASSWORD}))
            .await;
    assert_eq!(signed_up.status(), 200);
    let signed_up: Value = signed_up.json().await.unwrap();
    let user_id = signed_up["user"]["id"].as_str().unwrap().to_owned();
    let wrong = "not the password at all";
    let refused = post(&app, paths::SIGN_IN_EMAIL, json!({"email": "ada@example.com", "password": wrong})).await;
    assert_eq!(refused.status(), 401);
    let signed_in = post(&app, paths::SIGN_IN_EMAIL, json!({"email": "ada@example.com", "password": PASSWORD})).await;
    assert_eq!(signed_in.status(), 200);
    let request_id = signed_in.headers()["x-request-id"].to_str().unwrap().to_owned();
    let session_token = signed_in.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    assert_eq!(post(&app, paths::SIGN_OUT, json!({})).await.status(), 200);
    // A management change and a client-credentials token.
    let token = crate::bff::management_token(&app, &["read:clients"]).await;

    app.state.audit.as_ref().unwrap().flush().await;
    let records = logs_when(&app, "?per_page=100", 9).await;
    let kinds: Vec<&str> = records.iter().map(|record| record["type"].as_str().unwrap()).collect();
    for kind in ["ss", "f", "s", "slo", "sapi", "seccft", "session_created"] {
        assert!(kinds.contains(&kind), "no `{kind}` in {kinds:?}");
    }
    let login = of_type(&records, "s")[0];
    assert_eq!(login["user_id"], user_id.as_str());
    assert_eq!(login["outcome"], "success");
    assert_eq!(login["description"], "Success Login");
    assert_eq!(login["ip"], "127.0.0.1");
    assert_eq!(login["user_agent"], AGENT);
    assert_eq!(login["request_id"], request_id.as_str());
    assert!(login["log_id"].as_str().unwrap().starts_with("log_"));
    assert!(login["date"].as_str().unwrap().ends_with('Z'));
    let failed = of_type(&records, "f")[0];
    assert_eq!(failed["outcome"], "failure");
    assert!(failed["details"]["reason"].is_string(), "{failed}");
    assert!(failed["user_agent"] == AGENT);
    assert_eq!(of_type(&records, "slo")[0]["user_id"], user_id.as_str());
    let exchange = of_type(&records, "seccft")[0];
    assert_eq!(exchange["details"]["grant_type"], "client_credentials");
    assert!(exchange["client_id"].is_string());

    // One record by id; an unknown id is Auth0's 404.
    let id = login["log_id"].as_str().unwrap();
    let one = master(&app, Method::GET, &paths::MGMT_LOG.replace("{id}", id)).send().await.unwrap();
    assert_eq!(one.status(), 200);
    assert_eq!(&one.json::<Value>().await.unwrap(), login);
    let missing = master(&app, Method::GET, &paths::MGMT_LOG.replace("{id}", "log_nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["errorCode"], "inexistent_log");

    // No secret anywhere: not the password (right or wrong), the session token, the client's secret or
    // the access token — in the answers or in the table itself.
    let everything = serde_json::to_string(&records).unwrap();
    let rows: Vec<String> = latchkey::db_run!(&app.state.db, |pool| sqlx::query_scalar(
        "SELECT id || type || description || COALESCE(user_agent, '') || details FROM audit_log"
    )
    .fetch_all(pool)
    .await
    .unwrap());
    let stored = rows.join("\n");
    for secret in [PASSWORD, wrong, session_token.as_str(), token.as_str()] {
        assert!(!everything.contains(secret) && !stored.contains(secret), "a secret reached the audit log");
    }
    let secrets: Vec<String> = latchkey::db_run!(&app.state.db, |pool| sqlx::query_scalar(
        "SELECT secret_hash FROM oauth_clients WHERE secret_hash IS NOT NULL"
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default());
    for hash in secrets {
        assert!(!stored.contains(&hash));
    }
}

async fn the_log_is_filtered_paged_and_sorted(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    assert_eq!(
        post(&app, paths::SIGN_UP_EMAIL, json!({"name": "Ada", "email": "ada@example.com", "password": PASSWORD}))
            .await
            .status(),
        200
    );
    let first_at = app.clock.now();
    for _ in 0..3 {
        app.clock.advance(Duration::from_secs(60));
        let refused =
            post(&app, paths::SIGN_IN_EMAIL, json!({"email": "ada@example.com", "password": "wrong password"})).await;
        assert_eq!(refused.status(), 401);
    }
    let failures = logs_when(&app, "?q=type:f", 3).await;
    assert_eq!(failures.len(), 3);
    assert!(failures.iter().all(|record| record["type"] == "f"));
    // Newest first by default; `sort=date:1` oldest first.
    let dates: Vec<&str> = failures.iter().map(|record| record["date"].as_str().unwrap()).collect();
    assert!(dates.windows(2).all(|pair| pair[0] > pair[1]), "{dates:?}");
    let oldest_first = logs(&app, "?q=type:f&sort=date:1").await;
    assert_eq!(oldest_first[0], failures[2]);

    // Auth0's paging.
    let page = logs(&app, "?q=type:f&per_page=2&page=0&include_totals=true").await;
    assert_eq!(
        (page["start"].clone(), page["limit"].clone(), page["length"].clone(), page["total"].clone()),
        (json!(0), json!(2), json!(2), json!(3))
    );
    assert_eq!(page["logs"][0], failures[0]);
    let page = logs(&app, "?q=type:f&per_page=2&page=1&include_totals=true").await;
    assert_eq!((page["start"].clone(), page["length"].clone()), (json!(2), json!(1)));
    assert_eq!(page["logs"][0], failures[2]);

    // By user, by outcome and by time.
    let user_id = logs(&app, "?q=type:ss").await[0]["user_id"].as_str().unwrap().to_owned();
    let about = logs(&app, &format!("?q=user_id:%22{user_id}%22")).await;
    assert!(
        !about.as_array().unwrap().is_empty()
            && about.as_array().unwrap().iter().all(|r| r["user_id"] == user_id.as_str())
    );
    let failed = logs(&app, "?q=outcome:failure").await;
    assert_eq!(failed.as_array().unwrap().len(), 3);
    let from = latchkey::clock::iso8601(first_at + 90_000);
    let to = latchkey::clock::iso8601(first_at + 150_000);
    let window = logs(&app, &format!("?q=type:f%20AND%20date:%5B{from}%20TO%20{to}%5D")).await;
    assert_eq!(window.as_array().unwrap().len(), 1, "{window}");
    assert_eq!(window[0], failures[1]);
    let since = logs(&app, &format!("?q=date:%5B{from}%20TO%20*%5D")).await;
    assert_eq!(since.as_array().unwrap().len(), 2);

    // What Latchkey cannot answer is a clear 400, not an empty list.
    for query in ["?q=email:ada@example.com", "?q=date:yesterday", "?sort=type:1", "?per_page=many"] {
        let response = master(&app, Method::GET, &format!("{}{query}", paths::MGMT_LOGS)).send().await.unwrap();
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(response.json::<Value>().await.unwrap()["errorCode"], "invalid_query_string", "{query}");
    }
}

async fn reading_the_log_needs_read_logs(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let without = crate::bff::management_token(&app, &["read:clients"]).await;
    let with = crate::bff::management_token(&app, &["read:logs"]).await;
    let record = logs_when(&app, "", 1).await[0]["log_id"].as_str().unwrap().to_owned();
    for path in [paths::MGMT_LOGS.to_owned(), paths::MGMT_LOG.replace("{id}", &record)] {
        let refused = bare_client().get(app.url(&path)).bearer_auth(&without).send().await.unwrap();
        assert_eq!(refused.status(), 403, "{path}");
        assert_eq!(refused.json::<Value>().await.unwrap()["errorCode"], "insufficient_scope");
        let allowed = bare_client().get(app.url(&path)).bearer_auth(&with).send().await.unwrap();
        assert_eq!(allowed.status(), 200, "{path}");
        let anonymous = bare_client().get(app.url(&path)).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{path}");
    }
}

async fn records_past_their_retention_are_removed_by_maintenance(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |settings| {
        with_master_credentials(settings);
        settings.audit.retention_days = 7;
    })
    .await
    else {
        return;
    };
    assert_eq!(
        post(&app, paths::SIGN_UP_EMAIL, json!({"name": "Ada", "email": "ada@example.com", "password": PASSWORD}))
            .await
            .status(),
        200
    );
    let old = logs_when(&app, "?q=type:ss", 1).await;
    app.clock.advance(Duration::from_secs(6 * 86_400));
    assert_eq!(
        post(&app, paths::SIGN_UP_EMAIL, json!({"name": "Bob", "email": "bob@example.com", "password": PASSWORD}))
            .await
            .status(),
        200
    );
    logs_when(&app, "?q=type:ss", 2).await;
    app.state.run_maintenance().await.unwrap();
    assert_eq!(logs(&app, "?q=type:ss").await.as_array().unwrap().len(), 2, "nothing is past 7 days yet");
    app.clock.advance(Duration::from_secs(2 * 86_400));
    app.state.run_maintenance().await.unwrap();
    let kept = logs(&app, "?q=type:ss").await;
    assert_eq!(kept.as_array().unwrap().len(), 1, "{kept}");
    assert_ne!(kept[0]["log_id"], old[0]["log_id"]);
}

async fn with_the_audit_log_off_nothing_is_stored(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |settings| {
        with_master_credentials(settings);
        settings.audit.enabled = false;
    })
    .await
    else {
        return;
    };
    assert_eq!(
        post(&app, paths::SIGN_UP_EMAIL, json!({"name": "Ada", "email": "ada@example.com", "password": PASSWORD}))
            .await
            .status(),
        200
    );
    assert_eq!(
        post(&app, paths::SIGN_IN_EMAIL, json!({"email": "ada@example.com", "password": "wrong"})).await.status(),
        401
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.count("audit_log").await, 0);
    assert_eq!(logs(&app, "").await, json!([]));
}

/// Every kind of event the server emits, stored through the same sink a request uses: one row each, with
/// its Auth0 code or Latchkey name, its outcome, and what it names in the right columns. (The flows that
/// emit them are the other tests' business; this pins the mapping for all of them, so a new event kind
/// cannot land unstored or untyped.)
async fn every_event_type_is_stored_as_one_row_with_its_type_and_outcome(backend: Backend) {
    use latchkey::audit::{self, AuditContext, AuditEvent as E};
    let Some(app) = spawn(backend).await else { return };
    let sink = app.state.audit.clone().expect("the audit log is on by default");
    let (u, c) = ("usr_1", "cli_1");
    let events = vec![
        (E::UserCreated { user_id: u }, "ss", "success"),
        (E::SignInSucceeded { user_id: u }, "s", "success"),
        (E::SignInFailed { reason: "invalid_credentials" }, "f", "failure"),
        (E::SessionCreated { user_id: u, session_id: "ses_1" }, "session_created", "success"),
        (E::SessionsRevoked { user_id: u, count: 1, reason: "sign_out" }, "slo", "success"),
        (E::SessionsRevoked { user_id: u, count: 2, reason: "management" }, "sessions_revoked", "success"),
        (E::ApiKeyChanged { actor_id: u, key_id: "key_1", action: "created" }, "api_key_changed", "success"),
        (E::ApiKeyRefused { key_id: None, reason: "unknown" }, "api_key_refused", "failure"),
        (
            E::OrganizationChanged { actor_id: u, organization_id: "org_1", action: "created", target: None },
            "organization_changed",
            "success",
        ),
        (
            E::ExtensionTokenIssued { user_id: u, organization_id: "org_1", extension_id: "ext", jti: "etk_1" },
            "extension_token_issued",
            "success",
        ),
        (
            E::ServiceAuthFailed { client_id: Some(c), user_id: None, reason: "bad_key" },
            "service_auth_failed",
            "failure",
        ),
        (E::ServiceClientChanged { client_id: c, action: "created" }, "service_client_changed", "success"),
        (E::OAuthClientChanged { client_id: c, action: "created" }, "sapi", "success"),
        (E::OAuthClientAuthFailed { client_id: Some(c), reason: "bad_secret" }, "oauth_client_auth_failed", "failure"),
        (
            E::OAuthTokenIssued { client_id: c, grant_type: "client_credentials", audience: "a", jti: "j" },
            "seccft",
            "success",
        ),
        (
            E::OAuthTokenIssued { client_id: c, grant_type: "authorization_code", audience: "a", jti: "j" },
            "seacft",
            "success",
        ),
        (
            E::OAuthTokenIssued { client_id: c, grant_type: "refresh_token", audience: "a", jti: "j" },
            "sertft",
            "success",
        ),
        (E::ResourceServerChanged { id: "api_1", action: "created" }, "sapi", "success"),
        (E::ClientGrantChanged { id: "cgr_1", client_id: c, audience: "a", action: "created" }, "sapi", "success"),
        (
            E::ManagementAction { actor_id: "master", resource: "user", id: u, user_id: Some(u), action: "blocked" },
            "sapi",
            "success",
        ),
        (
            E::ServiceUserChanged { client_id: c, user_id: "svu_1", action: "created" },
            "service_user_changed",
            "success",
        ),
        (E::TokenIssued { client_id: c, user_id: "svu_1", jti: "j" }, "service_token_issued", "success"),
        (E::TokenRevoked { client_id: c, jti: "j", reason: "client" }, "service_token_revoked", "success"),
        (E::OAuthCodeIssued { client_id: c, user_id: u, scope: "openid" }, "oauth_code_issued", "success"),
        (E::OAuthConsent { client_id: c, user_id: u, scope: "openid", allowed: true }, "oauth_consent", "success"),
        (E::CsrfRefused { page: "login" }, "csrf_refused", "failure"),
        (E::OAuthReuseDetected { client_id: c, grant_id: "grt_1", what: "refresh_token" }, "ferrt", "failure"),
        (E::OAuthGrantRefused { client_id: c, reason: "PKCE verification failed" }, "oauth_grant_refused", "failure"),
        (E::OAuthRefreshRetried { client_id: c, grant_id: "grt_1" }, "oauth_refresh_retried", "success"),
        (E::OAuthTokenRevoked { client_id: c, what: "refresh_token" }, "srrt", "success"),
        (E::BffVendorChanged { vendor_id: "shop", action: "configured" }, "sapi", "success"),
        (E::BffSignedIn { vendor_id: "shop", sub: u }, "bff_sign_in", "success"),
        (E::BffSignedOut { vendor_id: "shop" }, "bff_sign_out", "success"),
        (E::SocialSignInSucceeded { user_id: u, provider: "google" }, "s", "success"),
        (E::SocialSignInFailed { provider: "google", reason: "state_mismatch" }, "f", "failure"),
        (E::SocialAccountLinked { user_id: u, provider: "google" }, "sui", "success"),
        (E::SocialAccountUnlinked { user_id: u, provider: "google" }, "sui", "success"),
    ];
    let expected: Vec<(String, String)> =
        events.iter().map(|(_, kind, outcome)| ((*kind).to_owned(), (*outcome).to_owned())).collect();
    let count = events.len();
    let context = AuditContext {
        sink: sink.clone(),
        ip: Some("203.0.113.9".parse().unwrap()),
        user_agent: Some(header::HeaderValue::from_static(AGENT)),
        request_id: Some(header::HeaderValue::from_static("req-every-kind")),
    };
    audit::scope(Some(std::sync::Arc::new(context)), async move {
        for (event, ..) in events {
            audit::emit(event);
        }
    })
    .await;
    sink.flush().await;
    let records = logs_when(&app, "?per_page=100&sort=date:1", count).await;
    assert_eq!(records.len(), count, "one row per event");
    let mut stored: Vec<(String, String)> = records
        .iter()
        .map(|r| (r["type"].as_str().unwrap().to_owned(), r["outcome"].as_str().unwrap().to_owned()))
        .collect();
    let mut wanted = expected.clone();
    stored.sort();
    wanted.sort();
    assert_eq!(stored, wanted);
    for record in &records {
        assert!(record["description"].as_str().is_some_and(|d| !d.is_empty()), "{record}");
        assert_eq!(record["ip"], "203.0.113.9", "{record}");
        assert_eq!(record["user_agent"], AGENT, "{record}");
        assert_eq!(record["request_id"], "req-every-kind", "{record}");
    }
    let blocked = records.iter().find(|r| r["details"]["action"] == "blocked").unwrap();
    assert_eq!((blocked["actor_id"].as_str(), blocked["user_id"].as_str()), (Some("master"), Some(u)));
}
