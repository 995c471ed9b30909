//! The backend-for-frontend token handler (capability 6), driven as a browser and an SPA would: vendor
//! configuration through the management API, sign-in through Latchkey's own provider and through an
//! external issuer (a second Latchkey process with its own base URL), the exact cookies, `/session`,
//! the API proxy (bearer in, token cookies out, bodies both ways, renewal on the way with one rotation for
//! many requests), `/check`, refresh, logout, and every refusal the contract names.

use std::collections::BTreeMap;

use axum::{body::Bytes, extract::Request, Json};
use latchkey::paths;
use reqwest::{header, Method, Response};
use serde_json::{json, Value};

use crate::{
    both_backends,
    browser::free_port,
    helpers::*,
    oauth_flow::{authorize_with_login, location, oauth_client, user, API, EMAIL},
};

both_backends!(
    an_spa_signs_in_through_latchkey_calls_its_api_and_signs_out,
    an_spa_signs_in_through_an_external_issuer,
    the_proxy_renews_an_expired_token_once_for_many_requests,
    login_and_callback_refuse_what_the_contract_refuses,
    tampered_swapped_foreign_and_expired_cookies_are_refused,
    a_rotated_key_opens_old_cookies_until_its_window_ends,
    state_changing_calls_need_an_allowed_origin,
    vendor_configuration_is_managed_with_scopes_and_never_shows_the_secret,
);

/// The SPA's origin (it never talks to the issuer).
pub const SPA: &str = "http://localhost:5173";
const VENDOR: &str = "acme";

/// The handler's callback for a vendor, at the test app's base URL.
fn callback(vendor: &str) -> String {
    format!("{BASE_URL}/auth/{vendor}/callback")
}

/// A cookie jar that keeps what `Set-Cookie` says (`Max-Age=0` deletes), as a browser would.
#[derive(Clone, Debug, Default)]
pub struct Jar(BTreeMap<String, String>);

