//! Defects found by trying Latchkey from outside (issue 10): NUL characters, connection timeouts and the
//! connection cap, JSON errors for bad query strings and paths, a non-UTF-8 `x-tenant-id`, an unreachable
//! database, `nbf` and `crit` in JWTs, and `get-session` with an API key.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use latchkey::paths;
use reqwest::{header, Response};
use serde_json::{json, Value};

use crate::{both_backends, helpers::*};

const EXTENSION_SECRET: &str = "hardening-extension-secret-0123456789abcdef";

async fn spawn(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |settings| {
        with_master_credentials(settings);
        settings.extensions.secret = Some(latchkey::config::Secret::new(EXTENSION_SECRET));
    })
    .await
}

/// Asserts a JSON error with `status` and `code`; returns the body.
async fn assert_error(response: Response, status: u16, code: &str, what: &str) -> Value {
    assert_eq!(response.status(), status, "{what}");
    let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(content_type.starts_with("application/json"), "{what}: content type {content_type}");
    let body: Value = response.json().await.expect("json error body");
    assert_eq!(body["code"], code, "{what}: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
    body
}

/// Signs up `email` (cookie jar of `app.client`) and returns a fresh API key of that user.
async fn user_with_key(app: &TestApp, email: &str) -> String {
    assert_eq!(app.sign_up(email).await.status(), 200);
    let created: Value = app.post(paths::API_KEY_CREATE, &json!({"name": "k"})).await.json().await.unwrap();
    created["key"].as_str().expect("key").to_owned()
}

/// The JSON answer of a request that must get one.
async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.expect("request").json().await.expect("a JSON answer")
}

/// A service client's key, one of its users (id, secret) and a token of that user.
async fn service_token(app: &TestApp) -> (String, String, String, String) {
    let client = json_of(master(app, reqwest::Method::POST, paths::V1_CLIENTS).json(&json!({"name": "svc"}))).await;
    let key = client["apiKey"].as_str().unwrap().to_owned();
    let user =
        json_of(with_key(app, reqwest::Method::POST, paths::V1_USERS, &key).json(&json!({"externalId": "ext-1"})))
            .await;
    let (user_id, secret) = (user["userId"].as_str().unwrap().to_owned(), user["secret"].as_str().unwrap().to_owned());
    let token = json_of(
        with_key(app, reqwest::Method::POST, paths::V1_TOKEN, &key).json(&json!({"userId": user_id, "secret": secret})),
    )
    .await;
    (key, user_id, secret, token["accessToken"].as_str().unwrap().to_owned())
}

// ---------------------------------------------------------------------------------------------------
// 1. NUL characters: one rule on both databases, refused before any work.

async fn every_client_string_holding_nul_is_refused_with_400_before_any_work(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let nul = "a\u{0}b";

    // Sign-up: refused before the Argon2 hash (and so before any row).
    let started = Instant::now();
    let response =
        app.post(paths::SIGN_UP_EMAIL, &json!({"name": nul, "email": "nul@example.com", "password": PASSWORD})).await;
    assert_error(response, 400, "VALIDATION_ERROR", "sign-up name").await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(app.count("users").await, 0, "no user was created");

    let key = user_with_key(&app, "owner@example.com").await;
    let keys_before = app.count("api_keys").await;
    for (path, body, what) in [
        (paths::API_KEY_CREATE, json!({"name": nul}), "api-key name"),
        (paths::API_KEY_CREATE, json!({"name": "m", "metadata": {"note": nul}}), "api-key metadata value"),
        (paths::API_KEY_CREATE, json!({"name": "m", "metadata": {nul: 1}}), "api-key metadata key"),
        (paths::ORG_CREATE, json!({"name": nul, "slug": "nul-org"}), "organization name"),
        (paths::ORG_CREATE, json!({"name": "Nul", "slug": nul}), "organization slug"),
    ] {
        assert_error(app.post(path, &body).await, 400, "VALIDATION_ERROR", what).await;
    }
    assert_eq!(app.count("api_keys").await, keys_before, "no key was created");
    assert_eq!(app.count("organizations").await, 0, "no organization was created");

    // Query strings and paths.
    let response =
        with_key(&app, reqwest::Method::GET, &format!("{}?id=key_%00", paths::API_KEY_GET), &key).send().await.unwrap();
    assert_error(response, 400, "VALIDATION_ERROR", "api-key/get id").await;

    // The service-token API.
    assert_error(
        master(&app, reqwest::Method::POST, paths::V1_CLIENTS).json(&json!({"name": nul})).send().await.unwrap(),
        400,
        "VALIDATION_ERROR",
        "client name",
    )
    .await;
    let (client_key, user_id, secret, _) = service_token(&app).await;
    let users_before = app.count("service_users").await;
    let response = with_key(&app, reqwest::Method::POST, paths::V1_USERS, &client_key)
        .json(&json!({"externalId": nul}))
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "VALIDATION_ERROR", "externalId").await;
    assert_eq!(app.count("service_users").await, users_before);
    let response = with_key(&app, reqwest::Method::POST, paths::V1_TOKEN, &client_key)
        .json(&json!({"userId": format!("{user_id}\u{0}"), "secret": secret}))
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "VALIDATION_ERROR", "token userId").await;
    let response = with_key(&app, reqwest::Method::DELETE, "/v1/users/svu_%00", &client_key).send().await.unwrap();
    assert_error(response, 400, "VALIDATION_ERROR", "user id in the path").await;

    // A literal backslash-u0000 (six characters, no NUL) is ordinary text.
    let literal = "back\\u0000slash";
    let response = app.post(paths::ORG_CREATE, &json!({"name": literal, "slug": "literal"})).await;
    assert_eq!(response.status(), 200, "escaped backslash is not NUL");
    let org: Value = response.json().await.unwrap();
    assert_eq!(org["name"], literal);
}

