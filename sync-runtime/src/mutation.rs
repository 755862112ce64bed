//! Mutations: what clients push, and what each one's result says.

use std::sync::Arc;

use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use ts_rs::TS;

use crate::change::Change;
use crate::json::Json;
use crate::scope::DEFAULT_SCOPE;

/// A client-originated request to change state: a named mutation with its arguments.
#[derive(Clone, Debug, Default, PartialEq, Serialize, TS)]
pub struct Mutation {
    /// The mutation, e.g. `"todo/create"`.
    pub name: String,
    /// Its arguments, a JSON object. Absent or `null` means `{}`; anything else but an object
    /// fails this mutation with `invalid_args`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[ts(type = "unknown")]
    pub args: Value,
    /// The originating client, for deduplication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The client's sequence number; strictly ascending per client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_seq: Option<u64>,
    /// The data partition this mutation affects; absent or empty means `"_default"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The fields of a [`Mutation`] as they arrive.
#[derive(Deserialize)]
struct MutationFields {
    name: String,
    #[serde(default)]
    args: Value,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_seq: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
}

/// A mutation is a JSON object and nothing else: a derived impl would also read it from an array.
impl<'de> Deserialize<'de> for Mutation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectOnly;

        impl<'de> Visitor<'de> for ObjectOnly {
            type Value = MutationFields;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mutation object with a string `name`")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MutationFields, A::Error> {
                MutationFields::deserialize(MapAccessDeserializer::new(map))
            }
        }

        let MutationFields {
            name,
            args,
            client_id,
            client_seq,
            scope,
        } = deserializer.deserialize_map(ObjectOnly)?;
        Ok(Mutation {
            name,
            args,
            client_id,
            client_seq,
            scope,
        })
    }
}

impl Mutation {
    /// A mutation of `name` with `args`, in the default scope and without a client id.
    pub fn new(name: impl Into<String>, args: Value) -> Self {
        Mutation {
            name: name.into(),
            args,
            ..Mutation::default()
        }
    }

    /// Sets the scope.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Sets the client id and sequence number that make retries of this mutation idempotent.
    pub fn with_client(mut self, client_id: impl Into<String>, client_seq: u64) -> Self {
        self.client_id = Some(client_id.into());
        self.client_seq = Some(client_seq);
        self
    }

    /// The scope this mutation runs in: its own, or `"_default"` where absent or empty.
    pub fn scope(&self) -> &str {
        match self.scope.as_deref() {
            None | Some("") => DEFAULT_SCOPE,
            Some(scope) => scope,
        }
    }

    /// The `(client_id, client_seq)` pair that deduplicates this mutation, where both are given
    /// and the sequence number is positive.
    pub fn client(&self) -> Option<(&str, u64)> {
        match (self.client_id.as_deref(), self.client_seq) {
            (Some(id), Some(seq)) if seq > 0 => Some((id, seq)),
            _ => None,
        }
    }
}

/// The answer to one [`Mutation`] of a push.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, TS)]
pub struct MutationResult {
    /// Applied, or already applied.
    pub ok: bool,
    /// The cursor of this mutation's last change; where it made none, the log's cursor then.
    pub cursor: u64,
    /// A human sentence, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub error: Option<String>,
    /// A machine-readable code, when `ok` is false: `unknown_mutation`, `invalid_args`,
    /// `not_found`, `rejected`, or the application's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub code: Option<String>,
    /// The changes this mutation made, with their cursors and timestamps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Arc<Change>>,
    /// This `(client_id, client_seq)` had already been processed; nothing was applied again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[ts(type = "true")]
    pub duplicate: bool,
    /// The mutation function's return value; the server encodes it once, when the mutation
    /// returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(type = "unknown")]
    pub value: Option<Json>,
}

impl MutationResult {
    /// A mutation that was applied.
    pub fn applied(cursor: u64, changes: Vec<Arc<Change>>, value: Option<Json>) -> Self {
        MutationResult {
            ok: true,
            cursor,
            changes,
            value,
            ..MutationResult::default()
        }
    }

    /// The mutation's returned value decoded as `T` (its type, or [`serde_json::Value`]);
    /// `None` where it returned none.
    ///
    /// ```
    /// # fn show(result: &sync_runtime::MutationResult) -> Result<(), serde_json::Error> {
    /// if let Some(todo) = result.decode::<serde_json::Value>()? {
    ///     println!("created {}", todo["id"]);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn decode<T: DeserializeOwned>(&self) -> Result<Option<T>, serde_json::Error> {
        self.value.as_ref().map(Json::decode).transpose()
    }

    /// A mutation that had already been processed.
    pub fn duplicate(cursor: u64) -> Self {
        MutationResult {
            ok: true,
            cursor,
            duplicate: true,
            ..MutationResult::default()
        }
    }

    /// A mutation that failed for good.
    pub fn failed(cursor: u64, code: impl Into<String>, error: impl Into<String>) -> Self {
        MutationResult {
            ok: false,
            cursor,
            code: Some(code.into()),
            error: Some(error.into()),
            ..MutationResult::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mutation_is_an_object() {
        let m: Mutation = serde_json::from_str(r#"{"name": "a", "client_seq": 2}"#).unwrap();
        assert_eq!(
            (m.name.as_str(), m.client_seq, m.args.is_null()),
            ("a", Some(2), true)
        );
        assert!(serde_json::from_str::<Mutation>(r#"["a"]"#).is_err());
        assert!(serde_json::from_str::<Mutation>(r#"{"args": {}}"#).is_err());
    }
}
