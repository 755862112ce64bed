//! The live channel, `GET {prefix}/live`: a WebSocket over which clients JOIN scopes and receive
//! a POKE whenever one of them changes, so that they pull at once instead of at the next timer.
//!
//! Each connection is a reader that handles the client's frames and a writer that drains the
//! connection's [`Outbox`], which the engine's [`LiveHub`] fills with pokes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{Instrument, debug, info_span, warn};

use super::Routes;
use crate::auth::Action;
use crate::backend::ChangeLog;
use crate::broker::{LiveHub, Outbox};
use crate::engine::Engine;
use crate::error::Sentence;
use crate::scope::validate_scope;

/// Message types of the live protocol, numbered as docs/protocol.md numbers them.
mod kind {
    pub(super) const JOIN: u8 = 1;
    pub(super) const LEAVE: u8 = 2;
    pub(super) const HEARTBEAT: u8 = 4;
    pub(super) const REPLY: u8 = 5;
    pub(super) const ERROR: u8 = 8;
    pub(super) const POKE: u8 = 11;
}

/// Settings of the live channel.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveOptions {
    /// A connection from which no frame arrives for this long is closed (default 60 s).
    pub idle_timeout: Duration,
    /// Replies (to JOIN, LEAVE, HEARTBEAT, errors) a connection may have waiting (default 32).
    /// Heartbeat answers that find the queue full are dropped; other replies wait for room.
    pub reply_queue: usize,
    /// Most scopes one connection may join (default 1000).
    pub max_scopes: usize,
    /// Largest frame accepted from a client, in bytes (default 64 KiB).
    pub max_frame_bytes: usize,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            idle_timeout: Duration::from_secs(60),
            reply_queue: 32,
            max_scopes: 1000,
            max_frame_bytes: 64 << 10,
        }
    }
}

/// A frame as clients send it.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(rename = "ref", default)]
    reference: u32,
    #[serde(default)]
    payload: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinPayload {
    scopes: Vec<String>,
    #[serde(default)]
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeavePayload {
    scopes: Vec<String>,
}

#[derive(Serialize)]
struct Outgoing<'a> {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(rename = "ref")]
    reference: u32,
    payload: &'a Value,
}

fn envelope(kind: u8, reference: u32, payload: Value) -> String {
    let message = Outgoing {
        kind,
        reference,
        payload: &payload,
    };
    // Serializing a struct of integers and a `Value` cannot fail.
    serde_json::to_string(&message).unwrap_or_default()
}

fn error_frame(reference: u32, code: &str, error: impl Into<String>) -> String {
    envelope(
        kind::ERROR,
        reference,
        json!({ "code": code, "error": error.into() }),
    )
}

