//! The in-memory backend: thread-safe, indexed per scope, lost on restart.

mod locks;
mod log;
mod store;

use std::collections::BTreeMap;
use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;

use super::{
    Backend, ChangeLog, Commit, Committed, Failure, LogRead, SnapshotPage, SnapshotRead, Store,
    Transaction,
};
use crate::error::StoreError;
use locks::{LockKey, Locks, Mode};

pub use log::MemoryChangeLog;
pub use store::MemoryStore;

/// The in-memory backend: a [`MemoryStore`], a [`MemoryChangeLog`] and the clients' sequence
/// numbers. Pushes that share an entity, a listed entity type or a client run one at a time,
/// others side by side, within a scope too; pulls and snapshots run beside them. Cheap to clone;
/// clones share the data.
///
/// ```
/// use sync_runtime::{Engine, MemoryBackend, Mutation, MutatorFunc};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sync_runtime::SyncError> {
/// let backend = MemoryBackend::new();
/// let mutator = MutatorFunc::new(|tx, m| Box::pin(async move {
///     tx.put_value("note", "n1", &m.args).await?;
///     Ok(None)
/// }));
/// let engine = Engine::builder(mutator).backend(backend.clone()).build();
/// engine.push(vec![Mutation::new("note/set", serde_json::json!({"text": "hi"}))]).await?;
/// assert_eq!(backend.store().list("_default", "note")?.len(), 1);
/// assert_eq!(backend.log().len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// A new one at every start: a memory log lives as long as its process.
    log_id: String,
    store: MemoryStore,
    log: MemoryChangeLog,
    client_seqs: Mutex<HashMap<String, u64>>,
    /// Mutations that failed for good, with the head they were committed after.
    failures: Mutex<HashMap<(String, u64), (Failure, u64)>>,
    /// A lock per entity, per entity type of a scope and per client, each held by a transaction
    /// from its first read of it until commit or rollback (`locks`). One lock for every push made
    /// concurrent pushers slower than one (0.5×, BENCHMARKS.md), and so did one per scope for
    /// pushers in one scope.
    locks: Locks,
    /// Taken for writing while a commit applies, for reading while a snapshot copies: a snapshot
    /// never sees half a commit.
    commit_gate: RwLock<()>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            log_id: super::new_log_id(),
            store: MemoryStore::default(),
            log: MemoryChangeLog::default(),
            client_seqs: Mutex::default(),
            failures: Mutex::default(),
            locks: Locks::default(),
            commit_gate: RwLock::default(),
        }
    }
}

impl Shared {
    fn client_seq(&self, client_id: Option<&str>) -> Option<u64> {
        self.client_seqs.lock().get(client_id?).copied()
    }
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
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

impl Store for MemoryBackend {
    async fn get(&self, scope: &str, entity: &str, id: &str) -> Result<Option<Value>, StoreError> {
        self.shared.store.get(scope, entity, id)
    }

    async fn list(&self, scope: &str, entity: &str) -> Result<BTreeMap<String, Value>, StoreError> {
        self.shared.store.list(scope, entity)
    }
}

impl ChangeLog for MemoryBackend {
    fn log_id(&self) -> &str {
        &self.shared.log_id
    }

    async fn read(
        &self,
        scope: &str,
        after: u64,
        limit: usize,
        client_id: Option<&str>,
    ) -> Result<LogRead, StoreError> {
        // The page and the client's sequence number from one state: no commit in between.
        let _gate = self.shared.commit_gate.read();
        Ok(LogRead {
            client_seq: self.shared.client_seq(client_id),
            ..self.shared.log.read(scope, after, limit)
        })
    }

    async fn head(&self) -> Result<u64, StoreError> {
        Ok(self.shared.log.head())
    }

    async fn scope_cursor(&self, scope: &str) -> Result<u64, StoreError> {
        Ok(self.shared.log.scope_cursor(scope))
    }

    async fn trim(&self, before: u64) -> Result<(), StoreError> {
        self.shared.log.trim(before);
        let mut failures = self.shared.failures.lock();
        failures.retain(|_, (_, at)| *at >= before);
        Ok(())
    }
}

impl Backend for MemoryBackend {
    type Transaction = MemoryTransaction;

    async fn begin(&self) -> Result<MemoryTransaction, StoreError> {
        Ok(MemoryTransaction {
            holder: self.shared.locks.holder(),
            shared: Arc::clone(&self.shared),
            // A push of 10 mutations of one write each, without growing.
            held: HashMap::with_capacity(16),
        })
    }

