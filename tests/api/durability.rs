//! Crashes and storage faults through the real binary (issue 15, items 1 and 2): the server is killed with
//! SIGKILL under concurrent load, during a signing-key rotation and during the periodic cleanup, and
//! restarted on the same database; every acknowledged write must be there, every acknowledged revocation
//! still refused, and nothing half-written. On SQLite, a full disk and a read-only volume give clear
//! errors (a 503 with a code for writes while reads go on, or a refusal to start that says what to check)
//! and never a corrupt file.

use std::{
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

use latchkey::{db_run, paths, storage::Db};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use reqwest::{header, RequestBuilder};
use serde_json::{json, Value};

use crate::{
    both_backends,
    cli::{latchkey, stop, Server},
    helpers::*,
    oauth_flow::{hidden, query_of, APP_ORIGIN, CALLBACK, CHALLENGE, VERIFIER},
};

both_backends!(
    acknowledged_writes_survive_sigkill_under_load,
    a_kill_during_key_rotation_leaves_a_consistent_key_set,
    a_kill_during_cleanup_loses_no_live_row,
);

// ---------------------------------------------------------------------------------------------------------
// The process under test

/// The real binary on one database, killed with SIGKILL and started again at will. Each start takes a new
/// port; clients read the current one from `address`.
///
/// Fields drop in order: the server is killed, then a tmpfs unmounted, then the directories removed.
struct Crashing {
    server: Option<Server>,
    /// The tmpfs the SQLite database is on, if it is on one.
    mount: Option<Tmpfs>,
    db: TestDb,
    /// The working directory.
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    address: Arc<RwLock<String>>,
    /// Every start's logs, for failure messages.
    logs: Vec<String>,
}

/// A small tmpfs (root only), unmounted when dropped: a disk that fills up, or that turns read-only.
struct Tmpfs {
    path: std::path::PathBuf,
}

impl Tmpfs {
    /// Mounts one of `size` (e.g. `16m`) on `path`; `None`, with a notice, where mounting is not allowed.
    fn mount(path: &std::path::Path, size: &str) -> Option<Tmpfs> {
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            eprintln!("skipping: cannot mount a tmpfs here (needs root, or CAP_SYS_ADMIN)");
            return None;
        }
        Some(Tmpfs { path: path.to_owned() })
    }

    /// `ro` or `rw`: as an operator's volume turning read-only, and back.
    fn remount(&self, mode: &str) {
        let status = Command::new("mount").args(["-o", &format!("remount,{mode}")]).arg(&self.path).status().unwrap();
        assert!(status.success(), "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

impl Crashing {
    /// A fresh database for `backend` (`None` with a notice when PostgreSQL is not configured), with the
    /// master credentials and generous rate limits (every client is 127.0.0.1); `env` adds settings.
    async fn new(backend: Backend, env: &[(&'static str, &str)]) -> Option<Crashing> {
        let dir = tempfile::tempdir().unwrap();
        let db = match backend {
            Backend::Sqlite => TestDb::Sqlite(tempfile::tempdir_in(dir.path()).unwrap()),
            Backend::Postgres => TestDb::Postgres(PgDatabase::create().await?),
        };
        let mut all = vec![
            ("MASTER_USERNAME", MASTER_USER.to_owned()),
            ("MASTER_PASSWORD", MASTER_PASSWORD.to_owned()),
            ("LATCHKEY_RATE_LIMIT_SIGN_IN_PER_IP", "1000000".to_owned()),
            ("LATCHKEY_RATE_LIMIT_SIGN_UP_PER_IP", "1000000".to_owned()),
            ("LATCHKEY_RATE_LIMIT_VERIFY_PER_IP", "1000000".to_owned()),
        ];
        all.extend(env.iter().map(|(name, value)| (*name, (*value).to_owned())));
        Some(Crashing { server: None, mount: None, db, dir, env: all, address: Arc::default(), logs: Vec::new() })
    }

    /// SQLite on a tmpfs of `size` of its own; `None` where mounting is not allowed.
    async fn on_tmpfs(size: &str) -> Option<Crashing> {
        let mut process = Crashing::new(Backend::Sqlite, &[]).await?;
        let TestDb::Sqlite(dir) = &process.db else { unreachable!() };
        process.mount = Some(Tmpfs::mount(dir.path(), size)?);
        Some(process)
    }

    /// The SQLite file (on SQLite).
    fn sqlite_path(&self) -> std::path::PathBuf {
        match &self.db {
            TestDb::Sqlite(dir) => dir.path().join("latchkey.db"),
            TestDb::Postgres(_) => unreachable!("not SQLite"),
        }
    }

    /// `latchkey` on this database with these settings (the server, or with arguments a command).
    fn command(&self) -> Command {
        let mut command = latchkey(self.dir.path());
        command.env("LATCHKEY_DATABASE_URL", self.db.url());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    /// Starts the server and waits until it listens.
    fn start(&mut self) {
        let server = tokio::task::block_in_place(|| Server::start(self.command()));
        *self.address.write().unwrap() = server.address.clone();
        self.server = Some(server);
    }

    /// SIGKILL: no drain, no flush, no checkpoint.
    fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.child.kill().unwrap();
            server.child.wait().unwrap();
            self.logs.push(server.logs());
        }
    }

    /// SIGTERM, and a clean exit.
    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            tokio::task::block_in_place(|| stop(&mut server));
            self.logs.push(server.logs());
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.address.read().unwrap(), path)
    }

    /// The logs of every start so far (the running one last).
    fn all_logs(&self) -> String {
        let mut logs = self.logs.join("\n--- killed; restarted ---\n");
        if let Some(server) = &self.server {
            logs.push_str("\n--- running ---\n");
            logs.push_str(&server.logs());
        }
        logs
    }

    /// A pool of the test's own on the database, to look at what the server left.
    async fn inspect(&self) -> Db {
        Db::connect(&self.db.url(), 2).await.expect("open the database")
    }
}

/// SQLite's own verdict on its file, and that no foreign key points nowhere (PostgreSQL enforces both).
async fn assert_consistent(db: &Db) {
    if let Db::Sqlite(pool, _) = db {
        let integrity: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(pool).await.unwrap();
        assert_eq!(integrity, "ok");
        let dangling = sqlx::query("PRAGMA foreign_key_check").fetch_all(pool).await.unwrap();
        assert!(dangling.is_empty(), "{} rows with a dangling foreign key", dangling.len());
    }
    // Sign-up writes a user and its credential in one transaction: never one without the other.
    const WITHOUT_ACCOUNT: &str =
        "SELECT COUNT(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.user_id = u.id)";
    let half: i64 = db_run!(db, |pool| sqlx::query_scalar(WITHOUT_ACCOUNT).fetch_one(pool).await.unwrap());
    assert_eq!(half, 0, "users without an account");
}

/// An HTTP client whose every request is bounded.
fn http(cookies: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(cookies)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// An answer read whole.
struct Answer {
    status: u16,
    body: Value,
    /// The session cookies it set, as a `Cookie` header.
    cookie: String,
    location: Option<String>,
}

/// What became of a request.
enum Reply {
    Answered(Answer),
    /// No answer, or one cut off by the kill: the request may or may not have taken effect.
    Lost,
    /// The client gave up waiting: the server hung.
    TimedOut,
}

async fn send(request: RequestBuilder) -> Reply {
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) if error.is_timeout() => return Reply::TimedOut,
        Err(_) => return Reply::Lost,
    };
    let status = response.status().as_u16();
    let cookie = cookie_header(&response);
    let location = response.headers().get(header::LOCATION).map(|value| value.to_str().unwrap().to_owned());
    let text = match response.text().await {
        Ok(text) => text,
        Err(error) if error.is_timeout() => return Reply::TimedOut,
        Err(_) => return Reply::Lost,
    };
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    Reply::Answered(Answer { status, body, cookie, location })
}

/// An answer that must come (the server is up and nobody kills it).
async fn answer(request: RequestBuilder) -> Answer {
    match send(request).await {
        Reply::Answered(answer) => answer,
        Reply::Lost => panic!("no answer from a running server"),
        Reply::TimedOut => panic!("the server did not answer within 10 s"),
    }
}

/// An `/authorize` path for the SPA client (PKCE, offline access).
fn authorize_path(client_id: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", CALLBACK),
            ("scope", "openid profile email offline_access"),
            ("state", "st-123"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    format!("{}?{query}", paths::AUTHORIZE)
}

/// The code-exchange request for a redirect to the callback.
fn exchange(base: &str, client_id: &str, redirect: &str) -> RequestBuilder {
    let code = query_of(redirect).remove("code").unwrap_or_else(|| panic!("no code in {redirect}"));
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("code", &code),
        ("redirect_uri", CALLBACK),
        ("code_verifier", VERIFIER),
    ];
    http(false).post(format!("{base}{}", paths::TOKEN)).form(&form)
}

fn refresh(base: &str, client_id: &str, token: &str) -> RequestBuilder {
    let form = [("grant_type", "refresh_token"), ("client_id", client_id), ("refresh_token", token)];
    http(false).post(format!("{base}{}", paths::TOKEN)).form(&form)
}

fn str_of(body: &Value, field: &str) -> String {
    body[field].as_str().unwrap_or_else(|| panic!("no {field} in {body}")).to_owned()
}

// ---------------------------------------------------------------------------------------------------------
// 1. SIGKILL under load

/// The email of the user every worker's browser signs in as (OAuth families).
const OAUTH_EMAIL: &str = "ada@example.com";

/// What the last acknowledged answer says of a revocable thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Created (acknowledged), never revoked.
    Live,
    /// Its revocation was acknowledged.
    Revoked,
    /// Its revocation was sent and got no answer: either is right.
    Unknown,
}

