//! The PostgreSQL backend: the same tables as SQLite, shared by several engine nodes.
//!
//! - **Cursors in commit order, across nodes.** A push's transaction locks the single row of
//!   `sync_head` (`SELECT … FOR UPDATE`) when it begins, and advances it when it commits. Writing
//!   transactions are thus serialized on every node, so each one reads a state no concurrent
//!   push changes, a retried mutation is deduplicated even when its duplicates arrive on two
//!   nodes at once, and the cursors a commit assigns are all above those of every earlier
//!   commit. A sequence alone would not do: a later cursor could commit first, and a puller that
//!   saw it would skip the earlier one for good.
//! - **Few round trips.** One transaction per push; each mutation writes inside a savepoint,
//!   taken at its first write and released together with the next one's (or by the commit);
//!   clients' sequence numbers and changes are written at commit, with one statement each.
//!   On each node an async gate lets one push at a time wait for the row lock, so waiting
//!   pushes do not hold pool connections that pulls need.
//! - **Consistent reads without locks.** A pull is one statement: the head, the scope's trim
//!   horizon and the page come from one snapshot. So is a snapshot.
//! - **Versioned schema.** Created on connect under an advisory lock (nodes may start at once),
//!   with its version in `sync_schema`, so that a later version of this crate can migrate it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::OwnedMutexGuard;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use super::sql::{op_name, parse_json, parse_op, retain_slack, timestamp, to_i64, to_json, to_u64};
use super::{Backend, Committed, Transaction};
use crate::change::{Change, NewChange};
use crate::changelog::{ChangeLog, Page};
use crate::error::{StoreError, SyncError};
use crate::store::{ScopeData, Store, Written};

/// The schema version this crate writes and reads (table `sync_schema`).
const SCHEMA_VERSION: i32 = 1;

/// Taken (`pg_advisory_xact_lock`) while the schema is created or checked, so that nodes that
/// start at once do not race.
const SCHEMA_LOCK: i64 = 0x7379_6e63_5f73_6368; // "sync_sch"

/// Version 1. Text columns that are compared or ordered use the "C" collation, so that ids are
/// ordered by their bytes as in the other backends, whatever the database's locale.
const SCHEMA_V1: &str = r#"
CREATE TABLE sync_schema (version INTEGER NOT NULL);
INSERT INTO sync_schema (version) VALUES (1);
CREATE TABLE sync_entities (
    scope  TEXT COLLATE "C" NOT NULL,
    entity TEXT COLLATE "C" NOT NULL,
    id     TEXT COLLATE "C" NOT NULL,
    data   TEXT NOT NULL,
    PRIMARY KEY (scope, entity, id)
);
CREATE TABLE sync_changes (
    cursor BIGINT PRIMARY KEY,
    scope  TEXT COLLATE "C" NOT NULL,
    entity TEXT NOT NULL,
    id     TEXT NOT NULL,
    op     TEXT NOT NULL,
    data   TEXT,
    ts     BIGINT NOT NULL
);
CREATE INDEX sync_changes_scope_cursor ON sync_changes (scope, cursor);
CREATE TABLE sync_horizons (
    scope   TEXT COLLATE "C" PRIMARY KEY,
    horizon BIGINT NOT NULL
);
CREATE TABLE sync_clients (
    client_id TEXT COLLATE "C" PRIMARY KEY,
    seq       BIGINT NOT NULL
);
CREATE TABLE sync_head (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    cursor BIGINT NOT NULL
);
INSERT INTO sync_head (id, cursor) VALUES (1, 0);
"#;

/// How a [`PostgresBackend`] connects.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Most connections this node opens (default 16).
    pub pool_size: usize,
    /// How long a request waits for a free connection, or for a new one to open, before it
    /// fails with 503 (default 30 s).
    pub timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 16,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A durable backend in a PostgreSQL database, which several engine nodes may share: cursors