    async fn snapshot(
        &self,
        scope: &str,
        page: SnapshotPage<'_>,
    ) -> Result<SnapshotRead, StoreError> {
        let _gate = self.shared.commit_gate.read();
        Ok(SnapshotRead {
            data: self.shared.store.page(scope, page.after, page.limit)?,
            head: self.shared.log.head(),
            client_seq: self.shared.client_seq(page.client_id),
        })
    }
}

/// A push's transaction on a [`MemoryBackend`]: it locks each entity, listed entity type and
/// client as it first reads it (or at commit, writes it) and holds them until it commits or is
/// dropped.
pub struct MemoryTransaction {
    shared: Arc<Shared>,
    /// This transaction in the lock table.
    holder: u64,
    /// The locks it holds, and how.
    held: HashMap<LockKey, Mode>,
}

impl MemoryTransaction {
    async fn lock(&mut self, key: LockKey, mode: Mode) -> Result<(), StoreError> {
        let holds = self.held.get(&key);
        if holds.is_none_or(|held| *held == Mode::Shared && mode == Mode::Exclusive) {
            self.shared.locks.lock(self.holder, key, mode).await?;
            self.held.insert(key, mode);
        }
        Ok(())
    }

    /// Locks an entity, and its type shared with the other pushes that touch its entities.
    async fn lock_entity(&mut self, scope: &str, entity: &str, id: &str) -> Result<(), StoreError> {
        let locks = &self.shared.locks;
        let (entities, key) = (
            locks.entities(scope, entity),
            locks.entity(scope, entity, id),
        );
        self.lock(entities, Mode::Shared).await?;
        self.lock(key, Mode::Exclusive).await
    }

    async fn lock_client(&mut self, client_id: &str) -> Result<(), StoreError> {
        let key = self.shared.locks.client(client_id);
        self.lock(key, Mode::Exclusive).await
    }
}

impl Drop for MemoryTransaction {
    fn drop(&mut self) {
        let keys = self.held.drain().map(|(key, _)| key);
        self.shared.locks.unlock(self.holder, keys);
    }
}

impl Transaction for MemoryTransaction {
    async fn get(
        &mut self,
        scope: &str,
        entity: &str,
        id: &str,
    ) -> Result<Option<Value>, StoreError> {
        self.lock_entity(scope, entity, id).await?;
        self.shared.store.get(scope, entity, id)
    }

    async fn contains(&mut self, scope: &str, entity: &str, id: &str) -> Result<bool, StoreError> {
        self.lock_entity(scope, entity, id).await?;
        Ok(self.shared.store.contains(scope, entity, id))
    }

    async fn list(
        &mut self,
        scope: &str,
        entity: &str,
    ) -> Result<BTreeMap<String, Value>, StoreError> {
        let key = self.shared.locks.entities(scope, entity);
        self.lock(key, Mode::Exclusive).await?;
        self.shared.store.list(scope, entity)
    }

    async fn client_seq(&mut self, client_id: &str) -> Result<Option<u64>, StoreError> {
        self.lock_client(client_id).await?;
        Ok(self.shared.client_seq(Some(client_id)))
    }

    async fn failure(
        &mut self,
        client_id: &str,
        client_seq: u64,
    ) -> Result<Option<Failure>, StoreError> {
        self.lock_client(client_id).await?;
        let failures = self.shared.failures.lock();
        let key = (client_id.to_owned(), client_seq);
        Ok(failures.get(&key).map(|(failure, _)| failure.clone()))
    }

