//! The authorization-code flow in a real browser: headless Chromium, driven through chromedriver
//! (WebDriver, `fantoccini`), opens a third-party client's `/authorize` URL, types into the login page,
//! allows on the consent page and lands on the client's callback, a real page served by this test. The
//! code it carries is then exchanged with PKCE. On the way it checks what only a browser can: the pages'
//! nonce'd styles apply under their strict Content-Security-Policy while an un-nonced style is refused,
//! and the redirects after the forms go through (the sign-in and consent pages carry no `form-action`: Chromium
//! applies it to every redirect after a form).
//!
//! Runs where `chromium` and `chromedriver` are on the `PATH` (Debian's `chromium` and `chromium-driver`)
//! or when `LATCHKEY_REQUIRE_BROWSER=1` (CI sets it); otherwise a bare `cargo test` lists it as ignored.
//! Run anyway without them (`-- --ignored`), it prints why and passes, unless
//! `LATCHKEY_REQUIRE_BROWSER=1`, in which case it fails.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use fantoccini::{Client, Locator};
use latchkey::paths;
use serde_json::{json, Value};

use crate::{
    browser::{browser_or_skip, free_port, Chromedriver},
    helpers::*,
    oauth_flow::{authorize_url, oauth_client, query_of, user, EMAIL, VERIFIER},
};

/// How long the whole walk may take, and one wait for a page within it.
const WALK_TIMEOUT: Duration = Duration::from_secs(120);
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// The accent colour of the pages' buttons (light and dark scheme), as `getComputedStyle` writes it.
const ACCENT: [&str; 2] = ["rgb(47, 91, 234)", "rgb(109, 140, 255)"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(latchkey_browser_tests),
    ignore = "needs chromium and chromedriver on the PATH when the tests were built, or LATCHKEY_REQUIRE_BROWSER=1"
)]
async fn a_real_browser_signs_in_consents_and_lands_on_the_callback() {
    let Some((chromium, chromedriver)) = browser_or_skip("the browser test") else { return };

    // The client's callback: a real page the browser can load, which notes the query it was given.
    let (callback, seen) = callback_server().await;
    let callback_origin = callback.trim_end_matches("/callback").to_owned();

    // The server at the address the browser uses: its pages post to relative paths, its issuer and
    // trusted origin follow the base URL.
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
    assert_eq!(app.address, format!("http://127.0.0.1:{port}"));

    let client = oauth_client(
        &app,
        "spa",
        json!({"name": "Partner Shop", "is_first_party": false, "callbacks": [callback],
            "web_origins": [callback_origin]}),
    )
    .await;
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    user(&app).await;
    let start = authorize_url(&app, &client_id, &[("redirect_uri", &callback), ("scope", "openid profile email")]);

    let driver = Chromedriver::start(&chromedriver);
    let browser = driver.session(&chromium, 10_000).await;
    // The walk runs as a task of its own so that a failed assertion still closes the browser first.
    let walk = tokio::spawn(tokio::time::timeout(WALK_TIMEOUT, walk(browser.clone(), app.address.clone(), start)));
    let outcome = walk.await;
    let _ = browser.close().await;
    drop(driver);
    let landed = match outcome {
        Ok(Ok(landed)) => landed,
        Ok(Err(_)) => panic!("the browser walk took longer than {WALK_TIMEOUT:?}"),
        Err(failed) => std::panic::resume_unwind(failed.into_panic()),
    };

    // The browser is on the callback, with the code and the state, and the callback server saw them.
    assert!(landed.starts_with(&format!("{callback}?")), "{landed}");
    let query = query_of(&landed);
    assert_eq!(query.get("state").map(String::as_str), Some("st-123"), "{landed}");
    assert!(!query.contains_key("error"), "{landed}");
    let code = query.get("code").unwrap_or_else(|| panic!("no code in {landed}"));
    let served = seen.lock().unwrap().clone();
    assert_eq!(served.map(|q| query_of(&format!("{callback}?{q}"))), Some(query.clone()));

    // The code, exchanged with the PKCE verifier at the callback it was issued for.
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", &client_id),
        ("code", code),
        ("redirect_uri", &callback),
        ("code_verifier", VERIFIER),
    ];
    let response = bare_client().post(app.url(paths::TOKEN)).form(&form).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let claims = jwt_part(tokens["id_token"].as_str().expect("an ID token"), 1);
    assert_eq!(claims["email"], EMAIL);
    assert_eq!(claims["aud"], client_id.as_str());
    assert_eq!(claims["nonce"], "n-456");
    assert_eq!(claims["iss"], format!("{}/", app.address));
}

