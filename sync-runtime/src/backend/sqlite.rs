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
//! - **At most one commit per push.** A push runs in a `BEGIN IMMEDIATE` transaction. Its
//!   mutations read in it and buffer their writes in memory, where a permanent failure undoes
//!   them (no savepoint per mutation). Its commit writes the entities, the clients' sequence
//!   numbers and the changes with their cursors, and advances the head, in one call.
//! - **Group commit.** Where other pushes wait for the writer, that call ends without `COMMIT`:
//!   the next push runs in the same transaction, and so on (up to 64 pushes), until one finds no
//!   push waiting and commits them all, with one fsync. Each push is acknowledged only once its
//!   group has committed; a push dropped half-way commits the group it holds, a failed call rolls
//!   it back and fails every push in it. A mutator that waits on something slow delays the
//!   pushes of its group as it delays those queued behind it: keep mutators to the database.
//! - **Durable by default.** `synchronous = FULL`: an acknowledged push survives a crash of the
//!   process and of the machine. [`SqliteOptions::durable`] trades the latter for speed.
//! - **Versioned schema.** The schema is created on open and its version kept in
//!   `PRAGMA user_version`, so that a later version of this crate can migrate it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::Utc;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::OwnedMutexGuard;
use tokio::sync::oneshot::error::TryRecvError;

use super::sql::{op_name, parse_json, parse_op, retain_slack, timestamp, to_i64, to_json, to_u64};
use super::write_set::{Key, KeyRef, WriteSet};
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
    /// Pushes waiting for the gate. While there are, a push's commit hands the open transaction
    /// on, uncommitted, so that the next pushes share its commit (group commit).
    waiting: AtomicUsize,
    /// The pushes whose work the open transaction holds, each waiting for its commit.
    group: Mutex<Vec<GroupMember>>,
    /// Idle reader connections.
    readers: Mutex<Vec<Connection>>,
}

