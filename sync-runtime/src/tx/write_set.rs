//! A push's uncommitted writes, kept in memory until its commit, with an undo log for the open
//! mutation.
//!
//! Every backend's transaction buffers its writes here, so none needs savepoints: a failed
//! mutation's writes are undone in memory, and the commit hands the backend what is left in one
//! go. Reads lay the buffered writes over the committed state.

use std::collections::BTreeMap;
use std::sync::Arc;

use hashbrown::HashMap;
use serde_json::Value;

use crate::backend::{Key, KeyRef, Write};
use crate::json::Json;

/// An entity's data as written: the value, which later reads of the push and the memory store
/// take, and its encoding, which the change that records the write shares.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Data {
    pub(crate) value: Arc<Value>,
    pub(crate) json: Json,
}

/// The writes of one transaction: `None` is a delete.
#[derive(Default)]
pub(crate) struct WriteSet {
    writes: HashMap<Key, Option<Data>>,
    /// How to undo the open mutation's writes: each key's earlier entry in `writes`.
    undo: Vec<(Key, Option<Option<Data>>)>,
}

impl WriteSet {
    /// Room for `writes` writes without growing.
    pub(crate) fn with_capacity(writes: usize) -> Self {
        WriteSet {
            writes: HashMap::with_capacity(writes),
            undo: Vec::new(),
        }
    }

    /// What this transaction wrote to the entity: `Some(None)` where it deleted it, `None` where
    /// it did not touch it.
    pub(crate) fn get(&self, scope: &str, entity: &str, id: &str) -> Option<&Option<Data>> {
        self.writes.get(&KeyRef(scope, entity, id))
    }

    /// Records a write (`None`: a delete) of the open mutation.
    pub(crate) fn write(&mut self, scope: &str, entity: &str, id: &str, data: Option<Data>) {
        let key = KeyRef(scope, entity, id).to_owned();
        let earlier = self.writes.insert(key.clone(), data);
        self.undo.push((key, earlier));
    }

    /// Ends the open mutation: its writes stay.
    pub(crate) fn keep_mutation(&mut self) {
        self.undo.clear();
    }

    /// Undoes the open mutation's writes.
    pub(crate) fn undo_mutation(&mut self) {
        while let Some((key, earlier)) = self.undo.pop() {
            match earlier {
                Some(data) => self.writes.insert(key, data),
                None => self.writes.remove(&key),
            };
        }
    }

    /// Lays the writes to one entity type of a scope over its committed entities.
    pub(crate) fn overlay(&self, scope: &str, entity: &str, ids: &mut BTreeMap<String, Value>) {
        for (key, written) in &self.writes {
            if key.scope() == scope && key.entity() == entity {
                match written {
                    Some(data) => ids.insert(key.id().to_owned(), Value::clone(&data.value)),
                    None => ids.remove(key.id()),
                };
            }
        }
    }

    /// The writes to commit, without those of a mutation that was begun but not finished.
    pub(crate) fn into_writes(mut self) -> Vec<Write> {
        self.undo_mutation();
        self.writes
            .into_iter()
            .map(|(key, data)| {
                let (data, json) = data.map(|d| (d.value, d.json)).unzip();
                Write { key, data, json }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(value: Value) -> Option<Data> {
        let json = Json::encode(&value).ok()?;
        Some(Data {
            value: Arc::new(value),
            json,
        })
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
            .map(|write| (write.id().to_owned(), write.data, write.json))
            .collect();
        let first = data(json!("first"));
        assert_eq!(
            committed,
            [(
                "1".to_owned(),
                first.as_ref().map(|d| Arc::clone(&d.value)),
                first.map(|d| d.json)
            )]
        );
    }
}
