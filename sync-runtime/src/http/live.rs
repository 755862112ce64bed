//! The live channel, `GET {prefix}/live`: a WebSocket over which clients JOIN scopes and receive
//! a POKE whenever one of them changes, so that they pull at once instead of at the next timer.
//!
//! Each connection is a reader that handles the client's frames and a writer that drains the
//! connection's [`Outbox`], which the engine's [`LiveHub`] fills with pokes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{Instrument, debug, info_span, warn};
use ts_rs::TS;

use super::Routes;
use super::error::HttpError;
use crate::auth::{Action, AuthError, Credentials};
use crate::backend::ChangeLog;
use crate::broker::{LiveHub, Outbox, PendingPokes, Poke};
use crate::engine::Engine;
use crate::error::Sentence;
use crate::scope::{DEFAULT_SCOPE, validate_scope};

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
    /// Heartbeat answers that find the queue full are dropped; another reply that finds it full
    /// closes the connection (1008): the server never waits on a client that does not read.
    pub reply_queue: usize,
    /// Most scopes one connection may join (default 1000).
    pub max_scopes: usize,
    /// Most distinct scopes one JOIN may name (default 100).
    pub max_join_scopes: usize,
    /// Largest frame accepted from a client, in bytes (default 64 KiB).
    pub max_frame_bytes: usize,
    /// How often a connection's joined scopes are authenticated and authorized again, so that
    /// an identity that expired or lost its access stops getting the scopes' pokes (default
    /// 60 s; only where the engine has an authenticator). Pulls are authorized every time, so
    /// this bounds how long a revoked client hears *that* a scope changed, never what changed.
    pub recheck_interval: Duration,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            idle_timeout: Duration::from_secs(60),
            reply_queue: 32,
            max_scopes: 1000,
            max_join_scopes: 100,
            max_frame_bytes: 64 << 10,
            recheck_interval: Duration::from_secs(60),
        }
    }
}

/// A frame as clients send it.
#[derive(Deserialize, TS)]
#[ts(rename = "ClientFrame")]
pub(super) struct Envelope {
    /// The message type: JOIN (1), LEAVE (2) or HEARTBEAT (4).
    #[serde(rename = "type")]
    kind: u8,
    /// Chosen by the client, echoed in the answer.
    #[serde(rename = "ref", default)]
    #[ts(as = "Option<_>", optional)]
    reference: u32,
    /// A `JoinPayload`, a `LeavePayload`, or `{}` for a HEARTBEAT.
    #[serde(default)]
    #[ts(type = "unknown", optional = nullable)]
    payload: Value,
}

/// The payload of a JOIN: the scopes to watch.
#[derive(Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub(super) struct JoinPayload {
    /// The scopes; `""` is `"_default"`.
    scopes: Vec<String>,
    /// Handed to the application's authorizer, with the upgrade request's headers.
    #[serde(default)]
    #[ts(optional = nullable)]
    token: Option<String>,
}

/// The payload of a LEAVE: the scopes to watch no longer.
#[derive(Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub(super) struct LeavePayload {
    /// The scopes.
    scopes: Vec<String>,
}

/// A frame as the server sends it.
#[derive(Serialize, TS)]
#[ts(rename = "ServerFrame")]
pub(super) struct Outgoing<'a, P> {
    /// The message type: HEARTBEAT (4), REPLY (5), ERROR (8) or POKE (11).
    #[serde(rename = "type")]
    kind: u8,
    /// The `ref` of the client's frame this answers (0 if unreadable); 0 for a POKE.
    #[serde(rename = "ref")]
    reference: u32,
    /// A `JoinReply` or `LeaveReply`, an `ErrorBody`, a `Poke`, or `{}` for a HEARTBEAT.
    payload: &'a P,
}

/// The payload of the REPLY to a JOIN.
#[derive(Serialize, TS)]
pub(super) struct JoinReply {
    /// Always `"ok"`: the scopes it could not join are told in an ERROR before it.
    #[ts(inline)]
    status: Status,
    /// Each joined scope's latest change cursor (0 if none).
    cursors: BTreeMap<String, u64>,
    /// The log's identity (absent from a version-1 server's answers).
    #[ts(as = "Option<_>", optional)]
    log_id: String,
}

