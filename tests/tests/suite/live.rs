//! The live channel over a real socket: JOIN, POKE, LEAVE, HEARTBEAT, errors, authorization,
//! the idle timeout, and a client that stops reading.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sync_runtime::{Access, AuthError, Credentials, Engine, HttpOptions, Mutation};
use sync_tests::*;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Serves `engine` on a free loopback port.
pub(crate) async fn serve(engine: &Engine) -> SocketAddr {
    serve_with(engine, HttpOptions::default()).await
}

pub(crate) async fn serve_with(engine: &Engine, options: HttpOptions) -> SocketAddr {
    serve_app(engine.router_with(options)).await
}

/// Serves any router on a free loopback port.
pub(crate) async fn serve_app(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

pub(crate) struct Live {
    pub(crate) ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// Long enough never to fail a correct run on a loaded machine; it only stops a hang.
const PATIENCE: Duration = Duration::from_secs(20);

impl Live {
    pub(crate) async fn connect(addr: SocketAddr) -> Live {
        Live::connect_with(addr, &[]).await
    }

    pub(crate) async fn connect_with(addr: SocketAddr, headers: &[(&str, &str)]) -> Live {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{addr}/_sync/live")
            .into_client_request()
            .unwrap();
        for (name, value) in headers {
            let name = tokio_tungstenite::tungstenite::http::HeaderName::try_from(*name).unwrap();
            request.headers_mut().insert(name, value.parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        Live { ws }
    }

    pub(crate) async fn send(&mut self, kind: u8, reference: u32, payload: Value) {
        let frame = json!({"type": kind, "ref": reference, "payload": payload});
        self.send_text(&frame.to_string()).await;
    }

    pub(crate) async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next text frame, as JSON.
    pub(crate) async fn recv(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("no frame arrived")
                .expect("the connection closed")
                .unwrap();
            if let Message::Text(text) = frame {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    pub(crate) async fn join(&mut self, reference: u32, scopes: &[&str]) -> Value {
        self.send(1, reference, json!({ "scopes": scopes })).await;
        let reply = self.recv().await;
        assert_eq!(
            (reply["type"].clone(), reply["ref"].clone()),
            (json!(5), json!(reference)),
            "{reply}"
        );
        reply
    }

    /// Sends a heartbeat and waits for its answer: everything sent before it has arrived.
    pub(crate) async fn sync(&mut self, reference: u32) -> Vec<Value> {
        self.send(4, reference, json!({})).await;
        let mut before = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["type"] == 4 && frame["ref"] == reference {
                return before;
            }
            before.push(frame);
        }
    }
}

/// A JOIN's REPLY payload without its `log_id`, which it must carry.
fn without_log_id(payload: &Value) -> Value {
    let mut payload = payload.clone();
    let log_id = payload.as_object_mut().and_then(|p| p.remove("log_id"));
    assert!(
        log_id
            .as_ref()
            .and_then(Value::as_str)
            .is_some_and(|id| id.len() >= 8),
        "a REPLY to a JOIN names the log: {log_id:?}"
    );
    payload
}

fn push_to(scope: &str, id: &str) -> Vec<Mutation> {
    vec![create_with_id(id, "t").with_scope(scope)]
}

#[tokio::test]
async fn join_answers_each_scopes_latest_cursor() {
    let engine = todo_engine();
    engine.push(push_to("a", "1")).await.unwrap();
    engine.push(push_to("b", "2")).await.unwrap();
    let mut live = Live::connect(serve(&engine).await).await;
    let reply = live.join(7, &["a", "b", "empty"]).await;
    assert_eq!(
        without_log_id(&reply["payload"]),
        json!({"status": "ok", "cursors": {"a": 1, "b": 2, "empty": 0}})
    );
    assert_eq!(engine.live_hub().watchers("a"), 1);
}

#[tokio::test]
async fn a_commit_to_a_joined_scope_pokes() {
    let engine = todo_engine();
    let mut live = Live::connect(serve(&engine).await).await;
    live.join(1, &["a"]).await;
    engine.push(push_to("b", "other")).await.unwrap();
    let pushed = engine.push(push_to("a", "mine")).await.unwrap();
    let poke = live.recv().await;
    assert_eq!(
        poke,
        json!({"type": 11, "ref": 0, "payload": {"scope": "a", "cursor": pushed.cursor}})
    );
    assert!(
        live.sync(2).await.is_empty(),
        "no poke for a scope not joined"
    );
}

#[tokio::test]
async fn leave_stops_the_pokes() {
    let engine = todo_engine();
    let mut live = Live::connect(serve(&engine).await).await;
    live.join(1, &["a", "b"]).await;
    live.send(2, 3, json!({"scopes": ["a"]})).await;
    assert_eq!(
        live.recv().await,
        json!({"type": 5, "ref": 3, "payload": {"status": "ok"}})
    );
    engine.push(push_to("a", "1")).await.unwrap();
    engine.push(push_to("b", "2")).await.unwrap();
    let frames = live.sync(4).await;
    assert_eq!(
        frames,
        [json!({"type": 11, "ref": 0, "payload": {"scope": "b", "cursor": 2}})]
    );
    assert_eq!(engine.live_hub().watchers("a"), 0);
}

#[tokio::test]
async fn heartbeats_are_answered_with_their_ref() {
    let engine = todo_engine();
    let mut live = Live::connect(serve(&engine).await).await;
    for reference in [1, 99, u32::MAX] {
        live.send(4, reference, json!({})).await;
        assert_eq!(
            live.recv().await,
            json!({"type": 4, "ref": reference, "payload": {}})
        );
    }
}

#[tokio::test]
async fn malformed_frames_are_answered_and_the_connection_stays_open() {
    let engine = todo_engine();
    let mut live = Live::connect(serve(&engine).await).await;
    for (frame, reference, code) in [
        ("not json", 0, "invalid_frame"),
        (r#"{"ref": 5}"#, 5, "invalid_frame"),
        (r#"{"type": "join", "ref": 6}"#, 6, "invalid_frame"),
        (
            r#"{"type": 1, "ref": 7, "payload": {"scopes": 5}}"#,
            7,
            "invalid_payload",
        ),
        (
            r#"{"type": 1, "ref": 8, "payload": {"scopes": ["bad\u0000scope"]}}"#,
            8,
            "invalid_payload",
        ),
        (
            r#"{"type": 2, "ref": 9, "payload": {}}"#,
            9,
            "invalid_payload",
        ),
        (
            r#"{"type": 3, "ref": 10, "payload": {}}"#,
            10,
            "unknown_type",
        ),
        (
            r#"{"type": 11, "ref": 11, "payload": {}}"#,
            11,
            "unknown_type",
        ),
    ] {
        live.send_text(frame).await;
        let error = live.recv().await;
        assert_eq!(
            (error["type"].clone(), error["ref"].clone()),
            (json!(8), json!(reference)),
            "{frame}: {error}"
        );
        assert_eq!(error["payload"]["code"], code, "{frame}: {error}");
        assert!(
            error["payload"]["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty())
        );
        if reference == 8 {
            // A JOIN with a bad scope still answers, with the scopes it joined: none.
            assert_eq!(
                without_log_id(&live.recv().await["payload"]),
                json!({"status": "ok", "cursors": {}})
            );
        }
    }
    live.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(live.recv().await["payload"]["code"], "invalid_frame");
    assert!(live.sync(12).await.is_empty(), "still open and answering");
}

#[tokio::test]
async fn the_authorizer_is_asked_for_every_joined_scope() {
    // The upgrade request's header names the user; a JOIN's token can make it the admin.
    let authenticate = |credentials: &Credentials<'_>| match credentials.token {
        Some("admin") => Ok("admin".to_owned()),
        _ => credentials
            .headers()
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| AuthError::unauthorized("who are you?")),
    };
    let authorize = |access: &Access<'_, String>| match access.identity.as_str() {
        "admin" => Ok(()),
        user if access.scope == format!("user:{user}") => Ok(()),
        user => Err(AuthError::forbidden(format!(
            "{user} may not watch {}",
            access.scope
        ))),
    };
    let engine = Engine::builder(todo::TodoMutator)
        .auth(authenticate, authorize)
        .build();
    let addr = serve(&engine).await;
    let mut live = Live::connect_with(addr, &[("x-user", "ann")]).await;
    live.send(1, 1, json!({"scopes": ["user:ann", "user:bob"]}))
        .await;
    let error = live.recv().await;
    assert_eq!(
        (error["type"].clone(), error["ref"].clone()),
        (json!(8), json!(1))
    );
    assert_eq!(error["payload"]["code"], "forbidden");
    let reply = live.recv().await;
    assert_eq!(
        without_log_id(&reply["payload"]),
        json!({"status": "ok", "cursors": {"user:ann": 0}})
    );
    engine.push(push_to("user:bob", "x")).await.unwrap();
    assert!(
        live.sync(2).await.is_empty(),
        "a refused scope is not joined"
    );

    live.send(1, 3, json!({"scopes": ["user:bob"]})).await;
    assert_eq!(live.recv().await["payload"]["code"], "forbidden");
    assert_eq!(
        without_log_id(&live.recv().await["payload"]),
        json!({"status": "ok", "cursors": {}})
    );
    live.send(1, 4, json!({"scopes": ["user:bob"], "token": "admin"}))
        .await;
    assert_eq!(live.recv().await["payload"]["cursors"]["user:bob"], 1);
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_heartbeats_keep_it_open() {
    let mut options = HttpOptions::default();
    options.live.idle_timeout = Duration::from_millis(300);
    let engine = Engine::builder(todo::TodoMutator).build();
    let addr = serve_with(&engine, options).await;

    let mut busy = Live::connect(addr).await;
    for reference in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        busy.send(4, reference, json!({})).await;
        assert_eq!(
            busy.recv().await["ref"],
            reference,
            "alive after {}ms",
            (reference + 1) * 100
        );
    }

    let mut idle = Live::connect(addr).await;
    idle.join(1, &["a"]).await;
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match idle.ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection was closed");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        engine.live_hub().watchers("a"),
        0,
        "a closed connection leaves its scopes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_slows_no_one_and_holds_little() {
    const SCOPES: usize = 20;
    const PUSHES: usize = 3000;
    let engine = Engine::builder(RulesMutator).build();
    let addr = serve(&engine).await;
    // Long scope names make long pokes: unmerged, 3,000 pushes would owe this client ~15 MB.
    let scopes: Vec<String> = (0..SCOPES)
        .map(|i| format!("{i:03}-{}", "s".repeat(200)))
        .collect();
    let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();

    let mut stalled = Live::connect(addr).await;
    stalled.join(1, &scope_refs).await;
    let mut reader = Live::connect(addr).await;
    reader.join(1, &scope_refs[..1]).await;

    let mut most_queued = 0;
    let mut last = 0;
    for i in 0..PUSHES {
        let batch = scopes
            .iter()
            .map(|scope| put(&i.to_string()).with_scope(scope.as_str()))
            .collect();
        last = tokio::time::timeout(PATIENCE, engine.push(batch))
            .await
            .expect("a push waited")
            .unwrap()
            .cursor;
        most_queued = most_queued.max(engine.live_hub().queued());
        if i % 500 == 0 {
            // The reading client keeps getting its pokes meanwhile.
            assert!(!reader.sync(i as u32).await.is_empty() || i == 0);
        }
    }
    // Two connections, at most one poke per scope each (plus a few replies): not 60,000 pokes.
    assert!(most_queued <= 2 * SCOPES + 2 * 32, "queued {most_queued}");

    // When it reads again, it learns of the latest commit of every scope.
    let mut latest = std::collections::HashMap::new();
    while latest.len() < SCOPES || latest.values().any(|cursor| *cursor < last - SCOPES as u64) {
        let frame = stalled.recv().await;
        if frame["type"] == 11 {
            let scope = frame["payload"]["scope"].as_str().unwrap().to_owned();
            latest.insert(scope, frame["payload"]["cursor"].as_u64().unwrap());
        }
    }
    assert_eq!(
        latest.values().max().copied(),
        Some(last),
        "the last poke is at the last push"
    );
}

/// A node on PostgreSQL: an engine with a live hub that a [`PostgresBroker`] relays to.
async fn pg_node(
    url: &str,
    shared: sync_runtime::AnyBackend,
) -> (Engine, sync_runtime::PostgresBroker) {
    let hub = sync_runtime::LiveHub::new();
    let broker = sync_runtime::PostgresBroker::start(url, hub.clone(), shared.clone())
        .await
        .unwrap();
    let engine = Engine::builder(todo::TodoMutator)
        .backend(shared)
        .live_hub(hub)
        .broker(broker.clone())
        .build();
    (engine, broker)
}

/// Waits for a POKE of `scope` with a cursor of at least `cursor`.
async fn poked(live: &mut Live, scope: &str, cursor: u64) {
    loop {
        let frame = live.recv().await;
        if frame["type"] == 11
            && frame["payload"]["scope"] == scope
            && frame["payload"]["cursor"].as_u64() >= Some(cursor)
        {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_on_one_node_pokes_the_clients_of_another() {
    sync_tests::backends::run(Kind::Postgres, |b| async move {
        let url = b.store_arg().unwrap();
        let (a, _broker_a) = pg_node(&url, b.backend()).await;
        let (c, _broker_c) = pg_node(&url, b.open().await.unwrap()).await;
        let scope = format!("nodes-{}", std::process::id());
        let mut on_c = Live::connect(serve(&c).await).await;
        on_c.join(1, &[&scope]).await;
        let mut on_a = Live::connect(serve(&a).await).await;
        on_a.join(1, &[&scope]).await;

        let pushed = a.push(push_to(&scope, "1")).await.unwrap();
        poked(&mut on_c, &scope, pushed.cursor).await;
        poked(&mut on_a, &scope, pushed.cursor).await;
        let pushed = c.push(push_to(&scope, "2")).await.unwrap();
        poked(&mut on_a, &scope, pushed.cursor).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_losing_its_connection_the_broker_pokes_every_joined_scope() {
    sync_tests::backends::run(Kind::Postgres, |b| async move {
        let url = b.store_arg().unwrap();
        let (a, _broker_a) = pg_node(&url, b.backend()).await;
        let (c, _broker_c) = pg_node(&url, b.open().await.unwrap()).await;
        let scope = format!("reconnect-{}", std::process::id());
        // A commit no broker announces: only the reconnection can tell node C's clients of it.
        let silent = Engine::builder(todo::TodoMutator)
            .backend(b.backend())
            .build();
        let before = silent.push(push_to(&scope, "1")).await.unwrap();
        let mut on_c = Live::connect(serve(&c).await).await;
        on_c.join(1, &[&scope]).await;

        // Cut every broker connection of this database, as a restart or a network fault would.
        let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let cut = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'sync-poke-broker' AND datname = current_database()",
                &[],
            )
            .await
            .unwrap();
        assert!(cut.len() >= 2, "both brokers were connected");

        // Node C's clients are poked with their scope's cursor once its broker is back...
        poked(&mut on_c, &scope, before.cursor).await;
        // ...and commits on node A reach them again.
        let after = a.push(push_to(&scope, "2")).await.unwrap();
        poked(&mut on_c, &scope, after.cursor).await;
    })
    .await;
}

/// A TCP proxy to PostgreSQL whose connections can be frozen: open, but passing nothing either
/// way, as a connection whose peer vanished without a reset (half-open).
struct FreezingProxy {
    addr: SocketAddr,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FreezingProxy {
    async fn start(upstream: SocketAddr) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = std::sync::Arc::new(AtomicBool::new(false));
        tokio::spawn({
            let frozen = std::sync::Arc::clone(&frozen);
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    // A connection accepted while frozen is not: only those open at the cut are.
                    let cut = std::sync::Arc::new(AtomicBool::new(false));
                    let was_frozen = frozen.load(Ordering::SeqCst);
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let (frozen, cut) =
                        (std::sync::Arc::clone(&frozen), std::sync::Arc::clone(&cut));
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let (mut client_read, mut client_write) = client.into_split();
                        let (mut server_read, mut server_write) = server.into_split();
                        let stuck =
                            |frozen: &AtomicBool| !was_frozen && frozen.load(Ordering::SeqCst);
                        let mut up = [0u8; 8192];
                        let mut down = [0u8; 8192];
                        loop {
                            if stuck(&frozen) {
                                cut.store(true, Ordering::SeqCst);
                                // Hold both sockets open and pass nothing, for ever.
                                std::future::pending::<()>().await;
                            }
                            tokio::select! {
                                n = client_read.read(&mut up) => match n {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) if !stuck(&frozen) => { if server_write.write_all(&up[..n]).await.is_err() { return } }
                                    Ok(_) => {}
                                },
                                n = server_read.read(&mut down) => match n {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) if !stuck(&frozen) => { if client_write.write_all(&down[..n]).await.is_err() { return } }
                                    Ok(_) => {}
                                },
                                () = tokio::time::sleep(Duration::from_millis(20)) => {}
                            }
                        }
                    });
                }
            }
        });
        FreezingProxy { addr, frozen }
    }

    fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A relay whose connection went half-open (open, but silent) notices by its heartbeat,
/// reconnects, and pokes its clients with what they missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_connection_goes_silent_reconnects() {
    sync_tests::backends::run(Kind::Postgres, |b| async move {
        let url = b.store_arg().unwrap();
        let proxy = FreezingProxy::start("127.0.0.1:5432".parse().unwrap()).await;
        let through_proxy = url.replacen("127.0.0.1:5432", &proxy.addr.to_string(), 1);
        assert_ne!(through_proxy, url, "the test database is on 127.0.0.1:5432");
        let hub = sync_runtime::LiveHub::new();
        let mut options = sync_runtime::PostgresBrokerOptions::default();
        options.heartbeat = Duration::from_millis(200);
        let _broker = sync_runtime::PostgresBroker::start_with(
            &through_proxy,
            hub.clone(),
            b.backend(),
            options,
        )
        .await
        .unwrap();
        let a = Engine::builder(todo::TodoMutator)
            .backend(b.backend())
            .live_hub(hub)
            .build();
        let (c, _broker_c) = pg_node(&url, b.open().await.unwrap()).await;
        let scope = format!("half-open-{}", std::process::id());
        let mut on_a = Live::connect(serve(&a).await).await;
        on_a.join(1, &[&scope]).await;

        proxy.freeze();
        // A commit on node C, announced on a connection node A no longer hears.
        let pushed = c.push(push_to(&scope, "1")).await.unwrap();
        poked(&mut on_a, &scope, pushed.cursor).await;
    })
    .await;
}
