//! A certified OpenID Connect relying party — the `openidconnect` crate — against the real server over
//! HTTP: discovery, the authorization-code flow with PKCE S256 and a nonce (the browser part driven
//! through the login page), the code exchange and ID-token validation by the crate (signature from the
//! JWKS, issuer, audience, nonce, expiry), a refresh, and `/userinfo`.

use openidconnect::{
    core::{CoreAuthenticationFlow, CoreClient, CoreIdTokenVerifier, CoreProviderMetadata, CoreUserInfoClaims},
    reqwest, AccessTokenHash, AuthorizationCode, ClaimsVerificationError, ClientId, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, RequestTokenError, Scope, TokenResponse, UserInfoError,
};
use serde_json::json;

use crate::{
    both_backends,
    helpers::*,
    oauth_flow::{authorize_with_login, location, oauth_client, query_of, user, CALLBACK, EMAIL},
};

both_backends!(a_certified_relying_party_signs_in_refreshes_and_reads_userinfo);

/// An app listening on a port chosen beforehand, so that its base URL — from which discovery builds
/// the issuer and every endpoint — is its real address.
async fn spawn_on_real_address(backend: Backend) -> Option<TestApp> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = spawn_app_with(backend, |settings| {
        with_master_credentials(settings);
        settings.listen = format!("127.0.0.1:{port}");
        settings.base_url = format!("http://127.0.0.1:{port}");
        // The helpers sign up with `Origin: http://localhost:3000`.
        settings.trusted_origins = vec![ORIGIN.into()];
    })
    .await?;
    assert_eq!(app.address, format!("http://127.0.0.1:{port}"));
    Some(app)
}

/// The verifier with the server's manual clock as its "now" (the crate checks `exp` against it).
fn on_app_clock<'a>(verifier: CoreIdTokenVerifier<'a>, app: &TestApp) -> CoreIdTokenVerifier<'a> {
    let clock = app.clock.clone();
    verifier.set_time_fn(move || chrono::DateTime::from_timestamp_millis(clock.now()).expect("a valid instant"))
}

