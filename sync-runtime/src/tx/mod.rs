//! The transaction handle a mutator writes through, and the rules of a push's transaction that
//! every backend shares: buffered writes, a failed mutation undone, one change per write, and
//! clients' sequence numbers staged until the commit.

mod write_set;

use std::fmt;
use std::sync::Arc;

use hashbrown::HashMap;
use serde::Serialize;
use serde_json::Value;

use crate::auth::Caller;
use crate::backend::{AnyTransaction, Commit, Failure, NewChange, PendingOps, Transaction};
use crate::change::{Change, ChangeOp};
use crate::entity::Entity;
use crate::error::{MutationError, StoreError};
use crate::json::Json;
use crate::scope::validate_scope;

use write_set::WriteSet;

/// A [`Tx`] in another scope than its mutation's, from [`Tx::in_scope`]; dropping it returns
/// the transaction to the mutation's scope.
pub struct InScope<'a> {
    tx: &'a mut Tx,
    own: String,
}

impl std::ops::Deref for InScope<'_> {
    type Target = Tx;

    fn deref(&self) -> &Tx {
        self.tx
    }
}

impl std::ops::DerefMut for InScope<'_> {
    fn deref_mut(&mut self) -> &mut Tx {
        self.tx
    }
}

impl Drop for InScope<'_> {
    fn drop(&mut self) {
        self.tx.scope = std::mem::take(&mut self.own);
    }
}

/// Per finished mutation of a push: its changes as logged, and its cursor.
pub(crate) type Committed = Vec<(Vec<Arc<Change>>, u64)>;

/// A mutation's transaction, in the mutation's scope.
///
/// Every write through [`put`](Tx::put) or [`delete`](Tx::delete) (and their untyped forms) is
/// recorded as a [`Change`](crate::Change) with the entity's whole data: a put of a new id is a
/// `create`, of an existing one an `update`. A put does not read whether the entity exists: the
/// commit decides create or update from the write itself, so a put costs no read of the store;
/// code that needs to know asks [`exists`](Tx::exists). Reads see the push's own writes. The
/// writes, the changes and the client's sequence number commit together when the mutator
/// returns `Ok`, and are discarded when it returns an error.
///
/// A mutation reads and writes its own scope, the one the authorizer allowed, unless its code
/// names another with [`in_scope`](Tx::in_scope).
pub struct Tx {
    inner: AnyTransaction,
    caller: Caller,
    writes: WriteSet,
    scope: String,
    /// The finished mutations' changes, then the open one's.
    changes: Vec<NewChange>,
    /// The changes whose op the commit decides: puts of keys not written before in the push.
    pending: PendingOps,
    /// Where the open mutation's changes start in `changes`.
    open_from: usize,
    /// How many changes there were after each finished mutation.
    finished: Vec<usize>,
    /// Each client's highest sequence number among the finished mutations.
    client_seqs: HashMap<String, u64>,
    /// The finished mutations that failed for good and came with a client's sequence number.
    failures: Vec<Failure>,
}

impl Tx {
    /// Wraps a push's backend transaction; [`Tx::begin_mutation`] sets each mutation's scope.
    ///
    /// Sized for `mutations` mutations of one write each, the common case: a push of a hundred
    /// would otherwise grow its writes and changes through seven doublings, and with glibc's
    /// allocator every large reallocation among the push's many small frees costs a
    /// consolidation of its free lists.
    pub(crate) fn new(inner: AnyTransaction, caller: Caller, mutations: usize) -> Self {
        Tx {
            inner,
            caller,
            writes: WriteSet::with_capacity(mutations),
            scope: String::new(),
            changes: Vec::with_capacity(mutations),
            pending: PendingOps::default(),
            open_from: 0,
            finished: Vec::with_capacity(mutations),
            client_seqs: HashMap::new(),
            failures: Vec::new(),
        }
    }

