//! Auth0's own single-page-app SDK, `@auth0/auth0-spa-js` (its browser bundle, from npm, unchanged),
//! against Latchkey in headless Chromium: a page of this test's own, on an origin of its own, creates the
//! SDK's client with `domain` set to Latchkey's address and `useRefreshTokens`. The SDK sends the browser
//! to `/authorize` (PKCE, state, nonce), the user signs in on Latchkey's login page, and on the way back
//! `handleRedirectCallback` exchanges the code at `/oauth/token` cross-origin (CORS for the client's
//! `web_origins`, the `Auth0-Client` header preflighted) and checks the ID token as the SDK does (issuer
//! `{domain}/`, audience, nonce, RS256, times). `getTokenSilently({cacheMode: "off"})` then rotates the
//! refresh token, twice — the second time with the successor the first one returned. A second
//! `loginWithRedirect` comes straight back (the SSO session), `logout` goes through `/v2/logout` back to
//! the page, and after it `loginWithRedirect` shows the login page again.
//!
//! Needs `npm ci` in `tests/auth0-spa` and `chromium` and `chromedriver` on the `PATH`; runs when
//! `LATCHKEY_REQUIRE_NODE=1` and the browser test runs (chromium found, or `LATCHKEY_REQUIRE_BROWSER=1`;
//! CI sets both). Otherwise a bare `cargo test` lists it as ignored; run anyway (`-- --ignored`) without
//! them, it prints why and passes, unless the matching `LATCHKEY_REQUIRE_*` is set, in which case it fails.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use fantoccini::{Client, Locator};
use latchkey::paths;
use serde_json::{json, Value};

use crate::{
    browser::{browser_or_skip, free_port, Chromedriver},
    helpers::*,
    oauth_flow::{oauth_client, query_of, user, userinfo, EMAIL},
};

/// How long the whole walk may take, and one wait for a page within it.
const WALK_TIMEOUT: Duration = Duration::from_secs(180);
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// The SDK's UMD bundle (it defines `window.auth0`), as npm installs it.
const BUNDLE: &str = "node_modules/@auth0/auth0-spa-js/dist/auth0-spa-js.production.js";

/// The single-page app: loads the SDK, creates its client and notes what goes wrong (console errors,
/// uncaught errors and rejections) in `lk.log`, which every failed assertion prints.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>SPA</title>
<script src="/auth0-spa-js.production.js"></script></head>
<body><h1 id="app">The single-page app</h1>
<script>
window.lk = { log: [], loadedAt: Date.now() };
const show = a => (a && a.stack) ? a.stack : (typeof a === "object" ? JSON.stringify(a) : String(a));
for (const level of ["error", "warn"]) {
  const original = console[level].bind(console);
  console[level] = (...args) => { lk.log.push(level + ": " + args.map(show).join(" ")); original(...args); };
}
window.addEventListener("error", e => lk.log.push("uncaught: " + e.message));
window.addEventListener("unhandledrejection", e => lk.log.push("unhandled rejection: " + show(e.reason)));
lk.describe = e => ({ error: e && (e.error || e.name) || null,
  description: e && (e.error_description || e.message) || String(e), stack: e && e.stack || null });