async fn a_certified_relying_party_signs_in_refreshes_and_reads_userinfo(backend: Backend) {
    let Some(app) = spawn_on_real_address(backend).await else { return };
    let spa = oauth_client(&app, "spa", json!({})).await;
    let client_id = spa["client_id"].as_str().unwrap().to_owned();
    user(&app).await;

    // As the crate's documentation asks: an HTTP client that does not follow redirects.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // 1. Discovery: the issuer is `{base_url}/`, matched exactly by the crate; the JWKS comes along.
    let issuer = IssuerUrl::new(format!("{}/", app.address)).unwrap();
    let metadata = CoreProviderMetadata::discover_async(issuer.clone(), &http).await.expect("discovery");
    assert_eq!(metadata.issuer(), &issuer);
    assert_eq!(metadata.token_endpoint().unwrap().as_str(), app.url(latchkey::paths::TOKEN));
    let jwks = metadata.jwks().clone();
    assert!(!jwks.keys().is_empty(), "the JWKS is fetched and parsed");
    let client = CoreClient::from_provider_metadata(metadata, ClientId::new(client_id.clone()), None)
        .set_redirect_uri(RedirectUrl::new(CALLBACK.into()).unwrap());

    // 2. The authorization request, built by the crate: PKCE S256, state and nonce.
    let (challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let query = query_of(url.as_str());
    assert_eq!(query["scope"], "openid profile email offline_access");
    assert_eq!(query["code_challenge_method"], "S256");

    // The browser's part: /authorize → the login page → /authorize/resume → back to the client.
    let (_browser, back) = authorize_with_login(&app, url.as_str()).await;
    assert_eq!(back.status(), 302);
    let to = location(&back);
    assert!(to.starts_with(CALLBACK), "{to}");
    let answer = query_of(&to);
    assert_eq!(answer.get("state"), Some(state.secret()), "{to}");
    let code = answer.get("code").unwrap_or_else(|| panic!("no code in {to}")).clone();

    // 3. The code exchange by the crate, with the PKCE verifier.
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(pkce_verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    assert!(tokens.refresh_token().is_some(), "offline_access gives a refresh token");
    let scopes: Vec<&str> = tokens.scopes().unwrap().iter().map(|s| s.as_str()).collect();
    assert_eq!(scopes, ["openid", "profile", "email", "offline_access"]);

    // The ID token, validated by the crate: RS256 signature from the JWKS, iss, aud (and azp), exp, nonce.
    let id_verifier = on_app_clock(client.id_token_verifier(), &app);
    let id_token = tokens.id_token().expect("an ID token");
    let signed_in = id_token.claims(&id_verifier, &nonce).expect("a valid ID token").clone();
    assert_eq!(signed_in.issuer(), &issuer);
    assert_eq!(signed_in.audiences().iter().map(|a| a.as_str()).collect::<Vec<_>>(), [client_id.as_str()]);
    assert_eq!(signed_in.authorized_party().map(|p| p.as_str()), Some(client_id.as_str()));
    assert_eq!(signed_in.nonce().map(|n| n.secret()), Some(nonce.secret()));
    assert_eq!(signed_in.email().map(|e| e.as_str()), Some(EMAIL));
    assert_eq!(signed_in.email_verified(), Some(false));
    assert_eq!(signed_in.name().and_then(|n| n.get(None)).map(|n| n.as_str()), Some("Ada Lovelace"));
    let auth_time = signed_in.auth_time().expect("auth_time");
    assert_eq!(auth_time.timestamp_millis(), app.clock.now() / 1000 * 1000, "signed in just now");
    let subject = signed_in.subject().clone();
    assert!(subject.as_str().starts_with("usr_"), "{}", subject.as_str());
    if let Some(expected) = signed_in.access_token_hash() {
        let key = id_token.signing_key(&id_verifier).unwrap();
        let actual = AccessTokenHash::from_token(tokens.access_token(), id_token.signing_alg().unwrap(), key).unwrap();
        assert_eq!(&actual, expected, "at_hash");
    }
    // The crate refuses it with another nonce, for another client, or once expired.
    let wrong_nonce = id_token.claims(&id_verifier, &Nonce::new("another".into())).unwrap_err();
    assert!(matches!(wrong_nonce, ClaimsVerificationError::InvalidNonce(_)), "{wrong_nonce:?}");
    let someone_else =
        CoreIdTokenVerifier::new_public_client(ClientId::new("someone-else".into()), issuer.clone(), jwks);
    let someone_else = on_app_clock(someone_else, &app);
    let wrong_client = id_token.claims(&someone_else, &nonce).unwrap_err();
    assert!(matches!(wrong_client, ClaimsVerificationError::InvalidAudience(_)), "{wrong_client:?}");
    let later = signed_in.expiration();
    let expired = id_token.claims(&client.id_token_verifier().set_time_fn(move || later), &nonce).unwrap_err();
    assert!(matches!(expired, ClaimsVerificationError::Expired(_)), "{expired:?}");

    // 4. A refresh by the crate, a minute later by the server's clock: a rotated refresh token and a new
    //    ID token for the same user and sign-in, without a nonce.
    app.clock.advance(std::time::Duration::from_secs(60));
    let first_refresh = tokens.refresh_token().unwrap();
    let refreshed = client.exchange_refresh_token(first_refresh).unwrap().request_async(&http).await.expect("refresh");
    let rotated = refreshed.refresh_token().expect("a rotated refresh token");
    assert_ne!(rotated.secret(), first_refresh.secret());
    assert_ne!(refreshed.access_token().secret(), tokens.access_token().secret());
    let id_token = refreshed.id_token().expect("an ID token on refresh");
    let no_nonce = |nonce: Option<&Nonce>| match nonce {
        None => Ok(()),
        Some(_) => Err("a refreshed ID token carries no nonce".to_owned()),
    };
    let claims = id_token.claims(&id_verifier, no_nonce).expect("a valid refreshed ID token");
    assert_eq!(claims.subject(), &subject);
    assert_eq!(claims.auth_time(), Some(auth_time), "auth_time stays the original sign-in's");
    assert_eq!(claims.issue_time(), signed_in.issue_time() + chrono::Duration::seconds(60));
    assert_eq!(claims.email().map(|e| e.as_str()), Some(EMAIL));

    // 5. /userinfo by the crate, with the refreshed access token; the subject must match.
    let info: CoreUserInfoClaims = client
        .user_info(refreshed.access_token().clone(), Some(subject.clone()))
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.subject(), &subject);
    assert_eq!(info.email().map(|e| e.as_str()), Some(EMAIL));
    assert_eq!(info.name().and_then(|n| n.get(None)).map(|n| n.as_str()), Some("Ada Lovelace"));

    // The code again: an RFC 6749 error the crate parses — and what the code issued, the refreshed
    // tokens included, dies, which the crate sees as an error from /userinfo.
    let again = client.exchange_code(AuthorizationCode::new(code)).unwrap().request_async(&http).await;
    match again {
        Err(RequestTokenError::ServerResponse(error)) => assert_eq!(error.error().as_ref(), "invalid_grant"),
        other => panic!("expected invalid_grant, got {other:?}"),
    }
    let refused: Result<CoreUserInfoClaims, _> =
        client.user_info(refreshed.access_token().clone(), None).unwrap().request_async(&http).await;
    assert!(matches!(refused, Err(UserInfoError::Response(status, _, _)) if status == 401), "{refused:?}");
}