/// become visible in commit order and duplicates apply once across all of them.
///
/// ```no_run
/// use sync_runtime::{Engine, MutatorFunc, PostgresBackend};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Creates the tables on first use; every node connects to the same database.
/// let backend = PostgresBackend::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// let mutator = MutatorFunc::new(|tx, m| Box::pin(async move {
///     tx.put_value("note", "n1", m.args.clone()).await?;
///     Ok(vec![])
/// }));
/// let engine = Engine::builder().mutator(mutator).backend(backend).build();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresBackend {
    log: PostgresChangeLog,
}

/// The change log of a [`PostgresBackend`], as [`Backend::changelog`] returns it.
#[derive(Clone)]
pub struct PostgresChangeLog {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// One push per node waits for the database's writer lock; the others wait here.
    gate: Arc<tokio::sync::Mutex<()>>,
    /// The database, for messages (without the password).
    target: String,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("target", &self.log.inner.target)
            .finish_non_exhaustive()
    }
}

/// Adds what failed to a PostgreSQL error.
trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, tokio_postgres::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|error| pg_error(what(), error))
    }
}

/// A PostgreSQL error as a [`StoreError`]: text PostgreSQL cannot hold (a NUL character) is
/// invalid input, which no retry stores; the rest is a failure of the store.
fn pg_error(what: String, error: tokio_postgres::Error) -> StoreError {
    use tokio_postgres::error::SqlState;
    let unstorable = error.code().is_some_and(|code| {
        *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
            || *code == SqlState::UNTRANSLATABLE_CHARACTER
    });
    if unstorable {
        let cause = error
            .as_db_error()
            .map_or_else(|| error.to_string(), |db| db.message().to_owned());
        return StoreError::invalid_input(format!("PostgreSQL: {what}: {cause}"));
    }
    StoreError::with_source(format!("PostgreSQL: {what}"), error)
}

impl PostgresBackend {
    /// Connects to the database at `url` (`postgres://user:password@host:port/dbname`, or
    /// `key=value` pairs) with the default [`PostgresOptions`], and creates or checks the
    /// schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects with `options`.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|error| {
            StoreError::with_source("PostgreSQL: the connection URL is invalid", error)
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.timeout);
        }
        let target = describe(&config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.timeout))
            .build()
            .map_err(|error| {
                StoreError::with_source(
                    format!("PostgreSQL: cannot set up a pool for {target}"),
                    error,
                )
            })?;
        let inner = Arc::new(Inner {
            pool,
            gate: Arc::new(tokio::sync::Mutex::new(())),
            target,
        });
        inner.migrate().await?;
        Ok(PostgresBackend {
            log: PostgresChangeLog { inner },
        })
    }
}

/// `user@host:port/dbname`, for messages.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

impl Inner {
    async fn connection(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|error| {
            StoreError::with_source(
                format!("PostgreSQL: cannot connect to {}", self.target),
                error,
            )
        })
    }

    /// Creates the schema in a new database, or checks the version of an existing one. Later
    /// versions add their steps here, from the recorded version up.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let target = &self.target;
        let tx = client
            .transaction()
            .await
            .context(|| format!("cannot start the schema check on {target}"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .context(|| format!("cannot lock the schema of {target}"))?;
        let exists: bool = tx
            .query_one("SELECT to_regclass('sync_schema') IS NOT NULL", &[])
            .await
            .and_then(|row| row.try_get(0))
            .context(|| format!("cannot look for the sync tables in {target}"))?;
        if exists {
            let version: i32 = tx
                .query_one("SELECT max(version) FROM sync_schema", &[])
                .await
                .and_then(|row| row.try_get::<_, Option<i32>>(0))
                .context(|| format!("cannot read the schema version of {target}"))?
                .unwrap_or(0);
            if version > SCHEMA_VERSION {
                return Err(StoreError::new(format!(
                    "PostgreSQL: {target} has schema version {version}, newer than the \
                     {SCHEMA_VERSION} this version of sync-runtime knows: upgrade sync-runtime"
                )));
            }
            if version < 1 {
                return Err(StoreError::new(format!(
                    "PostgreSQL: {target} has a sync_schema table without a version; \
                     it is not a sync database"
                )));
            }
        } else {
            tx.batch_execute(SCHEMA_V1)
                .await
                .context(|| format!("cannot create the sync tables in {target}"))?;
        }
        tx.commit()
            .await
            .context(|| format!("cannot commit the schema of {target}"))
    }
}

