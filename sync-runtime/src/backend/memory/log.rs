//! The memory backend's change log.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::Utc;
use hashbrown::HashMap;
use parking_lot::RwLock;

use crate::backend::{Committed, LogRead, NewChange};
use crate::change::Change;
use crate::changes::{ChangeBlock, Changes};

/// The change log in memory, indexed per scope so that a pull costs O(log n + k). The log half
/// of a [`MemoryBackend`](super::MemoryBackend).
#[derive(Debug, Default)]
pub struct MemoryChangeLog {
    state: RwLock<LogState>,
}

#[derive(Debug, Default)]
struct LogState {
    /// The latest cursor assigned.
    head: u64,
    /// Every retained change, ascending: the order in which trimming removes them.
    all: VecDeque<Arc<Change>>,
    /// Each scope's retained changes, ascending, and how far it was trimmed.
    scopes: HashMap<String, ScopeLog>,
    /// The horizons of scopes trimmed to nothing, which keep only this number (as the SQL
    /// backends' `sync_horizons` table does): a client behind it must still take a snapshot.
    horizons: HashMap<String, u64>,
}

/// Changes per block of a scope's history.
const BLOCK: usize = 256;

/// One scope's retained changes, ascending: full blocks, shared with the pages that read them,
/// then the newest changes.
#[derive(Debug, Default)]
struct ScopeLog {
    /// Full blocks of `BLOCK` changes, oldest first.
    blocks: VecDeque<ChangeBlock>,
    /// How many changes of the first block were trimmed.
    trimmed: usize,
    /// The newest changes, fewer than `BLOCK`.
    tail: Vec<Arc<Change>>,
    /// The highest cursor trimmed from this scope (0: nothing trimmed).
    horizon: u64,
}

impl ScopeLog {
    fn push(&mut self, change: Arc<Change>) {
        self.tail.push(change);
        if self.tail.len() == BLOCK {
            self.blocks.push_back(std::mem::take(&mut self.tail).into());
        }
    }

    /// Removes the oldest change.
    fn pop_front(&mut self) {
        match self.blocks.front() {
            Some(block) => {
                self.trimmed += 1;
                if self.trimmed == block.len() {
                    self.blocks.pop_front();
                    self.trimmed = 0;
                }
            }
            None if !self.tail.is_empty() => {
                self.tail.remove(0);
            }
            None => {}
        }
    }

    fn len(&self) -> usize {
        self.blocks.len() * BLOCK - self.trimmed + self.tail.len()
    }

    /// The change at `index`, counting from the oldest retained one.
    fn get(&self, index: usize) -> Option<&Arc<Change>> {
        let at = index + self.trimmed;
        match self.blocks.get(at / BLOCK) {
            Some(block) => block.get(at % BLOCK),
            None => self.tail.get(at - self.blocks.len() * BLOCK),
        }
    }

    fn last_cursor(&self) -> Option<u64> {
        let last = self.tail.last();
        let last = last.or_else(|| self.blocks.back().and_then(|block| block.last()));
        last.map(|change| change.cursor)
    }

    /// The index of the first change above `cursor`: a binary search over the changes.
    fn after(&self, cursor: u64) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match self.get(mid) {
                Some(change) if change.cursor <= cursor => low = mid + 1,
                _ => high = mid,
            }
        }
        low
    }

    /// Up to `limit` changes from `start`: shared blocks, and a copy of the newest changes.
    fn page(&self, start: usize, limit: usize) -> Changes {
        let end = start.saturating_add(limit).min(self.len());
        let mut page = Changes::new();
        let (mut at, end) = (start + self.trimmed, end + self.trimmed);
        while at < end {
            let Some(block) = self.blocks.get(at / BLOCK) else {
                break;
            };
            let offset = at % BLOCK;
            let upto = (end - at + offset).min(BLOCK);
            page.push_block(block, offset..upto);
            at += upto - offset;
        }
        if at < end {
            let from = at - self.blocks.len() * BLOCK;
            let newest: ChangeBlock = self
                .tail
                .get(from..end - self.blocks.len() * BLOCK)
                .unwrap_or_default()
                .into();
            page.push_block(&newest, 0..newest.len());
        }
        page
    }
}

impl MemoryChangeLog {
    /// How many changes the log holds.
    pub fn len(&self) -> usize {
        self.state.read().all.len()
    }

    /// Whether the log holds no change.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a commit's changes with the cursors after the head.
    pub(super) fn append(&self, changes: Vec<NewChange>) -> Committed {
        let mut state = self.state.write();
        let committed = Committed::numbered(state.head, changes, Utc::now());
        let LogState {
            all,
            scopes,
            horizons,
            ..
        } = &mut *state;
        for change in &committed.changes {
            all.push_back(Arc::clone(change));
            scopes
                .entry_ref(change.scope.as_str())
                .or_insert_with(|| ScopeLog {
                    horizon: horizons.remove(change.scope.as_str()).unwrap_or(0),
                    ..ScopeLog::default()
                })
                .push(Arc::clone(change));
        }
        state.head += committed.changes.len() as u64;
        committed
    }

