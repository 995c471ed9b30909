//! The black-box harness: `spawn_app` starts the real application on a random port with its own
//! database (a temp SQLite file, or a fresh PostgreSQL database when `LATCHKEY_TEST_POSTGRES_URL` is set)
//! and a manual clock; `TestApp` talks HTTP to it with a cookie-aware client.

use std::sync::Once;

use latchkey::{
    app::{AppState, Application},
    clock::Clock,
    config::{Secret, Settings},
};
use reqwest::{header, Response};
use serde_json::{json, Value};

/// The base URL every test app uses; its origin is trusted.
pub const BASE_URL: &str = "http://localhost:3000";
/// A trusted origin for cookie-authenticated state changes.
pub const ORIGIN: &str = "http://localhost:3000";
/// A password that satisfies the policy.
pub const PASSWORD: &str = "correct horse battery staple";

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `name::sqlite` and `name::postgres` tests from `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

/// A fresh PostgreSQL database, dropped when this is dropped.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    /// Creates `latchkey_test_<random>`; `None` (with a printed notice) when no server is configured.
    pub async fn create() -> Option<PgDatabase> {
        let Ok(admin_url) = std::env::var("LATCHKEY_TEST_POSTGRES_URL") else {
            eprintln!("LATCHKEY_TEST_POSTGRES_URL is not set: skipping the PostgreSQL variant of this test");
            return None;
        };
        let name = format!("latchkey_test_{}", latchkey::crypto::random_alphanumeric(16).to_lowercase());
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .expect("connect to LATCHKEY_TEST_POSTGRES_URL");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create test database");
        let mut url = url::Url::parse(&admin_url).expect("LATCHKEY_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        Some(PgDatabase { admin_url, name, url: url.to_string() })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; do the async work on a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                if let Ok(mut admin) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}

/// Where a test app keeps its data.
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres(PgDatabase),
}

impl TestDb {
    /// A new, empty database for `backend`, or `None` when PostgreSQL is not configured.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => Some(TestDb::Sqlite(tempfile::tempdir().expect("temp dir"))),
            Backend::Postgres => PgDatabase::create().await.map(TestDb::Postgres),
        }
    }

    /// The database URL.
    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => format!("sqlite://{}", dir.path().join("latchkey.db").display()),
            TestDb::Postgres(db) => db.url.clone(),
        }
    }
}

/// Settings for a test app: random port, its database, a fixed secret, fast hashing pool.
pub fn test_settings(database_url: String) -> Settings {
    let mut settings = Settings {
        listen: "127.0.0.1:0".into(),
        base_url: BASE_URL.into(),
        database_url,
        database_max_connections: 5,
        secret: Some(Secret::new("test-secret-test-secret-test-secret-0123456789")),
        password_hash_threads: 2,
        ..Settings::default()
    };
    // Generous limits unless a test is about them.
    settings.rate_limit.sign_in_per_ip = 10_000;
    settings.rate_limit.sign_up_per_ip = 10_000;
    settings
}

static TRACING: Once = Once::new();

/// `TEST_LOG=1 cargo test` shows the server's logs.
fn init_test_logs() {
    TRACING.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            let _ = latchkey::telemetry::init(
                latchkey::config::LogFormat::Pretty,
                latchkey::config::Mode::Development,
                false,
                std::io::stdout,
            );
        }
    });
}

/// A running app and a cookie-aware client.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub clock: Clock,
    /// Keeps the database (temp dir or PostgreSQL database) alive as long as the app.
    pub _db: Option<TestDb>,
}

/// Starts an app with default test settings.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// Starts an app after `configure` adjusted the settings.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Option<TestApp> {
    let db = TestDb::new(backend).await?;
    Some(spawn_app_on(db, configure).await)
}

/// Starts an app on an existing database, which it keeps alive.
pub async fn spawn_app_on(db: TestDb, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut app = spawn_node(&db.url(), configure).await;
    app._db = Some(db);
    app
}

/// Starts another node on a database another app owns.
pub async fn spawn_node(database_url: &str, configure: impl FnOnce(&mut Settings)) -> TestApp {
    init_test_logs();
    let mut settings = test_settings(database_url.to_owned());
    configure(&mut settings);
    // A fixed, recent instant; tests move it with `clock.advance`.
    let clock = Clock::manual(1_795_000_000_000);
    let app = Application::build(settings, clock.clone()).await.expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped());
    TestApp { address, client: new_client(), state, clock, _db: None }
}

/// A client with its own cookie jar that does not follow redirects.
pub fn new_client() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// A client without a cookie jar (cookies set by hand).
pub fn bare_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// POST JSON with a trusted `Origin`, through the cookie-aware client.
    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client.post(self.url(path)).header(header::ORIGIN, ORIGIN).json(body).send().await.expect("request")
    }

    /// GET through the cookie-aware client.
    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    pub async fn sign_up(&self, email: &str) -> Response {
        self.post(latchkey::paths::SIGN_UP_EMAIL, &json!({"name": "Test User", "email": email, "password": PASSWORD}))
            .await
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> Response {
        self.post(latchkey::paths::SIGN_IN_EMAIL, &json!({"email": email, "password": password})).await
    }

    pub async fn get_session(&self) -> Value {
        let response = self.get(latchkey::paths::GET_SESSION).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    /// Number of rows in a table.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        latchkey::db_run!(&self.state.db, |pool| sqlx::query_scalar::<_, i64>(&sql)
            .fetch_one(pool)
            .await
            .expect("count"))
    }

    /// Runs one SQL statement directly (to prove what the server does or does not read).
    pub async fn execute(&self, sql: &str) {
        latchkey::db_run!(&self.state.db, |pool| {
            sqlx::query(sql).execute(pool).await.expect("execute");
        })
    }
}

/// The `Set-Cookie` headers of a response.
pub fn set_cookies(response: &Response) -> Vec<String> {
    response.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().expect("ascii").to_owned()).collect()
}

/// The `name=value` pair of the `Set-Cookie` named `name`.
pub fn cookie_pair(set_cookies: &[String], name: &str) -> Option<String> {
    set_cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.split(';').next().expect("pair").to_owned())
}

/// A `Cookie` header value from the session cookies of a response.
pub fn cookie_header(response: &Response) -> String {
    let cookies = set_cookies(response);
    ["latchkey.session_token", "latchkey.session_data"]
        .iter()
        .filter_map(|name| cookie_pair(&cookies, name))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Base64url without padding, as JWTs use it.
pub fn b64(bytes: &[u8]) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The JSON of one part (0 = header, 1 = payload) of a JWT.
pub fn jwt_part(token: &str, index: usize) -> Value {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let part = token.split('.').nth(index).expect("JWT part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).expect("base64url")).expect("JSON")
}

/// The `kid` in a token's header.
pub fn kid_of(token: &str) -> String {
    jwt_part(token, 0)["kid"].as_str().expect("kid").to_owned()
}

// ---------------------------------------------------------------------------------------------------------
// Service clients (capability 4)

/// The master credentials [`with_master_credentials`] configures.
pub const MASTER_USER: &str = "master";
pub const MASTER_PASSWORD: &str = "master-password-0123456789";

/// Configures the master credentials (`/v1/clients`).
pub fn with_master_credentials(settings: &mut Settings) {
    settings.service.master_username = Some(Secret::new(MASTER_USER));
    settings.service.master_password = Some(Secret::new(MASTER_PASSWORD));
}

/// A request with the master credentials.
pub fn master(app: &TestApp, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    bare_client().request(method, app.url(path)).basic_auth(MASTER_USER, Some(MASTER_PASSWORD))
}

/// A request with a client key.
pub fn with_key(app: &TestApp, method: reqwest::Method, path: &str, key: &str) -> reqwest::RequestBuilder {
    bare_client().request(method, app.url(path)).header("x-api-key", key)
}

pub struct TestClient {
    pub id: String,
    pub key: String,
}

pub struct TestUser {
    pub id: String,
    pub secret: String,
}

/// Creates a client with the master credentials (asserts 201).
pub async fn create_client(app: &TestApp, name: &str) -> TestClient {
    let response = master(app, reqwest::Method::POST, latchkey::paths::V1_CLIENTS)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "create client {name}");
    let body: Value = response.json().await.unwrap();
    TestClient { id: body["clientId"].as_str().unwrap().to_owned(), key: body["apiKey"].as_str().unwrap().to_owned() }
}

/// Creates a user of the client whose key this is (asserts 201).
pub async fn create_user(app: &TestApp, key: &str, body: Value) -> TestUser {
    let response =
        with_key(app, reqwest::Method::POST, latchkey::paths::V1_USERS, key).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201, "create user {body}");
    let body: Value = response.json().await.unwrap();
    TestUser { id: body["userId"].as_str().unwrap().to_owned(), secret: body["secret"].as_str().unwrap().to_owned() }
}

/// `POST /v1/token`.
pub async fn request_token(app: &TestApp, key: &str, user_id: &str, secret: &str) -> Response {
    with_key(app, reqwest::Method::POST, latchkey::paths::V1_TOKEN, key)
        .json(&json!({"userId": user_id, "secret": secret}))
        .send()
        .await
        .unwrap()
}

/// A token for `user` (asserts 200).
pub async fn issue(app: &TestApp, key: &str, user: &TestUser) -> String {
    let response = request_token(app, key, &user.id, &user.secret).await;
    assert_eq!(response.status(), 200, "token for {}", user.id);
    response.json::<Value>().await.unwrap()["accessToken"].as_str().unwrap().to_owned()
}
