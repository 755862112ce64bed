//! Operational metrics, through the [`metrics`](https://docs.rs/metrics) facade (cargo feature
//! `metrics`): counters, gauges and histograms for whatever recorder the application installs,
//! e.g. `metrics-exporter-prometheus`, which serves them in Prometheus' text format. Without a
//! recorder every call is a cheap no-op; without the feature there are no calls at all.
//!
//! | name | type | labels | what |
//! | --- | --- | --- | --- |
//! | `sync_pushes_total` | counter | `outcome` | pushes: `ok`, or the protocol's error code (`unavailable`, `unauthorized`, `forbidden`, `invalid_request`, ...) |
//! | `sync_mutations_total` | counter | `outcome` | mutations of answered pushes: `applied`, `duplicate` (a retry), `failed` (`ok: false`) |
//! | `sync_pulls_total` | counter | `outcome` | pulls: `ok` or the error code (`cursor_too_old`, ...) |
//! | `sync_snapshots_total` | counter | `outcome` | snapshot pages: `ok` or the error code |
//! | `sync_push_duration_seconds` | histogram | | a push from its arrival at the engine to its answer, commit and pokes included |
//! | `sync_pull_duration_seconds` | histogram | | a pull page |
//! | `sync_snapshot_duration_seconds` | histogram | | a snapshot page |
//! | `sync_log_head` | gauge | | the change log's latest cursor (sampled) |
//! | `sync_log_retained_changes` | gauge | | cursors from the lowest this node's trims kept to the head: an upper bound of the changes the log holds (sampled) |
//! | `sync_live_connections` | gauge | | this node's open live (WebSocket) connections |
//! | `sync_pokes_sent_total` | counter | | POKE frames written to live connections |
//! | `sync_pokes_merged_total` | counter | | pokes folded into an unsent one of the same scope and connection: a slow reader gets the latest cursor once |
//! | `sync_pokes_dropped_total` | counter | | pokes never sent, their connection gone first |
//! | `sync_store_errors_total` | counter | `operation`, `kind` | store failures: `operation` is `push`, `pull`, `snapshot`, `trim` or `head` (a sample); `kind` is `connection`, `pool` (no free connection in time), `timeout` (a statement or lock timeout), `conflict` (a deadlock or serialization failure), `busy` (SQLite), `database` (another error of the database), `invalid_input` (data no store can hold: the mutation failed) or `other` |
//! | `sync_postgres_pool_connections` | gauge | `state` | the PostgreSQL pool's connections, `in_use` or `idle` (sampled) |
//! | `sync_postgres_pool_waiting` | gauge | | requests waiting for a pooled connection (sampled) |
//! | `sync_postgres_pool_max` | gauge | | the pool's size limit |
//! | `sync_postgres_group_commits_total` | counter | | PostgreSQL transactions that committed pushes: `sync_pushes_total` divided by it is how many pushes share one commit (its `COMMIT` and WAL flush) |
//! | `sync_postgres_horizon_wait_seconds` | histogram | | how long a PostgreSQL commit, once committed, waited for the transactions in flight before it (the visibility horizon) to end before it answered; 0 where none was left. A long one means a long transaction somewhere on the server |
//!
//! Counters and histograms are recorded as things happen; the gauges marked *sampled* are set
//! by [`Engine::sample_metrics`](crate::Engine::sample_metrics), which an application calls
//! when it is scraped (or on a timer): reading the head costs a query, which no push should pay
//! for. Histograms are in seconds; [`LATENCY_BUCKETS`] are bucket bounds that fit them.
//!
//! ```no_run
//! # async fn serve(engine: sync_runtime::Engine) {
//! // With `metrics-exporter-prometheus` among the application's dependencies:
//! use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
//!
//! let handle = PrometheusBuilder::new()
//!     .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), sync_runtime::metrics::LATENCY_BUCKETS)
//!     .unwrap()
//!     .install_recorder()
//!     .unwrap();
//! sync_runtime::metrics::describe();
//! let metrics = axum::routing::get(move || async move {
//!     engine.sample_metrics().await;
//!     handle.render()
//! });
//! let app = axum::Router::<()>::new().route("/metrics", metrics);
//! # let _ = app; }
//! ```

