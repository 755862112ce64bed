//! Backends: where entities, the change log and clients' sequence numbers live.
//!
//! A backend supplies storage and nothing else. The rules every backend shares are written once,
//! above it: [`Tx`](crate::Tx) buffers a push's writes, undoes a failed mutation's, records each
//! write's change and stages clients' sequence numbers; the engine pages pulls, answers
//! `cursor_too_old` and `cursor_ahead`, and trims to the retention. What is left to a backend:
//!
//! - [`Store`]: committed entity data, read-only.
//! - [`ChangeLog`]: the committed change log, read by scope and cursor, and trimmed.
//! - [`Backend`]: both, plus [`begin`](Backend::begin) and a consistent
//!   [`snapshot`](Backend::snapshot).
//! - [`Transaction`]: one push's reads, and its [`commit`](Transaction::commit) of a whole
//!   [`Commit`]: the entity writes, the changes (to which it gives cursors, in commit order) and
//!   the clients' sequence numbers, all or nothing. No other write path exists.
//!
//! ```text
//! begin ── get / contains / list / client_seq ... ── commit(Commit) ── Committed
//!   └── dropped without commit: nothing happened
//! ```

mod any;
mod commit;
pub(crate) mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::changes::Changes;
use crate::error::StoreError;
use crate::protocol::ScopeData;

pub use any::{AnyBackend, AnyTransaction};
pub use commit::{Commit, CommitParts, Committed, Failure, NewChange, PendingOps, Write};
pub(crate) use commit::{Key, KeyRef};
pub use memory::{MemoryBackend, MemoryChangeLog, MemoryStore, MemoryTransaction};
#[cfg(feature = "postgres")]
pub use postgres::{
    PostgresBackend, PostgresCommitHook, PostgresOptions, PostgresTransaction, PostgresWaiting,
};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteBackend, SqliteOptions, SqliteTransaction};

/// A new log's identity: 32 random hexadecimal digits.
pub(crate) fn new_log_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Committed entity data: scope → entity type → id → JSON data, read-only.
///
/// The same entity and id in two scopes are two entities. Writes happen only through a
/// [`Transaction`]'s commit.
pub trait Store: Send + Sync + 'static {
    /// The entity's data, or `None` where it does not exist.
    fn get(
        &self,
        scope: &str,
        entity: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<Value>, StoreError>> + Send;

    /// Every entity of one type in a scope, by id (ordered by the ids' bytes).
    fn list(
        &self,
        scope: &str,
        entity: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, Value>, StoreError>> + Send;
}

/// The committed change log, read back by scope and cursor.
///
/// Cursors are unique and increase in commit order: once a reader has seen cursor `c`, no change
/// at or below `c` can appear later.
pub trait ChangeLog: Send + Sync + 'static {
    /// The log's identity: chosen at random when the log was created and kept for its lifetime
    /// (8 to 64 characters of `[A-Za-z0-9_-]`), the same on every node that shares it.
    fn log_id(&self) -> &str;

    /// One read of a scope's log, from one consistent state: the head, the scope's trim horizon,
    /// the scope's changes with a cursor above `after`, ascending, at least `limit` of them where
    /// that many remain (more are allowed; the engine keeps `limit`), and where `client_id` is
    /// given, that client's highest recorded `client_seq`.
    fn read(
        &self,
        scope: &str,
        after: u64,
        limit: usize,
        client_id: Option<&str>,
    ) -> impl Future<Output = Result<LogRead, StoreError>> + Send;

    /// The latest cursor assigned (0 when nothing was ever logged).
    fn head(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The cursor of `scope`'s latest change; where all were trimmed, the highest trimmed one;
    /// 0 where it has none.
    fn scope_cursor(&self, scope: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// [`scope_cursor`](ChangeLog::scope_cursor) of each scope, in order: what a live JOIN
    /// answers. Backends that can read them in one query override it.
    fn scope_cursors(
        &self,
        scopes: &[&str],
    ) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send {
        async move {
            let mut cursors = Vec::with_capacity(scopes.len());
            for scope in scopes {
                cursors.push(self.scope_cursor(scope).await?);
            }
            Ok(cursors)
        }
    }

    /// Removes every change with a cursor below `before`, raising each scope's horizon to the
    /// highest cursor it lost, and forgets the failures recorded at a cursor below `before`.
    fn trim(&self, before: u64) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What [`ChangeLog::read`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogRead {
    /// The log's head.
    pub head: u64,
    /// The highest cursor trimmed from the scope (0: nothing trimmed).
    pub horizon: u64,
    /// The scope's changes after the cursor asked for, ascending.
    pub changes: Changes,
    /// The highest `client_seq` recorded for the client asked about (`None`: none recorded, or
    /// no client asked about).
    pub client_seq: Option<u64>,
}

/// Which page of a scope's data [`Backend::snapshot`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPage<'a> {
    /// The client asking, to be told its highest recorded `client_seq`.
    pub client_id: Option<&'a str>,
    /// The `(entity, id)` the page starts after; `None`: from the first.
    pub after: Option<(&'a str, &'a str)>,
    /// Most entities in the page.
    pub limit: usize,
}

impl Default for SnapshotPage<'_> {
    /// The whole scope.
    fn default() -> Self {
        SnapshotPage {
            client_id: None,
            after: None,
            limit: usize::MAX,
        }
    }
}

/// What [`Backend::snapshot`] found, from one consistent state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SnapshotRead {
    /// The scope's data: exactly the state after every change up to `head` and none after it.
    pub data: ScopeData,
    /// The log's head.
    pub head: u64,
    /// As in [`LogRead::client_seq`].
    pub client_seq: Option<u64>,
}

/// Durable (or not) state behind an [`Engine`](crate::Engine): a [`Store`] and a [`ChangeLog`]
/// that [`Transaction`]s keep consistent with each other.
///
/// Implement it with `async fn`s:
///
/// ```ignore
/// impl Backend for MyBackend {
///     type Transaction = MyTransaction;
///     async fn begin(&self) -> Result<MyTransaction, StoreError> { ... }
///     async fn snapshot(&self, scope: &str, page: SnapshotPage<'_>) -> Result<SnapshotRead, StoreError> { ... }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a sync backend",
    note = "use `MemoryBackend`, `SqliteBackend`, `PostgresBackend` or `AnyBackend`, or implement `Store`, `ChangeLog` and `Backend`"
)]
pub trait Backend: Store + ChangeLog {
    /// One push's transaction.
    type Transaction: Transaction;

