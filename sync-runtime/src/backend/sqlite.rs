//! The SQLite backend: store, change log and clients' sequence numbers in one database file.
//!
//! - **One writer, many readers.** The database runs in WAL mode. Pushes, trims and appends go
//!   through one writer connection, one transaction at a time (an async gate orders them), so
//!   cursors are assigned in commit order without further locking. Pulls and snapshots run on a
//!   small pool of reader connections, each in a read transaction: WAL readers never wait for
//!   the writer, and see a committed state as of their first read.
//! - **Never blocks the runtime.** Every call into SQLite runs with `block_in_place` on a
//!   multi-threaded runtime (the worker's other tasks move to another thread first), and on
//!   tokio's blocking pool (`spawn_blocking`) on a current-thread runtime.
//! - **One commit per push.** A push is one `BEGIN IMMEDIATE … COMMIT`; each mutation writes
//!   inside a savepoint, which a permanent failure rolls back. The commit assigns cursors to the
//!   staged changes, appends them, and advances the head, all in the same transaction.
//! - **Durable by default.** `synchronous = FULL`: an acknowledged push survives a crash of the
//!   process and of the machine. [`SqliteOptions::durable`] trades the latter for speed.
//! - **Versioned schema.** The schema is created on open and its version kept in
//!   `PRAGMA user_version`, so that a later version of this crate can migrate it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::OwnedMutexGuard;

use super::sql::{op_name, parse_json, parse_op, retain_slack, timestamp, to_i64, to_json, to_u64};
use super::{Backend, Committed, Transaction};
use crate::change::{Change, NewChange};
use crate::changelog::{ChangeLog, Page};
use crate::error::{StoreError, SyncError};
use crate::store::{ScopeData, Store, Written};

/// The schema version this crate writes and reads (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// Version 1 of the schema. Entity data and change data are JSON text: written once, parsed only
/// when read back.
const SCHEMA_V1: &str = "
CREATE TABLE sync_entities (
    scope  TEXT NOT NULL,
    entity TEXT NOT NULL,
    id     TEXT NOT NULL,
    data   TEXT NOT NULL,
    PRIMARY KEY (scope, entity, id)
) WITHOUT ROWID;
CREATE TABLE sync_changes (
    cursor INTEGER PRIMARY KEY,
    scope  TEXT NOT NULL,
    entity TEXT NOT NULL,
    id     TEXT NOT NULL,
    op     TEXT NOT NULL,
    data   TEXT,
    ts     INTEGER NOT NULL
);
CREATE INDEX sync_changes_scope_cursor ON sync_changes (scope, cursor);
CREATE TABLE sync_horizons (
    scope   TEXT PRIMARY KEY,
    horizon INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE sync_clients (
    client_id TEXT PRIMARY KEY,
    seq       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE sync_head (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    cursor INTEGER NOT NULL
);
INSERT INTO sync_head (id, cursor) VALUES (1, 0);
PRAGMA user_version = 1;
";

/// How a [`SqliteBackend`] opens its database.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Reader connections kept open for pulls and snapshots (default 4); more are opened under
    /// load and closed afterwards.
    pub readers: usize,
    /// `true` (the default): `synchronous = FULL`, an acknowledged push survives a power loss.
    /// `false`: `synchronous = NORMAL`, it survives a crash of the process but the last commits
    /// may be lost with the machine's power; commits are cheaper.
    pub durable: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            readers: 4,
            durable: true,
        }
    }
}

/// A durable backend in one SQLite file: the embedded default.
///
/// ```
/// use sync_runtime::{Engine, MutatorFunc, Mutation, SqliteBackend};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("app.db");
/// let backend = SqliteBackend::open(&path)?; // creates the file and its schema
/// let mutator = MutatorFunc::new(|tx, m| Box::pin(async move {
///     tx.put_value("note", "n1", m.args.clone()).await?;
///     Ok(vec![])
/// }));
/// let engine = Engine::builder().mutator(mutator).backend(backend).build();
/// engine.push(vec![Mutation::new("note/set", serde_json::json!({"text": "hi"}))]).await?;
/// drop(engine);
///
/// // Reopened, the data and the log are still there.
/// let engine = Engine::builder()
///     .mutator(MutatorFunc::new(|_, _| Box::pin(async { Ok(vec![]) })))
///     .backend(SqliteBackend::open(&path)?)
///     .build();
/// assert_eq!(engine.head().await?, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteBackend {
    log: SqliteChangeLog,
}

