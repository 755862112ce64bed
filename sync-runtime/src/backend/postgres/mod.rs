//! The PostgreSQL backend: the same tables as SQLite, shared by several engine nodes.
//!
//! Pushes commit concurrently, on one node and across nodes, so that the server shares its WAL
//! flushes between them; pullers still never skip a change. How (schema version 3):
//!
//! - **Cursors in transaction-id order.** A push takes its cursors when it commits, from the
//!   sequence `sync_cursor`, and in the same step gets its transaction id
//!   (`pg_current_xact_id()`), both under one advisory lock (the *cursor lock*), a session lock
//!   that the statement which takes the cursors takes and releases: a few microseconds, not
//!   until `COMMIT`. A rollback releases it where that statement failed in between.
//!   Nothing a push does earlier takes a transaction id (its writes wait in memory, and its
//!   locks are advisory), so between any two pushes that log changes, the one with the lower
//!   transaction id has the lower cursors. Each change row records its transaction's id
//!   (`xid`). Cursors of a commit that rolls back are never used: gaps, as the protocol allows.
//! - **The visibility horizon.** Every read takes `xmin`, the oldest transaction id still in
//!   progress in its own snapshot (`pg_snapshot_xmin(pg_current_snapshot())`), and sees only the
//!   changes with `xid < xmin`. Those transactions have all ended before the snapshot, so what
//!   they committed is visible to it; and since a push in flight has an id of at least `xmin`, so
//!   that its cursors are above all of theirs, the changes behind the horizon are the whole log
//!   up to their highest cursor: no cursor below one a read returns can appear later. Pull pages
//!   (and so `has_more`), the head, `scope_cursor(s)` (live JOINs), snapshots, a client's
//!   `client_seq` and trims all stay behind it. A commit answers (and so the engine pokes) only
//!   once the horizon has passed its own transaction: its cursors are then visible to every
//!   pull, on every node, and so are those of the PostgresBroker's NOTIFY. A node's commits
//!   wait for that together: each look at the horizon wakes every commit it passed (`horizon`).
//!   The horizon trails
//!   the commits in flight by the time they take to end, usually the WAL flush they share.
//!   Any transaction of the cluster that holds a transaction id holds the horizon back too: a
//!   long-running writer (in any database of the server) delays pulls, pokes and push answers
//!   until it ends, though it blocks no commit. `idle_in_transaction_timeout` bounds the delay a
//!   node that dies in a commit causes.
//! - **The head's floor.** `sync_head` no longer counts commits: it keeps the highest cursor a
//!   trim removed (or the head of version 2), so that the head never goes down when the changes
//!   behind it are trimmed.
//! - **Dedupe and read-modify-write, per client and per scope.** A push takes an advisory lock
//!   per client (before it reads that client's `client_seq`) and per scope (before its first read
//!   in the scope, or at commit for a scope it only writes), held until it ends. Duplicates that
//!   arrive on two nodes at once thus apply once, a push reads a state of its scopes that no
//!   concurrent push changes, and within a scope, cursors follow the order of the entity writes.
//!   Pushes to different scopes by different clients share no lock but the cursor lock. The lock
//!   keys are 64-bit hashes of the log's identity and the name ([`LockKeys`]): two logs in one
//!   database do not share locks. A push that locks two scopes in the opposite order of another
//!   may deadlock with it; the server detects that and fails one, which answers 503 and is
//!   retried.
//! - **A client's sequence number behind the horizon.** Each client record keeps the `xid` that
//!   wrote it and `prev_seq`, the number it replaced where that one was already behind the
//!   horizon: a read whose horizon has not passed the record's writer answers `prev_seq`, so that
//!   a pull never counts a mutation whose changes it cannot return yet.
//! - **A group commit in a few lanes.** A node runs a few *lanes* (`PostgresOptions::lanes`),
//!   each with one open transaction at a time, which the pushes that arrive meanwhile share: a
//!   push joins a lane and runs after the group's earlier pushes, one at a time, reading what
//!   they wrote (`group`); the group writes everything in one statement and commits once, with
//!   one WAL flush for all. A lone push commits at once. A push joins the lane whose group holds
//!   (or whose queue awaits) its first mutation's client or scope, so pushes to one scope share
//!   a group rather than wait on each other's locks, else the least loaded (`lane`). Pushes
//!   waiting for their turn wait in memory, without a connection: a hot scope does not empty
//!   the pool. A group never waits for a lock while it holds another push's: where a push's
//!   first locks are taken, the group commits what it has first, and the push waits in a fresh
//!   transaction; and the locks of what a push only writes are taken before the next push joins
//!   (a push's later locks, in a second scope, wait in the group, where PostgreSQL's deadlock
//!   detection sees them).
//! - **Few round trips.** For one mutation, three round trips (the client's and the scope's
//!   locks and `client_seq` with `BEGIN`, the entity read, then the group's commit). The
//!   commit is one pipeline: one statement of CTEs takes the locks not yet held, the cursor
//!   lock, the transaction id and the cursors, and writes the entities, the clients' sequence
//!   numbers, the changes and the failures; then the `COMMIT` and the first look at the
//!   horizon. (A commit that deletes in a scope, or records a client, it had not locked locks
//!   it in a statement before: a `DELETE` sees what its statement's snapshot holds, and a
//!   client's `prev_seq` is decided by it, so that snapshot must follow the lock.)
//!   Where a statement fails, the transaction is aborted and every push of the group fails.
//! - **Versioned schema** (`schema`), created or migrated on connect.

