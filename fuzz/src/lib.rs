//! What the fuzz targets share: one current-thread runtime, the engines they talk to, and the
//! protocol's promises (docs/protocol.md, "Errors") as assertions. A broken promise panics, and
//! libFuzzer's panic hook turns any panic, in a handler or a spawned task too, into a crash.
//!
//! Each input meets the same state, so that a crash reproduces from its input alone: a push gets
//! a fresh engine; pulls, snapshots and live sessions read one seeded engine that they do not
//! change.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sync_runtime::{Engine, Mutation, SyncError};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;

/// The endpoints that take a JSON body.
#[derive(Clone, Copy, Debug)]
pub enum Endpoint {
    /// `POST /_sync/push`
    Push,
    /// `POST /_sync/pull`
    Pull,
    /// `POST /_sync/snapshot`
    Snapshot,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Push => "/_sync/push",
            Endpoint::Pull => "/_sync/pull",
            Endpoint::Snapshot => "/_sync/snapshot",
        }
    }
}

/// The todo example's mutations.
pub const TODO_MUTATIONS: [&str; 4] = ["todo/create", "todo/toggle", "todo/rename", "todo/delete"];

/// The one runtime, created at the first input: current-thread, as libFuzzer calls from one.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

fn todo_engine() -> Engine {
    Engine::builder(todo::TodoMutator).build()
}

/// An engine with history: todos in `_default` and `team:1`, the oldest of `_default` trimmed,
/// so that pulls meet pages, `has_more`, `cursor_too_old` and `cursor_ahead`, and clients with
/// a processed `client_seq`.
fn seeded() -> &'static Engine {
    static SEEDED: OnceLock<Engine> = OnceLock::new();
    SEEDED.get_or_init(|| {
        runtime().block_on(async {
            let engine = todo_engine();
            let mut mutations = Vec::new();
            for (i, scope) in ["_default", "_default", "team:1", "_default", "team:1"]
                .into_iter()
                .enumerate()
            {
                let args = json!({ "id": format!("t{i}"), "title": format!("todo {i}") });
                mutations.push(
                    Mutation::new("todo/create", args)
                        .with_scope(scope)
                        .with_client("phone", i as u64 + 1),
                );
            }
            mutations.push(Mutation::new("todo/toggle", json!({ "id": "t0" })));
            mutations.push(Mutation::new("todo/delete", json!({ "id": "t1" })));
            engine.push(mutations).await.expect("the seed push");
            engine.trim(3).await.expect("the seed trim");
            engine
        })
    })
}

fn seeded_router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| seeded().router())
}

/// POSTs `body` as JSON to `endpoint` and checks the answer: never 5xx, a JSON object on 2xx,
/// and the `{"error", "code"}` body on every other status.
pub fn post_within_protocol(endpoint: Endpoint, body: &[u8]) {
    let router = match endpoint {
        Endpoint::Push => todo_engine().router(),
        Endpoint::Pull | Endpoint::Snapshot => seeded_router().clone(),
    };
    let request = Request::post(endpoint.path())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
        .expect("a request");
    let (status, answer) = runtime().block_on(async {
        let response = router
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let answer = response
            .into_body()
            .collect()
            .await
            .expect("the answer's body");
        (status, answer.to_bytes())
    });
    let shown = String::from_utf8_lossy(body);
    let text = String::from_utf8_lossy(&answer);
    assert!(
        !status.is_server_error(),
        "{status} {text} for {:?} {shown:?}",
        endpoint.path()
    );
    let answer: Value = serde_json::from_slice(&answer)
        .unwrap_or_else(|error| panic!("{status}: a body that is not JSON ({error}): {text}"));
    if status.is_success() {
        assert!(answer.is_object(), "{status}: {text}");
    } else {
        let fine = |field: &str| answer[field].as_str().is_some_and(|s| !s.is_empty());
        assert!(
            fine("error") && fine("code"),
            "{status} without the error body: {text} for {shown:?}"
        );
    }
}

