//! A page's changes: what a pull answers.

use std::fmt;
use std::ops::{Index, Range};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::change::Change;

/// A block of changes that a log shares with the pages that read it.
pub(crate) type ChangeBlock = Arc<[Arc<Change>]>;

/// A page's changes, in order; reads like a slice and serializes as a JSON array.
///
/// A log may share them with its pages: the memory log keeps each scope's history in blocks,
/// and a page of old changes is then one reference count per block rather than one per change,
/// which matters when the changes lie scattered in a large heap.
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
    pub(crate) fn push_block(&mut self, block: &ChangeBlock, range: Range<usize>) {
        let range = range.start.min(block.len())..range.end.min(block.len());
        if range.is_empty() {
            return;
        }
        self.len += range.len();
        self.blocks.push((Arc::clone(block), range));
    }

    /// Keeps the first `len` changes.
    pub(crate) fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let mut left = len;
        self.blocks.retain_mut(|(_, range)| {
            let kept = range.len().min(left);
            range.end = range.start + kept;
            left -= kept;
            kept > 0
        });
        self.len = len;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::ChangeOp;

    fn block(cursors: std::ops::RangeInclusive<u64>) -> ChangeBlock {
        cursors
            .map(|cursor| {
                Arc::new(Change {
                    cursor,
                    scope: "s".into(),
                    entity: "e".into(),
                    id: cursor.to_string(),
                    op: ChangeOp::Delete,
                    data: None,
                    timestamp: chrono::DateTime::UNIX_EPOCH,
                })
            })
            .collect()
    }

    #[test]
    fn truncate_keeps_the_first_changes_across_blocks() {
        let (first, second) = (block(1..=4), block(5..=8));
        for len in 0..=9 {
            let mut changes = Changes::new();
            changes.push_block(&first, 1..4);
            changes.push_block(&second, 0..4);
            changes.truncate(len);
            let cursors: Vec<u64> = changes.iter().map(|c| c.cursor).collect();
            let expected: Vec<u64> = (2..=8).take(len).collect();
            assert_eq!(cursors, expected, "len {len}");
            assert_eq!(changes.len(), expected.len());
        }
    }
}