mod claims;
mod entities;
mod group;
mod horizon;
mod lane;
mod log;
mod schema;
mod tx;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// How long a push waits for a scope's or a client's lock that another push holds
    /// (default 30 s; `lock_timeout`).
    pub lock_timeout: Duration,
    /// How long one statement may run (default 30 s; `statement_timeout`), and how long a
    /// snapshot waits for the visibility horizon to pass the changes its scope holds.
    pub statement_timeout: Duration,
    /// How long a push's transaction may sit idle, e.g. in a mutator that waits on something
    /// else, before the server ends it and frees its locks (default 60 s;
    /// `idle_in_transaction_session_timeout`): a node that dies mid-push holds up the others
    /// this long at most.
    pub idle_in_transaction_timeout: Duration,
    /// TCP keepalives from this idle time on (default 30 s), so that a connection to a server
    /// that vanished is noticed in about a minute rather than in the kernel's two hours.
    pub keepalive_idle: Duration,
    /// How many transactions this node's pushes share (default 2, at most `pool_size`): pushes
    /// that arrive while others run join one of these *lanes* and commit together with the
    /// pushes before them, one `COMMIT` and WAL flush for several. Fewer lanes make larger
    /// groups, which cost the database less per push; more let more pushes wait on locks at
    /// once, and suit a database server with many cores. 2 gave the most pushes per second
    /// on a 2-core server (BENCHMARKS.md, 2026-12-08, second session).
    pub lanes: usize,
    /// Runs in every commit once its cursors are taken and its writes made, before `COMMIT`: for
    /// tests that need a commit to stall there, holding low cursors.
    #[doc(hidden)]
    pub before_commit: Option<PostgresCommitHook>,
}

/// A hook of [`PostgresOptions::before_commit`].
#[doc(hidden)]
#[derive(Clone)]
pub struct PostgresCommitHook(
    pub Arc<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>,
);

impl std::fmt::Debug for PostgresCommitHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgresCommitHook")
    }
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
            lanes: 2,
            before_commit: None,
        }
    }
}

impl PostgresOptions {
    /// The session settings these options ask for, as `options` sends them at connect time,
    /// after any the URL gives.
    fn session(&self, from_url: Option<&str>) -> String {
        let millis = |duration: Duration| duration.as_millis().max(1);
        let mut settings = from_url.map(str::to_owned).unwrap_or_default();
        // The push's commit statement is big enough that PostgreSQL's default keeps planning
        // it afresh for its parameters, about 0.25 ms of the server's CPU per push, which cost
        // a third of the throughput of 16 pushers on 2 cores (BENCHMARKS.md, 2026-12-03); its
        // generic plan serves every size of push alike. The backend's other statements are key
        // lookups and index ranges, which generic plans serve as well: a pull's page takes the
        // (scope, cursor) index whatever its parameters.
        settings.push_str(" -c plan_cache_mode=force_generic_plan");
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
///     tx.put_value("note", "n1", &m.args).await?;
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
    /// The transactions this node's pushes share.
    lanes: lane::Lanes,
    /// How long a lane waits for the next request of the push it serves.
    idle_in_transaction_timeout: Duration,
    /// Transactions this node committed pushes in.
    commits: std::sync::atomic::AtomicU64,
    /// The advisory lock keys of this log.
    keys: LockKeys,
    /// What this node's commits have seen of the visibility horizon.
    horizon: horizon::Horizon,
    /// How long a snapshot waits for the horizon.
    patience: Duration,
    before_commit: Option<PostgresCommitHook>,
    /// The database, for messages (without the password).
    target: String,
}

/// The keys of the advisory locks a push takes: FNV-1a (64 bits) of the log's identity, a kind
/// and a name. Every node derives the same ones, which makes them part of the schema: a later
/// version must keep them while nodes of both versions may run. A collision between two names
/// only makes their pushes wait for each other.
#[derive(Clone, Debug)]
pub(super) struct LockKeys {
    /// The hash of the log's identity, from which each key continues.
    log: u64,
}

impl LockKeys {
    fn new(log_id: &str) -> Self {
        LockKeys {
            log: fnv1a(FNV_OFFSET, log_id.as_bytes()),
        }
    }

    fn key(&self, kind: u8, name: &str) -> i64 {
        let hash = fnv1a(fnv1a(self.log, &[0, kind]), name.as_bytes());
        i64::from_ne_bytes(hash.to_ne_bytes())
    }