/// A page of a scope's changes, its head and its horizon read by one statement, so from one
/// snapshot.
const SINCE: &str = "
SELECT h.cursor, (SELECT horizon FROM sync_horizons WHERE scope = $1),
       c.cursor, c.entity, c.id, c.op, c.data, c.ts
FROM sync_head h
LEFT JOIN LATERAL (
    SELECT cursor, entity, id, op, data, ts FROM sync_changes
    WHERE scope = $1 AND cursor > $2 ORDER BY cursor LIMIT $3
) c ON true
WHERE h.id = 1
ORDER BY c.cursor";

fn row_error(error: tokio_postgres::Error) -> StoreError {
    StoreError::with_source("PostgreSQL: cannot read a row", error)
}

#[async_trait]
impl ChangeLog for PostgresChangeLog {
    async fn append(&self, changes: Vec<NewChange>) -> Result<Vec<Arc<Change>>, StoreError> {
        let mut tx = PgTransaction::begin(&self.inner).await?;
        tx.state.get_mut().finished.push(changes);
        let committed = Box::new(tx).commit().await?;
        Ok(committed.into_iter().flat_map(|c| c.changes).collect())
    }

    async fn since(&self, scope: &str, cursor: u64, limit: usize) -> Result<Page, SyncError> {
        let client = self.inner.connection().await?;
        let fetch = i64::try_from(limit)
            .unwrap_or(i64::MAX - 1)
            .saturating_add(1);
        // A cursor beyond i64 is beyond the head too; the head decides below.
        let from = i64::try_from(cursor).unwrap_or(i64::MAX);
        let stmt = client
            .prepare_cached(SINCE)
            .await
            .context(|| "cannot prepare the pull query".to_owned())?;
        let rows = client
            .query(&stmt, &[&scope, &from, &fetch])
            .await
            .context(|| format!("cannot read the changes of scope `{scope}`"))?;
        let Some(first) = rows.first() else {
            return Err(StoreError::new("PostgreSQL: the sync_head row is missing").into());
        };
        let head = to_u64(first.try_get(0).map_err(row_error)?, "head cursor")?;
        if cursor > head {
            return Err(SyncError::CursorAhead { cursor, head });
        }
        let horizon: Option<i64> = first.try_get(1).map_err(row_error)?;
        if let Some(horizon) = horizon.map(|h| to_u64(h, "horizon")).transpose()?
            && horizon > cursor
        {
            return Err(SyncError::CursorTooOld {
                scope: scope.to_owned(),
                cursor,
                horizon,
            });
        }
        let mut changes = Vec::with_capacity(rows.len().min(limit));
        let mut has_more = false;
        for row in &rows {
            let Some(at) = row.try_get::<_, Option<i64>>(2).map_err(row_error)? else {
                continue; // the scope has no change after the cursor
            };
            if changes.len() == limit {
                has_more = true;
                break;
            }
            let at = to_u64(at, "cursor")?;
            let op: String = row.try_get(5).map_err(row_error)?;
            let data: Option<String> = row.try_get(6).map_err(row_error)?;
            changes.push(Arc::new(Change {
                cursor: at,
                scope: scope.to_owned(),
                entity: row.try_get(3).map_err(row_error)?,
                id: row.try_get(4).map_err(row_error)?,
                op: parse_op(&op)?,
                data: data
                    .map(|text| parse_json(&text, format_args!("data of change {at}")))
                    .transpose()?,
                timestamp: timestamp(row.try_get(7).map_err(row_error)?)?,
            }));
        }
        // Cursors are assigned in commit order, so the head read in this snapshot skips nothing.
        let next = changes.last().map_or(head, |change| change.cursor);
        Ok(Page {
            changes: changes.into(),
            cursor: next,
            has_more,
        })
    }

