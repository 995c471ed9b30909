//! Database faults under two nodes on PostgreSQL (issue 15, item 2): a node's LISTEN connection terminated,
//! its backend frozen (SIGSTOP) while the connection stays open, and PostgreSQL itself stopped and started
//! again while both nodes serve. Nodes recover without a restart, revocations reach every node within a
//! second of the listener being back, and while the database is down cached checks answer from memory,
//! writes fail with 503 `DATABASE_UNAVAILABLE` before the request timeout, and `/readyz` says not ready.
//!
//! The tests that stop backends or the server run a PostgreSQL cluster of their own (initdb in a temp dir,
//! on a free port), so the shared server other tests use is never disturbed.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use latchkey::{paths, storage::notify::LISTENER_APPLICATION_NAME};
use reqwest::{header, Method, Response};
use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::*;

/// A PostgreSQL cluster of the test's own, stopped (immediately) and deleted when dropped.
struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PgCluster {
    /// `None` (with a notice) when PostgreSQL tests are not configured. Panics when they are but the server
    /// binaries (`initdb`, `pg_ctl`) are missing: the PostgreSQL the tests need is a local one.
    fn start() -> Option<PgCluster> {
        if std::env::var("LATCHKEY_TEST_POSTGRES_URL").is_err() {
            eprintln!("LATCHKEY_TEST_POSTGRES_URL is not set: skipping a test that runs its own PostgreSQL cluster");
            return None;
        }
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
            .max()
            .expect("PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = PgCluster { dir, bin, port };
        if is_root() {
            // initdb refuses to run as root: the cluster belongs to the postgres user.
            run(Command::new("chown").arg("-R").arg("postgres:").arg(cluster.dir.path()));
        }
        run(cluster
            .command("initdb")
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(cluster.data()));
        cluster.run_ctl(&["start"]);
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// `pg_ctl start|stop`, waiting until it is done.
    fn run_ctl(&self, action: &[&str]) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        run(self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-o", &options])
            .args(action));
    }

    /// A fast shutdown: every session is told the server is going down, as on a restart.
    fn stop(&self) {
        self.run_ctl(&["-m", "fast", "stop"]);
    }

    fn restart_after_stop(&self) {
        self.run_ctl(&["start"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").args(["-w", "-m", "immediate", "-D"]).arg(self.data()).arg("stop").output();
    }
}

fn is_root() -> bool {
    Path::new("/proc/self").metadata().map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits until `count` listener backends, none of them in `old`, are connected; returns their pids.
async fn wait_for_listeners(url: &str, count: usize, old: &[i32], within: Duration) -> Vec<i32> {
    let started = Instant::now();
    loop {
        if let Ok(Ok(pids)) = tokio::time::timeout(Duration::from_secs(2), async {
            let mut connection = sqlx::PgConnection::connect(url).await?;
            sqlx::query_scalar::<_, i32>(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
            )
            .bind(LISTENER_APPLICATION_NAME)
            .fetch_all(&mut connection)
            .await
        })
        .await
        {
            let fresh: Vec<i32> = pids.into_iter().filter(|pid| !old.contains(pid)).collect();
            if fresh.len() >= count {
                return fresh;
            }
        }
        assert!(started.elapsed() < within, "{count} new listener(s) did not connect within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends SIGCONT to the stopped backends when dropped, whatever the test's outcome.
struct Stopped(Vec<i32>);

impl Drop for Stopped {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill").args(["-CONT", &pid.to_string()]).status();
        }
    }
}

/// Polls `get-session` with `cookies` on `node` until it answers `null`; panics after `within`.
async fn wait_until_refused(node: &TestApp, cookies: &str, since: Instant, within: Duration) -> Duration {
    loop {
        let answer =
            bare_client().get(node.url(paths::GET_SESSION)).header(header::COOKIE, cookies).send().await.unwrap();
        if answer.text().await.unwrap() == "null" {
            return since.elapsed();
        }
        assert!(since.elapsed() < within, "the revoked session is still accepted after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get_session(node: &TestApp, cookies: &str) -> Value {
    let answer = bare_client().get(node.url(paths::GET_SESSION)).header(header::COOKIE, cookies).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}

async fn sign_out(node: &TestApp, cookies: &str) -> Response {
    bare_client()
        .post(node.url(paths::SIGN_OUT))
        .header(header::COOKIE, cookies)
        .header(header::ORIGIN, ORIGIN)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
}

/// A signed-up user's cookies, remembered (cookie cache) on every node by one get-session each.
async fn signed_up_everywhere(nodes: &[&TestApp], email: &str) -> String {
    let cookies = cookie_header(&nodes[0].sign_up(email).await);
    for node in nodes {
        assert_eq!(get_session(node, &cookies).await["user"]["email"], email);
    }
    cookies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn a_terminated_listener_connection_is_replaced_and_a_revocation_in_the_gap_is_enforced() {
    let Some(db) = PgDatabase::create().await else { return };
    let url = db.url.clone();
    let node_a = spawn_app_on(TestDb::Postgres(db), |_| {}).await;
    let node_b = spawn_node(&url, |_| {}).await;
    let listeners = wait_for_listeners(&url, 2, &[], Duration::from_secs(10)).await;
    let alice = signed_up_everywhere(&[&node_a, &node_b], "alice@example.com").await;
    let bob = signed_up_everywhere(&[&node_a, &node_b], "bob@example.com").await;

    // For half a second every listener connection of this database is terminated as soon as it shows,
    // and alice signs out in the middle of it: her revocation's NOTIFY finds no listener (or one about
    // to go), so the other node learns it from the resync its listener runs on reconnecting.
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let started = Instant::now();
    let mut terminated = 0;
    let mut signed_out = false;
    while started.elapsed() < Duration::from_millis(500) {
        terminated += sqlx::query_scalar::<_, i64>(
            // OFFSET 0 keeps the filter apart from the call: terminate only what it selects.
            "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1 OFFSET 0) listeners",
        )
        .bind(LISTENER_APPLICATION_NAME)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if !signed_out && started.elapsed() > Duration::from_millis(250) {
            assert_eq!(sign_out(&node_a, &alice).await.status(), 200);
            signed_out = true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(terminated >= 2, "the listeners were never terminated");
    let back = wait_for_listeners(&url, 2, &listeners, Duration::from_secs(3)).await;
    let took = wait_until_refused(&node_b, &alice, Instant::now(), Duration::from_secs(1)).await;
    eprintln!("{terminated} listener connections terminated; refused {took:?} after the listeners were back");
    // Both listeners are back on new connections, without a restart, and NOTIFY works again.
    assert_eq!(back.len(), 2);
    assert_eq!(sign_out(&node_a, &bob).await.status(), 200);
    wait_until_refused(&node_b, &bob, Instant::now(), Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn a_listener_whose_backend_freezes_is_noticed_by_its_missing_ping_and_replaced() {
    let Some(cluster) = PgCluster::start() else { return };
    let url = cluster.url();
    let node_a = spawn_node(&url, |_| {}).await;
    let node_b = spawn_node(&url, |_| {}).await;
    let listeners = wait_for_listeners(&url, 2, &[], Duration::from_secs(10)).await;
    let alice = signed_up_everywhere(&[&node_a, &node_b], "alice@example.com").await;

    // The connections stay open, the backends just stop: no error ever reaches the listeners.
    let stopped = Stopped(listeners.clone());
    for pid in &listeners {
        run(Command::new("kill").args(["-STOP", &pid.to_string()]));
    }
    assert_eq!(sign_out(&node_a, &alice).await.status(), 200);
    let signed_out = Instant::now();

    // Without the ping this waits for the 10 s poll.
    let took = wait_until_refused(&node_b, &alice, signed_out, Duration::from_secs(1)).await;
    eprintln!("refused on the other node {took:?} after the sign-out, with its listener's backend stopped");
    wait_for_listeners(&url, 2, &listeners, Duration::from_secs(2)).await;
    drop(stopped);
    // The replaced listeners keep working.
    let bob = signed_up_everywhere(&[&node_a, &node_b], "bob@example.com").await;
    assert_eq!(sign_out(&node_a, &bob).await.status(), 200);
    wait_until_refused(&node_b, &bob, Instant::now(), Duration::from_secs(1)).await;
}

/// Asserts a JSON 503 `DATABASE_UNAVAILABLE` with `Retry-After`, answered within `within` of `started`.
async fn assert_unavailable(response: Response, started: Instant, within: Duration, what: &str) {
    let took = started.elapsed();
    assert_eq!(response.status(), 503, "{what}");
    assert_eq!(response.headers()[header::RETRY_AFTER], "1", "{what}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "DATABASE_UNAVAILABLE", "{what}: {body}");
    assert!(took < within, "{what} took {took:?} (at most {within:?})");
    eprintln!("{what}: 503 after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_postgres_tests), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn postgres_restarting_under_two_nodes() {
    let Some(cluster) = PgCluster::start() else { return };
    let url = cluster.url();
    let node_a = spawn_node(&url, with_master_credentials).await;
    let node_b = spawn_node(&url, with_master_credentials).await;
    let listeners = wait_for_listeners(&url, 2, &[], Duration::from_secs(10)).await;

    // What each node remembers: a session cookie, an API key, a service token.
    let alice = signed_up_everywhere(&[&node_a, &node_b], "alice@example.com").await;
    let created = bare_client()
        .post(node_a.url(paths::API_KEY_CREATE))
        .header(header::COOKIE, &alice)
        .header(header::ORIGIN, ORIGIN)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let api_key = created.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_owned();
    let check_key =
        |node: &TestApp| bare_client().get(node.url(paths::AUTH_CHECK)).header("x-api-key", &api_key).send();
    let client = create_client(&node_a, "billing").await;
    let user = create_user(&node_a, &client.key, json!({"externalId": "u-1"})).await;
    let token = issue(&node_a, &client.key, &user).await;
    let me = |node: &TestApp| bare_client().get(node.url(paths::V1_ME)).bearer_auth(&token).send();
    for node in [&node_a, &node_b] {
        assert_eq!(check_key(node).await.unwrap().status(), 200);
        assert_eq!(me(node).await.unwrap().status(), 200);
    }

    cluster.stop();

    // Down: what is remembered answers from memory on both nodes…
    for node in [&node_a, &node_b] {
        let started = Instant::now();
        assert_eq!(get_session(node, &alice).await["user"]["email"], "alice@example.com");
        assert_eq!(check_key(node).await.unwrap().status(), 200);
        assert_eq!(me(node).await.unwrap().status(), 200);
        assert!(started.elapsed() < Duration::from_secs(1), "cached checks took {:?}", started.elapsed());
    }
    // …writes fail with a 503 well before the 30 s request timeout, and neither node is ready.
    let started = Instant::now();
    let sign_up = node_a.sign_up("carol@example.com").await;
    assert_unavailable(sign_up, started, Duration::from_secs(8), "sign-up while the database is down").await;
    let started = Instant::now();
    let new_user =
        with_key(&node_b, Method::POST, paths::V1_USERS, &client.key).json(&json!({"externalId": "u-2"})).send();
    assert_unavailable(new_user.await.unwrap(), started, Duration::from_secs(8), "service user while down").await;
    for node in [&node_a, &node_b] {
        let started = Instant::now();
        let ready = bare_client().get(node.url(paths::READYZ)).send().await.unwrap();
        assert_unavailable(ready, started, Duration::from_secs(3), "/readyz while the database is down").await;
    }

    cluster.restart_after_stop();

    // Both nodes recover by themselves.
    let restarted = Instant::now();
    for node in [&node_a, &node_b] {
        loop {
            let ready = bare_client().get(node.url(paths::READYZ)).send().await.unwrap();
            if ready.status() == 200 {
                break;
            }
            assert!(restarted.elapsed() < Duration::from_secs(15), "a node is not ready again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A revocation made as soon as the database is back, possibly before a listener is: enforced on the
    // other node within a second of its listener's return.
    assert_eq!(sign_out(&node_a, &alice).await.status(), 200);
    let signed_out = Instant::now();
    wait_for_listeners(&url, 2, &listeners, Duration::from_secs(15)).await;
    let back = Instant::now();
    wait_until_refused(&node_b, &alice, back, Duration::from_secs(1)).await;
    eprintln!("refused on the other node {:?} after the sign-out", signed_out.elapsed());

    // Nothing was half-written: the refused sign-up left the email free, the refused user does not exist.
    assert_eq!(node_b.sign_up("carol@example.com").await.status(), 200);
    let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM service_users WHERE external_id = 'u-2'")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(users, 0);
    // And what was there before is intact.
    assert_eq!(node_b.sign_in("alice@example.com", PASSWORD).await.status(), 200);
    assert_eq!(me(&node_b).await.unwrap().status(), 200);
}
