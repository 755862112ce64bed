//! Mutators: the application's business logic, run for each pushed mutation.

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::change::NewChange;
use crate::error::MutationError;
use crate::mutation::Mutation;
use crate::tx::Tx;

/// Applies mutations: validates one, writes through the transaction handle, and returns the
/// value that goes back to the client as `MutationResult.value`.
///
/// The engine has already resolved the scope (`tx.scope()`) and made `mutation.args` an object.
#[async_trait]
pub trait Mutator: Send + Sync + 'static {
    /// Applies one mutation. [`MutationError::Failed`] is a permanent failure;
    /// [`MutationError::Store`] a transient one.
    async fn apply(&self, tx: &mut Tx, mutation: &Mutation)
    -> Result<Option<Value>, MutationError>;
}

/// A mutator from a function, as the plan's `MutatorFunc`: it gets the transaction and the
/// mutation and returns the changes it made through [`Tx::store`] (changes made through
/// [`Tx::put_value`] and [`Tx::delete_value`] are recorded already; return them empty).
///
/// ```
/// use serde_json::json;
/// use sync_runtime::{ChangeOp, MutationError, MutatorFunc, NewChange};
///
/// let mutator = MutatorFunc::new(|tx, m| Box::pin(async move {
///     match m.name.as_str() {
///         "note/set" => {
///             let id = tx.new_id();
///             let note = json!({"id": id, "text": m.args["text"]});
///             tx.store().set(tx.scope(), "note", &id, note.clone()).await?;
///             Ok(vec![NewChange {
///                 scope: tx.scope().to_owned(),
///                 entity: "note".into(),
///                 id,
///                 op: ChangeOp::Create,
///                 data: Some(note),
///             }])
///         }
///         other => Err(MutationError::unknown_mutation(other)),
///     }
/// }));
/// # let _ = mutator;
/// ```
pub struct MutatorFunc<F>(F);

impl<F> MutatorFunc<F>
where
    F: for<'a> Fn(&'a mut Tx, &'a Mutation) -> BoxFuture<'a, Result<Vec<NewChange>, MutationError>>
        + Send
        + Sync
        + 'static,
{
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        MutatorFunc(f)
    }
}

#[async_trait]
impl<F> Mutator for MutatorFunc<F>
where
    F: for<'a> Fn(&'a mut Tx, &'a Mutation) -> BoxFuture<'a, Result<Vec<NewChange>, MutationError>>
        + Send
        + Sync
        + 'static,
{
    async fn apply(
        &self,
        tx: &mut Tx,
        mutation: &Mutation,
    ) -> Result<Option<Value>, MutationError> {
        let changes = (self.0)(tx, mutation).await?;
        for change in changes {
            tx.emit(change);
        }
        Ok(None)
    }
}