    /// The mutation's scope.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Who pushed the mutation: the identity the engine's authenticator made of the request.
    /// Clone it (an `Arc`) to hold the identity while writing through `self`.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// This transaction, reading and writing `scope` instead of the mutation's own until the
    /// guard is dropped: for a write that another scope's clients must see, e.g. an invitation
    /// in the invitee's personal scope. The authorizer was asked about the mutation's scope only;
    /// which other scopes a mutation writes is the mutation's own rule. The writes commit (or
    /// are undone) with the mutation's, and poke `scope`'s watchers.
    ///
    /// ```
    /// # async fn share(tx: &mut sync_runtime::Tx) -> Result<(), sync_runtime::MutationError> {
    /// let list = tx.scope().to_owned();
    /// let mut invitee = tx.in_scope("user:bob")?;
    /// invitee.put_value("invitation", &list, serde_json::json!({"list": list})).await?;
    /// # Ok(()) }
    /// ```
    pub fn in_scope(&mut self, scope: &str) -> Result<InScope<'_>, MutationError> {
        validate_scope(scope).map_err(|error| MutationError::invalid_args(error.to_string()))?;
        let own = std::mem::replace(&mut self.scope, scope.to_owned());
        Ok(InScope { tx: self, own })
    }

    /// A new unique id, ordered by creation time (UUID v7).
    pub fn new_id(&self) -> String {
        uuid::Uuid::now_v7().to_string()
    }

    /// The entity of type `E` with this id in this scope, with this push's writes applied.
    ///
    /// Stored data that does not decode as `E` is a [`StoreError`]: the store holds something
    /// this code does not expect.
    pub async fn get<E: Entity>(&mut self, id: &str) -> Result<Option<E>, StoreError> {
        match self.get_value(E::NAME, id).await? {
            None => Ok(None),
            Some(data) => decode::<E>(id, data).map(Some),
        }
    }

    /// Every entity of type `E` in this scope, ordered by id.
    pub async fn list<E: Entity>(&mut self) -> Result<Vec<E>, StoreError> {
        let values = self.list_values(E::NAME).await?;
        values
            .into_iter()
            .map(|data| decode::<E>("(listed)", data))
            .collect()
    }

    /// Stores the entity and records a `create` change if its id is new, else an `update`,
    /// with its whole data.
    ///
    /// It does not answer which: finding out would cost a read of the store per put, and the
    /// commit decides it exactly from the write itself, also where a concurrent push creates
    /// the same id. Code that needs to know asks [`exists`](Tx::exists) first.
    ///
    /// The entity is encoded as it serializes, its fields in their order; one that does not
    /// encode fails its mutation for good (`invalid_args`).
    pub async fn put<E: Entity>(&mut self, entity: &E) -> Result<(), StoreError> {
        let id = entity.id();
        check_key(E::NAME, &id)?;
        // The entity's own encoding, without a `Value` between.
        let json = Json::encode(entity).map_err(|error| not_encoded(E::NAME, &id, &error))?;
        self.write_data(E::NAME, &id, json);
        Ok(())
    }

    /// Removes the entity of type `E` with this id and records a `delete` change; `false` (and
    /// no change) where it did not exist.
    pub async fn delete<E: Entity>(&mut self, id: &str) -> Result<bool, StoreError> {
        self.delete_value(E::NAME, id).await
    }

    /// Whether the entity of type `E` with this id exists in this scope, with this push's writes
    /// applied; reads no data.
    pub async fn exists<E: Entity>(&mut self, id: &str) -> Result<bool, StoreError> {
        self.exists_value(E::NAME, id).await
    }

    /// The entity's data in this scope, with this push's writes applied.
    pub async fn get_value(&mut self, entity: &str, id: &str) -> Result<Option<Value>, StoreError> {
        check_key(entity, id)?;
        if let Some(written) = self.writes.get(&self.scope, entity, id) {
            let what = format_args!("{entity} `{id}`");
            return written
                .as_ref()
                .map(|json| json.entity_value(what))
                .transpose();
        }
        self.inner.get(&self.scope, entity, id).await
    }

    /// Every entity of one type in this scope, ordered by id.
    pub async fn list_values(&mut self, entity: &str) -> Result<Vec<Value>, StoreError> {
        check_entity(entity)?;
        let mut ids = self.inner.list(&self.scope, entity).await?;
        self.writes.overlay(&self.scope, entity, &mut ids)?;
        Ok(ids.into_values().collect())
    }

    /// Stores the entity's whole data and records a `create` or `update` change, as
    /// [`put`](Tx::put) does (without reading which).
    ///
    /// The data is anything that serializes, a [`Value`] or a reference to one included:
    /// `tx.put_value("note", &id, &m.args)` writes a mutation's arguments without a copy.
    pub async fn put_value(
        &mut self,
        entity: &str,
        id: &str,
        data: impl Serialize,
    ) -> Result<(), StoreError> {
        check_key(entity, id)?;
        // Encoded once, here: the write and its change share the text, which the log, the push's
        // answer and pulls then write as it is.
        let json = Json::encode(&data).map_err(|error| not_encoded(entity, id, &error))?;
        self.write_data(entity, id, json);
        Ok(())
    }

    /// Records a put of encoded data, and its change: an `update` or `create` where the push
    /// wrote the key before, else pending, for the commit to decide.
    fn write_data(&mut self, entity: &str, id: &str, json: Json) {
        let op = match self.writes.get(&self.scope, entity, id) {
            Some(Some(_)) => Some(ChangeOp::Update),
            Some(None) => Some(ChangeOp::Create),
            None => None,
        };
        let change = json.clone();
        self.record(entity, id, op.unwrap_or(ChangeOp::Create), Some(change));
        let at = self.writes.write(&self.scope, entity, id, Some(json));
        if op.is_none() {
            self.pending.push(self.changes.len() - 1, at);
        }
    }

    /// Removes the entity and records a `delete` change; `false` (and no change) where it did not
    /// exist.
    pub async fn delete_value(&mut self, entity: &str, id: &str) -> Result<bool, StoreError> {
        check_key(entity, id)?;
        let existed = self.exists_value(entity, id).await?;
        if existed {
            self.writes.write(&self.scope, entity, id, None);
            self.record(entity, id, ChangeOp::Delete, None);
        }
        Ok(existed)
    }

    /// Whether the entity exists in this scope, with this push's writes applied; reads no data,
    /// and reads the store only where the push has not written the entity.
    pub async fn exists_value(&mut self, entity: &str, id: &str) -> Result<bool, StoreError> {
        check_key(entity, id)?;
        match self.writes.get(&self.scope, entity, id) {
            Some(written) => Ok(written.is_some()),
            None => self.inner.contains(&self.scope, entity, id).await,
        }
    }

    fn record(&mut self, entity: &str, id: &str, op: ChangeOp, data: Option<Json>) {
        self.changes.push(NewChange {
            scope: self.scope.clone(),
            entity: entity.to_owned(),
            id: id.to_owned(),
            op,
            data,
        });
    }

    /// Starts the next mutation of the push, in `scope`. A mutation still open is undone.
    pub(crate) fn begin_mutation(&mut self, scope: &str) {
        self.undo_open();
        scope.clone_into(&mut self.scope);
        self.inner.expect_scope(scope);
    }

    /// The highest `client_seq` recorded for `client_id`, counting the finished mutations.
    pub(crate) async fn last_client_seq(
        &mut self,
        client_id: &str,
    ) -> Result<Option<u64>, StoreError> {
        // A staged one is above the stored one, which the push read first.
        if let Some(staged) = self.client_seqs.get(client_id) {
            return Ok(Some(*staged));
        }
        self.inner.client_seq(client_id).await
    }

    /// How the mutation `seq` of `client_id` failed for good, if it did and is remembered:
    /// what its retry is answered.
    pub(crate) async fn failure(
        &mut self,
        client_id: &str,
        seq: u64,
    ) -> Result<Option<Failure>, StoreError> {
        let mut staged = self.failures.iter().rev();
        if let Some(failure) = staged.find(|f| f.client_id == client_id && f.client_seq == seq) {
            return Ok(Some(failure.clone()));
        }
        self.inner.failure(client_id, seq).await
    }

    /// Ends the open mutation: its writes and changes stay if it succeeded, else they are undone
    /// and the failure is remembered for the retries of `client`'s sequence number, which is
    /// recorded either way.
    pub(crate) fn finish_mutation(
        &mut self,
        failed: Option<(&str, &str)>,
        client: Option<(&str, u64)>,
    ) {
        match failed {
            None => self.writes.keep_mutation(),
            Some((code, error)) => {
                self.undo_open();
                if let Some((client_id, seq)) = client {
                    self.failures.push(Failure {
                        client_id: client_id.to_owned(),
                        client_seq: seq,
                        code: code.to_owned(),
                        error: error.to_owned(),
                    });
                }
            }
        }
        self.finished.push(self.changes.len());
        self.open_from = self.changes.len();
        if let Some((client_id, seq)) = client {
            let last = self.client_seqs.entry_ref(client_id).or_default();
            *last = (*last).max(seq);
        }
    }

    /// Undoes what the open mutation wrote and recorded.
    fn undo_open(&mut self) {
        self.writes.undo_mutation();
        self.changes.truncate(self.open_from);
        // The writes that added these keys are undone with them.
        self.pending.truncate(self.open_from);
    }

    /// Commits every finished mutation; a mutation still open leaves nothing. Returns, per
    /// finished mutation, its changes as logged and its cursor: its last change's, or where it
    /// made none, the log's cursor before it.
    pub(crate) async fn commit(mut self) -> Result<Committed, StoreError> {
        self.undo_open();
        let mut writes = self.writes.into_writes();
        for at in self.pending.writes() {
            if let Some(write) = writes.get_mut(at) {
                write.existence_unknown = true;
            }
        }
        let commit = Commit {
            writes,
            changes: self.changes,
            client_seqs: self.client_seqs.into_iter().collect(),
            failures: self.failures,
            pending: self.pending,
        };
        let committed = self.inner.commit(commit).await?;
        let mut logged = committed.changes.into_iter();
        let (mut cursor, mut taken) = (committed.before, 0);
        let outcomes = self
            .finished
            .into_iter()
            .map(|end| {
                let changes: Vec<Arc<Change>> = logged.by_ref().take(end - taken).collect();
                taken = end;
                cursor = changes.last().map_or(cursor, |change| change.cursor);
                (changes, cursor)
            })
            .collect();
        Ok(outcomes)
    }
}