struct Account {
    email: String,
    /// The sign-up was answered 200 (otherwise it got no answer).
    acknowledged: bool,
    /// The session the sign-up started.
    cookie: String,
    session: Fate,
}

struct ApiKey {
    key: String,
    id: String,
    /// Index of the owner in the worker's accounts (whose session deletes it).
    owner: usize,
    fate: Fate,
}

struct ServiceToken {
    token: String,
    fate: Fate,
}

/// One refresh-token family: the last acknowledged refresh and access tokens.
struct Family {
    refresh: String,
    access: String,
    fate: Fate,
    rotations: usize,
}

/// Everything one worker was told.
#[derive(Default)]
struct Ledger {
    accounts: Vec<Account>,
    keys: Vec<ApiKey>,
    service_users: Vec<(String, String)>,
    service_tokens: Vec<ServiceToken>,
    families: Vec<Family>,
    answered: usize,
    lost: usize,
    /// Answers that were neither a 2xx nor lost to a kill: none is expected.
    unexpected: Vec<String>,
}

/// What every worker shares.
struct Load {
    address: Arc<RwLock<String>>,
    client_key: String,
    spa: String,
    stop: AtomicBool,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    SignUp,
    CreateKey,
    DeleteKey,
    SignOut,
    ServiceUser,
    ServiceToken,
    RevokeServiceToken,
    Refresh,
    NewFamily,
    RevokeFamily,
}

/// One client task: a round does every operation once, in a random order, until told to stop.
struct Worker {
    load: Arc<Load>,
    number: usize,
    rng: StdRng,
    /// Signed in as [`OAUTH_EMAIL`] (its SSO session starts new families).
    browser: reqwest::Client,
    http: reqwest::Client,
    ledger: Ledger,
}

