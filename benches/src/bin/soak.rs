//! A soak test on loopback: pushers, pullers and live clients against one engine together, for
//! a bounded time, on SQLite or PostgreSQL, with retention on. It reports throughput, errors
//! (which must be 0), and the process's resident memory at the start and the end, per million
//! mutations: memory must not grow with time beyond the retained log.
//!
//! ```sh
//! cargo run --release -p sync-bench --bin soak -- --store sqlite --seconds 180
//! cargo run --release -p sync-bench --bin soak -- --store postgres://postgres@127.0.0.1:5432/test
//! ```

// JSON is read with `value["key"]`, which answers `null` rather than panicking; scopes are
// picked modulo their non-zero count.
#![allow(clippy::indexing_slicing)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sync_runtime::{AnyBackend, Engine, PostgresBackend, SqliteBackend};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// Pushers, pullers and live clients together, for a while.
#[derive(Debug, Parser)]
struct Cli {
    /// `sqlite` (a file in a temporary folder) or a PostgreSQL URL (its tables are dropped and
    /// created again: give a database of its own).
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// How long to run.
    #[arg(long, default_value_t = 180)]
    seconds: u64,
    /// Connections pushing batches of 10 `todo/create`s.
    #[arg(long, default_value_t = 4)]
    pushers: usize,
    /// Connections pulling, each following one scope.
    #[arg(long, default_value_t = 4)]
    pullers: usize,
    /// Live connections, each joined to every scope.
    #[arg(long, default_value_t = 64)]
    live: usize,
    /// Scopes the pushes spread over.
    #[arg(long, default_value_t = 16)]
    scopes: usize,
    /// Changes the log keeps.
    #[arg(long, default_value_t = 100_000)]
    retain: u64,
}

#[derive(Default)]
struct Counters {
    mutations: AtomicU64,
    pushes: AtomicU64,
    pulls: AtomicU64,
    pulled_changes: AtomicU64,
    pokes: AtomicU64,
    errors: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cli = Cli::parse();
    cli.scopes = cli.scopes.max(1);
    let dir = tempfile_dir()?;
    let backend = match cli.store.as_str() {
        "sqlite" => AnyBackend::new(SqliteBackend::open(dir.join("soak.db"))?),
        url => {
            reset_postgres(url).await?;
            AnyBackend::new(PostgresBackend::connect(url).await?)
        }
    };
    let engine = Engine::builder(todo::TodoMutator)
        .backend(backend)
        .retain(cli.retain)
        .build();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let app = engine.router();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let counters = Arc::new(Counters::default());
    let deadline = Instant::now() + Duration::from_secs(cli.seconds);
    let scopes: Vec<String> = (0..cli.scopes).map(|k| format!("soak-{k}")).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..cli.live {
        tasks.spawn(live(
            addr,
            scopes.clone(),
            Arc::clone(&counters),
            deadline,
            n,
        ));
    }
    // Let the live clients join before the load starts, and measure memory with them open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_start = rss_kib();
    for n in 0..cli.pushers {
        tasks.spawn(pusher(
            addr,
            scopes.clone(),
            Arc::clone(&counters),
            deadline,
            n,
        ));
    }
    for n in 0..cli.pullers {
        let scope = scopes[n % scopes.len()].clone();
        tasks.spawn(puller(addr, scope, Arc::clone(&counters), deadline));
    }
    let started = Instant::now();
    let mut samples = vec![(0.0, rss_start)];
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(10).min(deadline - Instant::now())).await;
        let mutations = counters.mutations.load(Ordering::Relaxed) as f64;
        samples.push((mutations, rss_kib()));
        eprintln!(
            "{:>5.0} s: {} mutations, RSS {} KiB",
            started.elapsed().as_secs_f64(),
            mutations,
            rss_kib()
        );
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let c = &counters;
    let mutations = c.mutations.load(Ordering::Relaxed);
    let rss_end = rss_kib();
    // The growth once the log has had time to reach its retention: over the second half of
    // the samples, taken while the load ran.
    let half = samples.len() / 2;
    let (m0, r0) = samples.get(half).copied().unwrap_or((0.0, rss_start));
    let (m1, r1) = samples.last().copied().unwrap_or((0.0, rss_start));
    let growth = if m1 > m0 {
        (r1 as f64 - r0 as f64) / ((m1 - m0) / 1e6)
    } else {
        0.0
    };
    println!(
        "store {}: {:.0} s, {} mutations ({:.0}/s) in {} pushes, {} pulls ({} changes), {} pokes, \
         {} errors; RSS {} KiB at the start, {} KiB at the last sample ({} KiB after the load); \
         growth over the second half {:.0} KiB per million mutations",
        if cli.store == "sqlite" {
            "sqlite"
        } else {
            "postgres"
        },
        elapsed,
        mutations,
        mutations as f64 / elapsed,
        c.pushes.load(Ordering::Relaxed),
        c.pulls.load(Ordering::Relaxed),
        c.pulled_changes.load(Ordering::Relaxed),
        c.pokes.load(Ordering::Relaxed),
        c.errors.load(Ordering::Relaxed),
        rss_start,
        samples.last().map_or(rss_start, |(_, rss)| *rss),
        rss_end,
        growth,
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("sync-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn reset_postgres(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(
            "DROP TABLE IF EXISTS sync_schema, sync_entities, sync_changes, sync_horizons, \
             sync_clients, sync_head, sync_meta, sync_failures",
        )
        .await?;
    Ok(())
}