use std::time::Instant;

use crate::error::{StoreError, SyncError};
use crate::protocol::PushResponse;

/// Pushes, by `outcome`.
pub const PUSHES: &str = "sync_pushes_total";
/// Mutations of answered pushes, by `outcome`.
pub const MUTATIONS: &str = "sync_mutations_total";
/// Pulls, by `outcome`.
pub const PULLS: &str = "sync_pulls_total";
/// Snapshot pages, by `outcome`.
pub const SNAPSHOTS: &str = "sync_snapshots_total";
/// How long pushes take, in seconds.
pub const PUSH_DURATION: &str = "sync_push_duration_seconds";
/// How long pulls take, in seconds.
pub const PULL_DURATION: &str = "sync_pull_duration_seconds";
/// How long snapshot pages take, in seconds.
pub const SNAPSHOT_DURATION: &str = "sync_snapshot_duration_seconds";
/// The log's latest cursor.
pub const LOG_HEAD: &str = "sync_log_head";
/// Cursors the log may still hold.
pub const LOG_RETAINED: &str = "sync_log_retained_changes";
/// Open live connections.
pub const LIVE_CONNECTIONS: &str = "sync_live_connections";
/// POKE frames sent.
pub const POKES_SENT: &str = "sync_pokes_sent_total";
/// Pokes merged into an unsent one.
pub const POKES_MERGED: &str = "sync_pokes_merged_total";
/// Pokes never sent.
pub const POKES_DROPPED: &str = "sync_pokes_dropped_total";
/// Store failures, by `operation` and `kind`.
pub const STORE_ERRORS: &str = "sync_store_errors_total";
/// The PostgreSQL pool's connections, by `state`.
pub const POOL_CONNECTIONS: &str = "sync_postgres_pool_connections";
/// Requests waiting for a PostgreSQL connection.
pub const POOL_WAITING: &str = "sync_postgres_pool_waiting";
/// The PostgreSQL pool's size limit.
pub const POOL_MAX: &str = "sync_postgres_pool_max";
/// PostgreSQL transactions that committed pushes.
pub const GROUP_COMMITS: &str = "sync_postgres_group_commits_total";
/// How long a PostgreSQL commit waited for the visibility horizon.
pub const HORIZON_WAIT: &str = "sync_postgres_horizon_wait_seconds";

/// Histogram bounds for the `_seconds` metrics: 0.5 ms to 10 s, about three per decade.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Gives every metric its description and unit, for recorders that show them (Prometheus'
/// `# HELP` lines). Call it once, after installing the recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

    describe_counter!(
        PUSHES,
        "Pushes, by outcome: ok or the protocol's error code"
    );
    describe_counter!(
        MUTATIONS,
        "Mutations of answered pushes, by outcome: applied, duplicate or failed"
    );
    describe_counter!(PULLS, "Pulls, by outcome: ok or the protocol's error code");
    describe_counter!(
        SNAPSHOTS,
        "Snapshot pages, by outcome: ok or the protocol's error code"
    );
    describe_histogram!(PUSH_DURATION, Unit::Seconds, "How long a push takes");
    describe_histogram!(PULL_DURATION, Unit::Seconds, "How long a pull page takes");
    describe_histogram!(
        SNAPSHOT_DURATION,
        Unit::Seconds,
        "How long a snapshot page takes"
    );
    describe_gauge!(LOG_HEAD, "The change log's latest cursor");
    describe_gauge!(
        LOG_RETAINED,
        "Cursors from the lowest the retention kept to the head (an upper bound of the changes held)"
    );
    describe_gauge!(LIVE_CONNECTIONS, "Open live connections on this node");
    describe_counter!(POKES_SENT, "POKE frames written to live connections");
    describe_counter!(
        POKES_MERGED,
        "Pokes merged into an unsent poke of the same scope and connection"
    );
    describe_counter!(
        POKES_DROPPED,
        "Pokes never sent: their connection closed first"
    );
    describe_counter!(STORE_ERRORS, "Store failures, by operation and kind");
    describe_gauge!(
        POOL_CONNECTIONS,
        "PostgreSQL pool connections, by state: in_use or idle"
    );
    describe_gauge!(
        POOL_WAITING,
        "Requests waiting for a pooled PostgreSQL connection"
    );
    describe_gauge!(POOL_MAX, "The PostgreSQL pool's size limit");
    describe_counter!(
        GROUP_COMMITS,
        "PostgreSQL transactions that committed pushes, several pushes each under load"
    );
    describe_histogram!(
        HORIZON_WAIT,
        Unit::Seconds,
        "How long a PostgreSQL commit waited for the transactions in flight before it to end"
    );
}