impl Worker {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.load.address.read().unwrap(), path)
    }

    /// Sends and books the outcome: `Some` for a 2xx (or the redirect of `/authorize`), `None` for no answer (after a short pause, so a
    /// worker does not spin while the server is down) or for anything else (recorded as unexpected).
    async fn call(&mut self, what: &str, request: RequestBuilder) -> Option<Answer> {
        match send(request).await {
            Reply::Answered(answer) if (200..400).contains(&answer.status) => {
                self.ledger.answered += 1;
                Some(answer)
            }
            Reply::Answered(answer) => {
                self.ledger.unexpected.push(format!("{what}: {} {}", answer.status, answer.body));
                None
            }
            Reply::Lost => {
                self.ledger.lost += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                None
            }
            Reply::TimedOut => {
                self.ledger.unexpected.push(format!("{what}: no answer within 10 s"));
                None
            }
        }
    }

    /// Whether the last call got no answer (as opposed to an unexpected one).
    fn was_lost(&self, lost_before: usize) -> bool {
        self.ledger.lost > lost_before
    }

    fn pick(&mut self, candidates: Vec<usize>, keep: usize) -> Option<usize> {
        (candidates.len() > keep).then(|| candidates[self.rng.gen_range(0..candidates.len())])
    }

    async fn run(mut self) -> Ledger {
        let mut ops = [
            Op::SignUp,
            Op::CreateKey,
            Op::DeleteKey,
            Op::SignOut,
            Op::ServiceUser,
            Op::ServiceToken,
            Op::RevokeServiceToken,
            Op::Refresh,
            Op::Refresh,
            Op::NewFamily,
            Op::RevokeFamily,
        ];
        while !self.load.stop.load(Ordering::Relaxed) {
            ops.shuffle(&mut self.rng);
            for op in ops {
                if self.load.stop.load(Ordering::Relaxed) {
                    break;
                }
                self.step(op).await;
            }
        }
        self.ledger
    }

    async fn step(&mut self, op: Op) {
        let lost = self.ledger.lost;
        match op {
            Op::SignUp if self.ledger.accounts.len() < 12 => {
                let email = format!("w{}-{}@example.com", self.number, self.ledger.accounts.len());
                let body = json!({"name": "Load", "email": email, "password": PASSWORD});
                let request = self.http.post(self.url(paths::SIGN_UP_EMAIL)).header(header::ORIGIN, ORIGIN).json(&body);
                let answer = self.call("sign-up", request).await;
                let acknowledged = answer.is_some();
                if acknowledged || self.was_lost(lost) {
                    let cookie = answer.map(|a| a.cookie).unwrap_or_default();
                    let session = if acknowledged { Fate::Live } else { Fate::Unknown };
                    self.ledger.accounts.push(Account { email, acknowledged, cookie, session });
                }
            }
            Op::CreateKey if self.ledger.keys.len() < 60 => {
                let live = self.live_accounts();
                let Some(owner) = self.pick(live, 0) else { return };
                let request = self
                    .http
                    .post(self.url(paths::API_KEY_CREATE))
                    .header(header::ORIGIN, ORIGIN)
                    .header(header::COOKIE, &self.ledger.accounts[owner].cookie)
                    .json(&json!({"name": "load"}));
                if let Some(answer) = self.call("api-key create", request).await {
                    let (key, id) = (str_of(&answer.body, "key"), str_of(&answer.body, "id"));
                    self.ledger.keys.push(ApiKey { key, id, owner, fate: Fate::Live });
                }
            }
            Op::DeleteKey => {
                let deletable = (0..self.ledger.keys.len())
                    .filter(|&k| {
                        let key = &self.ledger.keys[k];
                        key.fate == Fate::Live && self.ledger.accounts[key.owner].session == Fate::Live
                    })
                    .collect();
                let Some(k) = self.pick(deletable, 2) else { return };
                let owner = self.ledger.keys[k].owner;
                let request = self
                    .http
                    .post(self.url(paths::API_KEY_DELETE))
                    .header(header::ORIGIN, ORIGIN)
                    .header(header::COOKIE, &self.ledger.accounts[owner].cookie)
                    .json(&json!({"keyId": self.ledger.keys[k].id}));
                let done = self.call("api-key delete", request).await.is_some();
                self.ledger.keys[k].fate = if done { Fate::Revoked } else { Fate::Unknown };
            }
            Op::SignOut => {
                let live = self.live_accounts();
                let Some(a) = self.pick(live, 2) else { return };
                let request = self
                    .http
                    .post(self.url(paths::SIGN_OUT))
                    .header(header::ORIGIN, ORIGIN)
                    .header(header::COOKIE, &self.ledger.accounts[a].cookie)
                    .json(&json!({}));
                let done = self.call("sign-out", request).await.is_some();
                self.ledger.accounts[a].session = if done { Fate::Revoked } else { Fate::Unknown };
            }
            Op::ServiceUser if self.ledger.service_users.len() < 10 => {
                let request = self
                    .http
                    .post(self.url(paths::V1_USERS))
                    .header("x-api-key", &self.load.client_key)
                    .json(&json!({}));
                if let Some(answer) = self.call("service user", request).await {
                    self.ledger.service_users.push((str_of(&answer.body, "userId"), str_of(&answer.body, "secret")));
                }
            }
            Op::ServiceToken if !self.ledger.service_users.is_empty() && self.ledger.service_tokens.len() < 80 => {
                let (user, secret) = self.ledger.service_users.choose(&mut self.rng).unwrap().clone();
                let request = self
                    .http
                    .post(self.url(paths::V1_TOKEN))
                    .header("x-api-key", &self.load.client_key)
                    .json(&json!({"userId": user, "secret": secret}));
                if let Some(answer) = self.call("service token", request).await {
                    let token = str_of(&answer.body, "accessToken");
                    self.ledger.service_tokens.push(ServiceToken { token, fate: Fate::Live });
                }
            }
            Op::RevokeServiceToken => {
                let live = (0..self.ledger.service_tokens.len())
                    .filter(|&t| self.ledger.service_tokens[t].fate == Fate::Live)
                    .collect();
                let Some(t) = self.pick(live, 2) else { return };
                let request = self
                    .http
                    .post(self.url(paths::V1_TOKEN_REVOKE))
                    .header("x-api-key", &self.load.client_key)
                    .json(&json!({"token": self.ledger.service_tokens[t].token}));
                let done = self.call("service token revoke", request).await.is_some();
                self.ledger.service_tokens[t].fate = if done { Fate::Revoked } else { Fate::Unknown };
            }
            Op::Refresh => {
                let live = self.live_families();
                let Some(f) = self.pick(live, 0) else { return };
                // After a refresh that got no answer, the same token again: within the client's leeway the
                // answer is the successor that refresh stored, and the family lives on.
                let base = self.load.address.read().unwrap().clone();
                let request = refresh(&base, &self.load.spa, &self.ledger.families[f].refresh);
                if let Some(answer) = self.call("refresh", request).await {
                    let family = &mut self.ledger.families[f];
                    family.refresh = str_of(&answer.body, "refresh_token");
                    family.access = str_of(&answer.body, "access_token");
                    family.rotations += 1;
                }
            }
            Op::NewFamily if self.ledger.families.len() < 20 => {
                let request = self.browser.get(self.url(&authorize_path(&self.load.spa)));
                let Some(redirect) = self.call("authorize", request).await else { return };
                let to = redirect.location.unwrap_or_default();
                if !to.starts_with(CALLBACK) {
                    self.ledger.unexpected.push(format!("authorize with the SSO session went to {to}"));
                    return;
                }
                let base = self.load.address.read().unwrap().clone();
                if let Some(tokens) = self.call("code exchange", exchange(&base, &self.load.spa, &to)).await {
                    self.ledger.families.push(Family {
                        refresh: str_of(&tokens.body, "refresh_token"),
                        access: str_of(&tokens.body, "access_token"),
                        fate: Fate::Live,
                        rotations: 0,
                    });
                }
            }
            Op::RevokeFamily => {
                let live = self.live_families();
                let Some(f) = self.pick(live, 2) else { return };
                let form = [
                    ("client_id", self.load.spa.as_str()),
                    ("token", self.ledger.families[f].refresh.as_str()),
                    ("token_type_hint", "refresh_token"),
                ];
                let request = self.http.post(self.url(paths::REVOKE)).form(&form);
                let done = self.call("refresh token revoke", request).await.is_some();
                self.ledger.families[f].fate = if done { Fate::Revoked } else { Fate::Unknown };
            }
            _ => {}
        }
    }

    fn live_accounts(&self) -> Vec<usize> {
        (0..self.ledger.accounts.len()).filter(|&a| self.ledger.accounts[a].session == Fate::Live).collect()
    }

    fn live_families(&self) -> Vec<usize> {
        (0..self.ledger.families.len()).filter(|&f| self.ledger.families[f].fate == Fate::Live).collect()
    }
}

