//! The in-memory backend: thread-safe, indexed per scope, lost on restart.
//!
//! Lookups go through hash maps with a fast hasher (hashbrown's default) and borrowed keys, so a
//! push allocates only for what it stores; listings and snapshots sort by id when they are read.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use hashbrown::HashMap;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::OwnedMutexGuard;

use super::write_set::{KeyRef, WriteSet};
use super::{Backend, Committed, Transaction};
use crate::change::{Change, NewChange};
use crate::changelog::{ChangeBlock, ChangeLog, Changes, Page};
use crate::error::{StoreError, SyncError};
use crate::store::{ScopeData, Store, Written};

/// One scope's entities: entity type → id → data.
type Entities = HashMap<String, HashMap<String, Value>>;

/// Entity data in memory: scope → entity → id → data.
#[derive(Debug, Default)]
pub struct MemoryStore {
    scopes: RwLock<HashMap<String, Entities>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn get_now(&self, scope: &str, entity: &str, id: &str) -> Option<Value> {
        let scopes = self.scopes.read();
        scopes.get(scope)?.get(entity)?.get(id).cloned()
    }

    fn contains_now(&self, scope: &str, entity: &str, id: &str) -> bool {
        let scopes = self.scopes.read();
        let ids = scopes.get(scope).and_then(|entities| entities.get(entity));
        ids.is_some_and(|ids| ids.contains_key(id))
    }

    fn set_now(&self, scope: &str, entity: &str, id: String, data: Value) -> Written {
        let mut scopes = self.scopes.write();
        // `entry_ref` allocates the scope's and entity's names only when they are new.
        let ids = scopes
            .entry_ref(scope)
            .or_default()
            .entry_ref(entity)
            .or_default();
        match ids.insert(id, data) {
            Some(_) => Written::Updated,
            None => Written::Created,
        }
    }

    fn delete_now(&self, scope: &str, entity: &str, id: &str) -> bool {
        let mut scopes = self.scopes.write();
        let Some(entities) = scopes.get_mut(scope) else {
            return false;
        };
        let Some(ids) = entities.get_mut(entity) else {
            return false;
        };
        let existed = ids.remove(id).is_some();
        if ids.is_empty() {
            entities.remove(entity);
        }
        existed
    }

    fn entities_now(&self, scope: &str, entity: &str) -> BTreeMap<String, Value> {
        let scopes = self.scopes.read();
        scopes
            .get(scope)
            .and_then(|entities| entities.get(entity))
            .map(sorted)
            .unwrap_or_default()
    }