/// `GET {prefix}/live`: upgrades to a WebSocket and serves the live protocol on it.
pub(super) async fn upgrade(
    State(routes): State<Routes>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> axum::response::Response {
    let engine = routes.engine.clone();
    let options = routes.options.live.clone();
    // Small buffers: an idle connection should cost kilobytes, not the 128 KiB read buffer and
    // write buffer that tungstenite reserves by default.
    upgrade
        .read_buffer_size(4 << 10)
        .write_buffer_size(0)
        .max_message_size(options.max_frame_bytes)
        .max_frame_size(options.max_frame_bytes)
        .on_upgrade(move |socket| serve(engine, options, headers, socket))
}

/// One connection: a reader that handles the client's frames and a writer that drains the
/// outbox, so that a client that does not read never stops the reader's idle clock or heartbeat.
async fn serve(engine: Engine, options: LiveOptions, headers: HeaderMap, socket: WebSocket) {
    let hub = engine.live_hub().clone();
    let id = hub.next_id();
    let span = info_span!("sync.live", connection = id);
    let outbox = Arc::new(Outbox::new(options.reply_queue));
    let (mut sink, mut stream) = socket.split();

    let writer = {
        let outbox = Arc::clone(&outbox);
        async move {
            loop {
                let ready = outbox.ready.notified();
                match outbox.take() {
                    Ok((pokes, replies)) if pokes.is_empty() && replies.is_empty() => ready.await,
                    Ok((pokes, replies)) => {
                        let pokes = pokes.into_iter().map(|poke| {
                            let payload = json!({ "scope": poke.scope, "cursor": poke.cursor });
                            envelope(kind::POKE, 0, payload)
                        });
                        for frame in pokes.chain(replies) {
                            if sink
                                .send(Message::Text(Utf8Bytes::from(frame)))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                    Err(close) => {
                        let _ = sink.send(Message::Close(Some(close))).await;
                        return;
                    }
                }
            }
        }
    };
    let writer = tokio::spawn(writer.instrument(span.clone()));

    let mut connection = Connection {
        engine,
        max_scopes: options.max_scopes,
        headers,
        hub,
        id,
        outbox: Arc::clone(&outbox),
        joined: Vec::new(),
    };
    async {
        debug!("live connection opened");
        loop {
            let frame = match tokio::time::timeout(options.idle_timeout, stream.next()).await {
                Err(_) => {
                    debug!("closing an idle live connection");
                    connection.outbox.close(CloseFrame {
                        code: axum::extract::ws::close_code::POLICY,
                        reason: Utf8Bytes::from_static("idle timeout"),
                    });
                    break;
                }
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break,
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                // Boxed: an idle connection then holds no room for a JOIN's state.
                Message::Text(text) => Box::pin(connection.handle(text.as_str())).await,
                Message::Binary(_) => {
                    connection
                        .outbox
                        .reply(error_frame(0, "invalid_frame", "send JSON text frames"))
                        .await;
                }
                // Pings and pongs keep the connection alive; axum answers pings itself.
                _ => {}
            }
        }
        connection.leave_all();
    }
    .instrument(span)
    .await;
    outbox.close_unless_closing();
    // The writer ends after the close frame, or when a send fails; a peer that does not read
    // gets a second to take the close frame.
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(1), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
}

/// The reader's side of a connection.
struct Connection {
    engine: Engine,
    max_scopes: usize,
    headers: HeaderMap,
    hub: LiveHub,
    id: u64,
    outbox: Arc<Outbox>,
    joined: Vec<String>,
}

impl Connection {
    async fn handle(&mut self, text: &str) {
        let message: Envelope = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(error) => {
                // The ref, where one can be read, tells the client which message was refused.
                let reference = serde_json::from_str::<Value>(text)
                    .ok()
                    .and_then(|value| value.get("ref")?.as_u64())
                    .and_then(|reference| u32::try_from(reference).ok())
                    .unwrap_or(0);
                let message =
                    format!("a frame is a JSON object {{\"type\", \"ref\", \"payload\"}}: {error}");
                self.outbox
                    .reply(error_frame(reference, "invalid_frame", message))
                    .await;
                return;
            }
        };
        let reference = message.reference;
        match message.kind {
            kind::JOIN => match serde_json::from_value::<JoinPayload>(message.payload) {
                Ok(join) => self.join(reference, join).await,
                Err(error) => self.invalid_payload(reference, "JOIN", &error).await,
            },
            kind::LEAVE => match serde_json::from_value::<LeavePayload>(message.payload) {
                Ok(leave) => {
                    for scope in &leave.scopes {
                        self.hub.leave(scope, self.id);
                    }
                    self.joined.retain(|scope| !leave.scopes.contains(scope));
                    let reply = envelope_reply(reference, json!({ "status": "ok" }));
                    self.outbox.reply(reply).await;
                }
                Err(error) => self.invalid_payload(reference, "LEAVE", &error).await,
            },
            kind::HEARTBEAT => {
                // A client that does not read loses heartbeat answers, never pokes.
                let _ = self
                    .outbox
                    .try_reply(envelope(kind::HEARTBEAT, reference, json!({})));
            }
            other => {
                let message = format!(
                    "unknown message type {other}; a client sends JOIN (1), LEAVE (2) or HEARTBEAT (4)"
                );
                self.outbox
                    .reply(error_frame(reference, "unknown_type", message))
                    .await;
            }
        }
    }

    async fn invalid_payload(&self, reference: u32, what: &str, error: &serde_json::Error) {
        let message = format!("invalid {what} payload: {error}");
        self.outbox
            .reply(error_frame(reference, "invalid_payload", message))
            .await;
    }

    async fn join(&mut self, reference: u32, join: JoinPayload) {
        let mut cursors = serde_json::Map::new();
        for scope in join.scopes {
            if let Err(error) = validate_scope(&scope) {
                self.outbox
                    .reply(error_frame(reference, "invalid_payload", error.to_string()))
                    .await;
                continue;
            }
            let token = join.token.as_deref();
            let allowed = self
                .engine
                .authorize(&self.headers, token, [scope.as_str()], Action::Live)
                .await;
            if let Err(refusal) = allowed {
                let message = format!("not allowed to join `{scope}`: {refusal}");
                self.outbox
                    .reply(error_frame(reference, "forbidden", message))
                    .await;
                continue;
            }
            if !self.joined.contains(&scope) {
                if self.joined.len() >= self.max_scopes {
                    let message = format!(
                        "a connection may join at most {} scopes; LEAVE some first",
                        self.max_scopes
                    );
                    self.outbox
                        .reply(error_frame(reference, "invalid_payload", message))
                        .await;
                    continue;
                }
                // Watch first, then read the cursor: a commit in between is in one or the other.
                self.hub.join(&scope, self.id, &self.outbox);
                self.joined.push(scope.clone());
            }
            let cursor = match self.engine.backend().scope_cursor(&scope).await {
                Ok(cursor) => cursor,
                Err(error) => {
                    warn!(error = %Sentence(&error), scope, "cannot read a scope's cursor for a JOIN");
                    0
                }
            };
            cursors.insert(scope, json!(cursor));
        }
        let reply = envelope_reply(reference, json!({ "status": "ok", "cursors": cursors }));
        self.outbox.reply(reply).await;
    }

    fn leave_all(&mut self) {
        for scope in self.joined.drain(..) {
            self.hub.leave(&scope, self.id);
        }
    }
}

fn envelope_reply(reference: u32, payload: Value) -> String {
    envelope(kind::REPLY, reference, payload)
}
