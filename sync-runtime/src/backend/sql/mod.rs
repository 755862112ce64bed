//! What the SQL backends share: the schema, how operations, timestamps and JSON are stored, and
//! how a database error becomes a [`StoreError`].

pub(super) mod schema;

use chrono::{DateTime, Utc};
use hashbrown::HashMap;
use serde_json::Value;

use crate::backend::Commit;
use crate::change::ChangeOp;
use crate::error::StoreError;

/// How an operation is stored: the wire name, readable in the database.
pub(super) fn op_name(op: ChangeOp) -> &'static str {
    match op {
        ChangeOp::Create => "create",
        ChangeOp::Update => "update",
        ChangeOp::Delete => "delete",
    }
}

pub(super) fn parse_op(text: &str) -> Result<ChangeOp, StoreError> {
    match text {
        "create" => Ok(ChangeOp::Create),
        "update" => Ok(ChangeOp::Update),
        "delete" => Ok(ChangeOp::Delete),
        other => Err(StoreError::new(format!(
            "the change log holds an unknown operation `{other}`"
        ))),
    }
}

/// Timestamps are stored as microseconds since the Unix epoch.
pub(super) fn timestamp(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| {
        StoreError::new(format!(
            "the change log holds an impossible timestamp ({micros} µs)"
        ))
    })
}

/// Entity and change data are stored as JSON text: serialized once, parsed when read.
fn to_json(value: &Value) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|error| StoreError::with_source("cannot serialize entity data as JSON", error))
}

pub(super) fn parse_json(text: &str, what: impl std::fmt::Display) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|error| {
        StoreError::with_source(format!("the database's {what} is not valid JSON"), error)
    })
}

pub(super) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::new(format!("{what} {value} is beyond 2^63-1")))
}

pub(super) fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::new(format!("the database holds a negative {what} ({value})")))
}

/// A commit's data as JSON text, each distinct value encoded once: a change and its entity's
/// final write share one value, and so one text.
pub(super) struct Encoded {
    texts: Vec<String>,
    writes: Vec<Option<usize>>,
    changes: Vec<Option<usize>>,
}

impl Encoded {
    pub(super) fn new(commit: &Commit) -> Result<Self, StoreError> {
        let mut at: HashMap<usize, usize> = HashMap::new();
        let mut texts = Vec::new();
        let mut encode =
            |data: Option<&std::sync::Arc<Value>>| -> Result<Option<usize>, StoreError> {
                let Some(data) = data else { return Ok(None) };
                // The value's address names it while the commit holds it.
                let address = std::sync::Arc::as_ptr(data).addr();
                if let Some(index) = at.get(&address) {
                    return Ok(Some(*index));
                }
                texts.push(to_json(data)?);
                at.insert(address, texts.len() - 1);
                Ok(Some(texts.len() - 1))
            };
        let changes = commit
            .changes()
            .iter()
            .map(|change| encode(change.data.as_ref()))
            .collect::<Result<_, _>>()?;
        let writes = commit
            .writes()
            .iter()
            .map(|write| encode(write.data()))
            .collect::<Result<_, _>>()?;
        Ok(Encoded {
            texts,
            writes,
            changes,
        })
    }

    /// The text of the `index`th write's data; `None` for a delete.
    pub(super) fn write(&self, index: usize) -> Option<&str> {
        self.text(self.writes.get(index).copied().flatten())
    }

    /// The text of the `index`th change's data; `None` for a delete.
    pub(super) fn change(&self, index: usize) -> Option<&str> {
        self.text(self.changes.get(index).copied().flatten())
    }

    fn text(&self, at: Option<usize>) -> Option<&str> {
        self.texts.get(at?).map(String::as_str)
    }
}

/// A database driver's error, which knows how to become a [`StoreError`].
pub(super) trait DbError: Sized {
    /// This error as a store failure while doing `what`.
    fn into_store_error(self, what: String) -> StoreError;
}

/// Adds what failed to a database error.
pub(super) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T, E: DbError> Context<T> for Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|error| error.into_store_error(what()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::NewChange;

    #[test]
    fn a_shared_value_is_encoded_once() {
        let shared = Arc::new(serde_json::json!({"title": "a"}));
        let other = Arc::new(serde_json::json!({"title": "a"}));
        let change = |data: &Arc<Value>| NewChange {
            scope: "s".into(),
            entity: "todo".into(),
            id: "1".into(),
            op: ChangeOp::Create,
            data: Some(Arc::clone(data)),
        };
        let commit = Commit {
            writes: Vec::new(),
            changes: vec![change(&shared), change(&other), change(&shared)],
            client_seqs: Vec::new(),
            failures: Vec::new(),
        };
        let encoded = Encoded::new(&commit).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            encoded.texts.len(),
            2,
            "equal values that are not shared encode apart"
        );
        assert_eq!(encoded.change(0), Some(r#"{"title":"a"}"#));
        assert_eq!(encoded.changes, [Some(0), Some(1), Some(0)]);
    }
}
