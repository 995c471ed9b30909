//! Social sign-in end to end, as a browser and a mobile app would drive it, against an upstream that is
//! a second Latchkey process with its own base URL (its login page, its codes, its signed ID tokens): new
//! users, returning users, linking only on an upstream-verified email, list/unlink, the ID-token sign-in
//! with its audience and nonce checks, every refusal the contract names, the OAuth login page's
//! "Continue with …" button resuming an /authorize flow, and no secret in any answer or log.

use latchkey::{
    config::{Secret, SocialProviderSettings},
    paths,
};
use reqwest::{header, Method, Response};
use serde_json::{json, Value};

use crate::{
    bff::Jar,
    both_backends,
    browser::free_port,
    helpers::*,
    oauth_flow::{authorize_url, code_of, follow, hidden, location, oauth_client, query_of, CALLBACK, VERIFIER},
};

both_backends!(
    a_new_user_signs_in_then_finds_the_same_account_and_a_replayed_callback_gets_nothing,
    failures_go_to_the_error_callback_without_a_session,
    a_callback_without_a_flow_of_ours_gets_the_400_page,
    an_unverified_email_is_not_linked_but_a_verified_one_is_and_accounts_can_be_unlinked,
    the_id_token_sign_in_checks_audience_and_nonce,
    unknown_providers_untrusted_callbacks_and_unreachable_issuers_are_refused,
    the_login_page_continues_with_the_provider_and_resumes_the_authorization,
    a_rotated_upstream_key_is_fetched_when_an_id_token_names_it,
);

const PROVIDER: &str = "corp";
const GRACE: &str = "grace@example.com";

/// Latchkey's redirect URI at the upstream.
fn redirect_uri() -> String {
    format!("{BASE_URL}/api/auth/callback/{PROVIDER}")
}

/// The upstream: a Latchkey on its own address, with Grace signed up and a client for the downstream.
struct Upstream {
    app: TestApp,
    client_id: String,
    client_secret: String,
}

