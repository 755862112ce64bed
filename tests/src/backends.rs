//! Backends for the conformance suite: each test body runs against memory, SQLite and
//! PostgreSQL.
//!
//! PostgreSQL tests need `SYNC_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`);
//! without it they print that they were skipped. Each test gets a schema of its own in that
//! database (through the connection's `search_path`), dropped when the test ends, so tests run in
//! parallel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use sync_runtime::{
    Backend, ChangeLog, Committed, Engine, EngineBuilder, Mutator, NewChange, PostgresBackend,
    ScopeData, SqliteBackend, Store, StoreError, Transaction, Written, async_trait,
};

/// The environment variable that holds the PostgreSQL URL of the tests.
pub const POSTGRES_URL_VAR: &str = "SYNC_TEST_POSTGRES_URL";

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// [`sync_runtime::MemoryBackend`].
    Memory,
    /// [`SqliteBackend`] in a temporary directory.
    Sqlite,
    /// [`PostgresBackend`] in a schema of its own.
    Postgres,
}

/// A backend under test, and what to clean up after it.
pub struct TestBackend {
    /// Which kind it is.
    pub kind: Kind,
    backend: Arc<dyn Backend>,
    place: Place,
}

enum Place {
    Memory,
    Sqlite {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
    },
    Postgres(PgSchema),
}

impl TestBackend {
    /// A fresh, empty backend of `kind`; `None` (after printing why) where PostgreSQL is not
    /// configured.
    pub async fn new(kind: Kind) -> Option<Self> {
        let place = match kind {
            Kind::Memory => Place::Memory,
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let path = dir.path().join("sync.db");
                Place::Sqlite { _dir: dir, path }
            }
            Kind::Postgres => Place::Postgres(PgSchema::create().await?),
        };
        let mut test = TestBackend {
            kind,
            backend: Arc::new(sync_runtime::MemoryBackend::new()),
            place,
        };
        if kind != Kind::Memory {
            test.backend = test.open().await.expect("the test backend opens");
        }
        Some(test)
    }

    /// The backend.
    pub fn backend(&self) -> Arc<dyn Backend> {
        Arc::clone(&self.backend)
    }

    /// Opens the same database again, as a restarted server (or a second node) would: a new
    /// connection (pool). The memory backend has nothing to reopen: `None`.
    pub async fn open(&self) -> Option<Arc<dyn Backend>> {
        match &self.place {
            Place::Memory => None,
            Place::Sqlite { path, .. } => Some(Arc::new(
                SqliteBackend::open(path).expect("the SQLite database opens"),
            )),
            Place::Postgres(schema) => Some(Arc::new(
                PostgresBackend::connect(&schema.url)
                    .await
                    .expect("the PostgreSQL database opens"),
            )),
        }
    }

    /// What `--store` takes for this database, for child processes: `sqlite:PATH` or a
    /// PostgreSQL URL.
    pub fn store_arg(&self) -> Option<String> {
        match &self.place {
            Place::Memory => None,
            Place::Sqlite { path, .. } => Some(format!("sqlite:{}", path.display())),
            Place::Postgres(schema) => Some(schema.url.clone()),
        }
    }

    /// An engine builder on this backend.
    pub fn builder<M: Mutator>(&self, mutator: M) -> EngineBuilder<M> {
        Engine::builder()
            .mutator(mutator)
            .backend(SharedBackend(self.backend()))
    }

    /// An engine with [`crate::RulesMutator`].
    pub fn rules_engine(&self) -> Engine {
        self.builder(crate::RulesMutator).build()
    }

    /// An engine with the todo example's mutator.
    pub fn todo_engine(&self) -> Engine {
        self.builder(todo::TodoMutator).build()
    }
}

/// Runs `body` on a fresh backend of `kind`, unless the kind is not configured.
pub async fn run<F, Fut>(kind: Kind, body: F)
where
    F: FnOnce(TestBackend) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Some(backend) = TestBackend::new(kind).await {
        body(backend).await;
    }
}

/// Runs each named `async fn(TestBackend)` as three tests, `NAME::memory`, `NAME::sqlite` and
/// `NAME::postgres`, with the given test attribute.
#[macro_export]
macro_rules! on_every_backend {
    (#[$attr:meta] $($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::backends::{Kind, run};
                #[$attr]
                async fn memory() { run(Kind::Memory, super::$name).await }
                #[$attr]
                async fn sqlite() { run(Kind::Sqlite, super::$name).await }
                #[$attr]
                async fn postgres() { run(Kind::Postgres, super::$name).await }
            }
        )*
    };
}

/// A shared `dyn Backend` as an `impl Backend`, for [`EngineBuilder::backend`].
#[derive(Clone)]
pub struct SharedBackend(pub Arc<dyn Backend>);

#[async_trait]
impl Backend for SharedBackend {
    async fn begin(&self) -> Result<Box<dyn Transaction>, StoreError> {
        self.0.begin().await
    }

    fn changelog(&self) -> &dyn ChangeLog {
        self.0.changelog()
    }

