//! The HTTP endpoints: `POST {prefix}/push`, `/pull` and `/snapshot` as an axum [`Router`].
//!
//! Every failure answers PROTOCOL's `{"error", "code"}` body; the mapping from [`SyncError`] to
//! status and code lives here and in [`SyncError::status`].

use std::any::Any;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::SizeAbove;
use tracing::Instrument;

use crate::auth::Action;
use crate::engine::Engine;
use crate::error::SyncError;
use crate::protocol::{PullRequest, PushRequest, SnapshotRequest};
use crate::scope::resolve_scope;

/// Responses smaller than this are not compressed.
const COMPRESS_ABOVE_BYTES: u16 = 2048;

/// PROTOCOL's error body.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    code: &'a str,
}

/// A failed request: status, code and a sentence for a person.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl HttpError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        HttpError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// PROTOCOL's code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<SyncError> for HttpError {
    fn from(error: SyncError) -> Self {
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(%error, "request failed");
        }
        HttpError::new(status, error.code(), error.to_string())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: &self.message,
            code: self.code,
        };
        (self.status, Json(body)).into_response()
    }
}

/// The engine's routes under its prefix (`POST push`, `pull`, `snapshot`; `GET live`), with a
/// tracing span per request, compression of large pull and snapshot answers, and panics turned
/// into JSON errors. Merge it into the application's router and wrap it in the application's own
/// layers.
///
/// tower-http's `TraceLayer` is not used, and its `CompressionLayer` only on pull and snapshot: on
/// the push route each cost about a tenth of the throughput (BENCHMARKS.md), the first for a span
/// that [`traced`] opens for less, the second for answers too small to compress.
pub(crate) fn router(engine: Engine) -> Router {
    // Full paths rather than `nest`, which rebuilds the URI of every request it routes.
    let prefix = match engine.prefix() {
        "/" => String::new(),
        prefix => prefix.to_owned(),
    };
    // Small answers go out as they are: compressing them costs more than it saves.
    let compressed = || CompressionLayer::new().compress_when(SizeAbove::new(COMPRESS_ABOVE_BYTES));
    let routes = Router::new()
        .route(&format!("{prefix}/push"), endpoint(post(push)))
        .route(
            &format!("{prefix}/pull"),
            endpoint(post(pull)).layer(compressed()),
        )
        .route(
            &format!("{prefix}/snapshot"),
            endpoint(post(snapshot)).layer(compressed()),
        )
        .route(
            &format!("{prefix}/live"),
            get(crate::live::upgrade).fallback(method_not_allowed),
        );
    let routes = if prefix.is_empty() {
        routes.fallback(not_found)
    } else {
        // Other paths under the prefix answer as the engine would; the rest are the app's.
        routes
            .route(&prefix, any(not_found))
            .route(&format!("{prefix}/"), any(not_found))
            .route(&format!("{prefix}/{{*rest}}"), any(not_found))
    };
    routes
        .with_state(engine)
        .layer(CatchPanicLayer::custom(panic_response))
}

/// Runs one request's handler in a `sync.request` span, and logs its answer's status at debug
/// level.
async fn traced(
    endpoint: &'static str,
    handler: impl Future<Output = Result<Response, HttpError>>,
) -> Response {
    let span = tracing::info_span!("sync.request", endpoint, status = tracing::field::Empty);
    let started = std::time::Instant::now();
    let response = handler.instrument(span.clone()).await.into_response();
    let status = response.status().as_u16();
    span.record("status", status);
    tracing::debug!(parent: &span, status, elapsed = ?started.elapsed(), "answered");
    response
}

fn endpoint(route: MethodRouter<Engine>) -> MethodRouter<Engine> {
    route.fallback(method_not_allowed)
}

// Each handler takes the whole request rather than a `HeaderMap` extractor, which would copy
// every header.

async fn push(State(engine): State<Engine>, request: Request) -> Response {
    traced("push", async move {
        let (parts, body) = request.into_parts();
        let headers = &parts.headers;
        let request: PushRequest =
            read_json(headers, body, engine.limits().push_body_bytes).await?;
        engine.validate_push(&request.mutations)?;
        engine
            .authorize(
                headers,
                request.mutations.iter().map(|m| m.scope()),
                Action::Push,
            )
            .await?;
        let answer = engine.push(request.mutations).await?;
        Ok(json(&answer, 256 * answer.results.len()))
    })
    .await
}

async fn pull(State(engine): State<Engine>, request: Request) -> Response {
    traced("pull", async move {
        let (parts, body) = request.into_parts();
        let headers = &parts.headers;
        let request: PullRequest =
            read_json(headers, body, engine.limits().request_body_bytes).await?;
        let scope = resolve_scope(request.scope.as_deref())?;
        engine.authorize(headers, [scope], Action::Pull).await?;
        let answer = engine.pull(request).await?;
        Ok(json(&answer, 64 + 192 * answer.changes.len()))
    })
    .await
}

async fn snapshot(State(engine): State<Engine>, request: Request) -> Response {
    traced("snapshot", async move {
        let (parts, body) = request.into_parts();
        let headers = &parts.headers;
        let request: SnapshotRequest =
            read_json(headers, body, engine.limits().request_body_bytes).await?;
        let scope = resolve_scope(request.scope.as_deref())?;
        engine.authorize(headers, [scope], Action::Snapshot).await?;
        let answer = engine.snapshot(Some(scope)).await?;
        Ok(json(&answer, 4096))
    })
    .await
}

/// A JSON answer, written into a buffer of about its size: axum's `Json` starts from 128 bytes
/// and grows it.
fn json<T: Serialize>(answer: &T, capacity: usize) -> Response {
    let mut body = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut body, answer) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "could not encode an answer");
            HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the server could not encode its answer",
            )
            .into_response()
        }
    }
}

/// Checks the content type, reads at most `limit` bytes and decodes them, naming the path of the
/// first field that does not fit.
async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
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
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|error| {
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

async fn not_found() -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; the sync endpoints are POST push, pull and snapshot, and GET live",
    )
}

async fn method_not_allowed() -> Response {
    let mut response = HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint takes POST with a JSON body",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(detail, "a request handler panicked");
    HttpError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the server failed unexpectedly",
    )
    .into_response()
}
