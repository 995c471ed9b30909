//! `POST /oauth/token` with the client-credentials grant (capability 5): forms and JSON, the three client
//! authentication methods and only the client's own, client grants and scopes as Auth0 answers them,
//! RFC 9068 access tokens verifiable with the published JWKS, RFC 6749 errors.

use latchkey::paths;
use reqwest::{header, Method, RequestBuilder, Response};
use serde_json::{json, Value};

use crate::{both_backends, helpers::*};

both_backends!(
    client_credentials_issue_an_rfc9068_token_verifiable_with_the_jwks,
    each_client_authenticates_only_its_own_way,
    audience_grant_and_scopes_are_checked_as_auth0_does,
    bad_requests_get_rfc6749_errors,
    a_management_token_authorises_each_operation_by_its_scope,
    a_rotated_key_stays_published_as_long_as_the_access_tokens_it_signed,
);

const API: &str = "https://api.example.com/orders";

struct Machine {
    id: String,
    secret: String,
}

async fn spawn(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, with_master_credentials).await
}

async fn mgmt(app: &TestApp, path: &str, body: Value) -> Value {
    let response = master(app, Method::POST, path).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201, "{path} {body}");
    response.json().await.unwrap()
}

/// A confidential client (`method`), the API with two scopes, and a grant of `scope` for it.
async fn machine(app: &TestApp, method: &str, scope: &[&str]) -> Machine {
    let client = mgmt(
        app,
        paths::MGMT_CLIENTS,
        json!({"name": "Cron", "app_type": "non_interactive", "token_endpoint_auth_method": method}),
    )
    .await;
    let existing = master(app, Method::GET, paths::MGMT_RESOURCE_SERVERS).send().await.unwrap();
    let existing: Value = existing.json().await.unwrap();
    if !existing.as_array().unwrap().iter().any(|api| api["identifier"] == API) {
        let scopes = json!([{"value": "read:orders"}, {"value": "write:orders"}]);
        mgmt(app, paths::MGMT_RESOURCE_SERVERS, json!({"name": "Orders", "identifier": API, "scopes": scopes})).await;
    }
    let id = client["client_id"].as_str().unwrap().to_owned();
    mgmt(app, paths::MGMT_CLIENT_GRANTS, json!({"client_id": id, "audience": API, "scope": scope})).await;
    Machine { id, secret: client["client_secret"].as_str().unwrap().to_owned() }
}

fn token_request(app: &TestApp) -> RequestBuilder {
    bare_client().post(app.url(paths::TOKEN))
}

/// `client_secret_post` as a form.
async fn post_form(app: &TestApp, fields: &[(&str, &str)]) -> Response {
    token_request(app).form(fields).send().await.unwrap()
}

async fn assert_oauth_error(response: Response, status: u16, error: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    body
}

async fn client_credentials_issue_an_rfc9068_token_verifiable_with_the_jwks(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let m = machine(&app, "client_secret_post", &["read:orders", "write:orders"]).await;

    let response = post_form(
        &app,
        &[("grant_type", "client_credentials"), ("client_id", &m.id), ("client_secret", &m.secret), ("audience", API)],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 86_400);
    assert_eq!(body["scope"], "read:orders write:orders", "no scope asked: every granted scope");
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());
    let token = body["access_token"].as_str().unwrap();

    let header = jwt_part(token, 0);
    assert_eq!((header["typ"].as_str(), header["alg"].as_str()), (Some("at+jwt"), Some("RS256")));
    let claims = jwt_part(token, 1);
    let issuer = format!("{}/", app.state.settings.base_url.trim_end_matches('/'));
    assert_eq!(claims["iss"], issuer.as_str(), "the issuer ends with a slash, as Auth0's");
    assert_eq!(claims["sub"], format!("{}@clients", m.id));
    assert_eq!((claims["aud"].as_str(), claims["azp"].as_str()), (Some(API), Some(m.id.as_str())));
    assert_eq!(claims["gty"], "client-credentials");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 86_400);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));

    // Verifiable with the published keys alone.
    let jwks: Value = bare_client().get(app.url(paths::JWKS)).send().await.unwrap().json().await.unwrap();
    let kid = kid_of(token);
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).expect("the kid is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[API]);
    validation.set_issuer(&[issuer.as_str()]);
    // The test clock is not the wall clock jsonwebtoken reads: times were checked above.
    validation.validate_exp = false;
    let verified = jsonwebtoken::decode::<Value>(token, &key, &validation);
    assert!(verified.is_ok(), "{verified:?}");

    // A narrower scope on request; JSON bodies work the same.
    let narrow = token_request(&app)
        .json(&json!({"grant_type": "client_credentials", "client_id": m.id, "client_secret": m.secret,
            "audience": API, "scope": "read:orders"}))
        .send()
        .await
        .unwrap();
    assert_eq!(narrow.status(), 200);
    let narrow: Value = narrow.json().await.unwrap();
    assert_eq!(narrow["scope"], "read:orders");
    // No row per token: revocation is a deny list (DESIGN.md).
    assert_eq!(app.count("issued_tokens").await, 0);
}

