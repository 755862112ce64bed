//! Backends: a [`Store`], a [`ChangeLog`] and the record of clients' sequence numbers, kept
//! consistent with one another by transactions.
//!
//! The engine runs each mutation in its own [`Transaction`]: the mutator reads and writes through
//! it, and [`Transaction::commit`] makes the writes, the changes (with their cursors) and the
//! client's sequence number visible together, or not at all. A transaction dropped without a
//! commit rolls back.

pub mod memory;

use std::sync::Arc;

use async_trait::async_trait;

use crate::change::{Change, NewChange};
use crate::changelog::ChangeLog;
use crate::error::StoreError;
use crate::store::{ScopeData, Store};

pub use memory::{MemoryBackend, MemoryChangeLog, MemoryStore};

/// Durable (or not) state behind an [`Engine`](crate::Engine).
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Starts a transaction for one mutation.
    ///
    /// Transactions that write are serialized with respect to each other, so that the dedupe
    /// check and the writes of one mutation see a state no concurrent mutation changes.
    async fn begin(&self) -> Result<Box<dyn Transaction>, StoreError>;

    /// The change log, for pulls, the head cursor and trimming.
    fn changelog(&self) -> &dyn ChangeLog;

    /// A scope's data together with the log's head, taken at one instant: the data is exactly the
    /// state after every change up to the cursor and none after it.
    async fn snapshot(&self, scope: &str) -> Result<(ScopeData, u64), StoreError>;
}

/// One mutation's transaction. Reads see the transaction's own writes.
#[async_trait]
pub trait Transaction: Store {
    /// The highest `client_seq` recorded for `client_id`.
    async fn last_client_seq(&self, client_id: &str) -> Result<Option<u64>, StoreError>;

    /// Undoes every write of this transaction so far, keeping it open (a permanent failure still
    /// commits its client's sequence number).
    async fn discard_writes(&self) -> Result<(), StoreError>;

    /// Commits the writes, appends `changes` to the log and records `client`'s sequence number,
    /// all at once.
    async fn commit(
        self: Box<Self>,
        changes: Vec<NewChange>,
        client: Option<(&str, u64)>,
    ) -> Result<Committed, StoreError>;
}

/// What a commit made visible.
#[derive(Clone, Debug, Default)]
pub struct Committed {
    /// The changes as logged, with cursors and timestamps.
    pub changes: Vec<Arc<Change>>,
    /// The last change's cursor, or the log's head where the commit made no change.
    pub cursor: u64,
}
