//! The binary as an operator runs it: logs without secrets, `config check`, production refusals, `migrate`
//! and the `admin` commands.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use latchkey::paths;
use serde_json::{json, Value};

use crate::helpers::*;

const SECRET: &str = "cli-test-secret-0123456789abcdef0123456789abcdef";
const EXTENSION_SECRET: &str = "cli-extension-secret-0123456789abcdef01234567";

pub(crate) fn latchkey(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LATCHKEY_DATABASE_URL", format!("sqlite://{}", dir.join("cli.db").display()))
        .env("LATCHKEY_SECRET", SECRET)
        .env("EXTENSION_TOKEN_SECRET", EXTENSION_SECRET)
        .env("LATCHKEY_LISTEN", "127.0.0.1:0")
        .env("LATCHKEY_BASE_URL", BASE_URL)
        .current_dir(dir);
    command
}

/// A server process whose stdout and stderr are collected.
pub(crate) struct Server {
    pub(crate) child: Child,
    output: Arc<Mutex<String>>,
    pub(crate) address: String,
}

impl Server {
    pub(crate) fn start(mut command: Command) -> Server {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn latchkey");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut output = output.lock().unwrap();
                    output.push_str(&line);
                    output.push('\n');
                }
            });
        }
        // Owned by `Server` from here on, so a failed start still kills the process.
        let mut server = Server { child, output, address: String::new() };
        let started = Instant::now();
        loop {
            let text = server.logs();
            if let Some(line) = text.lines().find(|l| l.contains("latchkey listening")) {
                let address = match serde_json::from_str::<Value>(line) {
                    Ok(json) => json["fields"]["address"].as_str().unwrap().to_owned(),
                    Err(_) => line.split("address=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned(),
                };
                server.address = format!("http://{address}");
                return server;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "server did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn logs(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn logs_contain_neither_passwords_nor_tokens_nor_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = latchkey(dir.path());
    command.env("LATCHKEY_LOG", "trace");
    let server = Server::start(command);
    let client = new_client();
    let url = |path: &str| format!("{}{}", server.address, path);

    let signed_up = client
        .post(url(paths::SIGN_UP_EMAIL))
        .json(&json!({"name": "Alice", "email": "alice@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookies = set_cookies(&signed_up);
    let token = signed_up.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let wrong = client
        .post(url(paths::SIGN_IN_EMAIL))
        .json(&json!({"email": "alice@example.com", "password": "my wrong secret password"}))
        .send()
        .await
        .unwrap();
    let signed_in = client
        .post(url(paths::SIGN_IN_EMAIL))
        .json(&json!({"email": "alice@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let second_token = signed_in.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    client.get(url(paths::GET_SESSION)).send().await.unwrap();
    client.post(url(paths::SIGN_OUT)).header("origin", ORIGIN).json(&json!({})).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let wrong_request_id = wrong.headers()["x-request-id"].to_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let logs = server.logs();
    assert!(logs.contains("sign-in failed"), "audit events are logged:\n{logs}");
    let failed = logs.lines().find(|l| l.contains("sign-in failed")).unwrap();
    assert!(failed.contains(&format!("request_id={wrong_request_id}")), "audit events carry the request id: {failed}");
    assert!(logs.contains("/api/auth/sign-in/email"), "requests are logged:\n{logs}");
    for secret in [PASSWORD, "my wrong secret password", &token, &second_token, SECRET] {
        assert!(!logs.contains(secret), "a secret appeared in the logs");
    }
    for cookie in cookies {
        let value = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
        assert!(value.len() > 20 && !logs.contains(&value), "a cookie value appeared in the logs");
    }
}

#[test]
fn config_check_prints_the_effective_configuration_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("latchkey.toml"),
        "debug_endpoints = true\n[session]\nexpires_in = 86400\nupdate_age = 3600\n",
    )
    .unwrap();

    let output = latchkey(dir.path())
        .args(["config", "check"])
        .env("LATCHKEY_DATABASE_URL", "postgres://app:hunter2@db.internal/latchkey")
        .env("LATCHKEY_SESSION_UPDATE_AGE", "7200")
        .output()
        .unwrap();

    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("secret = \"***\""));
    assert!(!stdout.contains(SECRET) && !stdout.contains("hunter2"));
    assert!(stdout.contains("debug_endpoints = true"), "the file is read");
    assert!(stdout.contains("expires_in = 86400"));
    assert!(stdout.contains("update_age = 7200"), "env wins over the file");
}

#[test]
fn config_check_says_where_the_development_secret_comes_from_and_shows_the_trusted_base_origin() {
    let dir = tempfile::tempdir().unwrap();
    let check = || {
        let output = latchkey(dir.path())
            .env_remove("LATCHKEY_SECRET")
            .env("LATCHKEY_TRUSTED_ORIGINS", "https://app.example.com")
            .args(["config", "check"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let before = check();
    assert!(before.contains("a development secret is generated into"), "{before}");
    assert!(before.contains(r#"trusted_origins = ["http://localhost:3000", "https://app.example.com"]"#), "{before}");

    std::fs::write(dir.path().join("cli.db.secret"), "d".repeat(64)).unwrap();
    let after = check();
    assert!(after.contains("secret = \"(development secret from "), "{after}");
    assert!(after.contains("cli.db.secret"), "{after}");
    assert!(!after.contains(&"d".repeat(64)), "never the secret itself");
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let output =
        latchkey(dir.path()).env("LATCHKEY_SESSION_EXPIRES_IN", "a month").args(["config", "check"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("LATCHKEY_SESSION_EXPIRES_IN: invalid type"), "{stderr}");
    assert!(!stderr.contains("SESSION.EXPIRES_IN"), "{stderr}");
}

#[test]
fn create_user_without_a_password_on_stdin_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let output = latchkey(dir.path())
        .args(["admin", "create-user", "--email", "nobody@example.com", "--name", "Nobody"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("no password came on stdin"), "{stderr}");
}

#[test]
fn help_advertises_only_what_is_built_and_no_internal_words() {
    let dir = tempfile::tempdir().unwrap();
    for args in [vec!["--help"], vec!["admin", "--help"]] {
        let output = latchkey(dir.path()).args(&args).output().unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success());
        // OAuth clients are built (`create-oauth-client`); OpenID Connect sign-in is not yet.
        for word in ["OIDC", "OpenID", "capability"] {
            assert!(!help.contains(word), "`{}` mentions {word}:\n{help}", args.join(" "));
        }
    }
}

#[test]
fn unknown_keys_in_the_config_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("latchkey.toml"), "debug_endpoint = true\n").unwrap();

    let output = latchkey(dir.path()).args(["config", "check"]).output().unwrap();

    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("debug_endpoint"));
}

#[test]
fn production_refuses_to_start_with_a_weak_secret_or_plain_http() {
    let dir = tempfile::tempdir().unwrap();

    let weak = latchkey(dir.path())
        .env("LATCHKEY_ENV", "production")
        .env("LATCHKEY_SECRET", "short")
        .env("LATCHKEY_BASE_URL", "https://auth.example.com")
        .output()
        .unwrap();
    let plain_http = latchkey(dir.path())
        .env("NODE_ENV", "production")
        .env("LATCHKEY_BASE_URL", "http://auth.example.com")
        .output()
        .unwrap();
    let missing = latchkey(dir.path())
        .env_remove("LATCHKEY_SECRET")
        .env("LATCHKEY_ENV", "production")
        .env("LATCHKEY_BASE_URL", "https://auth.example.com")
        .output()
        .unwrap();

    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("at least 32 bytes"));
    assert!(!plain_http.status.success());
    assert!(String::from_utf8_lossy(&plain_http.stderr).contains("https"));
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("LATCHKEY_SECRET is required"));
}

#[test]
fn development_generates_and_keeps_a_secret_next_to_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        latchkey(dir.path())
            .env_remove("LATCHKEY_SECRET")
            .args(["admin", "list-sessions", "--email", "x@example.com"])
            .output()
            .unwrap()
    };
    let migrate = latchkey(dir.path()).env_remove("LATCHKEY_SECRET").arg("migrate").output().unwrap();
    assert!(migrate.status.success());
    let mut server = latchkey(dir.path());
    server.env_remove("LATCHKEY_SECRET");
    let started = Server::start(server);
    let secret_file = dir.path().join("cli.db.secret");
    let first = std::fs::read_to_string(&secret_file).unwrap();
    drop(started);
    let mut again = latchkey(dir.path());
    again.env_remove("LATCHKEY_SECRET");
    let restarted = Server::start(again);

    assert!(first.len() >= 32);
    assert_eq!(std::fs::read_to_string(&secret_file).unwrap(), first);
    assert!(!restarted.logs().contains("generated a development secret"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&secret_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(!run().status.success(), "no such user");
}

#[tokio::test]
async fn admin_commands_create_users_list_and_revoke_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let mut create = latchkey(dir.path())
        .args(["admin", "create-user", "--email", "Root@Example.com", "--name", "Root", "--admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    create.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    let created = create.wait_with_output().unwrap();
    assert!(created.status.success());
    assert!(String::from_utf8_lossy(&created.stdout).contains("role=admin"));

    let server = Server::start(latchkey(dir.path()));
    let client = new_client();
    let signed_in = client
        .post(format!("{}{}", server.address, paths::SIGN_IN_EMAIL))
        .json(&json!({"email": "root@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    let cookies = cookie_header(&signed_in);
    let user: Value = signed_in.json().await.unwrap();
    assert_eq!(user["user"]["role"], "admin");

    let listed = latchkey(dir.path()).args(["admin", "list-sessions", "--email", "root@example.com"]).output().unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    let session_id = listed.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert!(session_id.starts_with("ses_"), "{listed}");

    let revoked = latchkey(dir.path()).args(["admin", "revoke-session", "--id", &session_id]).output().unwrap();
    assert!(revoked.status.success());

    // The cached cookie dies too, once the server's revocation poll (every 2 s on SQLite) has run.
    let bare = bare_client();
    let get_session = |query: &'static str| {
        bare.get(format!("{}{}{query}", server.address, paths::GET_SESSION)).header("cookie", &cookies).send()
    };
    let started = Instant::now();
    loop {
        let cached = get_session("").await.unwrap().text().await.unwrap();
        if cached == "null" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "cached cookie still accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get_session("?disableCookieCache=true").await.unwrap().text().await.unwrap(), "null");
}

#[tokio::test]
async fn admin_commands_create_orgs_members_and_api_keys_and_revoke_keys_on_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    for email in ["owner@example.com", "dev@example.com"] {
        let mut create = latchkey(dir.path())
            .args(["admin", "create-user", "--email", email, "--name", "User"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        create.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
        assert!(create.wait_with_output().unwrap().status.success());
    }
    let run = |args: &[&str]| {
        let output = latchkey(dir.path()).arg("admin").args(args).output().unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (ok, out) = run(&["create-org", "--name", "Acme", "--slug", "acme", "--owner-email", "owner@example.com"]);
    assert!(ok, "{out}");
    let org_id = out.split_whitespace().nth(2).unwrap().to_owned();
    assert!(org_id.starts_with("org_"), "{out}");
    assert!(run(&["add-member", "--org", "acme", "--email", "dev@example.com", "--role", "admin"]).0);
    assert!(!run(&["add-member", "--org", "acme", "--email", "dev@example.com"]).0, "already a member");
    assert!(!run(&["add-member", "--org", "nope", "--email", "dev@example.com"]).0, "no such org");

    let (ok, out) = run(&[
        "create-api-key",
        "--email",
        "dev@example.com",
        "--org",
        "acme",
        "--permissions",
        r#"{"extensions":["read"]}"#,
        "--name",
        "ci",
    ]);
    assert!(ok, "{out}");
    let key = out.lines().find_map(|l| l.strip_prefix("key (shown once): ")).unwrap().to_owned();
    let key_id = out.split_whitespace().nth(3).unwrap().to_owned();
    assert!(key.starts_with("lk_") && key_id.starts_with("key_"), "{out}");
    let (ok, listed) = run(&["list-api-keys", "--email", "dev@example.com"]);
    assert!(ok && listed.contains(&key_id) && listed.contains(&org_id) && !listed.contains(&key), "{listed}");
    assert!(!run(&["create-api-key", "--email", "owner@example.com", "--permissions", "not json"]).0);

    let server = Server::start(latchkey(dir.path()));
    let check =
        || bare_client().get(format!("{}{}", server.address, paths::AUTH_CHECK)).header("x-api-key", &key).send();
    let allowed = check().await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["x-auth-org-id"], org_id.as_str());
    assert_eq!(allowed.headers()["x-auth-scopes"], "extensions:read");

    assert!(run(&["revoke-api-key", "--id", &key_id]).0);
    assert!(!run(&["revoke-api-key", "--id", &key_id]).0, "already gone");
    // The running server evicts its cached copy at its next `cache_events` poll (every 2 s on SQLite).
    let started = Instant::now();
    while check().await.unwrap().status() != 401 {
        assert!(started.elapsed() < Duration::from_secs(5), "revoked key still accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!server.logs().contains(&key), "the key was logged");
}

#[tokio::test]
async fn admin_create_oauth_client_creates_what_the_management_api_shows() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = latchkey(dir.path()).arg("admin").args(args).output().unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (ok, out) = run(&[
        "create-oauth-client",
        "--name",
        "Dashboard",
        "--app-type",
        "regular_web",
        "--callback",
        "https://app.example.com/callback",
        "--callback",
        "http://localhost:3000/callback",
        "--web-origin",
        "https://app.example.com",
        "--third-party",
    ]);
    assert!(ok, "{out}");
    let client_id = out.split_whitespace().nth(3).unwrap().to_owned();
    let secret = out.lines().find_map(|l| l.strip_prefix("client secret (shown once): ")).unwrap().to_owned();
    assert_eq!((client_id.len(), secret.len()), (32, 64), "{out}");
    let (ok, spa) = run(&["create-oauth-client", "--name", "SPA", "--app-type", "spa"]);
    assert!(ok && !spa.contains("secret"), "a public client has no secret: {spa}");
    assert!(!run(&["create-oauth-client", "--name", "Bad", "--app-type", "spa", "--callback", "/relative"]).0);
    assert!(!run(&["create-oauth-client", "--name", "Bad", "--app-type", "desktop"]).0);
    let api =
        ["create-resource-server", "--name", "Orders", "--identifier", "https://orders", "--scope", "read:orders"];
    let (ok, out) = run(&api);
    assert!(ok && out.contains("https://orders"), "{out}");
    assert!(!run(&api).0, "the identifier is taken");
    let (ok, out) =
        run(&["grant", "--client-id", &client_id, "--audience", "https://orders", "--scope", "read:orders"]);
    assert!(ok && out.starts_with("created client grant cgr_"), "{out}");
    assert!(!run(&["grant", "--client-id", &client_id, "--audience", "https://orders", "--scope", "nope"]).0);
    assert!(!run(&["grant", "--client-id", "nope", "--audience", "https://orders"]).0);

    let mut command = latchkey(dir.path());
    command.env("MASTER_USERNAME", MASTER_USER).env("MASTER_PASSWORD", MASTER_PASSWORD);
    let server = Server::start(command);
    let url = format!("{}{}", server.address, paths::MGMT_CLIENT.replace("{id}", &client_id));
    let response = bare_client().get(url).basic_auth(MASTER_USER, Some(MASTER_PASSWORD)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let client: Value = response.json().await.unwrap();
    assert_eq!(client["name"], "Dashboard");
    assert_eq!(client["is_first_party"], false);
    assert_eq!(client["token_endpoint_auth_method"], "client_secret_post");
    assert_eq!(client["callbacks"], json!(["https://app.example.com/callback", "http://localhost:3000/callback"]));
    assert_eq!(client["web_origins"], json!(["https://app.example.com"]));
    assert!(client.get("client_secret").is_none());
    let url = format!("{}{}?client_id={client_id}", server.address, paths::MGMT_CLIENT_GRANTS);
    let response = bare_client().get(url).basic_auth(MASTER_USER, Some(MASTER_PASSWORD)).send().await.unwrap();
    let grants: Value = response.json().await.unwrap();
    assert_eq!(grants[0]["audience"], "https://orders");
    assert_eq!(grants[0]["scope"], json!(["read:orders"]));
    assert!(!server.logs().contains(&secret), "the secret was logged");
}

#[test]
fn sigterm_shuts_the_server_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(latchkey(dir.path()));

    stop(&mut server);

    assert!(server.logs().contains("shutting down"));
}

/// Sends SIGTERM and waits (bounded) for a clean exit (status 0), then for the log readers to drain.
pub(crate) fn stop(server: &mut Server) {
    let killed = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(200));
}

#[tokio::test]
async fn production_logs_are_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = latchkey(dir.path());
    command.env("LATCHKEY_ENV", "production").env("LATCHKEY_BASE_URL", "https://auth.example.com");
    let server = Server::start(command);

    bare_client().get(format!("{}{}", server.address, paths::HEALTHZ)).send().await.unwrap();

    let logs = server.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let parsed: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(parsed.get("level").is_some() && parsed.get("timestamp").is_some());
    }
}

/// `latchkey admin logs` prints what a running server stored, filtered, one JSON object per line; and a
/// graceful stop writes what was still queued.
#[tokio::test]
async fn admin_logs_prints_the_stored_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(latchkey(dir.path()));
    let client = new_client();
    let sign_up = json!({"name": "Ada", "email": "ada@example.com", "password": PASSWORD});
    let signed_up = client.post(format!("{}{}", server.address, paths::SIGN_UP_EMAIL)).json(&sign_up).send().await;
    assert_eq!(signed_up.unwrap().status(), 200);
    let wrong = json!({"email": "ada@example.com", "password": "not the password"});
    let refused = client.post(format!("{}{}", server.address, paths::SIGN_IN_EMAIL)).json(&wrong).send().await;
    assert_eq!(refused.unwrap().status(), 401);
    // SIGTERM: the server drains and flushes the audit queue before it exits.
    stop(&mut server);

    let run = |args: &[&str]| {
        let output = latchkey(dir.path()).args(["admin", "logs"]).args(args).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect::<Vec<Value>>()
    };
    let all = run(&[]);
    let kinds: Vec<&str> = all.iter().map(|record| record["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"ss") && kinds.contains(&"f") && kinds.contains(&"session_created"), "{kinds:?}");
    let failures = run(&["--type", "f", "--outcome", "failure"]);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["ip"], "127.0.0.1");
    let user = all.iter().find(|record| record["type"] == "ss").unwrap()["user_id"].as_str().unwrap().to_owned();
    assert!(run(&["--user", &user]).iter().all(|record| record["user_id"] == user.as_str()));
    assert!(run(&["--from", "2999-01-01"]).is_empty());
    assert_eq!(run(&["--to", "2999-01-01", "--limit", "1"]).len(), 1);
    let bad = latchkey(dir.path()).args(["admin", "logs", "--from", "yesterday"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(!all.iter().any(|record| record.to_string().contains(PASSWORD)));
}
