//! The SQLite backend: store, change log and clients' sequence numbers in one database file.
//!
//! - **One writer, many readers.** The database runs in WAL mode. Pushes and trims go through one
//!   writer connection, one transaction at a time (an async gate orders them), so
//!   cursors are assigned in commit order without further locking. Pulls and snapshots run on a
//!   small pool of reader connections, each in a read transaction: WAL readers never wait for
//!   the writer, and see a committed state as of their first read (`conn`).
//! - **Never blocks the runtime.** Every call into SQLite runs with `block_in_place` on a
//!   multi-threaded runtime (the worker's other tasks move to another thread first), and on
//!   tokio's blocking pool (`spawn_blocking`) on a current-thread runtime.
//! - **At most one commit per push.** A push runs in a `BEGIN IMMEDIATE` transaction. Its
//!   mutations read in it and buffer their writes in memory, where a permanent failure undoes
//!   them (no savepoint per mutation). Its commit writes the entities, the clients' sequence
//!   numbers and the changes with their cursors, and advances the head, in one call.
//! - **Group commit** (`group_commit`). Where other pushes wait for the writer, that call ends
//!   without `COMMIT`: the next push runs in the same transaction, and so on (up to 64 pushes),
//!   until one finds no push waiting and commits them all, with one fsync. A mutator that waits
//!   on something slow delays the pushes of its group as it delays those queued behind it: keep
//!   mutators to the database.
//! - **Durable by default.** `synchronous = FULL`: an acknowledged push survives a crash of the
//!   process and of the machine. [`SqliteOptions::durable`] trades the latter for speed.
//! - **Versioned schema** (`schema`), created on open.

mod conn;
mod entities;
mod group_commit;
mod log;
mod schema;
mod tx;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use self::conn::Connections;
use self::group_commit::GroupCommit;
use super::sql::Context;
use super::{Backend, ChangeLog, LogRead, SnapshotPage, SnapshotRead, Store};
use crate::error::StoreError;

pub use self::tx::SqliteTransaction;

/// Most pushes that share one commit: bounds how long the first of them waits.
const MAX_GROUP: usize = 64;