/// Signs a fresh browser in as [`OAUTH_EMAIL`] through `/authorize` and the login page; returns the
/// browser (holding the SSO session) and the first family.
async fn browser_signed_in(base: &str, spa: &str) -> (reqwest::Client, Family) {
    let browser = http(true);
    let start = answer(browser.get(format!("{base}{}", authorize_path(spa)))).await;
    let login_path = start.location.unwrap_or_else(|| panic!("authorize: {} {}", start.status, start.body));
    let login = answer(browser.get(format!("{base}{login_path}"))).await;
    let html = login.body.as_str().unwrap_or_default().to_owned();
    let form = [
        ("state", hidden(&html, "state")),
        ("csrf", hidden(&html, "csrf")),
        ("email", OAUTH_EMAIL.to_owned()),
        ("password", PASSWORD.to_owned()),
    ];
    let signed_in =
        answer(browser.post(format!("{base}{}", paths::LOGIN)).header(header::ORIGIN, ORIGIN).form(&form)).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let back = answer(browser.get(format!("{base}{}", signed_in.location.unwrap()))).await;
    let tokens = answer(exchange(base, spa, &back.location.unwrap())).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let family = Family {
        refresh: str_of(&tokens.body, "refresh_token"),
        access: str_of(&tokens.body, "access_token"),
        fate: Fate::Live,
        rotations: 0,
    };
    (browser, family)
}