    async fn snapshot(&self, scope: &str) -> Result<(ScopeData, u64), StoreError> {
        self.0.snapshot(scope).await
    }
}

/// The PostgreSQL URL of the tests, if set.
pub fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// A schema of its own in the test database, dropped on drop.
pub struct PgSchema {
    /// The URL that puts connections in the schema.
    pub url: String,
    base: String,
    name: String,
}

impl PgSchema {
    /// Creates a uniquely named schema; `None` (after printing that the test was skipped) where
    /// [`POSTGRES_URL_VAR`] is not set.
    pub async fn create() -> Option<Self> {
        let Some(base) = postgres_url() else {
            println!("skipped: {POSTGRES_URL_VAR} is not set, so this PostgreSQL test did not run");
            return None;
        };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "sync_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_VAR}: {e}"));
        let task = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create schema {name}: {e}"));
        drop(client);
        let _ = task.await;
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-csearch_path%3D{name}");
        Some(PgSchema { url, base, name })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let base = self.base.clone();
        let name = self.name.clone();
        // A runtime of its own on a thread of its own: drop may run inside a test's runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(connection);
                // A transaction the test dropped last may not have rolled back yet (its
                // rollback task runs on the test's runtime, which is ending): end its session.
                client
                    .batch_execute(&format!(
                        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l
                         JOIN pg_class c ON c.oid = l.relation
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = '{name}' AND l.pid <> pg_backend_pid();
                         SET lock_timeout = '5s';
                         DROP SCHEMA IF EXISTS {name} CASCADE"
                    ))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop test schema {}", self.name);
        }
    }
}

/// A backend whose mutations fail once `allowed` have begun, as a database that goes away
/// mid-push would. Clones share the budget.
#[derive(Clone)]
pub struct FailingBackend {
    inner: Arc<dyn Backend>,
    budget: Arc<std::sync::atomic::AtomicUsize>,
}

impl FailingBackend {
    /// Fails every mutation after the first `allowed`.
    pub fn new(inner: impl Backend, allowed: usize) -> Self {
        Self::over(Arc::new(inner), allowed)
    }

    /// Like [`FailingBackend::new`], over a shared backend.
    pub fn over(inner: Arc<dyn Backend>, allowed: usize) -> Self {
        FailingBackend {
            inner,
            budget: Arc::new(std::sync::atomic::AtomicUsize::new(allowed)),
        }
    }

    /// Allows `more` further mutations.
    pub fn allow(&self, more: usize) {
        self.budget.fetch_add(more, Ordering::SeqCst);
    }
}

#[async_trait]
impl Backend for FailingBackend {
    async fn begin(&self) -> Result<Box<dyn Transaction>, StoreError> {
        let inner = self.inner.begin().await?;
        Ok(Box::new(FailingTransaction {
            inner,
            budget: Arc::clone(&self.budget),
        }))
    }

    fn changelog(&self) -> &dyn ChangeLog {
        self.inner.changelog()
    }

    async fn snapshot(&self, scope: &str) -> Result<(ScopeData, u64), StoreError> {
        self.inner.snapshot(scope).await
    }
}

struct FailingTransaction {
    inner: Box<dyn Transaction>,
    budget: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait]
impl Store for FailingTransaction {
    async fn get(&self, scope: &str, entity: &str, id: &str) -> Result<Option<Value>, StoreError> {
        self.inner.get(scope, entity, id).await
    }

    async fn set(
        &self,
        scope: &str,
        entity: &str,
        id: &str,
        data: Value,
    ) -> Result<Written, StoreError> {
        self.inner.set(scope, entity, id, data).await
    }

    async fn delete(&self, scope: &str, entity: &str, id: &str) -> Result<bool, StoreError> {
        self.inner.delete(scope, entity, id).await
    }

    async fn list(&self, scope: &str, entity: &str) -> Result<Vec<Value>, StoreError> {
        self.inner.list(scope, entity).await
    }

    async fn snapshot(&self, scope: &str) -> Result<ScopeData, StoreError> {
        self.inner.snapshot(scope).await
    }
}

#[async_trait]
impl Transaction for FailingTransaction {
    async fn last_client_seq(&self, client_id: &str) -> Result<Option<u64>, StoreError> {
        self.inner.last_client_seq(client_id).await
    }

    async fn begin_mutation(&self) -> Result<(), StoreError> {
        let took = self
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            });
        if took.is_err() {
            return Err(StoreError::new("the test backend is down"));
        }
        self.inner.begin_mutation().await
    }

    async fn rollback_mutation(&self) -> Result<(), StoreError> {
        self.inner.rollback_mutation().await
    }

    async fn finish_mutation(
        &self,
        changes: Vec<NewChange>,
        client: Option<(&str, u64)>,
    ) -> Result<(), StoreError> {
        self.inner.finish_mutation(changes, client).await
    }

    async fn commit(self: Box<Self>) -> Result<Vec<Committed>, StoreError> {
        self.inner.commit().await
    }
}
