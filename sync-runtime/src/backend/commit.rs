//! What a push hands its backend to commit, and what the backend answers.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hashbrown::Equivalent;
use serde_json::Value;

use crate::change::{Change, ChangeOp};
use crate::json::Json;

/// Everything one push commits: each written entity's final state, the changes in the order they
/// were made, and the highest `client_seq` of each client. Built by [`Tx`](crate::Tx); a backend
/// reads it and stores it whole.
///
/// Each written value was encoded as JSON text once, when the mutation wrote it: a change and the
/// final write of its entity share that text ([`Json`]), which a backend stores as it is.
#[derive(Debug, Default)]
pub struct Commit {
    pub(crate) writes: Vec<Write>,
    pub(crate) changes: Vec<NewChange>,
    pub(crate) client_seqs: Vec<(String, u64)>,
    pub(crate) failures: Vec<Failure>,
}

impl Commit {
    /// The entities written, each once, with its final data (`None`: deleted).
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// The changes, in order; cursors follow this order.
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
    /// The data, for a backend that keeps values (the memory store).
    pub(crate) data: Option<Arc<Value>>,
    /// The same data encoded, for a backend that stores text; `Some` exactly where `data` is.
    pub(crate) json: Option<Json>,
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

    /// The entity's data; `None` where the push deleted it.
    pub fn data(&self) -> Option<&Arc<Value>> {
        self.data.as_ref()
    }

    /// The entity's data as JSON text, encoded once and shared with the change that wrote it;
    /// `None` where the push deleted it.
    pub fn json(&self) -> Option<&Json> {
        self.json.as_ref()
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