impl Jar {
    pub fn take(&mut self, response: &Response) {
        for line in set_cookies(response) {
            let pair = line.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if line.contains("Max-Age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub fn header(&self) -> String {
        self.0.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("; ")
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.0.insert(name.to_owned(), value.to_owned());
    }

    pub fn remove(&mut self, name: &str) {
        self.0.remove(name);
    }
}

/// An API behind the handler: answers every request with what it received.
pub async fn echo_upstream() -> String {
    async fn echo(request: Request) -> Json<Value> {
        let (parts, body) = request.into_parts();
        let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let names: Vec<String> = parts.headers.keys().map(|n| n.as_str().to_owned()).collect();
        Json(json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "authorization": header("authorization"),
            "cookie": header("cookie"),
            "contentType": header("content-type"),
            "forwardedFor": header("x-forwarded-for"),
            "forwardedProto": header("x-forwarded-proto"),
            "headers": names,
            "body": String::from_utf8_lossy(&body),
        }))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let router = axum::Router::new().fallback(echo);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

/// A handler request with the jar's cookies.
fn call(app: &TestApp, method: Method, path: &str, jar: &Jar) -> reqwest::RequestBuilder {
    bare_client().request(method, app.url(path)).header(header::COOKIE, jar.header())
}

/// PUTs a vendor configuration (master credentials).
pub async fn put_vendor(app: &TestApp, vendor: &str, body: Value) -> Response {
    master(app, Method::PUT, &format!("/management/vendors/{vendor}/token-handler")).json(&body).send().await.unwrap()
}

/// A Latchkey `regular_web` client for the vendor's handler and the vendor configured to use it, with the
/// API behind `upstream`. Returns the client.
pub async fn latchkey_vendor(app: &TestApp, vendor: &str, upstream: &str) -> Value {
    let client = oauth_client(app, "regular_web", json!({"callbacks": [callback(vendor)]})).await;
    let body = json!({
        "clientId": client["client_id"], "clientSecret": client["client_secret"],
        "cookieDomain": "localhost", "allowedReturnTo": [SPA], "apiUpstream": upstream, "audience": API,
    });
    let response = put_vendor(app, vendor, body).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    client
}

/// Signs in through the handler against Latchkey itself; returns the jar and the callback's answer.
pub async fn sign_in(app: &TestApp, vendor: &str, return_to: &str) -> (Jar, Response) {
    let mut jar = Jar::default();
    let login = bare_client()
        .get(app.url(&format!("/auth/{vendor}/login")))
        .query(&[("returnTo", return_to)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 302, "{}", login.text().await.unwrap());
    jar.take(&login);
    let authorize = location(&login).replacen(BASE_URL, &app.address, 1);
    let (_browser, back) = authorize_with_login(app, &authorize).await;
    assert_eq!(back.status(), 302);
    let answer = call(app, Method::GET, &location(&back).replacen(BASE_URL, "", 1), &jar).send().await.unwrap();
    jar.take(&answer);
    (jar, answer)
}

/// The cookie attributes the contract fixes, checked on a callback's answer.
fn assert_token_cookies(answer: &Response, at_name: &str, domain: &str) {
    let lines = set_cookies(answer);
    let at = lines.iter().find(|l| l.starts_with(&format!("{at_name}="))).expect("an access-token cookie");
    assert!(
        at.contains(&format!("; Domain={domain}")) && at.contains("; Path=/") && at.contains("; Max-Age=86400"),
        "{at}"
    );
    assert!(at.contains("; HttpOnly") && at.contains("; Secure") && at.contains("; SameSite=Lax"), "{at}");
    let rt = lines.iter().find(|l| l.starts_with("__Host-rt=")).expect("a refresh cookie");
    assert!(!rt.contains("Domain=") && rt.contains("; Path=/") && rt.contains("; Max-Age=2592000"), "{rt}");
    assert!(rt.contains("; HttpOnly") && rt.contains("; Secure") && rt.contains("; SameSite=Strict"), "{rt}");
    let tx = lines.iter().find(|l| l.starts_with("__Host-lk-tx=")).expect("the temporary cookie is cleared");
    assert!(tx.contains("Max-Age=0"), "{tx}");
}

async fn spawn(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, with_master_credentials).await
}

/// Sets up Latchkey as the issuer with a user, the orders API, a vendor and its upstream.
async fn latchkey_setup(backend: Backend) -> Option<(TestApp, String)> {
    let app = spawn(backend).await?;
    user(&app).await;
    // Access tokens of ten minutes, so a test can outlive one without outliving the cookie's day.
    let api = json!({"name": "Orders", "identifier": API, "allow_offline_access": true, "token_lifetime": 600});
    crate::oauth_flow::mgmt(&app, paths::MGMT_RESOURCE_SERVERS, api).await;
    let upstream = echo_upstream().await;
    latchkey_vendor(&app, VENDOR, &upstream).await;
    Some((app, upstream))
}

async fn an_spa_signs_in_through_latchkey_calls_its_api_and_signs_out(backend: Backend) {
    let Some((app, _upstream)) = latchkey_setup(backend).await else { return };

    // Login: a temporary __Host- cookie and a PKCE authorize request for the handler's callback.
    let login = bare_client()
        .get(app.url("/auth/acme/login"))
        .query(&[("returnTo", "http://localhost:5173/home?tab=1")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 302);
    let tx = set_cookies(&login).into_iter().find(|l| l.starts_with("__Host-lk-tx=")).expect("a temporary cookie");
    assert!(
        tx.contains("; Max-Age=300")
            && tx.contains("; HttpOnly")
            && tx.contains("; Secure")
            && tx.contains("; SameSite=Lax")
            && tx.contains("; Path=/")
            && !tx.contains("Domain"),
        "{tx}"
    );
    let to = url::Url::parse(&location(&login)).unwrap();
    assert_eq!(format!("{}{}", to.origin().ascii_serialization(), to.path()), format!("{BASE_URL}/authorize"));
    let query: BTreeMap<String, String> = to.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["redirect_uri"], callback(VENDOR));
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["scope"], "openid profile email offline_access");
    assert_eq!(query["audience"], API);
    assert!(query["state"].len() >= 43 && query["nonce"].len() >= 43 && query["code_challenge"].len() == 43);

    let (mut jar, answer) = sign_in(&app, VENDOR, "http://localhost:5173/home?tab=1").await;
    assert_eq!(answer.status(), 302);
    assert_eq!(location(&answer), "http://localhost:5173/home?tab=1");
    assert_token_cookies(&answer, "__Secure-at", "localhost");
    let at = jar.get("__Secure-at").unwrap().to_owned();
    assert!(!at.contains('.') && at.len() > 100, "an opaque sealed value, not a JWT");

    // The session: claims, never a token; CORS for the SPA with credentials.
    let session = call(&app, Method::GET, "/auth/acme/session", &jar).header(header::ORIGIN, SPA).send().await.unwrap();
    assert_eq!(session.status(), 200);
    assert_eq!(session.headers()["access-control-allow-origin"], SPA);
    assert_eq!(session.headers()["access-control-allow-credentials"], "true");
    let body: Value = session.json().await.unwrap();
    assert_eq!(body["authenticated"], true);
    assert_eq!(body["user"]["email"], EMAIL);
    assert_eq!(body["user"]["name"], "Ada Lovelace");
    assert!(body["user"]["sub"].as_str().unwrap().starts_with("usr_"));
    assert!(body["expiresAt"].as_str().unwrap().ends_with('Z'));
    assert!(body["user"].get("nonce").is_none() && body["user"].get("aud").is_none());
    let text = body.to_string();
    assert!(!text.contains("eyJ"), "no token in the session: {text}");

    // The proxy: the bearer token goes upstream, the token cookies do not; other cookies do.
    jar.set("theme", "dark");
    // Latchkey's own session and CSRF cookies share the handler's host: never forwarded either.
    jar.set("latchkey.session_token", "session-secret");
    jar.set("lk-csrf", "csrf-secret");
    let proxied = call(&app, Method::GET, "/auth/acme/api/orders/7?expand=lines", &jar)
        .header("x-custom", "1")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .header(header::CONNECTION, "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200);
    let echoed: Value = proxied.json().await.unwrap();
    assert_eq!(echoed["method"], "GET");
    assert_eq!(echoed["path"], "/orders/7");
    assert_eq!(echoed["query"], "expand=lines");
    let bearer = echoed["authorization"].as_str().unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    assert_eq!(jwt_part(&bearer, 1)["aud"][0], API);
    assert_eq!(echoed["cookie"], "theme=dark");
    assert_eq!(echoed["forwardedFor"], "127.0.0.1", "the caller as the server saw it, not as claimed");
    assert_eq!(echoed["forwardedProto"], "http");
    let names: Vec<&str> = echoed["headers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(names.contains(&"x-custom") && !names.contains(&"x-drop-me") && !names.contains(&"x-real-ip"), "{names:?}");
    for name in ["theme", "latchkey.session_token", "lk-csrf"] {
        jar.remove(name);
    }

    // A body goes up and comes back, any content type, with an allowed Origin.
    let posted = call(&app, Method::POST, "/auth/acme/api/orders", &jar)
        .header(header::ORIGIN, SPA)
        .header(header::CONTENT_TYPE, "text/csv")
        .body("a,b\n1,2\n")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    assert_eq!(posted.headers()["access-control-allow-origin"], SPA);
    let echoed: Value = posted.json().await.unwrap();
    assert_eq!((echoed["method"].as_str(), echoed["body"].as_str()), (Some("POST"), Some("a,b\n1,2\n")));
    assert_eq!(echoed["contentType"], "text/csv");

    // The gateway check: the access cookie in, the bearer token and x-auth-* out.
    let checked = call(&app, Method::GET, "/auth/acme/check", &jar).send().await.unwrap();
    assert_eq!(checked.status(), 200);
    assert_eq!(checked.headers()["authorization"].to_str().unwrap(), format!("Bearer {bearer}"));
    assert!(checked.headers()["x-auth-sub"].to_str().unwrap().starts_with("usr_"));
    assert_eq!(checked.headers()["x-auth-email"], EMAIL);
    assert_eq!(checked.headers()["x-auth-vendor"], VENDOR);
    assert_eq!(call(&app, Method::GET, "/auth/acme/check", &Jar::default()).send().await.unwrap().status(), 401);

    // Refresh rotates both cookies; the old refresh token is no longer the current one.
    let old_rt = jar.get("__Host-rt").unwrap().to_owned();
    let refreshed =
        call(&app, Method::POST, "/auth/acme/refresh", &jar).header(header::ORIGIN, SPA).send().await.unwrap();
    assert_eq!(refreshed.status(), 204);
    jar.take(&refreshed);
    assert_ne!(jar.get("__Host-rt").unwrap(), old_rt);
    assert_ne!(jar.get("__Secure-at").unwrap(), at);
    let proxied = call(&app, Method::GET, "/auth/acme/api/x", &jar).send().await.unwrap();
    let new_bearer = proxied.json::<Value>().await.unwrap()["authorization"].as_str().unwrap().to_owned();
    assert_ne!(new_bearer, format!("Bearer {bearer}"));

    // Logout: revoked at the issuer, both cookies cleared with the same attributes, the end-session URL.
    let before_logout = jar.clone();
    let out = call(&app, Method::POST, "/auth/acme/logout", &jar).header(header::ORIGIN, SPA).send().await.unwrap();
    assert_eq!(out.status(), 200);
    let lines = set_cookies(&out);
    assert!(
        lines.iter().any(|l| l.starts_with("__Secure-at=;")
            && l.contains("Domain=localhost")
            && l.contains("Max-Age=0")
            && l.contains("Path=/")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("__Host-rt=;") && l.contains("Max-Age=0") && l.contains("Path=/")),
        "{lines:?}"
    );
    jar.take(&out);
    let logout_url = out.json::<Value>().await.unwrap()["logoutUrl"].as_str().unwrap().to_owned();
    assert!(logout_url.starts_with(&format!("{BASE_URL}/oidc/logout?client_id=")), "{logout_url}");
    assert_eq!(call(&app, Method::GET, "/auth/acme/session", &jar).send().await.unwrap().status(), 401);
    // The refresh token died at the issuer: replaying the cookies cannot renew.
    let replay = call(&app, Method::POST, "/auth/acme/refresh", &before_logout)
        .header(header::ORIGIN, SPA)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
    assert!(set_cookies(&replay).iter().any(|l| l.starts_with("__Host-rt=;")), "a refused refresh clears the cookies");
}

/// An issuer that is not this Latchkey: another process with its own base URL.
async fn external_issuer(backend: Backend) -> Option<TestApp> {
    let port = free_port();
    let app = spawn_app_with(backend, |settings| {
        with_master_credentials(settings);
        settings.listen = format!("127.0.0.1:{port}");
        settings.base_url = format!("http://127.0.0.1:{port}");
    })
    .await?;
    let response = bare_client()
        .post(app.url(paths::SIGN_UP_EMAIL))
        .header(header::ORIGIN, &app.address)
        .json(&json!({"name": "Grace Hopper", "email": "grace@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    Some(app)
}

/// Signs in on another Latchkey's login page, as a browser would; returns its redirect to the callback.
async fn sign_in_at(issuer: &TestApp, authorize: &str, email: &str) -> Response {
    let browser = new_client();
    let start = browser.get(authorize).send().await.unwrap();
    assert_eq!(start.status(), 302, "{}", start.text().await.unwrap());
    let page = browser.get(issuer.url(&location(&start))).send().await.unwrap().text().await.unwrap();
    let field = |name: &str| crate::oauth_flow::hidden(&page, name);
    let form =
        [("state", field("state")), ("csrf", field("csrf")), ("email", email.into()), ("password", PASSWORD.into())];
    let signed_in = browser
        .post(issuer.url(paths::LOGIN))
        .header(header::ORIGIN, &issuer.address)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    browser.get(issuer.url(&location(&signed_in))).send().await.unwrap()
}

async fn an_spa_signs_in_through_an_external_issuer(backend: Backend) {
    let Some(issuer) = external_issuer(backend).await else { return };
    let Some(app) = spawn(backend).await else { return };
    let upstream = echo_upstream().await;
    let client = oauth_client(
        &issuer,
        "regular_web",
        json!({"callbacks": [callback("ext")], "token_endpoint_auth_method": "client_secret_basic"}),
    )
    .await;
    let body = json!({
        "clientId": client["client_id"], "clientSecret": client["client_secret"], "issuer": format!("{}/", issuer.address),
        "cookieDomain": "localhost", "allowedReturnTo": [SPA], "apiUpstream": upstream,
        "tokenEndpointAuthMethod": "client_secret_basic", "scopes": ["openid", "profile", "email", "offline_access"],
    });
    let put = put_vendor(&app, "ext", body).await;
    assert_eq!(put.status(), 200);
    let stored: Value = put.json().await.unwrap();
    assert_eq!(stored["issuer"], format!("{}/", issuer.address));
    assert_eq!(stored["hasClientSecret"], true);
    assert!(stored.get("clientSecret").is_none());

    let mut jar = Jar::default();
    let login = bare_client()
        .get(app.url("/auth/ext/login"))
        .query(&[("returnTo", "http://localhost:5173/")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 302);
    jar.take(&login);
    let authorize = location(&login);
    assert!(authorize.starts_with(&format!("{}/authorize?", issuer.address)), "{authorize}");
    let back = sign_in_at(&issuer, &authorize, "grace@example.com").await;
    assert_eq!(back.status(), 302);
    let to = location(&back);
    assert!(to.starts_with(&callback("ext")), "{to}");
    let answer = call(&app, Method::GET, &to.replacen(BASE_URL, "", 1), &jar).send().await.unwrap();
    assert_eq!(answer.status(), 302, "{}", answer.text().await.unwrap());
    assert_eq!(location(&answer), "http://localhost:5173/");
    assert_token_cookies(&answer, "__Secure-at", "localhost");
    jar.take(&answer);

    let session: Value = call(&app, Method::GET, "/auth/ext/session", &jar).send().await.unwrap().json().await.unwrap();
    assert_eq!(session["authenticated"], true);
    assert_eq!(session["user"]["email"], "grace@example.com");

    let echoed: Value = call(&app, Method::GET, "/auth/ext/api/me", &jar).send().await.unwrap().json().await.unwrap();
    let bearer = echoed["authorization"].as_str().unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    // The issuer's own token: /userinfo there accepts it.
    let info = bare_client().get(issuer.url(paths::USERINFO)).bearer_auth(&bearer).send().await.unwrap();
    assert_eq!(info.status(), 200);

    let refreshed =
        call(&app, Method::POST, "/auth/ext/refresh", &jar).header(header::ORIGIN, SPA).send().await.unwrap();
    assert_eq!(refreshed.status(), 204);
    jar.take(&refreshed);
    let session: Value = call(&app, Method::GET, "/auth/ext/session", &jar).send().await.unwrap().json().await.unwrap();
    assert_eq!(session["user"]["email"], "grace@example.com", "the refreshed ID token's claims");

    let before_logout = jar.clone();
    let out = call(&app, Method::POST, "/auth/ext/logout", &jar).header(header::ORIGIN, SPA).send().await.unwrap();
    assert_eq!(out.status(), 200);
    let logout_url = out.json::<Value>().await.unwrap()["logoutUrl"].as_str().unwrap().to_owned();
    assert!(logout_url.starts_with(&format!("{}/oidc/logout?client_id=", issuer.address)), "{logout_url}");
    let replay =
        call(&app, Method::POST, "/auth/ext/refresh", &before_logout).header(header::ORIGIN, SPA).send().await.unwrap();
    assert_eq!(replay.status(), 401, "revoked at the external issuer");

    // An issuer that cannot be discovered is refused at configuration time.
    let body = json!({"clientId": "x", "issuer": "http://127.0.0.1:9/", "cookieDomain": "localhost", "allowedReturnTo": [SPA]});
    let refused = put_vendor(&app, "nowhere", body).await;
    assert_eq!(refused.status(), 400);
    assert_eq!(refused.json::<Value>().await.unwrap()["code"], "ISSUER_DISCOVERY_FAILED");
}

async fn the_proxy_renews_an_expired_token_once_for_many_requests(backend: Backend) {
    let Some((app, _)) = latchkey_setup(backend).await else { return };
    let (jar, _) = sign_in(&app, VENDOR, SPA).await;
    let first: Value = call(&app, Method::GET, "/auth/acme/api/a", &jar).send().await.unwrap().json().await.unwrap();

    // Past the access token's life (an hour by default), still within the cookie's day.
    app.clock.advance(std::time::Duration::from_secs(2 * 3600));
    let calls = (0..6).map(|i| call(&app, Method::GET, &format!("/auth/acme/api/n{i}"), &jar).send());
    let answers = futures_join_all(calls).await;
    let mut bearers = std::collections::HashSet::new();
    let mut rotated = std::collections::HashSet::new();
    for answer in answers {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), 200);
        let cookies = set_cookies(&answer);
        rotated.insert(cookie_pair(&cookies, "__Host-rt").expect("the rotated refresh cookie rides on the answer"));
        assert!(cookie_pair(&cookies, "__Secure-at").is_some());
        bearers.insert(answer.json::<Value>().await.unwrap()["authorization"].as_str().unwrap().to_owned());
    }
    assert_eq!(bearers.len(), 1, "one renewal served every request");
    assert!(!bearers.contains(first["authorization"].as_str().unwrap()), "a new access token");
    // One rotation: the issuer did not take the parallel requests for a reused refresh token, so the new
    // refresh cookie renews again.
    let mut jar = jar;
    let rt_pair = rotated.into_iter().next().unwrap();
    jar.set("__Host-rt", rt_pair.split_once('=').unwrap().1);
    jar.remove("__Secure-at");
    let refreshed =
        call(&app, Method::POST, "/auth/acme/refresh", &jar).header(header::ORIGIN, SPA).send().await.unwrap();
    assert_eq!(refreshed.status(), 204);

    // No refresh cookie and an expired access cookie: 401.
    let mut stale = jar.clone();
    stale.take(&refreshed);
    stale.remove("__Host-rt");
    app.clock.advance(std::time::Duration::from_secs(2 * 3600));
    assert_eq!(call(&app, Method::GET, "/auth/acme/api/a", &stale).send().await.unwrap().status(), 401);
    assert_eq!(call(&app, Method::GET, "/auth/acme/check", &stale).send().await.unwrap().status(), 401);

    // An upstream that is down: 502.
    let down = format!("http://127.0.0.1:{}", free_port());
    let body = json!({"clientId": app_client_id(&app).await, "cookieDomain": "localhost", "allowedReturnTo": [SPA], "apiUpstream": down, "audience": API});
    assert_eq!(put_vendor(&app, VENDOR, body).await.status(), 200);
    let (jar, _) = sign_in(&app, VENDOR, SPA).await;
    let failed = call(&app, Method::GET, "/auth/acme/api/a", &jar).send().await.unwrap();
    assert_eq!(failed.status(), 502);
    assert_eq!(failed.json::<Value>().await.unwrap()["code"], "UPSTREAM_UNAVAILABLE");
}

/// The client id the vendor `acme` uses.
async fn app_client_id(app: &TestApp) -> String {
    let stored: Value =
        master(app, Method::GET, "/management/vendors/acme/token-handler").send().await.unwrap().json().await.unwrap();
    stored["clientId"].as_str().unwrap().to_owned()
}

/// Awaits every future (a tiny `join_all`: the tests do not depend on `futures`).
async fn futures_join_all<F: std::future::Future + Send + 'static>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

async fn login_and_callback_refuse_what_the_contract_refuses(backend: Backend) {
    let Some((app, _)) = latchkey_setup(backend).await else { return };
    for bad in [
        "https://evil.example/",
        "//evil.example/x",
        "http://user:pw@localhost:5173/",
        "http://localhost:5173@evil.example/",
        "javascript:alert(1)",
        "/relative",
        "http://localhost:5174/",
        "https://localhost:5173/",
        "http://localhost:5173\\@evil.example/",
    ] {
        let response = bare_client().get(app.url("/auth/acme/login")).query(&[("returnTo", bad)]).send().await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        assert!(response.headers().get(header::LOCATION).is_none());
        assert_eq!(response.json::<Value>().await.unwrap()["code"], "INVALID_RETURN_TO", "{bad}");
    }
    assert_eq!(bare_client().get(app.url("/auth/nobody/login")).send().await.unwrap().status(), 404);
    assert_eq!(bare_client().get(app.url("/auth/NoBody/login")).send().await.unwrap().status(), 404);

    // A real sign-in up to the issuer's redirect back, then a callback with something wrong.
    let start = || async {
        let mut jar = Jar::default();
        let login = bare_client().get(app.url("/auth/acme/login")).query(&[("returnTo", SPA)]).send().await.unwrap();
        jar.take(&login);
        let (_browser, back) = authorize_with_login(&app, &location(&login).replacen(BASE_URL, &app.address, 1)).await;
        (jar, location(&back).replacen(BASE_URL, "", 1))
    };
    let refused = |response: Response, code: &'static str| async move {
        assert_eq!(response.status(), 400);
        let lines = set_cookies(&response);
        assert!(!lines.iter().any(|l| l.starts_with("__Secure-at=") || l.starts_with("__Host-rt=")), "{lines:?}");
        assert_eq!(response.json::<Value>().await.unwrap()["code"], code);
    };
    let (_, to) = start().await;
    refused(call(&app, Method::GET, &to, &Jar::default()).send().await.unwrap(), "INVALID_LOGIN_STATE").await;
    let (jar, to) = start().await;
    let mismatched = to.replace("state=", "state=x");
    refused(call(&app, Method::GET, &mismatched, &jar).send().await.unwrap(), "STATE_MISMATCH").await;
    let no_state: String = {
        let mut url = url::Url::parse(&format!("http://x{to}")).unwrap();
        let kept: Vec<(String, String)> = url.query_pairs().into_owned().filter(|(k, _)| k != "state").collect();
        url.query_pairs_mut().clear().extend_pairs(kept);
        format!("{}?{}", url.path(), url.query().unwrap())
    };
    refused(call(&app, Method::GET, &no_state, &jar).send().await.unwrap(), "STATE_MISMATCH").await;
    let (mut jar, to) = start().await;
    let tx = jar.get("__Host-lk-tx").unwrap().to_owned();
    jar.set("__Host-lk-tx", &flip(&tx, tx.len() / 2));
    refused(call(&app, Method::GET, &to, &jar).send().await.unwrap(), "INVALID_LOGIN_STATE").await;
    let (jar, to) = start().await;
    app.clock.advance(std::time::Duration::from_secs(301));
    refused(call(&app, Method::GET, &to, &jar).send().await.unwrap(), "INVALID_LOGIN_STATE").await;
    // A person in a browser gets a page, not JSON; still no token cookie.
    let page = call(&app, Method::GET, &to, &jar)
        .header(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(!set_cookies(&page).iter().any(|l| l.starts_with("__Secure-at=") || l.starts_with("__Host-rt=")));
    let html = page.text().await.unwrap();
    assert!(html.contains("Signing in could not be finished") && html.contains("sign in again"), "{html}");

    // An error from the issuer goes back to returnTo with `error`, and no token cookies.
    let mut jar = Jar::default();
    let login = bare_client()
        .get(app.url("/auth/acme/login"))
        .query(&[("returnTo", "http://localhost:5173/x")])
        .send()
        .await
        .unwrap();
    jar.take(&login);
    let state =
        url::Url::parse(&location(&login)).unwrap().query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let denied = call(&app, Method::GET, &format!("/auth/acme/callback?error=access_denied&state={state}"), &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 302);
    assert_eq!(location(&denied), "http://localhost:5173/x?error=access_denied");
    assert!(!set_cookies(&denied).iter().any(|l| l.starts_with("__Secure-at=") || l.starts_with("__Host-rt=")));
}

/// `value` with the character at `index` changed (still base64url).
fn flip(value: &str, index: usize) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    chars[index] = if chars[index] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

async fn tampered_swapped_foreign_and_expired_cookies_are_refused(backend: Backend) {
    let Some((app, upstream)) = latchkey_setup(backend).await else { return };
    let (jar, _) = sign_in(&app, VENDOR, SPA).await;
    let at = jar.get("__Secure-at").unwrap().to_owned();
    let rt = jar.get("__Host-rt").unwrap().to_owned();
    let session_status = |jar: Jar| {
        let app = &app;
        async move { call(app, Method::GET, "/auth/acme/session", &jar).send().await.unwrap().status() }
    };
    let only = |name: &str, value: &str| {
        let mut jar = Jar::default();
        jar.set(name, value);
        jar
    };
    assert_eq!(session_status(only("__Secure-at", &at)).await, 200);
    for (what, value) in [
        ("a flipped byte", flip(&at, 20)),
        ("a flipped last byte", flip(&at, at.len() - 1)),
        ("truncated", at[..at.len() - 4].to_owned()),
        ("the refresh cookie's value", rt.clone()),
        ("empty", String::new()),
    ] {
        let status = session_status(only("__Secure-at", &value)).await;
        assert_eq!(status, 401, "{what}");
        let checked = call(&app, Method::GET, "/auth/acme/check", &only("__Secure-at", &value)).send().await.unwrap();
        assert_eq!(checked.status(), 401, "{what}");
    }
    // The access cookie presented as the refresh cookie renews nothing.
    let swapped = call(&app, Method::POST, "/auth/acme/refresh", &only("__Host-rt", &at))
        .header(header::ORIGIN, SPA)
        .send()
        .await
        .unwrap();
    assert_eq!(swapped.status(), 401);
    let swapped = call(&app, Method::POST, "/auth/acme/refresh", &only("__Host-rt", &flip(&rt, 30)))
        .header(header::ORIGIN, SPA)
        .send()
        .await
        .unwrap();
    assert_eq!(swapped.status(), 401);

    // Vendor A's cookies at vendor B (same client, same issuer): refused.
    latchkey_vendor(&app, "other", &upstream).await;
    let foreign = call(&app, Method::GET, "/auth/other/session", &jar).send().await.unwrap();
    assert_eq!(foreign.status(), 401);
    assert_eq!(call(&app, Method::GET, "/auth/other/check", &jar).send().await.unwrap().status(), 401);
    assert_eq!(call(&app, Method::GET, "/auth/other/api/x", &jar).send().await.unwrap().status(), 401);

    // Expired: the access cookie's own day is over (the refresh cookie, 30 days, still renews).
    app.clock.advance(std::time::Duration::from_secs(86_400));
    assert_eq!(session_status(only("__Secure-at", &at)).await, 401);
    let renewed = call(&app, Method::GET, "/auth/acme/session", &jar).send().await.unwrap();
    assert_eq!(renewed.status(), 200, "renewed through the refresh cookie");
    assert!(cookie_pair(&set_cookies(&renewed), "__Host-rt").is_some());

    // A deleted vendor's cookies open nowhere.
    let deleted = master(&app, Method::DELETE, "/management/vendors/acme/token-handler").send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(call(&app, Method::GET, "/auth/acme/session", &jar).send().await.unwrap().status(), 404);
}

async fn a_rotated_key_opens_old_cookies_until_its_window_ends(backend: Backend) {
    let Some((app, _)) = latchkey_setup(backend).await else { return };
    let (old, _) = sign_in(&app, VENDOR, SPA).await;
    let rotated = master(&app, Method::POST, "/management/vendors/acme/token-handler/rotate-key").send().await.unwrap();
    assert_eq!(rotated.status(), 200);
    let rotation: Value = rotated.json().await.unwrap();
    assert!(rotation["previousKeyOpensUntil"].as_str().unwrap().ends_with('Z'));
    // The old cookies still open; new ones are sealed with the new key (the old key opens them not).
    assert_eq!(call(&app, Method::GET, "/auth/acme/session", &old).send().await.unwrap().status(), 200);
    let (new, _) = sign_in(&app, VENDOR, SPA).await;
    assert_eq!(call(&app, Method::GET, "/auth/acme/check", &new).send().await.unwrap().status(), 200);
    // A second rotation retires the key `new` was sealed with; both older keys are still in their windows.
    let again = master(&app, Method::POST, "/management/vendors/acme/token-handler/rotate-key").send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(call(&app, Method::GET, "/auth/acme/check", &new).send().await.unwrap().status(), 200);
    // Past the retired keys' window (30 days), their cookies open no more, and maintenance deletes them.
    app.clock.advance(std::time::Duration::from_secs(2_592_000 + 1));
    let mut old_rt = Jar::default();
    old_rt.set("__Host-rt", old.get("__Host-rt").unwrap());
    let refused =
        call(&app, Method::POST, "/auth/acme/refresh", &old_rt).header(header::ORIGIN, SPA).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(app.count("bff_vendor_keys").await, 3, "nothing is deleted before maintenance");
    app.state.run_maintenance().await.unwrap();
    assert_eq!(app.count("bff_vendor_keys").await, 1, "keys past their window are deleted");
    let (current, _) = sign_in(&app, VENDOR, SPA).await;
    assert_eq!(call(&app, Method::GET, "/auth/acme/check", &current).send().await.unwrap().status(), 200);
}

async fn state_changing_calls_need_an_allowed_origin(backend: Backend) {
    let Some((app, _)) = latchkey_setup(backend).await else { return };
    let (jar, _) = sign_in(&app, VENDOR, SPA).await;
    for origin in [None, Some("https://evil.example"), Some("null"), Some("http://localhost:5173/"), Some(BASE_URL)] {
        for (method, path) in [
            (Method::POST, "/auth/acme/refresh"),
            (Method::POST, "/auth/acme/logout"),
            (Method::POST, "/auth/acme/api/orders"),
            (Method::DELETE, "/auth/acme/api/orders/1"),
            (Method::PUT, "/auth/acme/api/orders/1"),
        ] {
            let mut request =
                call(&app, method.clone(), path, &jar).header(header::CONTENT_TYPE, "application/json").body("{}");
            if let Some(origin) = origin {
                request = request.header(header::ORIGIN, origin);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 403, "{method} {path} from {origin:?}");
            assert!(response.headers().get("access-control-allow-origin").is_none());
            assert!(set_cookies(&response).is_empty(), "nothing changed");
            assert_eq!(response.json::<Value>().await.unwrap()["code"], "INVALID_ORIGIN");
        }
    }
    // The refusals changed nothing: the session and the refresh cookie still work.
    assert_eq!(call(&app, Method::GET, "/auth/acme/session", &jar).send().await.unwrap().status(), 200);
    let ok = call(&app, Method::POST, "/auth/acme/refresh", &jar).header(header::ORIGIN, SPA).send().await.unwrap();
    assert_eq!(ok.status(), 204);

    // Preflights: answered with credentials for the vendor's origin only.
    let preflight = |origin: &'static str| {
        bare_client()
            .request(Method::OPTIONS, app.url("/auth/acme/api/orders"))
            .header(header::ORIGIN, origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, x-trace")
            .send()
    };
    let allowed = preflight(SPA).await.unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(allowed.headers()["access-control-allow-origin"], SPA);
    assert_eq!(allowed.headers()["access-control-allow-credentials"], "true");
    assert_eq!(allowed.headers()["access-control-allow-headers"], "content-type, x-trace");
    let foreign = preflight("https://evil.example").await.unwrap();
    assert!(foreign.headers().get("access-control-allow-origin").is_none());
    let session_preflight = bare_client()
        .request(Method::OPTIONS, app.url("/auth/acme/logout"))
        .header(header::ORIGIN, SPA)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(session_preflight.headers()["access-control-allow-origin"], SPA);
    // Nothing climbs out of the upstream's path (dot segments are unit-tested: clients resolve them).
    let escaped = call(&app, Method::GET, "/auth/acme/api/a%2f..%2fadmin", &jar).send().await.unwrap();
    assert_eq!(escaped.status(), 400);
}

async fn vendor_configuration_is_managed_with_scopes_and_never_shows_the_secret(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let upstream = echo_upstream().await;
    let client = latchkey_vendor(&app, VENDOR, &upstream).await;
    let secret = client["client_secret"].as_str().unwrap().to_owned();
    let path = "/management/vendors/acme/token-handler";

    let got = master(&app, Method::GET, path).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["cache-control"], "no-store");
    let text = got.text().await.unwrap();
    assert!(!text.contains(&secret), "the secret is never returned");
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stored["vendorId"], VENDOR);
    assert_eq!(stored["issuer"], Value::Null);
    assert_eq!(stored["accessTokenCookie"], "__Secure-at");
    assert_eq!(stored["scopes"], json!(["openid", "profile", "email", "offline_access"]));
    assert_eq!(stored["allowedReturnTo"], json!([SPA]));
    assert_eq!(stored["redirectUri"], callback(VENDOR));
    assert_eq!(stored["tokenEndpointAuthMethod"], "client_secret_post");
    // Stored sealed: neither the secret nor the cookie key is in the database in the clear.
    let sealed: String = sqlx_scalar(&app, "SELECT client_secret_sealed FROM bff_vendors").await;
    assert!(!sealed.contains(&secret) && sealed.len() > 40);

    // A PUT without the secret keeps it (same client).
    let body = json!({"clientId": client["client_id"], "cookieDomain": "localhost", "allowedReturnTo": [SPA, "https://app.example.com"]});
    let kept: Value = put_vendor(&app, VENDOR, body).await.json().await.unwrap();
    assert_eq!(kept["hasClientSecret"], true);
    assert_eq!(kept["allowedReturnTo"], json!([SPA, "https://app.example.com"]));

    for (body, what) in [
        (json!({"clientId": client["client_id"], "cookieDomain": "localhost", "allowedReturnTo": []}), "no origins"),
        (
            json!({"clientId": client["client_id"], "cookieDomain": "localhost", "allowedReturnTo": ["http://localhost:5173/app"]}),
            "a path",
        ),
        (
            json!({"clientId": client["client_id"], "cookieDomain": "example.com", "allowedReturnTo": [SPA]}),
            "another domain",
        ),
        (
            json!({"clientId": client["client_id"], "cookieDomain": "localhost", "allowedReturnTo": [SPA], "scopes": ["profile"]}),
            "no openid",
        ),
        (
            json!({"clientId": client["client_id"], "cookieDomain": "localhost", "allowedReturnTo": [SPA], "apiUpstream": "ftp://x"}),
            "upstream",
        ),
        (json!({"clientId": "unknown", "cookieDomain": "localhost", "allowedReturnTo": [SPA]}), "unknown client"),
        (
            json!({"clientId": client["client_id"], "cookieDomain": "localhost", "allowedReturnTo": [SPA], "surprise": 1}),
            "unknown field",
        ),
    ] {
        let response = put_vendor(&app, VENDOR, body).await;
        assert_eq!(response.status(), 400, "{what}");
        let code = response.json::<Value>().await.unwrap()["code"].as_str().unwrap().to_owned();
        assert!(["VALIDATION_ERROR", "INVALID_JSON"].contains(&code.as_str()), "{what}: {code}");
    }
    // A client whose callbacks lack the handler's, or that is not a regular web app.
    let spa = oauth_client(&app, "spa", json!({"callbacks": [callback("spa")]})).await;
    let body = json!({"clientId": spa["client_id"], "cookieDomain": "localhost", "allowedReturnTo": [SPA]});
    assert_eq!(put_vendor(&app, "spa", body).await.status(), 400);
    let body = json!({"clientId": client["client_id"], "cookieDomain": "localhost", "allowedReturnTo": [SPA]});
    assert_eq!(put_vendor(&app, "elsewhere", body).await.status(), 400, "the callback names another vendor");
    let body = json!({"clientId": client["client_id"], "cookieDomain": "localhost", "allowedReturnTo": [SPA]});
    let bad_id = put_vendor(&app, "Not_OK", body).await;
    assert_eq!(bad_id.status(), 400);
    assert_eq!(bad_id.json::<Value>().await.unwrap()["code"], "INVALID_VENDOR_ID");
    assert_eq!(master(&app, Method::GET, "/management/vendors/none/token-handler").send().await.unwrap().status(), 404);

    // Authorisation: none, wrong master password, a management token with or without the scope.
    let anonymous = bare_client().get(app.url(path)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.json::<Value>().await.unwrap()["code"], "UNAUTHORIZED");
    let wrong = bare_client().get(app.url(path)).basic_auth(MASTER_USER, Some("nope")).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let reader = management_token(&app, &["read:token_handlers"]).await;
    assert_eq!(bare_client().get(app.url(path)).bearer_auth(&reader).send().await.unwrap().status(), 200);
    let forbidden = bare_client().put(app.url(path)).bearer_auth(&reader).json(&json!({})).send().await.unwrap();
    assert_eq!(forbidden.status(), 403);
    assert_eq!(forbidden.json::<Value>().await.unwrap()["code"], "INSUFFICIENT_SCOPE");
    let rotate = bare_client().post(app.url(&format!("{path}/rotate-key"))).bearer_auth(&reader).send().await.unwrap();
    assert_eq!(rotate.status(), 403);
    let writer = management_token(&app, &["update:token_handlers"]).await;
    let body = json!({"clientId": client["client_id"], "cookieDomain": "localhost", "allowedReturnTo": [SPA]});
    let written = bare_client().put(app.url(path)).bearer_auth(&writer).json(&body).send().await.unwrap();
    assert_eq!(written.status(), 200);
    let invalid = bare_client().get(app.url(path)).bearer_auth("not-a-token").send().await.unwrap();
    assert_eq!(invalid.status(), 401);
    assert_eq!(invalid.json::<Value>().await.unwrap()["code"], "INVALID_TOKEN");

    let deleted = bare_client().delete(app.url(path)).bearer_auth(&writer).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(master(&app, Method::GET, path).send().await.unwrap().status(), 404);
    assert_eq!(master(&app, Method::DELETE, path).send().await.unwrap().status(), 404);
    assert_eq!(master(&app, Method::POST, &format!("{path}/rotate-key")).send().await.unwrap().status(), 404);
    assert_eq!(app.count("bff_vendor_keys").await, 0);
}

/// One text column of the first row of a query.
async fn sqlx_scalar(app: &TestApp, sql: &str) -> String {
    match &app.state.db {
        latchkey::storage::Db::Sqlite(pool, _) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        latchkey::storage::Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}

/// A management API token holding `scopes` (client credentials of a machine client granted them).
pub async fn management_token(app: &TestApp, scopes: &[&str]) -> String {
    let machine = oauth_client(app, "non_interactive", json!({"callbacks": []})).await;
    let audience = format!("{BASE_URL}/api/v2/");
    crate::oauth_flow::mgmt(
        app,
        paths::MGMT_CLIENT_GRANTS,
        json!({"client_id": machine["client_id"], "audience": audience, "scope": scopes}),
    )
    .await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", machine["client_id"].as_str().unwrap()),
        ("client_secret", machine["client_secret"].as_str().unwrap()),
        ("audience", audience.as_str()),
    ];
    let answer: Value =
        bare_client().post(app.url(paths::TOKEN)).form(&form).send().await.unwrap().json().await.unwrap();
    answer["access_token"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned()
}

/// The real binary at `trace` level through a whole handler flow: no client secret, token, code or cookie
/// value reaches its output, and no answer carries a token the SPA could read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs_or_the_spa() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = crate::cli::latchkey(dir.path());
    command.env("LATCHKEY_LOG", "trace").env("MASTER_USERNAME", MASTER_USER).env("MASTER_PASSWORD", MASTER_PASSWORD);
    let server = crate::cli::Server::start(command);
    let url = |path: &str| format!("{}{}", server.address, path);
    let local = |to: &str| to.replacen(BASE_URL, &server.address, 1);
    let basic = |method: Method, path: &str| {
        bare_client().request(method, url(path)).basic_auth(MASTER_USER, Some(MASTER_PASSWORD))
    };
    let upstream = echo_upstream().await;
    let mut answers = String::new();

    let signed_up = bare_client()
        .post(url(paths::SIGN_UP_EMAIL))
        .header(header::ORIGIN, BASE_URL)
        .json(&json!({"name": "Ada", "email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let session = cookie_header(&signed_up);
    let api = json!({"name": "Orders", "identifier": API, "allow_offline_access": true});
    assert_eq!(basic(Method::POST, paths::MGMT_RESOURCE_SERVERS).json(&api).send().await.unwrap().status(), 201);
    let web = json!({"name": "BFF", "app_type": "regular_web", "callbacks": [callback(VENDOR)]});
    let client: Value = basic(Method::POST, paths::MGMT_CLIENTS).json(&web).send().await.unwrap().json().await.unwrap();
    let secret = client["client_secret"].as_str().unwrap().to_owned();
    let body = json!({"clientId": client["client_id"], "clientSecret": secret, "cookieDomain": "localhost",
        "allowedReturnTo": [SPA], "apiUpstream": upstream, "audience": API});
    let put = basic(Method::PUT, "/management/vendors/acme/token-handler").json(&body).send().await.unwrap();
    assert_eq!(put.status(), 200);
    answers.push_str(&put.text().await.unwrap());

    let mut jar = Jar::default();
    let login = bare_client().get(url("/auth/acme/login")).query(&[("returnTo", SPA)]).send().await.unwrap();
    jar.take(&login);
    // The SSO session answers /authorize straight away with a code for the handler's callback.
    let back = bare_client().get(local(&location(&login))).header(header::COOKIE, &session).send().await.unwrap();
    assert_eq!(back.status(), 302);
    let to = location(&back);
    let code = url::Url::parse(&to).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let answer = bare_client().get(local(&to)).header(header::COOKIE, jar.header()).send().await.unwrap();
    assert_eq!(answer.status(), 302);
    jar.take(&answer);
    let mut cookie_values: Vec<String> = jar.0.values().cloned().collect();
    let with = |method: Method, path: &str, jar: &Jar| {
        bare_client().request(method, url(path)).header(header::COOKIE, jar.header()).header(header::ORIGIN, SPA)
    };
    let session_answer = with(Method::GET, "/auth/acme/session", &jar).send().await.unwrap().text().await.unwrap();
    answers.push_str(&session_answer);
    let echoed: Value = with(Method::GET, "/auth/acme/api/orders", &jar).send().await.unwrap().json().await.unwrap();
    let access_token = echoed["authorization"].as_str().unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    let refreshed = with(Method::POST, "/auth/acme/refresh", &jar).send().await.unwrap();
    assert_eq!(refreshed.status(), 204);
    jar.take(&refreshed);
    cookie_values.extend(jar.0.values().cloned());
    let out = with(Method::POST, "/auth/acme/logout", &jar).send().await.unwrap();
    assert_eq!(out.status(), 200);
    answers.push_str(&out.text().await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let logs = server.logs();
    assert!(logs.contains("token handler sign-in"), "the audit event is logged:\n{logs}");
    assert!(logs.contains("/auth/acme/callback"), "requests are logged:\n{logs}");
    for (what, value) in
        [("the client secret", secret.as_str()), ("the access token", &access_token), ("the code", &code)]
    {
        assert!(!logs.contains(value), "{what} appeared in the logs");
        assert!(!answers.contains(value), "{what} appeared in an answer");
    }
    for value in cookie_values {
        assert!(value.len() > 40 && !logs.contains(&value), "a cookie value appeared in the logs");
    }
    assert!(!answers.contains("eyJ"), "no JWT in any answer the SPA reads: {answers}");
}
