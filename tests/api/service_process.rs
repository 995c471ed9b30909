//! The service-token API (capability 4) through the real binary: what its logs hold, several processes on
//! one PostgreSQL, the `admin create-client` and `admin rotate-keys` commands, and the production checks
//! of the master credentials and `CLIENT_API_KEY`.

use std::{
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use latchkey::paths;
use reqwest::{header, Response};
use serde_json::{json, Value};

use crate::{
    cli::{latchkey, stop, Server},
    helpers::{kid_of, PgDatabase},
};

const MASTER_USERNAME: &str = "latchkey-master";
const MASTER_PASSWORD: &str = "master-Zq8vN3xW7bL2pK9d";

/// The binary with master credentials configured.
fn with_master(dir: &std::path::Path) -> Command {
    let mut command = latchkey(dir);
    command.env("MASTER_USERNAME", MASTER_USERNAME).env("MASTER_PASSWORD", MASTER_PASSWORD);
    command
}

/// Runs a command that must finish on its own within `limit` (killed, and the test failed, otherwise).
fn run_bounded(mut command: Command, limit: Duration) -> Output {
    let child =
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn latchkey");
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(limit) {
        Ok(output) => output.expect("latchkey output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("latchkey did not exit within {limit:?}");
        }
    }
}

/// Runs `latchkey admin …`, which must succeed; returns its stdout.
fn admin(mut command: Command, args: &[&str]) -> String {
    command.arg("admin").args(args);
    let output = run_bounded(command, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "admin {args:?} failed:\n{stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// An HTTP client for one node's `/v1` API (every request bounded).
struct Node {
    base: String,
    http: reqwest::Client,
}

impl Node {
    fn new(server: &Server) -> Node {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Node { base: server.address.clone(), http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn create_client(&self, username: &str, password: &str, name: &str) -> Response {
        self.http
            .post(self.url(paths::V1_CLIENTS))
            .basic_auth(username, Some(password))
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap()
    }

    async fn rotate_client_key(&self, client_id: &str) -> Response {
        self.http
            .post(self.url(&format!("/v1/clients/{client_id}/rotate-key")))
            .basic_auth(MASTER_USERNAME, Some(MASTER_PASSWORD))
            .send()
            .await
            .unwrap()
    }

    async fn create_user(&self, key: &str) -> Response {
        self.http.post(self.url(paths::V1_USERS)).header("x-api-key", key).json(&json!({})).send().await.unwrap()
    }

    async fn delete_user(&self, key: &str, user_id: &str) -> Response {
        self.http.delete(self.url(&format!("/v1/users/{user_id}"))).header("x-api-key", key).send().await.unwrap()
    }

    async fn token(&self, key: &str, user_id: &str, secret: &str) -> Response {
        self.http
            .post(self.url(paths::V1_TOKEN))
            .header("x-api-key", key)
            .json(&json!({ "userId": user_id, "secret": secret }))
            .send()
            .await
            .unwrap()
    }

    async fn revoke(&self, key: &str, token: &str) -> Response {
        self.http
            .post(self.url(paths::V1_TOKEN_REVOKE))
            .header("x-api-key", key)
            .json(&json!({ "token": token }))
            .send()
            .await
            .unwrap()
    }

    async fn me(&self, token: &str) -> Response {
        self.http
            .get(self.url(paths::V1_ME))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .unwrap()
    }

    async fn jwks(&self) -> Value {
        let response = self.http.get(self.url(paths::JWKS)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// `(client id, client key)` of a new client.
    async fn new_client(&self, name: &str) -> (String, String) {
        let created = self.create_client(MASTER_USERNAME, MASTER_PASSWORD, name).await;
        assert_eq!(created.status(), 201);
        let body: Value = created.json().await.unwrap();
        let key = body["apiKey"].as_str().unwrap().to_owned();
        assert!(key.starts_with("lkc_"), "{body}");
        (body["clientId"].as_str().unwrap().to_owned(), key)
    }

    /// `(user id, secret)` of a new user of the client holding `key`.
    async fn new_user(&self, key: &str) -> (String, String) {
        let created = self.create_user(key).await;
        assert_eq!(created.status(), 201);
        let body: Value = created.json().await.unwrap();
        (body["userId"].as_str().unwrap().to_owned(), body["secret"].as_str().unwrap().to_owned())
    }

    /// A new access token.
    async fn new_token(&self, key: &str, user_id: &str, secret: &str) -> String {
        let issued = self.token(key, user_id, secret).await;
        assert_eq!(issued.status(), 200);
        let body: Value = issued.json().await.unwrap();
        assert_eq!(body["tokenType"], "Bearer");
        assert!(body["expiresIn"].as_u64().unwrap() > 0);
        body["accessToken"].as_str().unwrap().to_owned()
    }

    /// Polls `/v1/me` every 50 ms until `token` is refused; fails if that takes a second or more.
    async fn refuses_within_a_second(&self, token: &str, what: &str) {
        let started = Instant::now();
        loop {
            let answer = self.me(token).await;
            if answer.status() == 401 {
                assert_eq!(code(answer).await, "INVALID_TOKEN");
                return;
            }
            assert_eq!(answer.status(), 200);
            assert!(started.elapsed() < Duration::from_secs(1), "{what}: still accepted after a second");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the JWKS every 50 ms until it publishes `kid`; fails after `limit`. Returns the JWKS.
    async fn publishes_within(&self, kid: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let jwks = self.jwks().await;
            if kids(&jwks).iter().any(|k| k == kid) {
                return jwks;
            }
            assert!(started.elapsed() < limit, "{kid} not published within {limit:?}: {jwks}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The `code` of an error answer.
async fn code(response: Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["code"].as_str().unwrap_or_default().to_owned()
}

/// The `x-request-id` of an answer.
fn request_id(response: &Response) -> String {
    response.headers()["x-request-id"].to_str().unwrap().to_owned()
}

/// The `kid`s a JWKS publishes.
/// The `kid`s of the published ES256 keys (the service tokens'; the OAuth provider's RS256 key is there too).
fn kids(jwks: &Value) -> Vec<String> {
    let keys = jwks["keys"].as_array().unwrap().iter().filter(|key| key["alg"] == "ES256");
    keys.map(|key| key["kid"].as_str().unwrap().to_owned()).collect()
}

/// The new kid printed by `admin rotate-keys` (`rotated ES256: new signing key key_…`).
fn rotated_kid(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("rotated ES256: new signing key "))
        .unwrap_or_else(|| panic!("no rotation reported:\n{stdout}"))
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_flow_logs_contain_no_credentials_or_token_contents() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = with_master(dir.path());
    command.env("LATCHKEY_LOG", "trace");
    let mut server = Server::start(command);
    let node = Node::new(&server);
    const WRONG_MASTER_PASSWORD: &str = "wrong-master-Hq4mT8rY2sV6";
    const WRONG_SECRET: &str = "lks_wrongsecretwrongsecretwrongsecretwrongsecret1234";
    const GARBAGE_BEARER: &str = "garbage.bearer-token-Xk3Lm9.notajwt";

    let (client_id, key) = node.new_client("billing").await;
    let (user_id, secret) = node.new_user(&key).await;
    let token = node.new_token(&key, &user_id, &secret).await;
    let second_token = node.new_token(&key, &user_id, &secret).await;
    let me = node.me(&token).await;
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!((me["userId"].as_str(), me["clientId"].as_str()), (Some(user_id.as_str()), Some(client_id.as_str())));
    assert_eq!(node.revoke(&key, &token).await.status(), 200);
    let revoked = node.me(&token).await;
    let revoked_id = request_id(&revoked);
    assert_eq!(revoked.status(), 401);
    assert_eq!(code(revoked).await, "INVALID_TOKEN");

    let wrong_master = node.create_client(MASTER_USERNAME, WRONG_MASTER_PASSWORD, "nope").await;
    let wrong_master_id = request_id(&wrong_master);
    assert_eq!(wrong_master.status(), 401);
    assert_eq!(code(wrong_master).await, "INVALID_MASTER_CREDENTIALS");
    let wrong_key = node.create_user(&format!("{key}x")).await;
    let wrong_key_id = request_id(&wrong_key);
    assert_eq!(wrong_key.status(), 401);
    assert_eq!(code(wrong_key).await, "INVALID_CLIENT_KEY");
    let wrong_secret = node.token(&key, &user_id, WRONG_SECRET).await;
    let wrong_secret_id = request_id(&wrong_secret);
    assert_eq!(wrong_secret.status(), 401);
    assert_eq!(code(wrong_secret).await, "INVALID_CREDENTIALS");
    let garbage = node.me(GARBAGE_BEARER).await;
    let garbage_id = request_id(&garbage);
    assert_eq!(garbage.status(), 401);
    assert_eq!(code(garbage).await, "INVALID_TOKEN");

    let rotated = node.rotate_client_key(&client_id).await;
    assert_eq!(rotated.status(), 200);
    let new_key = rotated.json::<Value>().await.unwrap()["apiKey"].as_str().unwrap().to_owned();
    assert!(new_key.starts_with("lkc_") && new_key != key);
    let old_key = node.create_user(&key).await;
    let old_key_id = request_id(&old_key);
    assert_eq!(old_key.status(), 401, "the rotated-out key is refused");
    assert_eq!(node.me(&second_token).await.status(), 200, "tokens survive a key rotation");
    assert_eq!(node.delete_user(&new_key, &user_id).await.status(), 200);
    let deleted = node.me(&second_token).await;
    let deleted_id = request_id(&deleted);
    assert_eq!(deleted.status(), 401, "a deleted user's tokens are refused");
    stop(&mut server);

    let logs = server.logs();
    assert!(logs.contains("/v1/token"), "requests are logged at trace level:\n{logs}");
    let mut secrets = vec![
        ("the master password", MASTER_PASSWORD.to_owned()),
        ("a wrong master password", WRONG_MASTER_PASSWORD.to_owned()),
        ("the client key", key.clone()),
        ("the rotated client key", new_key.clone()),
        ("the user secret", secret.clone()),
        ("a wrong user secret", WRONG_SECRET.to_owned()),
        ("a garbage bearer token", GARBAGE_BEARER.to_owned()),
    ];
    for (name, jwt) in [("the access token", &token), ("the second access token", &second_token)] {
        secrets.push((name, jwt.clone()));
        let segments: Vec<&str> = jwt.split('.').collect();
        assert_eq!(segments.len(), 3);
        for (part, segment) in ["header", "payload", "signature"].into_iter().zip(segments) {
            assert!(segment.len() >= 20, "{part} segment too short to search for");
            secrets.push((part, segment.to_owned()));
        }
    }
    for (name, secret) in &secrets {
        assert!(!logs.contains(secret.as_str()), "{name} appeared in the logs");
    }

    // Refusals are logged, each with its request id, a reason, and the ids known at that point.
    let failure = |request_id: &str, reason: &str, ids: &[&str]| {
        let line = logs
            .lines()
            .find(|line| line.contains("service authentication failed") && line.contains(request_id))
            .unwrap_or_else(|| panic!("no audit event for {reason} (request {request_id}):\n{logs}"));
        assert!(line.contains(reason), "{reason} not in: {line}");
        for id in ids {
            assert!(line.contains(id), "{id} not in: {line}");
        }
    };
    failure(&wrong_master_id, "master: wrong credentials", &[]);
    failure(&wrong_key_id, "client: unknown key", &[]);
    failure(&old_key_id, "client: unknown key", &[]);
    failure(&wrong_secret_id, "token request: wrong secret", &[&client_id, &user_id]);
    failure(&garbage_id, "token: malformed", &[]);
    failure(&revoked_id, "token: revoked", &[&client_id, &user_id]);
    failure(&deleted_id, "token: revoked", &[&client_id, &user_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn two_nodes_share_tokens_revocations_and_keys() {
    let Some(db) = PgDatabase::create().await else {
        eprintln!("skipping two_nodes_share_tokens_revocations_and_keys: LATCHKEY_TEST_POSTGRES_URL is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let on_postgres = || {
        let mut command = with_master(dir.path());
        command.env("LATCHKEY_DATABASE_URL", &db.url);
        command
    };
    // Started one after the other; each takes its own free port.
    let server_a = Server::start(on_postgres());
    let server_b = Server::start(on_postgres());
    assert_ne!(server_a.address, server_b.address);
    let (a, b) = (Node::new(&server_a), Node::new(&server_b));
    assert_eq!(kids(&a.jwks().await), kids(&b.jwks().await), "both nodes sign with the one shared key");

    let (_, key) = a.new_client("billing").await;
    let (user_id, secret) = a.new_user(&key).await;
    let token = a.new_token(&key, &user_id, &secret).await;
    let other_token = a.new_token(&key, &user_id, &secret).await;

    let me = b.me(&token).await;
    assert_eq!(me.status(), 200, "a token issued on A is accepted by B");
    assert_eq!(me.json::<Value>().await.unwrap()["userId"], user_id.as_str());
    assert_eq!(a.me(&token).await.status(), 200, "A has verified (and cached) it too");

    assert_eq!(b.revoke(&key, &token).await.status(), 200);
    a.refuses_within_a_second(&token, "a token revoked on B, on A").await;
    assert_eq!(b.me(&other_token).await.status(), 200, "only that token was revoked");

    // Signing keys rotated by another process reach both nodes through NOTIFY.
    let stdout = admin(on_postgres(), &["rotate-keys"]);
    let new_kid = rotated_kid(&stdout);
    let jwks = b.publishes_within(&new_kid, Duration::from_secs(1)).await;
    assert_eq!(kids(&jwks).len(), 2, "the retired key stays published: {jwks}");
    a.publishes_within(&new_kid, Duration::from_secs(1)).await;
    let new_token = a.new_token(&key, &user_id, &secret).await;
    assert_eq!(kid_of(&new_token), new_kid, "A signs with the new key");
    assert_ne!(kid_of(&other_token), new_kid);
    assert_eq!(b.me(&new_token).await.status(), 200, "B accepts a token signed with the new key");
    assert_eq!(b.me(&other_token).await.status(), 200, "and still those signed with the retired one");

    assert_eq!(a.delete_user(&key, &user_id).await.status(), 200);
    b.refuses_within_a_second(&other_token, "a token of a user deleted on A, on B").await;
    b.refuses_within_a_second(&new_token, "a new-key token of a user deleted on A, on B").await;
    drop((server_a, server_b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_create_client_and_rotate_keys() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(latchkey(dir.path()));
    let node = Node::new(&server);

    let stdout = admin(latchkey(dir.path()), &["create-client", "--name", "x"]);
    let key = stdout
        .lines()
        .find_map(|line| line.strip_prefix("client key (shown once): "))
        .unwrap_or_else(|| panic!("no key printed:\n{stdout}"))
        .trim()
        .to_owned();
    assert!(key.starts_with("lkc_"), "{stdout}");
    let client_id = stdout.split_whitespace().nth(2).unwrap();
    assert!(client_id.starts_with("cli_"), "{stdout}");
    let (user_id, secret) = node.new_user(&key).await;
    let token = node.new_token(&key, &user_id, &secret).await;
    let me = node.me(&token).await;
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<Value>().await.unwrap()["clientId"], client_id);
    let before = kids(&node.jwks().await);
    assert_eq!(before, vec![kid_of(&token)]);

    let stdout = admin(latchkey(dir.path()), &["rotate-keys"]);
    let new_kid = rotated_kid(&stdout);
    // SQLite has no NOTIFY: the server's `cache_events` poll (every 2 s) brings the new key, at the latest
    // with the second poll after the rotation.
    let jwks = node.publishes_within(&new_kid, Duration::from_secs(4)).await;
    assert_eq!(kids(&jwks), vec![new_kid.clone(), before[0].clone()], "the new key first, the retired one kept");
    assert_eq!(node.me(&token).await.status(), 200, "a token signed with the retired key still works");
    let new_token = node.new_token(&key, &user_id, &secret).await;
    assert_eq!(kid_of(&new_token), new_kid);
    assert_eq!(node.me(&new_token).await.status(), 200);
    assert!(!server.logs().contains(&key), "the client key was logged");

    let refused = run_bounded(
        {
            let mut command = latchkey(dir.path());
            command.args(["admin", "rotate-keys", "--algorithm", "HS256"]);
            command
        },
        Duration::from_secs(30),
    );
    assert!(!refused.status.success(), "an unknown algorithm is refused");
}

#[test]
fn production_refuses_weak_or_half_set_master_credentials_and_a_non_client_key() {
    let dir = tempfile::tempdir().unwrap();
    let production = || {
        let mut command = latchkey(dir.path());
        command.env("LATCHKEY_ENV", "production").env("LATCHKEY_BASE_URL", "https://auth.example.com");
        command
    };
    let refused = |configure: &dyn Fn(&mut Command), expected: &str| {
        let mut command = production();
        configure(&mut command);
        let output = run_bounded(command, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!output.status.success(), "started despite {expected}");
        assert!(stderr.contains(expected), "{expected} not in:\n{stderr}");
        stderr
    };

    refused(
        &|c| {
            c.env("MASTER_USERNAME", "admin").env("MASTER_PASSWORD", "password");
        },
        "service.master_password: production needs at least 16 characters",
    );
    let stderr = refused(
        &|c| {
            c.env("MASTER_USERNAME", "admin").env("MASTER_PASSWORD", "Sh0rt-R4nd0m!x");
        },
        "service.master_password",
    );
    assert!(!stderr.contains("Sh0rt-R4nd0m!x"), "the refused password is echoed");
    refused(
        &|c| {
            c.env("MASTER_USERNAME", "admin");
        },
        "set both MASTER_USERNAME and MASTER_PASSWORD",
    );
    refused(
        &|c| {
            c.env("MASTER_PASSWORD", MASTER_PASSWORD);
        },
        "set both MASTER_USERNAME and MASTER_PASSWORD",
    );
    let stderr = refused(
        &|c| {
            c.env("CLIENT_API_KEY", "lk_notaclientkey0123456789");
        },
        "CLIENT_API_KEY must be a client key (lkc_",
    );
    assert!(!stderr.contains("lk_notaclientkey0123456789"), "the refused key is echoed");

    // The same production settings with strong master credentials do start.
    let mut good = production();
    good.env("MASTER_USERNAME", "admin").env("MASTER_PASSWORD", MASTER_PASSWORD);
    let server = Server::start(good);
    assert!(!server.logs().contains(MASTER_PASSWORD));
}
