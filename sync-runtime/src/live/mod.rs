//! The live channel, `GET {prefix}/live`: a WebSocket over which clients JOIN scopes and receive
//! a POKE whenever one of them changes, so that they pull at once instead of at the next timer.
//!
//! Each connection has an [`Outbox`]: pokes merge per scope into the latest cursor, and replies
//! wait in a short bounded queue. A poke never waits for a connection, so a client that stops
//! reading slows down neither pushes nor other clients, and its memory stays bounded by the
//! number of scopes it joined.

#[cfg(feature = "postgres")]
mod postgres;

#[cfg(feature = "postgres")]
pub use postgres::PostgresBroker;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use futures::{SinkExt, StreamExt};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tracing::{Instrument, debug, info_span, warn};

use crate::auth::{Action, AuthRequest};
use crate::backend::ChangeLog;
use crate::broker::{Poke, PokeBroker};
use crate::engine::Engine;
use crate::scope::validate_scope;

/// Message types of the live protocol, numbered as in the design plan.
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

/// The local live connections, by scope. As a [`PokeBroker`] it pokes every connection that
/// joined the scope; an engine pokes its hub after every commit, and a broker that reaches other
/// nodes pokes it for their commits. Cheap to clone; clones share the connections.
#[derive(Clone, Default)]
pub struct LiveHub {
    inner: Arc<HubInner>,
}

#[derive(Default)]
struct HubInner {
    scopes: RwLock<HashMap<String, HashMap<u64, Arc<Outbox>>>>,
    next_id: AtomicU64,
}

impl LiveHub {
    /// A hub without connections.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many connections joined `scope`.
    pub fn watchers(&self, scope: &str) -> usize {
        self.inner.scopes.read().get(scope).map_or(0, HashMap::len)
    }

    /// The scopes some connection joined.
    pub fn scopes(&self) -> Vec<String> {
        self.inner.scopes.read().keys().cloned().collect()
    }

    /// The frames waiting in this node's outboxes: what it holds for clients that read slowly.
    /// At most one poke per joined scope and the reply queue per connection, however many
    /// commits there were.
    pub fn queued(&self) -> usize {
        let scopes = self.inner.scopes.read();
        let outboxes: HashMap<u64, &Arc<Outbox>> = scopes
            .values()
            .flat_map(|watchers| watchers.iter().map(|(id, o)| (*id, o)))
            .collect();
        outboxes.values().map(|outbox| outbox.len()).sum()
    }

    fn join(&self, scope: &str, id: u64, outbox: &Arc<Outbox>) {
        let mut scopes = self.inner.scopes.write();
        scopes
            .entry(scope.to_owned())
            .or_default()
            .insert(id, Arc::clone(outbox));
    }

    fn leave(&self, scope: &str, id: u64) {
        let mut scopes = self.inner.scopes.write();
        if let Some(watchers) = scopes.get_mut(scope) {
            watchers.remove(&id);
            if watchers.is_empty() {
                scopes.remove(scope);
            }
        }
    }
}

impl PokeBroker for LiveHub {
    fn poke(&self, poke: &Poke) {
        let scopes = self.inner.scopes.read();
        for outbox in scopes
            .get(&poke.scope)
            .into_iter()
            .flat_map(HashMap::values)
        {
            outbox.poke(&poke.scope, poke.cursor);
        }
    }
}

/// What waits to be sent to one connection.
struct Outbox {
    state: Mutex<OutboxState>,
    /// Wakes the writer when something was queued or the connection closes.
    ready: Notify,
    /// Wakes the reader when a reply slot frees up.
    room: Notify,
    capacity: usize,
}

#[derive(Default)]
struct OutboxState {
    /// The latest unsent cursor of each scope.
    pokes: BTreeMap<String, u64>,
    replies: VecDeque<String>,
    closing: Option<CloseFrame>,
}