/// The payload of the REPLY to a LEAVE.
#[derive(Serialize, TS)]
pub(super) struct LeaveReply {
    /// Always `"ok"`.
    #[ts(inline)]
    status: Status,
}

/// A REPLY's status: refusals are ERROR frames.
#[derive(Serialize, TS)]
#[serde(rename_all = "snake_case")]
enum Status {
    /// Done.
    Ok,
}

fn envelope<P: Serialize>(kind: u8, reference: u32, payload: &P) -> String {
    let message = Outgoing {
        kind,
        reference,
        payload,
    };
    // Serializing integers and a payload of strings, numbers and maps with string keys cannot fail.
    serde_json::to_string(&message).unwrap_or_default()
}

/// A POKE frame: encoded once per poke by the [`LiveHub`], whose connections share it.
pub(crate) fn poke_frame(poke: &Poke) -> Utf8Bytes {
    Utf8Bytes::from(envelope(kind::POKE, 0, poke))
}

/// The payload of an ERROR frame: the protocol's error body, and for a refusal the scopes it is
/// about.
#[derive(Serialize, TS)]
pub(super) struct LiveError<'a> {
    /// A sentence for a person.
    error: &'a str,
    /// What failed: `invalid_frame`, `unknown_type`, `invalid_payload`, `unauthorized`,
    /// `forbidden` or `too_many_scopes`.
    code: &'a str,
    /// For `unauthorized` and `forbidden`: the scopes not joined, or no longer joined.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    scopes: Option<&'a [String]>,
}

fn error_frame(reference: u32, code: &str, error: impl Into<String>) -> String {
    let error = error.into();
    let payload = LiveError {
        error: &error,
        code,
        scopes: None,
    };
    envelope(kind::ERROR, reference, &payload)
}

/// An ERROR `unauthorized` or `forbidden` that names the scopes it left or did not join.
fn refusal_frame(reference: u32, code: &str, error: String, scopes: &[String]) -> String {
    let payload = LiveError {
        error: &error,
        code,
        scopes: Some(scopes),
    };
    envelope(kind::ERROR, reference, &payload)
}

/// `GET {prefix}/live`: upgrades to a WebSocket and serves the live protocol on it.
pub(super) async fn upgrade(
    State(routes): State<Routes>,
    // Before the parts, which then no longer hold the connection's upgrade.
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    parts: Parts,
) -> axum::response::Response {
    let Ok(upgrade) = upgrade else {
        let message = "the live channel is a WebSocket: send GET with `Upgrade: websocket`";
        return HttpError::new(StatusCode::BAD_REQUEST, "invalid_request", message).into_response();
    };
    let engine = routes.engine.clone();
    let options = routes.options.live.clone();
    let parts = kept(parts, engine.has_auth());
    let max_frame_bytes = options.max_frame_bytes;
    let start = Box::new(Start {
        engine,
        options,
        parts,
    });
    // Small buffers: an idle connection should cost kilobytes, not the 128 KiB read buffer and
    // write buffer that tungstenite reserves by default.
    upgrade
        .read_buffer_size(4 << 10)
        .write_buffer_size(0)
        .max_message_size(max_frame_bytes)
        .max_frame_size(max_frame_bytes)
        .on_upgrade(move |socket| serve(*start, socket))
}

/// What a connection is served with. Boxed in the upgrade's callback: axum's task keeps the
/// callback's room for as long as the connection lives, which should be a pointer, not this.
struct Start {
    engine: Engine,
    options: LiveOptions,
    parts: Parts,
}

/// What a connection keeps of its upgrade request: its parts for the authenticator, which reads
/// them at every JOIN and re-check; nothing where the engine has none (about 0.8 KiB per idle
/// connection: the copied headers and URI, BENCHMARKS.md).
fn kept(parts: Parts, has_auth: bool) -> Parts {
    if has_auth {
        detached(parts)
    } else {
        axum::http::Request::new(()).into_parts().0
    }
}

