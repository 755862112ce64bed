//! The PostgreSQL backend: the same tables as SQLite, shared by several engine nodes.
//!
//! - **Cursors in commit order, across nodes.** A push's transaction locks the single row of
//!   `sync_head` (`SELECT … FOR UPDATE`) when it begins, and advances it when it commits. Writing
//!   transactions are thus serialized on every node, so each one reads a state no concurrent
//!   push changes, a retried mutation is deduplicated even when its duplicates arrive on two
//!   nodes at once, and the cursors a commit assigns are all above those of every earlier
//!   commit. A sequence alone would not do: a later cursor could commit first, and a puller that
//!   saw it would skip the earlier one for good.
//! - **Few round trips.** One transaction per push. Its mutations read in it and buffer their
//!   writes in memory, where a permanent failure undoes them (no savepoint per mutation); its
//!   commit writes the entities, the clients' sequence numbers and the changes with one
//!   statement each, pipelined, then `COMMIT`. On each node an async gate lets one push at a
//!   time wait for the row lock, so waiting pushes do not hold pool connections that pulls need.
//! - **Consistent reads without locks.** A pull is one statement: the head, the scope's trim
//!   horizon and the page come from one snapshot. So is a snapshot.
//! - **Versioned schema** (`schema`), created on connect.

mod log;
mod schema;
mod tx;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use serde_json::Value;
use tokio_postgres::NoTls;

use super::sql::DbError;
use super::{Backend, ChangeLog, LogRead, SnapshotPage, SnapshotRead, Store};
use crate::error::StoreError;

pub use self::tx::PostgresTransaction;

/// How a [`PostgresBackend`] connects.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// Most connections this node opens (default 16).
    pub pool_size: usize,
    /// How long a request waits for a free connection, or for a new one to open, before it
    /// fails with 503 (default 30 s).
    pub timeout: Duration,
    /// How long a push waits for the log's lock that another push holds (default 30 s;
    /// `lock_timeout`).
    pub lock_timeout: Duration,
    /// How long one statement may run (default 30 s; `statement_timeout`).
    pub statement_timeout: Duration,
    /// How long a push's transaction may sit idle, e.g. in a mutator that waits on something
    /// else, before the server ends it and frees its lock (default 60 s;
    /// `idle_in_transaction_session_timeout`): a node that dies mid-push holds up the others
    /// this long at most.
    pub idle_in_transaction_timeout: Duration,
    /// TCP keepalives from this idle time on (default 30 s), so that a connection to a server
    /// that vanished is noticed in about a minute rather than in the kernel's two hours.
    pub keepalive_idle: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 16,
            timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(30),
            statement_timeout: Duration::from_secs(30),
            idle_in_transaction_timeout: Duration::from_secs(60),
            keepalive_idle: Duration::from_secs(30),
        }
    }
}

impl PostgresOptions {
    /// The session settings these options ask for, as `options` sends them at connect time,
    /// after any the URL gives.
    fn session(&self, from_url: Option<&str>) -> String {
        let millis = |duration: Duration| duration.as_millis().max(1);
        let mut settings = from_url.map(str::to_owned).unwrap_or_default();
        for (name, value) in [
            ("lock_timeout", self.lock_timeout),
            ("statement_timeout", self.statement_timeout),
            (
                "idle_in_transaction_session_timeout",
                self.idle_in_transaction_timeout,
            ),
        ] {
            settings.push_str(&format!(" -c {name}={}", millis(value)));
        }
        settings.trim().to_owned()
    }
}

/// A durable backend in a PostgreSQL database, which several engine nodes may share: cursors
/// become visible in commit order and duplicates apply once across all of them.
///
/// ```no_run
/// use sync_runtime::{Engine, MutatorFunc, PostgresBackend};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Creates the tables on first use; every node connects to the same database.
/// let backend = PostgresBackend::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// let mutator = MutatorFunc::new(|tx, m| Box::pin(async move {
///     tx.put_value("note", "n1", m.args.clone()).await?;
///     Ok(None)
/// }));
/// let engine = Engine::builder(mutator).backend(backend).build();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresBackend {
    inner: Arc<Inner>,
    log_id: Arc<str>,
}

struct Inner {
    pool: Pool,
    /// One push per node waits for the database's writer lock; the others wait here.
    gate: Arc<tokio::sync::Mutex<()>>,
    /// The database, for messages (without the password).
    target: String,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}