    async fn cursor(&self) -> Result<u64, StoreError> {
        let client = self.inner.connection().await?;
        let head: i64 = client
            .query_one("SELECT cursor FROM sync_head WHERE id = 1", &[])
            .await
            .and_then(|row| row.try_get(0))
            .context(|| "cannot read the change log's head".to_owned())?;
        to_u64(head, "head cursor")
    }

    async fn scope_cursor(&self, scope: &str) -> Result<u64, StoreError> {
        let client = self.inner.connection().await?;
        // The scope's latest change; where all were trimmed, the last one trimmed.
        let cursor: i64 = client
            .query_one(
                "SELECT coalesce((SELECT max(cursor) FROM sync_changes WHERE scope = $1),
                                 (SELECT horizon FROM sync_horizons WHERE scope = $1), 0)",
                &[&scope],
            )
            .await
            .and_then(|row| row.try_get(0))
            .context(|| format!("cannot read the latest cursor of scope `{scope}`"))?;
        to_u64(cursor, "cursor")
    }

    async fn trim(&self, before: u64) -> Result<(), StoreError> {
        let client = self.inner.connection().await?;
        let before = i64::try_from(before).unwrap_or(i64::MAX);
        // One statement: the horizons move with the deletion, atomically.
        client
            .execute(
                "WITH gone AS (DELETE FROM sync_changes WHERE cursor < $1 RETURNING scope, cursor)
                 INSERT INTO sync_horizons (scope, horizon)
                 SELECT scope, max(cursor) FROM gone GROUP BY scope
                 ON CONFLICT (scope) DO UPDATE
                 SET horizon = GREATEST(sync_horizons.horizon, EXCLUDED.horizon)",
                &[&before],
            )
            .await
            .context(|| format!("cannot trim the change log before cursor {before}"))?;
        Ok(())
    }

    async fn retain(&self, keep: usize) -> Result<(), StoreError> {
        let keep = to_i64(keep as u64, "retention")?;
        let client = self.inner.connection().await?;
        let row = client
            .query_one(
                "SELECT h.cursor, (SELECT min(cursor) FROM sync_changes) FROM sync_head h WHERE id = 1",
                &[],
            )
            .await
            .context(|| "cannot read the change log's extent".to_owned())?;
        let head: i64 = row.try_get(0).map_err(row_error)?;
        let oldest: Option<i64> = row.try_get(1).map_err(row_error)?;
        // Cursors have no gaps, so this is the count of retained changes. Amortized: trim only
        // once the log exceeds `keep` by a tenth, then back to `keep`.
        let retained = |oldest: i64| head - oldest + 1;
        if oldest.is_none_or(|oldest| retained(oldest) <= keep + retain_slack(keep)) {
            return Ok(());
        }
        let newest_gone: Option<i64> = client
            .query_opt(
                "SELECT cursor FROM sync_changes ORDER BY cursor DESC OFFSET $1 LIMIT 1",
                &[&keep],
            )
            .await
            .and_then(|row| row.map(|row| row.try_get(0)).transpose())
            .context(|| "cannot find where to trim the change log".to_owned())?;
        drop(client);
        match newest_gone {
            Some(cursor) => self.trim(to_u64(cursor, "cursor")? + 1).await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    async fn begin(&self) -> Result<Box<dyn Transaction>, StoreError> {
        Ok(Box::new(PgTransaction::begin(&self.log.inner).await?))
    }

    fn changelog(&self) -> &dyn ChangeLog {
        &self.log
    }

    async fn snapshot(&self, scope: &str) -> Result<(ScopeData, u64), StoreError> {
        let client = self.log.inner.connection().await?;
        // One statement, one snapshot: the data is exactly the state at the head it returns.
        let stmt = client
            .prepare_cached(
                "SELECT h.cursor, e.entity, e.id, e.data FROM sync_head h
                 LEFT JOIN sync_entities e ON e.scope = $1 WHERE h.id = 1",
            )
            .await
            .context(|| "cannot prepare the snapshot query".to_owned())?;
        let rows = client
            .query(&stmt, &[&scope])
            .await
            .context(|| format!("cannot read the data of scope `{scope}`"))?;
        let mut head = None;
        let mut data = ScopeData::new();
        for row in &rows {
            head = Some(row.try_get::<_, i64>(0).map_err(row_error)?);
            let Some(entity) = row.try_get::<_, Option<String>>(1).map_err(row_error)? else {
                continue;
            };
            let id: String = row.try_get(2).map_err(row_error)?;
            let text: String = row.try_get(3).map_err(row_error)?;
            let value = parse_json(&text, format_args!("{entity} `{id}`"))?;
            data.entry(entity).or_default().insert(id, value);
        }
        let head =
            head.ok_or_else(|| StoreError::new("PostgreSQL: the sync_head row is missing"))?;
        Ok((data, to_u64(head, "head cursor")?))
    }
}

/// One push's transaction on a pooled connection.
struct PgTransaction {
    /// `None` once committed or rolled back; `drop` rolls back a transaction still holding it.
    client: Option<Object>,
    gate: Option<OwnedMutexGuard<()>>,
    state: Mutex<TxState>,
}

#[derive(Default)]
struct TxState {
    /// A mutation is open (between `begin_mutation` and `finish_mutation`).
    in_mutation: bool,
    savepoint: Savepoint,
    /// Finished mutations' changes, one list per mutation.
    finished: Vec<Vec<NewChange>>,
    /// Sequence numbers recorded by finished mutations, written at commit.
    client_seqs: HashMap<String, u64>,
    /// A statement failed outside a savepoint: the transaction can only roll back.
    poisoned: bool,
}

/// The savepoint `mutation`, taken at a mutation's first statement. A finished mutation's
/// savepoint is released together with the next one's start (or by the commit).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Savepoint {
    #[default]
    None,
    /// The open mutation's.
    Current,
    /// A finished mutation's, not yet released.
    Finished,
}

