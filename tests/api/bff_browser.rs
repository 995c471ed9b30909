//! The token handler in a real browser: headless Chromium opens a single-page app served by this test on
//! one localhost port; the app signs in through Latchkey's handler on another (its own provider's login
//! page, then an external issuer's: a second Latchkey with another base URL), reads `/session` with
//! `credentials: 'include'`, calls its API through the proxy (a JSON POST, so a CORS preflight too), and
//! signs out — and at every step `document.cookie`, on the app's page and on the handler's own origin,
//! shows no token. On both databases (PostgreSQL when `LATCHKEY_TEST_POSTGRES_URL` is set).
//!
//! Runs where `chromium` and `chromedriver` are on the `PATH` or when `LATCHKEY_REQUIRE_BROWSER=1` (CI
//! sets it); otherwise a bare `cargo test` lists it as ignored. Run anyway without them (`-- --ignored`),
//! it prints why and passes, unless `LATCHKEY_REQUIRE_BROWSER=1`, in which case it fails.

use std::time::Duration;

use fantoccini::{Client, Locator};
use latchkey::paths;
use serde_json::{json, Value};

use crate::{
    bff::{echo_upstream, put_vendor},
    browser::{browser_or_skip, free_port, Chromedriver},
    helpers::*,
    oauth_flow::oauth_client,
};

const WALK_TIMEOUT: Duration = Duration::from_secs(180);
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// The single-page app: it knows the handler's address and nothing else; `lk.call` fetches with the
/// browser's cookies.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>SPA</title></head>
<body><h1 id="app">The single-page app</h1>
<script>
window.lk = {
  handler: "__HANDLER__",
  call: async (path, init) => {
    const response = await fetch(lk.handler + path, Object.assign({ credentials: "include" }, init || {}));
    const text = await response.text();
    let body = null;
    try { body = JSON.parse(text); } catch (e) { body = text; }
    return { status: response.status, body };
  },
};
</script></body></html>
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(latchkey_browser_tests),
    ignore = "needs chromium and chromedriver on the PATH when the tests were built, or LATCHKEY_REQUIRE_BROWSER=1"
)]
async fn an_spa_signs_in_calls_its_api_and_signs_out_without_ever_seeing_a_token() {
    let Some((chromium, chromedriver)) = browser_or_skip("the token handler browser test") else { return };
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let driver = Chromedriver::start(&chromedriver);
        let browser = driver.session(&chromium, 20_000).await;
        let walk = tokio::spawn(tokio::time::timeout(WALK_TIMEOUT, walk(browser.clone(), backend)));
        let outcome = walk.await;
        let _ = browser.close().await;
        drop(driver);
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("the browser walk on {backend:?} took longer than {WALK_TIMEOUT:?}"),
            Err(failed) => std::panic::resume_unwind(failed.into_panic()),
        }
    }
}

/// A Latchkey listening on `port` with that base URL; its test clock moved to the real time (Chromium
/// and the ID token checks see real time).
async fn latchkey_at(backend: Backend, host: &str, port: u16) -> Option<TestApp> {
    let app = spawn_app_with(backend, |settings| {
        with_master_credentials(settings);
        settings.listen = format!("127.0.0.1:{port}");
        settings.base_url = format!("http://{host}:{port}");
    })
    .await?;
    let behind = latchkey::clock::system_now() - app.clock.now();
    if behind > 0 {
        app.clock.advance(Duration::from_millis(behind.unsigned_abs()));
    }
    Some(app)
}

