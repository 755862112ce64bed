//! Backends: a [`Store`], a [`ChangeLog`] and the record of clients' sequence numbers, kept
//! consistent with one another by transactions.
//!
//! The engine runs each push in one [`Transaction`], and each of the push's mutations between
//! [`Transaction::begin_mutation`] and [`Transaction::finish_mutation`], the way a SQL backend
//! wraps each in a savepoint. [`Transaction::commit`] then makes the writes, the changes (with
//! their cursors) and the clients' sequence numbers visible together. A transaction dropped
//! without a commit rolls back.
//!
//! ```text
//! begin ─┬─ begin_mutation ─ reads/writes ─ finish_mutation(changes, client) ─┬─ commit
//!        │                          └─ rollback_mutation (a failed mutation)  │
//!        └──────────────────────── one round per mutation ───────────────────┘
//! ```

pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod write_set;

use std::sync::Arc;

use async_trait::async_trait;

use crate::change::{Change, NewChange};
use crate::changelog::ChangeLog;
use crate::error::StoreError;
use crate::store::{ScopeData, Store};

pub use memory::{MemoryBackend, MemoryChangeLog, MemoryStore};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresBackend, PostgresChangeLog, PostgresOptions};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteBackend, SqliteChangeLog, SqliteOptions};

/// Durable (or not) state behind an [`Engine`](crate::Engine).
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Starts a transaction for one push.
    ///
    /// Transactions that write are serialized with respect to each other as far as their dedupe
    /// checks, reads and cursors are concerned: a mutation sees a state that no concurrent
    /// mutation changes, and cursors become visible in commit order.
    async fn begin(&self) -> Result<Box<dyn Transaction>, StoreError>;

    /// The change log, for pulls, the head cursor and trimming.
    fn changelog(&self) -> &dyn ChangeLog;

    /// A scope's data together with the log's head, taken at one instant: the data is exactly the
    /// state after every change up to the cursor and none after it.
    async fn snapshot(&self, scope: &str) -> Result<(ScopeData, u64), StoreError>;
}

/// A shared backend is a backend: several engines (or an engine and a broker) can use one.
#[async_trait]
impl<B: Backend + ?Sized> Backend for Arc<B> {
    async fn begin(&self) -> Result<Box<dyn Transaction>, StoreError> {
        (**self).begin().await
    }

    fn changelog(&self) -> &dyn ChangeLog {
        (**self).changelog()
    }

    async fn snapshot(&self, scope: &str) -> Result<(ScopeData, u64), StoreError> {
        (**self).snapshot(scope).await
    }
}

/// One push's transaction, holding one or more mutations. Reads see the transaction's own
/// writes.
#[async_trait]
pub trait Transaction: Store {
    /// The highest `client_seq` recorded for `client_id`, counting the mutations this
    /// transaction has finished.
    async fn last_client_seq(&self, client_id: &str) -> Result<Option<u64>, StoreError>;

    /// Starts a mutation: [`rollback_mutation`](Transaction::rollback_mutation) returns here.
    async fn begin_mutation(&self) -> Result<(), StoreError>;

    /// Undoes every write since [`begin_mutation`](Transaction::begin_mutation); the mutation
    /// stays open (a permanent failure still finishes, to record its client's sequence number).
    async fn rollback_mutation(&self) -> Result<(), StoreError>;

    /// Ends the current mutation, staging its changes and recording `client`'s sequence number.
    async fn finish_mutation(
        &self,
        changes: Vec<NewChange>,
        client: Option<(&str, u64)>,
    ) -> Result<(), StoreError>;

    /// Commits every finished mutation, giving their changes cursors in commit order; returns
    /// one [`Committed`] per finished mutation, in order. Writes of a mutation that was begun but
    /// not finished are discarded.
    async fn commit(self: Box<Self>) -> Result<Vec<Committed>, StoreError>;
}

/// What a commit made visible of one mutation.
#[derive(Clone, Debug, Default)]
pub struct Committed {
    /// The changes as logged, with cursors and timestamps.
    pub changes: Vec<Arc<Change>>,
    /// The mutation's last change's cursor; where it made none, the latest cursor before it.
    pub cursor: u64,
}

/// Records a finished mutation's `(client_id, client_seq)` among a transaction's staged ones,
/// keeping each client's highest: what `last_client_seq` answers before the commit.
pub(crate) fn stage_client_seq(
    staged: &mut std::collections::HashMap<String, u64>,
    client: Option<(&str, u64)>,
) {
    if let Some((client_id, seq)) = client {
        let last = staged.entry(client_id.to_owned()).or_default();
        *last = (*last).max(seq);
    }
}