async fn upstream(backend: Backend) -> Option<Upstream> {
    let port = free_port();
    let app = spawn_app_with(backend, |settings| {
        with_master_credentials(settings);
        settings.listen = format!("127.0.0.1:{port}");
        settings.base_url = format!("http://127.0.0.1:{port}");
    })
    .await?;
    let signed_up = bare_client()
        .post(app.url(paths::SIGN_UP_EMAIL))
        .header(header::ORIGIN, &app.address)
        .json(&json!({"name": "Grace Hopper", "email": GRACE, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_up.status(), 200);
    let client = oauth_client(
        &app,
        "regular_web",
        json!({"callbacks": [redirect_uri()], "token_endpoint_auth_method": "client_secret_basic"}),
    )
    .await;
    Some(Upstream {
        client_id: client["client_id"].as_str().unwrap().to_owned(),
        client_secret: client["client_secret"].as_str().unwrap().to_owned(),
        app,
    })
}

impl Upstream {
    /// The upstream vouches for Grace's email from now on.
    async fn verify_email(&self) {
        self.app.execute(&format!("UPDATE users SET email_verified = TRUE WHERE email = '{GRACE}'")).await;
    }
}

/// The downstream Latchkey, with the upstream configured as provider `corp`.
async fn downstream(backend: Backend, upstream: &Upstream) -> Option<TestApp> {
    let provider = SocialProviderSettings {
        // The upstream's issuer is its base URL with a slash; the crate compares it exactly.
        issuer: format!("{}/", upstream.app.address),
        client_id: upstream.client_id.clone(),
        client_secret: Some(Secret::new(upstream.client_secret.clone())),
        scopes: Vec::new(),
    };
    spawn_app_with(backend, |settings| {
        with_master_credentials(settings);
        settings.social.insert(PROVIDER.into(), provider);
    })
    .await
}

async fn post_social(app: &TestApp, body: Value) -> Response {
    bare_client().post(app.url(paths::SIGN_IN_SOCIAL)).header(header::ORIGIN, ORIGIN).json(&body).send().await.unwrap()
}

/// `sign-in/social`: the browser's jar (with the flow cookie) and the upstream's authorization URL.
async fn start(app: &TestApp, body: Value) -> (Jar, String) {
    let response = post_social(app, body).await;
    assert_eq!(response.status(), 200);
    let mut jar = Jar::default();
    jar.take(&response);
    assert!(jar.get("latchkey.social_state").is_some(), "the flow cookie is set");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["redirect"], true);
    (jar, answer["url"].as_str().unwrap().to_owned())
}

/// Signs in on the upstream's login page (at `address`) as a browser would; the upstream's redirect back
/// to Latchkey.
async fn sign_in_at(address: &str, authorize: &str, email: &str) -> String {
    let url = |path: &str| format!("{address}{path}");
    let browser = new_client();
    let start = browser.get(authorize).send().await.unwrap();
    assert_eq!(start.status(), 302, "{}", start.text().await.unwrap());
    let page = browser.get(url(&location(&start))).send().await.unwrap().text().await.unwrap();
    let form = [
        ("state", hidden(&page, "state")),
        ("csrf", hidden(&page, "csrf")),
        ("email", email.into()),
        ("password", PASSWORD.into()),
    ];
    let signed_in = browser.post(url(paths::LOGIN)).header(header::ORIGIN, address).form(&form).send().await.unwrap();
    assert_eq!(signed_in.status(), 303);
    let back = browser.get(url(&location(&signed_in))).send().await.unwrap();
    assert_eq!(back.status(), 302);
    location(&back)
}

async fn sign_in_upstream(upstream: &TestApp, authorize: &str, email: &str) -> String {
    sign_in_at(&upstream.address, authorize, email).await
}

/// A URL at the test app's base URL, as the test app's address.
fn local(app: &TestApp, url: &str) -> String {
    app.url(&url.replacen(BASE_URL, "", 1))
}

/// Latchkey's callback, with the browser's cookies.
async fn callback(app: &TestApp, to: &str, jar: &Jar) -> Response {
    bare_client().get(local(app, to)).header(header::COOKIE, jar.header()).send().await.unwrap()
}

/// A whole redirect sign-in as Grace: the callback's answer and the jar after it.
async fn sign_in_with_provider(app: &TestApp, upstream: &Upstream, body: Value) -> (Response, Jar) {
    let (mut jar, authorize) = start(app, body).await;
    let to = sign_in_upstream(&upstream.app, &authorize, GRACE).await;
    assert!(to.starts_with(&redirect_uri()), "{to}");
    let answer = callback(app, &to, &jar).await;
    jar.take(&answer);
    (answer, jar)
}

fn has_session_cookie(response: &Response) -> bool {
    cookie_pair(&set_cookies(response), "latchkey.session_token").is_some()
}

async fn session_of(app: &TestApp, jar: &Jar) -> Value {
    let response =
        bare_client().get(app.url(paths::GET_SESSION)).header(header::COOKIE, jar.header()).send().await.unwrap();
    response.json().await.unwrap()
}

/// A redirect sign-in with all three callback URLs.
fn flow() -> Value {
    json!({"provider": PROVIDER, "callbackURL": "/dashboard", "newUserCallbackURL": "/welcome",
        "errorCallbackURL": "/oops"})
}

async fn a_new_user_signs_in_then_finds_the_same_account_and_a_replayed_callback_gets_nothing(backend: Backend) {
    let Some(upstream) = upstream(backend).await else { return };
    let Some(app) = downstream(backend, &upstream).await else { return };
    upstream.verify_email().await;

    // The redirect: S256 PKCE, state, nonce, our callback, the default scopes.
    let (jar, authorize) = start(&app, flow()).await;
    assert!(authorize.starts_with(&format!("{}/authorize?", upstream.app.address)), "{authorize}");
    let query = query_of(&authorize);
    assert_eq!(query["redirect_uri"], redirect_uri());
    assert_eq!(query["client_id"], upstream.client_id);
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["scope"], "openid email profile");
    assert!(query.contains_key("state") && query.contains_key("nonce"));
    let flow_cookie = set_cookies(&post_social(&app, flow()).await).join("\n");
    assert!(flow_cookie.contains("HttpOnly") && flow_cookie.contains("Max-Age=600"), "{flow_cookie}");

    // Upstream sign-in, then the callback: a new user, sent to newUserCallbackURL with a session.
    let to = sign_in_upstream(&upstream.app, &authorize, GRACE).await;
    let answer = callback(&app, &to, &jar).await;
    assert_eq!(answer.status(), 302);
    assert_eq!(location(&answer), format!("{BASE_URL}/welcome"));
    assert!(has_session_cookie(&answer));
    assert!(set_cookies(&answer).iter().any(|c| c.starts_with("latchkey.social_state=;") && c.contains("Max-Age=0")));
    let mut signed_in = jar.clone();
    signed_in.take(&answer);
    let session = session_of(&app, &signed_in).await;
    assert_eq!(session["user"]["email"], GRACE);
    assert_eq!(session["user"]["name"], "Grace Hopper");
    assert_eq!(session["user"]["emailVerified"], true);
    let user_id = session["user"]["id"].as_str().unwrap().to_owned();
    assert_eq!(app.count("users").await, 1);
    assert_eq!(app.count("accounts").await, 1);

    // The callback again, cookie and all (an attacker who kept both): the upstream's code is spent.
    let replayed = callback(&app, &to, &jar).await;
    assert_eq!(replayed.status(), 302);
    assert_eq!(location(&replayed), format!("{BASE_URL}/oops?error=invalid_code"));
    assert!(!has_session_cookie(&replayed));
    assert_eq!(app.count("sessions").await, 1);

    // A second sign-in finds the account: the same user, to callbackURL.
    let (again, jar) = sign_in_with_provider(&app, &upstream, flow()).await;
    assert_eq!(again.status(), 302);
    assert_eq!(location(&again), format!("{BASE_URL}/dashboard"));
    assert_eq!(session_of(&app, &jar).await["user"]["id"], user_id.as_str());
    assert_eq!(app.count("users").await, 1);
    assert_eq!(app.count("accounts").await, 1);

    // No secret in the audit log: not the client secret, not a code.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stored: Vec<String> = latchkey::db_run!(&app.state.db, |pool| sqlx::query_scalar(
        "SELECT type || description || details FROM audit_log"
    )
    .fetch_all(pool)
    .await
    .unwrap());
    let stored = stored.join("\n");
    assert!(stored.contains("\"connection\":\"corp\""), "{stored}");
    let code = query_of(&to)["code"].clone();
    assert!(!stored.contains(&upstream.client_secret) && !stored.contains(&code));
}