/// The change log of a [`SqliteBackend`], as [`Backend::changelog`] returns it.
#[derive(Clone)]
pub struct SqliteChangeLog {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    options: SqliteOptions,
    /// The one connection that writes; locked only on the blocking pool, and only by the holder
    /// of `gate`.
    writer: Mutex<Connection>,
    /// Held from `begin` until commit or rollback (and by trims): one writer at a time.
    gate: Arc<tokio::sync::Mutex<()>>,
    /// Idle reader connections.
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.log.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteBackend {
    /// Opens (or creates) the database at `path` with the default [`SqliteOptions`], creating
    /// or checking its schema. Blocks while it does: call it before serving, or on the blocking
    /// pool.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (or creates) the database at `path` with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut writer = open_connection(&path, true, &options)?;
        migrate(&mut writer, &path)?;
        let reader = open_connection(&path, false, &options)?;
        Ok(SqliteBackend {
            log: SqliteChangeLog {
                inner: Arc::new(Inner {
                    path,
                    options,
                    writer: Mutex::new(writer),
                    gate: Arc::new(tokio::sync::Mutex::new(())),
                    readers: Mutex::new(vec![reader]),
                }),
            },
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.log.inner.path
    }
}

/// Opens one connection: the writer sets WAL mode and durability, readers are read-only.
fn open_connection(
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
        conn.execute_batch(&format!("PRAGMA synchronous = {synchronous};"))
            .context(|| format!("cannot set synchronous = {synchronous} on {shown}"))?;
    } else {
        conn.execute_batch("PRAGMA query_only = ON;")
            .context(|| format!("cannot open a reader of {shown}"))?;
    }
    Ok(conn)
}

/// Creates the schema in a new database, or checks that an existing one is of a version this
/// crate can read. Later versions add their steps here, from the recorded version up.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let shown = path.display();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .context(|| format!("cannot lock {shown} to check its schema"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .context(|| format!("cannot read the schema version of {shown}"))?;
    match version {
        0 => {
            let tables: i64 = tx
                .query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                    [],
                    |row| row.get(0),
                )
                .context(|| format!("cannot read the tables of {shown}"))?;
            if tables > 0 {
                return Err(StoreError::new(format!(
                    "SQLite: {shown} holds tables but no sync schema version; \
                     it is not a sync database: give another path"
                )));
            }
            tx.execute_batch(SCHEMA_V1)
                .context(|| format!("cannot create the schema in {shown}"))?;
        }
        SCHEMA_VERSION => {}
        newer => {
            return Err(StoreError::new(format!(
                "SQLite: {shown} has schema version {newer}, newer than the {SCHEMA_VERSION} \
                 this version of sync-runtime knows: upgrade sync-runtime"
            )));
        }
    }
    tx.commit()
        .context(|| format!("cannot commit the schema of {shown}"))
}

/// Adds what failed to a SQLite error.
trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|error| StoreError::with_source(format!("SQLite: {}", what()), error))
    }
}

/// Runs blocking `f` without holding up the runtime's other tasks. On a multi-threaded runtime
/// it runs in place (`block_in_place` first hands this worker's other tasks to another thread),
/// which saves the two thread wake-ups of a trip to the blocking pool: SQLite calls take
/// microseconds, the trip tens of them. Elsewhere it runs on the blocking pool.
async fn off_runtime<R: Send + 'static>(
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

/// Runs `f` with [`off_runtime`].
async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    off_runtime(f).await?
}