/// What an engine operation records: its count by outcome and its duration.
#[derive(Clone, Copy)]
pub(crate) enum Operation {
    Push,
    Pull,
    Snapshot,
}

impl Operation {
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Operation::Push => (PUSHES, PUSH_DURATION, "push"),
            Operation::Pull => (PULLS, PULL_DURATION, "pull"),
            Operation::Snapshot => (SNAPSHOTS, SNAPSHOT_DURATION, "snapshot"),
        }
    }
}

/// Runs `operation`, recording how it ended and how long it took.
pub(crate) async fn timed<T>(
    operation: Operation,
    run: impl Future<Output = Result<T, SyncError>>,
) -> Result<T, SyncError> {
    let started = Instant::now();
    let result = run.await;
    let (count, duration, name) = operation.names();
    match &result {
        // A literal label is a static key: no allocation on every answered request.
        Ok(_) => metrics::counter!(count, "outcome" => "ok").increment(1),
        Err(error) => {
            if let SyncError::Unavailable(store) = error {
                store_error(name, store);
            }
            metrics::counter!(count, "outcome" => error.code()).increment(1);
        }
    }
    metrics::histogram!(duration).record(started.elapsed().as_secs_f64());
    result
}

/// Counts an answered push's mutations by outcome.
pub(crate) fn mutations(response: &PushResponse) {
    let (mut applied, mut duplicate, mut failed) = (0, 0, 0);
    for result in &response.results {
        match (result.duplicate, result.ok) {
            (true, _) => duplicate += 1,
            (false, true) => applied += 1,
            (false, false) => failed += 1,
        }
    }
    // Literal labels, for static keys.
    if applied > 0 {
        metrics::counter!(MUTATIONS, "outcome" => "applied").increment(applied);
    }
    if duplicate > 0 {
        metrics::counter!(MUTATIONS, "outcome" => "duplicate").increment(duplicate);
    }
    if failed > 0 {
        metrics::counter!(MUTATIONS, "outcome" => "failed").increment(failed);
    }
}

/// Counts a store failure of `operation`.
pub(crate) fn store_error(operation: &'static str, error: &StoreError) {
    metrics::counter!(STORE_ERRORS, "operation" => operation, "kind" => kind(error)).increment(1);
}

/// What kind of failure a store error is, from the errors it was caused by.
fn kind(error: &StoreError) -> &'static str {
    if error.is_invalid_input() {
        return "invalid_input";
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        #[cfg(feature = "postgres")]
        if let Some(error) = cause.downcast_ref::<deadpool_postgres::PoolError>() {
            return match error {
                deadpool_postgres::PoolError::Backend(_) => "connection",
                _ => "pool",
            };
        }
        #[cfg(feature = "postgres")]
        if let Some(error) = cause.downcast_ref::<tokio_postgres::Error>() {
            return match error.code().map(tokio_postgres::error::SqlState::code) {
                None => "connection",
                Some("55P03" | "57014") => "timeout",
                Some(code) if code.starts_with("40") => "conflict",
                Some(code) if code.starts_with("08") || code.starts_with("57P") => "connection",
                Some(_) => "database",
            };
        }
        #[cfg(feature = "sqlite")]
        if let Some(error) = cause.downcast_ref::<rusqlite::Error>() {
            return match error.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    "busy"
                }
                _ => "database",
            };
        }
        source = cause.source();
    }
    "other"
}

/// Counts a live connection as open until dropped.
pub(crate) struct LiveConnection(());

impl LiveConnection {
    pub(crate) fn open() -> Self {
        metrics::gauge!(LIVE_CONNECTIONS).increment(1);
        LiveConnection(())
    }
}

