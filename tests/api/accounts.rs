//! Sign-up and sign-in: shapes, validation, enumeration resistance, no fixation.

use latchkey::paths;
use serde_json::{json, Value};

use crate::{both_backends, helpers::*};

both_backends!(
    sign_up_returns_the_token_and_the_user_and_sets_the_session_cookie,
    only_a_hash_of_the_session_token_is_stored,
    a_taken_email_is_refused_with_422_and_nothing_changes,
    bad_sign_up_input_gets_a_400_code_and_creates_nothing,
    emails_are_trimmed_and_lower_cased,
    sign_in_returns_redirect_token_url_and_user,
    every_sign_in_starts_a_new_session,
    unknown_email_and_wrong_password_get_the_same_answer,
);

async fn sign_up_returns_the_token_and_the_user_and_sets_the_session_cookie(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };

    let response = app.sign_up("alice@example.com").await;

    assert_eq!(response.status(), 200);
    let cookies = set_cookies(&response);
    let token_cookie = cookies.iter().find(|c| c.starts_with("latchkey.session_token=")).expect("session cookie");
    assert!(
        token_cookie.contains("HttpOnly") && token_cookie.contains("Path=/") && token_cookie.contains("SameSite=Lax")
    );
    assert!(!token_cookie.contains("Secure") && !token_cookie.contains("Domain="), "{token_cookie}");
    assert!(cookies.iter().any(|c| c.starts_with("latchkey.session_data=")));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token"].as_str().unwrap().len(), 32);
    let user = &body["user"];
    assert!(user["id"].as_str().unwrap().starts_with("usr_"));
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["name"], "Test User");
    assert_eq!(user["image"], Value::Null);
    assert_eq!(user["emailVerified"], false);
    assert_eq!(user["role"], "user");
    assert_eq!(user["createdAt"], "2026-11-18T11:06:40.000Z");
    assert_eq!(user["updatedAt"], user["createdAt"]);
    // The cookie is the token plus Better Auth's signature, URL-encoded.
    let value = token_cookie.split(';').next().unwrap().trim_start_matches("latchkey.session_token=");
    assert!(value.starts_with(&format!("{}.", body["token"].as_str().unwrap())));
    assert!(value.ends_with("%3D"), "{value}");
    assert_eq!(app.get_session().await["user"]["email"], "alice@example.com");
}

async fn only_a_hash_of_the_session_token_is_stored(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let body: Value = app.sign_up("alice@example.com").await.json().await.unwrap();
    let token = body["token"].as_str().unwrap();

    let hash = latchkey::sessions::token_hash(token);
    let sql = "SELECT COUNT(*) FROM sessions WHERE token_hash = $1";
    let by_hash: i64 =
        latchkey::db_run!(&app.state.db, |pool| sqlx::query_scalar(sql).bind(&hash).fetch_one(pool).await.unwrap());
    let sql = "SELECT COUNT(*) FROM sessions WHERE token_hash = $1 OR id = $1";
    let by_raw: i64 =
        latchkey::db_run!(&app.state.db, |pool| sqlx::query_scalar(sql).bind(token).fetch_one(pool).await.unwrap());
    let sql = "SELECT password_hash FROM accounts";
    let password_hash: String =
        latchkey::db_run!(&app.state.db, |pool| sqlx::query_scalar(sql).fetch_one(pool).await.unwrap());

    assert_eq!(by_hash, 1);
    assert_eq!(by_raw, 0);
    assert!(password_hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert!(!password_hash.contains(PASSWORD));
}

async fn a_taken_email_is_refused_with_422_and_nothing_changes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;

    let response = app.sign_up("ALICE@example.com").await;

    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL");
    assert_eq!(app.count("users").await, 1);
    assert_eq!(app.count("sessions").await, 1);
}