/// The longest entity type, in UTF-8 bytes.
const MAX_ENTITY_BYTES: usize = 256;

/// The longest entity id, in UTF-8 bytes.
const MAX_ID_BYTES: usize = 1024;

/// Refuses an entity type or id that some backend cannot hold (empty, too long for an index
/// entry, or with a NUL character, which PostgreSQL's text cannot hold): the same mutation fails
/// alike on every backend, for good, with `invalid_args`.
fn check_key(entity: &str, id: &str) -> Result<(), StoreError> {
    check_entity(entity)?;
    check_name(format_args!("{entity} id"), id, MAX_ID_BYTES)
}

/// Refuses an entity type, as [`check_key`] does.
fn check_entity(entity: &str) -> Result<(), StoreError> {
    check_name(format_args!("the entity type"), entity, MAX_ENTITY_BYTES)
}

/// `what` is formatted only for the error: every read and write checks its key.
fn check_name(what: fmt::Arguments<'_>, name: &str, max: usize) -> Result<(), StoreError> {
    let problem = if name.is_empty() {
        "is empty".to_owned()
    } else if name.len() > max {
        format!("is {} bytes long; the limit is {max}", name.len())
    } else if name.contains('\0') {
        "holds a NUL character".to_owned()
    } else {
        return Ok(());
    };
    let shown: String = name.chars().take(40).collect();
    Err(StoreError::invalid_input(format!(
        "{what} {shown:?} {problem}"
    )))
}

/// Data that does not encode as JSON (a map with keys that are not strings, a `Serialize` that
/// fails) fails the same way on every retry: its mutation fails for good, with `invalid_args`.
fn not_encoded(entity: &str, id: &str, error: &serde_json::Error) -> StoreError {
    StoreError::invalid_input(format!("cannot encode {entity} `{id}` as JSON: {error}"))
}

pub(crate) fn decode<E: Entity>(id: &str, data: Value) -> Result<E, StoreError> {
    serde_json::from_value(data).map_err(|error| {
        StoreError::with_source(format!("stored {} `{id}` does not decode", E::NAME), error)
    })
}
