//! Request bodies in, answers out: JSON within the limits.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::HttpError;
use crate::protocol::{PullResponse, SnapshotResponse};

/// A JSON answer, written into a buffer of about its size: axum's `Json` starts from 128 bytes
/// and grows it.
pub(super) fn json<T: Serialize>(answer: &T, capacity: usize) -> Response {
    let mut body = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut body, answer) {
        Ok(()) => json_response(body),
        Err(error) => encode_failed(&error),
    }
}

/// A pull's answer within the page byte budget: beyond its first change, a change goes in only
/// while the page's encoded changes stay within `budget`. A page cut short says `has_more`, and
/// its cursor is its last change's. Each change is encoded once, straight into the answer.
pub(super) fn pull_answer(answer: &PullResponse, budget: usize) -> Response {
    match encode_pull(answer, budget) {
        Ok(body) => json_response(body),
        Err(error) => encode_failed(&error),
    }
}

fn encode_pull(answer: &PullResponse, budget: usize) -> Result<Vec<u8>, serde_json::Error> {
    /// What follows the changes, with the names and order of `PullResponse`'s own encoding.
    #[derive(Serialize)]
    struct Rest<'a> {
        cursor: u64,
        has_more: bool,
        log_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_seq: Option<u64>,
    }
    const OPEN: &[u8] = br#"{"changes":["#;
    let mut body = Vec::with_capacity((64 + 192 * answer.changes.len()).min(budget + 4096));
    body.extend_from_slice(OPEN);
    let (mut cursor, mut has_more) = (answer.cursor, answer.has_more);
    let mut last = None;
    for change in answer.changes.iter() {
        let start = body.len();
        if last.is_some() {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, &**change)?;
        if let Some(previous) = last
            && body.len() - OPEN.len() > budget
        {
            body.truncate(start);
            (cursor, has_more) = (previous, true);
            break;
        }
        last = Some(change.cursor);
    }
    body.extend_from_slice(b"],");
    let rest = serde_json::to_vec(&Rest {
        cursor,
        has_more,
        log_id: &answer.log_id,
        client_seq: answer.client_seq,
    })?;
    // `rest` is an object: its fields follow the changes inside this one.
    body.extend_from_slice(rest.get(1..).unwrap_or_default());
    Ok(body)
}

/// A snapshot's answer within the page byte budget, as [`pull_answer`] a pull's: beyond its first
/// entity, an entity goes in only while the page's encoded data stays within `budget`. A page
/// cut short says `has_more`, and its `next` is its last entity.
pub(super) fn snapshot_answer(answer: &SnapshotResponse, budget: usize) -> Response {
    match encode_snapshot(answer, budget) {
        Ok(body) => json_response(body),
        Err(error) => encode_failed(&error),
    }
}

fn encode_snapshot(answer: &SnapshotResponse, budget: usize) -> Result<Vec<u8>, serde_json::Error> {
    /// What follows the data, with the names and order of `SnapshotResponse`'s own encoding.
    #[derive(Serialize)]
    struct Rest<'a> {
        cursor: u64,
        log_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_seq: Option<u64>,
        has_more: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<(&'a str, &'a str)>,
    }
    const OPEN: &[u8] = br#"{"data":{"#;
    let mut body = Vec::with_capacity(4096);
    body.extend_from_slice(OPEN);
    let mut next = answer.next.as_ref().map(|(e, i)| (e.as_str(), i.as_str()));
    let mut has_more = answer.has_more;
    let mut last: Option<(&str, &str)> = None;
    'entities: for (entity, ids) in &answer.data {
        let type_start = body.len();
        if last.is_some() {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, entity)?;
        body.extend_from_slice(b":{");
        let mut first_of_type = true;
        for (id, data) in ids {
            let start = body.len();
            if !first_of_type {
                body.push(b',');
            }
            serde_json::to_writer(&mut body, id)?;
            body.push(b':');
            serde_json::to_writer(&mut body, data)?;
            if let Some(previous) = last
                && body.len() - OPEN.len() > budget
            {
                // Cut here: without this entity, and without its type if it was the first.
                body.truncate(if first_of_type { type_start } else { start });
                if !first_of_type {
                    body.push(b'}');
                }
                (next, has_more) = (Some(previous), true);
                break 'entities;
            }
            first_of_type = false;
            last = Some((entity, id));
        }
        body.push(b'}');
    }
    body.extend_from_slice(b"},");
    let rest = serde_json::to_vec(&Rest {
        cursor: answer.cursor,
        log_id: &answer.log_id,
        client_seq: answer.client_seq,
        has_more,
        next,
    })?;
    body.extend_from_slice(rest.get(1..).unwrap_or_default());
    Ok(body)
}

