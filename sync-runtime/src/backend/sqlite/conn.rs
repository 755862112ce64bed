//! SQLite connections: the one writer, a pool of readers, and running their blocking calls
//! without holding up the async runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};

use super::super::sql::{Context, DbError};
use super::SqliteOptions;
use crate::error::StoreError;

impl DbError for rusqlite::Error {
    fn into_store_error(self, what: String) -> StoreError {
        StoreError::with_source(format!("SQLite: {what}"), self)
    }
}

/// The database's connections.
pub(super) struct Connections {
    pub(super) path: PathBuf,
    options: SqliteOptions,
    /// The one connection that writes; locked only off the runtime, and only by the holder of
    /// the writer gate.
    writer: Mutex<Connection>,
    /// Idle reader connections.
    readers: Mutex<Vec<Connection>>,
}

impl Connections {
    /// The connections of a database whose writer and first reader are open.
    pub(super) fn new(
        path: PathBuf,
        options: SqliteOptions,
        writer: Connection,
        reader: Connection,
    ) -> Self {
        Connections {
            path,
            options,
            writer: Mutex::new(writer),
            readers: Mutex::new(vec![reader]),
        }
    }

    /// Runs `f` on the writer connection, off the runtime. The caller holds the writer gate.
    pub(super) async fn with_writer<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conns = Arc::clone(self);
        off_runtime(move || f(&mut conns.writer.lock())).await?
    }

    /// Runs `f` on the writer connection here and now, blocking: for code already off the
    /// runtime. The caller holds the writer gate.
    pub(super) fn with_writer_blocking<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        f(&mut self.writer.lock())
    }

    /// Runs `f` in a read transaction on a reader connection, off the runtime: WAL readers never
    /// wait for the writer, and see the state committed when they first read.
    pub(super) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conns = Arc::clone(self);
        off_runtime(move || {
            let idle = conns.readers.lock().pop();
            let mut conn = match idle {
                Some(conn) => conn,
                None => open(&conns.path, false, &conns.options)?,
            };
            let result = {
                let tx = conn
                    .transaction()
                    .context(|| "cannot start a read transaction".to_owned())?;
                let result = f(&tx);
                // A read transaction has nothing to commit; ending it releases its snapshot.
                tx.rollback()
                    .context(|| "cannot end a read transaction".to_owned())?;
                result
            };
            let mut readers = conns.readers.lock();
            if readers.len() < conns.options.readers.max(1) {
                readers.push(conn);
            }
            result
        })
        .await?
    }
}

/// Opens one connection: the writer sets WAL mode and durability, readers are read-only.
pub(super) fn open(
    path: &Path,
    writer: bool,
    options: &SqliteOptions,
) -> Result<Connection, StoreError> {
    let shown = path.display();
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)
        .context(|| format!("cannot open the SQLite database {shown}"))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .context(|| format!("cannot set a busy timeout on {shown}"))?;
    if writer {
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .context(|| format!("cannot switch {shown} to WAL mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::new(format!(
                "SQLite: {shown} cannot use WAL mode (it is in {mode} mode); \
                 give a path to a file on a local disk"
            )));
        }
        let synchronous = if options.durable { "FULL" } else { "NORMAL" };
        // Temporary tables and indexes (a large ORDER BY) stay in memory.
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {synchronous}; PRAGMA temp_store = MEMORY;"
        ))
        .context(|| format!("cannot set synchronous = {synchronous} on {shown}"))?;
    } else {
        conn.execute_batch("PRAGMA query_only = ON;")
            .context(|| format!("cannot open a reader of {shown}"))?;
    }
    Ok(conn)
}

/// Runs blocking `f` without holding up the runtime's other tasks. On a multi-threaded runtime
/// it runs in place (`block_in_place` first hands this worker's other tasks to another thread),
/// which saves the two thread wake-ups of a trip to the blocking pool: SQLite calls take
/// microseconds, the trip tens of them. Elsewhere it runs on the blocking pool.
pub(super) async fn off_runtime<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, StoreError> {
    let multi_threaded = tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
        runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
    });
    if multi_threaded {
        return Ok(tokio::task::block_in_place(f));
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|error| StoreError::with_source("SQLite: a database call failed", error))
}