async fn failures_go_to_the_error_callback_without_a_session(backend: Backend) {
    let Some(upstream) = upstream(backend).await else { return };
    let Some(app) = downstream(backend, &upstream).await else { return };

    // Another state than the flow's.
    let (jar, authorize) = start(&app, flow()).await;
    let to = sign_in_upstream(&upstream.app, &authorize, GRACE).await;
    let mut forged = url::Url::parse(&to).unwrap();
    let code = query_of(&to)["code"].clone();
    forged.set_query(Some(&format!("code={code}&state=not-the-one")));
    let answer = callback(&app, forged.as_str(), &jar).await;
    assert_eq!(answer.status(), 302);
    assert_eq!(location(&answer), format!("{BASE_URL}/oops?error=state_mismatch"));
    assert!(!has_session_cookie(&answer));

    // The upstream answers an error (the user said no).
    let (jar, authorize) = start(&app, flow()).await;
    let state = query_of(&authorize)["state"].clone();
    let denied = format!("{}?error=access_denied&state={state}", redirect_uri());
    let answer = callback(&app, &denied, &jar).await;
    assert_eq!(answer.status(), 302);
    assert_eq!(location(&answer), format!("{BASE_URL}/oops?error=access_denied"));
    assert!(!has_session_cookie(&answer));

    // Without an errorCallbackURL, the error goes to callbackURL.
    let (jar, authorize) = start(&app, json!({"provider": PROVIDER, "callbackURL": "/dashboard?tab=1"})).await;
    let state = query_of(&authorize)["state"].clone();
    let answer = callback(&app, &format!("{}?state={state}", redirect_uri()), &jar).await;
    assert_eq!(location(&answer), format!("{BASE_URL}/dashboard?tab=1&error=no_code"));

    assert_eq!(app.count("sessions").await, 0);
    assert_eq!(app.count("users").await, 0);
}

