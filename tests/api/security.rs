//! CSRF and origin rules, content types, body limits, rate limits, cookie flags in both modes.

use latchkey::{config::Mode, paths};
use reqwest::header;
use serde_json::{json, Value};

use crate::{both_backends, helpers::*};

both_backends!(
    sign_in_and_sign_up_from_an_untrusted_origin_are_refused,
    an_untrusted_callback_url_is_refused,
    cookie_authenticated_state_changes_need_a_trusted_origin,
    json_endpoints_refuse_other_content_types,
    malformed_and_oversized_bodies_get_json_errors,
    sign_in_failures_are_rate_limited_per_email,
    sign_in_failures_are_counted_in_the_database_and_a_success_writes_nothing,
    sign_in_is_rate_limited_per_ip,
    sign_up_is_rate_limited_per_ip,
    production_cookies_are_secure_samesite_none_prefixed_and_scoped,
    the_better_auth_prefix_gives_better_auth_cookie_names,
    other_trusted_origins_are_accepted,
);

async fn sign_in_and_sign_up_from_an_untrusted_origin_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let client = bare_client();
    let sign_up = json!({"name": "A", "email": "alice@example.com", "password": PASSWORD});
    let sign_in = json!({"email": "alice@example.com", "password": PASSWORD});

    for origin in ["https://evil.example", "null"] {
        let up = client
            .post(app.url(paths::SIGN_UP_EMAIL))
            .header(header::ORIGIN, origin)
            .json(&sign_up)
            .send()
            .await
            .unwrap();
        assert_eq!(up.status(), 403);
        assert_eq!(up.json::<Value>().await.unwrap()["code"], "INVALID_ORIGIN");
    }
    assert_eq!(app.count("users").await, 0);
    // No Origin at all (a non-browser client) is fine; so is the trusted one.
    assert_eq!(client.post(app.url(paths::SIGN_UP_EMAIL)).json(&sign_up).send().await.unwrap().status(), 200);
    for origin in ["https://evil.example", "null"] {
        let inn = client
            .post(app.url(paths::SIGN_IN_EMAIL))
            .header(header::ORIGIN, origin)
            .json(&sign_in)
            .send()
            .await
            .unwrap();
        assert_eq!(inn.status(), 403);
        assert_eq!(inn.json::<Value>().await.unwrap()["code"], "INVALID_ORIGIN");
    }
    let ok =
        client.post(app.url(paths::SIGN_IN_EMAIL)).header(header::ORIGIN, ORIGIN).json(&sign_in).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(app.count("sessions").await, 2);
}

async fn an_untrusted_callback_url_is_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;

    for url in ["https://evil.example/phish", "//evil.example/x", "javascript:alert(1)"] {
        let body = json!({"email": "alice@example.com", "password": PASSWORD, "callbackURL": url});
        let response = app.post(paths::SIGN_IN_EMAIL, &body).await;
        assert_eq!(response.status(), 403, "{url}");
        assert_eq!(response.json::<Value>().await.unwrap()["code"], "INVALID_CALLBACK_URL");
    }
    let body = json!({"email": "alice@example.com", "password": PASSWORD, "callbackURL": format!("{ORIGIN}/home")});
    assert_eq!(app.post(paths::SIGN_IN_EMAIL, &body).await.status(), 200);
    assert_eq!(app.count("sessions").await, 2);
}

async fn cookie_authenticated_state_changes_need_a_trusted_origin(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let cookies = cookie_header(&app.sign_up("alice@example.com").await);
    let client = bare_client();
    let post = |origin: Option<&str>, referer: Option<&str>| {
        let mut request =
            client.post(app.url(paths::REVOKE_OTHER_SESSIONS)).header(header::COOKIE, &cookies).json(&json!({}));
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        if let Some(referer) = referer {
            request = request.header(header::REFERER, referer);
        }
        request.send()
    };

    for (origin, referer) in [
        (None, None),
        (Some("https://evil.example"), None),
        (Some("null"), None),
        (None, Some("https://evil.example/page")),
    ] {
        let response = post(origin, referer).await.unwrap();
        assert_eq!(response.status(), 403, "{origin:?} {referer:?}");
        assert_eq!(response.json::<Value>().await.unwrap()["code"], "INVALID_ORIGIN");
    }
    let sign_out =
        client.post(app.url(paths::SIGN_OUT)).header(header::COOKIE, &cookies).json(&json!({})).send().await.unwrap();
    assert_eq!(sign_out.status(), 403);
    assert_eq!(app.count("sessions").await, 1);

    assert_eq!(post(None, Some(&format!("{ORIGIN}/settings"))).await.unwrap().status(), 200);
    assert_eq!(post(Some(ORIGIN), None).await.unwrap().status(), 200);
    // Reads need no origin.
    let read = client.get(app.url(paths::LIST_SESSIONS)).header(header::COOKIE, &cookies).send().await.unwrap();
    assert_eq!(read.status(), 200);
}