async fn each_client_authenticates_only_its_own_way(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let basic = machine(&app, "client_secret_basic", &["read:orders"]).await;
    let post = machine(&app, "client_secret_post", &["read:orders"]).await;
    let grant = [("grant_type", "client_credentials"), ("audience", API)];

    let ok = token_request(&app).basic_auth(&basic.id, Some(&basic.secret)).form(&grant).send().await.unwrap();
    assert_eq!(ok.status(), 200, "client_secret_basic");
    let wrong = token_request(&app).basic_auth(&basic.id, Some("wrong")).form(&grant).send().await.unwrap();
    assert_eq!(wrong.headers()[header::WWW_AUTHENTICATE], "Basic realm=\"latchkey\"");
    assert_oauth_error(wrong, 401, "invalid_client").await;
    let fields = [grant[0], grant[1], ("client_id", &basic.id), ("client_secret", &basic.secret)];
    let as_post = post_form(&app, &fields).await;
    assert!(as_post.headers().get(header::WWW_AUTHENTICATE).is_none(), "Basic was not tried");
    assert_oauth_error(as_post, 401, "invalid_client").await;

    let as_basic = token_request(&app).basic_auth(&post.id, Some(&post.secret)).form(&grant).send().await.unwrap();
    assert_oauth_error(as_basic, 401, "invalid_client").await;
    let no_secret = post_form(&app, &[grant[0], grant[1], ("client_id", &post.id)]).await;
    assert_oauth_error(no_secret, 401, "invalid_client").await;
    let unknown = post_form(&app, &[grant[0], grant[1], ("client_id", "nope"), ("client_secret", "x")]).await;
    assert_oauth_error(unknown, 401, "invalid_client").await;
    let both = token_request(&app)
        .basic_auth(&post.id, Some(&post.secret))
        .form(&[grant[0], grant[1], ("client_secret", &post.secret)])
        .send()
        .await
        .unwrap();
    assert_oauth_error(both, 400, "invalid_request").await;

    // Rotating the secret refuses the old one at once.
    let rotated = master(&app, Method::POST, &paths::MGMT_CLIENT_ROTATE_SECRET.replace("{id}", &post.id));
    let rotated: Value = rotated.send().await.unwrap().json().await.unwrap();
    let old = post_form(&app, &[grant[0], grant[1], ("client_id", &post.id), ("client_secret", &post.secret)]).await;
    assert_oauth_error(old, 401, "invalid_client").await;
    let new_secret = rotated["client_secret"].as_str().unwrap();
    let new = post_form(&app, &[grant[0], grant[1], ("client_id", &post.id), ("client_secret", new_secret)]).await;
    assert_eq!(new.status(), 200);
}

