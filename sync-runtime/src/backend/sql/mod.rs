//! What the SQL backends share: the schema, how operations, timestamps and JSON are stored, and
//! how a database error becomes a [`StoreError`].

pub(super) mod schema;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::change::ChangeOp;
use crate::error::StoreError;
use crate::json::Json;

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

/// Entity and change data are stored as JSON text: the text the mutation's write encoded, as it
/// is. Entity data is parsed when a mutation or a snapshot reads it.
pub(super) fn parse_json(text: &str, what: impl std::fmt::Display) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|error| {
        StoreError::with_source(format!("the database's {what} is not valid JSON"), error)
    })
}

/// A change's stored data, checked but not parsed into a value: pulls write the text as it is, so
/// a row that is not JSON (a corrupt database) must fail here, never reach an answer.
pub(super) fn stored_json(text: String, what: impl std::fmt::Display) -> Result<Json, StoreError> {
    Json::parse(text).map_err(|error| {
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
