//! The request and response bodies of the HTTP endpoints, with the protocol's JSON names.
//!
//! Their TypeScript (`TS`) is the client's `wire.gen.ts`: a request as the server accepts it,
//! an answer as servers send it, where what a version-1 server leaves out is optional.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::changes::Changes;
use crate::mutation::{Mutation, MutationResult};

/// The data of one scope: entity type → id → data, as a snapshot returns it.
pub type ScopeData = BTreeMap<String, BTreeMap<String, Value>>;

/// `POST /_sync/push` request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, TS)]
pub struct PushRequest {
    /// The mutations, applied in order.
    pub mutations: Vec<Mutation>,
}

/// `POST /_sync/push` response.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, TS)]
#[non_exhaustive]
pub struct PushResponse {
    /// `results[i]` answers `mutations[i]`.
    pub results: Vec<MutationResult>,
    /// The log's cursor after the push's last mutation.
    pub cursor: u64,
    /// The log's identity (absent from a version-1 server's answers).
    #[serde(default)]
    #[ts(as = "Option<_>", optional)]
    pub log_id: String,
}

/// `POST /_sync/pull` request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, TS)]
#[non_exhaustive]
pub struct PullRequest {
    /// The scope; absent or empty means `"_default"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Changes after this cursor are returned.
    #[serde(default, with = "null_as_default")]
    #[ts(type = "number | null", optional = nullable)]
    pub cursor: u64,
    /// At most this many changes; 0 or less means the default (100), above the maximum (1000)
    /// means the maximum.
    #[serde(default, with = "lenient_limit")]
    #[ts(type = "number | null", optional = nullable)]
    pub limit: i64,
    /// The log the client's cursor belongs to; another than the server's is answered 410
    /// `log_replaced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_id: Option<String>,
    /// The client asking, to be told its highest processed `client_seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl PullRequest {
    /// A pull of `scope`'s changes after `cursor`, with the default limit.
    ///
    /// ```
    /// use sync_runtime::PullRequest;
    ///
    /// let request = PullRequest::new("team:42", 17).with_limit(50).with_client("c1");
    /// # let _ = request;
    /// ```
    pub fn new(scope: impl Into<String>, cursor: u64) -> Self {
        PullRequest {
            scope: Some(scope.into()),
            cursor,
            ..PullRequest::default()
        }
    }

    /// At most `limit` changes.
    pub fn with_limit(mut self, limit: i64) -> Self {
        self.limit = limit;
        self
    }

    /// Asks for `client_id`'s highest processed `client_seq` too.
    pub fn with_client(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The log the cursor belongs to.
    pub fn with_log_id(mut self, log_id: impl Into<String>) -> Self {
        self.log_id = Some(log_id.into());
        self
    }
}

/// `POST /_sync/pull` response.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, TS)]
#[non_exhaustive]
pub struct PullResponse {
    /// The scope's changes after the requested cursor, ascending.
    #[ts(as = "Vec<crate::change::Change>")]
    pub changes: Changes,
    /// The cursor to pull from next.
    pub cursor: u64,
    /// Whether the scope holds further changes beyond these.
    pub has_more: bool,
    /// The log's identity (absent from a version-1 server's answers).
    #[serde(default)]
    #[ts(as = "Option<_>", optional)]
    pub log_id: String,
    /// The asking client's highest processed `client_seq` (0 if none), where the request named
    /// a client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub client_seq: Option<u64>,
}

/// `POST /_sync/snapshot` request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, TS)]
#[non_exhaustive]
pub struct SnapshotRequest {
    /// The scope; absent or empty means `"_default"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The client asking, to be told its highest processed `client_seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The page starts after this `[entity, id]`: a previous page's `next`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<(String, String)>,
    /// At most this many entities in the page; absent, 0 or less: no count limit (the byte
    /// budget still holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// `POST /_sync/snapshot` response.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, TS)]
#[non_exhaustive]
pub struct SnapshotResponse {
    /// Entity type → id → data: the state after every change up to `cursor`.
    #[ts(type = "Record<string, Record<string, unknown>>")]
    pub data: ScopeData,
    /// The log's head when the snapshot was taken; pull from here.
    pub cursor: u64,
    /// The log's identity (absent from a version-1 server's answers).
    #[serde(default)]
    #[ts(as = "Option<_>", optional)]
    pub log_id: String,
    /// As in [`PullResponse::client_seq`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub client_seq: Option<u64>,
    /// Whether entities remain after this page (absent from a version-1 server's answers).
    #[serde(default)]
    #[ts(as = "Option<_>", optional)]
    pub has_more: bool,
    /// Where the next page starts, the `after` to send, when `has_more`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub next: Option<(String, String)>,
}

// The field helpers below are `with` modules rather than `deserialize_with` functions: ts-rs
// reads `with` (and then takes the field's `ts(type)`), but warns about `deserialize_with` at
// every build. Each writes its value as it is.

/// `null` reads as the default.
mod null_as_default {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.serialize(serializer)
    }

    pub(super) fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de> + Default,
    {
        Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
    }
}

/// Any integer is a limit (the engine clamps it); huge ones saturate rather than fail.
mod lenient_limit {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(limit: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(*limit)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
            return Ok(0);
        };
        if let Some(limit) = number.as_i64() {
            return Ok(limit);
        }
        if number.is_u64() {
            return Ok(i64::MAX);
        }
        match number.as_f64() {
            // `as` saturates: 1e30 is the largest limit, which the engine lowers to its maximum.
            Some(float) if float.fract() == 0.0 => Ok(float as i64),
            _ => Err(serde::de::Error::custom(format!(
                "limit must be an integer, got {number}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(json: &str) -> Result<PullRequest, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn pull_defaults_and_limits() {
        let req = pull("{}").unwrap();
        assert_eq!((req.scope, req.cursor, req.limit), (None, 0, 0));
        assert_eq!(
            pull(r#"{"cursor": null, "limit": null}"#).unwrap().cursor,
            0
        );
        assert_eq!(pull(r#"{"limit": -5}"#).unwrap().limit, -5);
        assert_eq!(
            pull(r#"{"limit": 18446744073709551615}"#).unwrap().limit,
            i64::MAX
        );
        assert_eq!(pull(r#"{"limit": 1e30}"#).unwrap().limit, i64::MAX);
        assert_eq!(pull(r#"{"limit": 1.0}"#).unwrap().limit, 1);
        assert!(pull(r#"{"limit": 1.5}"#).is_err());
        assert!(pull(r#"{"limit": "10"}"#).is_err());
    }

    #[test]
    fn pull_cursor_is_an_unsigned_64_bit_integer() {
        assert_eq!(
            pull(r#"{"cursor": 18446744073709551615}"#).unwrap().cursor,
            u64::MAX
        );
        assert!(pull(r#"{"cursor": 18446744073709551616}"#).is_err());
        assert!(pull(r#"{"cursor": -1}"#).is_err());
        assert!(pull(r#"{"cursor": "1"}"#).is_err());
    }
}