impl Outbox {
    fn new(capacity: usize) -> Self {
        Outbox {
            state: Mutex::new(OutboxState::default()),
            ready: Notify::new(),
            room: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    /// Frames waiting: pokes and replies.
    fn len(&self) -> usize {
        let state = self.state.lock();
        state.pokes.len() + state.replies.len()
    }

    /// Merges a poke into the pending one of its scope; never waits.
    fn poke(&self, scope: &str, cursor: u64) {
        {
            let mut state = self.state.lock();
            match state.pokes.get_mut(scope) {
                Some(pending) => *pending = (*pending).max(cursor),
                None => {
                    state.pokes.insert(scope.to_owned(), cursor);
                }
            }
        }
        self.ready.notify_one();
    }

    /// Queues a reply, waiting for room.
    async fn reply(&self, frame: String) {
        loop {
            let room = self.room.notified();
            {
                let mut state = self.state.lock();
                if state.replies.len() < self.capacity {
                    state.replies.push_back(frame);
                    break;
                }
            }
            room.await;
        }
        self.ready.notify_one();
    }

    /// Queues a reply unless the queue is full; returns whether it was queued.
    fn try_reply(&self, frame: String) -> bool {
        let queued = {
            let mut state = self.state.lock();
            let fits = state.replies.len() < self.capacity;
            if fits {
                state.replies.push_back(frame);
            }
            fits
        };
        if queued {
            self.ready.notify_one();
        }
        queued
    }

    fn close(&self, frame: CloseFrame) {
        self.state.lock().closing = Some(frame);
        self.ready.notify_one();
    }

    /// Closes normally, unless a close (e.g. for idleness) is already queued.
    fn close_unless_closing(&self) {
        self.state.lock().closing.get_or_insert(CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: Utf8Bytes::from_static(""),
        });
        self.ready.notify_one();
    }

    /// Everything queued, pokes first (a heartbeat answer then follows every poke queued before
    /// it); `Err` with the close frame once the connection closes.
    fn take(&self) -> Result<Vec<String>, CloseFrame> {
        let mut state = self.state.lock();
        if let Some(frame) = state.closing.take() {
            return Err(frame);
        }
        let pokes = std::mem::take(&mut state.pokes);
        let replies = std::mem::take(&mut state.replies);
        drop(state);
        self.room.notify_waiters();
        let pokes = pokes.into_iter().map(|(scope, cursor)| {
            envelope(kind::POKE, 0, json!({ "scope": scope, "cursor": cursor }))
        });
        Ok(pokes.chain(replies).collect())
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
pub(crate) async fn upgrade(
    engine: axum::extract::State<Engine>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> axum::response::Response {
    let engine = engine.0;
    let options = engine.live_options().clone();
    // Small buffers: an idle connection should cost kilobytes, not the 128 KiB read buffer and
    // write buffer that tungstenite reserves by default.
    upgrade
        .read_buffer_size(4 << 10)
        .write_buffer_size(0)
        .max_message_size(options.max_frame_bytes)
        .max_frame_size(options.max_frame_bytes)
        .on_upgrade(move |socket| serve(engine, headers, socket))
}

/// One connection: a reader that handles the client's frames and a writer that drains the
/// outbox, so that a client that does not read never stops the reader's idle clock or heartbeat.
async fn serve(engine: Engine, headers: HeaderMap, socket: WebSocket) {
    let hub = engine.live_hub().clone();
    let id = hub.inner.next_id.fetch_add(1, Ordering::Relaxed);
    let span = info_span!("sync.live", connection = id);
    let options = engine.live_options().clone();
    let outbox = Arc::new(Outbox::new(options.reply_queue));
    let (mut sink, mut stream) = socket.split();

    let writer = {
        let outbox = Arc::clone(&outbox);
        async move {
            loop {
                let ready = outbox.ready.notified();
                match outbox.take() {
                    Ok(frames) if frames.is_empty() => ready.await,
                    Ok(frames) => {
                        for frame in frames {
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
            let request = AuthRequest {
                headers: &self.headers,
                scope: &scope,
                action: Action::Live,
                token: join.token.as_deref(),
            };
            if let Err(refusal) = self.engine.authorizer().authorize(&request).await {
                let message = format!("not allowed to join `{scope}`: {refusal}");
                self.outbox
                    .reply(error_frame(reference, "forbidden", message))
                    .await;
                continue;
            }
            if !self.joined.contains(&scope) {
                if self.joined.len() >= self.engine.live_options().max_scopes {
                    let message = format!(
                        "a connection may join at most {} scopes; LEAVE some first",
                        self.engine.live_options().max_scopes
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
                    warn!(%error, scope, "cannot read a scope's cursor for a JOIN");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pokes_merge_per_scope_and_replies_are_bounded() {
        let outbox = Outbox::new(2);
        for cursor in 1..=3000 {
            outbox.poke(if cursor % 2 == 0 { "a" } else { "b" }, cursor);
        }
        assert_eq!(outbox.len(), 2, "one pending poke per scope");
        assert!(outbox.try_reply("1".into()) && outbox.try_reply("2".into()));
        assert!(
            !outbox.try_reply("3".into()),
            "a full reply queue drops heartbeat answers"
        );
        let frames = outbox.take().unwrap_or_default();
        assert_eq!(frames.len(), 4);
        assert!(
            frames[0].contains(r#""cursor":3000,"scope":"a""#),
            "{frames:?}"
        );
        assert!(
            frames[1].contains(r#""cursor":2999,"scope":"b""#),
            "{frames:?}"
        );
        assert_eq!(frames[2..], ["1", "2"]);
        assert_eq!(outbox.len(), 0);
    }
}