// ---------------------------------------------------------------------------------------------------
// 4. Every error a client can cause is JSON, query strings and paths included.

async fn malformed_query_strings_answer_json_errors(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let key = user_with_key(&app, "query@example.com").await;
    for (path, what) in [
        (format!("{}?limit=abc", paths::API_KEY_LIST), "non-numeric limit"),
        (paths::API_KEY_GET.to_owned(), "api-key/get without id"),
    ] {
        let response = with_key(&app, reqwest::Method::GET, &path, &key).send().await.unwrap();
        let body = assert_error(response, 400, "VALIDATION_ERROR", what).await;
        assert!(!body["message"].as_str().unwrap().contains(&key), "the message never echoes the key");
    }
    // A method the endpoint does not take: JSON too, with the `Allow` header.
    let response = bare_client().post(app.url(paths::HEALTHZ)).send().await.unwrap();
    assert!(response.headers().get(header::ALLOW).is_some(), "Allow is kept");
    assert_error(response, 405, "METHOD_NOT_ALLOWED", "POST /healthz").await;
    let (client_key, ..) = service_token(&app).await;
    let response =
        with_key(&app, reqwest::Method::GET, &format!("{}?offset=9223372036854775808", paths::V1_USERS), &client_key)
            .send()
            .await
            .unwrap();
    assert_error(response, 400, "VALIDATION_ERROR", "offset beyond i64").await;
    // A well-formed query still works.
    let response = with_key(&app, reqwest::Method::GET, &format!("{}?limit=5&offset=0", paths::V1_USERS), &client_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

// ---------------------------------------------------------------------------------------------------
// 5. An `x-tenant-id` that is not UTF-8 is refused, never replaced by the key's default organization.

async fn a_tenant_header_that_is_not_utf8_is_refused(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let key = user_with_key(&app, "tenant@example.com").await;
    assert_eq!(app.post(paths::ORG_CREATE, &json!({"name": "Acme", "slug": "acme"})).await.status(), 200);
    let check = |tenant: header::HeaderValue| {
        with_key(&app, reqwest::Method::GET, paths::AUTH_CHECK, &key).header("x-tenant-id", tenant).send()
    };
    let ok = check(header::HeaderValue::from_static("acme")).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().contains_key("x-auth-org-id"));
    let refused = check(header::HeaderValue::from_bytes(b"acme\xff").unwrap()).await.unwrap();
    assert_error(refused, 400, "VALIDATION_ERROR", "latin-1 tenant").await;
    let response = with_key(&app, reqwest::Method::POST, paths::EXTENSION_TOKEN, &key)
        .header("x-tenant-id", header::HeaderValue::from_bytes(b"\xe9").unwrap())
        .json(&json!({"extensionId": "ext", "scopes": ["read"]}))
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "VALIDATION_ERROR", "no token for an unreadable tenant").await;
}