/// The request's parts with their own copies of the URI and the headers. hyper parses them as
/// slices of the connection's read buffer (8 KiB or more), which every kept slice keeps alive:
/// a connection that holds the parts for its authorizer would otherwise hold that buffer until
/// it closes.
fn detached(mut parts: Parts) -> Parts {
    let mut headers = axum::http::HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let copy = axum::http::HeaderValue::from_bytes(value.as_bytes());
        let name = axum::http::HeaderName::from_bytes(name.as_str().as_bytes());
        if let (Ok(name), Ok(mut copy)) = (name, copy) {
            copy.set_sensitive(value.is_sensitive());
            headers.append(name, copy);
        }
    }
    parts.headers = headers;
    // A URI that was parsed parses again; should it not, the original stays.
    if let Ok(uri) = parts.uri.to_string().parse() {
        parts.uri = uri;
    }
    parts
}

/// One connection: a reader that handles the client's frames and a writer that drains the
/// outbox, so that a client that does not read never stops the reader's idle clock or heartbeat.
///
/// Not an `async fn`: the setup runs before the reader's future is made, so that the future keeps
/// only what the reader uses. An `async fn` keeps room for its arguments (the `WebSocket`, the
/// options, the request's parts) for its whole life, even once they were moved out: with what
/// the upgrade callback captured, about 0.9 KiB per idle connection (BENCHMARKS.md).
fn serve(start: Start, socket: WebSocket) -> impl Future<Output = ()> + Send + 'static {
    let Start {
        engine,
        options,
        parts,
    } = start;
    let open = crate::metrics::LiveConnection::open();
    let hub = engine.live_hub().clone();
    let id = hub.next_id();
    let span = info_span!("sync.live", connection = id);
    let outbox = Arc::new(Outbox::new(options.reply_queue));
    let (mut sink, mut stream) = socket.split();

    let writer = {
        let outbox = Arc::clone(&outbox);
        async move {
            // Swapped with the outbox's at every wake-up (`Outbox::take_into`), always empty here.
            let mut pokes = PendingPokes::new();
            loop {
                let ready = outbox.ready.notified();
                match outbox.take_into(&mut pokes) {
                    Ok(replies) if pokes.is_empty() && replies.is_empty() => ready.await,
                    Ok(replies) => {
                        let count = pokes.len();
                        let sending = pokes.drain(..).map(|(_, poke)| poke.text);
                        let frames = sending.chain(replies.into_iter().map(Utf8Bytes::from));
                        for (sent, frame) in frames.enumerate() {
                            if sink.send(Message::Text(frame)).await.is_err() {
                                crate::metrics::pokes_sent(sent.min(count));
                                crate::metrics::pokes_dropped(count.saturating_sub(sent));
                                return;
                            }
                        }
                        crate::metrics::pokes_sent(count);
                    }
                    Err(close) => {
                        let _ = sink.send(Message::Close(Some(close))).await;
                        return;
                    }
                }
            }
        }
    };
    let mut writer = tokio::spawn(writer.instrument(span.clone()));

    let rechecks = engine.has_auth();
    let mut connection = Connection {
        engine,
        max_scopes: options.max_scopes,
        max_join_scopes: options.max_join_scopes,
        parts,
        token: None,
        hub,
        id,
        outbox,
        joined: BTreeSet::new(),
        closing: false,
    };
    let (idle_timeout, recheck_interval) = (options.idle_timeout, options.recheck_interval);
    async move {
        let _open = open;
        let writer_ended = async {
            debug!("live connection opened");
            // Only where there is something to re-check: an interval holds a timer of its own.
            let mut recheck = rechecks.then(|| {
                let every = recheck_interval.max(Duration::from_millis(1));
                let mut recheck =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                recheck
            });
            let mut idle_at = tokio::time::Instant::now() + idle_timeout;
            loop {
                let next = tokio::select! {
                    next = stream.next() => next,
                    () = tokio::time::sleep_until(idle_at) => {
                        debug!("closing an idle live connection");
                        connection.outbox.close(CloseFrame {
                            code: axum::extract::ws::close_code::POLICY,
                            reason: Utf8Bytes::from_static("idle timeout"),
                        });
                        break false;
                    }
                    () = tick(&mut recheck) => {
                        Box::pin(connection.recheck()).await;
                        if connection.closing {
                            break false;
                        }
                        continue;
                    }
                    // The peer is gone (a send failed) or the close went out: nothing left to read.
                    _ = &mut writer => break true,
                };
                idle_at = tokio::time::Instant::now() + idle_timeout;
                let frame = match next {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break false,
                    Some(Ok(frame)) => frame,
                };
                match frame {
                    // Boxed: an idle connection then holds no room for a JOIN's state.
                    Message::Text(text) => Box::pin(connection.handle(text.as_str())).await,
                    Message::Binary(_) => {
                        connection.send(error_frame(0, "invalid_frame", "send JSON text frames"));
                    }
                    // Pings and pongs keep the connection alive; axum answers pings itself.
                    _ => {}
                }
                if connection.closing {
                    break false;
                }
            }
        }
        .instrument(span)
        .await;
        connection.leave_all();
        if writer_ended {
            return;
        }
        connection.outbox.close_unless_closing();
        // The writer ends after the close frame, or when a send fails; a peer that does not read
        // gets a second to take the close frame.
        if tokio::time::timeout(Duration::from_secs(1), &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
    }
}

