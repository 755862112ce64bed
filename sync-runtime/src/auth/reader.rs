//! Read-only access to committed data, for authorizers.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::backend::{AnyBackend, Store};
use crate::entity::Entity;
use crate::error::StoreError;
use crate::tx::decode;

/// The committed data of every scope, read-only: what an [`Authorizer`](crate::Authorizer)
/// reads to decide, e.g. a membership record. There is no write path through it.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    backend: &'a AnyBackend,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(backend: &'a AnyBackend) -> Self {
        Reader { backend }
    }

    /// The entity of type `E` with this id in `scope`.
    pub async fn get<E: Entity>(&self, scope: &str, id: &str) -> Result<Option<E>, StoreError> {
        match self.get_value(scope, E::NAME, id).await? {
            Some(data) => decode::<E>(id, data).map(Some),
            None => Ok(None),
        }
    }

    /// Every entity of type `E` in `scope`, ordered by id.
    pub async fn list<E: Entity>(&self, scope: &str) -> Result<Vec<E>, StoreError> {
        let values = self.list_values(scope, E::NAME).await?;
        values
            .into_iter()
            .map(|(id, data)| decode::<E>(&id, data))
            .collect()
    }

    /// The entity's data in `scope`.
    pub async fn get_value(
        &self,
        scope: &str,
        entity: &str,
        id: &str,
    ) -> Result<Option<Value>, StoreError> {
        self.backend.get(scope, entity, id).await
    }

    /// Every entity of one type in `scope`, by id.
    pub async fn list_values(
        &self,
        scope: &str,
        entity: &str,
    ) -> Result<BTreeMap<String, Value>, StoreError> {
        self.backend.list(scope, entity).await
    }
}