// ---------------------------------------------------------------------------------------------------
// 6. An unreachable database is a 503 with a clear code.

async fn an_unreachable_database_answers_503_not_500(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    assert_eq!(app.sign_up("db@example.com").await.status(), 200);
    app.state.db.close().await;

    let response = app.sign_in("someone-else@example.com", PASSWORD).await;
    let body = assert_error(response, 503, "DATABASE_UNAVAILABLE", "sign-in").await;
    assert!(!body["message"].as_str().unwrap().to_lowercase().contains("pool"), "no internals: {body}");
    let response = app.get(&format!("{}?disableCookieCache=true", paths::GET_SESSION)).await;
    assert_eq!(response.status(), 503, "a session check that must read the database");
    let response = app.get(paths::READYZ).await;
    assert_error(response, 503, "DATABASE_UNAVAILABLE", "readyz").await;
    assert_eq!(app.get(paths::HEALTHZ).await.status(), 200, "the process itself is alive");
}

/// A TCP relay in front of PostgreSQL that the test can cut and restore, as a restart or a network
/// partition would.
struct Relay {
    port: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(port: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("relay port");
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { port, task: Some(task) }
    }

    /// Refuses new connections and resets the open ones (the JoinSet aborts them when dropped).
    fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// PostgreSQL unreachable (a restart, a failover): 503 while it lasts, then back to normal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn an_unreachable_postgres_is_a_503_and_the_server_recovers() {
    let Some(db) = PgDatabase::create().await else { return };
    let mut relay = Relay::start(0).await;
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_port(Some(relay.port)).unwrap();
    let app = spawn_node(url.as_str(), |_| {}).await;
    assert_eq!(app.sign_up("pg@example.com").await.status(), 200);

    relay.cut();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = app.sign_in("pg@example.com", "wrong password, any").await;
    assert_error(response, 503, "DATABASE_UNAVAILABLE", "sign-in while PostgreSQL is unreachable").await;
    assert_eq!(app.get(paths::READYZ).await.status(), 503);

    let _restored = Relay::start(relay.port).await;
    let started = Instant::now();
    loop {
        let status = app.sign_in("pg@example.com", PASSWORD).await.status();
        if status == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "did not recover: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(db);
}

/// A clean SIGTERM on PostgreSQL is quiet: no warning from the notification listener or background tasks
/// about the pool being closed under them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn a_sigterm_on_postgres_shuts_down_without_warnings() {
    let Some(db) = PgDatabase::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut command = crate::cli::latchkey(dir.path());
    command.env("LATCHKEY_DATABASE_URL", &db.url);
    let mut server = crate::cli::Server::start(command);
    let health = bare_client().get(format!("{}{}", server.address, paths::READYZ)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // Let the listener connect and LISTEN before stopping.
    tokio::time::sleep(Duration::from_millis(500)).await;
    crate::cli::stop(&mut server);
    let logs = server.logs();
    assert!(logs.contains("shutting down"), "{logs}");
    let after_stop = logs.split("shutting down").nth(1).unwrap_or_default();
    let noisy: Vec<&str> = after_stop.lines().filter(|line| line.contains("WARN") || line.contains("ERROR")).collect();
    assert!(noisy.is_empty(), "shutdown logged warnings: {noisy:#?}");
}

// ---------------------------------------------------------------------------------------------------
// 7. JWTs: a future `nbf` and a `crit` header are refused, everywhere.

async fn a_service_token_whose_nbf_lies_in_the_future_is_refused(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let (_, _, _, token) = service_token(&app).await;
    let now = app.clock.now() / 1000;
    let claims = jwt_part(&token, 1);
    // Re-signed by the server's own key: the same recorded jti, so only `nbf` can make a difference.
    let resign = |claims: &Value| app.state.tokens.key_ring.sign(latchkey::tokens::Algorithm::Es256, claims).unwrap();
    let me = |token: String| bare_client().get(app.url(paths::V1_ME)).bearer_auth(token).send();

    assert_eq!(me(resign(&claims)).await.unwrap().status(), 200, "the re-signed control token");
    let mut early = claims.clone();
    early["nbf"] = json!(now + 3600);
    assert_eq!(me(resign(&early)).await.unwrap().status(), 401, "nbf an hour ahead");
    let check = bare_client().get(app.url(paths::AUTH_CHECK)).bearer_auth(resign(&early)).send().await.unwrap();
    assert_eq!(check.status(), 401, "forward-auth refuses it too");
    let mut past = claims;
    past["nbf"] = json!(now - 10);
    assert_eq!(me(resign(&past)).await.unwrap().status(), 200, "nbf in the past");
}

fn extension_token(header: Value, claims: &Value) -> String {
    let header: jsonwebtoken::Header = serde_json::from_value(header).unwrap();
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_secret(EXTENSION_SECRET.as_bytes())).unwrap()
}