async fn bad_sign_up_input_gets_a_400_code_and_creates_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let cases = [
        (json!({"name": "A", "email": "not-an-email", "password": PASSWORD}), "INVALID_EMAIL"),
        (json!({"name": "A", "email": "a@example.com", "password": "short"}), "PASSWORD_TOO_SHORT"),
        (json!({"name": "A", "email": "a@example.com", "password": "x".repeat(129)}), "PASSWORD_TOO_LONG"),
        (json!({"name": "A", "email": "a@example.com", "password": "password1"}), "PASSWORD_COMPROMISED"),
        (json!({"name": "A", "email": "a@example.com", "password": PASSWORD, "role": "admin"}), "FIELD_NOT_ALLOWED"),
        (
            json!({"name": "A", "email": "a@example.com", "password": PASSWORD, "emailVerified": true}),
            "FIELD_NOT_ALLOWED",
        ),
        (json!({"email": "a@example.com", "password": PASSWORD}), "VALIDATION_ERROR"),
    ];
    for (body, code) in cases {
        let response = app.post(paths::SIGN_UP_EMAIL, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], code, "{body}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(app.count("users").await, 0);
    assert_eq!(app.count("accounts").await, 0);
    assert_eq!(app.count("sessions").await, 0);
}

async fn emails_are_trimmed_and_lower_cased(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let body = json!({"name": "Alice", "email": "  Alice@Example.COM ", "password": PASSWORD});
    let user: Value = app.post(paths::SIGN_UP_EMAIL, &body).await.json().await.unwrap();
    assert_eq!(user["user"]["email"], "alice@example.com");

    let response = app.sign_in("ALICE@EXAMPLE.COM", PASSWORD).await;

    assert_eq!(response.status(), 200);
}

async fn sign_in_returns_redirect_token_url_and_user(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;
    let client = new_client();

    let plain: Value = client
        .post(app.url(paths::SIGN_IN_EMAIL))
        .json(&json!({"email": "alice@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let with_callback = client
        .post(app.url(paths::SIGN_IN_EMAIL))
        .json(&json!({"email": "alice@example.com", "password": PASSWORD, "callbackURL": "/dashboard"}))
        .send()
        .await
        .unwrap();

    assert_eq!(plain["redirect"], false);
    assert_eq!(plain["url"], Value::Null);
    assert_eq!(plain["token"].as_str().unwrap().len(), 32);
    assert_eq!(plain["user"]["email"], "alice@example.com");
    assert_eq!(with_callback.status(), 200);
    let body: Value = with_callback.json().await.unwrap();
    assert_eq!(body["redirect"], true);
    assert_eq!(body["url"], "/dashboard");
}

async fn every_sign_in_starts_a_new_session(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;
    let before = app.get_session().await;

    let response = app.sign_in("alice@example.com", PASSWORD).await;

    let token = response.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let after = app.get_session().await;
    assert_ne!(before["session"]["id"], after["session"]["id"]);
    assert_ne!(token, before["session"]["token"].as_str().unwrap());
    assert_eq!(app.count("sessions").await, 2);
}

async fn unknown_email_and_wrong_password_get_the_same_answer(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.sign_up("alice@example.com").await;

    let mut wrong_times = Vec::new();
    let mut unknown_times = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..7 {
        let started = std::time::Instant::now();
        let wrong = app.sign_in("alice@example.com", "not the right password").await;
        wrong_times.push(started.elapsed());
        let started = std::time::Instant::now();
        let unknown = app.sign_in("nobody@example.com", "not the right password").await;
        unknown_times.push(started.elapsed());
        answers.push((wrong.status(), wrong.text().await.unwrap(), unknown.status(), unknown.text().await.unwrap()));
    }

    for (wrong_status, wrong_body, unknown_status, unknown_body) in &answers {
        assert_eq!(*wrong_status, 401);
        assert_eq!(wrong_status, unknown_status);
        assert_eq!(wrong_body, unknown_body);
        assert_eq!(wrong_body, r#"{"code":"INVALID_EMAIL_OR_PASSWORD","message":"Invalid email or password"}"#);
    }
    // Both run one query and one Argon2id verification. Compare the fastest of each (the least disturbed
    // by other tests sharing the CPU): within a factor of two.
    let wrong = wrong_times.iter().min().unwrap().as_secs_f64();
    let unknown = unknown_times.iter().min().unwrap().as_secs_f64();
    assert!(wrong / unknown < 2.0 && unknown / wrong < 2.0, "wrong {wrong:.4}s vs unknown {unknown:.4}s");
}