async fn json_endpoints_refuse_other_content_types(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let cookies = cookie_header(&app.sign_up("alice@example.com").await);
    let client = bare_client();

    let form = client
        .post(app.url(paths::SIGN_IN_EMAIL))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("email=alice%40example.com&password=x")
        .send()
        .await
        .unwrap();
    let text = client
        .post(app.url(paths::SIGN_UP_EMAIL))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(json!({"name": "B", "email": "bob@example.com", "password": PASSWORD}).to_string())
        .send()
        .await
        .unwrap();
    let sign_out_form = client
        .post(app.url(paths::SIGN_OUT))
        .header(header::COOKIE, &cookies)
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=x")
        .body("--x--")
        .send()
        .await
        .unwrap();

    for response in [form, text, sign_out_form] {
        assert_eq!(response.status(), 415);
        assert_eq!(response.json::<Value>().await.unwrap()["code"], "UNSUPPORTED_MEDIA_TYPE");
    }
    assert_eq!(app.count("users").await, 1);
    assert_eq!(app.count("sessions").await, 1);
}

async fn malformed_and_oversized_bodies_get_json_errors(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let client = bare_client();

    let malformed = client
        .post(app.url(paths::SIGN_IN_EMAIL))
        .header(header::CONTENT_TYPE, "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    let huge = json!({"name": "x".repeat(70 * 1024), "email": "a@example.com", "password": PASSWORD});
    let oversized = client.post(app.url(paths::SIGN_UP_EMAIL)).json(&huge).send().await.unwrap();
    let wrong_type = client
        .post(app.url(paths::SIGN_IN_EMAIL))
        .json(&json!({"email": 5, "password": PASSWORD}))
        .send()
        .await
        .unwrap();

    assert_eq!(malformed.status(), 400);
    assert_eq!(malformed.json::<Value>().await.unwrap()["code"], "INVALID_JSON");
    assert_eq!(oversized.status(), 413);
    assert_eq!(oversized.json::<Value>().await.unwrap()["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(wrong_type.status(), 400);
    let error: Value = wrong_type.json().await.unwrap();
    assert_eq!(error["code"], "VALIDATION_ERROR");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("email"), "the message names the field: {message}");
    assert!(!message.contains(PASSWORD));
    assert_eq!(app.count("users").await, 0);

    // JSON under any spelling of its media type is accepted: parameters, case, a `+json` suffix.
    for (i, content_type) in
        ["application/json; charset=utf-8", " Application/JSON ;charset=UTF-8", "application/vnd.latchkey+json"]
            .into_iter()
            .enumerate()
    {
        let body = json!({"name": "A", "email": format!("json{i}@example.com"), "password": PASSWORD});
        let response = client
            .post(app.url(paths::SIGN_UP_EMAIL))
            .header(header::CONTENT_TYPE, content_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{content_type}");
    }
    assert_eq!(app.count("users").await, 3);
}

async fn sign_in_failures_are_rate_limited_per_email(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| s.rate_limit.sign_in_failures_per_email = 3).await else { return };
    app.sign_up("alice@example.com").await;

    for _ in 0..3 {
        assert_eq!(app.sign_in("alice@example.com", "wrong password!").await.status(), 401);
    }
    let limited = app.sign_in("alice@example.com", PASSWORD).await;
    let other_account = app.sign_in("bob@example.com", "wrong password!").await;

    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert_eq!(limited.json::<Value>().await.unwrap()["code"], "TOO_MANY_REQUESTS");
    assert_eq!(other_account.status(), 401);
    // The window ends: the right password works again.
    app.clock.advance(std::time::Duration::from_secs(901));
    assert_eq!(app.sign_in("alice@example.com", PASSWORD).await.status(), 200);
}

/// The failures live in the database (keyed by a hash of the email, never the email): a node started
/// later on the same database — a restart, or another node — refuses the locked-out email too, and the
/// login page counts with the JSON sign-in. Successes write nothing.
async fn sign_in_failures_are_counted_in_the_database_and_a_success_writes_nothing(backend: Backend) {
    let limit = |s: &mut latchkey::config::Settings| s.rate_limit.sign_in_failures_per_email = 3;
    let Some(db) = TestDb::new(backend).await else { return };
    let url = db.url();
    let app = spawn_app_on(db, limit).await;
    app.sign_up("alice@example.com").await;
    assert_eq!(app.sign_in("alice@example.com", PASSWORD).await.status(), 200);
    assert_eq!(app.count("sign_in_failures").await, 0, "a success writes nothing");
    for _ in 0..3 {
        assert_eq!(app.sign_in("alice@example.com", "wrong password!").await.status(), 401);
    }
    let stored: String = latchkey::db_run!(&app.state.db, |pool| sqlx::query_scalar::<_, String>(
        "SELECT email_key FROM sign_in_failures"
    )
    .fetch_one(pool)
    .await
    .unwrap());
    assert!(!stored.contains("alice"), "the email is stored hashed: {stored}");

    let other = spawn_node(&url, limit).await;
    let refused = other.sign_in("alice@example.com", PASSWORD).await;
    assert_eq!(refused.status(), 429, "another node knows the failures");
    assert!(refused.headers().contains_key(header::RETRY_AFTER));
    other.clock.advance(std::time::Duration::from_secs(901));
    assert_eq!(other.sign_in("alice@example.com", PASSWORD).await.status(), 200, "the window ended");
}

async fn sign_in_is_rate_limited_per_ip(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| s.rate_limit.sign_in_per_ip = 2).await else { return };
    app.sign_up("alice@example.com").await;

    app.sign_in("alice@example.com", PASSWORD).await;
    app.sign_in("bob@example.com", PASSWORD).await;
    let limited = app.sign_in("carol@example.com", PASSWORD).await;

    assert_eq!(limited.status(), 429);
    assert!(limited.headers()[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() <= 60);
    app.clock.advance(std::time::Duration::from_secs(61));
    assert_eq!(app.sign_in("alice@example.com", PASSWORD).await.status(), 200);
}

async fn sign_up_is_rate_limited_per_ip(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| s.rate_limit.sign_up_per_ip = 2).await else { return };

    app.sign_up("a@example.com").await;
    app.sign_up("b@example.com").await;
    let limited = app.sign_up("c@example.com").await;

    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(app.count("users").await, 2);
}

async fn production_cookies_are_secure_samesite_none_prefixed_and_scoped(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| {
        s.env = Mode::Production;
        s.base_url = "https://api.crm.example.com".into();
        s.extensions.secret = Some(latchkey::config::Secret::new("extension-secret-0123456789abcdef0123456789"));
    })
    .await
    else {
        return;
    };

    let response = bare_client()
        .post(app.url(paths::SIGN_UP_EMAIL))
        .json(&json!({"name": "A", "email": "alice@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let cookies = set_cookies(&response);
    for name in ["__Secure-latchkey.session_token", "__Secure-latchkey.session_data"] {
        let cookie = cookies.iter().find(|c| c.starts_with(&format!("{name}="))).expect(name);
        for flag in ["; Secure", "; HttpOnly", "; SameSite=None", "; Domain=.crm.example.com", "; Path=/"] {
            assert!(cookie.contains(flag), "{cookie} lacks {flag}");
        }
    }
}

async fn the_better_auth_prefix_gives_better_auth_cookie_names(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| s.session.cookie_prefix = "better-auth".into()).await else { return };

    let response = app.sign_up("alice@example.com").await;

    let cookies = set_cookies(&response);
    assert!(cookie_pair(&cookies, "better-auth.session_token").is_some(), "{cookies:?}");
    assert!(cookie_pair(&cookies, "better-auth.session_data").is_some());
    assert_eq!(app.get_session().await["user"]["email"], "alice@example.com");
}

async fn other_trusted_origins_are_accepted(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| s.trusted_origins = vec!["https://app.example.com".into()]).await
    else {
        return;
    };
    let client = bare_client();

    let response = client
        .post(app.url(paths::SIGN_UP_EMAIL))
        .header(header::ORIGIN, "https://app.example.com")
        .json(&json!({"name": "A", "email": "alice@example.com", "password": PASSWORD, "callbackURL": "https://app.example.com/welcome"}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
}