impl Inner {
    /// Runs `f` on the writer connection, on the blocking pool. The caller holds the gate.
    async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(self);
        blocking(move || f(&mut inner.writer.lock())).await
    }

    /// Runs `f` in a read transaction on a reader connection, on the blocking pool.
    async fn read<T, E>(
        self: &Arc<Self>,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let inner = Arc::clone(self);
        blocking(move || {
            let idle = inner.readers.lock().pop();
            let mut conn = match idle {
                Some(conn) => conn,
                None => open_connection(&inner.path, false, &inner.options)?,
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
            let mut readers = inner.readers.lock();
            if readers.len() < inner.options.readers.max(1) {
                readers.push(conn);
            }
            result
        })
        .await
    }

    /// Takes the writer for a transaction of its own (trim, append).
    async fn write_tx<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _gate = Arc::clone(&self.gate).lock_owned().await;
        self.write(move |conn| {
            end_stale_transaction(conn)?;
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .context(|| "cannot start a write transaction".to_owned())?;
            let result = f(&tx)?;
            tx.commit()
                .context(|| "cannot commit a write transaction".to_owned())?;
            Ok(result)
        })
        .await
    }
}

/// Rolls back what a transaction that was dropped mid-way left open on the writer.
fn end_stale_transaction(conn: &Connection) -> Result<(), StoreError> {
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK")
            .context(|| "cannot roll back an abandoned transaction".to_owned())?;
    }
    Ok(())
}

fn read_head(conn: &Connection) -> Result<u64, StoreError> {
    let head: i64 = conn
        .prepare_cached("SELECT cursor FROM sync_head WHERE id = 1")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .context(|| "cannot read the change log's head".to_owned())?;
    to_u64(head, "head cursor")
}

/// Appends changes with the cursors after the head and advances it; the caller commits.
fn append_changes(
    conn: &Connection,
    finished: Vec<Vec<Staged>>,
) -> Result<Vec<Committed>, StoreError> {
    let mut head = read_head(conn)?;
    let now = Utc::now();
    let ts = now.timestamp_micros();
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO sync_changes (cursor, scope, entity, id, op, data, ts) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .context(|| "cannot prepare the change insert".to_owned())?;
    let mut committed = Vec::with_capacity(finished.len());
    for changes in finished {
        let mut logged = Vec::with_capacity(changes.len());
        for Staged { change, text } in changes {
            head += 1;
            let data = match text {
                Some(text) => Some(text),
                None => change.data.as_ref().map(to_json).transpose()?,
            };
            insert
                .execute(params![
                    to_i64(head, "cursor")?,
                    change.scope,
                    change.entity,
                    change.id,
                    op_name(change.op),
                    data,
                    ts
                ])
                .context(|| format!("cannot append change {head} to the log"))?;
            logged.push(Arc::new(change.into_change(head, now)));
        }
        committed.push(Committed {
            changes: logged,
            cursor: head,
        });
    }
    let new_head = to_i64(head, "cursor")?;
    conn.prepare_cached("UPDATE sync_head SET cursor = ?1 WHERE id = 1")
        .and_then(|mut stmt| stmt.execute([new_head]))
        .context(|| "cannot advance the change log's head".to_owned())?;
    Ok(committed)
}

fn trim_before(conn: &Connection, before: u64) -> Result<(), StoreError> {
    let before = to_i64(before.min(i64::MAX as u64), "cursor")?;
    conn.prepare_cached(
        "INSERT INTO sync_horizons (scope, horizon) \
         SELECT scope, max(cursor) FROM sync_changes WHERE cursor < ?1 GROUP BY scope \
         ON CONFLICT (scope) DO UPDATE SET horizon = max(horizon, excluded.horizon)",
    )
    .and_then(|mut stmt| stmt.execute([before]))
    .context(|| "cannot record the trimmed scopes' horizons".to_owned())?;
    conn.prepare_cached("DELETE FROM sync_changes WHERE cursor < ?1")
        .and_then(|mut stmt| stmt.execute([before]))
        .context(|| format!("cannot trim the change log before cursor {before}"))?;
    Ok(())
}

fn read_change(scope: &str, row: &rusqlite::Row<'_>) -> Result<Change, StoreError> {
    let get = |e: rusqlite::Error| StoreError::with_source("SQLite: cannot read a change", e);
    let cursor: i64 = row.get(0).map_err(get)?;
    let cursor = to_u64(cursor, "cursor")?;
    let data: Option<String> = row.get(4).map_err(get)?;
    let op: String = row.get(3).map_err(get)?;
    Ok(Change {
        cursor,
        scope: scope.to_owned(),
        entity: row.get(1).map_err(get)?,
        id: row.get(2).map_err(get)?,
        op: parse_op(&op)?,
        data: data
            .map(|text| parse_json(&text, format_args!("the data of change {cursor}")))
            .transpose()?,
        timestamp: timestamp(row.get(5).map_err(get)?)?,
    })
}

