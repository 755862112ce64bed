//! A push's uncommitted writes, kept in memory until its commit, with an undo log for the open
//! mutation.
//!
//! Every backend's transaction buffers its writes here, so none needs savepoints: a failed
//! mutation's writes are undone in memory, and the commit hands the backend what is left in one
//! go. Reads lay the buffered writes over the committed state.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use serde_json::Value;

use crate::backend::{Key, KeyRef, Write};
use crate::error::StoreError;
use crate::json::Json;

/// The writes of one transaction: `None` is a delete.
///
/// The entries stay in the order of each key's first write, found through a table of their
/// positions: the undo log names an entry by its position rather than by a copy of its key (one
/// allocation less per write), and the commit writes the keys in the order the push wrote them.
#[derive(Default)]
pub(crate) struct WriteSet {
    /// Each written key with its latest write.
    entries: Vec<(Key, Option<Json>)>,
    /// The position in `entries` of each key.
    positions: HashTable<usize>,
    hasher: DefaultHashBuilder,
    /// How to undo the open mutation's writes: per write, the entry it changed and what the entry
    /// held before, `None` where the write added the entry.
    undo: Vec<(usize, Option<Option<Json>>)>,
}

impl WriteSet {
    /// Room for `writes` writes without growing.
    pub(crate) fn with_capacity(writes: usize) -> Self {
        WriteSet {
            entries: Vec::with_capacity(writes),
            positions: HashTable::with_capacity(writes),
            ..WriteSet::default()
        }
    }

    /// Where the entry of `key` is in `entries`.
    fn position(&self, hash: u64, key: KeyRef<'_>) -> Option<usize> {
        let entries = &self.entries;
        let is_key = |&at: &usize| entries.get(at).is_some_and(|(k, _)| k.parts() == key);
        self.positions.find(hash, is_key).copied()
    }

    /// What this transaction wrote to the entity: `Some(None)` where it deleted it, `None` where
    /// it did not touch it.
    pub(crate) fn get(&self, scope: &str, entity: &str, id: &str) -> Option<&Option<Json>> {
        let key = KeyRef(scope, entity, id);
        let at = self.position(self.hasher.hash_one(key), key)?;
        self.entries.get(at).map(|(_, data)| data)
    }

    /// Records a write (`None`: a delete) of the open mutation; returns the key's position in
    /// the writes to commit ([`into_writes`](Self::into_writes)), which stays until the write
    /// that added the key is undone.
    pub(crate) fn write(
        &mut self,
        scope: &str,
        entity: &str,
        id: &str,
        data: Option<Json>,
    ) -> usize {
        let key = KeyRef(scope, entity, id);
        let hash = self.hasher.hash_one(key);
        if let Some(at) = self.position(hash, key)
            && let Some((_, written)) = self.entries.get_mut(at)
        {
            let earlier = std::mem::replace(written, data);
            self.undo.push((at, Some(earlier)));
            return at;
        }
        let at = self.entries.len();
        self.entries.push((key.to_owned(), data));
        let (entries, hasher) = (&self.entries, &self.hasher);
        let rehash = |&at: &usize| {
            entries
                .get(at)
                .map_or(0, |(k, _)| hasher.hash_one(k.parts()))
        };
        self.positions.insert_unique(hash, at, rehash);
        self.undo.push((at, None));
        at
    }

    /// Ends the open mutation: its writes stay.
    pub(crate) fn keep_mutation(&mut self) {
        self.undo.clear();
    }

    /// Undoes the open mutation's writes.
    pub(crate) fn undo_mutation(&mut self) {
        while let Some((at, earlier)) = self.undo.pop() {
            match earlier {
                Some(data) => {
                    if let Some((_, written)) = self.entries.get_mut(at) {
                        *written = data;
                    }
                }
                // Undone last first, so the entry this write added is the last one.
                None => {
                    if let Some((key, _)) = self.entries.pop() {
                        let hash = self.hasher.hash_one(key.parts());
                        if let Ok(entry) = self.positions.find_entry(hash, |&p| p == at) {
                            entry.remove();
                        }
                    }
                }
            }
        }
    }

    /// Lays the writes to one entity type of a scope over its committed entities.
    pub(crate) fn overlay(
        &self,
        scope: &str,
        entity: &str,
        ids: &mut BTreeMap<String, Value>,
    ) -> Result<(), StoreError> {
        for (key, written) in &self.entries {
            if key.scope() == scope && key.entity() == entity {
                match written {
                    Some(json) => {
                        let value = json.entity_value(format_args!("{entity} `{}`", key.id()))?;
                        ids.insert(key.id().to_owned(), value)
                    }
                    None => ids.remove(key.id()),
                };
            }
        }
        Ok(())
    }