fn json_response(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn encode_failed(error: &serde_json::Error) -> Response {
    tracing::error!(%error, "could not encode an answer");
    HttpError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the server could not encode its answer",
    )
    .into_response()
}

/// Checks the content type, reads at most `limit` bytes and decodes them, naming the path of the
/// first field that does not fit.
pub(super) async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    deadline: Duration,
) -> Result<T, HttpError> {
    if !is_json(headers.get(header::CONTENT_TYPE)) {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ));
    }
    let too_large = || {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is over the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(deadline, axum::body::to_bytes(body, limit));
    let read = read.await.map_err(|_| {
        HttpError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the body did not arrive within {deadline:?}; send it again"),
        )
    })?;
    let bytes: Bytes = read.map_err(|error| {
        if std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
        {
            too_large()
        } else {
            HttpError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("could not read the body: {error}"),
            )
        }
    })?;
    let invalid =
        |message: String| HttpError::new(StatusCode::BAD_REQUEST, "invalid_request", message);
    // Serde would also take a JSON array for a struct; requests are objects.
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err(invalid("the body must be a JSON object".to_owned()));
    }
    // The fast path decodes without tracking where it is; only a body that fails is decoded
    // again with its path tracked, for a message that names the field.
    if let Ok(value) = serde_json::from_slice(&bytes) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        invalid(if path == "." {
            format!("invalid request body: {}", error.inner())
        } else {
            format!("invalid request body at `{path}`: {}", error.inner())
        })
    })?;
    deserializer
        .end()
        .map_err(|error| invalid(format!("invalid request body: {error}")))?;
    Ok(value)
}

/// `application/json`, with or without parameters such as `; charset=utf-8`.
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::change::{Change, ChangeOp};
    use crate::changes::Changes;
    use crate::protocol::ScopeData;

    /// A page that fits its budget is written as its type's own encoding, from which the client's
    /// TypeScript is generated.
    #[test]
    fn pages_are_written_as_their_types_encode() {
        let change = |cursor, op, data: Option<serde_json::Value>| {
            Arc::new(Change {
                cursor,
                scope: "s".into(),
                entity: "todo".into(),
                id: cursor.to_string(),
                op,
                data: data.map(|value| crate::Json::encode(&value).unwrap()),
                timestamp: chrono::DateTime::UNIX_EPOCH,
            })
        };
        for client_seq in [None, Some(2)] {
            let pull = PullResponse {
                changes: Changes::from(vec![
                    change(1, ChangeOp::Create, Some(json!({"title": "a"}))),
                    change(2, ChangeOp::Delete, None),
                ]),
                cursor: 2,
                has_more: false,
                log_id: "log".into(),
                client_seq,
            };
            assert_eq!(
                encode_pull(&pull, 1 << 20).unwrap(),
                serde_json::to_vec(&pull).unwrap()
            );
            for next in [None, Some(("todo".to_owned(), "b".to_owned()))] {
                let mut data = ScopeData::new();
                data.entry("todo".into())
                    .or_default()
                    .insert("a".into(), json!({"title": "a"}));
                data.entry("note".into())
                    .or_default()
                    .insert("n".into(), json!(null));
                let snapshot = SnapshotResponse {
                    data,
                    cursor: 7,
                    log_id: "log".into(),
                    client_seq,
                    has_more: next.is_some(),
                    next,
                };
                assert_eq!(
                    encode_snapshot(&snapshot, 1 << 20).unwrap(),
                    serde_json::to_vec(&snapshot).unwrap()
                );
            }
        }
    }
}