impl PgTransaction {
    async fn begin(inner: &Arc<Inner>) -> Result<Self, StoreError> {
        let gate = Arc::clone(&inner.gate).lock_owned().await;
        let client = inner.connection().await?;
        let tx = PgTransaction {
            client: Some(client),
            gate: Some(gate),
            state: Mutex::new(TxState::default()),
        };
        // The head row's lock serializes writing transactions across every node until commit.
        tx.client()?
            .batch_execute("BEGIN; SELECT cursor FROM sync_head WHERE id = 1 FOR UPDATE;")
            .await
            .context(|| "cannot start a push's transaction".to_owned())?;
        Ok(tx)
    }

    fn client(&self) -> Result<&Object, StoreError> {
        self.client
            .as_ref()
            .ok_or_else(|| StoreError::new("PostgreSQL: the transaction has ended"))
    }

    /// Runs one statement of the open mutation, first taking its savepoint (pipelined with the
    /// statement: one round trip) if it has none.
    async fn run<T>(
        &self,
        what: impl FnOnce() -> String,
        statement: impl AsyncFnOnce(&Object) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        let client = self.client()?;
        let prefix = {
            let state = self.state.lock();
            if state.poisoned {
                return Err(StoreError::new(
                    "PostgreSQL: an earlier statement of this push failed; it is rolled back",
                ));
            }
            match state.savepoint {
                _ if !state.in_mutation => None,
                Savepoint::Current => None,
                Savepoint::None => Some("SAVEPOINT mutation"),
                Savepoint::Finished => Some("RELEASE SAVEPOINT mutation; SAVEPOINT mutation"),
            }
        };
        let result = match prefix {
            Some(prefix) => {
                let (started, result) =
                    futures::join!(client.batch_execute(prefix), statement(client));
                match started {
                    Ok(()) => self.state.lock().savepoint = Savepoint::Current,
                    Err(error) => {
                        self.state.lock().poisoned = true;
                        return Err(StoreError::with_source(
                            "PostgreSQL: cannot start a mutation's savepoint",
                            error,
                        ));
                    }
                }
                result
            }
            None => statement(client).await,
        };
        match result {
            Ok(value) => Ok(value),
            Err(error) => {
                let mut state = self.state.lock();
                if !(state.in_mutation && state.savepoint == Savepoint::Current) {
                    // Outside a savepoint a failed statement aborts the whole transaction.
                    state.poisoned = true;
                }
                Err(pg_error(what(), error))
            }
        }
    }

