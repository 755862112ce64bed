//! Entity data as JSON text, encoded once.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::StoreError;

/// An entity's data as JSON text: encoded once, when the mutation writes it, then shared by the
/// log, the push's answer and every pull that reads it.
///
/// A store writes this text as it is and hands it back as it is; an answer that holds it writes
/// its bytes without decoding them again. The text is always valid JSON: [`Json::encode`]
/// produces it, and [`Json::parse`] (for text that comes from elsewhere, e.g. a database) checks
/// it. Cloning shares the text.
///
/// ```
/// use sync_runtime::Json;
///
/// let data = Json::encode(&serde_json::json!({"title": "milk", "done": false}))?;
/// assert_eq!(data.as_str(), r#"{"done":false,"title":"milk"}"#);
/// assert_eq!(data.to_value()?["title"], "milk");
/// assert!(Json::parse("{\"title\":".to_owned()).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone)]
pub struct Json(Arc<RawValue>);

impl Json {
    /// Encodes `value` as compact JSON text, as `serde_json::to_string` writes it.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(|raw| Json(Arc::from(raw)))
    }

    /// Takes JSON text from elsewhere, checking that it is one valid JSON value (whitespace
    /// around it is dropped; within it, the text is kept as it is).
    pub fn parse(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(|raw| Json(Arc::from(raw)))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The data decoded as `T`: an entity type, or [`serde_json::Value`].
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.as_str())
    }

    /// The data as a [`Value`]. Fails only where text from elsewhere holds what a `Value` cannot
    /// (a number beyond `f64`, say): what the engine encodes always decodes.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        self.decode()
    }

    /// Whether the text is `null`: what `()` and `None` encode to.
    pub fn is_null(&self) -> bool {
        self.as_str() == "null"
    }

    /// [`to_value`](Json::to_value) for a store's read of an entity, which `what` names: text
    /// this crate encoded always decodes, so a failure is a store error.
    pub(crate) fn entity_value(&self, what: impl fmt::Display) -> Result<Value, StoreError> {
        self.to_value()
            .map_err(|error| StoreError::with_source(format!("cannot decode {what}"), error))
    }
}

/// A [`Value`]'s text, for code that builds its JSON with `json!`: `Ok(Some(json!(id).into()))`.
impl From<Value> for Json {
    fn from(value: Value) -> Self {
        // A `Value` always encodes (its keys are strings, its numbers finite); `null` would only
        // stand in for a failure serde_json does not have.
        Json::encode(&value).unwrap_or_else(|_| Json(Arc::from(RawValue::NULL.to_owned())))
    }
}

/// Equal where the texts are: what the engine encodes from equal values is equal text.
impl PartialEq for Json {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Json {}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes the text as it is (into JSON; other formats get it as the value it encodes).
impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Keeps the value's text as it arrived.
impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(|raw| Json(Arc::from(raw)))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The text is what encoding the value writes: answers stay byte for byte what they were
    /// when each answer encoded the value itself.
    #[test]
    fn encodes_as_serde_json_writes_the_value() {
        let value =
            json!({"b": [1, 2.5, -3, 1e300, "x\"\u{1F600}\n"], "a": null, "c": {"d": true}});
        let data = Json::encode(&value).unwrap_or_else(|e| panic!("{e}"));
        let expected = serde_json::to_string(&value).unwrap_or_default();
        assert_eq!(data.as_str(), expected);
        let wrapped = serde_json::to_string(&json!({"data": data.to_value().ok()}));
        assert_eq!(
            serde_json::to_string(&serde_json::json!({"data": value})).ok(),
            wrapped.ok()
        );
        #[derive(Serialize)]
        struct Holder {
            data: Json,
        }
        assert_eq!(
            serde_json::to_string(&Holder { data }).unwrap_or_default(),
            format!("{{\"data\":{expected}}}")
        );
    }

    #[test]
    fn parse_checks_the_text_and_drops_surrounding_whitespace() {
        for bad in ["", "{", "{\"a\":}", "nul", "[1,]", "1 2", "\"\\x\""] {
            assert!(Json::parse(bad.to_owned()).is_err(), "{bad:?} was taken");
        }
        let data =
            Json::parse(" \n{\"a\": [1, 2]}\t ".to_owned()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(data.as_str(), "{\"a\": [1, 2]}");
        assert_eq!(data.to_value().ok(), Some(json!({"a": [1, 2]})));
    }

    #[test]
    fn deserializes_keeping_the_text() {
        let back: Vec<Json> =
            serde_json::from_str(r#"[{"z":1,"a":2}, null]"#).unwrap_or_else(|e| panic!("{e}"));
        let texts: Vec<&str> = back.iter().map(Json::as_str).collect();
        assert_eq!(texts, [r#"{"z":1,"a":2}"#, "null"]);
    }

    #[test]
    fn a_value_becomes_the_text_it_encodes_to() {
        let value = json!({"id": "a1", "tags": ["x", 2, null], "score": -0.5});
        let data = Json::from(value.clone());
        assert_eq!(
            data.as_str(),
            serde_json::to_string(&value).unwrap_or_default()
        );
        assert!(!data.is_null());
        assert!(Json::from(Value::Null).is_null());
        assert!(
            Json::encode(&())
                .map(|unit| unit.is_null())
                .unwrap_or_default()
        );
        assert!(
            !Json::from(json!("null")).is_null(),
            "the string \"null\" is not null"
        );
    }
}
