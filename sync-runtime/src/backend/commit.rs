//! What a push hands its backend to commit, and what the backend answers.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hashbrown::Equivalent;

use crate::change::{Change, ChangeOp};
use crate::error::StoreError;
use crate::json::Json;

/// Everything one push commits: each written entity's final state, the changes in the order they
/// were made, and the highest `client_seq` of each client. Built by [`Tx`](crate::Tx); a backend
/// reads it and stores it whole.
///
/// Each written value was encoded as JSON text once, when the mutation wrote it: a change and the
/// final write of its entity share that text ([`Json`]), which a backend stores as it is.
///
/// A put of a key the push had not written yet does not read whether the entity exists (no read
/// per write): its change's op is left for the commit to decide ([`PendingOps`]). The backend
/// learns from each such write ([`Write::existence_unknown`]) whether the entity existed, and
/// sets those ops with [`PendingOps::resolve`] before it logs the changes.
#[derive(Debug, Default)]
pub struct Commit {
    pub(crate) writes: Vec<Write>,
    pub(crate) changes: Vec<NewChange>,
    pub(crate) client_seqs: Vec<(String, u64)>,
    pub(crate) failures: Vec<Failure>,
    pub(crate) pending: PendingOps,
}

impl Commit {
    /// The entities written, each once, with its final data (`None`: deleted).
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// The changes, in order; cursors follow this order. The op of a change in
    /// [`pending`](Commit::pending) is not decided yet (it reads `create`).
    pub fn changes(&self) -> &[NewChange] {
        &self.changes
    }

    /// Each client's highest sequence number processed by the push.
    pub fn client_seqs(&self) -> &[(String, u64)] {
        &self.client_seqs
    }

    /// The mutations that failed for good, to answer their retries as they were answered.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// The changes whose op (`create` or `update`) the writes decide.
    pub fn pending(&self) -> &PendingOps {
        &self.pending
    }

    /// Whether the push committed nothing at all.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && self.changes.is_empty()
            && self.client_seqs.is_empty()
            && self.failures.is_empty()
    }

    /// The parts, to store them without copying.
    pub fn into_parts(self) -> CommitParts {
        CommitParts {
            writes: self.writes,
            changes: self.changes,
            client_seqs: self.client_seqs,
            failures: self.failures,
            pending: self.pending,
        }
    }
}

/// A [`Commit`] taken apart.
#[derive(Debug)]
pub struct CommitParts {
    /// As [`Commit::writes`].
    pub writes: Vec<Write>,
    /// As [`Commit::changes`].
    pub changes: Vec<NewChange>,
    /// As [`Commit::client_seqs`].
    pub client_seqs: Vec<(String, u64)>,
    /// As [`Commit::failures`].
    pub failures: Vec<Failure>,
    /// As [`Commit::pending`].
    pub pending: PendingOps,
}

/// The changes of a [`Commit`] recorded without knowing whether their entity existed: a put of a
/// key the push had not written before. Each is decided by the commit of its key's write, which
/// the backend makes [`existence_unknown`](Write::existence_unknown): `update` where the entity
/// existed before the commit, `create` where it did not. Exact under concurrent pushes as long
/// as the backend learns it from the write itself (an insert that reports a conflict, a delete
/// that reports a row), not from an earlier read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PendingOps(Vec<Pending>);

/// One pending change: its index in the commit's changes and its key's write's in its writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) change: usize,
    pub(crate) write: usize,
}

impl PendingOps {
    /// The pending changes, as `(index in the changes, index in the writes)`, by change.
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.0.iter().map(|p| (p.change, p.write))
    }

    /// Decides each pending change's op: `update` where `existed(change, write)` says its
    /// entity existed before the commit, `create` where it did not. A pending change left
    /// unanswered (`None`) or out of range is an error: the backend did not report its write.
    pub fn resolve(
        &self,
        changes: &mut [NewChange],
        mut existed: impl FnMut(usize, usize) -> Option<bool>,
    ) -> Result<(), StoreError> {
        for pending in &self.0 {
            let unreported = || {
                StoreError::new(format!(
                    "the backend did not report whether write {} existed",
                    pending.write
                ))
            };
            let existed = existed(pending.change, pending.write).ok_or_else(unreported)?;
            let change = changes.get_mut(pending.change).ok_or_else(unreported)?;
            change.op = if existed {
                ChangeOp::Update
            } else {
                ChangeOp::Create
            };
        }
        Ok(())
    }

    pub(crate) fn push(&mut self, change: usize, write: usize) {
        self.0.push(Pending { change, write });
    }

    /// Forgets the pending changes from `change` on (an undone mutation's).
    pub(crate) fn truncate(&mut self, change: usize) {
        while self.0.last().is_some_and(|p| p.change >= change) {
            self.0.pop();
        }
    }

    pub(crate) fn writes(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().map(|p| p.write)
    }
}