/// The resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// A keep-alive HTTP/1.1 connection to the server.
struct Http {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
}

impl Http {
    async fn connect(addr: SocketAddr) -> Option<Self> {
        let stream = TcpStream::connect(addr).await.ok()?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(connection);
        Some(Http { sender, addr })
    }

    /// POSTs `body` to `path`; the answer's JSON where it is a 200.
    async fn post(&mut self, path: &str, body: &Value) -> Option<Value> {
        let request = Request::post(format!("http://{}{path}", self.addr))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .ok()?;
        self.sender.ready().await.ok()?;
        let response = self.sender.send_request(request).await.ok()?;
        let status = response.status();
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        (status == StatusCode::OK)
            .then(|| serde_json::from_slice(&bytes).ok())
            .flatten()
    }
}

async fn pusher(
    addr: SocketAddr,
    scopes: Vec<String>,
    counters: Arc<Counters>,
    deadline: Instant,
    n: usize,
) {
    let Some(mut http) = Http::connect(addr).await else {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let client_id = format!("pusher-{n}");
    let mut seq = 0u64;
    while Instant::now() < deadline {
        let scope = &scopes[(seq as usize / 10) % scopes.len()];
        let mutations: Vec<Value> = (0..10)
            .map(|_| {
                seq += 1;
                json!({"name": "todo/create", "args": {"title": format!("todo {seq}")},
                       "client_id": client_id, "client_seq": seq, "scope": scope})
            })
            .collect();
        let answer = http
            .post("/_sync/push", &json!({ "mutations": mutations }))
            .await;
        let ok = answer
            .as_ref()
            .and_then(|a| a["results"].as_array())
            .is_some_and(|results| results.len() == 10 && results.iter().all(|r| r["ok"] == true));
        if ok {
            counters.pushes.fetch_add(1, Ordering::Relaxed);
            counters.mutations.fetch_add(10, Ordering::Relaxed);
        } else {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn puller(addr: SocketAddr, scope: String, counters: Arc<Counters>, deadline: Instant) {
    let Some(mut http) = Http::connect(addr).await else {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let (mut cursor, mut log_id) = (0u64, None::<String>);
    while Instant::now() < deadline {
        let request = json!({"scope": scope, "cursor": cursor, "limit": 500, "log_id": log_id});
        let Some(page) = http.post("/_sync/pull", &request).await else {
            // A cursor the retention trimmed: take a snapshot's cursor, as a client would.
            let snapshot = http
                .post("/_sync/snapshot", &json!({"scope": scope, "limit": 1}))
                .await;
            match snapshot.and_then(|s| s["cursor"].as_u64()) {
                Some(at) => cursor = at,
                None => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            continue;
        };
        counters.pulls.fetch_add(1, Ordering::Relaxed);
        let got = page["changes"].as_array().map_or(0, Vec::len) as u64;
        counters.pulled_changes.fetch_add(got, Ordering::Relaxed);
        cursor = page["cursor"].as_u64().unwrap_or(cursor);
        log_id = page["log_id"].as_str().map(str::to_owned);
        if page["has_more"] != true {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn live(
    addr: SocketAddr,
    scopes: Vec<String>,
    counters: Arc<Counters>,
    deadline: Instant,
    n: usize,
) {
    let url = format!("ws://{addr}/_sync/live");
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let join = json!({"type": 1, "ref": n, "payload": {"scopes": scopes}});
    if ws.send(Message::text(join.to_string())).await.is_err() {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut heartbeat = tokio::time::interval(Duration::from_secs(20));
    while Instant::now() < deadline {
        let until = tokio::time::sleep(deadline.saturating_duration_since(Instant::now()));
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                    match frame["type"].as_u64() {
                        Some(11) => { counters.pokes.fetch_add(1, Ordering::Relaxed); }
                        Some(8) => { counters.errors.fetch_add(1, Ordering::Relaxed); }
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
                _ => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            _ = heartbeat.tick() => {
                let beat = json!({"type": 4, "ref": 0, "payload": {}});
                let _ = ws.send(Message::text(beat.to_string())).await;
            }
            () = until => break,
        }
    }
    let _ = ws.close(None).await;
}
