//! A node's lanes: the few transactions its pushes share (a group commit).
//!
//! One transaction per push costs PostgreSQL a `BEGIN`, a snapshot, a `COMMIT` and its WAL
//! flush each, and on two cores that, not the statements, bounded 16 concurrent pushers at
//! about 2.4× one (BENCHMARKS.md, 2026-12-08, second session). So a node runs a few *lanes*,
//! each a task with at most one open transaction, its *group*. A push joins a lane and runs its
//! mutations there, after the group's earlier pushes, one push at a time (module `group`):
//! members of a group never run concurrently, so they read and write as if each had a
//! transaction of its own, in turn. Once a push has committed and no other waits for the lane
//! (or the group is full), the lane writes the whole group in one statement and commits it in a
//! task of its own, and starts the next group on another connection meanwhile. A lone push thus
//! commits at once, as before.
//!
//! Which lane: the one whose group holds (or whose queue awaits) a key the push is known to
//! need, its first mutation's client or scope, so that pushes to one scope share a group (each
//! reading the last one's writes) instead of waiting on each other's advisory locks; otherwise
//! the first lane with room for a whole group (so that concurrent pushes fill a few large groups
//! rather than many small ones: at 16 pushers on 2 cores, 4.1–5.4× one pusher against 4.1–4.8×
//! spreading them evenly, BENCHMARKS.md), else the least loaded (module `claims`). Pushes
//! waiting for their turn wait here, in memory, holding no connection: a hot scope does not
//! empty the pool.
//!
//! Cancellation: a push that is dropped closes its channel, and the lane moves on; its locks
//! stay in the group until it commits. A lane whose push stays idle longer than the transaction
//! may (`idle_in_transaction_timeout`) fails that push's group.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::Inner;
use super::claims::{Claims, Queued, Ticket};
use super::group::{Group, Member, ReadError, Reply};
use crate::backend::{Commit, Failure};
use crate::error::StoreError;

/// Most pushes in one group: bounds how long the first of them waits for its commit.
const MOST_IN_GROUP: usize = 8;

/// One request of a push to its lane, answered on `reply`.
pub(super) enum Request {
    Get {
        scope: String,
        entity: String,
        id: String,
        reply: Reply<Option<serde_json::Value>>,
    },
    Contains {
        scope: String,
        entity: String,
        id: String,
        reply: Reply<bool>,
    },
    List {
        scope: String,
        entity: String,
        reply: Reply<std::collections::BTreeMap<String, serde_json::Value>>,
    },
    ClientSeq {
        client_id: String,
        reply: Reply<Option<u64>>,
    },
    Failure {
        client_id: String,
        client_seq: u64,
        reply: Reply<Option<Failure>>,
    },
    Commit {
        commit: Commit,
        reply: Reply<super::group::Done>,
    },
}

/// A node's lanes.
pub(super) struct Lanes {
    lanes: Box<[Lane]>,
    claims: Arc<Claims>,
}

/// One lane: the sender of its task's queue, spawned at first use (and again where the runtime
/// that ran it has gone).
#[derive(Default)]
struct Lane {
    joins: Mutex<Option<mpsc::UnboundedSender<Join>>>,
}

/// A push queued for a lane.
struct Join {
    requests: mpsc::Receiver<Request>,
    member: Member,
    ticket: Ticket,
    queued: Queued,
}

impl Lanes {
    pub(super) fn new(count: usize) -> Self {
        let count = count.max(1);
        Lanes {
            lanes: (0..count).map(|_| Lane::default()).collect(),
            claims: Claims::new(count, MOST_IN_GROUP),
        }
    }

