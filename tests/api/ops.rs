//! Health, readiness, metrics, the OpenAPI document and the JSON 404.

use latchkey::paths;
use serde_json::Value;

use crate::{both_backends, helpers::*};

both_backends!(
    healthz_and_readyz_answer_ok,
    metrics_report_requests_by_route_sign_in_outcomes_and_the_pool,
    openapi_documents_every_endpoint,
    unknown_paths_get_a_json_404_and_every_response_has_a_request_id,
    cors_allows_configured_origins_with_credentials_only,
);

async fn healthz_and_readyz_answer_ok(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };

    for path in [paths::HEALTHZ, paths::READYZ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.json::<Value>().await.unwrap()["status"], "ok");
    }
    app.state.db.close().await;
    let down = app.get(paths::READYZ).await;
    assert_eq!(down.status(), 503);
    assert_eq!(down.json::<Value>().await.unwrap()["code"], "DATABASE_UNAVAILABLE");
}

async fn metrics_report_requests_by_route_sign_in_outcomes_and_the_pool(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;
    app.sign_in("alice@example.com", PASSWORD).await;
    app.sign_in("alice@example.com", "wrong password!").await;

    let response = app.get(paths::METRICS).await;

    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#"latchkey_http_requests_total{method="POST",route="/api/auth/sign-in/email",status="401"}"#),
        "{text}"
    );
    assert!(text.contains("latchkey_http_request_duration_seconds_bucket"));
    assert!(text.contains(r#"latchkey_sign_in_total{outcome="success"}"#));
    assert!(text.contains(r#"latchkey_sign_in_total{outcome="failure"}"#));
    assert!(text.contains(r#"latchkey_db_pool_connections{state="open"}"#));
    // The token core's gauges (values are process-wide: other tests' apps set them too).
    for gauge in
        ["latchkey_revoked_tokens_cached", "latchkey_verified_tokens_cached", "latchkey_signing_keys_published"]
    {
        assert!(text.contains(gauge), "{gauge} missing");
    }
}

async fn openapi_documents_every_endpoint(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };

    let doc: Value = app.get(paths::OPENAPI).await.json().await.unwrap();

    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let documented = doc["paths"].as_object().unwrap();
    let all = [
        (paths::SIGN_UP_EMAIL, "post"),
        (paths::SIGN_IN_EMAIL, "post"),
        (paths::SIGN_IN_SOCIAL, "post"),
        (paths::SOCIAL_CALLBACK, "get"),
        (paths::LIST_ACCOUNTS, "get"),
        (paths::UNLINK_ACCOUNT, "post"),
        (paths::SIGN_OUT, "post"),
        (paths::GET_SESSION, "get"),
        (paths::LIST_SESSIONS, "get"),
        (paths::REVOKE_SESSION, "post"),
        (paths::REVOKE_SESSIONS, "post"),
        (paths::REVOKE_OTHER_SESSIONS, "post"),
        (paths::API_SESSION, "get"),
        (paths::HEALTHZ, "get"),
        (paths::READYZ, "get"),
        (paths::METRICS, "get"),
        (paths::OPENAPI, "get"),
        (paths::API_KEY_CREATE, "post"),
        (paths::API_KEY_GET, "get"),
        (paths::API_KEY_LIST, "get"),
        (paths::API_KEY_UPDATE, "post"),
        (paths::API_KEY_DELETE, "post"),
        (paths::API_KEY_VERIFY, "post"),
        (paths::ORG_CREATE, "post"),
        (paths::ORG_UPDATE, "post"),
        (paths::ORG_DELETE, "post"),
        (paths::ORG_LIST, "get"),
        (paths::ORG_CHECK_SLUG, "post"),
        (paths::ORG_SET_ACTIVE, "post"),
        (paths::ORG_GET_FULL, "get"),
        (paths::ORG_LIST_MEMBERS, "get"),
        (paths::ORG_GET_ACTIVE_MEMBER, "get"),
        (paths::ORG_GET_ACTIVE_MEMBER_ROLE, "get"),
        (paths::ORG_LIST_INVITATIONS, "get"),
        (paths::ORG_LIST_USER_INVITATIONS, "get"),
        (paths::ORG_INVITE_MEMBER, "post"),
        (paths::ORG_ACCEPT_INVITATION, "post"),
        (paths::ORG_REJECT_INVITATION, "post"),
        (paths::ORG_CANCEL_INVITATION, "post"),
        (paths::ORG_REMOVE_MEMBER, "post"),
        (paths::ORG_UPDATE_MEMBER_ROLE, "post"),
        (paths::ORG_LEAVE, "post"),
        (paths::AUTH_CHECK, "get"),
        (paths::EXTENSION_TOKEN, "post"),
        (paths::EXTENSION_VERIFY, "post"),
        (paths::V1_CLIENTS, "post"),
        (paths::V1_CLIENTS, "get"),
        (paths::V1_CLIENT, "delete"),
        (paths::V1_CLIENT_ROTATE_KEY, "post"),
        (paths::V1_USERS, "post"),
        (paths::V1_USERS, "get"),
        (paths::V1_USER, "delete"),
        (paths::V1_TOKEN, "post"),
        (paths::V1_TOKEN_REVOKE, "post"),
        (paths::V1_ME, "get"),
        (paths::JWKS, "get"),
        (paths::MGMT_CLIENTS, "post"),
        (paths::MGMT_CLIENTS, "get"),
        (paths::MGMT_CLIENT, "get"),
        (paths::MGMT_CLIENT, "patch"),
        (paths::MGMT_CLIENT, "delete"),
        (paths::MGMT_CLIENT_ROTATE_SECRET, "post"),
        (paths::MGMT_RESOURCE_SERVERS, "post"),
        (paths::MGMT_RESOURCE_SERVERS, "get"),
        (paths::MGMT_RESOURCE_SERVER, "get"),
        (paths::MGMT_RESOURCE_SERVER, "patch"),
        (paths::MGMT_RESOURCE_SERVER, "delete"),
        (paths::MGMT_CLIENT_GRANTS, "post"),
        (paths::MGMT_CLIENT_GRANTS, "get"),
        (paths::MGMT_CLIENT_GRANT, "patch"),
        (paths::MGMT_CLIENT_GRANT, "delete"),
        (paths::MGMT_USERS, "post"),
        (paths::MGMT_USERS, "get"),
        (paths::MGMT_USERS_BY_EMAIL, "get"),
        (paths::MGMT_USER, "get"),
        (paths::MGMT_USER, "patch"),
        (paths::MGMT_USER, "delete"),
        (paths::MGMT_USER_SESSIONS, "get"),
        (paths::MGMT_USER_SESSIONS, "delete"),
        (paths::MGMT_USER_REFRESH_TOKENS, "get"),
        (paths::MGMT_USER_REFRESH_TOKENS, "delete"),
        (paths::MGMT_USER_IDENTITY, "delete"),
        (paths::MGMT_SESSION, "get"),
        (paths::MGMT_SESSION, "delete"),
        (paths::MGMT_REFRESH_TOKEN, "get"),
        (paths::MGMT_REFRESH_TOKEN, "delete"),
        (paths::MGMT_ORGANIZATIONS, "post"),
        (paths::MGMT_ORGANIZATIONS, "get"),
        (paths::MGMT_ORGANIZATION, "get"),
        (paths::MGMT_ORGANIZATION, "patch"),
        (paths::MGMT_ORGANIZATION, "delete"),
        (paths::MGMT_ORGANIZATION_BY_NAME, "get"),
        (paths::MGMT_ORGANIZATION_MEMBERS, "get"),
        (paths::MGMT_ORGANIZATION_MEMBERS, "post"),
        (paths::MGMT_ORGANIZATION_MEMBERS, "delete"),
        (paths::MGMT_SIGNING_KEYS, "get"),
        (paths::MGMT_SIGNING_KEY, "get"),
        (paths::MGMT_SIGNING_KEYS_ROTATE, "post"),
        (paths::MGMT_SIGNING_KEY_REVOKE, "put"),
        (paths::MGMT_LOGS, "get"),
        (paths::MGMT_LOG, "get"),
        (paths::TOKEN, "post"),
        (paths::DISCOVERY, "get"),
        (paths::AUTHORIZE, "get"),
        (paths::AUTHORIZE_RESUME, "get"),
        (paths::LOGIN, "get"),
        (paths::LOGIN, "post"),
        (paths::LOGIN_SOCIAL, "post"),
        (paths::SIGNUP, "get"),
        (paths::SIGNUP, "post"),
        (paths::CONSENT, "get"),
        (paths::CONSENT, "post"),
        (paths::USERINFO, "get"),
        (paths::USERINFO, "post"),
        (paths::REVOKE, "post"),
        (paths::INTROSPECT, "post"),
        (paths::LOGOUT, "get"),
        (paths::OIDC_LOGOUT, "get"),
        (paths::BFF_VENDOR, "put"),
        (paths::BFF_VENDOR, "get"),
        (paths::BFF_VENDOR, "delete"),
        (paths::BFF_VENDOR_ROTATE_KEY, "post"),
        (paths::BFF_LOGIN, "get"),
        (paths::BFF_CALLBACK, "get"),
        (paths::BFF_SESSION, "get"),
        (paths::BFF_REFRESH, "post"),
        (paths::BFF_LOGOUT, "post"),
        (paths::BFF_API, "get"),
        (paths::BFF_API, "post"),
        (paths::BFF_API, "put"),
        (paths::BFF_API, "patch"),
        (paths::BFF_API, "delete"),
        (paths::BFF_CHECK, "get"),
    ];
    // The document writes axum's catch-all `{*path}` as OpenAPI's `{path}`.
    let documented_as = |path: &str| path.replace("{*", "{");
    for (path, method) in all {
        let path = documented_as(path);
        assert!(documented.get(&path).and_then(|p| p.get(method)).is_some(), "{method} {path} undocumented");
    }
    let listed: std::collections::BTreeSet<String> = all.iter().map(|(path, _)| documented_as(path)).collect();
    assert_eq!(documented.len(), listed.len(), "documented paths that are not listed here");
}

async fn unknown_paths_get_a_json_404_and_every_response_has_a_request_id(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };

    let response = app.get("/api/auth/nope").await;

    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"].len(), 16);
    assert_eq!(response.json::<Value>().await.unwrap()["code"], "NOT_FOUND");
}

async fn cors_allows_configured_origins_with_credentials_only(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| s.cors_origins = vec!["https://app.example.com".into()]).await else {
        return;
    };
    let client = bare_client();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, app.url(paths::SIGN_IN_EMAIL))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };

    let allowed = preflight("https://app.example.com").await.unwrap();
    let refused = preflight("https://evil.example").await.unwrap();

    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(allowed.headers()["access-control-allow-credentials"], "true");
    assert!(refused.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_with_synchronous_full() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let latchkey::storage::Db::Sqlite(pool, _) = &app.state.db else { panic!("not SQLite") };

    let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await.unwrap();
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(pool).await.unwrap();

    assert_eq!(journal, "wal");
    assert_eq!(synchronous, 2, "2 = FULL");
}