fn since_in(
    tx: &rusqlite::Transaction<'_>,
    scope: &str,
    cursor: u64,
    limit: usize,
) -> Result<Page, SyncError> {
    let head = read_head(tx)?;
    if cursor > head {
        return Err(SyncError::CursorAhead { cursor, head });
    }
    let horizon: Option<i64> = tx
        .prepare_cached("SELECT horizon FROM sync_horizons WHERE scope = ?1")
        .and_then(|mut stmt| stmt.query_row([scope], |row| row.get(0)).optional())
        .context(|| format!("cannot read the trim horizon of scope `{scope}`"))?;
    let horizon = horizon.map(|h| to_u64(h, "horizon")).transpose()?;
    if let Some(horizon) = horizon.filter(|horizon| *horizon > cursor) {
        return Err(SyncError::CursorTooOld {
            scope: scope.to_owned(),
            cursor,
            horizon,
        });
    }
    // One more than asked tells whether there is more.
    let fetch = i64::try_from(limit)
        .unwrap_or(i64::MAX - 1)
        .saturating_add(1);
    let mut stmt = tx
        .prepare_cached(
            "SELECT cursor, entity, id, op, data, ts FROM sync_changes \
             WHERE scope = ?1 AND cursor > ?2 ORDER BY cursor LIMIT ?3",
        )
        .context(|| "cannot prepare the pull query".to_owned())?;
    let mut rows = stmt
        .query(params![scope, to_i64(cursor, "cursor")?, fetch])
        .context(|| format!("cannot read the changes of scope `{scope}`"))?;
    let mut changes = Vec::new();
    let mut has_more = false;
    while let Some(row) = rows
        .next()
        .context(|| format!("cannot read the changes of scope `{scope}`"))?
    {
        if changes.len() == limit {
            has_more = true;
            break;
        }
        changes.push(Arc::new(read_change(scope, row)?));
    }
    // Cursors are assigned in commit order, so the head read in this snapshot skips nothing.
    let next = changes.last().map_or(head, |change| change.cursor);
    Ok(Page {
        changes,
        cursor: next,
        has_more,
    })
}

fn scope_data(conn: &Connection, scope: &str) -> Result<ScopeData, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT entity, id, data FROM sync_entities WHERE scope = ?1")
        .context(|| "cannot prepare the snapshot query".to_owned())?;
    let mut rows = stmt
        .query([scope])
        .context(|| format!("cannot read the data of scope `{scope}`"))?;
    let mut data = ScopeData::new();
    let get = |e: rusqlite::Error| StoreError::with_source("SQLite: cannot read an entity", e);
    while let Some(row) = rows
        .next()
        .context(|| format!("cannot read the data of scope `{scope}`"))?
    {
        let entity: String = row.get(0).map_err(get)?;
        let id: String = row.get(1).map_err(get)?;
        let text: String = row.get(2).map_err(get)?;
        let value = parse_json(&text, format_args!("{entity} `{id}`"))?;
        data.entry(entity).or_default().insert(id, value);
    }
    Ok(data)
}

#[async_trait]
impl ChangeLog for SqliteChangeLog {
    async fn append(&self, changes: Vec<NewChange>) -> Result<Vec<Arc<Change>>, StoreError> {
        let committed = self
            .inner
            .write_tx(move |tx| {
                let staged = changes
                    .into_iter()
                    .map(|change| Staged { change, text: None })
                    .collect();
                append_changes(tx, vec![staged])
            })
            .await?;
        Ok(committed
            .into_iter()
            .flat_map(|committed| committed.changes)
            .collect())
    }

    async fn since(&self, scope: &str, cursor: u64, limit: usize) -> Result<Page, SyncError> {
        let scope = scope.to_owned();
        self.inner
            .read(move |tx| since_in(tx, &scope, cursor, limit))
            .await
    }

    async fn cursor(&self) -> Result<u64, StoreError> {
        self.inner.read(|tx| read_head(tx)).await
    }