/// A push waiting for the commit of a transaction it handed on: told whether it committed.
type GroupMember = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Most pushes that share one commit: bounds how long the first of them waits.
const MAX_GROUP: usize = 64;

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
                    waiting: AtomicUsize::new(0),
                    group: Mutex::new(Vec::new()),
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
        // A mutation's savepoint copies each page it first changes to a sub-journal: in memory
        // rather than in a temporary file, a write less per page.
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
        let inner = Arc::clone(self);
        self.write(move |conn| {
            inner.settle(conn)?;
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

impl Inner {
    /// Ends the writer's open transaction, if any: commits it where pushes wait for that commit
    /// (they handed it on), rolls it back where a dropped push left it. The caller holds the gate.
    fn settle(&self, conn: &Connection) -> Result<(), StoreError> {
        if self.group.lock().is_empty() {
            return end_stale_transaction(conn);
        }
        self.commit_open(conn)
    }

    /// Commits the writer's open transaction and tells the pushes that wait for it.
    fn commit_open(&self, conn: &Connection) -> Result<(), StoreError> {
        let members = std::mem::take(&mut *self.group.lock());
        let committed = conn
            .prepare_cached("COMMIT")
            .and_then(|mut commit| commit.execute([]))
            .map(drop)
            .context(|| "cannot commit a push".to_owned());
        if committed.is_err() {
            let _ = end_stale_transaction(conn);
        }
        let told = committed.as_ref().map(drop).map_err(ToString::to_string);
        for member in members {
            // A member that stopped waiting (its request was dropped) needs no answer.
            let _ = member.send(told.clone());
        }
        committed
    }

    /// Rolls back the open transaction after a failed call, failing the pushes that wait for
    /// its commit.
    fn fail(&self, conn: &Connection, error: &StoreError) {
        let _ = end_stale_transaction(conn);
        for member in std::mem::take(&mut *self.group.lock()) {
            let _ = member.send(Err(error.to_string()));
        }
    }
}

/// Counts a push waiting for the gate, until it has it or stops waiting.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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
        changes: changes.into(),
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
        let gate = {
            let _waiting = Waiting::new(&inner.waiting);
            Arc::clone(&inner.gate).lock_owned().await
        };
        let joined = Arc::clone(inner);
        inner
            .write(move |conn| {
                // Pushes handed their transaction on: this one joins it, and its commit.
                if !joined.group.lock().is_empty() && !conn.is_autocommit() {
                    return Ok(());
                }
                joined.settle(conn)?;
                // Cached, as every statement a push runs: no SQL is parsed per push.
                conn.prepare_cached("BEGIN IMMEDIATE")
                    .and_then(|mut begin| begin.execute([]))
                    .map(drop)
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
///
/// Reads run in the database transaction; writes wait in a [`WriteSet`] until the commit, which
/// applies them, records the clients' sequence numbers and appends the changes in one call. A
/// failed mutation's writes are undone in memory: no savepoint per mutation, whose sub-journal
/// would copy every page the mutation touches.
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
    writes: WriteSet,
    /// Finished mutations' changes, one list per mutation.
    finished: Vec<Vec<NewChange>>,
    /// Sequence numbers recorded by finished mutations, written at commit.
    client_seqs: HashMap<String, u64>,
}

/// A change ready to be logged, with its data as JSON text where it was already serialized.
struct Staged {
    change: NewChange,
    text: Option<String>,
}

impl SqliteTransaction {
    /// Runs a read `f` on the writer, in the push's database transaction.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || f(&inner.writer.lock())).await
    }

    /// Whether the entity exists, with this transaction's writes applied.
    async fn exists(&self, scope: &str, entity: &str, id: &str) -> Result<bool, StoreError> {
        if let Some(written) = self.state.lock().writes.get(scope, entity, id) {
            return Ok(written.is_some());
        }
        let key = (scope.to_owned(), entity.to_owned(), id.to_owned());
        self.read(move |conn| {
            let (scope, entity, id) = key;
            conn.prepare_cached(
                "SELECT 1 FROM sync_entities WHERE scope = ?1 AND entity = ?2 AND id = ?3",
            )
            .and_then(|mut stmt| stmt.exists([&scope, &entity, &id]))
            .context(|| format!("cannot read {entity} `{id}` in scope `{scope}`"))
        })
        .await
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
            // Commits what pushes that handed the transaction on wrote; this one wrote nothing
            // to the database yet (its writes wait in memory until its commit).
            if let Err(error) = inner.settle(&conn) {
                tracing::warn!(%error, "could not end an abandoned SQLite transaction");
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
        if let Some(written) = self.state.lock().writes.get(scope, entity, id) {
            return Ok(written.clone());
        }
        let key = (scope.to_owned(), entity.to_owned(), id.to_owned());
        self.read(move |conn| {
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
        let existed = self.exists(scope, entity, id).await?;
        self.state
            .lock()
            .writes
            .write(scope, entity, id, Some(data));
        Ok(Written::when_existed(existed))
    }

    async fn delete(&self, scope: &str, entity: &str, id: &str) -> Result<bool, StoreError> {
        let existed = self.exists(scope, entity, id).await?;
        if existed {
            self.state.lock().writes.write(scope, entity, id, None);
        }
        Ok(existed)
    }

    async fn list(&self, scope: &str, entity: &str) -> Result<Vec<Value>, StoreError> {
        let key = (scope.to_owned(), entity.to_owned());
        let mut ids = self
            .read(move |conn| {
                let (scope, entity) = key;
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, data FROM sync_entities WHERE scope = ?1 AND entity = ?2",
                    )
                    .context(|| "cannot prepare the list query".to_owned())?;
                let rows = stmt
                    .query_map([&scope, &entity], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })
                    .context(|| format!("cannot list {entity} in scope `{scope}`"))?;
                let mut ids = BTreeMap::new();
                for row in rows {
                    let (id, text) =
                        row.context(|| format!("cannot list {entity} in scope `{scope}`"))?;
                    let value = parse_json(&text, format_args!("{entity} `{id}`"))?;
                    ids.insert(id, value);
                }
                Ok(ids)
            })
            .await?;
        self.state
            .lock()
            .writes
            .overlay_entities(scope, entity, &mut ids);
        Ok(ids.into_values().collect())
    }

    async fn snapshot(&self, scope: &str) -> Result<ScopeData, StoreError> {
        let owned = scope.to_owned();
        let mut data = self.read(move |conn| scope_data(conn, &owned)).await?;
        self.state.lock().writes.overlay_scope(scope, &mut data);
        Ok(data)
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
            .read(move |conn| {
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
        state.writes.keep_mutation();
        Ok(())
    }

    async fn rollback_mutation(&self) -> Result<(), StoreError> {
        self.state.lock().writes.undo_mutation();
        Ok(())
    }

    async fn finish_mutation(
        &self,
        changes: Vec<NewChange>,
        client: Option<(&str, u64)>,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        state.in_mutation = false;
        state.writes.keep_mutation();
        state.finished.push(changes);
        super::stage_client_seq(&mut state.client_seqs, client);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<Vec<Committed>, StoreError> {
        let state = std::mem::take(&mut *self.state.lock());
        let client_seqs = state
            .client_seqs
            .into_iter()
            .map(|(id, seq)| Ok((id, to_i64(seq, "client_seq")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let (writes, finished) = serialize_writes(state.writes, state.finished)?;
        let inner = Arc::clone(&self.inner);
        let written = self
            .inner
            .write(move |conn| {
                let result = (|| {
                    write_entities(conn, &writes)?;
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
                    // Other pushes wait for the writer: hand them the transaction, and share
                    // their commit (one fsync for all with `durable`).
                    let mut group = inner.group.lock();
                    if inner.waiting.load(Ordering::SeqCst) > 0 && group.len() < MAX_GROUP {
                        let (member, told) = tokio::sync::oneshot::channel();
                        group.push(member);
                        return Ok((committed, Some(told)));
                    }
                    drop(group);
                    inner.commit_open(conn)?;
                    Ok((committed, None))
                })();
                if let Err(error) = &result {
                    inner.fail(conn, error);
                }
                result
            })
            .await;
        let (committed, told) = match written {
            Ok(written) => written,
            // Rolled back above where the call ran; where it never ran, `drop` ends it.
            Err(error) => return Err(error),
        };
        // Nothing left for `drop` to undo: committed, or handed on with the gate.
        self.gate = None;
        let Some(told) = told else {
            return Ok(committed);
        };
        let mut told = told;
        let answer = loop {
            tokio::select! {
                biased;
                answer = &mut told => break answer.unwrap_or_else(|_| Err(STOPPED.to_owned())),
                // The gate came back to this push before anyone committed the transaction (the
                // push that was waiting stopped, or queued behind this one): it commits what is
                // open, which answers `told`.
                gate = Arc::clone(&self.inner.gate).lock_owned() => {
                    let inner = Arc::clone(&self.inner);
                    let settled = self
                        .inner
                        .write(move |conn| {
                            let _gate = gate;
                            inner.settle(conn)
                        })
                        .await;
                    match (told.try_recv(), settled) {
                        (Ok(answer), _) => break answer,
                        (Err(TryRecvError::Closed), _) => break Err(STOPPED.to_owned()),
                        // The call never ran, so nobody will answer.
                        (Err(TryRecvError::Empty), Err(error)) => return Err(error),
                        (Err(TryRecvError::Empty), Ok(())) => {}
                    }
                }
            }
        };
        answer
            .map(|()| committed)
            .map_err(|message| StoreError::new(format!("SQLite: a group commit failed: {message}")))
    }
}

/// Why a push that handed its transaction on got no answer.
const STOPPED: &str = "the push that was to commit it stopped";

/// An entity write as the commit applies it: the key and the data's JSON text (`None`: delete).
type EntityWrite = (Key, Option<String>);

/// Serializes the committed writes and the changes, before the writer is taken. A change that
/// carries the same data as its entity's final write reuses that text: serialized once.
fn serialize_writes(
    writes: WriteSet,
    finished: Vec<Vec<NewChange>>,
) -> Result<(Vec<EntityWrite>, Vec<Vec<Staged>>), StoreError> {
    let writes: Vec<(Key, Option<Value>)> = writes.into_writes().collect();
    let texts = writes
        .iter()
        .map(|(_, data)| data.as_ref().map(to_json).transpose())
        .collect::<Result<Vec<_>, StoreError>>()?;
    // Where each entity's final write is, to reuse its text for a change with the same data.
    let staged = {
        let at: hashbrown::HashMap<KeyRef<'_>, usize> = writes
            .iter()
            .enumerate()
            .map(|(at, (key, _))| (key.parts(), at))
            .collect();
        let written_text = |change: &NewChange| {
            let at = *at.get(&KeyRef(&change.scope, &change.entity, &change.id))?;
            let (_, written) = writes.get(at)?;
            let text = texts.get(at)?.as_ref()?;
            (written.as_ref() == change.data.as_ref()).then(|| text.clone())
        };
        finished
            .into_iter()
            .map(|changes| {
                changes
                    .into_iter()
                    .map(|change| {
                        let text = match written_text(&change) {
                            Some(text) => Some(text),
                            None => change.data.as_ref().map(to_json).transpose()?,
                        };
                        Ok(Staged { change, text })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .collect::<Result<Vec<_>, StoreError>>()
    }?;
    let entity_writes = writes
        .into_iter()
        .zip(texts)
        .map(|((key, _), text)| (key, text))
        .collect();
    Ok((entity_writes, staged))
}

/// Applies a push's entity writes; the caller commits.
fn write_entities(conn: &Connection, writes: &[EntityWrite]) -> Result<(), StoreError> {
    let mut upsert = conn
        .prepare_cached(
            "INSERT INTO sync_entities (scope, entity, id, data) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (scope, entity, id) DO UPDATE SET data = excluded.data",
        )
        .context(|| "cannot prepare the entity write".to_owned())?;
    let mut delete = conn
        .prepare_cached("DELETE FROM sync_entities WHERE scope = ?1 AND entity = ?2 AND id = ?3")
        .context(|| "cannot prepare the entity delete".to_owned())?;
    for (key, text) in writes {
        let KeyRef(scope, entity, id) = key.parts();
        match text {
            Some(text) => upsert.execute([scope, entity, id, text]),
            None => delete.execute([scope, entity, id]),
        }
        .context(|| format!("cannot write {entity} `{id}` in scope `{scope}`"))?;
    }
    Ok(())
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