lk.ready = (async () => auth0.createAuth0Client({
  domain: "__DOMAIN__",
  clientId: "__CLIENT_ID__",
  authorizationParams: { redirect_uri: "__APP__/", scope: "openid profile email offline_access" },
  useRefreshTokens: true,
  cacheLocation: "memory",
}))();
lk.ready.catch(e => lk.log.push("createAuth0Client: " + show(e)));
</script></body></html>
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(not(latchkey_node_tests), not(latchkey_browser_tests)),
    ignore = "needs npm ci in tests/auth0-spa with LATCHKEY_REQUIRE_NODE=1, and chromium and chromedriver on the PATH \
              (or LATCHKEY_REQUIRE_BROWSER=1)"
)]
async fn auth0_spa_js_signs_in_refreshes_and_logs_out_in_a_real_browser() {
    let bundle = match std::fs::read(spa_dir().join(BUNDLE)) {
        Ok(bundle) => bundle,
        Err(error) => {
            let reason = format!("tests/auth0-spa/{BUNDLE} is unreadable ({error}): run `npm ci` in tests/auth0-spa");
            if std::env::var("LATCHKEY_REQUIRE_NODE").is_ok_and(|v| v == "1") {
                panic!("LATCHKEY_REQUIRE_NODE=1 but {reason}");
            }
            eprintln!("SKIPPED the auth0-spa-js test: {reason} (set LATCHKEY_REQUIRE_NODE=1 to fail instead)");
            return;
        }
    };
    let Some((chromium, chromedriver)) = browser_or_skip("the auth0-spa-js test") else { return };

    // Latchkey at the address the browser uses (the SDK's `domain`; the issuer is `{domain}/`).
    let port = free_port();
    let Some(app) = spawn_app_with(Backend::Sqlite, |settings| {
        with_master_credentials(settings);
        settings.listen = format!("127.0.0.1:{port}");
        settings.base_url = format!("http://127.0.0.1:{port}");
        // The JSON sign-up of `user` sends the usual test origin.
        settings.trusted_origins.push(ORIGIN.into());
    })
    .await
    else {
        return;
    };
    // The SDK checks the ID token's `exp` and `nbf` against the browser's clock, and Chromium the cookies'
    // expiry: the server's test clock starts at a fixed instant, moved here to the real time.
    let behind = latchkey::clock::system_now() - app.clock.now();
    if behind > 0 {
        app.clock.advance(Duration::from_millis(behind.unsigned_abs()));
    }

    // The app's own server: the page and the SDK's bundle, on an origin of its own.
    let app_port = free_port();
    let spa_origin = format!("http://127.0.0.1:{app_port}");
    let spa_url = format!("{spa_origin}/");
    let client = oauth_client(
        &app,
        "spa",
        json!({"name": "Single Page", "is_first_party": true, "callbacks": [spa_url],
            "allowed_logout_urls": [spa_url], "web_origins": [spa_origin]}),
    )
    .await;
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let page =
        PAGE.replace("__DOMAIN__", &app.address).replace("__CLIENT_ID__", &client_id).replace("__APP__", &spa_origin);
    let served = spa_server(app_port, page, bundle).await;
    user(&app).await;

    let driver = Chromedriver::start(&chromedriver);
    let browser = driver.session(&chromium, 20_000).await;
    // The walk runs as a task of its own so that a failed assertion still closes the browser first.
    let spa = Spa { browser: browser.clone(), latchkey: app.address.clone(), url: spa_url.clone(), client_id };
    let walk = tokio::spawn(tokio::time::timeout(WALK_TIMEOUT, walk(spa, app, served)));
    let outcome = walk.await;
    let _ = browser.close().await;
    drop(driver);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("the browser walk took longer than {WALK_TIMEOUT:?}"),
        Err(failed) => std::panic::resume_unwind(failed.into_panic()),
    }
}

/// The browser on the single-page app.
struct Spa {
    browser: Client,
    latchkey: String,
    url: String,
    client_id: String,
}