/// Concurrent sign-ups, API keys, service users and tokens, refresh-token rotations and revocations of
/// each; the server is SIGKILLed three times mid-load and once more after it, and restarted on the same
/// database each time. Then every acknowledged creation exists and works, every acknowledged revocation
/// is still refused, and what got no answer is all there or not there at all.
async fn acknowledged_writes_survive_sigkill_under_load(backend: Backend) {
    let Some(mut process) = Crashing::new(backend, &[]).await else { return };
    let seed: u64 = rand::random();
    eprintln!("durability load seed: {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    process.start();
    let base = process.url("");
    let plain = http(false);

    let created = answer(
        plain
            .post(process.url(paths::V1_CLIENTS))
            .basic_auth(MASTER_USER, Some(MASTER_PASSWORD))
            .json(&json!({"name": "load"})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let client_key = str_of(&created.body, "apiKey");
    let spa_body = json!({"name": "Shop", "app_type": "spa", "callbacks": [CALLBACK], "web_origins": [APP_ORIGIN],
        "refresh_token": {"leeway": 60}});
    let spa = answer(
        plain.post(process.url(paths::MGMT_CLIENTS)).basic_auth(MASTER_USER, Some(MASTER_PASSWORD)).json(&spa_body),
    )
    .await;
    assert_eq!(spa.status, 201, "{}", spa.body);
    let spa = str_of(&spa.body, "client_id");
    let signed_up = answer(
        plain
            .post(process.url(paths::SIGN_UP_EMAIL))
            .header(header::ORIGIN, ORIGIN)
            .json(&json!({"name": "Ada", "email": OAUTH_EMAIL, "password": PASSWORD})),
    )
    .await;
    assert_eq!(signed_up.status, 200);

    let load = Arc::new(Load { address: Arc::clone(&process.address), client_key, spa, stop: AtomicBool::new(false) });
    let mut workers = Vec::new();
    for number in 0..4 {
        let (browser, family) = browser_signed_in(&base, &load.spa).await;
        let ledger = Ledger { families: vec![family], ..Ledger::default() };
        let worker = Worker {
            load: Arc::clone(&load),
            number,
            rng: StdRng::seed_from_u64(seed.wrapping_add(number as u64)),
            browser,
            http: http(false),
            ledger,
        };
        workers.push(tokio::spawn(worker.run()));
    }

    let load_started = Instant::now();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1_500..3_500))).await;
        process.kill();
        process.start();
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    load.stop.store(true, Ordering::Relaxed);
    let mut ledgers = Vec::new();
    for worker in workers {
        ledgers.push(worker.await.unwrap());
    }
    let load_time = load_started.elapsed();
    // The last acknowledged writes never saw a graceful stop either.
    process.kill();
    process.start();

    let unexpected: Vec<&String> = ledgers.iter().flat_map(|l| &l.unexpected).collect();
    assert!(unexpected.is_empty(), "answers other than 2xx or none: {unexpected:#?}\n{}", process.all_logs());
    let sum = |count: &dyn Fn(&Ledger) -> usize| ledgers.iter().map(count).sum::<usize>();
    let (answered, lost) = (sum(&|l| l.answered), sum(&|l| l.lost));
    let accounts = sum(&|l| l.accounts.iter().filter(|a| a.acknowledged).count());
    let signed_out = sum(&|l| l.accounts.iter().filter(|a| a.session == Fate::Revoked).count());
    let keys = sum(&|l| l.keys.len());
    let deleted = sum(&|l| l.keys.iter().filter(|k| k.fate == Fate::Revoked).count());
    let tokens = sum(&|l| l.service_tokens.len());
    let revoked_tokens = sum(&|l| l.service_tokens.iter().filter(|t| t.fate == Fate::Revoked).count());
    let rotations = sum(&|l| l.families.iter().map(|f| f.rotations).sum());
    let revoked_families = sum(&|l| l.families.iter().filter(|f| f.fate == Fate::Revoked).count());
    eprintln!(
        "{backend:?}: {answered} answered and {lost} lost requests in {load_time:?}; acknowledged: {accounts} sign-ups, \
         {signed_out} sign-outs, {keys} API keys, {deleted} deletions, {tokens} service tokens, {revoked_tokens} \
         revocations, {rotations} refresh rotations, {revoked_families} family revocations"
    );
    assert!(lost > 0, "no request was caught by a kill");
    for (what, count) in [
        ("sign-ups", accounts),
        ("sign-outs", signed_out),
        ("API keys", keys),
        ("API key deletions", deleted),
        ("service tokens", tokens),
        ("service token revocations", revoked_tokens),
        ("refresh rotations", rotations),
        ("family revocations", revoked_families),
    ] {
        assert!(count > 0, "no {what} were acknowledged: the load did not exercise them");
    }

    let base = process.url("");
    let client = http(false);
    let get = |path: String| client.get(format!("{base}{path}"));
    for ledger in &ledgers {
        for account in &ledger.accounts {
            let email = &account.email;
            let sign_in = json!({"email": email, "password": PASSWORD});
            let signed_in = answer(client.post(format!("{base}{}", paths::SIGN_IN_EMAIL)).json(&sign_in)).await;
            if account.acknowledged {
                assert_eq!(signed_in.status, 200, "acknowledged sign-up of {email}: {}", signed_in.body);
            } else if signed_in.status != 200 {
                // Not there at all: the email is free.
                assert_eq!(signed_in.status, 401, "{email}: {}", signed_in.body);
                let again = json!({"name": "Again", "email": email, "password": PASSWORD});
                let signed_up = answer(
                    client.post(format!("{base}{}", paths::SIGN_UP_EMAIL)).header(header::ORIGIN, ORIGIN).json(&again),
                )
                .await;
                assert_eq!(signed_up.status, 200, "{email} cannot sign in, yet cannot sign up: {}", signed_up.body);
            }
            let session = |query: &'static str| {
                get(format!("{}{query}", paths::GET_SESSION)).header(header::COOKIE, &account.cookie)
            };
            match account.session {
                Fate::Live => {
                    let got = answer(session("?disableCookieCache=true")).await;
                    assert_eq!(got.body["user"]["email"], email.as_str(), "the session of {email} is gone");
                }
                Fate::Revoked => {
                    // The cached session data too: the revocation list is read from the database at start.
                    assert_eq!(answer(session("")).await.body, Value::Null, "signed-out session of {email}");
                    let fresh = answer(session("?disableCookieCache=true")).await;
                    assert_eq!(fresh.body, Value::Null, "signed-out session of {email}");
                }
                Fate::Unknown => {}
            }
        }
        for key in &ledger.keys {
            let checked = answer(get(paths::AUTH_CHECK.to_owned()).header("x-api-key", &key.key)).await;
            match key.fate {
                Fate::Live => assert_eq!(checked.status, 200, "acknowledged API key {}", key.id),
                Fate::Revoked => assert_eq!(checked.status, 401, "deleted API key {}", key.id),
                Fate::Unknown => assert!(matches!(checked.status, 200 | 401), "{}", checked.status),
            }
        }
        for (user, secret) in &ledger.service_users {
            let issued = answer(
                client
                    .post(format!("{base}{}", paths::V1_TOKEN))
                    .header("x-api-key", &load.client_key)
                    .json(&json!({"userId": user, "secret": secret})),
            )
            .await;
            assert_eq!(issued.status, 200, "acknowledged service user {user}: {}", issued.body);
        }
        for token in &ledger.service_tokens {
            let me = answer(get(paths::V1_ME.to_owned()).bearer_auth(&token.token)).await;
            match token.fate {
                Fate::Live => assert_eq!(me.status, 200, "acknowledged service token: {}", me.body),
                Fate::Revoked => assert_eq!(me.status, 401, "revoked service token"),
                Fate::Unknown => assert!(matches!(me.status, 200 | 401), "{}", me.status),
            }
        }
        for family in &ledger.families {
            let info = answer(get(paths::USERINFO.to_owned()).bearer_auth(&family.access)).await;
            let refreshed = answer(refresh(&base, &load.spa, &family.refresh)).await;
            match family.fate {
                Fate::Live => {
                    assert_eq!(info.status, 200, "the last acknowledged access token");
                    assert_eq!(refreshed.status, 200, "the last acknowledged refresh token: {}", refreshed.body);
                }
                Fate::Revoked => {
                    assert_eq!(info.status, 401, "an access token of a revoked family");
                    assert_eq!(refreshed.status, 400, "a refresh token of a revoked family");
                    assert_eq!(refreshed.body["error"], "invalid_grant");
                }
                Fate::Unknown => {}
            }
        }
    }
    assert_consistent(&process.inspect().await).await;
}

// ---------------------------------------------------------------------------------------------------------
// 2. SIGKILL during a signing-key rotation

/// The signing keys as the management API lists them.
async fn signing_keys(process: &Crashing) -> Vec<Value> {
    let listed =
        answer(http(false).get(process.url(paths::MGMT_SIGNING_KEYS)).basic_auth(MASTER_USER, Some(MASTER_PASSWORD)))
            .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    listed.body.as_array().unwrap().clone()
}