    /// Gives the connection back: to the pool after a rollback, or closed where even that
    /// failed.
    async fn rollback(client: Object) {
        if let Err(error) = client.batch_execute("ROLLBACK").await {
            tracing::warn!(%error, "could not roll back a PostgreSQL transaction; closing its connection");
            drop(Object::take(client));
        }
    }
}

impl Drop for PgTransaction {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let gate = self.gate.take();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    PgTransaction::rollback(client).await;
                    drop(gate);
                });
            }
            // Without a runtime, closing the connection makes the server roll back.
            Err(_) => drop(Object::take(client)),
        }
    }
}

#[async_trait]
impl Store for PgTransaction {
    async fn get(&self, scope: &str, entity: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let text: Option<String> = self
            .run(
                || format!("cannot read {entity} `{id}` in scope `{scope}`"),
                async |client: &Object| {
                    let stmt = client
                        .prepare_cached(
                            "SELECT data FROM sync_entities WHERE scope = $1 AND entity = $2 AND id = $3",
                        )
                        .await?;
                    let row = client.query_opt(&stmt, &[&scope, &entity, &id]).await?;
                    row.map(|row| row.try_get(0)).transpose()
                },
            )
            .await?;
        text.map(|text| parse_json(&text, format_args!("{entity} `{id}`")))
            .transpose()
    }

    async fn set(
        &self,
        scope: &str,
        entity: &str,
        id: &str,
        data: Value,
    ) -> Result<Written, StoreError> {
        let text = to_json(&data)?;
        // `xmax = 0` holds for a freshly inserted row, not for one the upsert updated.
        let inserted: bool = self
            .run(
                || format!("cannot write {entity} `{id}` in scope `{scope}`"),
                async |client: &Object| {
                    let stmt = client
                        .prepare_cached(
                            "INSERT INTO sync_entities (scope, entity, id, data) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (scope, entity, id) DO UPDATE SET data = EXCLUDED.data
                             RETURNING (xmax = 0)",
                        )
                        .await?;
                    client
                        .query_one(&stmt, &[&scope, &entity, &id, &text])
                        .await?
                        .try_get(0)
                },
            )
            .await?;
        Ok(if inserted {
            Written::Created
        } else {
            Written::Updated
        })
    }