    /// The writes to commit, in the order of their keys' first writes, without those of a
    /// mutation that was begun but not finished.
    pub(crate) fn into_writes(mut self) -> Vec<Write> {
        self.undo_mutation();
        self.entries
            .into_iter()
            .map(|(key, json)| Write {
                key,
                json,
                existence_unknown: false,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(value: Value) -> Option<Json> {
        Json::encode(&value).ok()
    }

    #[test]
    fn keys_whose_names_run_together_stay_apart() {
        let mut writes = WriteSet::default();
        let keys = [("ab", "c", "d"), ("a", "bc", "d"), ("a", "b", "cd")];
        for (n, (scope, entity, id)) in keys.into_iter().enumerate() {
            assert!(writes.get(scope, entity, id).is_none());
            writes.write(scope, entity, id, data(json!(n)));
        }
        for (n, (scope, entity, id)) in keys.into_iter().enumerate() {
            assert_eq!(writes.get(scope, entity, id), Some(&data(json!(n))));
        }
        writes.keep_mutation();
        let mut committed: Vec<_> = writes
            .into_writes()
            .iter()
            .map(|w| {
                (
                    w.scope().to_owned(),
                    w.entity().to_owned(),
                    w.id().to_owned(),
                )
            })
            .collect();
        committed.sort();
        assert_eq!(
            committed,
            [("a", "b", "cd"), ("a", "bc", "d"), ("ab", "c", "d")].map(|(s, e, i)| (
                s.to_owned(),
                e.to_owned(),
                i.to_owned()
            ))
        );
    }

    #[test]
    fn undo_restores_the_writes_before_the_mutation() {
        let mut writes = WriteSet::default();
        writes.write("s", "todo", "1", data(json!("first")));
        writes.keep_mutation();
        writes.write("s", "todo", "1", data(json!("second")));
        writes.write("s", "todo", "1", None);
        writes.write("s", "todo", "2", data(json!("new")));
        writes.undo_mutation();
        assert_eq!(writes.get("s", "todo", "1"), Some(&data(json!("first"))));
        assert_eq!(writes.get("s", "todo", "2"), None);
        writes.write("s", "todo", "3", data(json!("unfinished")));
        let committed: Vec<_> = writes
            .into_writes()
            .into_iter()
            .map(|write| (write.id().to_owned(), write.json))
            .collect();
        assert_eq!(committed, [("1".to_owned(), data(json!("first")))]);
    }

    #[test]
    fn writes_commit_in_the_order_of_their_first_write() {
        let mut writes = WriteSet::default();
        for id in ["c", "a", "b", "a"] {
            writes.write("s", "todo", id, data(json!(id)));
        }
        writes.keep_mutation();
        writes.write("s", "todo", "d", data(json!("d")));
        writes.write("s", "todo", "c", None);
        writes.undo_mutation();
        writes.write("s", "todo", "e", data(json!("e")));
        writes.keep_mutation();
        assert_eq!(writes.get("s", "todo", "d"), None, "undone");
        assert_eq!(writes.get("s", "todo", "c"), Some(&data(json!("c"))));
        let committed: Vec<_> = writes
            .into_writes()
            .iter()
            .map(|w| {
                (
                    w.id().to_owned(),
                    w.json.as_ref().map(|j| j.as_str().to_owned()),
                )
            })
            .collect();
        let expected: Vec<_> = [("c", "c"), ("a", "a"), ("b", "b"), ("e", "e")]
            .iter()
            .map(|(id, text)| ((*id).to_owned(), Some(format!("{text:?}"))))
            .collect();
        assert_eq!(committed, expected);
    }

    /// Enough keys that the position table grows, with a mutation of new keys undone between.
    #[test]
    fn many_keys_stay_found_through_growth_and_undo() {
        let mut writes = WriteSet::default();
        for n in 0..100 {
            writes.write("s", "todo", &n.to_string(), data(json!(n)));
        }
        writes.keep_mutation();
        for n in 100..200 {
            writes.write("s", "todo", &n.to_string(), data(json!(n)));
        }
        writes.write("s", "todo", "7", None);
        writes.undo_mutation();
        for n in 200..300 {
            writes.write("s", "todo", &n.to_string(), data(json!(n)));
        }
        for n in 0..300 {
            let found = writes.get("s", "todo", &n.to_string());
            if (100..200).contains(&n) {
                assert_eq!(found, None, "{n} was undone");
            } else {
                assert_eq!(found, Some(&data(json!(n))), "{n}");
            }
        }
        writes.keep_mutation();
        assert_eq!(writes.into_writes().len(), 200);
    }
}
