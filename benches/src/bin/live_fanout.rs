//! Live fan-out: N WebSocket clients joined to one scope, the time from a push until every client
//! has its poke, and the server's memory per idle connection; beside a bare axum WebSocket server
//! that broadcasts one frame to the same number of connections, in the same run.
//!
//! `cargo run --release -p sync-bench --bin live_fanout -- --clients 10000 --rounds 20`
//!
//! With `--scopes N` the clients are spread over N scopes (client k joins scope k mod N), and
//! each round is one push of a mutation in every scope (the bare server: one frame per scope,
//! each encoded once and sent to that scope's connections).
//!
//! Each server runs in a child process (this binary, `serve <kind>`), so that its memory is its
//! own; the clients run here. Only loopback addresses are used.
//!
//! `--wrap 'heaptrack -o /tmp/live'` starts each server under that command, e.g. a heap profiler,
//! to break the memory per connection down (BENCHMARKS.md, "Live fan-out").

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // benchmark code

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Barrier, broadcast};
use tokio_tungstenite::tungstenite::Message as ClientMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Parser)]
struct Cli {
    /// WebSocket clients per server.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Pushes (or broadcasts) measured per server.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Scopes the clients are spread over (at most 1000: one push names each).
    #[arg(long, default_value_t = 1)]
    scopes: usize,
    /// A command (split at spaces) that each server is started under, e.g. a heap profiler.
    #[arg(long)]
    wrap: Option<String>,
    /// Internal: run a server of this kind (`engine` or `bare`) and print its address.
    #[arg(long, hide = true)]
    serve: Option<String>,
}

const SCOPE: &str = "bench";

fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some(kind) = cli.serve {
        runtime.block_on(serve(&kind));
        return;
    }
    println!(
        "{} clients over {} scopes, {} rounds per server; latencies from the push request to each poke",
        cli.clients, cli.scopes, cli.rounds
    );
    println!("| server | p50 ms | p99 ms | max ms | memory per idle connection |");
    println!("| --- | --- | --- | --- | --- |");
    let mut rows = Vec::new();
    for kind in ["bare", "engine"] {
        let scopes = cli.scopes.max(1);
        let server = Server::start(kind, cli.wrap.as_deref());
        let row = runtime.block_on(measure(&server, kind, cli.clients, cli.rounds, scopes));
        println!(
            "| {kind} | {:.1} | {:.1} | {:.1} | {:.1} KiB |",
            row.p50, row.p99, row.max, row.kib_per_connection
        );
        rows.push(row);
    }
    let (bare, engine) = (&rows[0], &rows[1]);
    println!(
        "engine / bare: p50 {:.2}, p99 {:.2}, memory {:.2}",
        engine.p50 / bare.p50,
        engine.p99 / bare.p99,
        engine.kib_per_connection / bare.kib_per_connection
    );
}

struct Row {
    p50: f64,
    p99: f64,
    max: f64,
    kib_per_connection: f64,
}