async fn walk(spa: Spa, app: TestApp, served: Arc<Mutex<Vec<Option<String>>>>) {
    let browser = &spa.browser;
    browser.goto(&spa.url).await.expect("open the app");
    spa.loaded().await;
    assert_eq!(spa.call("return await c.isAuthenticated();").await, false);

    // loginWithRedirect: to /authorize, which sends the browser to Latchkey's login page.
    spa.navigate("c.loginWithRedirect();").await;
    spa.on_login_page().await;
    for (id, value) in [("email", EMAIL), ("password", PASSWORD)] {
        browser.find(Locator::Id(id)).await.unwrap().send_keys(value).await.unwrap();
    }
    browser.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.expect("submit the login form");

    // Back at the app with a code; the SDK exchanges it (cross-origin) and checks the ID token.
    let first_landing = spa.back_with_code(&served).await;
    let callback =
        spa.call("const r = await c.handleRedirectCallback(); history.replaceState(null, '', '/'); return r;").await;
    assert!(callback.is_object(), "handleRedirectCallback: {callback}");
    let profile = spa.call("return await c.getUser();").await;
    assert_eq!(profile["email"], EMAIL, "{profile}");
    assert_eq!(profile["name"], "Ada Lovelace", "{profile}");
    assert!(profile["sub"].as_str().is_some_and(|s| !s.is_empty()), "{profile}");
    assert_eq!(spa.call("return await c.isAuthenticated();").await, true);
    let claims = spa.call("return await c.getIdTokenClaims();").await;
    assert_eq!(claims["iss"], format!("{}/", spa.latchkey), "{claims}");
    assert_eq!(claims["aud"], spa.client_id, "{claims}");

    // The tokens from the code, from the SDK's cache (no request).
    let first = spa.call("return await c.getTokenSilently({ detailedResponse: true });").await;
    let first_token = first["access_token"].as_str().unwrap_or_else(|| panic!("no access token: {first}")).to_owned();
    let scopes: Vec<&str> = first["scope"].as_str().unwrap_or_default().split(' ').collect();
    assert!(scopes.contains(&"offline_access") && scopes.contains(&"openid"), "{first}");
    let after_code = grant_hashes(&app).await;
    assert_eq!(after_code.len(), 1, "one refresh-token family: {after_code:?}");
    assert_eq!(after_code[0].1, None, "not rotated yet: {after_code:?}");

    // getTokenSilently without the cache: a refresh-token grant at /oauth/token, cross-origin.
    app.clock.advance(Duration::from_secs(2));
    let refreshed = spa.call("return await c.getTokenSilently({ cacheMode: 'off', detailedResponse: true });").await;
    let refreshed_token =
        refreshed["access_token"].as_str().unwrap_or_else(|| panic!("no token: {refreshed}")).to_owned();
    assert_ne!(refreshed_token, first_token, "the refresh gave the same access token");
    assert!(jwt_part(&refreshed_token, 1)["iat"].as_i64() > jwt_part(&first_token, 1)["iat"].as_i64());
    let after_refresh = grant_hashes(&app).await;
    assert_eq!(after_refresh[0].1.as_deref(), Some(after_code[0].0.as_str()), "rotated once: {after_refresh:?}");
    // The server agrees the new token is the user's.
    let info = userinfo(&app, &refreshed_token).await;
    assert_eq!(info.status(), 200);
    assert_eq!(info.json::<Value>().await.unwrap()["email"], EMAIL);

    // Again: the SDK kept the rotated refresh token and sends it (the old one would get the same
    // successor within the leeway, and no new rotation).
    app.clock.advance(Duration::from_secs(2));
    let again = spa.call("return await c.getTokenSilently({ cacheMode: 'off', detailedResponse: true });").await;
    let again_token = again["access_token"].as_str().unwrap_or_else(|| panic!("no token: {again}")).to_owned();
    assert!(again_token != refreshed_token && again_token != first_token);
    let after_again = grant_hashes(&app).await;
    assert_eq!(after_again.len(), 1, "{after_again:?}");
    assert_eq!(after_again[0].1.as_deref(), Some(after_refresh[0].0.as_str()), "rotated twice: {after_again:?}");
    assert_eq!(spa.call("return await c.isAuthenticated();").await, true);

    // The SSO session holds: a second loginWithRedirect comes straight back with a code, no login page.
    spa.navigate("c.loginWithRedirect();").await;
    let second_landing = spa.back_with_code(&served).await;
    assert_ne!(second_landing, first_landing);
    spa.call("await c.handleRedirectCallback(); history.replaceState(null, '', '/'); return null;").await;
    assert_eq!(spa.call("return (await c.getUser()).email;").await, EMAIL);

    // logout: through /v2/logout (the SSO session ends) and back to the page, without a query.
    let landings = served.lock().unwrap().len();
    spa.navigate("c.logout({ logoutParams: { returnTo: lk.returnTo } });").await;
    spa.loaded().await;
    assert_eq!(browser.current_url().await.unwrap().as_str(), spa.url);
    let after_logout = served.lock().unwrap().clone();
    assert_eq!(after_logout.len(), landings + 1, "{after_logout:?}");
    assert_eq!(after_logout.last(), Some(&None), "{after_logout:?}");
    assert_eq!(spa.call("return await c.isAuthenticated();").await, false);

    // And a new loginWithRedirect asks for the password again.
    spa.navigate("c.loginWithRedirect();").await;
    spa.on_login_page().await;
}

impl Spa {
    /// Runs `body` as an async function of the SDK client `c` in the page; its value, or a panic with
    /// the SDK's error and the page's log.
    async fn call(&self, body: &str) -> Value {
        let script = [
            "return lk.ready.then(async c => {",
            body,
            "}).then(value => ({ value: value === undefined ? null : value }), e => ({ failed: lk.describe(e), log: lk.log }));",
        ]
        .concat();
        let answer = self.browser.execute(&script, vec![]).await.unwrap_or_else(|e| panic!("{body}: {e}"));
        if answer.get("failed").is_some() {
            panic!("{body} failed in the browser:\n{}", serde_json::to_string_pretty(&answer).unwrap());
        }
        answer["value"].clone()
    }

