//! SQLite's synchronous read path for the hottest lookups (a session by token hash on a cookie-cache miss
//! or with `disableCookieCache`).
//!
//! sqlx runs each SQLite connection on a worker thread of its own and hands every statement to it and
//! every row back through channels: for a one-row index lookup those hand-offs cost several times the
//! lookup itself (BENCHMARKS.md, "Why the missed targets are missed"). Here the same SQL runs through
//! `rusqlite` on the calling thread, on a small set of reader connections to the same file:
//!
//! - In WAL mode a reader never waits for the writer, and these connections have no busy timeout: a read
//!   that would wait (a checkpoint restarting the log, recovery after a crash) returns at once and the
//!   caller reads through the pool instead, as it does for any error here — the pool's answer and its
//!   errors are the ones that count. So the thread is held for one index probe of (usually cached) pages,
//!   a few microseconds, never for a lock.
//! - The connections are `query_only`: nothing written here, ever.
//! - A commit through the pool is visible to the next read here (each read is its own transaction).
//! - In-memory databases have no file a second connection could open: there this path is off.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::Duration,
};

pub use rusqlite::Row;
use rusqlite::{Connection, OpenFlags, ToSql};

/// Idle reader connections kept (one per thread reading at once; more are opened and dropped as needed).
const READERS_KEPT: usize = 8;

/// Reader connections to one SQLite file.
pub struct Readers {
    /// `None`: this path is off (an in-memory database).
    path: Option<PathBuf>,
    idle: Mutex<Vec<Connection>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Readers {
    /// Readers of the file at `path`; `None` turns this path off.
    pub fn new(path: Option<PathBuf>) -> Readers {
        Readers { path, idle: Mutex::new(Vec::new()), closed: AtomicBool::new(false) }
    }

    /// Runs `sql` (one row at most, `$n` parameters as the pool's SQL has them) and maps the row.
    /// `Some(None)`: no row. `None`: this path could not answer (off, closed, busy, any error) — read
    /// through the pool.
    pub fn read_row<T>(
        &self,
        sql: &str,
        params: &[(&str, &dyn ToSql)],
        map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Option<Option<T>> {
        if self.closed.load(Ordering::Relaxed) {
            return None;
        }
        let connection = self.take()?;
        let answer = match connection.prepare_cached(sql).and_then(|mut statement| statement.query_row(params, map)) {
            Ok(row) => Some(Some(row)),
            Err(rusqlite::Error::QueryReturnedNoRows) => Some(None),
            Err(error) => {
                tracing::debug!(error = %error, "SQLite reader could not answer; reading through the pool");
                None
            }
        };
        self.put_back(connection);
        answer
    }

    fn take(&self) -> Option<Connection> {
        if let Some(connection) = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop() {
            return Some(connection);
        }
        let path = self.path.as_ref()?;
        let opened = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )
        .and_then(|connection| {
            connection.busy_timeout(Duration::ZERO)?;
            connection.pragma_update(None, "query_only", true)?;
            Ok(connection)
        });
        match opened {
            Ok(connection) => Some(connection),
            Err(error) => {
                tracing::debug!(error = %error, "cannot open a SQLite reader; reading through the pool");
                None
            }
        }
    }

    fn put_back(&self, connection: Connection) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < READERS_KEPT {
            idle.push(connection);
        }
    }

    /// Closes the idle readers; later reads go to the pool (which is closed too, on shutdown).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::Readers;

    #[test]
    fn reads_what_another_connection_committed_and_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer.pragma_update(None, "journal_mode", "wal").unwrap();
        writer.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)").unwrap();
        let readers = Readers::new(Some(path));
        let read =
            |k: &str| readers.read_row("SELECT v FROM t WHERE k = $1", &[("$1", &k)], |row| row.get::<_, i64>(0));

        assert_eq!(read("a"), Some(None));
        writer.execute("INSERT INTO t VALUES ('a', 7)", []).unwrap();
        assert_eq!(read("a"), Some(Some(7)));
        // A write through a reader is refused (query_only), and reported as "read elsewhere".
        assert_eq!(readers.read_row("DELETE FROM t RETURNING v", &[], |row| row.get::<_, i64>(0)), None);
        assert_eq!(read("a"), Some(Some(7)));
        // A statement that fails falls back too.
        assert_eq!(readers.read_row("SELECT nope FROM t", &[], |row| row.get::<_, i64>(0)), None);

        readers.close();
        assert_eq!(read("a"), None);
        assert_eq!(Readers::new(None).read_row("SELECT 1", &[], |row| row.get::<_, i64>(0)), None);
    }
}