/// What the browser does, as a person would; returns the URL it ends on.
async fn walk(browser: Client, base: String, start: String) -> String {
    // `/authorize` sends the browser to the login page.
    browser.goto(&start).await.expect("open /authorize");
    let continue_button = wait_for(&browser, "button[type=submit]").await;
    let url = browser.current_url().await.unwrap();
    assert_eq!((url.origin().ascii_serialization(), url.path()), (base.clone(), paths::LOGIN), "{url}");
    assert_eq!(browser.title().await.unwrap(), "Sign in · Latchkey");

    // Its styles, in a nonce'd <style>, apply under the page's CSP: the button has the accent colour.
    assert_eq!(continue_button.text().await.unwrap(), "Continue");
    let background = style_of(&browser, "button[type=submit]", "backgroundColor").await;
    assert!(ACCENT.contains(&background.as_str()), "the Continue button is unstyled: {background}");
    assert_eq!(style_of(&browser, "main", "borderTopLeftRadius").await, "12px");
    // And the CSP is in force: a <style> without the nonce is refused (and reported as a violation).
    let refused = browser
        .execute(
            "const style = document.createElement('style');
             style.textContent = '#email { letter-spacing: 7px; }';
             return new Promise(resolve => {
               const violations = [];
               const settle = () => {
                 resolve({ spacing: getComputedStyle(document.getElementById('email')).letterSpacing, violations });
                 style.remove();
               };
               document.addEventListener('securitypolicyviolation', event => {
                 violations.push(event.effectiveDirective);
                 settle();
               });
               document.head.appendChild(style);
               setTimeout(settle, 3000);
             });",
            vec![],
        )
        .await
        .unwrap();
    assert_ne!(refused["spacing"], "7px", "an un-nonced <style> applied: {refused}");
    assert!(
        refused["violations"]
            .as_array()
            .is_some_and(|v| v.iter().any(|d| d.as_str().unwrap().starts_with("style-src"))),
        "{refused}"
    );

    // Sign in through the labelled inputs and the button.
    for (id, label, value) in [("email", "Email", EMAIL), ("password", "Password", PASSWORD)] {
        let label_text = browser.find(Locator::Css(&format!("label[for={id}]"))).await.unwrap().text().await.unwrap();
        assert_eq!(label_text, label);
        browser.find(Locator::Id(id)).await.unwrap().send_keys(value).await.unwrap();
    }
    continue_button.click().await.expect("submit the login form");

    // The consent page of the third-party client (after a redirect through /authorize/resume).
    let allow = wait_for(&browser, "button[name=decision][value=allow]").await;
    let url = browser.current_url().await.unwrap();
    assert_eq!((url.origin().ascii_serialization(), url.path()), (base, paths::CONSENT), "{url}");
    let page = browser.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    assert!(page.contains("Authorize Partner Shop") && page.contains(EMAIL), "{page}");
    let background = style_of(&browser, "button[name=decision][value=allow]", "backgroundColor").await;
    assert!(ACCENT.contains(&background.as_str()), "the Allow button is unstyled: {background}");
    allow.click().await.expect("allow");

    // The redirect after the form reaches the callback, and its page loads.
    let heading = wait_for(&browser, "h1#callback").await;
    assert_eq!(heading.text().await.unwrap(), "Back at the client");
    browser.current_url().await.unwrap().to_string()
}

/// The element matching `css`, once the page has it.
async fn wait_for(browser: &Client, css: &str) -> fantoccini::elements::Element {
    match browser.wait().at_most(PAGE_TIMEOUT).for_element(Locator::Css(css)).await {
        Ok(element) => element,
        Err(error) => {
            let url = browser.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            let html = browser.source().await.unwrap_or_default();
            panic!("no {css} on {url} within {PAGE_TIMEOUT:?} ({error}):\n{html}");
        }
    }
}

/// A computed style property of the element matching `css`.
async fn style_of(browser: &Client, css: &str, property: &str) -> String {
    let value = browser
        .execute(
            "return getComputedStyle(document.querySelector(arguments[0]))[arguments[1]];",
            vec![json!(css), json!(property)],
        )
        .await
        .unwrap();
    value.as_str().unwrap_or_else(|| panic!("{property} of {css}: {value}")).to_owned()
}

/// Serves `GET /callback` on a port of its own: a small page, and the query it got in the cell.
async fn callback_server() -> (String, Arc<Mutex<Option<String>>>) {
    use axum::{extract::RawQuery, response::Html, routing::get, Router};

    let seen = Arc::new(Mutex::new(None));
    let noted = seen.clone();
    let router = Router::new().route(
        "/callback",
        get(move |RawQuery(query): RawQuery| async move {
            *noted.lock().unwrap() = query;
            Html("<!doctype html><title>Shop</title><h1 id=\"callback\">Back at the client</h1>")
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the callback server");
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://127.0.0.1:{port}/callback"), seen)
}