/// The next tick of `interval`; never, where there is none.
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The reader's side of a connection.
struct Connection {
    engine: Engine,
    max_scopes: usize,
    max_join_scopes: usize,
    /// The upgrade request's parts: the credentials of every JOIN, with its token.
    parts: Parts,
    /// The token of the latest JOIN that carried one and authenticated, for re-checks.
    token: Option<String>,
    hub: LiveHub,
    id: u64,
    outbox: Arc<Outbox>,
    joined: BTreeSet<String>,
    /// A close is queued: read no further.
    closing: bool,
}

impl Connection {
    async fn handle(&mut self, text: &str) {
        // serde reads a struct from an array too (`[1, 5, {...}]`); a frame is an object.
        let is_object = text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{');
        let parsed = if is_object {
            serde_json::from_str::<Envelope>(text).map_err(|error| error.to_string())
        } else {
            Err("not an object".to_owned())
        };
        let message: Envelope = match parsed {
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
                self.send(error_frame(reference, "invalid_frame", message));
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
                    for scope in &leave.scopes {
                        self.joined.remove(scope);
                    }
                    let reply = LeaveReply { status: Status::Ok };
                    self.send(envelope(kind::REPLY, reference, &reply));
                }
                Err(error) => self.invalid_payload(reference, "LEAVE", &error).await,
            },
            kind::HEARTBEAT => {
                // A client that does not read loses heartbeat answers, never pokes.
                let _ = self
                    .outbox
                    .try_reply(envelope(kind::HEARTBEAT, reference, &json!({})));
            }
            other => {
                let message = format!(
                    "unknown message type {other}; a client sends JOIN (1), LEAVE (2) or HEARTBEAT (4)"
                );
                self.send(error_frame(reference, "unknown_type", message));
            }
        }
    }

    async fn invalid_payload(&mut self, reference: u32, what: &str, error: &serde_json::Error) {
        let message = format!("invalid {what} payload: {error}");
        self.send(error_frame(reference, "invalid_payload", message));
    }

    async fn join(&mut self, reference: u32, join: JoinPayload) {
        // Repeats first: what a JOIN costs is bounded by its distinct scopes.
        let scopes: BTreeSet<String> = join
            .scopes
            .into_iter()
            .map(|scope| match scope.as_str() {
                "" => DEFAULT_SCOPE.to_owned(),
                _ => scope,
            })
            .collect();
        if scopes.len() > self.max_join_scopes {
            let message = format!(
                "a JOIN names at most {} distinct scopes; this one names {}: join them in several",
                self.max_join_scopes,
                scopes.len()
            );
            self.send(error_frame(reference, "too_many_scopes", message));
            return;
        }
        let credentials = Credentials {
            parts: &self.parts,
            token: join.token.as_deref(),
        };
        let caller = self.engine.authenticate(&credentials).await;
        let (mut invalid, mut refused, mut joined) = (Vec::new(), Vec::new(), Vec::new());
        let mut refusal = None;
        for scope in scopes {
            if let Err(error) = validate_scope(&scope) {
                invalid.push(format!("{}: {error}", shown(&scope)));
                continue;
            }
            let allowed = match &caller {
                Ok(caller) => self.engine.authorize(caller, &scope, Action::Live).await,
                Err(error) => Err(AuthError::unauthorized(error.to_string())),
            };
            match allowed {
                Ok(()) => {}
                Err(AuthError::Store(error)) => {
                    warn!(error = %Sentence(&error), "cannot authorize a JOIN's scope");
                    invalid.push(format!(
                        "{}: cannot be authorized now, JOIN again",
                        shown(&scope)
                    ));
                    continue;
                }
                Err(error) => {
                    let code = refusal_code(&error);
                    // `unauthorized` wins: fresh credentials may open the rest too.
                    if refusal != Some("unauthorized") {
                        refusal = Some(code);
                    }
                    invalid.push(format!("{}: {error}", shown(&scope)));
                    refused.push(scope);
                    continue;
                }
            }
            if !self.joined.contains(&scope) {
                if self.joined.len() >= self.max_scopes {
                    let limit = self.max_scopes;
                    invalid.push(format!(
                        "{}: a connection joins at most {limit} scopes; LEAVE some first",
                        shown(&scope)
                    ));
                    continue;
                }
                // Watch first, then read the cursor: a commit in between is in one or the other.
                self.hub.join(&scope, self.id, &self.outbox);
                self.joined.insert(scope.clone());
            }
            joined.push(scope);
        }
        if caller.is_ok() && join.token.is_some() {
            self.token = join.token;
        }
        // The cursors of every scope joined, in one read.
        let names: Vec<&str> = joined.iter().map(String::as_str).collect();
        let cursors_read = self.engine.backend().scope_cursors(&names).await;
        let cursors_read = cursors_read.unwrap_or_else(|error| {
            warn!(error = %Sentence(&error), "cannot read the scopes' cursors for a JOIN");
            vec![0; names.len()]
        });
        let mut cursors = BTreeMap::new();
        for (scope, cursor) in joined.iter().zip(cursors_read) {
            cursors.insert(scope.clone(), cursor);
        }
        // One ERROR for everything this JOIN could not join, whatever their number.
        if !invalid.is_empty() {
            let message = format!("not joined: {}", invalid.join("; "));
            let frame = match refusal {
                Some(code) => refusal_frame(reference, code, message, &refused),
                None => error_frame(reference, "invalid_payload", message),
            };
            self.send(frame);
        }
        let reply = JoinReply {
            status: Status::Ok,
            cursors,
            log_id: self.engine.backend().log_id().to_owned(),
        };
        self.send(envelope(kind::REPLY, reference, &reply));
    }

    /// Authenticates and authorizes the joined scopes again, leaving those the identity may no
    /// longer watch and saying so in one ERROR (`ref` 0). A store that cannot be read keeps
    /// them until the next check.
    async fn recheck(&mut self) {
        if self.joined.is_empty() {
            return;
        }
        let credentials = Credentials {
            parts: &self.parts,
            token: self.token.as_deref(),
        };
        let caller = match self.engine.authenticate(&credentials).await {
            Ok(caller) => caller,
            Err(AuthError::Store(error)) => {
                warn!(error = %Sentence(&error), "cannot re-check a live connection's identity");
                return;
            }
            Err(error) => {
                let left: Vec<String> = self.joined.iter().cloned().collect();
                self.refuse(&left, "unauthorized", &error);
                return;
            }
        };
        let (mut left, mut last) = (Vec::new(), None);
        for scope in &self.joined {
            match self.engine.authorize(&caller, scope, Action::Live).await {
                Ok(()) => {}
                Err(AuthError::Store(error)) => {
                    warn!(error = %Sentence(&error), scope, "cannot re-check a joined scope");
                }
                Err(error) => {
                    left.push(scope.clone());
                    last = Some(error);
                }
            }
        }
        if let Some(error) = last {
            let code = refusal_code(&error);
            self.refuse(&left, code, &error);
        }
    }

    /// Leaves `scopes` and tells the client why, naming them.
    fn refuse(&mut self, scopes: &[String], code: &str, error: &AuthError) {
        for scope in scopes {
            self.hub.leave(scope, self.id);
            self.joined.remove(scope);
        }
        debug!(
            code,
            scopes = scopes.len(),
            "left scopes the connection may no longer watch"
        );
        let message = format!("no longer joined: {error}");
        self.send(refusal_frame(0, code, message, scopes));
    }

    /// Queues a REPLY or ERROR. The server never waits for a client that does not read: where
    /// the queue is full, the connection is closed (1008) instead.
    fn send(&mut self, frame: String) {
        if !self.outbox.try_reply(frame) {
            debug!("closing a live connection that does not read its answers");
            self.outbox.close(CloseFrame {
                code: axum::extract::ws::close_code::POLICY,
                reason: Utf8Bytes::from_static("too many unread answers"),
            });
            self.closing = true;
        }
    }

    fn leave_all(&mut self) {
        for scope in std::mem::take(&mut self.joined) {
            self.hub.leave(&scope, self.id);
        }
    }
}