    pub(super) fn head(&self) -> u64 {
        self.state.read().head
    }

    /// Up to `limit` changes of `scope` after `after`, with the head and the scope's horizon.
    pub(super) fn read(&self, scope: &str, after: u64, limit: usize) -> LogRead {
        let state = self.state.read();
        let Some(log) = state.scopes.get(scope) else {
            return LogRead {
                head: state.head,
                horizon: state.horizons.get(scope).copied().unwrap_or(0),
                ..LogRead::default()
            };
        };
        LogRead {
            head: state.head,
            horizon: log.horizon,
            changes: log.page(log.after(after), limit),
            client_seq: None,
        }
    }

    pub(super) fn scope_cursor(&self, scope: &str) -> u64 {
        let state = self.state.read();
        match state.scopes.get(scope) {
            Some(log) => log.last_cursor().unwrap_or(log.horizon),
            None => state.horizons.get(scope).copied().unwrap_or(0),
        }
    }

    pub(super) fn trim(&self, before: u64) {
        let mut state = self.state.write();
        let LogState {
            all,
            scopes,
            horizons,
            ..
        } = &mut *state;
        while let Some(change) = all.front().filter(|change| change.cursor < before) {
            if let Some(log) = scopes.get_mut(&change.scope) {
                log.pop_front();
                log.horizon = log.horizon.max(change.cursor);
                if log.len() == 0 {
                    horizons.insert(change.scope.clone(), log.horizon);
                    scopes.remove(&change.scope);
                }
            }
            all.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::ChangeOp;

    fn change(scope: &str, id: &str) -> NewChange {
        NewChange {
            scope: scope.into(),
            entity: "todo".into(),
            id: id.into(),
            op: ChangeOp::Create,
            data: crate::Json::encode(&serde_json::json!({"id": id})).ok(),
        }
    }

    /// A scope trimmed to nothing keeps its horizon and nothing else; a new change brings it
    /// back with that horizon.
    #[test]
    fn a_scope_trimmed_to_nothing_keeps_only_its_horizon() {
        let log = MemoryChangeLog::default();
        for i in 0..BLOCK + 3 {
            log.append(vec![change("gone", &i.to_string())]);
        }
        log.append(vec![change("kept", "x")]);
        let last_of_gone = BLOCK as u64 + 3;
        log.trim(last_of_gone + 1);
        {
            let state = log.state.read();
            assert!(
                !state.scopes.contains_key("gone"),
                "emptied scope's log kept"
            );
            assert_eq!(state.horizons.get("gone"), Some(&last_of_gone));
        }
        let read = log.read("gone", 0, 10);
        assert_eq!((read.horizon, read.changes.len()), (last_of_gone, 0));
        assert_eq!(log.scope_cursor("gone"), last_of_gone);

        log.append(vec![change("gone", "again")]);
        let read = log.read("gone", last_of_gone, 10);
        assert_eq!(read.horizon, last_of_gone);
        assert_eq!(read.changes.len(), 1);
        assert!(log.state.read().horizons.is_empty());
    }

    /// Pages across full blocks, the newest changes and trims, against a plain list.
    #[test]
    fn pages_read_across_blocks_and_trims_like_a_list() {
        let log = MemoryChangeLog::default();
        let n = 3 * BLOCK as u64 + 10;
        for i in 0..n {
            log.append(vec![change("a", &i.to_string()), change("b", "x")]);
        }
        // Scope `a` holds cursors 1, 3, 5, …
        let mut kept: Vec<u64> = (0..n).map(|i| 2 * i + 1).collect();
        let block = BLOCK as u64;
        for trim_before in [0, 9, 2 * block + 15, 4 * block, 6 * block + 3, 2 * n - 5] {
            log.trim(trim_before);
            kept.retain(|cursor| *cursor >= trim_before);
            // The highest cursor of `a` trimmed so far.
            let horizon = (0..n)
                .map(|i| 2 * i + 1)
                .filter(|cursor| *cursor < trim_before)
                .max()
                .unwrap_or(0);
            for cursor in [
                horizon,
                horizon + 1,
                2 * block - 1,
                2 * block,
                5 * block + 2,
                2 * n,
            ] {
                if cursor < horizon {
                    continue;
                }
                for limit in [1, 7, BLOCK - 1, BLOCK, BLOCK + 1, 1000] {
                    let read = log.read("a", cursor, limit);
                    let expected: Vec<u64> = kept
                        .iter()
                        .copied()
                        .filter(|c| *c > cursor)
                        .take(limit)
                        .collect();
                    let got: Vec<u64> = read.changes.iter().map(|c| c.cursor).collect();
                    assert_eq!(
                        got, expected,
                        "trim {trim_before}, cursor {cursor}, limit {limit}"
                    );
                    assert_eq!((read.head, read.horizon), (2 * n, horizon));
                }
            }
        }
    }
}
