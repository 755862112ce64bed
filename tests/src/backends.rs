//! Backends for the conformance suite: each test body runs against memory, SQLite and
//! PostgreSQL.
//!
//! PostgreSQL tests need `SYNC_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`);
//! without it they print that they were skipped. Each test gets a schema of its own in that
//! database (through the connection's `search_path`), dropped when the test ends, so tests run in
//! parallel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::collections::BTreeMap;

use serde_json::Value;
use sync_runtime::{
    AnyBackend, AnyTransaction, Backend, ChangeLog, Commit, Committed, Engine, EngineBuilder,
    Failure, LogRead, Mutator, PostgresBackend, SnapshotPage, SnapshotRead, SqliteBackend, Store,
    StoreError, Transaction,
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
    backend: AnyBackend,
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
            backend: AnyBackend::new(sync_runtime::MemoryBackend::new()),
            place,
        };
        if kind != Kind::Memory {
            test.backend = test.open().await.expect("the test backend opens");
        }
        Some(test)
    }

    /// The backend (a handle: clones share it).
    pub fn backend(&self) -> AnyBackend {
        self.backend.clone()
    }

    /// Opens the same database again, as a restarted server (or a second node) would: a new
    /// connection (pool). The memory backend has nothing to reopen: `None`.
    pub async fn open(&self) -> Option<AnyBackend> {
        match &self.place {
            Place::Memory => None,
            Place::Sqlite { path, .. } => Some(AnyBackend::new(
                SqliteBackend::open(path).expect("the SQLite database opens"),
            )),
            Place::Postgres(schema) => Some(AnyBackend::new(
                PostgresBackend::connect(&schema.url)
                    .await
                    .expect("the PostgreSQL database opens"),
            )),
        }
    }

    /// Runs `sql` on the database behind the backend, as someone with a database client would:
    /// to corrupt a row, say. `false` for the memory backend, which has no database.
    pub async fn execute_sql(&self, sql: &str) -> bool {
        match &self.place {
            Place::Memory => false,
            Place::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("the SQLite database opens");
                conn.execute_batch(sql).expect("the SQL runs");
                true
            }
            Place::Postgres(schema) => {
                let (client, connection) =
                    tokio_postgres::connect(&schema.url, tokio_postgres::NoTls)
                        .await
                        .expect("the PostgreSQL database opens");
                let task = tokio::spawn(connection);
                client.batch_execute(sql).await.expect("the SQL runs");
                drop(client);
                let _ = task.await;
                true
            }
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
    pub fn builder(&self, mutator: impl Mutator) -> EngineBuilder {
        Engine::builder(mutator).backend(self.backend())
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

/// A backend whose transactions' reads fail once `allowed` of them have run, as a database that
/// goes away mid-push would. Clones share the budget.
/// It can also hold every commit until the test lets it through, as a database slow to answer
/// `COMMIT` would.
#[derive(Clone)]
pub struct FailingBackend {
    inner: AnyBackend,
    budget: Arc<std::sync::atomic::AtomicUsize>,
    commits: Option<Arc<tokio::sync::Semaphore>>,
}

impl FailingBackend {
    /// Fails every transaction read after the first `allowed`.
    pub fn new(inner: impl Backend, allowed: usize) -> Self {
        FailingBackend {
            inner: AnyBackend::new(inner),
            budget: Arc::new(std::sync::atomic::AtomicUsize::new(allowed)),
            commits: None,
        }
    }

    /// Fails no read, but holds every commit until [`let_commit`](Self::let_commit).
    pub fn holding_commits(inner: impl Backend) -> Self {
        FailingBackend {
            commits: Some(Arc::new(tokio::sync::Semaphore::new(0))),
            ..Self::new(inner, usize::MAX)
        }
    }

    /// Lets `n` held commits through.
    pub fn let_commit(&self, n: usize) {
        if let Some(commits) = &self.commits {
            commits.add_permits(n);
        }
    }

    /// Allows `more` further reads.
    pub fn allow(&self, more: usize) {
        self.budget.fetch_add(more, Ordering::SeqCst);
    }
}

impl Store for FailingBackend {
    async fn get(&self, scope: &str, entity: &str, id: &str) -> Result<Option<Value>, StoreError> {
        self.inner.get(scope, entity, id).await
    }

    async fn list(&self, scope: &str, entity: &str) -> Result<BTreeMap<String, Value>, StoreError> {
        self.inner.list(scope, entity).await
    }
}

impl ChangeLog for FailingBackend {
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

    async fn trim(&self, before: u64) -> Result<(), StoreError> {
        self.inner.trim(before).await
    }
}

impl Backend for FailingBackend {
    type Transaction = FailingTransaction;

    async fn begin(&self) -> Result<FailingTransaction, StoreError> {
        Ok(FailingTransaction {
            inner: self.inner.begin().await?,
            budget: Arc::clone(&self.budget),
            commits: self.commits.clone(),
        })
    }

    async fn snapshot(
        &self,
        scope: &str,
        page: SnapshotPage<'_>,
    ) -> Result<SnapshotRead, StoreError> {
        self.inner.snapshot(scope, page).await
    }
}

/// The transaction of a [`FailingBackend`].
pub struct FailingTransaction {
    inner: AnyTransaction,
    budget: Arc<std::sync::atomic::AtomicUsize>,
    commits: Option<Arc<tokio::sync::Semaphore>>,
}

impl FailingTransaction {
    fn spend(&self) -> Result<(), StoreError> {
        self.budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .map(drop)
            .map_err(|_| StoreError::new("the test backend is down"))
    }
}

impl Transaction for FailingTransaction {
    async fn get(
        &mut self,
        scope: &str,
        entity: &str,
        id: &str,
    ) -> Result<Option<Value>, StoreError> {
        self.spend()?;
        self.inner.get(scope, entity, id).await
    }

    async fn contains(&mut self, scope: &str, entity: &str, id: &str) -> Result<bool, StoreError> {
        self.spend()?;
        self.inner.contains(scope, entity, id).await
    }

    async fn list(
        &mut self,
        scope: &str,
        entity: &str,
    ) -> Result<BTreeMap<String, Value>, StoreError> {
        self.spend()?;
        self.inner.list(scope, entity).await
    }

    async fn client_seq(&mut self, client_id: &str) -> Result<Option<u64>, StoreError> {
        self.spend()?;
        self.inner.client_seq(client_id).await
    }

    async fn failure(
        &mut self,
        client_id: &str,
        client_seq: u64,
    ) -> Result<Option<Failure>, StoreError> {
        self.spend()?;
        self.inner.failure(client_id, client_seq).await
    }

    async fn commit(self, commit: Commit) -> Result<Committed, StoreError> {
        if let Some(commits) = &self.commits {
            let permit = commits.acquire().await;
            permit
                .map_err(|_| StoreError::new("the test closed the commit gate"))?
                .forget();
        }
        self.inner.commit(commit).await
    }
}