fn refusal_code(error: &AuthError) -> &'static str {
    match error {
        AuthError::Unauthorized(_) => "unauthorized",
        AuthError::Forbidden(_) | AuthError::Store(_) => "forbidden",
    }
}

/// A scope as an error message shows it: quoted, and cut short where it is long.
fn shown(scope: &str) -> String {
    let cut: String = scope.chars().take(64).collect();
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MutatorFunc;

    fn connection(reply_queue: usize) -> Connection {
        let engine = Engine::builder(MutatorFunc::new(|_, _| Box::pin(async { Ok(None) }))).build();
        let hub = engine.live_hub().clone();
        Connection {
            engine,
            max_scopes: 1000,
            max_join_scopes: 100,
            parts: axum::http::Request::new(()).into_parts().0,
            token: None,
            id: hub.next_id(),
            hub,
            outbox: Arc::new(Outbox::new(reply_queue)),
            joined: BTreeSet::new(),
            closing: false,
        }
    }

    /// The reader never waits for room: an answer that finds the queue full closes the
    /// connection (1008) instead, whatever the client does not read.
    #[test]
    fn an_answer_that_finds_the_queue_full_closes_with_1008() {
        let mut connection = connection(2);
        connection.send("1".into());
        connection.send("2".into());
        assert!(!connection.closing);
        connection.send("3".into());
        assert!(connection.closing, "the reader reads no further");
        match connection.outbox.take() {
            Err(close) => assert_eq!(close.code, axum::extract::ws::close_code::POLICY),
            Ok(frames) => panic!("expected the close, got {frames:?}"),
        }
    }

    /// Found by fuzzing: serde reads a struct from a JSON array, which took `[1, 5, {...}]` for a
    /// frame with ref 5. A frame is an object; anything else is `invalid_frame` with ref 0.
    #[tokio::test]
    async fn a_frame_that_is_not_an_object_is_an_invalid_frame() {
        let mut connection = connection(32);
        for text in [
            "[0,\n\t5,\n\t0]",
            "[4, 7, {}]",
            " [1, 3, {\"scopes\": [\"a\"]}]",
        ] {
            connection.handle(text).await;
            let (_, replies) = connection.outbox.take().unwrap_or_default();
            assert_eq!(replies.len(), 1, "{text}: {replies:?}");
            let answer: Value = serde_json::from_str(&replies[0]).unwrap();
            assert_eq!(
                (&answer["ref"], &answer["payload"]["code"]),
                (&json!(0), &json!("invalid_frame")),
                "{text}: {answer}"
            );
        }
        connection.handle(" \n{\"type\": 4, \"ref\": 9}").await;
        let (_, replies) = connection.outbox.take().unwrap_or_default();
        assert!(replies[0].contains(r#""ref":9"#), "{replies:?}");
    }

    #[test]
    fn detached_parts_keep_every_header_and_the_uri_but_not_the_read_buffer() {
        use axum::http::{HeaderName, HeaderValue, Request, Uri};
        // As hyper parses them: slices of one buffer.
        let buffer = axum::body::Bytes::from_static(b"/_sync/live?x=1 Bearer t a b");
        let slice = |at: usize, to: usize| buffer.slice(at..to);
        let mut request = Request::new(());
        *request.uri_mut() = Uri::from_maybe_shared(slice(0, 15)).unwrap();
        let mut token = HeaderValue::from_maybe_shared(slice(16, 24)).unwrap();
        token.set_sensitive(true);
        let headers = request.headers_mut();
        headers.append(axum::http::header::AUTHORIZATION, token);
        let custom = HeaderName::from_static("x-tag");
        headers.append(
            &custom,
            HeaderValue::from_maybe_shared(slice(25, 26)).unwrap(),
        );
        headers.append(
            &custom,
            HeaderValue::from_maybe_shared(slice(27, 28)).unwrap(),
        );
        let parts = request.into_parts().0;

        let detached = detached(parts.clone());
        assert_eq!(detached.uri, parts.uri);
        assert_eq!(detached.headers, parts.headers);
        let tags: Vec<_> = detached.headers.get_all(&custom).iter().collect();
        assert_eq!(tags, ["a", "b"]);
        assert!(detached.headers[axum::http::header::AUTHORIZATION].is_sensitive());
        let in_buffer = |bytes: &[u8]| buffer.as_ptr_range().contains(&bytes.as_ptr());
        assert!(
            parts
                .headers
                .values()
                .all(|value| in_buffer(value.as_bytes()))
        );
        assert!(
            !detached
                .headers
                .values()
                .any(|value| in_buffer(value.as_bytes()))
        );
    }

    /// Only an engine with an authenticator reads the upgrade request again: one without keeps
    /// none of it.
    #[test]
    fn the_upgrade_request_is_kept_only_for_an_authenticator() {
        let request = axum::http::Request::get("/_sync/live?x=1")
            .header(axum::http::header::AUTHORIZATION, "Bearer t")
            .body(())
            .unwrap();
        let parts = request.into_parts().0;
        let with_auth = kept(parts.clone(), true);
        assert_eq!(with_auth.uri, parts.uri);
        assert_eq!(with_auth.headers, parts.headers);
        let without = kept(parts, false);
        assert!(without.headers.is_empty());
        assert_eq!(without.uri, "/");
    }

    #[tokio::test]
    async fn a_join_is_bounded_by_its_distinct_scopes_and_answers_one_error() {
        let mut connection = connection(32);
        let repeats = JoinPayload {
            scopes: vec!["s1".to_owned(); 8000]
                .into_iter()
                .chain([String::new()])
                .collect(),
            token: None,
        };
        connection.join(1, repeats).await;
        let (_, replies) = connection.outbox.take().unwrap_or_default();
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert!(replies[0].contains(r#""_default":0"#) && replies[0].contains(r#""s1":0"#));

        let too_many = JoinPayload {
            scopes: (0..101).map(|i| format!("s{i}")).collect(),
            token: None,
        };
        connection.join(2, too_many).await;
        let (_, replies) = connection.outbox.take().unwrap_or_default();
        assert_eq!(replies.len(), 1);
        assert!(replies[0].contains("too_many_scopes"), "{replies:?}");

        let invalid = JoinPayload {
            scopes: (0..50)
                .map(|i| format!("bad\n{i}"))
                .chain(["ok".into()])
                .collect(),
            token: None,
        };
        connection.join(3, invalid).await;
        let (_, replies) = connection.outbox.take().unwrap_or_default();
        assert_eq!(
            replies.len(),
            2,
            "one ERROR for all 50, then the REPLY: {replies:?}"
        );
        assert!(replies[0].contains("invalid_payload") && replies[1].contains(r#""ok":0"#));
    }
}
