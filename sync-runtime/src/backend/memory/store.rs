//! The memory backend's entity data.

use std::collections::BTreeMap;

use hashbrown::HashMap;
use parking_lot::RwLock;
use serde_json::Value;

use crate::protocol::ScopeData;

/// One scope's entities: entity type → id → data.
type Entities = HashMap<String, HashMap<String, Value>>;

/// Entity data in memory: scope → entity → id → data. The entity half of a
/// [`MemoryBackend`](super::MemoryBackend).
///
/// Lookups go through hash maps with a fast hasher (hashbrown's default) and borrowed keys, so a
/// commit allocates only for what it stores; listings and snapshots sort by id when they are
/// read.
#[derive(Debug, Default)]
pub struct MemoryStore {
    scopes: RwLock<HashMap<String, Entities>>,
}

impl MemoryStore {
    /// The entity's data.
    pub fn get(&self, scope: &str, entity: &str, id: &str) -> Option<Value> {
        let scopes = self.scopes.read();
        scopes.get(scope)?.get(entity)?.get(id).cloned()
    }

    /// Whether the entity exists; clones nothing.
    pub fn contains(&self, scope: &str, entity: &str, id: &str) -> bool {
        let scopes = self.scopes.read();
        let ids = scopes.get(scope).and_then(|entities| entities.get(entity));
        ids.is_some_and(|ids| ids.contains_key(id))
    }

    /// Every entity of one type in a scope, by id.
    pub fn list(&self, scope: &str, entity: &str) -> BTreeMap<String, Value> {
        let scopes = self.scopes.read();
        scopes
            .get(scope)
            .and_then(|entities| entities.get(entity))
            .map(sorted)
            .unwrap_or_default()
    }

    /// One page of a scope's data: up to `limit` entities after `after`, by `(entity, id)`.
    /// Sorts references and copies only the page's data.
    pub(super) fn page(&self, scope: &str, after: Option<(&str, &str)>, limit: usize) -> ScopeData {
        let scopes = self.scopes.read();
        let mut page = ScopeData::new();
        let Some(entities) = scopes.get(scope) else {
            return page;
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
            let mut keys: Vec<(&String, &Value)> = ids
                .iter()
                .filter(|(id, _)| {
                    after.is_none_or(|(entity, after_id)| {
                        (name.as_str(), id.as_str()) > (entity, after_id)
                    })
                })
                .collect();
            keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let kept: BTreeMap<String, Value> = keys
                .into_iter()
                .take(left)
                .map(|(id, data)| (id.clone(), data.clone()))
                .collect();
            left -= kept.len();
            if !kept.is_empty() {
                page.insert(name.clone(), kept);
            }
        }
        page
    }

    /// Stores the entity; whether it existed before.
    pub(super) fn set(&self, scope: &str, entity: &str, id: &str, data: Value) -> bool {
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

/// A copy of one entity type's data, ordered by id.
fn sorted(ids: &HashMap<String, Value>) -> BTreeMap<String, Value> {
    ids.iter()
        .map(|(id, data)| (id.clone(), data.clone()))
        .collect()
}
