//! The change log: every committed change with its cursor, read back per scope.

use std::sync::Arc;

use async_trait::async_trait;

use crate::change::{Change, NewChange};
use crate::error::{StoreError, SyncError};

/// One page of a scope's changes, as a pull answers it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    /// The scope's changes after the requested cursor, ascending.
    pub changes: Vec<Arc<Change>>,
    /// The cursor to pull from next: the last change's, or where there is none, one that skips
    /// no change that could still appear.
    pub cursor: u64,
    /// Whether the scope holds further changes beyond this page.
    pub has_more: bool,
}

/// Stores changes and reads them back by scope and cursor.
///
/// Cursors are unique and increase in commit order: once a reader has seen cursor `c`, no change
/// at or below `c` can appear later.
#[async_trait]
pub trait ChangeLog: Send + Sync {
    /// Appends changes (one commit), giving each the next cursor; returns them as logged.
    async fn append(&self, changes: Vec<NewChange>) -> Result<Vec<Arc<Change>>, StoreError>;

    /// Up to `limit` changes of `scope` with a cursor above `cursor`, ascending.
    ///
    /// Fails with [`SyncError::CursorTooOld`] where a change of the scope above `cursor` was
    /// trimmed, and [`SyncError::CursorAhead`] where `cursor` is beyond the head.
    async fn since(&self, scope: &str, cursor: u64, limit: usize) -> Result<Page, SyncError>;

    /// The latest cursor assigned (0 when nothing was ever logged).
    async fn cursor(&self) -> Result<u64, StoreError>;

    /// The cursor of `scope`'s latest change (0 if it has none), as a live JOIN answers it.
    ///
    /// The default answers the log's head, which is never below it; backends that can answer
    /// exactly override it.
    async fn scope_cursor(&self, scope: &str) -> Result<u64, StoreError> {
        let _ = scope;
        self.cursor().await
    }

    /// Removes every change with a cursor below `before`.
    async fn trim(&self, before: u64) -> Result<(), StoreError>;

    /// Removes all but the `keep` most recent changes.
    async fn retain(&self, keep: usize) -> Result<(), StoreError>;
}