    /// Starts a transaction for one push.
    ///
    /// Transactions that write are serialized with respect to each other as far as their reads,
    /// dedupe checks and cursors are concerned: a push reads a state that no concurrent push
    /// changes, and cursors become visible in commit order.
    fn begin(&self) -> impl Future<Output = Result<Self::Transaction, StoreError>> + Send;

    /// One page of a scope's data (its entities ordered by `(entity, id)` in byte order, after
    /// `page.after`, at most `page.limit` of them) together with the log's head and, where
    /// `page.client_id` is given, that client's highest recorded `client_seq`, taken at one
    /// instant.
    fn snapshot(
        &self,
        scope: &str,
        page: SnapshotPage<'_>,
    ) -> impl Future<Output = Result<SnapshotRead, StoreError>> + Send;

    /// This backend behind a type-erased handle; an [`AnyBackend`] is returned as it is.
    #[doc(hidden)]
    fn into_any(self) -> AnyBackend
    where
        Self: Sized,
    {
        AnyBackend::wrap(self)
    }
}

/// One push's transaction as a backend supplies it: reads of the state the push started from,
/// and one commit of everything the push did. Dropped without a commit, it leaves nothing.
///
/// Its reads see committed data only: the push's own writes wait in [`Tx`](crate::Tx), which
/// lays them over these reads, until they arrive whole in [`commit`](Transaction::commit).
pub trait Transaction: Send + 'static {
    /// The next mutation works in `scope`, and is about to read. A backend that orders the pushes
    /// to a scope may queue for it here, before the mutation's first read takes a connection;
    /// the others ignore it.
    fn expect_scope(&mut self, scope: &str) {
        let _ = scope;
    }

    /// The entity's committed data.
    fn get(
        &mut self,
        scope: &str,
        entity: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<Value>, StoreError>> + Send;

    /// Whether the entity exists; backends that can answer without reading its data override it.
    fn contains(
        &mut self,
        scope: &str,
        entity: &str,
        id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move { Ok(self.get(scope, entity, id).await?.is_some()) }
    }

    /// Every committed entity of one type in a scope, by id.
    fn list(
        &mut self,
        scope: &str,
        entity: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, Value>, StoreError>> + Send;

    /// The highest `client_seq` recorded for `client_id`.
    fn client_seq(
        &mut self,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// How the mutation `client_seq` of `client_id` failed for good, where a commit recorded its
    /// failure and no trim has forgotten it since.
    fn failure(
        &mut self,
        client_id: &str,
        client_seq: u64,
    ) -> impl Future<Output = Result<Option<Failure>, StoreError>> + Send;

    /// Writes the commit's entities, records its clients' sequence numbers and failures (at the
    /// head before the commit), and appends its changes with the cursors after every earlier
    /// commit's, together or not at all.
    ///
    /// The changes in [`Commit::pending`] are logged with the op their writes decide: each such
    /// write ([`Write::existence_unknown`]) tells whether its entity existed before, which
    /// [`PendingOps::resolve`] turns into `update` or `create`.
    fn commit(self, commit: Commit) -> impl Future<Output = Result<Committed, StoreError>> + Send;
}