async fn audience_grant_and_scopes_are_checked_as_auth0_does(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let m = machine(&app, "client_secret_post", &["read:orders"]).await;
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut fields = vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("client_id".to_owned(), m.id.clone()),
            ("client_secret".to_owned(), m.secret.clone()),
        ];
        fields.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        token_request(&app).form(&fields).send()
    };

    assert_oauth_error(with(&[]).await.unwrap(), 403, "access_denied").await;
    let unknown = assert_oauth_error(with(&[("audience", "https://nowhere")]).await.unwrap(), 403, "access_denied");
    assert_eq!(unknown.await["error_description"], "Service not found: https://nowhere");
    let widened = with(&[("audience", API), ("scope", "read:orders write:orders")]).await.unwrap();
    let widened = assert_oauth_error(widened, 403, "access_denied").await;
    assert_eq!(widened["error_description"], "Client has not been granted scopes: write:orders");
    assert_eq!(with(&[("audience", API), ("scope", "read:orders")]).await.unwrap().status(), 200);

    // No grant for the management API yet; then one.
    let management =
        Box::leak(format!("{}/api/v2/", app.state.settings.base_url.trim_end_matches('/')).into_boxed_str());
    assert_oauth_error(with(&[("audience", management)]).await.unwrap(), 403, "access_denied").await;
    let grant = json!({"client_id": m.id, "audience": management, "scope": ["read:clients"]});
    mgmt(&app, paths::MGMT_CLIENT_GRANTS, grant).await;
    let body: Value = with(&[("audience", management)]).await.unwrap().json().await.unwrap();
    assert_eq!(body["scope"], "read:clients");

    // A client whose grant types lack client_credentials is refused even with a grant.
    let web = mgmt(&app, paths::MGMT_CLIENTS, json!({"name": "Web", "app_type": "regular_web"})).await;
    let web_id = web["client_id"].as_str().unwrap();
    mgmt(&app, paths::MGMT_CLIENT_GRANTS, json!({"client_id": web_id, "audience": API, "scope": []})).await;
    let response = post_form(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", web_id),
            ("client_secret", web["client_secret"].as_str().unwrap()),
            ("audience", API),
        ],
    )
    .await;
    assert_oauth_error(response, 400, "unauthorized_client").await;
}

async fn bad_requests_get_rfc6749_errors(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let m = machine(&app, "client_secret_post", &["read:orders"]).await;
    let credentials = [("client_id", m.id.as_str()), ("client_secret", m.secret.as_str()), ("audience", API)];

    assert_oauth_error(post_form(&app, &credentials).await, 400, "invalid_request").await;
    let password = [credentials[0], credentials[1], ("grant_type", "password")];
    assert_oauth_error(post_form(&app, &password).await, 400, "unsupported_grant_type").await;
    let nul = [credentials[0], credentials[1], ("grant_type", "client_credentials"), ("audience", "a\0b")];
    assert_oauth_error(post_form(&app, &nul).await, 400, "invalid_request").await;
    let malformed =
        token_request(&app).header(header::CONTENT_TYPE, "application/json").body("{").send().await.unwrap();
    assert_oauth_error(malformed, 400, "invalid_request").await;
    let text = token_request(&app).header(header::CONTENT_TYPE, "text/plain").body("x").send().await.unwrap();
    assert_eq!(text.status(), 415);
    // Forms are taken only where OAuth takes them.
    let elsewhere = bare_client().post(app.url(paths::SIGN_IN_EMAIL)).form(&[("email", "a@b.c")]).send().await.unwrap();
    assert_eq!(elsewhere.status(), 415);
}