    async fn delete(&self, scope: &str, entity: &str, id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .run(
                || format!("cannot delete {entity} `{id}` in scope `{scope}`"),
                async |client: &Object| {
                    let stmt = client
                        .prepare_cached(
                            "DELETE FROM sync_entities WHERE scope = $1 AND entity = $2 AND id = $3",
                        )
                        .await?;
                    client.execute(&stmt, &[&scope, &entity, &id]).await
                },
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn list(&self, scope: &str, entity: &str) -> Result<Vec<Value>, StoreError> {
        let rows = self
            .run(
                || format!("cannot list {entity} in scope `{scope}`"),
                async |client: &Object| {
                    let stmt = client
                        .prepare_cached(
                            "SELECT id, data FROM sync_entities WHERE scope = $1 AND entity = $2 ORDER BY id",
                        )
                        .await?;
                    client.query(&stmt, &[&scope, &entity]).await
                },
            )
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0).map_err(row_error)?;
                let text: String = row.try_get(1).map_err(row_error)?;
                parse_json(&text, format_args!("{entity} `{id}`"))
            })
            .collect()
    }

    async fn snapshot(&self, scope: &str) -> Result<ScopeData, StoreError> {
        let rows = self
            .run(
                || format!("cannot read the data of scope `{scope}`"),
                async |client: &Object| {
                    client
                        .query(
                            "SELECT entity, id, data FROM sync_entities WHERE scope = $1",
                            &[&scope],
                        )
                        .await
                },
            )
            .await?;
        let mut data = ScopeData::new();
        for row in &rows {
            let entity: String = row.try_get(0).map_err(row_error)?;
            let id: String = row.try_get(1).map_err(row_error)?;
            let text: String = row.try_get(2).map_err(row_error)?;
            let value = parse_json(&text, format_args!("{entity} `{id}`"))?;
            data.entry(entity).or_default().insert(id, value);
        }
        Ok(data)
    }
}

#[async_trait]
impl Transaction for PgTransaction {
    async fn last_client_seq(&self, client_id: &str) -> Result<Option<u64>, StoreError> {
        let staged = self.state.lock().client_seqs.get(client_id).copied();
        if staged.is_some() {
            // Recorded by this transaction above the stored one, which it read first.
            return Ok(staged);
        }
        let stored: Option<i64> = self
            .run(
                || format!("cannot read the last client_seq of `{client_id}`"),
                async |client: &Object| {
                    let stmt = client
                        .prepare_cached("SELECT seq FROM sync_clients WHERE client_id = $1")
                        .await?;
                    let row = client.query_opt(&stmt, &[&client_id]).await?;
                    row.map(|row| row.try_get(0)).transpose()
                },
            )
            .await?;
        let stored = stored.map(|seq| to_u64(seq, "client_seq")).transpose()?;
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
        Ok(())
    }