    fn snapshot_now(&self, scope: &str) -> ScopeData {
        let scopes = self.scopes.read();
        scopes
            .get(scope)
            .map(|entities| {
                entities
                    .iter()
                    .map(|(entity, ids)| (entity.clone(), sorted(ids)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A copy of one entity type's data, ordered by id.
fn sorted(ids: &HashMap<String, Value>) -> BTreeMap<String, Value> {
    ids.iter()
        .map(|(id, data)| (id.clone(), data.clone()))
        .collect()
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, scope: &str, entity: &str, id: &str) -> Result<Option<Value>, StoreError> {
        Ok(self.get_now(scope, entity, id))
    }

    async fn set(
        &self,
        scope: &str,
        entity: &str,
        id: &str,
        data: Value,
    ) -> Result<Written, StoreError> {
        Ok(self.set_now(scope, entity, id.to_owned(), data))
    }

    async fn delete(&self, scope: &str, entity: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self.delete_now(scope, entity, id))
    }

    async fn list(&self, scope: &str, entity: &str) -> Result<Vec<Value>, StoreError> {
        Ok(self.entities_now(scope, entity).into_values().collect())
    }

    async fn snapshot(&self, scope: &str) -> Result<ScopeData, StoreError> {
        Ok(self.snapshot_now(scope))
    }
}

/// The change log in memory, indexed per scope so that a pull costs O(log n + k).
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
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many changes the log holds.
    pub fn len(&self) -> usize {
        self.state.read().all.len()
    }

    /// Whether the log holds no change.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn append_now(&self, changes: Vec<NewChange>) -> Vec<Arc<Change>> {
        let timestamp = Utc::now();
        let mut state = self.state.write();
        let mut logged = Vec::with_capacity(changes.len());
        for change in changes {
            state.head += 1;
            let change = Arc::new(change.into_change(state.head, timestamp));
            state.all.push_back(Arc::clone(&change));
            state
                .scopes
                .entry_ref(change.scope.as_str())
                .or_default()
                .push(Arc::clone(&change));
            logged.push(change);
        }
        logged
    }

    fn head_now(&self) -> u64 {
        self.state.read().head
    }

    fn since_now(&self, scope: &str, cursor: u64, limit: usize) -> Result<Page, SyncError> {
        let state = self.state.read();
        if cursor > state.head {
            return Err(SyncError::CursorAhead {
                cursor,
                head: state.head,
            });
        }
        let Some(log) = state.scopes.get(scope) else {
            return Ok(Page {
                changes: Changes::new(),
                cursor: state.head,
                has_more: false,
            });
        };
        if log.horizon > cursor {
            return Err(SyncError::CursorTooOld {
                scope: scope.to_owned(),
                cursor,
                horizon: log.horizon,
            });
        }
        let start = log.after(cursor);
        let changes = log.page(start, limit);
        let has_more = start + changes.len() < log.len();
        let next = changes.last().map_or(state.head, |change| change.cursor);
        Ok(Page {
            changes,
            cursor: next,
            has_more,
        })
    }

    fn trim_now(&self, before: u64) {
        let mut state = self.state.write();
        let LogState { all, scopes, .. } = &mut *state;
        while let Some(change) = all.front().filter(|change| change.cursor < before) {
            if let Some(log) = scopes.get_mut(&change.scope) {
                log.pop_front();
                log.horizon = log.horizon.max(change.cursor);
            }
            all.pop_front();
        }
    }

    fn retain_now(&self, keep: usize) {
        let before = {
            let state = self.state.read();
            let excess = state.all.len().saturating_sub(keep);
            if excess == 0 {
                return;
            }
            state
                .all
                .get(excess)
                .map_or(state.head + 1, |first_kept| first_kept.cursor)
        };
        self.trim_now(before);
    }
}

#[async_trait]
impl ChangeLog for MemoryChangeLog {
    async fn append(&self, changes: Vec<NewChange>) -> Result<Vec<Arc<Change>>, StoreError> {
        Ok(self.append_now(changes))
    }

    async fn since(&self, scope: &str, cursor: u64, limit: usize) -> Result<Page, SyncError> {
        self.since_now(scope, cursor, limit)
    }

    async fn cursor(&self) -> Result<u64, StoreError> {
        Ok(self.head_now())
    }

    async fn scope_cursor(&self, scope: &str) -> Result<u64, StoreError> {
        let state = self.state.read();
        Ok(state
            .scopes
            .get(scope)
            .map_or(0, |log| log.last_cursor().unwrap_or(log.horizon)))
    }

    async fn trim(&self, before: u64) -> Result<(), StoreError> {
        self.trim_now(before);
        Ok(())
    }

    async fn retain(&self, keep: usize) -> Result<(), StoreError> {
        self.retain_now(keep);
        Ok(())
    }
}

/// The in-memory backend: a [`MemoryStore`], a [`MemoryChangeLog`] and the clients' sequence
/// numbers. Mutations run one at a time; pulls and snapshots run beside them.
///
/// ```
/// use sync_runtime::{MemoryBackend, Store};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sync_runtime::StoreError> {
/// let backend = MemoryBackend::new();
/// // Data written directly (not through the engine) is not in the change log.
/// backend.store().set("_default", "todo", "a", serde_json::json!({"id": "a"})).await?;
/// assert_eq!(backend.store().list("_default", "todo").await?.len(), 1);
/// assert!(backend.log().is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    store: MemoryStore,
    log: MemoryChangeLog,
    client_seqs: Mutex<HashMap<String, u64>>,
    /// Held by a transaction from `begin` until commit or rollback: mutations run one at a time,
    /// in the order they asked (tokio's mutex is fair; `futures`' lets a running pusher take it
    /// again first, which served 10 % fewer pushes over HTTP: BENCHMARKS.md).
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Taken for writing while a commit applies, for reading while a snapshot copies: a snapshot
    /// never sees half a commit.
    commit_gate: RwLock<()>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend over an existing store and change log, as the plan's `Options` pairs them.
    pub fn from_parts(store: MemoryStore, log: MemoryChangeLog) -> Self {
        MemoryBackend {
            shared: Arc::new(Shared {
                store,
                log,
                ..Shared::default()
            }),
        }
    }

    /// The entity data.
    pub fn store(&self) -> &MemoryStore {
        &self.shared.store
    }

    /// The change log.
    pub fn log(&self) -> &MemoryChangeLog {
        &self.shared.log
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn begin(&self) -> Result<Box<dyn Transaction>, StoreError> {
        let writer = Arc::clone(&self.shared.writer).lock_owned().await;
        Ok(Box::new(MemoryTransaction {
            shared: Arc::clone(&self.shared),
            _writer: writer,
            state: Mutex::new(TxState::default()),
        }))
    }

    fn changelog(&self) -> &dyn ChangeLog {
        &self.shared.log
    }

    async fn snapshot(&self, scope: &str) -> Result<(ScopeData, u64), StoreError> {
        let _gate = self.shared.commit_gate.read();
        Ok((
            self.shared.store.snapshot_now(scope),
            self.shared.log.head_now(),
        ))
    }
}

struct MemoryTransaction {
    shared: Arc<Shared>,
    _writer: OwnedMutexGuard<()>,
    state: Mutex<TxState>,
}

#[derive(Default)]
struct TxState {
    writes: WriteSet,
    /// Finished mutations' changes, one list per mutation.
    finished: Vec<Vec<NewChange>>,
    /// Sequence numbers recorded by finished mutations.
    client_seqs: std::collections::HashMap<String, u64>,
}

impl MemoryTransaction {
    /// Whether the entity exists, with this transaction's writes applied; clones nothing.
    fn exists(&self, scope: &str, entity: &str, id: &str) -> bool {
        match self.state.lock().writes.get(scope, entity, id) {
            Some(written) => written.is_some(),
            None => self.shared.store.contains_now(scope, entity, id),
        }
    }
}

#[async_trait]
impl Store for MemoryTransaction {
    async fn get(&self, scope: &str, entity: &str, id: &str) -> Result<Option<Value>, StoreError> {
        match self.state.lock().writes.get(scope, entity, id) {
            Some(written) => Ok(written.clone()),
            None => Ok(self.shared.store.get_now(scope, entity, id)),
        }
    }

    async fn set(
        &self,
        scope: &str,
        entity: &str,
        id: &str,
        data: Value,
    ) -> Result<Written, StoreError> {
        let existed = self.exists(scope, entity, id);
        self.state
            .lock()
            .writes
            .write(scope, entity, id, Some(data));
        Ok(Written::when_existed(existed))
    }

    async fn delete(&self, scope: &str, entity: &str, id: &str) -> Result<bool, StoreError> {
        let existed = self.exists(scope, entity, id);
        if existed {
            self.state.lock().writes.write(scope, entity, id, None);
        }
        Ok(existed)
    }

    async fn list(&self, scope: &str, entity: &str) -> Result<Vec<Value>, StoreError> {
        let mut ids = self.shared.store.entities_now(scope, entity);
        self.state
            .lock()
            .writes
            .overlay_entities(scope, entity, &mut ids);
        Ok(ids.into_values().collect())
    }

    async fn snapshot(&self, scope: &str) -> Result<ScopeData, StoreError> {
        let mut data = self.shared.store.snapshot_now(scope);
        self.state.lock().writes.overlay_scope(scope, &mut data);
        Ok(data)
    }
}

#[async_trait]
impl Transaction for MemoryTransaction {
    async fn last_client_seq(&self, client_id: &str) -> Result<Option<u64>, StoreError> {
        let staged = self.state.lock().client_seqs.get(client_id).copied();
        let committed = self.shared.client_seqs.lock().get(client_id).copied();
        Ok(staged.max(committed))
    }

    async fn begin_mutation(&self) -> Result<(), StoreError> {
        self.state.lock().writes.keep_mutation();
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
        state.writes.keep_mutation();
        state.finished.push(changes);
        super::stage_client_seq(&mut state.client_seqs, client);
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<Vec<Committed>, StoreError> {
        let state = std::mem::take(&mut *self.state.lock());
        let shared = &self.shared;
        let _gate = shared.commit_gate.write();
        // Without the writes of a mutation that was begun but not finished.
        for (key, written) in state.writes.into_writes() {
            let KeyRef(scope, entity, id) = key.parts();
            match written {
                Some(data) => {
                    shared.store.set_now(scope, entity, id.to_owned(), data);
                }
                None => {
                    shared.store.delete_now(scope, entity, id);
                }
            }
        }
        let mut cursor = shared.log.head_now();
        let committed = state
            .finished
            .into_iter()
            .map(|changes| {
                let changes = shared.log.append_now(changes);
                cursor = changes.last().map_or(cursor, |change| change.cursor);
                Committed { changes, cursor }
            })
            .collect();
        let mut seqs = shared.client_seqs.lock();
        for (client_id, seq) in state.client_seqs {
            let last = seqs.entry(client_id).or_default();
            *last = (*last).max(seq);
        }
        Ok(committed)
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
            data: Some(serde_json::json!({"id": id})),
        }
    }

    /// Pages across full blocks, the newest changes and trims, against a plain list.
    #[tokio::test]
    async fn pages_read_across_blocks_and_trims_like_a_list() {
        let log = MemoryChangeLog::new();
        let n = 3 * BLOCK as u64 + 10;
        for i in 0..n {
            log.append(vec![change("a", &i.to_string()), change("b", "x")])
                .await
                .unwrap();
        }
        // Scope `a` holds cursors 1, 3, 5, …
        let mut kept: Vec<u64> = (0..n).map(|i| 2 * i + 1).collect();
        let block = BLOCK as u64;
        for trim_before in [0, 9, 2 * block + 15, 4 * block, 6 * block + 3, 2 * n - 5] {
            log.trim(trim_before).await.unwrap();
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
                    let page = log.since("a", cursor, limit).await.unwrap();
                    let after: Vec<u64> = kept.iter().copied().filter(|c| *c > cursor).collect();
                    let expected: Vec<u64> = after.iter().copied().take(limit).collect();
                    let got: Vec<u64> = page.changes.iter().map(|c| c.cursor).collect();
                    assert_eq!(
                        got, expected,
                        "trim {trim_before}, cursor {cursor}, limit {limit}"
                    );
                    assert_eq!(page.has_more, after.len() > limit);
                }
            }
        }
    }

