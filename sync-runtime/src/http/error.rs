//! Every failure as the protocol's `{"error", "code"}` body: the one place where errors get their
//! HTTP status and code.

use std::any::Any;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use ts_rs::TS;

use crate::error::SyncError;

/// The body of every non-2xx answer, and the payload of the live channel's ERROR frames.
#[derive(Debug, Serialize, TS)]
pub(super) struct ErrorBody<'a> {
    /// A sentence for a person.
    pub(super) error: &'a str,
    /// What failed, for the client to act on: one of the protocol's `snake_case` codes.
    pub(super) code: &'a str,
}

/// A failed request: status, code and a sentence for a person.
#[derive(Debug)]
pub(super) struct HttpError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl HttpError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        HttpError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<SyncError> for HttpError {
    fn from(error: SyncError) -> Self {
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %crate::error::Sentence(&error), "request failed");
        }
        HttpError::new(
            status,
            error.code(),
            crate::error::Sentence(&error).to_string(),
        )
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

/// The protocol's answer to the error: its status, and the body `{"error", "code"}`, whose
/// sentence names the causes too (never a password, host, user or database name: backends keep
/// those out of their errors).
impl IntoResponse for SyncError {
    fn into_response(self) -> Response {
        HttpError::from(self).into_response()
    }
}

pub(super) async fn not_found() -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; the sync endpoints are POST push, pull and snapshot, and GET live",
    )
}

pub(super) async fn method_not_allowed() -> Response {
    wrong_method("POST", "this endpoint takes POST with a JSON body")
}

pub(super) async fn live_takes_get() -> Response {
    wrong_method("GET", "the live channel takes GET with a WebSocket upgrade")
}

fn wrong_method(allowed: &'static str, message: &'static str) -> Response {
    let status = StatusCode::METHOD_NOT_ALLOWED;
    let mut response = HttpError::new(status, "method_not_allowed", message).into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allowed));
    response
}

pub(super) fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
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