/// A mutation that failed for good: what its retry is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The client that sent it.
    pub client_id: String,
    /// Its sequence number.
    pub client_seq: u64,
    /// Its result's `code`.
    pub code: String,
    /// Its result's `error`.
    pub error: String,
}

/// One entity's final state in a [`Commit`].
#[derive(Debug)]
pub struct Write {
    pub(crate) key: Key,
    /// The data, encoded; `None` where the push deleted the entity.
    pub(crate) json: Option<Json>,
    /// Whether a pending change waits on whether this write found its entity.
    pub(crate) existence_unknown: bool,
}

impl Write {
    /// The scope.
    pub fn scope(&self) -> &str {
        self.key.scope()
    }

    /// The entity type.
    pub fn entity(&self) -> &str {
        self.key.entity()
    }

    /// The entity id.
    pub fn id(&self) -> &str {
        self.key.id()
    }

    /// The entity's data as JSON text, encoded once and shared with the change that wrote it;
    /// `None` where the push deleted it.
    pub fn json(&self) -> Option<&Json> {
        self.json.as_ref()
    }

    /// Whether the backend must tell, from this write itself, whether the entity existed before
    /// the commit: the push put the key without reading it, and a change's op waits on the
    /// answer ([`PendingOps::resolve`]). A write whose answer is not wanted may be a blind
    /// upsert or delete.
    pub fn existence_unknown(&self) -> bool {
        self.existence_unknown
    }
}

/// A change as a mutation made it, before the log gives it a cursor and a timestamp.
#[derive(Clone, Debug, PartialEq)]
pub struct NewChange {
    /// The data partition.
    pub scope: String,
    /// The entity type.
    pub entity: String,
    /// The entity id.
    pub id: String,
    /// What happened.
    pub op: ChangeOp,
    /// The entity's whole data after the change, encoded; `None` for deletes.
    pub data: Option<Json>,
}

impl NewChange {
    /// Gives the change its place in the log; its encoded data goes along as it is.
    pub fn into_change(self, cursor: u64, timestamp: DateTime<Utc>) -> Change {
        Change {
            cursor,
            scope: self.scope,
            entity: self.entity,
            id: self.id,
            op: self.op,
            data: self.data,
            timestamp,
        }
    }
}

/// What a backend made of a [`Commit`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Committed {
    /// The log's head just before the commit: its changes follow it.
    pub before: u64,
    /// The commit's changes as logged, in order, with their cursors and timestamps.
    pub changes: Vec<Arc<Change>>,
}

impl Committed {
    /// Logs `changes` at the cursors after `before`, with one timestamp: what a backend that
    /// numbers its changes one after another answers.
    pub fn numbered(before: u64, changes: Vec<NewChange>, timestamp: DateTime<Utc>) -> Self {
        let changes = (before + 1..)
            .zip(changes)
            .map(|(cursor, change)| Arc::new(change.into_change(cursor, timestamp)))
            .collect();
        Committed { before, changes }
    }
}

/// A written entity's scope, entity type and id, in one allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    /// The three names one after another.
    text: Box<str>,
    /// Where the entity type and the id start in `text`.
    entity_at: usize,
    id_at: usize,
}

impl Key {
    pub(crate) fn parts(&self) -> KeyRef<'_> {
        KeyRef(self.scope(), self.entity(), self.id())
    }

    pub(crate) fn scope(&self) -> &str {
        self.text.get(..self.entity_at).unwrap_or_default()
    }

    pub(crate) fn entity(&self) -> &str {
        self.text
            .get(self.entity_at..self.id_at)
            .unwrap_or_default()
    }

    pub(crate) fn id(&self) -> &str {
        self.text.get(self.id_at..).unwrap_or_default()
    }
}

/// Hashes as its [`KeyRef`], so that a `KeyRef` finds it.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

/// A [`Key`] borrowed: `(scope, entity, id)`. Looks up a write without allocating.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct KeyRef<'a>(pub(crate) &'a str, pub(crate) &'a str, pub(crate) &'a str);

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *self == key.parts()
    }
}

impl KeyRef<'_> {
    pub(crate) fn to_owned(self) -> Key {
        let KeyRef(scope, entity, id) = self;
        Key {
            text: [scope, entity, id].concat().into_boxed_str(),
            entity_at: scope.len(),
            id_at: scope.len() + entity.len(),
        }
    }
}
