//! Storage: one `Db` over SQLite (embedded default) or PostgreSQL, chosen by URL (DESIGN.md "Architecture").
//!
//! SQL is written once with `$1…` placeholders and run on whichever pool through [`db_run!`](crate::db_run); each
//! capability keeps its queries in its own `store.rs`. Both backends' errors are normalised into
//! [`StorageError`], so a unique violation becomes the right 4xx at the call site and anything else
//! stays an opaque 500.

pub mod cleanup;
pub mod notify;
pub mod readers;

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    Connection, PgPool, SqlitePool,
};

/// The database pool, one variant per backend.
#[derive(Clone, Debug)]
pub enum Db {
    /// The embedded default: one file, WAL, `synchronous=FULL`; the pool, and the synchronous readers of the
    /// hottest lookups ([`readers`]).
    Sqlite(SqlitePool, Arc<readers::Readers>),
    /// Production and multi-node deployments.
    Postgres(PgPool),
}

/// Runs the same body against whichever pool `$db` holds. The body is compiled once per backend,
/// so the same SQL string and `FromRow` struct serve both.
#[macro_export]
macro_rules! db_run {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::storage::Db::Sqlite($pool, _) => $body,
            $crate::storage::Db::Postgres($pool) => $body,
        }
    };
}

/// What can go wrong in storage, with the cases a caller can act on split out.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A UNIQUE constraint refused the write (e.g. an email already taken).
    #[error("unique constraint violated: {0}")]
    UniqueViolation(String),
    /// The database cannot be reached right now: no connection within the pool's timeout, the pool is
    /// closed (shutting down), or the connection was refused, lost or shut down by the server. A 503:
    /// the request may succeed later, and `/readyz` says the same.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else: bad SQL, a constraint other than unique, a decoding error. Always a 500, never
    /// "not found".
    #[error("database error")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StorageError {
    fn from(error: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db_error) = &error {
            if db_error.is_unique_violation() {
                return StorageError::UniqueViolation(db_error.constraint().unwrap_or_default().to_owned());
            }
        }
        if is_unavailable(&error) {
            return StorageError::Unavailable(error);
        }
        StorageError::Other(error)
    }
}

/// True if `error` means the database cannot be reached (as opposed to refusing this statement).
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        // SQLSTATE class 08 (connection exception); 57P01-57P03: the server is shutting down or starting
        // (admin_shutdown, crash_shutdown, cannot_connect_now); 53100, 53300: disk full, too many
        // connections. SQLite: the file cannot be written (disk full, read-only, I/O error, cannot be
        // opened) — reads may still work, writes may again once the operator acts. Its busy/locked errors
        // stay 500s: its busy timeout already waited.
        sqlx::Error::Database(db_error) => {
            let code = db_error.code().unwrap_or_default();
            if db_error.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                code.parse::<i32>().is_ok_and(|code| {
                    matches!(code & 0xff, SQLITE_READONLY | SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN)
                })
            } else {
                code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53100" | "53300")
            }
        }
        _ => false,
    }
}

/// SQLite's primary result codes (the low byte of an extended code) that mean the file cannot be written.
const SQLITE_READONLY: i32 = 8;
const SQLITE_IOERR: i32 = 10;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;

/// At start-up, a SQLite file that cannot be opened or written (a read-only volume, a directory the
/// server's user cannot write, a full disk) is named with what to check, not only SQLite's code.
fn sqlite_unusable(url: &str, error: sqlx::Error) -> anyhow::Error {
    if !is_unavailable(&error) {
        return error.into();
    }
    anyhow::Error::new(error).context(format!(
        "cannot open {url} for writing: the server's user needs write access to the file and to its directory \
         (WAL mode keeps its -wal and -shm files beside it), and free disk space"
    ))
}

/// Problems with the database settings: the URL must name a backend Latchkey has.
pub fn validate_settings(settings: &crate::config::Settings) -> Vec<String> {
    match Backend::from_url(&settings.database_url) {
        Some(_) => Vec::new(),
        None => vec!["database_url: expected sqlite://… or postgres://…".into()],
    }
}

/// Which backend a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://…`
    Sqlite,
    /// `postgres://…` or `postgresql://…`
    Postgres,
}

impl Backend {
    /// Reads the scheme of a database URL.
    pub fn from_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

impl Db {
    /// Opens the pool named by `url` (creating a SQLite file if missing).
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Db> {
        match Backend::from_url(url) {
            Some(Backend::Sqlite) => {
                let options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // An acknowledged write must survive a crash or power loss (DESIGN.md).
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5));
                let pool = SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .min_connections(1)
                    .acquire_timeout(Duration::from_secs(5))
                    // A transaction SQLite rolled back by itself (a full disk, an I/O error) leaves sqlx
                    // counting it as open; its ROLLBACK then fails, and the next transaction on that
                    // connection becomes a savepoint whose rollback leaves SQLite inside a transaction for
                    // good: later writes were answered but never committed, and every other connection
                    // found the database locked. Such a connection is closed instead of reused. Reading the
                    // count is free; only after a dropped transaction (its rollback still queued) does a
                    // ping let the rollback run before the second look.
                    .after_release(|connection, _| {
                        Box::pin(async move {
                            if connection.is_in_transaction() {
                                connection.ping().await?;
                            }
                            Ok(!connection.is_in_transaction())
                        })
                    })
                    .connect_with(options.clone())
                    .await
                    .map_err(|error| sqlite_unusable(url, error))?;
                // `sqlite::memory:` and `mode=memory` name no file a reader could open.
                let in_memory = options.get_filename().as_os_str() == ":memory:" || url.contains("mode=memory");
                let readers = readers::Readers::new((!in_memory).then(|| options.get_filename().to_path_buf()));
                Ok(Db::Sqlite(pool, Arc::new(readers)))
            }
            Some(Backend::Postgres) => {
                let options = PgConnectOptions::from_str(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await?;
                Ok(Db::Postgres(pool))
            }
            None => anyhow::bail!("unsupported database URL scheme (expected sqlite:// or postgres://)"),
        }
    }

    /// Applies the backend's embedded migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(pool, _) => {
                sqlx::migrate!("migrations/sqlite").run(pool).await.map_err(|error| match error {
                    sqlx::migrate::MigrateError::Execute(error) => sqlite_unusable("the SQLite database", error),
                    other => other.into(),
                })?
            }
            Db::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(..) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// A trivial round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StorageError> {
        db_run!(self, |pool| sqlx::query("SELECT 1").execute(pool).await.map(|_| ()).map_err(StorageError::from))
    }

    /// (size, idle) of the pool, for `/metrics`.
    pub fn pool_stats(&self) -> (u32, usize) {
        db_run!(self, |pool| (pool.size(), pool.num_idle()))
    }

    /// True once [`Db::close`] was called: background tasks end quietly instead of reporting failures.
    pub fn is_closed(&self) -> bool {
        db_run!(self, |pool| pool.is_closed())
    }

    /// SQLite's synchronous readers ([`readers`]); `None` on PostgreSQL.
    pub fn sqlite_readers(&self) -> Option<&readers::Readers> {
        match self {
            Db::Sqlite(_, readers) => Some(readers),
            Db::Postgres(_) => None,
        }
    }

    /// Closes every connection (graceful shutdown).
    pub async fn close(&self) {
        if let Some(readers) = self.sqlite_readers() {
            readers.close();
        }
        db_run!(self, |pool| pool.close().await)
    }
}
