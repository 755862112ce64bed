//! Type erasure for backends: the traits users implement have `async fn`s, which cannot be
//! called through `dyn`; these object-safe twins box the futures instead, and [`AnyBackend`]
//! wraps any backend in them.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use super::{
    Backend, ChangeLog, Commit, Committed, Failure, LogRead, SnapshotPage, SnapshotRead, Store,
    Transaction,
};
use crate::error::StoreError;

/// [`Transaction`] with boxed futures.
pub(crate) trait DynTransaction: Send {
    fn expect_scope(&mut self, scope: &str);
    fn get<'a>(
        &'a mut self,
        scope: &'a str,
        entity: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, StoreError>>;
    fn contains<'a>(
        &'a mut self,
        scope: &'a str,
        entity: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn list<'a>(
        &'a mut self,
        scope: &'a str,
        entity: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, Value>, StoreError>>;
    fn client_seq<'a>(
        &'a mut self,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>>;
    fn failure<'a>(
        &'a mut self,
        client_id: &'a str,
        client_seq: u64,
    ) -> BoxFuture<'a, Result<Option<Failure>, StoreError>>;
    fn commit(self: Box<Self>, commit: Commit)
    -> BoxFuture<'static, Result<Committed, StoreError>>;
}

impl<T: Transaction> DynTransaction for T {
    fn expect_scope(&mut self, scope: &str) {
        Transaction::expect_scope(self, scope);
    }

    fn get<'a>(
        &'a mut self,
        scope: &'a str,
        entity: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, StoreError>> {
        Box::pin(Transaction::get(self, scope, entity, id))
    }

    fn contains<'a>(
        &'a mut self,
        scope: &'a str,
        entity: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(Transaction::contains(self, scope, entity, id))
    }

    fn list<'a>(
        &'a mut self,
        scope: &'a str,
        entity: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, Value>, StoreError>> {
        Box::pin(Transaction::list(self, scope, entity))
    }

    fn client_seq<'a>(
        &'a mut self,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        Box::pin(Transaction::client_seq(self, client_id))
    }

    fn failure<'a>(
        &'a mut self,
        client_id: &'a str,
        client_seq: u64,
    ) -> BoxFuture<'a, Result<Option<Failure>, StoreError>> {
        Box::pin(Transaction::failure(self, client_id, client_seq))
    }

    fn commit(
        self: Box<Self>,
        commit: Commit,
    ) -> BoxFuture<'static, Result<Committed, StoreError>> {
        Box::pin(Transaction::commit(*self, commit))
    }
}

/// [`Backend`] with boxed futures.
trait DynBackend: Send + Sync {
    fn begin(&self) -> BoxFuture<'_, Result<AnyTransaction, StoreError>>;
    fn snapshot<'a>(
        &'a self,
        scope: &'a str,
        page: SnapshotPage<'a>,
    ) -> BoxFuture<'a, Result<SnapshotRead, StoreError>>;
    fn log_id(&self) -> &str;
    fn get<'a>(
        &'a self,
        scope: &'a str,
        entity: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, StoreError>>;
    fn list<'a>(
        &'a self,
        scope: &'a str,
        entity: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, Value>, StoreError>>;
    fn read<'a>(
        &'a self,
        scope: &'a str,
        after: u64,
        limit: usize,
        client_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<LogRead, StoreError>>;
    fn head(&self) -> BoxFuture<'_, Result<u64, StoreError>>;
    fn scope_cursor<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<u64, StoreError>>;
    fn scope_cursors<'a>(
        &'a self,
        scopes: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<u64>, StoreError>>;
    fn trim(&self, before: u64) -> BoxFuture<'_, Result<(), StoreError>>;
    /// The backend itself, for what only one kind of backend has (e.g. a pool to sample).
    #[cfg_attr(not(all(feature = "metrics", feature = "postgres")), allow(dead_code))]
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<B: Backend> DynBackend for B {
    fn begin(&self) -> BoxFuture<'_, Result<AnyTransaction, StoreError>> {
        Box::pin(async move {
            let tx = Backend::begin(self).await?;
            Ok(AnyTransaction(Box::new(tx)))
        })
    }

    fn snapshot<'a>(
        &'a self,
        scope: &'a str,
        page: SnapshotPage<'a>,
    ) -> BoxFuture<'a, Result<SnapshotRead, StoreError>> {
        Box::pin(Backend::snapshot(self, scope, page))
    }

    fn log_id(&self) -> &str {
        ChangeLog::log_id(self)
    }

    fn get<'a>(
        &'a self,
        scope: &'a str,
        entity: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, StoreError>> {
        Box::pin(Store::get(self, scope, entity, id))
    }

    fn list<'a>(
        &'a self,
        scope: &'a str,
        entity: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, Value>, StoreError>> {
        Box::pin(Store::list(self, scope, entity))
    }

    fn read<'a>(
        &'a self,
        scope: &'a str,
        after: u64,
        limit: usize,
        client_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<LogRead, StoreError>> {
        Box::pin(ChangeLog::read(self, scope, after, limit, client_id))
    }

    fn head(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(ChangeLog::head(self))
    }

    fn scope_cursor<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(ChangeLog::scope_cursor(self, scope))
    }

    fn scope_cursors<'a>(
        &'a self,
        scopes: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<u64>, StoreError>> {
        Box::pin(ChangeLog::scope_cursors(self, scopes))
    }

    fn trim(&self, before: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(ChangeLog::trim(self, before))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Any backend, chosen at run time: cheap to clone, clones share the backend.
///
/// ```
/// use sync_runtime::{AnyBackend, MemoryBackend};
///
/// let backend = AnyBackend::new(MemoryBackend::new());
/// let same = backend.clone(); // e.g. for a second engine on the same data
/// # let _ = same;
/// ```
#[derive(Clone)]
pub struct AnyBackend {
    inner: Arc<dyn DynBackend>,
}

impl AnyBackend {
    /// Erases `backend`'s type; an `AnyBackend` is returned as it is.
    pub fn new(backend: impl Backend) -> Self {
        backend.into_any()
    }

    /// The backend behind the handle, where it is a `T`.
    #[cfg_attr(not(all(feature = "metrics", feature = "postgres")), allow(dead_code))]
    pub(crate) fn downcast_ref<T: Backend>(&self) -> Option<&T> {
        self.inner.as_any().downcast_ref()
    }

    pub(super) fn wrap(backend: impl Backend) -> Self {
        AnyBackend {
            inner: Arc::new(backend),
        }
    }
}

impl std::fmt::Debug for AnyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnyBackend").finish_non_exhaustive()
    }
}

