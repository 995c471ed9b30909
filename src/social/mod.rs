//! Social sign-in through upstream OpenID Connect providers (DESIGN.md "Social sign-in"), in Better Auth's
//! shapes: `sign-in/social` (a redirect, or an upstream ID token from a mobile app), the callback, and
//! the signed-in user's `list-accounts` / `unlink-account`.
//!
//! A user is found by the account `(provider, sub)`; failing that, linked to the user with the same email
//! only when the upstream says `email_verified: true` (an unverified email proves nothing: anyone can
//! open an upstream account in someone else's name); failing that, created with its account in one
//! transaction. The browser's state, nonce, PKCE verifier and callback URLs travel in a sealed,
//! 10-minute cookie ([`FlowCookie`]); the upstream's tokens are read for the ID token and dropped.

pub mod routes;
pub mod store;
pub mod upstream;

/// The URL paths of this capability's endpoints, also re-exported by `latchkey::paths`.
pub mod paths {
    /// `POST` start a social sign-in, or sign in with an upstream ID token.
    pub const SIGN_IN_SOCIAL: &str = "/api/auth/sign-in/social";
    /// `GET` the upstream's redirect back (`{id}` is the provider id).
    pub const SOCIAL_CALLBACK: &str = "/api/auth/callback/{id}";
    /// `GET` the signed-in user's accounts (ways of signing in).
    pub const LIST_ACCOUNTS: &str = "/api/auth/list-accounts";
    /// `POST` unlink one of them.
    pub const UNLINK_ACCOUNT: &str = "/api/auth/unlink-account";
}

use std::collections::BTreeMap;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde::{Deserialize, Serialize};

use crate::{
    accounts::{email::Email, User},
    clock::Millis,
    config::{Mode, Secret, Settings},
    crypto,
    storage::{Db, StorageError},
};

/// The issuer `google` gets when none is configured.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
/// How long a started sign-in may take (the flow cookie's lifetime).
pub const FLOW_LIFETIME: Millis = 10 * 60 * 1000;
/// The provider id of email/password accounts.
pub const CREDENTIAL_PROVIDER: &str = "credential";

/// One configured upstream provider.
#[derive(Clone, Debug)]
pub struct Provider {
    /// `google`, `okta`, …: the `provider` of requests and the `{id}` of the callback.
    pub id: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub scopes: Vec<String>,
}