/// A PostgreSQL error as a [`StoreError`]: what PostgreSQL can never store (classes 22 and 54)
/// is invalid input, which no retry stores; the rest is a failure of the store.
impl DbError for tokio_postgres::Error {
    fn into_store_error(self, what: String) -> StoreError {
        // Class 22 (data exception: a value the column cannot hold) and class 54 (program limit
        // exceeded: e.g. a key too large for its index) fail the same way on every retry.
        let unstorable = self
            .code()
            .is_some_and(|code| code.code().starts_with("22") || code.code().starts_with("54"));
        if unstorable {
            let cause = self
                .as_db_error()
                .map_or_else(|| self.to_string(), |db| db.message().to_owned());
            return StoreError::invalid_input(format!("PostgreSQL: {what}: {cause}"));
        }
        StoreError::with_source(format!("PostgreSQL: {what}"), self)
    }
}

impl PostgresBackend {
    /// Connects to the database at `url` (`postgres://user:password@host:port/dbname`, or
    /// `key=value` pairs) with the default [`PostgresOptions`], and creates or checks the
    /// schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects with `options`.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|error| {
            StoreError::with_source("PostgreSQL: the connection URL is invalid", error)
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.timeout);
        }
        let session = options.session(config.get_options());
        config
            .options(&session)
            .keepalives(true)
            .keepalives_idle(options.keepalive_idle);
        let target = describe(&config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.timeout))
            .build()
            .map_err(|error| {
                StoreError::with_source(
                    format!("PostgreSQL: cannot set up a pool for {target}"),
                    error,
                )
            })?;
        let inner = Arc::new(Inner {
            pool,
            gate: Arc::new(tokio::sync::Mutex::new(())),
            target,
        });
        let mut client = inner.connection().await?;
        let log_id = schema::migrate(&mut client, &inner.target).await?;
        drop(client);
        Ok(PostgresBackend {
            inner,
            log_id: log_id.into(),
        })
    }
}

/// `user@host:port/dbname`, for messages.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

impl Inner {
    /// A pooled connection. The error names no host, user or database: it may reach a
    /// client's 503; the log line has them.
    async fn connection(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|error| {
            tracing::warn!(database = %self.target, %error, "cannot get a PostgreSQL connection");
            StoreError::with_source("PostgreSQL: cannot get a connection to the database", error)
        })
    }
}

impl Store for PostgresBackend {
    async fn get(&self, scope: &str, entity: &str, id: &str) -> Result<Option<Value>, StoreError> {
        tx::get(&*self.inner.connection().await?, scope, entity, id).await
    }

    async fn list(&self, scope: &str, entity: &str) -> Result<BTreeMap<String, Value>, StoreError> {
        tx::list(&*self.inner.connection().await?, scope, entity).await
    }
}

impl ChangeLog for PostgresBackend {
    fn log_id(&self) -> &str {
        &self.log_id
    }

    async fn read(
        &self,
        scope: &str,
        after: u64,
        limit: usize,
        client_id: Option<&str>,
    ) -> Result<LogRead, StoreError> {
        let client = self.inner.connection().await?;
        log::read(&client, scope, after, limit, client_id).await
    }

    async fn head(&self) -> Result<u64, StoreError> {
        log::head(&*self.inner.connection().await?).await
    }

    async fn scope_cursor(&self, scope: &str) -> Result<u64, StoreError> {
        log::scope_cursor(&*self.inner.connection().await?, scope).await
    }

    async fn scope_cursors(&self, scopes: &[&str]) -> Result<Vec<u64>, StoreError> {
        log::scope_cursors(&*self.inner.connection().await?, scopes).await
    }

    async fn trim(&self, before: u64) -> Result<(), StoreError> {
        log::trim(&*self.inner.connection().await?, before).await
    }
}

impl Backend for PostgresBackend {
    type Transaction = PostgresTransaction;

    async fn begin(&self) -> Result<PostgresTransaction, StoreError> {
        PostgresTransaction::begin(&self.inner).await
    }

    async fn snapshot(
        &self,
        scope: &str,
        page: SnapshotPage<'_>,
    ) -> Result<SnapshotRead, StoreError> {
        log::snapshot(&*self.inner.connection().await?, scope, page).await
    }
}