    async fn scope_cursor(&self, scope: &str) -> Result<u64, StoreError> {
        let scope = scope.to_owned();
        self.inner
            .read(move |tx| {
                // The scope's latest change; where all were trimmed, the last one trimmed.
                let cursor: i64 = tx
                    .prepare_cached(
                        "SELECT coalesce((SELECT max(cursor) FROM sync_changes WHERE scope = ?1), \
                         (SELECT horizon FROM sync_horizons WHERE scope = ?1), 0)",
                    )
                    .and_then(|mut stmt| stmt.query_row([&scope], |row| row.get(0)))
                    .context(|| format!("cannot read the latest cursor of scope `{scope}`"))?;
                to_u64(cursor, "cursor")
            })
            .await
    }

    async fn trim(&self, before: u64) -> Result<(), StoreError> {
        self.inner.write_tx(move |tx| trim_before(tx, before)).await
    }

    async fn retain(&self, keep: usize) -> Result<(), StoreError> {
        let keep = to_i64(keep as u64, "retention")?;
        // Amortized: trim only once the log exceeds `keep` by a tenth, then back to `keep`.
        let slack = retain_slack(keep);
        let over = self
            .inner
            .read(move |tx| {
                let head = i64::try_from(read_head(tx)?).unwrap_or(i64::MAX);
                let oldest: Option<i64> = tx
                    .query_row("SELECT min(cursor) FROM sync_changes", [], |row| row.get(0))
                    .context(|| "cannot read the change log's oldest cursor".to_owned())?;
                // Cursors have no gaps here, so this is the count of retained changes (or more).
                Ok::<_, StoreError>(oldest.is_some_and(|oldest| head - oldest + 1 > keep + slack))
            })
            .await?;
        if !over {
            return Ok(());
        }
        self.inner
            .write_tx(move |tx| {
                let newest_gone: Option<i64> = tx
                    .query_row(
                        "SELECT cursor FROM sync_changes ORDER BY cursor DESC LIMIT 1 OFFSET ?1",
                        [keep],
                        |row| row.get(0),
                    )
                    .optional()
                    .context(|| "cannot find where to trim the change log".to_owned())?;
                match newest_gone {
                    Some(cursor) => trim_before(tx, to_u64(cursor, "cursor")? + 1),
                    None => Ok(()),
                }
            })
            .await
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn begin(&self) -> Result<Box<dyn Transaction>, StoreError> {
        let inner = &self.log.inner;
        let gate = Arc::clone(&inner.gate).lock_owned().await;
        inner
            .write(|conn| {
                end_stale_transaction(conn)?;
                conn.execute_batch("BEGIN IMMEDIATE")
                    .context(|| "cannot start a push's transaction".to_owned())
            })
            .await?;
        Ok(Box::new(SqliteTransaction {
            inner: Arc::clone(inner),
            gate: Some(gate),
            state: Mutex::new(TxState::default()),
        }))
    }

    fn changelog(&self) -> &dyn ChangeLog {
        &self.log
    }

    async fn snapshot(&self, scope: &str) -> Result<(ScopeData, u64), StoreError> {
        let scope = scope.to_owned();
        self.log
            .inner
            .read(move |tx| {
                let head = read_head(tx)?;
                Ok((scope_data(tx, &scope)?, head))
            })
            .await
    }
}

/// One push's transaction on the writer connection.
struct SqliteTransaction {
    inner: Arc<Inner>,
    /// `None` once committed; dropping it with the gate still held rolls back.
    gate: Option<OwnedMutexGuard<()>>,
    state: Mutex<TxState>,
}

#[derive(Default)]
struct TxState {
    /// A mutation is open (between `begin_mutation` and `finish_mutation`).
    in_mutation: bool,
    savepoint: Savepoint,
    /// Finished mutations' changes, one list per mutation.
    finished: Vec<Vec<Staged>>,
    /// What the open mutation wrote, as values and JSON text: a change that carries the same
    /// value is logged with the same text, serialized once.
    written: Vec<Write>,
    /// Sequence numbers recorded by finished mutations, written at commit.
    client_seqs: HashMap<String, u64>,
    /// A database call failed in a way that leaves the savepoints unknown: only a rollback is
    /// safe.
    poisoned: bool,
}

/// A change waiting for the commit, with its data's JSON text where the write made it.
struct Staged {
    change: NewChange,
    text: Option<String>,
}

/// One write of the open mutation.
struct Write {
    scope: String,
    entity: String,
    id: String,
    data: Value,
    text: String,
}

/// The savepoint `mutation`, taken at a mutation's first write. A finished mutation's savepoint
/// is released together with the next one's start (or by the commit), which saves a round trip
/// per mutation.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Savepoint {
    /// None is open.
    #[default]
    None,
    /// The open mutation's.
    Current,
    /// A finished mutation's, not yet released.
    Finished,
}