async fn a_management_token_authorises_each_operation_by_its_scope(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let m = machine(&app, "client_secret_post", &["read:orders"]).await;
    let management = format!("{}/api/v2/", app.state.settings.base_url.trim_end_matches('/'));
    let grant = json!({"client_id": m.id, "audience": management, "scope": ["read:clients", "create:clients"]});
    mgmt(&app, paths::MGMT_CLIENT_GRANTS, grant).await;
    let token_for = |scope: &'static str| {
        let fields = [
            ("grant_type", "client_credentials"),
            ("client_id", m.id.as_str()),
            ("client_secret", m.secret.as_str()),
            ("audience", management.as_str()),
            ("scope", scope),
        ];
        let request = token_request(&app).form(&fields);
        async move {
            request.send().await.unwrap().json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
        }
    };
    let reader = token_for("read:clients").await;
    let writer = token_for("read:clients create:clients").await;
    let bearer =
        |method: Method, path: &str, token: &str| bare_client().request(method, app.url(path)).bearer_auth(token);

    let listed = bearer(Method::GET, paths::MGMT_CLIENTS, &reader).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    let body = json!({"name": "Made by a machine", "app_type": "spa"});
    let refused = bearer(Method::POST, paths::MGMT_CLIENTS, &reader).json(&body).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["errorCode"], "insufficient_scope");
    let created = bearer(Method::POST, paths::MGMT_CLIENTS, &writer).json(&body).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let apis = bearer(Method::GET, paths::MGMT_RESOURCE_SERVERS, &writer).send().await.unwrap();
    assert_eq!(apis.status(), 403, "no read:resource_servers");

    // A token for another API, a forged one or an expired one is refused.
    let orders = {
        let fields = [
            ("grant_type", "client_credentials"),
            ("client_id", m.id.as_str()),
            ("client_secret", m.secret.as_str()),
            ("audience", API),
        ];
        let response = token_request(&app).form(&fields).send().await.unwrap();
        response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
    };
    for token in [orders.as_str(), "not.a.token", &format!("{reader}x")] {
        let response = bearer(Method::GET, paths::MGMT_CLIENTS, token).send().await.unwrap();
        assert_eq!(response.status(), 401, "{token}");
        assert!(response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Bearer"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errorCode"], "invalid_token");
    }
    app.clock.advance(std::time::Duration::from_secs(86_400 + 120));
    let expired = bearer(Method::GET, paths::MGMT_CLIENTS, &reader).send().await.unwrap();
    assert_eq!(expired.status(), 401);
}

async fn a_rotated_key_stays_published_as_long_as_the_access_tokens_it_signed(backend: Backend) {
    // Service tokens live an hour here, the API's access tokens 30 days: the retired RS256 key must stay
    // in the JWKS for the latter.
    let Some(app) = spawn_app_with(backend, |settings| {
        with_master_credentials(settings);
        settings.service.token_ttl = 3600;
        settings.tokens.rotation_interval = 3600;
    })
    .await
    else {
        return;
    };
    let client = mgmt(&app, paths::MGMT_CLIENTS, json!({"name": "Cron", "app_type": "non_interactive"})).await;
    let api = json!({"name": "Long", "identifier": "https://long", "token_lifetime": 2_592_000});
    mgmt(&app, paths::MGMT_RESOURCE_SERVERS, api).await;
    mgmt(
        &app,
        paths::MGMT_CLIENT_GRANTS,
        json!({"client_id": client["client_id"], "audience": "https://long", "scope": []}),
    )
    .await;
    let fields = [
        ("grant_type", "client_credentials"),
        ("client_id", client["client_id"].as_str().unwrap()),
        ("client_secret", client["client_secret"].as_str().unwrap()),
        ("audience", "https://long"),
    ];
    let body: Value = token_request(&app).form(&fields).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["expires_in"], 2_592_000);
    let old_kid = kid_of(body["access_token"].as_str().unwrap());
    let published = |app: &TestApp| {
        let request = bare_client().get(app.url(paths::JWKS));
        async move {
            let jwks: Value = request.send().await.unwrap().json().await.unwrap();
            jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };

    app.clock.advance(std::time::Duration::from_secs(3601));
    app.state.run_maintenance().await.unwrap();
    let after_rotation = published(&app).await;
    assert!(after_rotation.contains(&old_kid), "retired, still published");
    // Past the service tokens' window, well within the access token's life.
    app.clock.advance(std::time::Duration::from_secs(2 * 3600));
    app.state.run_maintenance().await.unwrap();
    assert!(published(&app).await.contains(&old_kid), "the key went before the access tokens it signed");
    // After the access token's life (and the leeway) it goes.
    app.clock.advance(std::time::Duration::from_secs(2_592_000));
    app.state.run_maintenance().await.unwrap();
    assert!(!published(&app).await.contains(&old_kid), "kept forever");
}
