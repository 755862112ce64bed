//! The memory backend's entity data.

use std::collections::BTreeMap;

use hashbrown::HashMap;
use parking_lot::RwLock;
use serde_json::Value;

use crate::error::StoreError;
use crate::json::Json;
use crate::protocol::ScopeData;

/// One scope's entities: entity type → id → data.
type Entities = HashMap<String, HashMap<String, Json>>;

/// Entity data in memory: scope → entity → id → data. The entity half of a
/// [`MemoryBackend`](super::MemoryBackend).
///
/// Lookups go through hash maps with a fast hasher (hashbrown's default) and borrowed keys, so a
/// commit allocates only for what it stores; listings and snapshots sort by id when they are
/// read. The data is kept as the JSON text a push encoded, as the SQL stores keep it: a commit
/// stores what its changes share, and a read decodes it.
#[derive(Debug, Default)]
pub struct MemoryStore {
    scopes: RwLock<HashMap<String, Entities>>,
}

impl MemoryStore {
    /// The entity's data.
    pub fn get(&self, scope: &str, entity: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let json = {
            let scopes = self.scopes.read();
            let ids = scopes.get(scope).and_then(|entities| entities.get(entity));
            ids.and_then(|ids| ids.get(id)).cloned()
        };
        json.map(|json| json.entity_value(format_args!("{entity} `{id}`")))
            .transpose()
    }

    /// Whether the entity exists; clones nothing.
    pub fn contains(&self, scope: &str, entity: &str, id: &str) -> bool {
        let scopes = self.scopes.read();
        let ids = scopes.get(scope).and_then(|entities| entities.get(entity));
        ids.is_some_and(|ids| ids.contains_key(id))
    }

    /// Every entity of one type in a scope, by id.
    pub fn list(&self, scope: &str, entity: &str) -> Result<BTreeMap<String, Value>, StoreError> {
        let scopes = self.scopes.read();
        let Some(ids) = scopes.get(scope).and_then(|entities| entities.get(entity)) else {
            return Ok(BTreeMap::new());
        };
        ids.iter()
            .map(|(id, json)| {
                let value = json.entity_value(format_args!("{entity} `{id}`"))?;
                Ok((id.clone(), value))
            })
            .collect()
    }

    /// One page of a scope's data: up to `limit` entities after `after`, by `(entity, id)`.
    /// Sorts references and copies only the page's data.
    pub(super) fn page(
        &self,
        scope: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<ScopeData, StoreError> {
        let scopes = self.scopes.read();
        let mut page = ScopeData::new();
        let Some(entities) = scopes.get(scope) else {
            return Ok(page);
        };
        let mut names: Vec<&String> = entities.keys().collect();
        names.sort_unstable();
        let mut left = limit;
        for name in names {
            if left == 0 {
                break;
            }
            if after.is_some_and(|(entity, _)| name.as_str() < entity) {
                continue;
            }
            let Some(ids) = entities.get(name) else {
                continue;
            };
            let mut keys: Vec<(&String, &Json)> = ids
                .iter()
                .filter(|(id, _)| {
                    after.is_none_or(|(entity, after_id)| {
                        (name.as_str(), id.as_str()) > (entity, after_id)
                    })
                })
                .collect();
            keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let kept = keys
                .into_iter()
                .take(left)
                .map(|(id, json)| {
                    let value = json.entity_value(format_args!("{name} `{id}`"))?;
                    Ok((id.clone(), value))
                })
                .collect::<Result<BTreeMap<String, Value>, StoreError>>()?;
            left -= kept.len();
            if !kept.is_empty() {
                page.insert(name.clone(), kept);
            }
        }
        Ok(page)
    }

    /// Stores the entity; whether it existed before.
    pub(super) fn set(&self, scope: &str, entity: &str, id: &str, data: Json) -> bool {
        let mut scopes = self.scopes.write();
        // `entry_ref` allocates the names only when they are new.
        let ids = scopes
            .entry_ref(scope)
            .or_default()
            .entry_ref(entity)
            .or_default();
        ids.insert(id.to_owned(), data).is_some()
    }

    /// Removes the entity; whether it existed.
    pub(super) fn delete(&self, scope: &str, entity: &str, id: &str) -> bool {
        let mut scopes = self.scopes.write();
        let Some(entities) = scopes.get_mut(scope) else {
            return false;
        };
        let Some(ids) = entities.get_mut(entity) else {
            return false;
        };
        let existed = ids.remove(id).is_some();
        if ids.is_empty() {
            entities.remove(entity);
            if entities.is_empty() {
                scopes.remove(scope);
            }
        }
        existed
    }
}
