//! The transaction handle a mutator writes through.

use serde_json::Value;

use crate::backend::Transaction;
use crate::change::{ChangeOp, NewChange};
use crate::entity::Entity;
use crate::error::StoreError;
use crate::store::{Store, Written};

/// A mutation's transaction, in the mutation's scope.
///
/// Every write through [`put_value`](Tx::put_value) and [`delete_value`](Tx::delete_value)
/// is recorded as a [`Change`](crate::Change) with the entity's whole data: a put of a new id is a
/// `create`, of an existing one an `update`. The writes, the changes and the client's sequence
/// number commit together when the mutator returns `Ok`, and are discarded when it returns an
/// error.
///
/// A hand-written mutator in the plan's style may instead write through [`store`](Tx::store),
/// which records nothing, and [`emit`](Tx::emit) its changes itself.
pub struct Tx {
    inner: Box<dyn Transaction>,
    scope: String,
    changes: Vec<NewChange>,
}

impl Tx {
    /// Wraps a push's backend transaction; [`Tx::begin_mutation`] sets each mutation's scope.
    pub(crate) fn new(inner: Box<dyn Transaction>) -> Self {
        Tx {
            inner,
            scope: String::new(),
            changes: Vec::new(),
        }
    }

    /// The mutation's scope.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// A new unique id, ordered by creation time (UUID v7).
    pub fn new_id(&self) -> String {
        uuid::Uuid::now_v7().to_string()
    }

    /// The entity of type `E` with this id in this scope, with this transaction's writes applied.
    ///
    /// Stored data that does not decode as `E` is a [`StoreError`]: the store holds something
    /// this code does not expect.
    pub async fn get<E: Entity>(&self, id: &str) -> Result<Option<E>, StoreError> {
        match self.get_value(E::NAME, id).await? {
            None => Ok(None),
            Some(data) => decode::<E>(id, data).map(Some),
        }
    }

    /// Every entity of type `E` in this scope, ordered by id.
    pub async fn list<E: Entity>(&self) -> Result<Vec<E>, StoreError> {
        let values = self.list_values(E::NAME).await?;
        values
            .into_iter()
            .map(|data| decode::<E>("(listed)", data))
            .collect()
    }

    /// Stores the entity and records a `create` change if its id is new, else an `update`,
    /// with its whole data.
    pub async fn put<E: Entity>(&mut self, entity: &E) -> Result<ChangeOp, StoreError> {
        let data = serde_json::to_value(entity).map_err(|error| {
            StoreError::with_source(
                format!("cannot encode {} `{}`", E::NAME, entity.id()),
                error,
            )
        })?;
        self.put_value(E::NAME, &entity.id(), data).await
    }

    /// Removes the entity of type `E` with this id and records a `delete` change; `false` (and
    /// no change) where it did not exist.
    pub async fn delete<E: Entity>(&mut self, id: &str) -> Result<bool, StoreError> {
        self.delete_value(E::NAME, id).await
    }

    /// The entity's data in this scope, with this transaction's writes applied.
    pub async fn get_value(&self, entity: &str, id: &str) -> Result<Option<Value>, StoreError> {
        check_key(entity, id)?;
        self.inner.get(&self.scope, entity, id).await
    }

    /// Every entity of one type in this scope, ordered by id.
    pub async fn list_values(&self, entity: &str) -> Result<Vec<Value>, StoreError> {
        check_entity(entity)?;
        self.inner.list(&self.scope, entity).await
    }

    /// Stores the entity's whole data and records a `create` or `update` change.
    pub async fn put_value(
        &mut self,
        entity: &str,
        id: &str,
        data: Value,
    ) -> Result<ChangeOp, StoreError> {
        check_key(entity, id)?;
        let op = match self
            .inner
            .set(&self.scope, entity, id, data.clone())
            .await?
        {
            Written::Created => ChangeOp::Create,
            Written::Updated => ChangeOp::Update,
        };
        self.record(entity, id, op, Some(data));
        Ok(op)
    }

    /// Removes the entity and records a `delete` change; `false` (and no change) where it did not
    /// exist.
    pub async fn delete_value(&mut self, entity: &str, id: &str) -> Result<bool, StoreError> {
        check_key(entity, id)?;
        let existed = self.inner.delete(&self.scope, entity, id).await?;
        if existed {
            self.record(entity, id, ChangeOp::Delete, None);
        }
        Ok(existed)
    }

    /// The untyped store of the plan, across all scopes; its writes are not recorded as changes.
    pub fn store(&self) -> &dyn Store {
        &*self.inner
    }

    /// Records a change made through [`store`](Tx::store).
    pub fn emit(&mut self, change: NewChange) {
        self.changes.push(change);
    }

    /// The changes recorded so far by this mutation.
    pub fn changes(&self) -> &[NewChange] {
        &self.changes
    }

    fn record(&mut self, entity: &str, id: &str, op: ChangeOp, data: Option<Value>) {
        self.changes.push(NewChange {
            scope: self.scope.clone(),
            entity: entity.to_owned(),
            id: id.to_owned(),
            op,
            data,
        });
    }

    /// Starts the next mutation of the push, in `scope`.
    pub(crate) async fn begin_mutation(&mut self, scope: &str) -> Result<(), StoreError> {
        scope.clone_into(&mut self.scope);
        self.changes.clear();
        self.inner.begin_mutation().await
    }

    /// The backend transaction.
    pub(crate) fn transaction(&self) -> &dyn Transaction {
        &*self.inner
    }

    /// Takes the changes the current mutation recorded.
    pub(crate) fn take_changes(&mut self) -> Vec<NewChange> {
        std::mem::take(&mut self.changes)
    }

    /// The backend transaction, to commit.
    pub(crate) fn into_transaction(self) -> Box<dyn Transaction> {
        self.inner
    }
}

/// Refuses an entity type or id with a NUL character, which PostgreSQL's text cannot hold: the
/// same mutation fails alike on every backend, for good, with `invalid_args`.
fn check_key(entity: &str, id: &str) -> Result<(), StoreError> {
    check_entity(entity)?;
    if id.contains('\0') {
        return Err(StoreError::invalid_input(format!(
            "{entity} id {id:?} holds a NUL character"
        )));
    }
    Ok(())
}

/// Refuses an entity type with a NUL character, as [`check_key`] does.
fn check_entity(entity: &str) -> Result<(), StoreError> {
    if entity.contains('\0') {
        return Err(StoreError::invalid_input(format!(
            "the entity type {entity:?} holds a NUL character"
        )));
    }
    Ok(())
}

fn decode<E: Entity>(id: &str, data: Value) -> Result<E, StoreError> {
    serde_json::from_value(data).map_err(|error| {
        StoreError::with_source(format!("stored {} `{id}` does not decode", E::NAME), error)
    })
}
