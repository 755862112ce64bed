//! The caller: the identity a request was authenticated as, handed to its mutations.

use std::any::{Any, type_name};
use std::fmt;
use std::sync::Arc;

use crate::error::{MutationError, StoreError};

/// Who is calling: the identity the engine's [`Authenticator`](crate::Authenticator) produced
/// for the request, or none (an engine without one, or code on the server that pushes without
/// naming a caller).
///
/// `#[mutations]` functions receive it as a typed parameter (`#[caller] user: &User`); a
/// hand-written [`Mutator`](crate::Mutator) reads it from the transaction:
///
/// ```
/// # #[derive(Debug)] struct User { name: String }
/// use sync_runtime::{Mutation, MutationError, Mutator, Tx};
///
/// struct Notes;
///
/// impl Mutator for Notes {
///     async fn apply(&self, tx: &mut Tx, m: &Mutation) -> Result<Option<sync_runtime::Json>, MutationError> {
///         // A clone of the handle (an `Arc`), so that `tx` stays free for writes.
///         let caller = tx.caller().clone();
///         let user: &User = caller.require()?;
///         tx.put_value("note", &tx.new_id(), serde_json::json!({"by": user.name})).await?;
///         Ok(None)
///     }
/// }
/// ```
#[derive(Clone, Default)]
pub struct Caller(Option<Identity>);

/// An identity and its type's name, for the message when a mutation asks for another type.
#[derive(Clone)]
struct Identity {
    value: Arc<dyn Any + Send + Sync>,
    type_name: &'static str,
}

impl Caller {
    /// No identity.
    pub fn none() -> Self {
        Caller(None)
    }

    /// The identity `identity`.
    pub fn new<T: Send + Sync + 'static>(identity: T) -> Self {
        Caller(Some(Identity {
            value: Arc::new(identity),
            type_name: type_name::<T>(),
        }))
    }

    /// Whether there is no identity.
    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }

    /// The identity, where there is one. An identity of another type than `T` is the server's
    /// mistake (the authenticator makes one type, the mutation asks for another): a transient
    /// failure whose message names both, so that no client's mutation fails for good over it.
    pub fn get<T: 'static>(&self) -> Result<Option<&T>, MutationError> {
        let Some(identity) = &self.0 else {
            return Ok(None);
        };
        match identity.value.downcast_ref::<T>() {
            Some(value) => Ok(Some(value)),
            None => Err(MutationError::Store(StoreError::new(format!(
                "a mutation takes its caller as `{}`, but the engine's authenticator makes `{}`: \
                 make the two the same type",
                type_name::<T>(),
                identity.type_name
            )))),
        }
    }

    /// The identity; without one the mutation fails for good with `unauthorized`, before it
    /// runs.
    pub fn require<T: 'static>(&self) -> Result<&T, MutationError> {
        self.get()?.ok_or_else(|| {
            MutationError::new(
                "unauthorized",
                "this mutation needs a signed-in caller, and the request had none",
            )
        })
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(identity) => write!(f, "Caller({})", identity.type_name),
            None => f.write_str("Caller(none)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_hands_out_its_own_type_only() {
        let caller = Caller::new(String::from("ada"));
        assert_eq!(
            caller.require::<String>().ok().map(String::as_str),
            Some("ada")
        );
        let wrong = caller.get::<u32>().err().map(|error| error.to_string());
        assert!(
            wrong.is_some_and(|message| message.contains("`u32`") && message.contains("String"))
        );
        assert_eq!(
            Caller::none()
                .require::<String>()
                .err()
                .and_then(|e| e.code().map(str::to_owned)),
            Some("unauthorized".to_owned())
        );
        assert!(matches!(Caller::none().get::<String>(), Ok(None)));
    }
}