async fn sign_up(app: &TestApp, base: &str, email: &str) {
    let response = bare_client()
        .post(app.url(paths::SIGN_UP_EMAIL))
        .header("origin", base)
        .json(&json!({"name": "Ada Lovelace", "email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn walk(browser: Client, backend: Backend) {
    let handler_port = free_port();
    let handler = format!("http://localhost:{handler_port}");
    let Some(app) = latchkey_at(backend, "localhost", handler_port).await else {
        eprintln!("LATCHKEY_TEST_POSTGRES_URL is not set: the browser walk on PostgreSQL is skipped");
        return;
    };
    let issuer_port = free_port();
    let issuer_base = format!("http://127.0.0.1:{issuer_port}");
    let Some(issuer) = latchkey_at(backend, "127.0.0.1", issuer_port).await else { return };
    let spa_port = free_port();
    let spa = format!("http://localhost:{spa_port}");
    serve_spa(spa_port, PAGE.replace("__HANDLER__", &handler)).await;
    let upstream = echo_upstream().await;

    // Vendor `own`: Latchkey's own provider. Vendor `ext`: the other Latchkey, found by discovery.
    sign_up(&app, &handler, "ada@example.com").await;
    let own = oauth_client(&app, "regular_web", json!({"callbacks": [format!("{handler}/auth/own/callback")]})).await;
    let body = json!({"clientId": own["client_id"], "clientSecret": own["client_secret"], "cookieDomain": "localhost",
        "allowedReturnTo": [spa], "apiUpstream": upstream});
    assert_eq!(put_vendor(&app, "own", body).await.status(), 200);
    sign_up(&issuer, &issuer_base, "grace@example.com").await;
    let ext =
        oauth_client(&issuer, "regular_web", json!({"callbacks": [format!("{handler}/auth/ext/callback")]})).await;
    let body = json!({"clientId": ext["client_id"], "clientSecret": ext["client_secret"], "issuer": format!("{issuer_base}/"),
        "cookieDomain": "localhost", "allowedReturnTo": [spa], "apiUpstream": upstream});
    assert_eq!(put_vendor(&app, "ext", body).await.status(), 200);

    for (vendor, issuer_origin, email) in
        [("own", handler.as_str(), "ada@example.com"), ("ext", issuer_base.as_str(), "grace@example.com")]
    {
        browser.goto(&format!("{spa}/")).await.expect("open the app");
        let page = Page { browser: &browser, spa: &spa, vendor };
        assert_eq!(page.call("GET", "session", None).await["status"], 401, "{vendor}: not signed in yet");

        // Sign in: the app sends the browser to the handler, which sends it to the issuer's login page.
        let login = format!("{handler}/auth/{vendor}/login?returnTo={}", urlencode(&format!("{spa}/?signed-in")));
        browser.goto(&login).await.expect("start signing in");
        wait_for(&browser, Locator::Css("input#password")).await;
        let at = browser.current_url().await.unwrap();
        assert_eq!(at.origin().ascii_serialization(), issuer_origin, "{vendor}: {at}");
        for (id, value) in [("email", email), ("password", PASSWORD)] {
            browser.find(Locator::Id(id)).await.unwrap().send_keys(value).await.unwrap();
        }
        browser.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.expect("submit the login form");
        wait_for(&browser, Locator::Id("app")).await;
        assert_eq!(browser.current_url().await.unwrap().as_str(), format!("{spa}/?signed-in"), "{vendor}");
        page.no_token_in_document_cookie().await;

        // The session, with credentials, cross-origin.
        let session = page.call("GET", "session", None).await;
        assert_eq!(session["status"], 200, "{vendor}: {session}");
        assert_eq!(session["body"]["authenticated"], true);
        assert_eq!(session["body"]["user"]["email"], email);
        assert!(!session.to_string().contains("eyJ"), "no token in the session answer: {session}");

        // The API through the proxy: a GET, then a JSON POST (preflighted), each with the bearer token
        // upstream and no token cookie.
        let got = page.call("GET", "api/orders?page=2", None).await;
        assert_eq!(got["status"], 200, "{vendor}: {got}");
        assert_eq!(got["body"]["path"], "/orders");
        assert!(got["body"]["authorization"].as_str().unwrap().starts_with("Bearer ey"), "{got}");
        assert!(got["body"]["cookie"].is_null(), "{got}");
        let posted = page.call("POST", "api/orders", Some(json!({"item": "tea"}))).await;
        assert_eq!(posted["status"], 200, "{vendor}: {posted}");
        assert_eq!(posted["body"]["body"], r#"{"item":"tea"}"#);
        page.no_token_in_document_cookie().await;

        // Refresh rotates the cookies; the app still cannot see them.
        assert_eq!(page.call("POST", "refresh", None).await["status"], 204, "{vendor}");
        assert_eq!(page.call("GET", "session", None).await["status"], 200, "{vendor}");
        page.no_token_in_document_cookie().await;

        // Even on the handler's own origin, script cannot read the token cookies (HttpOnly).
        browser.goto(&format!("{handler}/auth/{vendor}/session")).await.unwrap();
        let handler_cookies = browser.execute("return document.cookie;", vec![]).await.unwrap();
        assert_eq!(handler_cookies, json!(""), "{vendor}: {handler_cookies}");

        // Sign out: the cookies are gone and the issuer's end-session URL comes back.
        browser.goto(&format!("{spa}/")).await.unwrap();
        let out = page.call("POST", "logout", None).await;
        assert_eq!(out["status"], 200, "{vendor}: {out}");
        let logout_url = out["body"]["logoutUrl"].as_str().unwrap().to_owned();
        assert!(logout_url.starts_with(&format!("{issuer_origin}/oidc/logout?")), "{logout_url}");
        assert_eq!(page.call("GET", "session", None).await["status"], 401, "{vendor}: signed out");
        assert_eq!(page.call("GET", "api/orders", None).await["status"], 401, "{vendor}: signed out");
    }
}

/// The app's page in the browser, calling vendor `vendor`'s handler.
struct Page<'a> {
    browser: &'a Client,
    spa: &'a str,
    vendor: &'a str,
}

impl Page<'_> {
    /// `fetch` from the app's page; `{status, body}`.
    async fn call(&self, method: &str, path: &str, json: Option<Value>) -> Value {
        let init = match json {
            Some(body) => {
                json!({"method": method, "headers": {"content-type": "application/json"}, "body": body.to_string()})
            }
            None => json!({"method": method}),
        };
        let script = "const [path, init] = arguments; return lk.call(path, init).catch(e => ({ failed: String(e) }));";
        let path = format!("/auth/{}/{path}", self.vendor);
        let answer =
            self.browser.execute(script, vec![json!(path), init]).await.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(answer.get("failed").is_none(), "{method} {path} failed in the browser: {answer}");
        answer
    }

    /// `document.cookie` on the app's page holds no token (nor anything of the handler's).
    async fn no_token_in_document_cookie(&self) {
        let url = self.browser.current_url().await.unwrap();
        assert!(url.as_str().starts_with(self.spa), "{url}");
        let cookies = self.browser.execute("return document.cookie;", vec![]).await.unwrap();
        let cookies = cookies.as_str().unwrap_or_default();
        assert!(
            !cookies.contains("at=")
                && !cookies.contains("rt=")
                && !cookies.contains("lk-tx")
                && !cookies.contains("ey"),
            "{cookies}"
        );
    }
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn wait_for(browser: &Client, locator: Locator<'_>) {
    if let Err(error) = browser.wait().at_most(PAGE_TIMEOUT).for_element(locator).await {
        let url = browser.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        let html = browser.source().await.unwrap_or_default();
        panic!("waited {PAGE_TIMEOUT:?} in vain ({error}): on {url}:\n{html}");
    }
}

/// Serves the app's page at `/` on `port`.
async fn serve_spa(port: u16, page: String) {
    use axum::{response::Html, routing::get, Router};
    let router = Router::new().route("/", get(move || async move { Html(page) }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the app server");
    tokio::spawn(async move { axum::serve(listener, router).await });
}