impl Drop for LiveConnection {
    fn drop(&mut self) {
        metrics::gauge!(LIVE_CONNECTIONS).decrement(1);
    }
}

/// Counts `n` POKE frames sent.
pub(crate) fn pokes_sent(n: usize) {
    if n > 0 {
        metrics::counter!(POKES_SENT).increment(n as u64);
    }
}

/// Counts a poke merged into an unsent one.
pub(crate) fn poke_merged() {
    metrics::counter!(POKES_MERGED).increment(1);
}

/// Counts `n` pokes that will never be sent.
pub(crate) fn pokes_dropped(n: usize) {
    if n > 0 {
        metrics::counter!(POKES_DROPPED).increment(n as u64);
    }
}

/// Counts a PostgreSQL transaction that committed pushes.
#[cfg(feature = "postgres")]
pub(crate) fn group_commit() {
    metrics::counter!(GROUP_COMMITS).increment(1);
}

/// Records how long a PostgreSQL commit waited for the visibility horizon.
#[cfg(feature = "postgres")]
pub(crate) fn horizon_wait(waited: std::time::Duration) {
    metrics::histogram!(HORIZON_WAIT).record(waited.as_secs_f64());
}

impl crate::Engine {
    /// Sets the sampled gauges: the log's head and retained cursors, and the PostgreSQL pool's
    /// use where the backend is a [`PostgresBackend`](crate::PostgresBackend). Call it before
    /// each scrape; a head that cannot be read leaves the gauges as they were (and counts a
    /// store error).
    pub async fn sample_metrics(&self) {
        use crate::backend::ChangeLog;

        #[cfg(feature = "postgres")]
        if let Some(backend) = self.backend().downcast_ref::<crate::PostgresBackend>() {
            let status = backend.pool_status();
            let in_use = status.size.saturating_sub(status.available);
            metrics::gauge!(POOL_CONNECTIONS, "state" => "in_use").set(in_use as f64);
            metrics::gauge!(POOL_CONNECTIONS, "state" => "idle").set(status.available as f64);
            metrics::gauge!(POOL_WAITING).set(status.waiting as f64);
            metrics::gauge!(POOL_MAX).set(status.max_size as f64);
        }
        match self.backend().head().await {
            Ok(head) => {
                metrics::gauge!(LOG_HEAD).set(head as f64);
                let retained = (head + 1).saturating_sub(self.retained_from());
                metrics::gauge!(LOG_RETAINED).set(retained as f64);
            }
            Err(error) => store_error("head", &error),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code

    use std::collections::BTreeMap;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use serde_json::json;

    use super::*;
    use crate::{Engine, Mutation, MutationError, MutatorFunc, PullRequest};

    /// Every metric an engine records, as `name{label=value,...}` and its value.
    type Recorded = BTreeMap<String, DebugValue>;

    fn recorded(recorder: &DebuggingRecorder) -> Recorded {
        recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let (_, key) = key.into_parts();
                let labels: Vec<String> = key
                    .labels()
                    .map(|label| format!("{}={}", label.key(), label.value()))
                    .collect();
                (format!("{}{{{}}}", key.name(), labels.join(",")), value)
            })
            .collect()
    }