/// How a [`SqliteBackend`] opens its database.
#[derive(Clone, Debug)]
#[non_exhaustive]
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
///     tx.put_value("note", "n1", &m.args).await?;
///     Ok(None)
/// }));
/// let engine = Engine::builder(mutator).backend(backend).build();
/// engine.push(vec![Mutation::new("note/set", serde_json::json!({"text": "hi"}))]).await?;
/// drop(engine);
///
/// // Reopened, the data and the log are still there.
/// let engine = Engine::builder(MutatorFunc::new(|_, _| Box::pin(async { Ok(None) })))
///     .backend(SqliteBackend::open(&path)?)
///     .build();
/// assert_eq!(engine.head().await?, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteBackend {
    conns: Arc<Connections>,
    group: Arc<GroupCommit>,
    log_id: Arc<str>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.conns.path)
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
        let mut writer = conn::open(&path, true, &options)?;
        let log_id = schema::migrate(&mut writer, &path)?;
        let reader = conn::open(&path, false, &options)?;
        Ok(SqliteBackend {
            conns: Arc::new(Connections::new(path, options, writer, reader)),
            group: Arc::new(GroupCommit::new(MAX_GROUP)),
            log_id: log_id.into(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.conns.path
    }
}

impl Store for SqliteBackend {
    async fn get(&self, scope: &str, entity: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let key = (scope.to_owned(), entity.to_owned(), id.to_owned());
        self.conns
            .read(move |conn| entities::get(conn, &key.0, &key.1, &key.2))
            .await
    }

    async fn list(&self, scope: &str, entity: &str) -> Result<BTreeMap<String, Value>, StoreError> {
        let key = (scope.to_owned(), entity.to_owned());
        self.conns
            .read(move |conn| entities::list(conn, &key.0, &key.1))
            .await
    }
}

impl ChangeLog for SqliteBackend {
    fn log_id(&self) -> &str {
        &self.log_id
    }

    async fn read(
        &self,
        scope: &str,
        after: u64,
        limit: usize,
        client_id: Option<&str>,
    ) -> Result<LogRead, StoreError> {
        let (scope, client_id) = (scope.to_owned(), client_id.map(str::to_owned));
        self.conns
            .read(move |conn| {
                let client_seq = match &client_id {
                    Some(client_id) => entities::client_seq(conn, client_id)?,
                    None => None,
                };
                Ok(LogRead {
                    client_seq,
                    ..log::read(conn, &scope, after, limit)?
                })
            })
            .await
    }

    async fn head(&self) -> Result<u64, StoreError> {
        self.conns.read(|conn| log::head(conn)).await
    }

    async fn scope_cursor(&self, scope: &str) -> Result<u64, StoreError> {
        let scope = scope.to_owned();
        self.conns
            .read(move |conn| log::scope_cursor(conn, &scope))
            .await
    }

    async fn scope_cursors(&self, scopes: &[&str]) -> Result<Vec<u64>, StoreError> {
        let scopes: Vec<String> = scopes.iter().map(|scope| (*scope).to_owned()).collect();
        self.conns
            .read(move |conn| {
                scopes
                    .iter()
                    .map(|scope| log::scope_cursor(conn, scope))
                    .collect()
            })
            .await
    }

    /// Trims in a write transaction of its own, between pushes.
    async fn trim(&self, before: u64) -> Result<(), StoreError> {
        let _gate = self.group.enter().await;
        let group = Arc::clone(&self.group);
        self.conns
            .with_writer(move |conn| {
                group.settle(conn)?;
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .context(|| "cannot start a write transaction".to_owned())?;
                log::trim(&tx, before)?;
                tx.commit()
                    .context(|| "cannot commit a write transaction".to_owned())
            })
            .await
    }
}

impl Backend for SqliteBackend {
    type Transaction = SqliteTransaction;

    async fn begin(&self) -> Result<SqliteTransaction, StoreError> {
        SqliteTransaction::begin(&self.conns, &self.group).await
    }

    async fn snapshot(
        &self,
        scope: &str,
        page: SnapshotPage<'_>,
    ) -> Result<SnapshotRead, StoreError> {
        let scope = scope.to_owned();
        let client_id = page.client_id.map(str::to_owned);
        let after = page
            .after
            .map(|(entity, id)| (entity.to_owned(), id.to_owned()));
        let limit = page.limit;
        self.conns
            .read(move |conn| {
                let client_seq = match &client_id {
                    Some(client_id) => entities::client_seq(conn, client_id)?,
                    None => None,
                };
                let after = after
                    .as_ref()
                    .map(|(entity, id)| (entity.as_str(), id.as_str()));
                Ok(SnapshotRead {
                    data: entities::scope(conn, &scope, after, limit)?,
                    head: log::head(conn)?,
                    client_seq,
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::backend::Transaction;
    use crate::{Engine, Mutation, MutatorFunc};

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
        let mutator = MutatorFunc::new(|tx, _| {
            Box::pin(async move {
                tx.put_value("e", "1", serde_json::json!({"a": 1})).await?;
                Ok(None)
            })
        });
        let engine = Engine::builder(mutator).backend(backend.clone()).build();
        let put = Mutation::new("put", serde_json::json!({})).with_scope("s");
        engine.push(vec![put]).await.unwrap();
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "UPDATE sync_changes SET data = '{oops', op = 'create';
                 UPDATE sync_entities SET data = 'not json';",
            )
            .unwrap();
        let error = backend
            .read("s", 0, 10, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("not valid JSON"), "{error}");
        let page = crate::backend::SnapshotPage::default();
        let error = backend.snapshot("s", page).await.unwrap_err().to_string();
        assert!(error.contains("not valid JSON"), "{error}");
    }

    /// Pulls write a change's stored text as it is, without parsing it into a value: a row that
    /// is not exactly one JSON value must fail the read as a store error, and never reach an
    /// answer as broken JSON. Valid text comes back as it was stored.
    #[tokio::test]
    async fn a_pull_checks_the_stored_text_it_passes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let backend = SqliteBackend::open(&path).unwrap();
        let mutator = MutatorFunc::new(|tx, _| {
            Box::pin(async move {
                tx.put_value("e", "1", serde_json::json!({"b": [1.5], "a": "x"}))
                    .await?;
                Ok(None)
            })
        });
        let engine = Engine::builder(mutator).backend(backend.clone()).build();
        let put = Mutation::new("put", serde_json::json!({})).with_scope("s");
        engine.push(vec![put]).await.unwrap();
        let pulled = engine.pull(crate::PullRequest::new("s", 0)).await.unwrap();
        let data = pulled.changes[0].data.as_ref().unwrap();
        assert_eq!(data.as_str(), r#"{"a":"x","b":[1.5]}"#);

        // Valid text that is not as the engine writes it goes out as it is: it is not parsed
        // and encoded again.
        let stored = r#"{"b": [1.5],  "a": "x"}"#;
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE sync_changes SET data = ?1", [stored])
            .unwrap();
        let pulled = engine.pull(crate::PullRequest::new("s", 0)).await.unwrap();
        let data = pulled.changes[0].data.as_ref().unwrap();
        assert_eq!(data.as_str(), stored);

        let corrupt = [
            "",
            "{\"a\":1} trailing",
            "{\"a\":",
            "[1,]",
            "1 2",
            "\"\\q\"",
        ];
        for text in corrupt {
            Connection::open(&path)
                .unwrap()
                .execute("UPDATE sync_changes SET data = ?1", [text])
                .unwrap();
            let error = backend.read("s", 0, 10, None).await.unwrap_err();
            assert!(
                error.to_string().contains("not valid JSON"),
                "{text:?}: {error}"
            );
            let pull = engine.pull(crate::PullRequest::new("s", 0)).await;
            assert!(
                matches!(pull, Err(crate::SyncError::Unavailable(_))),
                "{text:?}: {pull:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_dropped_transaction_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(dir.path().join("d.db")).unwrap();
        let tx = backend.begin().await.unwrap();
        drop(tx);
        let mut tx = backend.begin().await.unwrap();
        assert_eq!(tx.get("s", "e", "1").await.unwrap(), None);
        let committed = tx.commit(crate::backend::Commit::default()).await.unwrap();
        assert!(committed.changes.is_empty());
    }
}