impl Provider {
    /// The name on the login page's button (`google` → `Google`, `my_idp` → `My Idp`).
    pub fn display_name(&self) -> String {
        self.id
            .split(['_', '-'])
            .filter(|word| !word.is_empty())
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map(|first| first.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What an upstream ID token says about the person.
#[derive(Clone, Debug)]
pub struct Profile {
    /// `sub`: the account id at the provider.
    pub subject: String,
    pub email: Option<String>,
    /// True only when the upstream says `email_verified: true`.
    pub email_verified: bool,
    pub name: Option<String>,
    pub picture: Option<String>,
}

/// What the capability keeps in memory: the providers, their cached metadata, the flow cookie's key.
pub struct SocialState {
    pub providers: BTreeMap<String, Provider>,
    pub upstreams: upstream::Upstreams,
    /// Seals the flow cookie (AES-256-GCM, derived from the server secret).
    flow_key: [u8; 32],
    /// `{prefix}.social_state`, `__Secure-` in front in production.
    pub flow_cookie: String,
}

impl SocialState {
    /// The providers of `settings` (checked by [`validate_settings`] beforehand).
    pub fn new(settings: &Settings, secret: &Secret) -> anyhow::Result<SocialState> {
        let providers = settings
            .social
            .iter()
            .map(|(id, provider)| {
                let issuer = match provider.issuer.as_str() {
                    "" if id == "google" => GOOGLE_ISSUER.to_owned(),
                    issuer => issuer.to_owned(),
                };
                let scopes = if provider.scopes.is_empty() {
                    vec!["openid".into(), "email".into(), "profile".into()]
                } else {
                    provider.scopes.clone()
                };
                let provider = Provider {
                    id: id.clone(),
                    issuer,
                    client_id: provider.client_id.clone(),
                    client_secret: provider.client_secret.clone(),
                    scopes,
                };
                (id.clone(), provider)
            })
            .collect();
        let secure_prefix = if settings.is_production() { "__Secure-" } else { "" };
        Ok(SocialState {
            providers,
            upstreams: upstream::Upstreams::new()?,
            flow_key: crypto::derive_key(secret.expose().as_bytes(), "social-flow-cookie"),
            flow_cookie: format!("{secure_prefix}{}.social_state", settings.session.cookie_prefix),
        })
    }

    /// Seals a flow for its cookie.
    pub fn seal(&self, flow: &FlowCookie) -> String {
        let json = serde_json::to_vec(flow).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(crypto::seal(&self.flow_key, self.flow_cookie.as_bytes(), &json))
    }

    /// Opens a flow cookie: `None` if it was not sealed by this server (tampered, another secret) or has
    /// expired.
    pub fn open(&self, value: &str, now: Millis) -> Option<FlowCookie> {
        let sealed = URL_SAFE_NO_PAD.decode(value).ok()?;
        let json = crypto::open(&self.flow_key, self.flow_cookie.as_bytes(), &sealed)?;
        serde_json::from_slice::<FlowCookie>(&json).ok().filter(|flow| flow.expires_at > now)
    }
}

/// A started sign-in, as the browser carries it to the callback.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlowCookie {
    /// The provider id (a cookie of another provider's flow is foreign to this callback).
    pub provider: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Where to go after sign-in (absolute, on a trusted origin).
    pub callback_url: String,
    /// Where to go after a failure (defaults to `callback_url`).
    pub error_callback_url: Option<String>,
    /// Where a new user goes (defaults to `callback_url`).
    pub new_user_callback_url: Option<String>,
    /// Unix ms.
    pub expires_at: Millis,
}

/// Why a social sign-in did not end in a session. The callback turns each into an `?error=` code.
#[derive(Debug, thiserror::Error)]
pub enum SocialError {
    /// The upstream answered `?error=…` (the code, reduced to `[a-z_]`).
    #[error("the provider answered {0}")]
    Upstream(String),
    /// The callback's `state` is not the flow's.
    #[error("state mismatch")]
    StateMismatch,
    /// The callback came without a code.
    #[error("no code")]
    NoCode,
    /// The upstream refused the code (used, expired, PKCE).
    #[error("the code was refused: {0}")]
    InvalidCode(String),
    /// The ID token failed a check (signature, iss, aud, exp, nonce).
    #[error("invalid ID token: {0}")]
    InvalidIdToken(String),
    /// The ID token carries no usable email.
    #[error("no email")]
    EmailNotFound,
    /// A user has this email, and the upstream does not vouch for it: no link.
    #[error("account not linked")]
    AccountNotLinked,
    /// The user is blocked (management API): no session.
    #[error("user is blocked")]
    Blocked,
    /// The upstream could not be reached or answered nonsense.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// Storage and the like.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl SocialError {
    /// The `?error=` code of the error callback.
    pub fn code(&self) -> String {
        match self {
            SocialError::Upstream(code) => code.clone(),
            SocialError::StateMismatch => "state_mismatch".into(),
            SocialError::NoCode => "no_code".into(),
            SocialError::InvalidCode(_) => "invalid_code".into(),
            SocialError::InvalidIdToken(_) => "invalid_id_token".into(),
            SocialError::EmailNotFound => "email_not_found".into(),
            SocialError::AccountNotLinked => "account_not_linked".into(),
            SocialError::Blocked => "banned".into(),
            SocialError::Unavailable(_) => "provider_unavailable".into(),
            SocialError::Internal(_) => "internal_error".into(),
        }
    }
}

impl From<StorageError> for SocialError {
    fn from(error: StorageError) -> Self {
        SocialError::Internal(error.into())
    }
}

impl From<upstream::UpstreamError> for SocialError {
    fn from(error: upstream::UpstreamError) -> Self {
        match error {
            upstream::UpstreamError::Unavailable(why) => SocialError::Unavailable(why),
            upstream::UpstreamError::CodeRefused(why) => SocialError::InvalidCode(why),
            upstream::UpstreamError::InvalidIdToken(why) => SocialError::InvalidIdToken(why),
        }
    }
}

/// An upstream's `error` parameter as a code we pass on: lower-case letters and `_` only, at most 64.
pub fn upstream_error_code(error: &str) -> String {
    let code: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
    if code.is_empty() {
        "access_denied".into()
    } else {
        code.to_ascii_lowercase()
    }
}

/// How a sign-in found its user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// The account `(provider, sub)` existed.
    Existing,
    /// The account was added to the user with the same (upstream-verified) email.
    Linked,
    /// A new user and account were created.
    Created,
}

/// Finds, links or creates the user for a verified upstream profile (see the module comment).
pub async fn resolve_user(
    db: &Db,
    provider: &str,
    profile: &Profile,
    now: Millis,
) -> Result<(User, Found), SocialError> {
    // A concurrent callback may create the same account or user between our read and our write: the
    // unique constraints refuse the second, which then finds what the first made.
    for _ in 0..2 {
        match resolve_once(db, provider, profile, now).await {
            Err(SocialError::Internal(error))
                if matches!(error.downcast_ref::<StorageError>(), Some(StorageError::UniqueViolation(_))) =>
            {
                continue
            }
            other => return other,
        }
    }
    Err(SocialError::Internal(anyhow::anyhow!("the account kept colliding with concurrent sign-ins")))
}

async fn resolve_once(db: &Db, provider: &str, profile: &Profile, now: Millis) -> Result<(User, Found), SocialError> {
    if let Some(user) = store::find_user_by_account(db, provider, &profile.subject).await? {
        if user.blocked {
            return Err(SocialError::Blocked);
        }
        return Ok((user, Found::Existing));
    }
    let email = profile.email.as_deref().and_then(Email::parse).ok_or(SocialError::EmailNotFound)?;
    if let Some(user) = crate::accounts::store::find_user_by_email(db, email.as_str()).await? {
        if !profile.email_verified {
            return Err(SocialError::AccountNotLinked);
        }
        if user.blocked {
            return Err(SocialError::Blocked);
        }
        store::insert_account(db, &crypto::new_id("acc"), &user.id, provider, &profile.subject, now).await?;
        return Ok((user, Found::Linked));
    }
    let name = profile
        .name
        .as_deref()
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| email.as_str().split('@').next().unwrap_or_default());
    let user = User {
        id: crypto::new_id("usr"),
        email: email.as_str().to_owned(),
        name: name.chars().take(256).collect(),
        image: profile.picture.clone().filter(|picture| picture.len() <= 2048),
        email_verified: profile.email_verified,
        role: "user".into(),
        blocked: false,
        created_at: now,
        updated_at: now,
    };
    let account = crate::accounts::store::FirstAccount {
        id: &crypto::new_id("acc"),
        provider_id: provider,
        account_id: &profile.subject,
        password_hash: None,
    };
    crate::accounts::store::insert_user_with_account(db, &user, &account, ("{}", "{}")).await?;
    Ok((user, Found::Created))
}