async fn a_callback_without_a_flow_of_ours_gets_the_400_page(backend: Backend) {
    let Some(upstream) = upstream(backend).await else { return };
    let Some(app) = downstream(backend, &upstream).await else { return };
    let (jar, authorize) = start(&app, flow()).await;
    let to = sign_in_upstream(&upstream.app, &authorize, GRACE).await;

    let page = |response: Response| async move {
        assert_eq!(response.status(), 400);
        assert!(response.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        assert!(!has_session_cookie(&response));
        response.text().await.unwrap()
    };
    // No cookie at all.
    let html = page(callback(&app, &to, &Jar::default()).await).await;
    assert!(html.contains("This sign-in cannot go on"), "{html}");
    // A forged or tampered cookie (what another server sealed looks the same: it does not open here).
    let mut tampered = jar.clone();
    let value = jar.get("latchkey.social_state").unwrap();
    let first = if value.starts_with('A') { "B" } else { "A" };
    tampered.set("latchkey.social_state", &format!("{first}{}", &value[1..]));
    page(callback(&app, &to, &tampered).await).await;
    tampered.set("latchkey.social_state", "bm90LW91cnM");
    page(callback(&app, &to, &tampered).await).await;
    // The right cookie at another provider's callback.
    let elsewhere = to.replace("/callback/corp", "/callback/other");
    page(callback(&app, &elsewhere, &jar).await).await;
    // The genuine cookie still works: nothing above consumed the code.
    let answer = callback(&app, &to, &jar).await;
    assert_eq!(answer.status(), 302);
    assert!(has_session_cookie(&answer));
}

async fn an_unverified_email_is_not_linked_but_a_verified_one_is_and_accounts_can_be_unlinked(backend: Backend) {
    let Some(upstream) = upstream(backend).await else { return };
    let Some(app) = downstream(backend, &upstream).await else { return };
    // Grace already has a password account here.
    let signed_up = app.sign_up(GRACE).await;
    assert_eq!(signed_up.status(), 200);
    let user_id = signed_up.json::<Value>().await.unwrap()["user"]["id"].as_str().unwrap().to_owned();

    // The upstream does not vouch for the email: no link, no session.
    let (answer, _) = sign_in_with_provider(&app, &upstream, flow()).await;
    assert_eq!(location(&answer), format!("{BASE_URL}/oops?error=account_not_linked"));
    assert!(!has_session_cookie(&answer));
    assert_eq!(app.count("accounts").await, 1);
    assert_eq!(app.count("users").await, 1);

    // Verified upstream: linked to the same user.
    upstream.verify_email().await;
    let (answer, jar) = sign_in_with_provider(&app, &upstream, flow()).await;
    assert_eq!(location(&answer), format!("{BASE_URL}/dashboard"));
    assert_eq!(session_of(&app, &jar).await["user"]["id"], user_id.as_str());
    assert_eq!(app.count("accounts").await, 2);
    assert_eq!(app.count("users").await, 1);

    let with_session = |method: Method, path: &str| {
        bare_client().request(method, app.url(path)).header(header::COOKIE, jar.header()).header(header::ORIGIN, ORIGIN)
    };
    let listed: Value = with_session(Method::GET, paths::LIST_ACCOUNTS).send().await.unwrap().json().await.unwrap();
    let mut providers: Vec<&str> =
        listed.as_array().unwrap().iter().map(|a| a["providerId"].as_str().unwrap()).collect();
    providers.sort();
    assert_eq!(providers, [PROVIDER, "credential"]);
    let linked = listed.as_array().unwrap().iter().find(|a| a["providerId"] == PROVIDER).unwrap();
    assert!(linked["accountId"].is_string() && linked["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(linked["userId"], user_id.as_str());

    let unlink =
        |provider: &str| with_session(Method::POST, paths::UNLINK_ACCOUNT).json(&json!({"providerId": provider}));
    let unknown = unlink("github").send().await.unwrap();
    assert_eq!(unknown.status(), 400);
    assert_eq!(unknown.json::<Value>().await.unwrap()["code"], "ACCOUNT_NOT_FOUND");
    let unlinked = unlink(PROVIDER).send().await.unwrap();
    assert_eq!(unlinked.status(), 200);
    assert_eq!(unlinked.json::<Value>().await.unwrap(), json!({"status": true}));
    // The password is the last way in: kept.
    let last = unlink("credential").send().await.unwrap();
    assert_eq!(last.status(), 400);
    assert_eq!(last.json::<Value>().await.unwrap()["code"], "FAILED_TO_UNLINK_LAST_ACCOUNT");
    assert_eq!(app.count("accounts").await, 1);
    // Signed out, neither answers; a cookie session from an untrusted origin cannot unlink.
    assert_eq!(bare_client().get(app.url(paths::LIST_ACCOUNTS)).send().await.unwrap().status(), 401);
    let foreign = bare_client()
        .post(app.url(paths::UNLINK_ACCOUNT))
        .header(header::COOKIE, jar.header())
        .header(header::ORIGIN, "https://evil.example")
        .json(&json!({"providerId": "credential"}))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
}

/// An ID token from the upstream for `client_id` (through its code flow), with `nonce`.
async fn upstream_id_token(upstream: &Upstream, client_id: &str, secret: &str, redirect: &str, nonce: &str) -> String {
    let authorize = authorize_url(&upstream.app, client_id, &[("redirect_uri", redirect), ("nonce", nonce)]);
    let back = sign_in_upstream(&upstream.app, &authorize, GRACE).await;
    let code = query_of(&back)["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", VERIFIER),
    ];
    let answer: Value = bare_client()
        .post(upstream.app.url(paths::TOKEN))
        .basic_auth(client_id, Some(secret))
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["id_token"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned()
}

async fn the_id_token_sign_in_checks_audience_and_nonce(backend: Backend) {
    let Some(upstream) = upstream(backend).await else { return };
    let Some(app) = downstream(backend, &upstream).await else { return };
    let (id, secret) = (upstream.client_id.clone(), upstream.client_secret.clone());
    let token = upstream_id_token(&upstream, &id, &secret, &redirect_uri(), "n-mobile").await;
    let sign_in = |id_token: Value| post_social(&app, json!({"provider": PROVIDER, "idToken": id_token}));

    // Another nonce than the token's.
    let wrong_nonce = sign_in(json!({"token": token, "nonce": "n-other"})).await;
    assert_eq!(wrong_nonce.status(), 401);
    assert_eq!(wrong_nonce.json::<Value>().await.unwrap()["code"], "INVALID_TOKEN");
    // Not a JWT; a token whose signature does not hold.
    assert_eq!(sign_in(json!({"token": "not-a-jwt"})).await.status(), 401);
    // A token the upstream issued to another client: the wrong audience.
    let other = oauth_client(
        &upstream.app,
        "regular_web",
        json!({"callbacks": [CALLBACK], "token_endpoint_auth_method": "client_secret_basic"}),
    )
    .await;
    let foreign = upstream_id_token(
        &upstream,
        other["client_id"].as_str().unwrap(),
        other["client_secret"].as_str().unwrap(),
        CALLBACK,
        "n-mobile",
    )
    .await;
    // One token's claims under the other's signature.
    let (ours, theirs): (Vec<&str>, Vec<&str>) = (token.split('.').collect(), foreign.split('.').collect());
    let spliced = format!("{}.{}.{}", ours[0], theirs[1], ours[2]);
    assert_eq!(sign_in(json!({"token": spliced})).await.status(), 401);
    let wrong_audience = sign_in(json!({"token": foreign, "nonce": "n-mobile"})).await;
    assert_eq!(wrong_audience.status(), 401);
    assert_eq!(wrong_audience.json::<Value>().await.unwrap()["code"], "INVALID_TOKEN");
    assert_eq!(app.count("users").await, 0);
    assert_eq!(app.count("sessions").await, 0);

    // The right token and nonce: a session, Better Auth's answer.
    let signed_in = sign_in(json!({"token": token, "nonce": "n-mobile"})).await;
    assert_eq!(signed_in.status(), 200);
    assert!(has_session_cookie(&signed_in));
    let answer: Value = signed_in.json().await.unwrap();
    assert_eq!(answer["redirect"], false);
    assert_eq!(answer["url"], Value::Null);
    assert_eq!(answer["user"]["email"], GRACE);
    assert!(answer["token"].is_string());
    assert!(!answer.to_string().contains(&secret));
    assert_eq!(app.count("accounts").await, 1);

    // Blocked through the management API: the same upstream token signs in no more.
    let user_path = paths::MGMT_USER.replace("{id}", answer["user"]["id"].as_str().unwrap());
    let blocked = master(&app, Method::PATCH, &user_path).json(&json!({"blocked": true})).send().await.unwrap();
    assert_eq!(blocked.status(), 200);
    let refused = sign_in(json!({"token": token, "nonce": "n-mobile"})).await;
    assert_eq!(refused.status(), 403);
    assert!(!has_session_cookie(&refused));
    assert_eq!(refused.json::<Value>().await.unwrap()["code"], "BANNED_USER");
}

async fn unknown_providers_untrusted_callbacks_and_unreachable_issuers_are_refused(backend: Backend) {
    let dead = SocialProviderSettings {
        issuer: format!("http://127.0.0.1:{}/", free_port()),
        client_id: "c".into(),
        client_secret: Some(Secret::new("dead-secret-value")),
        scopes: Vec::new(),
    };
    let Some(app) = spawn_app_with(backend, |settings| {
        settings.social.insert("dead".into(), dead);
    })
    .await
    else {
        return;
    };
    let unknown = post_social(&app, json!({"provider": "nope"})).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<Value>().await.unwrap(),
        json!({"code": "PROVIDER_NOT_FOUND", "message": "Provider not found"})
    );
    for field in ["callbackURL", "errorCallbackURL", "newUserCallbackURL"] {
        for url in ["https://evil.example/", "//evil.example/x", "javascript:alert(1)"] {
            let refused = post_social(&app, json!({"provider": "dead", field: url})).await;
            assert_eq!(refused.status(), 403, "{field} {url}");
            assert_eq!(refused.json::<Value>().await.unwrap()["code"], "INVALID_CALLBACK_URL");
        }
    }
    let unreachable = post_social(&app, json!({"provider": "dead", "callbackURL": "/"})).await;
    assert_eq!(unreachable.status(), 502);
    let body = unreachable.text().await.unwrap();
    assert!(body.contains("PROVIDER_UNAVAILABLE") && !body.contains("dead-secret-value"), "{body}");
    let untrusted = bare_client()
        .post(app.url(paths::SIGN_IN_SOCIAL))
        .header(header::ORIGIN, "https://evil.example")
        .json(&json!({"provider": "dead"}))
        .send()
        .await
        .unwrap();
    assert_eq!(untrusted.status(), 403);
}

async fn the_login_page_continues_with_the_provider_and_resumes_the_authorization(backend: Backend) {
    let Some(upstream) = upstream(backend).await else { return };
    let Some(app) = downstream(backend, &upstream).await else { return };
    let client = oauth_client(&app, "regular_web", json!({})).await;
    let client_id = client["client_id"].as_str().unwrap();

    // /authorize → the sign-in page, with a button for the provider.
    let browser = new_client();
    let start = browser.get(authorize_url(&app, client_id, &[])).send().await.unwrap();
    assert_eq!(start.status(), 302);
    let login = follow(&browser, &app, &start).await;
    let html = login.text().await.unwrap();
    assert!(html.contains("Continue with Corp"), "{html}");
    assert!(html.contains(&format!("action=\"{}\"", paths::LOGIN_SOCIAL)), "{html}");
    let transaction = hidden(&html, "state");

    // A forged button is refused (CSRF), an unknown provider shows the page again.
    let form = |csrf: &str, provider: &str| {
        [("state", transaction.clone()), ("csrf", csrf.to_owned()), ("provider", provider.to_owned())]
    };
    let csrf = hidden(&html, "csrf");
    let post = |form: [(&'static str, String); 3]| {
        browser.post(app.url(paths::LOGIN_SOCIAL)).header(header::ORIGIN, ORIGIN).form(&form).send()
    };
    assert_eq!(post(form("forged", PROVIDER)).await.unwrap().status(), 403);
    assert_eq!(post(form(&csrf, "nope")).await.unwrap().status(), 400);

    // The button: on to the upstream, which sends the browser back to the callback, then /authorize
    // resumes and the client gets its code.
    let continued = post(form(&csrf, PROVIDER)).await.unwrap();
    assert_eq!(continued.status(), 303);
    let authorize = location(&continued);
    assert!(authorize.starts_with(&format!("{}/authorize?", upstream.app.address)), "{authorize}");
    let to = sign_in_upstream(&upstream.app, &authorize, GRACE).await;
    let back = browser.get(local(&app, &to)).send().await.unwrap();
    assert_eq!(back.status(), 302);
    let resume = location(&back);
    assert_eq!(resume, format!("{BASE_URL}{}?state={transaction}", paths::AUTHORIZE_RESUME));
    let answer = browser.get(local(&app, &resume)).send().await.unwrap();
    let code = code_of(&answer);
    assert!(!code.is_empty());
    assert_eq!(app.count("users").await, 1);

    // A failed social sign-in comes back to the page (of a new transaction: that one is done) with a message.
    let browser = new_client();
    let start = browser.get(authorize_url(&app, client_id, &[])).send().await.unwrap();
    let login = location(&start);
    assert!(login.starts_with(paths::LOGIN), "{login}");
    let failed =
        browser.get(app.url(&format!("{login}&error=access_denied"))).send().await.unwrap().text().await.unwrap();
    assert!(failed.contains("was cancelled"), "{failed}");
}

/// The real binaries, the downstream at `trace` level and configured by `LATCHKEY_SOCIAL_CORP_*`, through
/// a whole social sign-in: neither the client secret, the code nor a cookie value reaches the logs, and
/// no answer carries the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs_or_the_answers() {
    let port = free_port();
    let upstream_dir = tempfile::tempdir().unwrap();
    let mut command = crate::cli::latchkey(upstream_dir.path());
    command
        .env("LATCHKEY_LISTEN", format!("127.0.0.1:{port}"))
        .env("LATCHKEY_BASE_URL", format!("http://127.0.0.1:{port}"))
        .env("MASTER_USERNAME", MASTER_USER)
        .env("MASTER_PASSWORD", MASTER_PASSWORD);
    let upstream = crate::cli::Server::start(command);
    let up = |path: &str| format!("{}{}", upstream.address, path);
    let signed_up = bare_client()
        .post(up(paths::SIGN_UP_EMAIL))
        .header(header::ORIGIN, &upstream.address)
        .json(&json!({"name": "Grace Hopper", "email": GRACE, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_up.status(), 200);
    let body = json!({"name": "Downstream", "app_type": "regular_web", "callbacks": [redirect_uri()],
        "token_endpoint_auth_method": "client_secret_basic"});
    let client: Value = bare_client()
        .post(up(paths::MGMT_CLIENTS))
        .basic_auth(MASTER_USER, Some(MASTER_PASSWORD))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (client_id, secret) = (client["client_id"].as_str().unwrap(), client["client_secret"].as_str().unwrap());

    let dir = tempfile::tempdir().unwrap();
    let mut command = crate::cli::latchkey(dir.path());
    command
        .env("LATCHKEY_LOG", "trace")
        .env("LATCHKEY_SOCIAL_CORP_ISSUER", format!("{}/", upstream.address))
        .env("LATCHKEY_SOCIAL_CORP_CLIENT_ID", client_id)
        .env("LATCHKEY_SOCIAL_CORP_CLIENT_SECRET", secret);
    let server = crate::cli::Server::start(command);
    let url = |path: &str| format!("{}{}", server.address, path);
    let mut answers = String::new();

    let started = bare_client()
        .post(url(paths::SIGN_IN_SOCIAL))
        .header(header::ORIGIN, BASE_URL)
        .json(&json!({"provider": PROVIDER, "callbackURL": "/home"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 200);
    let mut jar = Jar::default();
    jar.take(&started);
    let flow_cookie = jar.get("latchkey.social_state").unwrap().to_owned();
    let answer: Value = started.json().await.unwrap();
    answers.push_str(&answer.to_string());
    let to = sign_in_at(&upstream.address, answer["url"].as_str().unwrap(), GRACE).await;
    let code = query_of(&to)["code"].clone();
    let back = bare_client()
        .get(to.replacen(BASE_URL, &server.address, 1))
        .header(header::COOKIE, jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 302, "{}", server.logs());
    assert_eq!(location(&back), format!("{BASE_URL}/home"));
    jar.take(&back);
    let session = bare_client().get(url(paths::GET_SESSION)).header(header::COOKIE, jar.header()).send().await.unwrap();
    answers.push_str(&session.text().await.unwrap());
    let accounts =
        bare_client().get(url(paths::LIST_ACCOUNTS)).header(header::COOKIE, jar.header()).send().await.unwrap();
    answers.push_str(&accounts.text().await.unwrap());
    assert!(answers.contains(GRACE), "{answers}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let logs = server.logs();
    assert!(logs.contains("social sign-in succeeded"), "the audit event is logged:\n{logs}");
    for (what, value) in [("the client secret", secret), ("the code", code.as_str()), ("the flow cookie", &flow_cookie)]
    {
        assert!(!logs.contains(value), "{what} appeared in the logs");
    }
    assert!(!answers.contains(secret), "the client secret appeared in an answer");
    for value in [jar.get("latchkey.session_token").unwrap(), jar.get("latchkey.session_data").unwrap()] {
        assert!(value.len() > 40 && !logs.contains(value), "a cookie value appeared in the logs");
    }
    // `config check` shows the provider, never its secret.
    let checked = crate::cli::latchkey(dir.path())
        .args(["config", "check"])
        .env("LATCHKEY_SOCIAL_CORP_ISSUER", format!("{}/", upstream.address))
        .env("LATCHKEY_SOCIAL_CORP_CLIENT_ID", client_id)
        .env("LATCHKEY_SOCIAL_CORP_CLIENT_SECRET", secret)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&checked.stdout);
    assert!(shown.contains("[social.corp]") && shown.contains(client_id), "{shown}");
    assert!(!shown.contains(secret), "{shown}");
}

async fn a_rotated_upstream_key_is_fetched_when_an_id_token_names_it(backend: Backend) {
    let Some(upstream) = upstream(backend).await else { return };
    let Some(app) = downstream(backend, &upstream).await else { return };
    // The first sign-in caches the upstream's discovery document and JWKS.
    let (first, _) = sign_in_with_provider(&app, &upstream, flow()).await;
    assert_eq!(location(&first), format!("{BASE_URL}/welcome"));

    // The upstream rotates its RS256 key: its next ID token names a kid the cache lacks.
    let state = &upstream.app.state;
    let now = upstream.app.clock.now();
    let kid = state.tokens.key_ring.rotate(&state.db, latchkey::tokens::Algorithm::Rs256, now, 3_600_000, None).await;
    assert!(kid.unwrap().is_some(), "rotated");
    // Within the refetch gap the JWKS is not fetched again (a stream of unknown kids cannot hammer the
    // upstream): the token is refused.
    let (refused, _) = sign_in_with_provider(&app, &upstream, flow()).await;
    assert_eq!(location(&refused), format!("{BASE_URL}/oops?error=invalid_id_token"));
    // Past it, the unknown kid makes Latchkey fetch the JWKS again, and the token is accepted.
    app.clock.advance(std::time::Duration::from_secs(31));
    let (accepted, _) = sign_in_with_provider(&app, &upstream, flow()).await;
    assert_eq!(location(&accepted), format!("{BASE_URL}/dashboard"));
}