impl SqliteTransaction {
    /// Runs `f` on the writer; a `write` first takes the open mutation's savepoint if it has none.
    async fn run<T: Send + 'static>(
        &self,
        write: bool,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let prefix = {
            let state = self.state.lock();
            match state.savepoint {
                _ if !write || !state.in_mutation => None,
                Savepoint::Current => None,
                Savepoint::None => Some(&["SAVEPOINT mutation"][..]),
                Savepoint::Finished => Some(&["RELEASE mutation", "SAVEPOINT mutation"][..]),
            }
        };
        let inner = Arc::clone(&self.inner);
        let ran = off_runtime(move || {
            let conn = inner.writer.lock();
            // Prepared once and cached, like every statement here: no SQL is parsed per call.
            for statement in prefix.unwrap_or_default() {
                conn.prepare_cached(statement)?.execute([])?;
            }
            Ok::<_, rusqlite::Error>(f(&conn))
        })
        .await;
        match ran {
            Ok(Ok(result)) => {
                if prefix.is_some() {
                    self.state.lock().savepoint = Savepoint::Current;
                }
                result
            }
            Ok(Err(error)) => {
                self.state.lock().poisoned = true;
                Err(StoreError::with_source(
                    "SQLite: cannot start a mutation's savepoint",
                    error,
                ))
            }
            Err(error) => {
                self.state.lock().poisoned = true;
                Err(error)
            }
        }
    }
}

impl Drop for SqliteTransaction {
    fn drop(&mut self) {
        let Some(gate) = self.gate.take() else {
            return;
        };
        // Roll back while still holding the gate, so that no other transaction starts first.
        let inner = Arc::clone(&self.inner);
        let rollback = move || {
            let _gate = gate;
            let conn = inner.writer.lock();
            if let Err(error) = end_stale_transaction(&conn) {
                tracing::warn!(%error, "could not roll back an abandoned SQLite transaction");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(rollback)),
            Err(_) => rollback(),
        }
    }
}

#[async_trait]
impl Store for SqliteTransaction {
    async fn get(&self, scope: &str, entity: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let key = (scope.to_owned(), entity.to_owned(), id.to_owned());
        self.run(false, move |conn| {
            let (scope, entity, id) = key;
            let text: Option<String> = conn
                .prepare_cached(
                    "SELECT data FROM sync_entities WHERE scope = ?1 AND entity = ?2 AND id = ?3",
                )
                .and_then(|mut stmt| {
                    stmt.query_row([&scope, &entity, &id], |row| row.get(0))
                        .optional()
                })
                .context(|| format!("cannot read {entity} `{id}` in scope `{scope}`"))?;
            text.map(|text| parse_json(&text, format_args!("{entity} `{id}`")))
                .transpose()
        })
        .await
    }

