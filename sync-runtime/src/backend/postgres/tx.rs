//! A push's transaction: its requests to its lane (module `lane`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::Inner;
use super::group::Reply;
use super::lane::Request;
use crate::backend::{Commit, Committed, Failure, Transaction};
use crate::error::StoreError;

/// One push's transaction. It joins a lane of its node at its first request (the lane that
/// holds its first mutation's client or scope, if one does), and runs there, in the lane's
/// group, after the pushes before it (module `group`): it locks each client before it reads the
/// client's sequence number and each scope before it reads or writes it (module docs), and its
/// commit is the group's.
///
/// A statement that fails aborts the group's transaction: the push's commit then fails, and
/// the push answers 503 whole, as does every push of its group.
pub struct PostgresTransaction {
    inner: Arc<Inner>,
    /// The keys of the scopes it expects to read, before its first request.
    expected: Vec<i64>,
    /// Where its requests go, once it has joined a lane; dropping it ends the push there.
    lane: Option<mpsc::Sender<Request>>,
}

impl PostgresTransaction {
    pub(super) fn begin(inner: &Arc<Inner>) -> Self {
        PostgresTransaction {
            inner: Arc::clone(inner),
            expected: Vec::new(),
            lane: None,
        }
    }

    /// Sends a request, joining a lane first where the push has none yet (by `keys` and the
    /// scopes it expects), and waits for the answer.
    async fn ask<T>(
        &mut self,
        keys: impl FnOnce(&super::LockKeys) -> Vec<i64>,
        request: impl FnOnce(Reply<T>) -> Request,
    ) -> Result<T, StoreError> {
        let lane = match &self.lane {
            Some(lane) => lane,
            None => {
                let mut wanted = keys(&self.inner.keys);
                wanted.extend_from_slice(&self.expected);
                let expected = std::mem::take(&mut self.expected);
                let lane = self.inner.lanes.join(&self.inner, &wanted, expected)?;
                self.lane.insert(lane)
            }
        };
        let (reply, answer) = oneshot::channel();
        // A lane that no longer serves this push ended it: its group failed.
        let ended = || StoreError::new("PostgreSQL: this push's transaction failed earlier");
        lane.send(request(reply)).await.map_err(|_| ended())?;
        answer.await.map_err(|_| ended())?
    }
}

impl Transaction for PostgresTransaction {
    fn expect_scope(&mut self, scope: &str) {
        if self.lane.is_none() {
            self.expected.push(self.inner.keys.scope(scope));
        }
    }

    async fn get(
        &mut self,
        scope: &str,
        entity: &str,
        id: &str,
    ) -> Result<Option<Value>, StoreError> {
        self.ask(
            |keys| vec![keys.scope(scope)],
            |reply| Request::Get {
                scope: scope.to_owned(),
                entity: entity.to_owned(),
                id: id.to_owned(),
                reply,
            },
        )
        .await
    }

    async fn contains(&mut self, scope: &str, entity: &str, id: &str) -> Result<bool, StoreError> {
        self.ask(
            |keys| vec![keys.scope(scope)],
            |reply| Request::Contains {
                scope: scope.to_owned(),
                entity: entity.to_owned(),
                id: id.to_owned(),
                reply,
            },
        )
        .await
    }

    async fn list(
        &mut self,
        scope: &str,
        entity: &str,
    ) -> Result<BTreeMap<String, Value>, StoreError> {
        self.ask(
            |keys| vec![keys.scope(scope)],
            |reply| Request::List {
                scope: scope.to_owned(),
                entity: entity.to_owned(),
                reply,
            },
        )
        .await
    }

    async fn client_seq(&mut self, client_id: &str) -> Result<Option<u64>, StoreError> {
        self.ask(
            |keys| vec![keys.client(client_id)],
            |reply| Request::ClientSeq {
                client_id: client_id.to_owned(),
                reply,
            },
        )
        .await
    }

    async fn failure(
        &mut self,
        client_id: &str,
        client_seq: u64,
    ) -> Result<Option<Failure>, StoreError> {
        self.ask(
            |keys| vec![keys.client(client_id)],
            |reply| Request::Failure {
                client_id: client_id.to_owned(),
                client_seq,
                reply,
            },
        )
        .await
    }

    async fn commit(mut self, commit: Commit) -> Result<Committed, StoreError> {
        // Computed before the commit moves into the request; a push in a lane already needs none.
        let wanted = match self.lane {
            Some(_) => Vec::new(),
            None => super::group::commit_keys(&self.inner.keys, &commit),
        };
        let done = self
            .ask(|_| wanted, |reply| Request::Commit { commit, reply })
            .await?;
        // Committed: the advisory locks are released. The answer waits for the horizon.
        let started = Instant::now();
        if !done.passed {
            self.inner.horizon.wait_past(&self.inner, done.xid).await?;
        }
        crate::metrics::horizon_wait(started.elapsed());
        Ok(done.committed)
    }
}