/// `args` (when JSON) as the arguments of each todo mutation, after a todo `milk` is created:
/// the push succeeds, and every result is applied or failed with a code and a sentence.
pub fn mutation_args(data: &[u8]) {
    let Ok(args) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let engine = todo_engine();
    let mut mutations = vec![Mutation::new(
        "todo/create",
        json!({ "id": "milk", "title": "Buy milk" }),
    )];
    mutations.extend(
        TODO_MUTATIONS
            .iter()
            .map(|name| Mutation::new(*name, args.clone())),
    );
    let count = mutations.len();
    match runtime().block_on(engine.push(mutations)) {
        Ok(answer) => {
            assert_eq!(answer.results.len(), count, "{answer:?}");
            for result in &answer.results {
                if !result.ok {
                    assert!(
                        result.code.as_deref().is_some_and(|c| !c.is_empty())
                            && result.error.as_deref().is_some_and(|e| !e.is_empty()),
                        "a failure has a code and a sentence: {result:?} for {args}"
                    );
                }
            }
        }
        Err(
            SyncError::InvalidRequest(_)
            | SyncError::NoMutations
            | SyncError::TooManyMutations { .. }
            | SyncError::InvalidScope(_),
        ) => {}
        Err(error) => panic!("{error:?} ({}) for args {args}", error.code()),
    }
}

/// How long an answer may take before it is a hang.
const PATIENCE: Duration = Duration::from_secs(5);

/// The heartbeat ref that marks the end of a frame's answers.
const MARK: u32 = u32::MAX;

type Socket = tokio_tungstenite::WebSocketStream<tokio::io::DuplexStream>;

/// A live session with the seeded engine, over an in-memory pipe: hyper serves the router on one
/// end, with upgrades, and tungstenite is the client on the other. No socket, no port.
async fn live_session(router: Router) -> Socket {
    let (client, server) = tokio::io::duplex(1 << 17);
    let service = hyper_util::service::TowerToHyperService::new(router);
    tokio::spawn(async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(server), service)
            .with_upgrades()
            .await;
    });
    let (socket, _) = tokio_tungstenite::client_async("ws://localhost/_sync/live", client)
        .await
        .expect("the WebSocket handshake");
    socket
}

/// The next text frame as JSON; a close, an error, a non-JSON answer or a hang fails.
async fn next_answer(socket: &mut Socket, sent: &Message) -> Value {
    loop {
        let frame = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no answer within {PATIENCE:?} to {sent:?}"));
        match frame {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text).unwrap_or_else(|error| {
                    panic!("an answer that is not JSON ({error}): {text}")
                });
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!(
                "{other:?} after {sent:?}: a frame within the limit keeps the connection open"
            ),
        }
    }
}

/// `data` as one frame to a fresh live session (text where it is UTF-8, else binary): it is
/// answered (ERROR, REPLY, or a HEARTBEAT to a heartbeat) with the frame's ref where the frame
/// has one, and the connection stays open.
pub fn live_frame(data: &[u8]) {
    let frame = match std::str::from_utf8(data) {
        Ok(text) => Message::text(text),
        Err(_) => Message::binary(data.to_vec()),
    };
    // Where the frame is JSON, the ref its answers carry: its own if it is a u32, else 0.
    let parsed = std::str::from_utf8(data)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(text).ok());
    let expected_ref = parsed.as_ref().map(|value| {
        value
            .get("ref")
            .and_then(Value::as_u64)
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or(0)
    });
    let is_marker = parsed
        .as_ref()
        .is_some_and(|value| value.get("type") == Some(&json!(4)) && expected_ref == Some(MARK));
    // Seeded before the runtime runs: seeding blocks on it.
    let router = seeded_router().clone();
    runtime().block_on(async {
        let mut socket = live_session(router).await;
        socket.send(frame.clone()).await.expect("sending the frame");
        let heartbeat = json!({ "type": 4, "ref": MARK, "payload": {} }).to_string();
        socket
            .send(Message::text(heartbeat))
            .await
            .expect("sending the heartbeat");
        let mut answers = Vec::new();
        loop {
            let answer = next_answer(&mut socket, &frame).await;
            let marks = answer["type"] == 4 && answer["ref"] == MARK;
            // A frame that is itself the marker heartbeat is answered by the first of the two.
            if marks && !(is_marker && answers.is_empty()) {
                break;
            }
            answers.push(answer);
        }
        assert!(!answers.is_empty(), "no answer to {frame:?}");
        for answer in &answers {
            let payload = &answer["payload"];
            let fine = match answer["type"].as_u64() {
                Some(8) => payload["code"].is_string() && payload["error"].is_string(),
                Some(5) => payload["status"] == "ok",
                Some(4) => payload.is_object(),
                _ => false,
            };
            assert!(fine, "{answer} is no answer to {frame:?}");
            if let Some(expected) = expected_ref {
                assert_eq!(answer["ref"], expected, "{answer} answers {frame:?}");
            }
        }
        let _ = socket.close(None).await;
    });
}