/// Rotations through the management API (the server killed while it answers) and through `latchkey admin
/// rotate-keys` (that process killed mid-way, and the server too): after each restart there is exactly one
/// current key per algorithm, an acknowledged rotation's key is it, the JWKS publishes every unrevoked
/// key, every token issued before still verifies, and a new one is signed with the current key.
async fn a_kill_during_key_rotation_leaves_a_consistent_key_set(backend: Backend) {
    let Some(mut process) = Crashing::new(backend, &[]).await else { return };
    let seed: u64 = rand::random();
    eprintln!("durability rotation seed: {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    process.start();
    let client = http(false);
    let created = answer(
        client
            .post(process.url(paths::V1_CLIENTS))
            .basic_auth(MASTER_USER, Some(MASTER_PASSWORD))
            .json(&json!({"name": "rotation"})),
    )
    .await;
    let key = str_of(&created.body, "apiKey");
    let user = answer(client.post(process.url(paths::V1_USERS)).header("x-api-key", &key).json(&json!({}))).await;
    let (user_id, secret) = (str_of(&user.body, "userId"), str_of(&user.body, "secret"));
    let issue = |process: &Crashing| {
        client
            .post(process.url(paths::V1_TOKEN))
            .header("x-api-key", &key)
            .json(&json!({"userId": user_id, "secret": secret}))
    };
    // An RS256 key besides the service tokens' ES256 one: a rotation then renews both, one after the other.
    let rs256 = answer(
        client
            .post(process.url(&format!("{}?alg=RS256", paths::MGMT_SIGNING_KEYS_ROTATE)))
            .basic_auth(MASTER_USER, Some(MASTER_PASSWORD)),
    )
    .await;
    assert_eq!(rs256.status, 201, "{}", rs256.body);
    let first = answer(issue(&process)).await;
    let mut tokens = vec![str_of(&first.body, "accessToken")];

    let mut acknowledged_rotations = 0;
    for round in 0..4 {
        let via_api = round % 2 == 0;
        // A rotation takes ~50-250 ms (an RSA key is the slow part; the command also starts and connects).
        let delay = Duration::from_millis(rng.gen_range(0..250));
        let acknowledged = if via_api {
            let rotate = client
                .post(process.url(paths::MGMT_SIGNING_KEYS_ROTATE))
                .basic_auth(MASTER_USER, Some(MASTER_PASSWORD))
                .send();
            let in_flight = tokio::spawn(async move {
                let response = rotate.await.ok()?;
                let status = response.status().as_u16();
                let body: Value = response.json().await.ok()?;
                assert_eq!(status, 201, "{body}");
                Some(body["rotated"].as_array().unwrap().iter().map(|r| str_of(r, "kid")).collect::<Vec<_>>())
            });
            tokio::time::sleep(delay).await;
            process.kill();
            in_flight.await.unwrap()
        } else {
            let mut command = process.command();
            command.args(["admin", "rotate-keys"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = command.spawn().unwrap();
            tokio::time::sleep(delay).await;
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            process.kill();
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            output.status.success().then(|| {
                stdout.lines().filter_map(|l| l.split("new signing key ").nth(1)).map(|k| k.trim().to_owned()).collect()
            })
        };
        process.start();
        eprintln!(
            "round {round} ({}, killed after {delay:?}): acknowledged {acknowledged:?}",
            if via_api { "API" } else { "CLI" }
        );

        let keys = signing_keys(&process).await;
        let mut algorithms: Vec<&str> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
        algorithms.sort_unstable();
        algorithms.dedup();
        assert_eq!(algorithms, ["ES256", "RS256"]);
        for alg in &algorithms {
            let current = keys.iter().filter(|k| k["alg"] == *alg && k["current"] == true).count();
            assert_eq!(current, 1, "{alg}: {current} current keys after a kill during rotation: {keys:#?}");
        }
        if let Some(kids) = &acknowledged {
            acknowledged_rotations += 1;
            for kid in kids {
                let listed = keys.iter().find(|k| k["kid"] == kid.as_str());
                assert!(listed.is_some_and(|k| k["current"] == true), "acknowledged {kid} is not current: {keys:#?}");
            }
        }
        let jwks = answer(client.get(process.url(paths::JWKS))).await;
        assert_eq!(jwks.status, 200);
        let published: Vec<&str> =
            jwks.body["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
        for listed in keys.iter().filter(|k| k["current"] == true || k["previous"] == true) {
            assert!(published.contains(&listed["kid"].as_str().unwrap()), "{listed} not in the JWKS {published:?}");
        }
        for (n, token) in tokens.iter().enumerate() {
            let me = answer(client.get(process.url(paths::V1_ME)).bearer_auth(token)).await;
            assert_eq!(me.status, 200, "round {round}: token {n} (kid {}) no longer verifies", kid_of(token));
        }
        let issued = answer(issue(&process)).await;
        assert_eq!(issued.status, 200, "{}", issued.body);
        let token = str_of(&issued.body, "accessToken");
        let current = keys.iter().find(|k| k["alg"] == "ES256" && k["current"] == true).unwrap();
        assert_eq!(kid_of(&token), current["kid"].as_str().unwrap(), "a new token is signed with the current key");
        assert_eq!(answer(client.get(process.url(paths::V1_ME)).bearer_auth(&token)).await.status, 200);
        tokens.push(token);
    }
    let distinct: std::collections::HashSet<String> = tokens.iter().map(|t| kid_of(t)).collect();
    eprintln!(
        "{backend:?}: {acknowledged_rotations} of 4 rotations acknowledged; tokens signed by {} keys",
        distinct.len()
    );
    assert_consistent(&process.inspect().await).await;
}

// ---------------------------------------------------------------------------------------------------------
// 3. SIGKILL during the periodic cleanup

const EXPIRED_SESSIONS: i64 = 100_000;
const LIVE_SESSIONS: i64 = 500;

fn now_ms() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Inserts `count` sessions of `user` expiring at `expires_at`, ids starting with `prefix`.
async fn insert_sessions(db: &Db, user: &str, prefix: &str, count: i64, expires_at: i64) {
    // A recursive CTE: the same SQL on both databases.
    const SQL: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
        INSERT INTO sessions (id, token_hash, user_id, expires_at, ip_address, user_agent, created_at, updated_at) \
        SELECT $2 || i, $3 || i, $4, $5, '203.0.113.7', 'durability-test', $6, $6 FROM n";
    let hash_prefix = format!("hash-{prefix}");
    let created = expires_at - 86_400_000;
    db_run!(db, |pool| sqlx::query(SQL)
        .bind(count)
        .bind(prefix)
        .bind(&hash_prefix)
        .bind(user)
        .bind(expires_at)
        .bind(created)
        .execute(pool)
        .await
        .map(|_| ())
        .unwrap());
}

async fn count(db: &Db, sql: &str, now: i64) -> i64 {
    db_run!(db, |pool| sqlx::query_scalar::<_, i64>(sql).bind(now).fetch_one(pool).await.unwrap())
}

/// True while the server's cleanup is deleting sessions: PostgreSQL shows the statement running; SQLite's
/// WAL grows past what anything else writes.
async fn cleanup_running(db: &Db, wal: Option<&std::path::Path>, database: &str) -> bool {
    match db {
        Db::Postgres(pool) => {
            const SQL: &str = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND state = 'active' \
                               AND query LIKE 'DELETE FROM sessions%'";
            sqlx::query_scalar::<_, i64>(SQL).bind(database).fetch_one(pool).await.unwrap() > 0
        }
        Db::Sqlite(..) => std::fs::metadata(wal.unwrap()).map(|m| m.len()).unwrap_or(0) > 2 * 1024 * 1024,
    }
}

/// Many expired sessions (and old revocation records) beside live ones; the server, cleaning up every
/// second, is SIGKILLed while it deletes, and restarted, three times; then it runs on. Live rows are
/// untouched, the expired ones are eventually gone, a live session still works and the database is
/// consistent.
async fn a_kill_during_cleanup_loses_no_live_row(backend: Backend) {
    let Some(mut process) = Crashing::new(backend, &[("LATCHKEY_MAINTENANCE_INTERVAL", "1")]).await else { return };
    process.start();
    let client = http(false);
    let signed_up = answer(
        client
            .post(process.url(paths::SIGN_UP_EMAIL))
            .header(header::ORIGIN, ORIGIN)
            .json(&json!({"name": "Live", "email": "live@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(signed_up.status, 200);
    let user = str_of(&signed_up.body["user"], "id");
    let cookie = signed_up.cookie.clone();
    process.kill();

    let db = process.inspect().await;
    let now = now_ms();
    insert_sessions(&db, &user, "ses_expired_", EXPIRED_SESSIONS, now - 3_600_000).await;
    insert_sessions(&db, &user, "ses_live_", LIVE_SESSIONS, now + 30 * 86_400_000).await;
    const OLD_REVOCATIONS: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
        INSERT INTO session_revocations (session_id, revoked_at) SELECT 'ses_gone_' || i, $1 FROM n";
    db_run!(&db, |pool| sqlx::query(OLD_REVOCATIONS).bind(now - 86_400_000).execute(pool).await.map(|_| ()).unwrap());
    let wal = (backend == Backend::Sqlite).then(|| process.sqlite_path().with_extension("db-wal"));
    let database = match &process.db {
        TestDb::Postgres(pg) => pg.url.rsplit('/').next().unwrap().to_owned(),
        TestDb::Sqlite(_) => String::new(),
    };
    const EXPIRED: &str = "SELECT COUNT(*) FROM sessions WHERE expires_at <= $1";
    const LIVE: &str = "SELECT COUNT(*) FROM sessions WHERE expires_at > $1";
    let live_before = count(&db, LIVE, now).await;
    assert_eq!(live_before, LIVE_SESSIONS + 1);

    let mut interrupted = 0;
    for _ in 0..3 {
        // Start from an empty WAL, so that its growth is the cleanup's.
        if let Db::Sqlite(pool, _) = &db {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await.unwrap();
        }
        process.start();
        let started = Instant::now();
        let mut seen = false;
        while !seen && started.elapsed() < Duration::from_secs(10) {
            seen = cleanup_running(&db, wal.as_deref(), &database).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        process.kill();
        let left = count(&db, EXPIRED, now).await;
        if seen && left > 0 {
            interrupted += 1;
        }
        assert_eq!(count(&db, LIVE, now).await, live_before, "a kill during cleanup changed live sessions");
        assert_consistent(&db).await;
        if left == 0 {
            break;
        }
    }
    assert!(interrupted > 0, "no kill caught the cleanup at work:\n{}", process.all_logs());

    process.start();
    let started = Instant::now();
    while count(&db, EXPIRED, now).await > 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "expired sessions are still there after 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    const OLD: &str = "SELECT COUNT(*) FROM session_revocations WHERE revoked_at < $1";
    while count(&db, OLD, now - 3_600_000).await > 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "old revocation records are still there after 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count(&db, LIVE, now).await, live_before);
    let session = answer(
        client
            .get(process.url(&format!("{}?disableCookieCache=true", paths::GET_SESSION)))
            .header(header::COOKIE, &cookie),
    )
    .await;
    assert_eq!(session.body["user"]["email"], "live@example.com", "the live session survived: {}", session.body);
    eprintln!("{backend:?}: {interrupted} of 3 kills interrupted the cleanup");
    assert_consistent(&db).await;
}

// ---------------------------------------------------------------------------------------------------------
// 4. SQLite: a full disk, a read-only volume

/// Signs `email` up; returns its session cookie.
async fn sign_up(process: &Crashing, email: &str) -> Answer {
    let body = json!({"name": "Disk", "email": email, "password": PASSWORD});
    answer(http(false).post(process.url(paths::SIGN_UP_EMAIL)).header(header::ORIGIN, ORIGIN).json(&body)).await
}

async fn create_key(process: &Crashing, cookie: &str) -> (Answer, Duration) {
    let started = Instant::now();
    let request = http(false)
        .post(process.url(paths::API_KEY_CREATE))
        .header(header::ORIGIN, ORIGIN)
        .header(header::COOKIE, cookie)
        .json(&json!({"name": "disk"}));
    (answer(request).await, started.elapsed())
}

async fn check_key(process: &Crashing, key: &str) -> u16 {
    answer(http(false).get(process.url(paths::AUTH_CHECK)).header("x-api-key", key)).await.status
}

async fn session_email(process: &Crashing, cookie: &str) -> Value {
    let path = format!("{}?disableCookieCache=true", paths::GET_SESSION);
    answer(http(false).get(process.url(&path)).header(header::COOKIE, cookie)).await.body["user"]["email"].clone()
}

/// A write the database cannot take: a 503 with its code, answered at once (no 500, no hang).
fn assert_refused(answer: &Answer, took: Duration, what: &str) {
    assert_eq!(answer.status, 503, "{what}: {}", answer.body);
    assert_eq!(answer.body["code"], "DATABASE_UNAVAILABLE", "{what}");
    assert!(took < Duration::from_secs(3), "{what} took {took:?}");
}

/// Writes zeros to `path` until the disk is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
}

/// The disk under a SQLite database fills up while the server runs: writes (an API key, a sign-up) are
/// refused with 503 `DATABASE_UNAVAILABLE` at once, reads go on, and the log says the disk is full. Once
/// there is space again writes work without a restart, every acknowledged write is committed (seen by
/// another connection, and after a SIGKILL), every refused one left nothing, and the file is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_a_503_keeps_reads_and_loses_nothing_acknowledged() {
    let Some(mut process) = Crashing::on_tmpfs("16m").await else { return };
    process.start();
    let signed_up = sign_up(&process, "full@example.com").await;
    assert_eq!(signed_up.status, 200);
    let cookie = signed_up.cookie;
    let (first, _) = create_key(&process, &cookie).await;
    let mut acknowledged = vec![str_of(&first.body, "key")];

    let filler = process.sqlite_path().with_file_name("filler");
    fill(&filler);
    // The WAL may still have room for a few writes; then every one is refused. Sign-ups (a transaction:
    // user, account, session) and API keys (one statement) in turn.
    let mut users = vec!["full@example.com".to_owned()];
    let mut refused = 0;
    for n in 0..300 {
        let started = Instant::now();
        let (answer, what) = if n % 2 == 0 {
            let email = format!("user{n}@example.com");
            let signed_up = sign_up(&process, &email).await;
            if signed_up.status == 200 {
                users.push(email);
            }
            (signed_up, "a sign-up on a full disk")
        } else {
            let (created, _) = create_key(&process, &cookie).await;
            if created.status == 200 {
                acknowledged.push(str_of(&created.body, "key"));
            }
            (created, "an API key on a full disk")
        };
        if answer.status != 200 {
            assert_refused(&answer, started.elapsed(), what);
            refused += 1;
            if refused == 10 {
                break;
            }
        }
    }
    assert_eq!(refused, 10, "a full disk never refused a write");
    assert_eq!(session_email(&process, &cookie).await, "full@example.com", "reads go on");
    for key in &acknowledged {
        assert_eq!(check_key(&process, key).await, 200);
    }
    assert_eq!(answer(http(false).get(process.url(paths::HEALTHZ))).await.status, 200);
    let logs = process.all_logs();
    assert!(logs.contains("database or disk is full"), "the log says why:\n{logs}");

    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    loop {
        let (created, _) = create_key(&process, &cookie).await;
        if created.status == 200 {
            acknowledged.push(str_of(&created.body, "key"));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "writes still fail with space again: {}", created.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let late = sign_up(&process, "user0@example.com").await;
    if !users.iter().any(|user| user == "user0@example.com") {
        assert_eq!(late.status, 200, "the refused sign-up left nothing behind: {}", late.body);
        users.push("user0@example.com".to_owned());
    }
    let late = sign_up(&process, "late@example.com").await;
    assert_eq!(late.status, 200, "{}", late.body);
    users.push("late@example.com".to_owned());

    // Committed, not just answered: another connection sees exactly the acknowledged keys, and so does
    // the server after a SIGKILL.
    let db = process.inspect().await;
    let keys: i64 =
        db_run!(&db, |pool| sqlx::query_scalar("SELECT COUNT(*) FROM api_keys").fetch_one(pool).await.unwrap());
    assert_eq!(keys, i64::try_from(acknowledged.len()).unwrap(), "stored keys vs acknowledged ones");
    let stored: i64 =
        db_run!(&db, |pool| sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(pool).await.unwrap());
    assert_eq!(stored, i64::try_from(users.len()).unwrap(), "stored users vs acknowledged sign-ups");
    process.kill();
    process.start();
    for key in &acknowledged {
        assert_eq!(check_key(&process, key).await, 200, "an acknowledged key after the restart");
    }
    assert_eq!(session_email(&process, &late.cookie).await, "late@example.com");
    for email in &users {
        let body = json!({"email": email, "password": PASSWORD});
        let signed_in = answer(http(false).post(process.url(paths::SIGN_IN_EMAIL)).json(&body)).await;
        assert_eq!(signed_in.status, 200, "acknowledged sign-up of {email}");
    }
    assert_consistent(&db).await;
}

/// Runs the server where it must refuse to start; returns its stderr (fails if it is still up after 20 s).
fn refused_start(mut command: Command) -> String {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the server started on a read-only volume without its WAL files");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The volume holding a SQLite database turns read-only. After a crash (the WAL and its index still
/// beside the file) the server starts, answers reads, and refuses writes with 503 `DATABASE_UNAVAILABLE`,
/// logging why; without them (after a clean stop) SQLite cannot open the file at all, and the server
/// refuses to start with a message naming the file and what to check. Writable again, it serves as
/// before: nothing acknowledged is lost and the file is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_volume_refuses_writes_with_a_503_or_the_start_with_a_clear_message() {
    let Some(mut process) = Crashing::on_tmpfs("16m").await else { return };
    process.start();
    let signed_up = sign_up(&process, "ro@example.com").await;
    assert_eq!(signed_up.status, 200);
    let cookie = signed_up.cookie;
    let (created, _) = create_key(&process, &cookie).await;
    let key = str_of(&created.body, "key");

    process.kill();
    process.mount.as_ref().unwrap().remount("ro");
    process.start();
    assert_eq!(session_email(&process, &cookie).await, "ro@example.com", "reads go on");
    assert_eq!(check_key(&process, &key).await, 200);
    let (refused, took) = create_key(&process, &cookie).await;
    assert_refused(&refused, took, "an API key on a read-only volume");
    let started = Instant::now();
    let signed_up = sign_up(&process, "other@example.com").await;
    assert_refused(&signed_up, started.elapsed(), "a sign-up on a read-only volume");
    let logs = process.all_logs();
    assert!(logs.contains("attempt to write a readonly database"), "the log says why:\n{logs}");
    process.stop();

    // A clean stop on a writable volume removes the WAL files; read-only, the file cannot be opened.
    process.mount.as_ref().unwrap().remount("rw");
    process.start();
    process.stop();
    assert!(!process.sqlite_path().with_extension("db-wal").exists(), "a clean stop removes the WAL");
    process.mount.as_ref().unwrap().remount("ro");
    let stderr = refused_start(process.command());
    let path = process.sqlite_path().display().to_string();
    assert!(stderr.contains(&format!("cannot open sqlite://{path} for writing")), "{stderr}");
    assert!(stderr.contains("needs write access to the file and to its directory"), "{stderr}");

    process.mount.as_ref().unwrap().remount("rw");
    process.start();
    assert_eq!(check_key(&process, &key).await, 200);
    let (created, _) = create_key(&process, &cookie).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let signed_up = sign_up(&process, "other@example.com").await;
    assert_eq!(signed_up.status, 200, "the refused sign-up left nothing behind: {}", signed_up.body);
    assert_consistent(&process.inspect().await).await;
}
