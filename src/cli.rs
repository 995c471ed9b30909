//! The command line (DESIGN.md "Cross-cutting"): `serve` (default), `migrate`, `config check`, and
//! `admin` commands that work on the database directly.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{
    accounts::{self, NewUser},
    app::{open_database, Application},
    clock::{iso8601, Clock},
    config::{self, Secret, Settings},
    crypto::{self, password::PasswordHasher},
    sessions::{self, revoked::RevokedSessions},
    telemetry,
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
        /// The config command.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Administration on the database.
    Admin {
        /// The admin command.
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
        /// Email address.
        #[arg(long)]
        email: String,
        /// Display name.
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
}

/// Parses the command line and runs it.
pub fn run() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let settings = match config::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: cannot load configuration: {error}");
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

/// glibc raises its mmap threshold after the first large free, so each Argon2id block (19 MiB) would
/// stay in the heap of every thread that hashed: tens of MB of idle RSS. A fixed threshold keeps large
/// blocks in mmap, returned to the OS on free; two arenas bound per-thread heap growth.
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
    let problems = settings.validate();
    if problems.is_empty() {
        println!("# configuration OK");
        Ok(())
    } else {
        anyhow::bail!("invalid configuration:\n  - {}", problems.join("\n  - "))
    }
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
                (line.trim_end_matches(['\r', '\n']).to_owned(), false)
            };
            let hasher = PasswordHasher::start(1)?;
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
            let email = accounts::email::Email::parse(&email).ok_or_else(|| anyhow::anyhow!("invalid email"))?;
            let user = accounts::store::find_user_by_email(&db, email.as_str())
                .await?
                .ok_or_else(|| anyhow::anyhow!("no user with that email"))?;
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
    }
    db.close().await;
    Ok(())
}