    #[tokio::test]
    async fn retain_keeps_the_most_recent() {
        let log = MemoryChangeLog::new();
        for i in 0..10 {
            log.append(vec![change("a", &i.to_string())]).await.unwrap();
        }
        log.retain(4).await.unwrap();
        assert_eq!(log.len(), 4);
        assert!(log.since("a", 5, 10).await.is_err());
        assert_eq!(log.since("a", 6, 10).await.unwrap().changes.len(), 4);
        log.retain(0).await.unwrap();
        assert!(log.is_empty());
        assert_eq!(log.cursor().await.unwrap(), 10);
    }

    #[tokio::test]
    async fn transaction_reads_its_own_writes_and_rolls_back_on_drop() {
        let backend = MemoryBackend::new();
        let tx = backend.begin().await.unwrap();
        assert_eq!(
            tx.set("s", "todo", "1", serde_json::json!(1))
                .await
                .unwrap(),
            Written::Created
        );
        assert_eq!(
            tx.set("s", "todo", "1", serde_json::json!(2))
                .await
                .unwrap(),
            Written::Updated
        );
        assert_eq!(
            tx.get("s", "todo", "1").await.unwrap(),
            Some(serde_json::json!(2))
        );
        assert_eq!(tx.list("s", "todo").await.unwrap().len(), 1);
        drop(tx);
        assert_eq!(backend.store().get("s", "todo", "1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_rolled_back_mutation_keeps_the_earlier_ones() {
        let backend = MemoryBackend::new();
        let tx = backend.begin().await.unwrap();
        tx.begin_mutation().await.unwrap();
        tx.set("s", "todo", "1", serde_json::json!("first"))
            .await
            .unwrap();
        tx.finish_mutation(vec![change("s", "1")], Some(("c", 1)))
            .await
            .unwrap();
        tx.begin_mutation().await.unwrap();
        tx.set("s", "todo", "1", serde_json::json!("second"))
            .await
            .unwrap();
        tx.set("s", "todo", "2", serde_json::json!("second"))
            .await
            .unwrap();
        tx.rollback_mutation().await.unwrap();
        assert_eq!(
            tx.get("s", "todo", "1").await.unwrap(),
            Some(serde_json::json!("first"))
        );
        assert_eq!(tx.get("s", "todo", "2").await.unwrap(), None);
        tx.finish_mutation(vec![], Some(("c", 2))).await.unwrap();
        assert_eq!(tx.last_client_seq("c").await.unwrap(), Some(2));
        tx.begin_mutation().await.unwrap();
        tx.set("s", "todo", "3", serde_json::json!("unfinished"))
            .await
            .unwrap();
        let committed = tx.commit().await.unwrap();
        assert_eq!(
            committed.iter().map(|c| c.cursor).collect::<Vec<_>>(),
            [1, 1]
        );
        let data = backend.store().snapshot("s").await.unwrap();
        assert_eq!(
            serde_json::to_value(data).unwrap(),
            serde_json::json!({"todo": {"1": "first"}})
        );
    }
}
