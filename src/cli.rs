//! The command line (DESIGN.md "Cross-cutting"): `serve` (default), `migrate`, `config check`, and
//! `admin` commands that work on the database directly.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{
    accounts::{self, NewUser},
    api_keys,
    app::{open_database, Application},
    audit,
    clock::{iso8601, Clock},
    config::{self, Secret, Settings},
    crypto::{self, password::PasswordHasher},
    management, oauth, orgs, service_tokens,
    sessions::{self, revoked::RevokedSessions},
    storage::notify,
    telemetry,
    tokens::{Algorithm, KeyRing},
};

/// Latchkey: one small, fast, secure authentication server.
#[derive(Parser, Debug)]
#[command(name = "latchkey", version, about)]
pub struct Cli {
    /// Configuration file (TOML). Default: ./latchkey.toml if present.
    #[arg(long, env = "LATCHKEY_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Administration on the database.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// `latchkey config …`
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective configuration (secrets redacted) and any problems.
    Check,
}

/// `latchkey admin …`
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create a user. The password is read from stdin, or generated and printed once when stdin is a terminal.
    CreateUser {
        /// Email address; trimmed and lower-cased.
        #[arg(long)]
        email: String,
        /// Display name, at most 256 characters.
        #[arg(long)]
        name: String,
        /// Give the user the admin role.
        #[arg(long)]
        admin: bool,
    },
    /// List a user's sessions.
    ListSessions {
        /// The user's email.
        #[arg(long)]
        email: String,
    },
    /// Revoke a session by id.
    RevokeSession {
        /// Session id (`ses_…`).
        #[arg(long)]
        id: String,
    },
    /// Create an API key for a user; the key is printed once.
    CreateApiKey {
        /// The owner's email.
        #[arg(long)]
        email: String,
        /// Scope the key to this organization (id or slug; the owner must be a member).
        #[arg(long)]
        org: Option<String>,
        /// Permissions as JSON, e.g. '{"extensions":["read"]}'.
        #[arg(long)]
        permissions: Option<String>,
        /// Display name of the key.
        #[arg(long)]
        name: Option<String>,
        /// Lifetime in seconds (default: never expires).
        #[arg(long)]
        expires_in: Option<i64>,
    },
    /// List a user's API keys.
    ListApiKeys {
        /// The owner's email.
        #[arg(long)]
        email: String,
    },
    /// Delete an API key by id; running servers refuse it at once (PostgreSQL) or within seconds (SQLite).
    RevokeApiKey {
        /// Key id (`key_…`).
        #[arg(long)]
        id: String,
    },
    /// Create an organization owned by a user.
    CreateOrg {
        /// Display name of the organization.
        #[arg(long)]
        name: String,
        /// Slug (a-z 0-9 -).
        #[arg(long)]
        slug: String,
        /// The owner's email.
        #[arg(long)]
        owner_email: String,
    },
    /// Add a user to an organization.
    AddMember {
        /// Organization id or slug.
        #[arg(long)]
        org: String,
        /// The user's email.
        #[arg(long)]
        email: String,
        /// owner, admin or member.
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// Create a service client for the `/v1` token API; its key (`lkc_…`) is printed once.
    CreateClient {
        /// Display name of the client, 1-100 characters.
        #[arg(long)]
        name: String,
    },
    /// Create an OAuth client (the same as `POST /api/v2/clients`); a confidential client's secret is
    /// printed once.
    CreateOauthClient {
        /// Display name, 1-100 characters.
        #[arg(long)]
        name: String,
        /// spa, native, regular_web or non_interactive: decides the auth method and grants.
        #[arg(long)]
        app_type: String,
        /// A redirect URI, matched exactly (repeatable).
        #[arg(long = "callback")]
        callbacks: Vec<String>,
        /// A URL logout may return to (repeatable).
        #[arg(long = "logout-url")]
        logout_urls: Vec<String>,
        /// An origin whose browsers may call the token endpoint (repeatable).
        #[arg(long = "web-origin")]
        web_origins: Vec<String>,
        /// A third-party client: its users see the consent page.
        #[arg(long)]
        third_party: bool,
    },
    /// Create an API (resource server) that clients can ask tokens for (the same as
    /// `POST /api/v2/resource-servers`).
    CreateResourceServer {
        /// Display name.
        #[arg(long)]
        name: String,
        /// The audience clients ask for, usually a URL; cannot change later.
        #[arg(long)]
        identifier: String,
        /// A scope the API defines (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Allow refresh tokens for this audience.
        #[arg(long)]
        allow_offline_access: bool,
    },
    /// Let a client obtain tokens for an API with client credentials (the same as
    /// `POST /api/v2/client-grants`).
    Grant {
        /// The client's id.
        #[arg(long)]
        client_id: String,
        /// The API's identifier (or the management API's, `{base_url}/api/v2/`).
        #[arg(long)]
        audience: String,
        /// A scope the client may ask for (repeatable); each must be defined by the API.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// Rotate the signing keys: a new key signs from now on, the old one stays published until the tokens
    /// it signed have expired. Running servers pick the new key up at once (PostgreSQL) or within seconds.
    RotateKeys {
        /// Only this algorithm (ES256, RS256, EdDSA); default: every algorithm in use.
        #[arg(long)]
        algorithm: Option<String>,
    },
    /// Print the stored audit log, newest first, one JSON object per line (as `GET /api/v2/logs`).
    Logs {
        /// Only this type (`s`, `f`, `ss`, `sapi`, …; README, "Audit log").
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only events about this user id.
        #[arg(long)]
        user: Option<String>,
        /// Only events of this client id.
        #[arg(long)]
        client: Option<String>,
        /// Only `success` or `failure`.
        #[arg(long)]
        outcome: Option<String>,
        /// From this time on: RFC 3339 (`2026-12-01T08:00:00Z`) or a date (its midnight, UTC).
        #[arg(long)]
        from: Option<String>,
        /// Up to this time: RFC 3339 or a date (its end).
        #[arg(long)]
        to: Option<String>,
        /// At most this many (default 100).
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

/// Parses the command line and runs it.
pub fn run() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let settings = match config::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!(
                "error: cannot load configuration:\n  {}",
                config::describe_load_error(&error).replace('\n', "\n  ")
            );
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(settings).await,
            Command::Migrate => {
                init_logs(&settings, false);
                open_database(&settings).await?;
                println!("migrations applied");
                Ok(())
            }
            Command::Config { command: ConfigCommand::Check } => config_check(&settings),
            Command::Admin { command } => {
                init_logs(&settings, false);
                admin(settings, command).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// For glibc's malloc, which the C parts (SQLite, aws-lc) use; the binary's Rust allocations go to
/// jemalloc (`src/main.rs`), and the library's in tests to glibc. glibc raises its mmap threshold after
/// the first large free, so each Argon2id block (19 MiB) would stay in the heap of every thread that
/// hashed: tens of MB of idle RSS. A fixed threshold keeps large blocks in mmap, returned to the OS on
/// free; two arenas bound per-thread heap growth.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn init_logs(settings: &Settings, stdout: bool) {
    let result = if stdout {
        telemetry::init(settings.log_format, settings.env, std::io::stdout().is_terminal(), std::io::stdout)
    } else {
        telemetry::init(settings.log_format, settings.env, std::io::stderr().is_terminal(), std::io::stderr)
    };
    if let Err(error) = result {
        eprintln!("warning: logging not initialised: {error}");
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    init_logs(&settings, true);
    for name in config::unknown_env_vars() {
        tracing::warn!(variable = %name, "unknown LATCHKEY_* environment variable ignored");
    }
    let production = settings.is_production();
    let app = Application::build(settings, Clock::System).await?;
    let settings = &app.state().settings;
    tracing::info!(
        address = %format!("{}:{}", settings.listen.rsplit_once(':').map_or("127.0.0.1", |(host, _)| host), app.port()),
        base_url = %settings.base_url,
        backend = ?app.state().db.backend(),
        production,
        "latchkey listening"
    );
    app.run_until_stopped().await?;
    Ok(())
}

fn config_check(settings: &Settings) -> anyhow::Result<()> {
    print!("{settings}");
    for name in config::unknown_env_vars() {
        println!("# warning: unknown environment variable {name}");
    }
    let problems = crate::app::validate_settings(settings);
    if problems.is_empty() {
        println!("# configuration OK");
        Ok(())
    } else {
        anyhow::bail!("invalid configuration:\n  - {}", problems.join("\n  - "))
    }
}

async fn user_by_email(db: &crate::storage::Db, email: &str) -> anyhow::Result<accounts::User> {
    let email = accounts::email::Email::parse(email).ok_or_else(|| anyhow::anyhow!("invalid email"))?;
    accounts::store::find_user_by_email(db, email.as_str())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user with that email"))
}

async fn admin(settings: Settings, command: AdminCommand) -> anyhow::Result<()> {
    let db = open_database(&settings).await?;
    let clock = Clock::System;
    match command {
        AdminCommand::CreateUser { email, name, admin } => {
            let (password, generated) = if std::io::stdin().is_terminal() {
                (crypto::random_alphanumeric(20), true)
            } else {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                let password = line.trim_end_matches(['\r', '\n']).to_owned();
                anyhow::ensure!(
                    !password.is_empty(),
                    "no password came on stdin: pipe one in (e.g. `printf '%s' \"$PASSWORD\" | latchkey admin create-user …`), \
                     or run from a terminal to have one generated"
                );
                (password, false)
            };
            let hasher = PasswordHasher::start(1, Default::default())?;
            let new = NewUser { name, email, password: Secret::new(password.clone()), image: None, admin };
            let user = accounts::sign_up(&db, &hasher, new, clock.now())
                .await
                .map_err(|error| anyhow::anyhow!("cannot create user: {error}"))?;
            println!("created user {} <{}> role={}", user.id, user.email, user.role);
            if generated {
                println!("generated password (shown once): {password}");
            }
        }
        AdminCommand::ListSessions { email } => {
            let user = user_by_email(&db, &email).await?;
            let sessions = sessions::store::list_for_user(&db, &user.id, clock.now()).await?;
            println!("{:<28} {:<26} {:<26} {:<16} user agent", "id", "created", "expires", "ip");
            for s in sessions {
                println!(
                    "{:<28} {:<26} {:<26} {:<16} {}",
                    s.id,
                    iso8601(s.created_at),
                    iso8601(s.expires_at),
                    s.ip_address.as_deref().unwrap_or("-"),
                    s.user_agent.as_deref().unwrap_or("-")
                );
            }
        }
        AdminCommand::RevokeSession { id } => {
            let session =
                sessions::store::find_by_id(&db, &id).await?.ok_or_else(|| anyhow::anyhow!("no such session"))?;
            // This process's set is thrown away; running servers learn of the revocation by NOTIFY
            // (PostgreSQL) or their revocation poll (SQLite).
            let revoked = RevokedSessions::new(1);
            sessions::revoke(&db, &revoked, std::slice::from_ref(&session.id), clock.now()).await?;
            println!("revoked session {}", session.id);
        }
        AdminCommand::CreateApiKey { email, org, permissions, name, expires_in } => {
            let user = user_by_email(&db, &email).await?;
            let now = clock.now();
            let owner_organizations: Vec<String> =
                orgs::store::memberships_of(&db, &user.id).await?.into_iter().map(|m| m.organization_id).collect();
            let organization_id = match org {
                Some(org) => Some(
                    orgs::store::find_by_id_or_slug(&db, &org)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("no such organization"))?
                        .id,
                ),
                None => None,
            };
            let permissions = match permissions {
                Some(json) => Some(
                    serde_json::from_str::<api_keys::Permissions>(&json)
                        .map_err(|e| anyhow::anyhow!("--permissions must be {{\"resource\": [\"action\"]}}: {e}"))?,
                ),
                None => None,
            };
            let new = api_keys::NewKey {
                owner_id: user.id.clone(),
                name,
                prefix: settings.api_keys.default_prefix.clone(),
                organization_id,
                permissions,
                metadata: None,
                expires_in,
            };
            // The operator acts for the owner: the audit event names the owner as the actor.
            let (secret, key) = api_keys::create_key(&db, new, &owner_organizations, &user.id, now).await.map_err(
                |error| match error {
                    api_keys::ApiKeyError::NotMemberOfOrganization => {
                        anyhow::anyhow!("the user is not a member of that organization")
                    }
                    api_keys::ApiKeyError::ExpiresInTooSmall => anyhow::anyhow!("--expires-in must be positive"),
                    other => anyhow::anyhow!("cannot create the key: {other}"),
                },
            )?;
            println!("created api key {} for {}", key.id, user.email);
            println!("key (shown once): {secret}");
        }
        AdminCommand::ListApiKeys { email } => {
            let user = user_by_email(&db, &email).await?;
            let (keys, _) = api_keys::store::list_for_user(&db, &user.id, 1000, 0).await?;
            println!("{:<28} {:<10} {:<8} {:<28} {:<26} name", "id", "start", "enabled", "organization", "expires");
            for k in keys {
                println!(
                    "{:<28} {:<10} {:<8} {:<28} {:<26} {}",
                    k.id,
                    k.start,
                    k.enabled,
                    k.organization_id.as_deref().unwrap_or("-"),
                    k.expires_at.map_or_else(|| "never".to_owned(), iso8601),
                    k.name.as_deref().unwrap_or("-")
                );
            }
        }
        AdminCommand::RevokeApiKey { id } => {
            let key = api_keys::store::find(&db, &id).await?.ok_or_else(|| anyhow::anyhow!("no such api key"))?;
            // Running servers evict it through NOTIFY (PostgreSQL) or their `cache_events` poll. The
            // operator acts for the owner: the audit event names the owner as the actor.
            let cache = api_keys::cache::KeyCache::new(0);
            anyhow::ensure!(
                api_keys::delete_key(&db, &cache, &key.id, &key.reference_id, clock.now()).await?,
                "no such api key"
            );
            println!("revoked api key {id}");
        }
        AdminCommand::CreateOrg { name, slug, owner_email } => {
            let user = user_by_email(&db, &owner_email).await?;
            let new = orgs::NewOrganization { name, slug, logo: None, metadata: None };
            // No running server's cache here: `create_organization` publishes the change for them. The
            // operator acts for the owner: the audit event names the owner as the actor.
            let org =
                orgs::create_organization(&db, &orgs::MembershipCache::new(0), new, &user.id, &user.id, clock.now())
                    .await
                    .map_err(|error| match error {
                        orgs::OrgError::InvalidSlug => anyhow::anyhow!("--slug must be 1-64 of a-z 0-9 -"),
                        other => anyhow::anyhow!("cannot create organization: {other}"),
                    })?;
            println!("created organization {} ({}) owned by {}", org.id, org.slug, user.email);
        }
        AdminCommand::AddMember { org, email, role } => {
            let user = user_by_email(&db, &email).await?;
            let role =
                orgs::Role::parse(&role).ok_or_else(|| anyhow::anyhow!("--role must be owner, admin or member"))?;
            let org = orgs::store::find_by_id_or_slug(&db, &org)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no such organization"))?;
            let now = clock.now();
            orgs::store::insert_member(&db, &crypto::new_id("mem"), &org.id, &user.id, role.as_str(), now)
                .await
                .map_err(|error| anyhow::anyhow!("cannot add member: {error}"))?;
            notify::publish_event(&db, &notify::CacheEvent::MembershipsChanged { user_id: user.id.clone() }, now)
                .await?;
            println!("added {} to {} as {}", user.email, org.slug, role.as_str());
        }
        AdminCommand::CreateClient { name } => {
            anyhow::ensure!(service_tokens::valid_name(&name), "--name must be 1-100 characters");
            let (key, client) = service_tokens::create_client(&db, &name, clock.now()).await?;
            println!("created client {} ({})", client.id, client.name);
            println!("client key (shown once): {key}");
        }
        AdminCommand::CreateOauthClient { name, app_type, callbacks, logout_urls, web_origins, third_party } => {
            let fields = oauth::clients::ClientFields {
                name: Some(name),
                app_type: Some(app_type),
                is_first_party: Some(!third_party),
                callbacks: Some(callbacks),
                allowed_logout_urls: Some(logout_urls),
                web_origins: Some(web_origins),
                ..Default::default()
            };
            let (client, secret) =
                oauth::clients::create(&db, fields, clock.now()).await.map_err(|error| match error {
                    oauth::clients::ClientError::Invalid(message) => anyhow::anyhow!("{message}"),
                    other => anyhow::anyhow!("cannot create the client: {other}"),
                })?;
            println!("created oauth client {} ({}, {})", client.client_id, client.name, client.app_type.as_str());
            if let Some(secret) = secret {
                println!("client secret (shown once): {}", secret.expose());
            }
        }
        AdminCommand::CreateResourceServer { name, identifier, scopes, allow_offline_access } => {
            let fields = oauth::apis::ResourceServerFields {
                name: Some(name),
                identifier: Some(identifier),
                scopes: Some(
                    scopes
                        .into_iter()
                        .map(|value| oauth::apis::ScopeDefinition { value, description: String::new() })
                        .collect(),
                ),
                allow_offline_access: Some(allow_offline_access),
                ..Default::default()
            };
            let api = oauth::apis::create(&db, &settings.base_url, fields, clock.now()).await?;
            println!("created resource server {} ({})", api.id, api.identifier);
        }
        AdminCommand::Grant { client_id, audience, scopes } => {
            let grant = oauth::apis::grant(&db, &settings.base_url, &client_id, &audience, scopes, clock.now()).await?;
            println!(
                "created client grant {} ({} → {}: {})",
                grant.id,
                grant.client_id,
                grant.audience,
                grant.scope.join(" ")
            );
        }
        AdminCommand::RotateKeys { algorithm } => {
            let ring = KeyRing::new(crate::app::server_secret(&settings)?.expose().as_bytes());
            let now = clock.now();
            ring.reload(&db, now).await?;
            let alg = match algorithm.as_deref() {
                Some(name) => {
                    Some(Algorithm::parse(name).ok_or_else(|| anyhow::anyhow!("--algorithm: ES256, RS256 or EdDSA"))?)
                }
                None => None,
            };
            for (alg, kid) in oauth::apis::rotate_signing_keys(&db, &settings, &ring, alg, now).await? {
                match kid {
                    Some(kid) => println!("rotated {}: new signing key {kid}", alg.as_str()),
                    None => println!("{}: nothing rotated", alg.as_str()),
                }
            }
        }
        AdminCommand::Logs { kind, user, client, outcome, from, to, limit } => {
            let bound = |value: Option<String>, upper| -> anyhow::Result<Option<i64>> {
                value
                    .map(|value| {
                        management::logs::parse_bound(&value, upper).map_err(|error| anyhow::anyhow!("{error}"))
                    })
                    .transpose()
                    .map(Option::flatten)
            };
            let filter = audit::store::Filter {
                kind,
                user_id: user,
                client_id: client,
                outcome,
                from: bound(from, false)?,
                to: bound(to, true)?,
            };
            let (records, _) = audit::store::list(&db, &filter, false, limit.clamp(1, 100_000), 0, false).await?;
            for record in records {
                println!("{}", serde_json::to_string(&management::logs::LogEvent::from(record))?);
            }
        }
    }
    db.close().await;
    Ok(())
}