async fn extension_tokens_with_a_future_nbf_or_a_crit_header_are_refused(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let key = user_with_key(&app, "ext@example.com").await;
    assert_eq!(app.post(paths::ORG_CREATE, &json!({"name": "Ext", "slug": "ext"})).await.status(), 200);
    let issued = json_of(
        with_key(&app, reqwest::Method::POST, paths::EXTENSION_TOKEN, &key)
            .json(&json!({"extensionId": "panel", "scopes": ["read"]})),
    )
    .await;
    let claims = jwt_part(issued["token"].as_str().unwrap(), 1);
    let now = app.clock.now() / 1000;
    let verify =
        |token: String| bare_client().post(app.url(paths::EXTENSION_VERIFY)).json(&json!({"token": token})).send();
    let plain = extension_token(json!({"alg": "HS256", "typ": "JWT"}), &claims);
    assert_eq!(verify(plain).await.unwrap().status(), 200, "the forged control token verifies");

    let mut early = claims.clone();
    early["nbf"] = json!(now + 600);
    let token = extension_token(json!({"alg": "HS256", "typ": "JWT"}), &early);
    assert_eq!(verify(token.clone()).await.unwrap().status(), 401, "nbf ten minutes ahead");
    let check = bare_client().get(app.url(paths::AUTH_CHECK)).bearer_auth(token).send().await.unwrap();
    assert_eq!(check.status(), 401, "forward-auth refuses it too");

    for crit in [json!(["exp"]), json!(["b64"]), json!([])] {
        let token = extension_token(json!({"alg": "HS256", "typ": "JWT", "crit": crit}), &claims);
        assert_eq!(verify(token.clone()).await.unwrap().status(), 401, "crit {crit}");
        let check = bare_client().get(app.url(paths::AUTH_CHECK)).bearer_auth(token).send().await.unwrap();
        assert_eq!(check.status(), 401, "forward-auth, crit {crit}");
    }
}

// ---------------------------------------------------------------------------------------------------
// 8. get-session with an API key: the key's user and a session view, as Better Auth.

async fn get_session_with_an_api_key_returns_its_user_and_a_session_view(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let key = user_with_key(&app, "session-key@example.com").await;
    let response = bare_client()
        .get(app.url(paths::GET_SESSION))
        .header("x-api-key", &key)
        .header(header::USER_AGENT, "key-agent/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get(header::CACHE_CONTROL).unwrap(), "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["email"], "session-key@example.com");
    let session = &body["session"];
    assert!(session["id"].as_str().unwrap().starts_with("key_"), "{session}");
    assert_eq!(session["userId"], body["user"]["id"]);
    assert_eq!(session["userAgent"], "key-agent/1.0");
    assert!(session["expiresAt"].as_str().is_some());
    assert!(session.get("activeOrganizationId").is_some());
    assert!(!body.to_string().contains(&key), "the raw key is never echoed");

    let unknown =
        bare_client().get(app.url(paths::GET_SESSION)).header("x-api-key", "lk_not-a-key").send().await.unwrap();
    assert_eq!(unknown.status(), 401, "an unusable key is refused, not a silent null");
    let anonymous = bare_client().get(app.url(paths::GET_SESSION)).send().await.unwrap();
    assert_eq!(anonymous.json::<Value>().await.unwrap(), Value::Null);
}

both_backends!(
    every_client_string_holding_nul_is_refused_with_400_before_any_work,
    malformed_query_strings_answer_json_errors,
    a_tenant_header_that_is_not_utf8_is_refused,
    an_unreachable_database_answers_503_not_500,
    a_service_token_whose_nbf_lies_in_the_future_is_refused,
    extension_tokens_with_a_future_nbf_or_a_crit_header_are_refused,
    get_session_with_an_api_key_returns_its_user_and_a_session_view,
);