    /// The lock under which a push takes its cursors and its transaction id.
    pub(super) fn cursors(&self) -> i64 {
        self.key(b'c', "")
    }

    /// The lock of one scope's data.
    pub(super) fn scope(&self, scope: &str) -> i64 {
        self.key(b's', scope)
    }

    /// The lock of one client's sequence numbers and failures.
    pub(super) fn client(&self, client_id: &str) -> i64 {
        self.key(b'k', client_id)
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Waiting, by polling with a growing pause, for the visibility horizon to pass what a read or a
/// commit needs. It passes once the transactions in flight end, which PostgreSQL offers no way
/// to wait for from SQL.
pub(super) struct Patience {
    started: Instant,
    pause: Duration,
    /// Beyond it a read gives up; a commit (already durable) only warns, and goes on waiting.
    limit: Duration,
    warned: bool,
}

impl Patience {
    const FIRST_PAUSE: Duration = Duration::from_micros(200);
    const LONGEST_PAUSE: Duration = Duration::from_millis(20);

    pub(super) fn new(limit: Duration) -> Self {
        Patience {
            started: Instant::now(),
            pause: Self::FIRST_PAUSE,
            limit,
            warned: false,
        }
    }

    /// Pauses before the next look; fails once `limit` has passed.
    pub(super) async fn wait(&mut self, what: impl FnOnce() -> String) -> Result<(), StoreError> {
        if self.started.elapsed() >= self.limit {
            return Err(StoreError::new(format!(
                "PostgreSQL: {} waited {:?} for the transactions in flight to end: a long \
                 transaction holds the change log's visibility horizon back",
                what(),
                self.limit
            )));
        }
        self.pause().await;
        Ok(())
    }

    /// Pauses before the next look, warning once when `limit` has passed.
    pub(super) async fn wait_long(&mut self, what: impl FnOnce() -> String) {
        if !self.warned && self.started.elapsed() >= self.limit {
            self.warned = true;
            tracing::warn!(
                "{} has waited {:?} for the transactions in flight to end: a long transaction \
                 holds the change log's visibility horizon back",
                what(),
                self.limit
            );
        }
        self.pause().await;
    }

    async fn pause(&mut self) {
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Self::LONGEST_PAUSE);
    }
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
        let mut client = pool.get().await.map_err(|error| {
            tracing::warn!(database = %target, %error, "cannot get a PostgreSQL connection");
            StoreError::with_source("PostgreSQL: cannot get a connection to the database", error)
        })?;
        let log_id = schema::migrate(&mut client, &target).await?;
        drop(client);
        let inner = Arc::new(Inner {
            pool,
            lanes: lane::Lanes::new(options.lanes.min(options.pool_size.max(1))),
            idle_in_transaction_timeout: options.idle_in_transaction_timeout,
            commits: Default::default(),
            keys: LockKeys::new(&log_id),
            horizon: horizon::Horizon::default(),
            patience: options.statement_timeout,
            before_commit: options.before_commit,
            target,
        });
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

impl PostgresBackend {
    /// How many of the pool's connections are open, idle, and how many requests wait for one.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn pool_status(&self) -> deadpool_postgres::Status {
        self.inner.pool.status()
    }
}

/// What a node's requests wait for at one moment: see [`PostgresBackend::waiting`].
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostgresWaiting {
    /// Requests waiting for a pooled connection.
    pub for_connection: usize,
    /// Pushes waiting in memory for their turn in a lane.
    pub for_turn: usize,
    /// Connections open and idle in the pool.
    pub idle: usize,
}

impl PostgresBackend {
    /// What this node's requests wait for, for tests of the pool's use.
    #[doc(hidden)]
    pub fn waiting(&self) -> PostgresWaiting {
        let status = self.inner.pool.status();
        PostgresWaiting {
            for_connection: status.waiting,
            for_turn: self.inner.lanes.queued(),
            idle: status.available,
        }
    }
}

impl PostgresBackend {
    /// How many transactions this node has committed pushes in, for tests of the group commit.
    #[doc(hidden)]
    pub fn commits(&self) -> u64 {
        self.inner
            .commits
            .load(std::sync::atomic::Ordering::Relaxed)
    }
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
        entities::get(&*self.inner.connection().await?, scope, entity, id).await
    }

    async fn list(&self, scope: &str, entity: &str) -> Result<BTreeMap<String, Value>, StoreError> {
        entities::list(&*self.inner.connection().await?, scope, entity).await
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
        Ok(PostgresTransaction::begin(&self.inner))
    }

    async fn snapshot(
        &self,
        scope: &str,
        page: SnapshotPage<'_>,
    ) -> Result<SnapshotRead, StoreError> {
        let patience = Patience::new(self.inner.patience);
        log::snapshot(&*self.inner.connection().await?, scope, page, patience).await
    }
}