/// A server in a child process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// The serving process: the child, or the one a wrapper started.
    pid: u32,
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.pid != self.child.id() {
            // Ends the wrapped server, and lets the wrapper finish (a profiler writes its file).
            let _ = Command::new("kill").arg(self.pid.to_string()).status();
            let _ = self.child.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(kind: &str, wrap: Option<&str>) -> Server {
        let exe = std::env::current_exe().unwrap();
        let mut words = wrap.unwrap_or_default().split_whitespace();
        let mut command = match words.next() {
            Some(wrapper) => {
                let mut command = Command::new(wrapper);
                command.args(words).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        let mut child = command
            .args(["--serve", kind])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // A wrapper may print lines of its own before the server's address.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (addr, pid) = loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "the server stopped"
            );
            let mut words = line.split_whitespace();
            let addr = words.next().and_then(|word| word.parse().ok());
            let pid = words.next().and_then(|word| word.parse().ok());
            if let (Some(addr), Some(pid)) = (addr, pid) {
                break (addr, pid);
            }
        };
        // Read on, so that a wrapper's output never fills the pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Server { child, addr, pid }
    }

    /// Resident memory of the server process, in KiB.
    fn rss_kib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

/// The name of scope `k` of `scopes`; with one scope, the one the benchmark always used.
fn scope_name(k: usize, scopes: usize) -> String {
    if scopes == 1 {
        SCOPE.to_owned()
    } else {
        format!("{SCOPE}-{k}")
    }
}

async fn measure(server: &Server, kind: &str, clients: usize, rounds: usize, scopes: usize) -> Row {
    let addr = server.addr;
    let names: Vec<String> = (0..scopes).map(|k| scope_name(k, scopes)).collect();
    let http = reqwest_like::Client::new(addr, names.clone());
    // Warm the server (allocator, first push) before the memory baseline.
    http.trigger(kind, 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_kib();

    // Each client stamps its slot with the round it last saw and when (µs since `base`): no
    // channel between the clients and the measurement.
    let base = Instant::now();
    let slots: Arc<Vec<(AtomicUsize, AtomicU64)>> = Arc::new(
        (0..clients)
            .map(|_| (AtomicUsize::new(0), AtomicU64::new(0)))
            .collect(),
    );
    let joined = Arc::new(Barrier::new(clients + 1));
    for slot in 0..clients {
        let (slots, joined) = (Arc::clone(&slots), Arc::clone(&joined));
        let scope = names[slot % scopes].clone();
        tokio::spawn(async move {
            let url = format!("ws://{addr}/_sync/live");
            let config = WebSocketConfig::default()
                .read_buffer_size(4 << 10)
                .write_buffer_size(0);
            let (mut ws, _) =
                tokio_tungstenite::connect_async_with_config(url, Some(config), false)
                    .await
                    .unwrap();
            let join = json!({"type": 1, "ref": 1, "payload": {"scopes": [scope]}}).to_string();
            ws.send(ClientMessage::text(join)).await.unwrap();
            let _reply = ws.next().await;
            joined.wait().await;
            while let Some(Ok(frame)) = ws.next().await {
                if let ClientMessage::Text(_) = frame {
                    let (round, at) = &slots[slot];
                    at.store(base.elapsed().as_micros() as u64, Ordering::Release);
                    round.fetch_add(1, Ordering::AcqRel);
                }
            }
        });
    }
    joined.wait().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kib_per_connection = (server.rss_kib() - before) / clients as f64;

    let mut latencies = Vec::with_capacity(clients * rounds);
    for round in 1..=rounds {
        let start = base.elapsed().as_micros() as u64;
        http.trigger(kind, round).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while slots
            .iter()
            .any(|(seen, _)| seen.load(Ordering::Acquire) < round)
        {
            assert!(Instant::now() < deadline, "every client gets its poke");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.extend(
            slots
                .iter()
                .map(|(_, at)| (at.load(Ordering::Acquire) - start) as f64 / 1000.0),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Row {
        p50: at(0.5),
        p99: at(0.99),
        max: at(1.0),
        kib_per_connection,
    }
}

/// The servers.
async fn serve(kind: &str) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // The address, and the process to measure (a wrapper's child, where there is one).
    println!("{} {}", listener.local_addr().unwrap(), std::process::id());
    let app = match kind {
        "engine" => todo::app(&sync_bench::todo_engine()),
        _ => axum::Router::new()
            .route("/_sync/live", axum::routing::get(bare_upgrade))
            .route("/poke", axum::routing::post(bare_poke))
            .with_state(BareScopes::default()),
    };
    axum::serve(listener, app).await.unwrap();
}

/// The bare server's broadcast channel per scope.
#[derive(Clone, Default)]
struct BareScopes(
    Arc<std::sync::Mutex<std::collections::HashMap<String, broadcast::Sender<String>>>>,
);

impl BareScopes {
    fn sender(&self, scope: &str) -> broadcast::Sender<String> {
        let mut scopes = self.0.lock().unwrap();
        let sender = scopes.entry(scope.to_owned());
        sender.or_insert_with(|| broadcast::channel(16).0).clone()
    }
}

/// The baseline: each connection waits on its scope's broadcast channel and forwards every
/// frame.
async fn bare_upgrade(
    State(scopes): State<BareScopes>,
    upgrade: WebSocketUpgrade,
) -> axum::response::Response {
    // The same buffer sizes as the engine's live endpoint.
    upgrade
        .read_buffer_size(4 << 10)
        .write_buffer_size(0)
        .on_upgrade(move |socket: WebSocket| async move {
            let (mut sink, mut stream) = socket.split();
            // Answer the JOIN as the engine would, then forward broadcasts.
            let Some(Ok(Message::Text(join))) = stream.next().await else {
                return;
            };
            let join: serde_json::Value = serde_json::from_str(join.as_str()).unwrap();
            let scope = join["payload"]["scopes"][0].as_str().unwrap_or(SCOPE);
            let mut receiver = scopes.sender(scope).subscribe();
            if sink
                .send(Message::text(
                    r#"{"type":5,"ref":1,"payload":{"status":"ok"}}"#,
                ))
                .await
                .is_err()
            {
                return;
            }
            while let Ok(frame) = receiver.recv().await {
                if sink.send(Message::text(frame)).await.is_err() {
                    return;
                }
            }
        })
}

/// A poke frame for each scope named in the body (`{"scopes": [...], "cursor": n}`), encoded
/// once per scope as the engine's hub encodes it.
async fn bare_poke(State(scopes): State<BareScopes>, body: String) -> &'static str {
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    for scope in body["scopes"].as_array().into_iter().flatten() {
        let scope = scope.as_str().unwrap_or(SCOPE);
        let frame =
            json!({"type": 11, "ref": 0, "payload": {"scope": scope, "cursor": body["cursor"]}});
        let _ = scopes.sender(scope).send(frame.to_string());
    }
    "ok"
}

/// A minimal HTTP/1.1 client for the trigger requests, on hyper.
mod reqwest_like {
    use std::net::SocketAddr;

    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper_util::client::legacy::Client as Hyper;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use serde_json::json;

    pub(crate) struct Client {
        addr: SocketAddr,
        hyper: Hyper<HttpConnector, Full<Bytes>>,
        scopes: Vec<String>,
    }

    impl Client {
        pub(crate) fn new(addr: SocketAddr, scopes: Vec<String>) -> Client {
            Client {
                addr,
                hyper: Hyper::builder(TokioExecutor::new()).build_http(),
                scopes,
            }
        }

        /// A push of one todo into each scope (engine) or a poke frame for each (bare).
        pub(crate) async fn trigger(&self, kind: &str, round: usize) {
            let (path, body) = if kind == "engine" {
                let mutations: Vec<_> = self.scopes.iter().map(|scope| json!({"name": "todo/create", "args": {"title": format!("round {round}")}, "scope": scope})).collect();
                ("/_sync/push", json!({ "mutations": mutations }).to_string())
            } else {
                (
                    "/poke",
                    json!({"scopes": self.scopes, "cursor": round}).to_string(),
                )
            };
            let request = hyper::Request::post(format!("http://{}{path}", self.addr))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let response = self.hyper.request(request).await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            let _ = response.into_body().collect().await;
        }
    }
}
