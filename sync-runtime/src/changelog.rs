//! The change log: every committed change with its cursor, read back per scope.

use std::fmt;
use std::ops::{Index, Range};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::change::{Change, NewChange};
use crate::error::{StoreError, SyncError};

/// One page of a scope's changes, as a pull answers it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    /// The scope's changes after the requested cursor, ascending.
    pub changes: Changes,
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

/// A block of changes that a log shares with the pages that read it.
pub type ChangeBlock = Arc<[Arc<Change>]>;

/// A page's changes, in order: slices of blocks of changes that a log may share with its
/// pages.
///
/// The memory log keeps each scope's history in blocks of `Arc<Change>`s: a page of old changes
/// is then one reference count per block rather than one per change, which matters when the
/// changes lie scattered in a large heap. It reads like a slice:
///
/// ```
/// use std::sync::Arc;
/// use sync_runtime::{Change, ChangeOp, Changes};
///
/// let change = |cursor| Arc::new(Change {
///     cursor,
///     scope: "_default".into(),
///     entity: "todo".into(),
///     id: cursor.to_string(),
///     op: ChangeOp::Delete,
///     data: None,
///     timestamp: chrono::Utc::now(),
/// });
/// let changes = Changes::from(vec![change(1), change(2)]);
/// assert_eq!(changes.len(), 2);
/// assert_eq!(changes[1].cursor, 2);
/// assert_eq!(changes.iter().map(|c| c.cursor).collect::<Vec<_>>(), [1, 2]);
/// ```
#[derive(Clone, Default)]
pub struct Changes {
    blocks: Vec<(ChangeBlock, Range<usize>)>,
    len: usize,
}

impl Changes {
    /// No changes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `range` of `block`, sharing it (the range is clamped to the block).
    pub fn push_block(&mut self, block: &ChangeBlock, range: Range<usize>) {
        let range = range.start.min(block.len())..range.end.min(block.len());
        if range.is_empty() {
            return;
        }
        self.len += range.len();
        self.blocks.push((Arc::clone(block), range));
    }

    /// How many changes there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The changes in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Arc<Change>> + '_ {
        self.blocks
            .iter()
            .flat_map(|(block, range)| block.get(range.clone()).unwrap_or_default())
    }

    /// The change at `index`.
    pub fn get(&self, index: usize) -> Option<&Arc<Change>> {
        let mut index = index;
        for (block, range) in &self.blocks {
            if index < range.len() {
                return block.get(range.start + index);
            }
            index -= range.len();
        }
        None
    }

    /// The first change.
    pub fn first(&self) -> Option<&Arc<Change>> {
        self.iter().next()
    }

    /// The last change.
    pub fn last(&self) -> Option<&Arc<Change>> {
        self.iter().next_back()
    }

    /// The changes as a vector of their own.
    pub fn to_vec(&self) -> Vec<Arc<Change>> {
        self.iter().cloned().collect()
    }
}

impl From<Vec<Arc<Change>>> for Changes {
    fn from(changes: Vec<Arc<Change>>) -> Self {
        let block: ChangeBlock = changes.into();
        let mut page = Changes::new();
        page.push_block(&block, 0..block.len());
        page
    }
}

impl FromIterator<Arc<Change>> for Changes {
    fn from_iter<I: IntoIterator<Item = Arc<Change>>>(changes: I) -> Self {
        Changes::from(changes.into_iter().collect::<Vec<_>>())
    }
}

impl Index<usize> for Changes {
    type Output = Arc<Change>;

    /// The change at `index`; panics where there is none, as a slice does.
    fn index(&self, index: usize) -> &Arc<Change> {
        match self.get(index) {
            Some(change) => change,
            None => panic!("index {index} is out of range for {} changes", self.len),
        }
    }
}

impl<'a> IntoIterator for &'a Changes {
    type Item = &'a Arc<Change>;
    type IntoIter = Box<dyn DoubleEndedIterator<Item = &'a Arc<Change>> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl IntoIterator for Changes {
    type Item = Arc<Change>;
    type IntoIter = std::vec::IntoIter<Arc<Change>>;

    fn into_iter(self) -> Self::IntoIter {
        self.to_vec().into_iter()
    }
}

impl PartialEq for Changes {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl fmt::Debug for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A JSON array of changes.
impl Serialize for Changes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Changes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Arc<Change>>::deserialize(deserializer).map(Changes::from)
    }
}