// ---------------------------------------------------------------------------------------------------
// 2. Connection timeouts and the connection cap (no storage involved: SQLite only).

async fn spawn_with_short_timeouts(max_connections: usize) -> TestApp {
    spawn_app_with(Backend::Sqlite, |settings| {
        settings.server.header_read_timeout = 1;
        settings.server.keep_alive_timeout = 2;
        settings.server.max_connections = max_connections;
    })
    .await
    .expect("sqlite app")
}

fn connect(app: &TestApp) -> TcpStream {
    let stream = TcpStream::connect(app.address.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// Reads until the server closes the connection; returns what it sent and how long that took.
fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(error) => panic!("the server did not close the connection: {error}"),
        }
    }
    (String::from_utf8_lossy(&received).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_and_silent_connections_are_closed_after_the_header_read_timeout() {
    let app = spawn_with_short_timeouts(100).await;
    let (half, silent) = tokio::task::spawn_blocking({
        let (mut half, mut silent) = (connect(&app), connect(&app));
        move || {
            half.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").unwrap();
            (read_until_closed(&mut half), read_until_closed(&mut silent))
        }
    })
    .await
    .unwrap();
    for ((_, took), what) in [(half, "half-sent headers"), (silent, "silent connection")] {
        assert!(took < Duration::from_secs(4), "{what} closed after {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout_and_reused_before() {
    let app = spawn_with_short_timeouts(100).await;
    let mut stream = connect(&app);
    let (first, second, took) = tokio::task::spawn_blocking(move || {
        let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let mut buffer = [0u8; 4096];
        stream.write_all(request).unwrap();
        let n = stream.read(&mut buffer).unwrap();
        let first = String::from_utf8_lossy(&buffer[..n]).into_owned();
        // Within the keep-alive timeout the connection is reused.
        std::thread::sleep(Duration::from_millis(800));
        stream.write_all(request).unwrap();
        let n = stream.read(&mut buffer).unwrap();
        let second = String::from_utf8_lossy(&buffer[..n]).into_owned();
        let (_, took) = read_until_closed(&mut stream);
        (first, second, took)
    })
    .await
    .unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(second.starts_with("HTTP/1.1 200"), "reused within the timeout: {second}");
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(5), "idle for {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_get_a_503_and_the_server_recovers() {
    let app = spawn_with_short_timeouts(3).await;
    let held: Vec<TcpStream> = (0..3).map(|_| connect(&app)).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = connect(&app);
    let (answer, took) = tokio::task::spawn_blocking(move || read_until_closed(&mut extra)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("TOO_MANY_CONNECTIONS"), "{answer}");
    assert!(took < Duration::from_millis(900), "refused at once, not after a timeout: {took:?}");
    // The silent connections are closed by the header-read timeout; the server serves again.
    let started = Instant::now();
    loop {
        let status = bare_client().get(app.url(paths::HEALTHZ)).send().await.map(|r| r.status().as_u16());
        if status.as_ref().is_ok_and(|s| *s == 200) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "not serving again: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(held);
}

/// The binary under an open-files limit of 256 (soft and hard): hundreds of plain TCP connections do not
/// starve `/healthz` of file descriptors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_idle_connections_under_a_low_open_files_limit_leave_healthz_answering() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let mut command = crate::cli::latchkey(dir.path());
    command.env("LATCHKEY_SERVER_HEADER_READ_TIMEOUT", "2");
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 256, rlim_max: 256 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let server = crate::cli::Server::start(command);
    let address = server.address.trim_start_matches("http://").to_owned();
    let address: std::net::SocketAddr = address.parse().unwrap();
    // Bounded: a server that stopped accepting would leave connects hanging in the backlog.
    let idle: Vec<TcpStream> =
        (0..400).filter_map(|_| TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()).collect();
    assert!(idle.len() >= 300, "opened {} connections", idle.len());

    let started = Instant::now();
    loop {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let status =
            client.get(format!("{}{}", server.address, paths::HEALTHZ)).send().await.map(|r| r.status().as_u16());
        if status.as_ref().is_ok_and(|s| *s == 200) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(8), "healthz does not answer: {status:?}\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = server.logs();
    assert!(!logs.contains("Too many open files"), "{logs}");
    assert!(logs.contains("connection cap"), "the cap was lowered to fit the limit: {logs}");
    drop(idle);
}