    async fn rollback_mutation(&self) -> Result<(), StoreError> {
        if self.state.lock().savepoint != Savepoint::Current {
            return Ok(()); // the mutation ran no statement
        }
        let result = self
            .client()?
            .batch_execute("ROLLBACK TO SAVEPOINT mutation")
            .await;
        let mut state = self.state.lock();
        match result {
            Ok(()) => {
                // The savepoint stays open, now empty: released with the next one.
                state.savepoint = Savepoint::Finished;
                Ok(())
            }
            Err(error) => {
                state.poisoned = true;
                Err(StoreError::with_source(
                    "PostgreSQL: cannot roll back a failed mutation",
                    error,
                ))
            }
        }
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
        state.finished.push(changes);
        super::stage_client_seq(&mut state.client_seqs, client);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<Vec<Committed>, StoreError> {
        let state = std::mem::take(&mut *self.state.lock());
        if state.poisoned {
            // `drop` rolls back.
            return Err(StoreError::new(
                "PostgreSQL: the push's transaction was rolled back after a failed statement",
            ));
        }
        let result = commit_on(self.client()?, state).await;
        let Some(client) = self.client.take() else {
            return Err(StoreError::new("PostgreSQL: the transaction has ended"));
        };
        if result.is_err() {
            PgTransaction::rollback(client).await;
        } else {
            drop(client);
        }
        drop(self.gate.take());
        result
    }
}

/// Writes the clients' sequence numbers and the changes, advancing the head, then commits.
async fn commit_on(client: &Object, state: TxState) -> Result<Vec<Committed>, StoreError> {
    if state.in_mutation && state.savepoint == Savepoint::Current {
        // A mutation that was begun but not finished leaves nothing behind.
        client
            .batch_execute("ROLLBACK TO SAVEPOINT mutation")
            .await
            .context(|| "cannot discard an unfinished mutation".to_owned())?;
    }
    if !state.client_seqs.is_empty() {
        let mut ids = Vec::with_capacity(state.client_seqs.len());
        let mut seqs = Vec::with_capacity(state.client_seqs.len());
        for (id, seq) in state.client_seqs {
            seqs.push(to_i64(seq, "client_seq")?);
            ids.push(id);
        }
        let stmt = client
            .prepare_cached(
                "INSERT INTO sync_clients (client_id, seq)
                 SELECT * FROM unnest($1::text[], $2::bigint[])
                 ON CONFLICT (client_id) DO UPDATE SET seq = GREATEST(sync_clients.seq, EXCLUDED.seq)",
            )
            .await
            .context(|| "cannot prepare the client_seq record".to_owned())?;
        client
            .execute(&stmt, &[&ids, &seqs])
            .await
            .context(|| "cannot record the clients' sequence numbers".to_owned())?;
    }
    let count: usize = state.finished.iter().map(Vec::len).sum();
    let now = Utc::now();
    let head: i64 = if count == 0 {
        client
            .query_one("SELECT cursor FROM sync_head WHERE id = 1", &[])
            .await
            .and_then(|row| row.try_get(0))
            .context(|| "cannot read the change log's head".to_owned())?
    } else {
        let mut scopes = Vec::with_capacity(count);
        let mut entities = Vec::with_capacity(count);
        let mut ids = Vec::with_capacity(count);
        let mut ops = Vec::with_capacity(count);
        let mut datas = Vec::with_capacity(count);
        for change in state.finished.iter().flatten() {
            scopes.push(change.scope.as_str());
            entities.push(change.entity.as_str());
            ids.push(change.id.as_str());
            ops.push(op_name(change.op));
            datas.push(change.data.as_ref().map(to_json).transpose()?);
        }
        let count = to_i64(count as u64, "change count")?;
        let ts = now.timestamp_micros();
        let params: [&(dyn ToSql + Sync); 7] =
            [&count, &scopes, &entities, &ids, &ops, &datas, &ts];
        // The head row is locked by this transaction since `begin`: the cursors follow every
        // committed one, in commit order.
        let stmt = client
            .prepare_cached(
                "WITH h AS (UPDATE sync_head SET cursor = cursor + $1 WHERE id = 1 RETURNING cursor),
                 ins AS (
                     INSERT INTO sync_changes (cursor, scope, entity, id, op, data, ts)
                     SELECT h.cursor - $1 + c.ord, c.scope, c.entity, c.id, c.op, c.data, $7
                     FROM h, unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                          WITH ORDINALITY AS c(scope, entity, id, op, data, ord)
                 )
                 SELECT cursor FROM h",
            )
            .await
            .context(|| "cannot prepare the change log append".to_owned())?;
        client
            .query_one(&stmt, &params)
            .await
            .and_then(|row| row.try_get(0))
            .context(|| "cannot append the push's changes to the log".to_owned())?
    };
    client
        .batch_execute("COMMIT")
        .await
        .context(|| "cannot commit a push".to_owned())?;
    let head = to_u64(head, "head cursor")?;
    let mut cursor = head.saturating_sub(state.finished.iter().map(Vec::len).sum::<usize>() as u64);
    let committed = state
        .finished
        .into_iter()
        .map(|changes| {
            let changes = changes
                .into_iter()
                .map(|change| {
                    cursor += 1;
                    Arc::new(change.into_change(cursor, now))
                })
                .collect();
            Committed { changes, cursor }
        })
        .collect();
    Ok(committed)
}