    async fn set(
        &self,
        scope: &str,
        entity: &str,
        id: &str,
        data: Value,
    ) -> Result<Written, StoreError> {
        let key = (scope.to_owned(), entity.to_owned(), id.to_owned());
        let text = to_json(&data)?;
        let (written, text) = self
            .run(true, move |conn| {
                let (scope, entity, id) = key;
                // A create is one statement; an update two.
                let inserted = conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO sync_entities (scope, entity, id, data) \
                         VALUES (?1, ?2, ?3, ?4)",
                    )
                    .and_then(|mut stmt| stmt.execute([&scope, &entity, &id, &text]))
                    .context(|| format!("cannot write {entity} `{id}` in scope `{scope}`"))?;
                if inserted > 0 {
                    return Ok((Written::Created, text));
                }
                conn.prepare_cached(
                    "UPDATE sync_entities SET data = ?4 WHERE scope = ?1 AND entity = ?2 AND id = ?3",
                )
                .and_then(|mut stmt| stmt.execute([&scope, &entity, &id, &text]))
                .context(|| format!("cannot write {entity} `{id}` in scope `{scope}`"))?;
                Ok((Written::Updated, text))
            })
            .await?;
        self.state.lock().written.push(Write {
            scope: scope.to_owned(),
            entity: entity.to_owned(),
            id: id.to_owned(),
            data,
            text,
        });
        Ok(written)
    }

    async fn delete(&self, scope: &str, entity: &str, id: &str) -> Result<bool, StoreError> {
        let key = (scope.to_owned(), entity.to_owned(), id.to_owned());
        self.run(true, move |conn| {
            let (scope, entity, id) = key;
            let deleted = conn
                .prepare_cached(
                    "DELETE FROM sync_entities WHERE scope = ?1 AND entity = ?2 AND id = ?3",
                )
                .and_then(|mut stmt| stmt.execute([&scope, &entity, &id]))
                .context(|| format!("cannot delete {entity} `{id}` in scope `{scope}`"))?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn list(&self, scope: &str, entity: &str) -> Result<Vec<Value>, StoreError> {
        let key = (scope.to_owned(), entity.to_owned());
        self.run(false, move |conn| {
            let (scope, entity) = key;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, data FROM sync_entities WHERE scope = ?1 AND entity = ?2 ORDER BY id",
                )
                .context(|| "cannot prepare the list query".to_owned())?;
            let rows = stmt
                .query_map([&scope, &entity], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })
                .context(|| format!("cannot list {entity} in scope `{scope}`"))?;
            let mut values = Vec::new();
            for row in rows {
                let (id, text) =
                    row.context(|| format!("cannot list {entity} in scope `{scope}`"))?;
                values.push(parse_json(&text, format_args!("{entity} `{id}`"))?);
            }
            Ok(values)
        })
        .await
    }

    async fn snapshot(&self, scope: &str) -> Result<ScopeData, StoreError> {
        let scope = scope.to_owned();
        self.run(false, move |conn| scope_data(conn, &scope)).await
    }
}

#[async_trait]
impl Transaction for SqliteTransaction {
    async fn last_client_seq(&self, client_id: &str) -> Result<Option<u64>, StoreError> {
        let staged = self.state.lock().client_seqs.get(client_id).copied();
        if staged.is_some() {
            // Recorded by this transaction above the stored one, which it read first.
            return Ok(staged);
        }
        let client_id = client_id.to_owned();
        let stored = self
            .run(false, move |conn| {
                let seq: Option<i64> = conn
                    .prepare_cached("SELECT seq FROM sync_clients WHERE client_id = ?1")
                    .and_then(|mut stmt| stmt.query_row([&client_id], |row| row.get(0)).optional())
                    .context(|| format!("cannot read the last client_seq of `{client_id}`"))?;
                seq.map(|seq| to_u64(seq, "client_seq")).transpose()
            })
            .await?;
        Ok(staged.max(stored))
    }

