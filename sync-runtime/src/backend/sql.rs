//! What the SQL backends share: how operations, timestamps and JSON are stored.

use chrono::{DateTime, Utc};
use serde_json::Value;

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
pub(super) fn to_json(value: &Value) -> Result<String, StoreError> {
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

/// Retention trims only once the log exceeds `keep` by this much, then back to `keep`: one
/// trim per tenth of `keep` pushes rather than one per push.
pub(super) fn retain_slack(keep: i64) -> i64 {
    keep / 10
}