/// Why an account could not be unlinked.
#[derive(Debug, thiserror::Error)]
pub enum UnlinkError {
    /// 400 `ACCOUNT_NOT_FOUND`.
    #[error("account not found")]
    NotFound,
    /// 400 `FAILED_TO_UNLINK_LAST_ACCOUNT`: it is the user's last way to sign in.
    #[error("last account")]
    LastAccount,
    /// 500.
    #[error(transparent)]
    Internal(#[from] StorageError),
}

/// Every problem with the `[social.<id>]` settings.
pub fn validate_settings(settings: &Settings) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, provider) in &settings.social {
        if id.is_empty()
            || id.len() > 64
            || !id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            problems.push(format!("social.{id}: a provider id is 1-64 of a-z, 0-9, _ and -"));
        }
        if provider.client_id.is_empty() {
            problems.push(format!("social.{id}.client_id is required"));
        }
        let issuer = if provider.issuer.is_empty() && id == "google" { GOOGLE_ISSUER } else { &provider.issuer };
        match url::Url::parse(issuer) {
            Ok(url) if url.scheme() == "https" && url.host_str().is_some() => {}
            Ok(url) if url.scheme() == "http" && url.host_str().is_some() => {
                if settings.env == Mode::Production {
                    problems.push(format!("social.{id}.issuer: production requires an https:// issuer"));
                }
            }
            _ => problems.push(format!("social.{id}.issuer: `{issuer}` is not an http(s) URL")),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SocialProviderSettings;

    fn with(id: &str, issuer: &str, env: Mode) -> Settings {
        let provider = SocialProviderSettings { issuer: issuer.into(), client_id: "c".into(), ..Default::default() };
        Settings { env, social: [(id.to_owned(), provider)].into_iter().collect(), ..Settings::default() }
    }

    #[test]
    fn an_http_issuer_is_allowed_only_in_development() {
        assert!(validate_settings(&with("corp", "http://127.0.0.1:9000/", Mode::Development)).is_empty());
        let problems = validate_settings(&with("corp", "http://idp.example/", Mode::Production)).join("");
        assert!(problems.contains("https"), "{problems}");
        assert!(validate_settings(&with("google", "", Mode::Production)).is_empty());
        assert!(!validate_settings(&with("Bad Id", "https://idp.example", Mode::Development)).is_empty());
        assert!(!validate_settings(&with("corp", "", Mode::Development)).is_empty());
    }

    #[test]
    fn a_flow_cookie_opens_only_here_and_only_before_it_expires() {
        let settings = with("google", "", Mode::Development);
        let state = SocialState::new(&settings, &Secret::new("s".repeat(40))).unwrap();
        let other = SocialState::new(&settings, &Secret::new("t".repeat(40))).unwrap();
        let flow = FlowCookie {
            provider: "google".into(),
            state: "st".into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            callback_url: "http://localhost:8080/".into(),
            error_callback_url: None,
            new_user_callback_url: None,
            expires_at: 1_000,
        };
        let sealed = state.seal(&flow);
        assert_eq!(state.open(&sealed, 999).unwrap().state, "st");
        assert!(state.open(&sealed, 1_000).is_none());
        assert!(other.open(&sealed, 999).is_none());
        let mut tampered = sealed.into_bytes();
        tampered[10] ^= 1;
        assert!(state.open(&String::from_utf8(tampered).unwrap(), 999).is_none());
    }

    #[test]
    fn google_needs_only_its_client_id_and_secret() {
        let provider = SocialProviderSettings {
            client_id: "id.apps.googleusercontent.com".into(),
            client_secret: Some(Secret::new("shh")),
            ..Default::default()
        };
        let settings =
            Settings { social: [("google".to_owned(), provider)].into_iter().collect(), ..Settings::default() };
        assert!(validate_settings(&settings).is_empty());
        let state = SocialState::new(&settings, &Secret::new("s".repeat(40))).unwrap();
        let google = &state.providers["google"];
        assert_eq!(google.issuer, GOOGLE_ISSUER);
        assert_eq!(google.scopes, ["openid", "email", "profile"]);
        assert_eq!(state.flow_cookie, "latchkey.social_state");
    }

    #[test]
    fn upstream_error_codes_are_reduced_to_a_safe_word() {
        assert_eq!(upstream_error_code("access_denied"), "access_denied");
        assert_eq!(upstream_error_code("<script>"), "script");
        assert_eq!(upstream_error_code("&&"), "access_denied");
    }

    #[test]
    fn button_names_read_well() {
        let provider = |id: &str| Provider {
            id: id.into(),
            issuer: String::new(),
            client_id: String::new(),
            client_secret: None,
            scopes: vec![],
        };
        assert_eq!(provider("google").display_name(), "Google");
        assert_eq!(provider("my_idp").display_name(), "My Idp");
    }
}