    /// Starts something that navigates away (login, logout) and marks this page as left.
    async fn navigate(&self, start: &str) {
        let script = [
            "lk.returnTo = location.origin + '/'; lk.left = true;",
            "lk.ready.then(c => ",
            start.trim_end_matches(';'),
            ").catch(e => lk.log.push('navigation: ' + JSON.stringify(lk.describe(e))));",
            "return null;",
        ]
        .concat();
        self.browser.execute(&script, vec![]).await.unwrap_or_else(|e| panic!("{start}: {e}"));
    }

    /// Waits for a fresh load of the app's page (not the one `navigate` left) with the SDK client made.
    async fn loaded(&self) {
        let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
        let check = "if (!window.lk || lk.left || !lk.ready) return 'loading';
                     return lk.ready.then(() => 'ready', e => 'failed: ' + JSON.stringify(lk.describe(e)) + ' ' + lk.log.join('\\n'));";
        loop {
            // Mid-navigation the script may not run at all; that is another "not yet".
            let state = self.browser.execute(check, vec![]).await.ok();
            match state.as_ref().and_then(Value::as_str) {
                Some("ready") => return,
                Some(failed) if failed.starts_with("failed") => panic!("the SDK did not start: {failed}"),
                _ if tokio::time::Instant::now() > deadline => {
                    let url = self.browser.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                    let html = self.browser.source().await.unwrap_or_default();
                    panic!("the app page did not load within {PAGE_TIMEOUT:?}: on {url} ({state:?}):\n{html}");
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Waits for the app's page with a code and the SDK's state; the query the page was served with.
    async fn back_with_code(&self, served: &Arc<Mutex<Vec<Option<String>>>>) -> String {
        self.loaded().await;
        let url = self.browser.current_url().await.unwrap();
        assert!(url.as_str().starts_with(&format!("{}?", self.url)), "{url}");
        let query = query_of(url.as_str());
        assert!(!query.contains_key("error"), "{url}");
        assert!(query.contains_key("code") && query.contains_key("state"), "{url}");
        assert_eq!(served.lock().unwrap().last().cloned().flatten().as_deref(), url.query(), "{url}");
        url.query().unwrap().to_owned()
    }

    /// Waits for Latchkey's login page.
    async fn on_login_page(&self) {
        match self.browser.wait().at_most(PAGE_TIMEOUT).for_element(Locator::Css("input#password")).await {
            Ok(_) => {}
            Err(error) => {
                let url = self.browser.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                let html = self.browser.source().await.unwrap_or_default();
                panic!("no login page within {PAGE_TIMEOUT:?} ({error}): on {url}:\n{html}");
            }
        }
        let url = self.browser.current_url().await.unwrap();
        assert_eq!((url.origin().ascii_serialization(), url.path()), (self.latchkey.clone(), paths::LOGIN), "{url}");
    }
}

/// `(current_hash, previous_hash)` of every refresh-token family.
async fn grant_hashes(app: &TestApp) -> Vec<(String, Option<String>)> {
    latchkey::db_run!(&app.state.db, |pool| sqlx::query_as::<_, (String, Option<String>)>(
        "SELECT current_hash, previous_hash FROM oauth_grants ORDER BY created_at"
    )
    .fetch_all(pool)
    .await
    .expect("read the grants"))
}

fn spa_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("auth0-spa")
}

/// Serves the app on `port`: `GET /` (the page; each query it was loaded with, noted) and the SDK.
async fn spa_server(port: u16, page: String, bundle: Vec<u8>) -> Arc<Mutex<Vec<Option<String>>>> {
    use axum::{extract::RawQuery, http::header, response::Html, routing::get, Router};

    let served = Arc::new(Mutex::new(Vec::new()));
    let noted = served.clone();
    let router = Router::new()
        .route(
            "/",
            get(move |RawQuery(query): RawQuery| async move {
                noted.lock().unwrap().push(query);
                Html(page)
            }),
        )
        .route(
            "/auth0-spa-js.production.js",
            get(move || async move { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], bundle) }),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the app server");
    tokio::spawn(async move { axum::serve(listener, router).await });
    served
}