    fn counter(recorded: &Recorded, key: &str) -> u64 {
        match recorded.get(key) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("{key}: {other:?} in {:?}", recorded.keys()),
        }
    }

    #[test]
    fn store_errors_are_told_apart_by_kind() {
        let plain = StoreError::new("disk on fire");
        assert_eq!(kind(&plain), "other");
        assert_eq!(kind(&StoreError::invalid_input("NUL")), "invalid_input");
        #[cfg(feature = "sqlite")]
        {
            let busy = rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                None,
            );
            assert_eq!(kind(&StoreError::with_source("commit", busy)), "busy");
            let full = rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            );
            assert_eq!(kind(&StoreError::with_source("commit", full)), "database");
        }
        #[cfg(feature = "postgres")]
        {
            let waited =
                deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait);
            assert_eq!(kind(&StoreError::with_source("get", waited)), "pool");
        }
    }

    /// The names and labels the module's documentation lists are those recorded.
    #[test]
    fn pushes_pulls_and_snapshots_record_the_documented_names_and_labels() {
        let recorder = DebuggingRecorder::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let mutator = MutatorFunc::new(|tx, m| {
                    Box::pin(async move {
                        match m.name.as_str() {
                            "put" => {
                                tx.put_value("note", "n", json!({"id": "n"})).await?;
                                Ok(None)
                            }
                            other => Err(MutationError::unknown_mutation(other)),
                        }
                    })
                });
                let engine = Engine::builder(mutator).build();
                let put = Mutation::new("put", json!({})).with_client("c", 1);
                engine.push(vec![put.clone()]).await.unwrap();
                engine
                    .push(vec![put, Mutation::new("nope", json!({}))])
                    .await
                    .unwrap();
                assert!(engine.push(Vec::new()).await.is_err());
                engine.pull(PullRequest::new("_default", 0)).await.unwrap();
                assert!(engine.pull(PullRequest::new("_default", 9)).await.is_err());
                engine.snapshot(None).await.unwrap();
                engine.sample_metrics().await;
                let _live = LiveConnection::open();
                pokes_sent(2);
                poke_merged();
                pokes_dropped(1);
                #[cfg(feature = "postgres")]
                horizon_wait(std::time::Duration::ZERO);
                #[cfg(feature = "postgres")]
                group_commit();
                store_error("trim", &StoreError::invalid_input("x"));
            });
        });
        let recorded = recorded(&recorder);
        assert_eq!(counter(&recorded, "sync_pushes_total{outcome=ok}"), 2);
        assert_eq!(
            counter(&recorded, "sync_pushes_total{outcome=no_mutations}"),
            1
        );
        for (outcome, n) in [("applied", 1), ("duplicate", 1), ("failed", 1)] {
            let key = format!("sync_mutations_total{{outcome={outcome}}}");
            assert_eq!(counter(&recorded, &key), n, "{key}");
        }
        assert_eq!(counter(&recorded, "sync_pulls_total{outcome=ok}"), 1);
        assert_eq!(
            counter(&recorded, "sync_pulls_total{outcome=cursor_ahead}"),
            1
        );
        assert_eq!(counter(&recorded, "sync_snapshots_total{outcome=ok}"), 1);
        assert_eq!(counter(&recorded, "sync_pokes_sent_total{}"), 2);
        assert_eq!(counter(&recorded, "sync_pokes_merged_total{}"), 1);
        assert_eq!(counter(&recorded, "sync_pokes_dropped_total{}"), 1);
        assert_eq!(
            counter(
                &recorded,
                "sync_store_errors_total{operation=trim,kind=invalid_input}"
            ),
            1
        );
        for histogram in [PUSH_DURATION, PULL_DURATION, SNAPSHOT_DURATION] {
            let key = format!("{histogram}{{}}");
            assert!(
                matches!(recorded.get(&key), Some(DebugValue::Histogram(samples)) if !samples.is_empty()),
                "{key}"
            );
        }
        #[cfg(feature = "postgres")]
        assert_eq!(counter(&recorded, "sync_postgres_group_commits_total{}"), 1);
        #[cfg(feature = "postgres")]
        assert!(matches!(
            recorded.get("sync_postgres_horizon_wait_seconds{}"),
            Some(DebugValue::Histogram(samples)) if samples.len() == 1
        ));
        assert_eq!(
            recorded.get("sync_log_head{}"),
            Some(&DebugValue::Gauge(1.0.into()))
        );
        assert_eq!(
            recorded.get("sync_log_retained_changes{}"),
            Some(&DebugValue::Gauge(1.0.into()))
        );
        // Opened, then closed: up one, down one.
        assert_eq!(
            recorded.get("sync_live_connections{}"),
            Some(&DebugValue::Gauge(0.0.into()))
        );
        // Every name recorded is one the documentation lists.
        let documented = include_str!("metrics.rs");
        for key in recorded.keys() {
            let name = key.split('{').next().unwrap_or_default();
            assert!(documented.contains(&format!("| `{name}` |")), "{name}");
        }
    }
}
