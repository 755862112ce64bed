//! A push's uncommitted writes, kept in memory until its commit, with an undo log for the open
//! mutation.
//!
//! A transaction that buffers its writes here needs no savepoints: a failed mutation's writes
//! are undone in memory, and the commit applies what is left in one go. Reads lay the buffered
//! writes over the committed state.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use hashbrown::{Equivalent, HashMap};
use serde_json::Value;

use crate::store::ScopeData;

/// The writes of one transaction: `None` is a delete.
#[derive(Default)]
pub(super) struct WriteSet {
    writes: HashMap<Key, Option<Value>>,
    /// How to undo the open mutation's writes: each key's earlier entry in `writes`.
    undo: Vec<(Key, Option<Option<Value>>)>,
}

impl WriteSet {
    /// What this transaction wrote to the entity: `Some(None)` where it deleted it, `None` where
    /// it did not touch it.
    pub(super) fn get(&self, scope: &str, entity: &str, id: &str) -> Option<&Option<Value>> {
        self.writes.get(&KeyRef(scope, entity, id))
    }

    /// Records a write (`None`: a delete) of the open mutation.
    pub(super) fn write(&mut self, scope: &str, entity: &str, id: &str, value: Option<Value>) {
        let key = KeyRef(scope, entity, id).to_owned();
        let earlier = self.writes.insert(key.clone(), value);
        self.undo.push((key, earlier));
    }

    /// Ends the open mutation: its writes stay.
    pub(super) fn keep_mutation(&mut self) {
        self.undo.clear();
    }

    /// Undoes the open mutation's writes.
    pub(super) fn undo_mutation(&mut self) {
        while let Some((key, earlier)) = self.undo.pop() {
            match earlier {
                Some(value) => self.writes.insert(key, value),
                None => self.writes.remove(&key),
            };
        }
    }

    /// Lays the writes to one entity type of a scope over its committed entities.
    pub(super) fn overlay_entities(
        &self,
        scope: &str,
        entity: &str,
        ids: &mut BTreeMap<String, Value>,
    ) {
        for (key, written) in &self.writes {
            let KeyRef(s, e, id) = key.parts();
            if s == scope && e == entity {
                match written {
                    Some(data) => ids.insert(id.to_owned(), data.clone()),
                    None => ids.remove(id),
                };
            }
        }
    }

    /// Lays the writes to a scope over its committed data.
    pub(super) fn overlay_scope(&self, scope: &str, data: &mut ScopeData) {
        for (key, written) in &self.writes {
            let KeyRef(s, entity, id) = key.parts();
            if s != scope {
                continue;
            }
            match written {
                Some(value) => {
                    data.entry(entity.to_owned())
                        .or_default()
                        .insert(id.to_owned(), value.clone());
                }
                None => {
                    if let Some(ids) = data.get_mut(entity) {
                        ids.remove(id);
                    }
                }
            }
        }
        data.retain(|_, ids| !ids.is_empty());
    }

    /// The writes to commit, without those of a mutation that was begun but not finished.
    pub(super) fn into_writes(mut self) -> impl Iterator<Item = (Key, Option<Value>)> {
        self.undo_mutation();
        self.writes.into_iter()
    }
}

/// A written entity's scope, entity type and id, in one allocation.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Key {
    /// The three names one after another.
    text: Box<str>,
    /// Where the entity type and the id start in `text`.
    entity_at: usize,
    id_at: usize,
}

impl Key {
    /// `(scope, entity, id)`.
    pub(super) fn parts(&self) -> KeyRef<'_> {
        let (scope_and_entity, id) = self.text.split_at(self.id_at);
        let (scope, entity) = scope_and_entity.split_at(self.entity_at);
        KeyRef(scope, entity, id)
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
pub(super) struct KeyRef<'a>(pub(super) &'a str, pub(super) &'a str, pub(super) &'a str);

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *self == key.parts()
    }
}

impl KeyRef<'_> {
    fn to_owned(self) -> Key {
        let KeyRef(scope, entity, id) = self;
        Key {
            text: [scope, entity, id].concat().into_boxed_str(),
            entity_at: scope.len(),
            id_at: scope.len() + entity.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_whose_names_run_together_stay_apart() {
        let mut writes = WriteSet::default();
        let keys = [("ab", "c", "d"), ("a", "bc", "d"), ("a", "b", "cd")];
        for (n, (scope, entity, id)) in keys.into_iter().enumerate() {
            assert!(writes.get(scope, entity, id).is_none());
            writes.write(scope, entity, id, Some(json!(n)));
        }
        for (n, (scope, entity, id)) in keys.into_iter().enumerate() {
            assert_eq!(writes.get(scope, entity, id), Some(&Some(json!(n))));
        }
    }

    #[test]
    fn undo_restores_the_writes_before_the_mutation() {
        let mut writes = WriteSet::default();
        writes.write("s", "todo", "1", Some(json!("first")));
        writes.keep_mutation();
        writes.write("s", "todo", "1", Some(json!("second")));
        writes.write("s", "todo", "1", None);
        writes.write("s", "todo", "2", Some(json!("new")));
        writes.undo_mutation();
        assert_eq!(writes.get("s", "todo", "1"), Some(&Some(json!("first"))));
        assert_eq!(writes.get("s", "todo", "2"), None);
        writes.write("s", "todo", "3", Some(json!("unfinished")));
        let committed: Vec<_> = writes
            .into_writes()
            .map(|(key, value)| (key.parts().2.to_owned(), value))
            .collect();
        assert_eq!(committed, [("1".to_owned(), Some(json!("first")))]);
    }
}