    /// Queues a push for the lane that holds one of `keys`, else the first with room; returns
    /// where the push sends its requests.
    pub(super) fn join(
        &self,
        inner: &Arc<Inner>,
        keys: &[i64],
        expected: Vec<i64>,
    ) -> Result<mpsc::Sender<Request>, StoreError> {
        let ticket = self.claims.ticket(keys);
        let queued = self.claims.queue();
        let (requests, received) = mpsc::channel(1);
        let lane = ticket.lane();
        let join = Join {
            requests: received,
            member: Member::new(expected),
            ticket,
            queued,
        };
        let stopped = || StoreError::new("PostgreSQL: the lane of this push stopped");
        let lane_at = self.lanes.get(lane).ok_or_else(stopped)?;
        let mut joins = lane_at.joins.lock();
        let sender = match &*joins {
            Some(sender) if !sender.is_closed() => sender,
            _ => {
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(run(Arc::downgrade(inner), receiver));
                joins.insert(sender)
            }
        };
        sender.send(join).map_err(|_| stopped())?;
        Ok(requests)
    }

    /// How many pushes wait for their turn in a lane.
    pub(super) fn queued(&self) -> usize {
        self.claims.queued()
    }
}

/// A lane's task: serves the pushes of its queue one after another, each in the open group,
/// and commits the group once no push waits (or it is full).
async fn run(inner: Weak<Inner>, mut joins: mpsc::UnboundedReceiver<Join>) {
    while let Some(mut join) = joins.recv().await {
        let Some(inner) = inner.upgrade() else {
            return; // the backend is gone
        };
        let mut group = Group::default();
        loop {
            serve(&inner, &mut group, join).await;
            if group.len() >= MOST_IN_GROUP {
                break;
            }
            match joins.try_recv() {
                Ok(next) => join = next,
                Err(_) => break,
            }
            if let Err(error) = group.settle(&inner).await {
                group.abort(&inner, &error);
            }
        }
        tokio::spawn(group.commit(inner));
    }
}

/// Serves one push until it commits, is dropped, or fails its group.
async fn serve(inner: &Arc<Inner>, group: &mut Group, join: Join) {
    let Join {
        mut requests,
        mut member,
        ticket,
        queued,
    } = join;
    drop(queued);
    group.admit(ticket);
    let idle = inner.idle_in_transaction_timeout;
    loop {
        let request = match tokio::time::timeout(idle, requests.recv()).await {
            Ok(Some(request)) => request,
            Ok(None) => return, // dropped: its locks stay in the group
            Err(_) => {
                group.abort(
                    inner,
                    &StoreError::new(format!(
                        "PostgreSQL: a push in this group kept its transaction idle for \
                         {idle:?}, e.g. in a mutation that waits on something else"
                    )),
                );
                return;
            }
        };
        let served = match request {
            Request::Get {
                scope,
                entity,
                id,
                reply,
            } => answer(
                reply,
                group.get(inner, &mut member, &scope, &entity, &id).await,
            ),
            Request::Contains {
                scope,
                entity,
                id,
                reply,
            } => answer(
                reply,
                group
                    .contains(inner, &mut member, &scope, &entity, &id)
                    .await,
            ),
            Request::List {
                scope,
                entity,
                reply,
            } => answer(reply, group.list(inner, &mut member, &scope, &entity).await),
            Request::ClientSeq { client_id, reply } => answer(
                reply,
                group.client_seq(inner, &mut member, &client_id).await,
            ),
            Request::Failure {
                client_id,
                client_seq,
                reply,
            } => answer(
                reply,
                group
                    .failure(inner, &mut member, &client_id, client_seq)
                    .await,
            ),
            Request::Commit { commit, reply } => {
                match group.enter_commit(inner, &member, &commit).await {
                    Ok(()) => group.fold(commit, reply),
                    Err(error) => {
                        group.abort(inner, &error);
                        let _ = reply.send(Err(error));
                    }
                }
                return;
            }
        };
        if let Err(error) = served {
            // The transaction is aborted: its group fails, and so does this push.
            group.abort(inner, &error);
            return;
        }
    }
}

/// Sends a read's answer; a failed statement comes back to fail the group.
fn answer<T>(reply: Reply<T>, read: Result<T, ReadError>) -> Result<(), StoreError> {
    match read {
        Ok(value) => {
            let _ = reply.send(Ok(value));
            Ok(())
        }
        Err(ReadError::Row(error)) => {
            let _ = reply.send(Err(error));
            Ok(())
        }
        Err(ReadError::Aborted(error)) => {
            let copy = super::group::copy_error(&error);
            let _ = reply.send(Err(error));
            Err(copy)
        }
    }
}