impl Store for AnyBackend {
    async fn get(&self, scope: &str, entity: &str, id: &str) -> Result<Option<Value>, StoreError> {
        self.inner.get(scope, entity, id).await
    }

    async fn list(&self, scope: &str, entity: &str) -> Result<BTreeMap<String, Value>, StoreError> {
        self.inner.list(scope, entity).await
    }
}

impl ChangeLog for AnyBackend {
    fn log_id(&self) -> &str {
        self.inner.log_id()
    }

    async fn read(
        &self,
        scope: &str,
        after: u64,
        limit: usize,
        client_id: Option<&str>,
    ) -> Result<LogRead, StoreError> {
        self.inner.read(scope, after, limit, client_id).await
    }

    async fn head(&self) -> Result<u64, StoreError> {
        self.inner.head().await
    }

    async fn scope_cursor(&self, scope: &str) -> Result<u64, StoreError> {
        self.inner.scope_cursor(scope).await
    }

    async fn scope_cursors(&self, scopes: &[&str]) -> Result<Vec<u64>, StoreError> {
        self.inner.scope_cursors(scopes).await
    }

    async fn trim(&self, before: u64) -> Result<(), StoreError> {
        self.inner.trim(before).await
    }
}

impl Backend for AnyBackend {
    type Transaction = AnyTransaction;

    async fn begin(&self) -> Result<AnyTransaction, StoreError> {
        self.inner.begin().await
    }

    async fn snapshot(
        &self,
        scope: &str,
        page: SnapshotPage<'_>,
    ) -> Result<SnapshotRead, StoreError> {
        self.inner.snapshot(scope, page).await
    }

    fn into_any(self) -> AnyBackend {
        self
    }
}

/// The transaction of an [`AnyBackend`].
pub struct AnyTransaction(Box<dyn DynTransaction>);

impl Transaction for AnyTransaction {
    fn expect_scope(&mut self, scope: &str) {
        self.0.expect_scope(scope);
    }

    async fn get(
        &mut self,
        scope: &str,
        entity: &str,
        id: &str,
    ) -> Result<Option<Value>, StoreError> {
        self.0.get(scope, entity, id).await
    }

    async fn contains(&mut self, scope: &str, entity: &str, id: &str) -> Result<bool, StoreError> {
        self.0.contains(scope, entity, id).await
    }

    async fn list(
        &mut self,
        scope: &str,
        entity: &str,
    ) -> Result<BTreeMap<String, Value>, StoreError> {
        self.0.list(scope, entity).await
    }

    async fn client_seq(&mut self, client_id: &str) -> Result<Option<u64>, StoreError> {
        self.0.client_seq(client_id).await
    }

    async fn failure(
        &mut self,
        client_id: &str,
        client_seq: u64,
    ) -> Result<Option<Failure>, StoreError> {
        self.0.failure(client_id, client_seq).await
    }

    async fn commit(self, commit: Commit) -> Result<Committed, StoreError> {
        self.0.commit(commit).await
    }
}
