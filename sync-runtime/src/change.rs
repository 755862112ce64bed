//! Changes: the entries of the change log, and what clients pull.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ts_rs::TS;

use crate::json::Json;

/// One entity change in the log.
///
/// Applying a scope's changes in cursor order to an empty state gives the scope's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct Change {
    /// Unique, increasing position in the log.
    pub cursor: u64,
    /// The data partition.
    pub scope: String,
    /// The entity type, e.g. `"todo"`.
    pub entity: String,
    /// The entity id.
    pub id: String,
    /// What happened.
    pub op: ChangeOp,
    /// The entity's whole data after the change; absent (`None`) for deletes. The server
    /// encodes it once, when the mutation writes it, and the log, the push's answer and pulls
    /// write that text as it is; [`Change::decode`] reads it as a type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(type = "unknown")]
    pub data: Option<Json>,
    /// When the change was committed (RFC 3339, UTC, milliseconds).
    #[serde(rename = "ts", with = "rfc3339_millis")]
    #[ts(type = "string")]
    pub timestamp: DateTime<Utc>,
}

impl Change {
    /// The data decoded as `T` (an entity type, or [`serde_json::Value`]); `None` for a delete.
    ///
    /// ```
    /// # fn show(change: &sync_runtime::Change) -> Result<(), serde_json::Error> {
    /// if let Some(data) = change.decode::<serde_json::Value>()? {
    ///     println!("{} is now {}", change.id, data["title"]);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn decode<T: DeserializeOwned>(&self) -> Result<Option<T>, serde_json::Error> {
        self.data.as_ref().map(Json::decode).transpose()
    }
}

/// The kind of a [`Change`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    /// The entity did not exist before.
    Create,
    /// The entity existed and was overwritten.
    Update,
    /// The entity was removed.
    Delete,
}

/// The protocol's timestamp format: RFC 3339 in UTC with `Z` and millisecond precision.
mod rfc3339_millis {
    use chrono::{Datelike, Timelike};

    use super::*;

    /// Written from a stack buffer: every change of every pull answer has a timestamp, and
    /// `to_rfc3339_opts` would allocate and format a `String` for each.
    pub(super) fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        match format(ts) {
            Some(text) => s.serialize_str(std::str::from_utf8(&text).unwrap_or_default()),
            // Outside four-digit years RFC 3339 has no form; chrono writes its extension.
            None => s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::Millis, true)),
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, for years 0 to 9999.
    fn format(ts: &DateTime<Utc>) -> Option<[u8; 24]> {
        let year = u32::try_from(ts.year()).ok().filter(|year| *year <= 9999)?;
        // A leap second's nanoseconds run past 10⁹; chrono writes it as second 60.
        let (second, nanos) = match ts.nanosecond() {
            n if n >= 1_000_000_000 => (ts.second() + 1, n - 1_000_000_000),
            n => (ts.second(), n),
        };
        let mut text = *b"0000-00-00T00:00:00.000Z";
        for (range, value) in [
            (0..4, year),
            (5..7, ts.month()),
            (8..10, ts.day()),
            (11..13, ts.hour()),
            (14..16, ts.minute()),
            (17..19, second),
            (20..23, nanos / 1_000_000),
        ] {
            let mut rest = value;
            for digit in text.get_mut(range)?.iter_mut().rev() {
                // `rest % 10` is below 10: the cast cannot truncate.
                *digit = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
        }
        Some(text)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|ts| ts.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn serializes_with_protocol_names() {
        let change = Change {
            cursor: 7,
            scope: "s".into(),
            entity: "todo".into(),
            id: "a".into(),
            op: ChangeOp::Delete,
            data: None,
            timestamp: Utc
                .timestamp_millis_opt(1_700_000_000_123)
                .single()
                .unwrap_or_default(),
        };
        let json = serde_json::to_value(&change).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"cursor": 7, "scope": "s", "entity": "todo", "id": "a",
                               "op": "delete", "ts": "2023-11-14T22:13:20.123Z"})
        );
        let back: Change = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, change);
    }

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        let change = |timestamp| Change {
            cursor: 1,
            scope: "s".into(),
            entity: "todo".into(),
            id: "a".into(),
            op: ChangeOp::Delete,
            data: None,
            timestamp,
        };
        let leap_second = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|day| day.and_hms_milli_opt(23, 59, 59, 1_500))
            .map(|naive| naive.and_utc());
        let instants = [
            Utc.timestamp_millis_opt(0).single(),
            Utc.timestamp_millis_opt(1_700_000_000_007).single(),
            Utc.timestamp_millis_opt(-62_135_596_800_000).single(), // year 1
            Utc.timestamp_millis_opt(253_402_300_799_999).single(), // 9999-12-31T23:59:59.999
            Utc.timestamp_millis_opt(253_402_300_800_000).single(), // year 10000
            Utc.timestamp_opt(1_700_000_000, 999_999_999).single(),
            leap_second,
        ];
        for timestamp in instants {
            let timestamp = timestamp.unwrap_or_else(|| panic!("a valid instant"));
            let json = serde_json::to_value(change(timestamp)).unwrap_or_default();
            assert_eq!(
                json["ts"],
                timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
                "{timestamp:?}"
            );
        }
    }
}
