//! A push's transaction on the writer connection.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use rusqlite::Connection;
use serde_json::Value;
use tokio::sync::OwnedMutexGuard;

use super::super::sql::Context;
use super::conn::Connections;
use super::group_commit::{GroupCommit, Writer};
use super::{entities, log};
use crate::backend::{Commit, Committed, Failure, Transaction};
use crate::error::Sentence;
use crate::error::StoreError;

/// One push's transaction: `BEGIN IMMEDIATE` on the writer connection (or a transaction handed
/// on by pushes before it: group commit), in which its reads run. Its writes arrive whole
/// in [`commit`](Transaction::commit), which applies them, records the clients' sequence numbers
/// and appends the changes in one call.
pub struct SqliteTransaction {
    conns: Arc<Connections>,
    group: Arc<GroupCommit>,
    /// `None` once committed or handed on; dropping it with the gate still held rolls back.
    gate: Option<OwnedMutexGuard<()>>,
}

impl Writer for Connection {
    fn commit(&self) -> Result<(), StoreError> {
        self.prepare_cached("COMMIT")
            .and_then(|mut commit| commit.execute([]))
            .map(drop)
            .context(|| "cannot commit a push".to_owned())
    }

    fn roll_back(&self) -> Result<(), StoreError> {
        if self.is_autocommit() {
            return Ok(());
        }
        self.execute_batch("ROLLBACK")
            .context(|| "cannot roll back an abandoned transaction".to_owned())
    }
}

impl SqliteTransaction {
    /// Waits for the writer and starts a transaction, or joins the one pushes before it handed
    /// on.
    pub(super) async fn begin(
        conns: &Arc<Connections>,
        group: &Arc<GroupCommit>,
    ) -> Result<Self, StoreError> {
        let gate = group.enter().await;
        let joined = Arc::clone(group);
        conns
            .with_writer(move |conn| {
                if joined.is_open() && !conn.is_autocommit() {
                    return Ok(());
                }
                joined.settle(conn)?;
                // Cached, as every statement a push runs: no SQL is parsed per push.
                conn.prepare_cached("BEGIN IMMEDIATE")
                    .and_then(|mut begin| begin.execute([]))
                    .map(drop)
                    .context(|| "cannot start a push's transaction".to_owned())
            })
            .await?;
        Ok(SqliteTransaction {
            conns: Arc::clone(conns),
            group: Arc::clone(group),
            gate: Some(gate),
        })
    }

    /// Runs a read on the writer, in the push's transaction.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.conns.with_writer(move |conn| f(conn)).await
    }

    /// Runs a lookup by primary key on the writer, in the push's transaction, here on the async
    /// worker rather than off it.
    ///
    /// It cannot wait on a lock: this push holds the writer gate, so the connection's lock is
    /// free, and its transaction has held SQLite's write lock and its WAL snapshot since `BEGIN
    /// IMMEDIATE`, so no busy handler runs. It reads the few pages of one path down a B-tree,
    /// mostly from the writer's page cache. Leaving the worker (`block_in_place`) would wake a
    /// thread to take over the worker's queue on every read, a hundred times in a push of a
    /// hundred puts, and copy the key into the closure. The cost: a page that must come from
    /// disk blocks this worker, and the tasks queued on it, for that read.
    fn look_up<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conns.with_writer_blocking(|conn| f(conn))
    }
}

impl Drop for SqliteTransaction {
    fn drop(&mut self) {
        let Some(gate) = self.gate.take() else {
            return;
        };
        // Settle while still holding the gate, so that no other transaction starts first. This
        // push wrote nothing to the database (its writes wait in memory until its commit); what
        // pushes that handed the transaction on wrote is committed.
        let (conns, group) = (Arc::clone(&self.conns), Arc::clone(&self.group));
        let settle = move || {
            let _gate = gate;
            if let Err(error) = conns.with_writer_blocking(|conn| group.settle(conn)) {
                tracing::warn!(error = %Sentence(&error), "could not end an abandoned SQLite transaction");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(settle)),
            Err(_) => settle(),
        }
    }
}

impl Transaction for SqliteTransaction {
    async fn get(
        &mut self,
        scope: &str,
        entity: &str,
        id: &str,
    ) -> Result<Option<Value>, StoreError> {
        self.look_up(|conn| entities::get(conn, scope, entity, id))
    }

    async fn contains(&mut self, scope: &str, entity: &str, id: &str) -> Result<bool, StoreError> {
        self.look_up(|conn| entities::contains(conn, scope, entity, id))
    }

    async fn list(
        &mut self,
        scope: &str,
        entity: &str,
    ) -> Result<BTreeMap<String, Value>, StoreError> {
        let key = (scope.to_owned(), entity.to_owned());
        self.read(move |conn| entities::list(conn, &key.0, &key.1))
            .await
    }

    async fn client_seq(&mut self, client_id: &str) -> Result<Option<u64>, StoreError> {
        self.look_up(|conn| entities::client_seq(conn, client_id))
    }

    async fn failure(
        &mut self,
        client_id: &str,
        client_seq: u64,
    ) -> Result<Option<Failure>, StoreError> {
        self.look_up(|conn| entities::failure(conn, client_id, client_seq))
    }

    async fn commit(mut self, commit: Commit) -> Result<Committed, StoreError> {
        let group = Arc::clone(&self.group);
        let written = self
            .conns
            .with_writer(move |conn| {
                let mut parts = commit.into_parts();
                let result = (|| {
                    let existed = entities::write(conn, &parts.writes)?;
                    parts.pending.resolve(&mut parts.changes, |_, write| {
                        existed.get(write).copied().flatten()
                    })?;
                    entities::record_client_seqs(conn, &parts.client_seqs)?;
                    let committed = log::append(conn, parts.changes, Utc::now())?;
                    entities::record_failures(conn, &parts.failures, committed.before)?;
                    // Other pushes wait for the writer: hand them the transaction, and share
                    // their commit.
                    Ok((committed, group.hand_on_or_commit(conn)?))
                })();
                if let Err(error) = &result {
                    group.fail(conn, error);
                }
                result
            })
            .await;
        // Rolled back above where the call ran; where it never ran, `drop` ends it.
        let (committed, told) = written?;
        // Nothing left for `drop` to undo: committed, or handed on with the gate.
        self.gate = None;
        if let Some(told) = told {
            let (conns, group) = (Arc::clone(&self.conns), Arc::clone(&self.group));
            let settle = move |gate: OwnedMutexGuard<()>| {
                let (conns, group) = (Arc::clone(&conns), Arc::clone(&group));
                async move {
                    conns
                        .with_writer(move |conn| {
                            let _gate = gate;
                            group.settle(conn)
                        })
                        .await
                }
            };
            self.group.outcome(told, settle).await?;
        }
        Ok(committed)
    }
}
