//! The store: scoped entity data, as the plan's `Store` interface describes it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::StoreError;

/// The data of one scope: entity type → id → data, as a snapshot returns it.
pub type ScopeData = BTreeMap<String, BTreeMap<String, Value>>;

/// What a [`Store::set`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The entity did not exist before.
    Created,
    /// The entity existed and was overwritten.
    Updated,
}

impl Written {
    /// What writing an entity does, depending on whether it existed.
    pub(crate) fn when_existed(existed: bool) -> Self {
        if existed {
            Written::Updated
        } else {
            Written::Created
        }
    }
}

/// Scoped key-value storage of entity data: scope → entity type → id → JSON data.
///
/// The same entity and id in two scopes are two entities. A [`Transaction`](crate::Transaction)
/// is a `Store` whose writes become visible together when it commits.
#[async_trait]
pub trait Store: Send + Sync {
    /// The entity's data, or `None` where it does not exist.
    async fn get(&self, scope: &str, entity: &str, id: &str) -> Result<Option<Value>, StoreError>;

    /// Stores the entity's whole data, saying whether it was created or overwritten.
    async fn set(
        &self,
        scope: &str,
        entity: &str,
        id: &str,
        data: Value,
    ) -> Result<Written, StoreError>;

    /// Removes the entity; `false` where it did not exist.
    async fn delete(&self, scope: &str, entity: &str, id: &str) -> Result<bool, StoreError>;

    /// Every entity of one type in a scope, ordered by id.
    async fn list(&self, scope: &str, entity: &str) -> Result<Vec<Value>, StoreError>;

    /// All data of a scope.
    async fn snapshot(&self, scope: &str) -> Result<ScopeData, StoreError>;
}