    async fn begin_mutation(&self) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        if state.in_mutation {
            return Err(StoreError::new(
                "begin_mutation called twice without finish_mutation",
            ));
        }
        state.in_mutation = true;
        state.written.clear();
        Ok(())
    }

    async fn rollback_mutation(&self) -> Result<(), StoreError> {
        if self.state.lock().savepoint != Savepoint::Current {
            return Ok(()); // the mutation wrote nothing
        }
        self.run(false, |conn| {
            conn.execute_batch("ROLLBACK TO mutation")
                .context(|| "cannot roll back a failed mutation".to_owned())
        })
        .await?;
        // The savepoint stays open, now empty: released with the next one.
        let mut state = self.state.lock();
        state.savepoint = Savepoint::Finished;
        state.written.clear();
        Ok(())
    }

    async fn finish_mutation(
        &self,
        changes: Vec<NewChange>,
        client: Option<(&str, u64)>,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        if state.savepoint == Savepoint::Current {
            state.savepoint = Savepoint::Finished;
        }
        state.in_mutation = false;
        let mut written = std::mem::take(&mut state.written);
        let staged = changes
            .into_iter()
            .map(|change| {
                // The latest write of the same entity, if it wrote exactly this data.
                let at = written.iter().rposition(|w| {
                    w.scope == change.scope && w.entity == change.entity && w.id == change.id
                });
                let text = at
                    .filter(|&at| change.data.as_ref() == written.get(at).map(|w| &w.data))
                    .map(|at| written.swap_remove(at).text);
                Staged { change, text }
            })
            .collect();
        state.finished.push(staged);
        super::stage_client_seq(&mut state.client_seqs, client);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<Vec<Committed>, StoreError> {
        let state = std::mem::take(&mut *self.state.lock());
        if state.poisoned {
            return Err(StoreError::new(
                "SQLite: the push's transaction was rolled back after a failed database call",
            ));
        }
        let unfinished = state.savepoint == Savepoint::Current;
        let client_seqs = state
            .client_seqs
            .into_iter()
            .map(|(id, seq)| Ok((id, to_i64(seq, "client_seq")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let finished = state.finished;
        let committed = self
            .inner
            .write(move |conn| {
                let result = (|| {
                    if unfinished {
                        // A mutation that was begun but not finished leaves nothing behind.
                        conn.execute_batch("ROLLBACK TO mutation")
                            .context(|| "cannot discard an unfinished mutation".to_owned())?;
                    }
                    let mut upsert = conn
                        .prepare_cached(
                            "INSERT INTO sync_clients (client_id, seq) VALUES (?1, ?2) \
                             ON CONFLICT (client_id) DO UPDATE SET seq = max(seq, excluded.seq)",
                        )
                        .context(|| "cannot prepare the client_seq record".to_owned())?;
                    for (client_id, seq) in &client_seqs {
                        upsert.execute(params![client_id, seq]).context(|| {
                            format!("cannot record client_seq {seq} of `{client_id}`")
                        })?;
                    }
                    let committed = append_changes(conn, finished)?;
                    conn.execute_batch("COMMIT")
                        .context(|| "cannot commit a push".to_owned())?;
                    Ok(committed)
                })();
                if result.is_err() {
                    let _ = end_stale_transaction(conn);
                }
                result
            })
            .await;
        // Committed, or rolled back above: nothing left for `drop` to undo. Where the call never
        // ran, `drop` rolls back.
        if committed.is_ok() {
            self.gate = None;
        }
        committed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::change::ChangeOp;

    #[tokio::test]
    async fn refuses_a_newer_schema_and_a_foreign_database() {
        let dir = tempfile::tempdir().unwrap();
        let newer = dir.path().join("newer.db");
        drop(SqliteBackend::open(&newer).unwrap());
        Connection::open(&newer)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let error = SqliteBackend::open(&newer).unwrap_err().to_string();
        assert!(error.contains("schema version 99"), "{error}");

        let foreign = dir.path().join("foreign.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE mine (x)")
            .unwrap();
        let error = SqliteBackend::open(&foreign).unwrap_err().to_string();
        assert!(error.contains("not a sync database"), "{error}");

        let error = SqliteBackend::open(dir.path().join("no/such/dir/x.db"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot open"), "{error}");
    }

    #[tokio::test]
    async fn corrupt_rows_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let backend = SqliteBackend::open(&path).unwrap();
        let log = backend.changelog();
        log.append(vec![NewChange {
            scope: "s".into(),
            entity: "e".into(),
            id: "1".into(),
            op: ChangeOp::Create,
            data: Some(serde_json::json!({"a": 1})),
        }])
        .await
        .unwrap();
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "UPDATE sync_changes SET data = '{oops', op = 'create';
                 INSERT INTO sync_entities VALUES ('s', 'e', '1', 'not json');",
            )
            .unwrap();
        let error = log.since("s", 0, 10).await.unwrap_err().to_string();
        assert!(error.contains("not valid JSON"), "{error}");
        let error = backend.snapshot("s").await.unwrap_err().to_string();
        assert!(error.contains("not valid JSON"), "{error}");
    }

    #[tokio::test]
    async fn a_dropped_transaction_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(dir.path().join("d.db")).unwrap();
        let tx = backend.begin().await.unwrap();
        tx.begin_mutation().await.unwrap();
        tx.set("s", "e", "1", serde_json::json!(1)).await.unwrap();
        drop(tx);
        let tx = backend.begin().await.unwrap();
        assert_eq!(tx.get("s", "e", "1").await.unwrap(), None);
        assert!(tx.commit().await.unwrap().is_empty());
    }
}