    async fn commit(mut self, commit: Commit) -> Result<Committed, StoreError> {
        // What the push writes without having read it (a put does not read) is locked now; the
        // locks go when `self` does. Each change is of an entity the push wrote, so its lock is
        // held once these are.
        for write in commit.writes() {
            self.lock_entity(write.scope(), write.entity(), write.id())
                .await?;
        }
        let clients = commit
            .client_seqs()
            .iter()
            .map(|(client, _)| client.as_str());
        let failed = commit.failures().iter().map(|f| f.client_id.as_str());
        for client_id in clients.chain(failed) {
            self.lock_client(client_id).await?;
        }
        let mut parts = commit.into_parts();
        let shared = &self.shared;
        let _gate = shared.commit_gate.write();
        // The store's lock is taken per write, not once for all: held through a whole commit, it
        // made the readers on the other thread sleep and the commit wake them (16 pushers in
        // scopes of their own served about a sixth less; BENCHMARKS.md, 2026-12-03). Each write
        // tells whether its entity existed, which decides the pending changes' ops; the entity
        // locks make that exact.
        let mut existed = Vec::with_capacity(parts.writes.len());
        for write in parts.writes {
            let (scope, entity, id) = (write.key.scope(), write.key.entity(), write.key.id());
            existed.push(match write.json {
                Some(json) => shared.store.set(scope, entity, id, json),
                None => shared.store.delete(scope, entity, id),
            });
        }
        parts
            .pending
            .resolve(&mut parts.changes, |_, write| existed.get(write).copied())?;
        let committed = shared.log.append(parts.changes);
        let mut seqs = shared.client_seqs.lock();
        for (client_id, seq) in parts.client_seqs {
            let last = seqs.entry(client_id).or_default();
            *last = (*last).max(seq);
        }
        let mut failures = shared.failures.lock();
        for failure in parts.failures {
            let key = (failure.client_id.clone(), failure.client_seq);
            failures.insert(key, (failure, committed.before));
        }
        Ok(committed)
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;
    use crate::backend::{KeyRef, NewChange, PendingOps, Write};
    use crate::change::ChangeOp;
    use crate::json::Json;

    /// Pushes wait for each other only where they share an entity, a listed type or a client,
    /// and one that waited reads what the other committed.
    #[tokio::test]
    async fn pushes_wait_only_for_the_entities_and_clients_they_share() {
        let backend = MemoryBackend::new();
        let mut first = backend.begin().await.unwrap();
        assert_eq!(first.get("a", "item", "1").await.unwrap(), None);
        assert_eq!(first.client_seq("c").await.unwrap(), None);

        let mut other = backend.begin().await.unwrap();
        let read = other.get("b", "item", "1").now_or_never();
        assert!(matches!(read, Some(Ok(None))), "another scope: no wait");
        let read = other.get("a", "item", "2").now_or_never();
        assert!(matches!(read, Some(Ok(None))), "another entity: no wait");
        let read = other.client_seq("d").now_or_never();
        assert!(matches!(read, Some(Ok(None))), "another client: no wait");
        let mut lister = backend.begin().await.unwrap();
        let mut listing = Box::pin(async move { lister.list("a", "item").await });
        assert!(
            futures::poll!(&mut listing).is_pending(),
            "a listing waits for the type's users"
        );
        drop(listing);
        drop(other);

        let mut same_entity = backend.begin().await.unwrap();
        let mut entity_read = Box::pin(async move { same_entity.get("a", "item", "1").await });
        assert!(futures::poll!(&mut entity_read).is_pending());
        let mut same_client = backend.begin().await.unwrap();
        let mut client_read = Box::pin(async move { same_client.client_seq("c").await });
        assert!(futures::poll!(&mut client_read).is_pending());

        let commit = Commit {
            client_seqs: vec![("c".to_owned(), 7)],
            ..Commit::default()
        };
        first.commit(commit).await.unwrap();
        assert_eq!(
            client_read.await.unwrap(),
            Some(7),
            "reads the committed seq"
        );
        assert_eq!(entity_read.await.unwrap(), None);
    }

    /// A commit stores the text its writes encode, which reads decode, and decides its pending op
    /// from the store.
    #[tokio::test]
    async fn a_commit_stores_the_text_its_writes_encode() {
        let backend = MemoryBackend::new();
        let value = serde_json::json!({"title": "milk", "n": [1.5, u64::MAX]});
        let json = Json::encode(&value).unwrap();
        let mut pending = PendingOps::default();
        pending.push(0, 0);
        let commit = Commit {
            writes: vec![Write {
                key: KeyRef("s", "item", "1").to_owned(),
                json: Some(json.clone()),
                existence_unknown: true,
            }],
            changes: vec![NewChange {
                scope: "s".to_owned(),
                entity: "item".to_owned(),
                id: "1".to_owned(),
                op: ChangeOp::Create,
                data: Some(json),
            }],
            pending,
            ..Commit::default()
        };
        let committed = backend.begin().await.unwrap().commit(commit).await.unwrap();
        assert_eq!(committed.changes[0].op, ChangeOp::Create);
        assert_eq!(backend.get("s", "item", "1").await.unwrap(), Some(value));
    }
}
