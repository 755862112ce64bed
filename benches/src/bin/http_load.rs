//! A loopback HTTP load driver: the todo example's sync routes against a bare axum handler doing
//! the same JSON work, in one process (see BENCHMARKS.md).
//!
//! It starts both servers on `127.0.0.1:0`, drives each with N concurrent keep-alive HTTP/1.1
//! connections for a few seconds (or a fixed number of requests), alternating the targets over
//! several rounds, and prints requests per second per target and round, the medians over the
//! rounds and the ratios engine/bare for push and pull.
//!
//! `cargo run --release -p sync-bench --bin http_load -- --help`

// Benchmark code: a server that cannot start should stop the run loudly, and the fixed-size
// tables of rates are indexed by the constants that made them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use chrono::{SecondsFormat, Utc};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sync_bench::{BareTodos, CREATE, Ids, create_args, create_mutation, todo_engine};
use sync_runtime::{Engine, Entity};
use todo::Todo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The scope pulled from, filled before the load starts.
const PULL_SCOPE: &str = "pull";

/// A safety bound on any one measurement, whatever the flags say.
const MAX_PHASE: Duration = Duration::from_secs(300);

/// Loopback HTTP load: the todo sync server against a bare axum handler.
#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    /// Seconds of load per target per round (ignored with --requests).
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Requests per target per round, instead of a duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Rounds; each runs every target once, alternating which goes first.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds of unrecorded load per target before the first round.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// `todo/create` mutations per push request.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Scopes the pushes go to: connection `i` pushes into scope `load-{i mod N}`. With 1 (the
    /// default) every push goes to the default scope, where the engine commits one push at a
    /// time by contract; with one per connection, as many users pushing to their own data.
    #[arg(long, default_value_t = 1)]
    scopes: usize,
    /// Changes in the pulled scope; pulls start from the middle of it.
    #[arg(long, default_value_t = 1000)]
    pull_log: usize,
    /// Changes per pull request.
    #[arg(long, default_value_t = 100)]
    pull_limit: usize,
    /// Send `Accept-Encoding: gzip`, as browsers do: the engine's routes then compress their
    /// answers, the bare handler does not.
    #[arg(long)]
    gzip: bool,
    /// Load only pushes or only pulls (e.g. to profile one of them); both by default.
    #[arg(long, value_enum)]
    only: Option<Op>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Op {
    Push,
    Pull,
}

impl Op {
    /// The operations the run loads.
    fn selected(only: Option<Op>) -> impl Iterator<Item = (usize, Op)> {
        [Op::Push, Op::Pull]
            .into_iter()
            .enumerate()
            .filter(move |(_, op)| only.is_none_or(|only| only == *op))
    }

    fn name(self) -> &'static str {
        match self {
            Op::Push => "push",
            Op::Pull => "pull",
        }
    }
}

/// One server under load.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    /// Pulling after this cursor returns `pull_limit` changes.
    pull_cursor: u64,
    /// Unique ids for this server's creates.
    ids: Ids,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// What one measurement counted.
#[derive(Clone, Copy, Debug, Default)]
struct Outcome {
    ok: u64,
    errors: u64,
    elapsed: Duration,
}

impl Outcome {
    fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    if cli.connections == 0 || cli.rounds == 0 || cli.batch == 0 || cli.pull_limit == 0 {
        return Err("--connections, --rounds, --batch and --pull-limit must be positive".into());
    }
    if cli.pull_log < 2 * cli.pull_limit {
        return Err("--pull-log must hold at least two pages (2 × --pull-limit)".into());
    }
    let mut targets = [
        start_engine(cli.pull_log).await?,
        start_bare(cli.pull_log).await?,
    ];
    let half = cli.pull_log / 2;
    for target in &targets {
        check(target, &cli).await?;
        println!(
            "{:<6} listening on http://{} (pulls of {} after cursor {} of scope `{PULL_SCOPE}`)",
            target.name, target.addr, cli.pull_limit, target.pull_cursor
        );
    }
    println!(
        "load: {} connections, {}, {} round(s), {} mutation(s) per push, pulls of {} changes from the middle ({half}) of {}{}",
        cli.connections,
        match cli.requests {
            Some(n) => format!("{n} requests per target per round"),
            None => format!("{} s per target per round", cli.duration),
        },
        cli.rounds,
        cli.batch,
        cli.pull_limit,
        cli.pull_log,
        if cli.gzip {
            ", Accept-Encoding: gzip"
        } else {
            ""
        }
    );

    let warmup = Duration::from_secs_f64(cli.warmup.max(0.0));
    if !warmup.is_zero() {
        for (_, op) in Op::selected(cli.only) {
            for target in &targets {
                drive(target, op, &cli, Some(warmup)).await;
            }
        }
    }

    // rates[op][target][round], ratios[op][round]
    let mut rates = [[vec![], vec![]], [vec![], vec![]]];
    let mut ratios = [vec![], vec![]];
    let mut errors = 0;
    for round in 0..cli.rounds {
        let mut line = format!("round {}:", round + 1);
        for (o, op) in Op::selected(cli.only) {
            // Alternate which target goes first, so that drift hits both alike.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            let mut round_rates = [0.0; 2];
            for t in order {
                let outcome = drive(&targets[t], op, &cli, None).await;
                errors += outcome.errors;
                round_rates[t] = outcome.per_second();
                rates[o][t].push(outcome.per_second());
            }
            ratios[o].push(round_rates[0] / round_rates[1]);
            line.push_str(&format!(
                "  {} {} {:>6.0} req/s, {} {:>6.0} req/s ({:.2});",
                op.name(),
                targets[0].name,
                round_rates[0],
                targets[1].name,
                round_rates[1],
                round_rates[0] / round_rates[1]
            ));
        }
        println!("{}", line.trim_end_matches(';'));
    }

    println!(
        "\nmedians over {} round(s), {} connections (ratio: the median of the rounds' ratios, each \
         of two measurements next to each other in time; then their range):",
        cli.rounds, cli.connections
    );
    for (o, op) in Op::selected(cli.only) {
        let engine = median(&rates[o][0]);
        let bare = median(&rates[o][1]);
        let ratio = median(&ratios[o]);
        let low = ratios[o].iter().copied().fold(f64::INFINITY, f64::min);
        let high = ratios[o].iter().copied().fold(0.0, f64::max);
        let target = match op {
            Op::Push => format!(
                "target >= 0.85: {}",
                if ratio >= 0.85 { "met" } else { "missed" }
            ),
            Op::Pull => format!(
                "target >= 0.9: {}",
                if ratio >= 0.9 { "met" } else { "missed" }
            ),
        };
        let per = match op {
            Op::Push if cli.batch > 1 => format!(
                " ({:.0} and {:.0} mutations/s)",
                engine * cli.batch as f64,
                bare * cli.batch as f64
            ),
            _ => String::new(),
        };
        println!(
            "  {}: engine {engine:>6.0} req/s, bare {bare:>6.0} req/s{per}, engine/bare {ratio:.2} \
             (rounds {low:.2}-{high:.2}; {target})",
            op.name()
        );
    }
    if errors > 0 {
        println!("WARNING: {errors} request(s) failed; the figures above are not comparable");
    }

    for target in &mut targets {
        if let Some(shutdown) = target.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
    for target in targets {
        target.server.await??;
    }
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match (sorted.len() % 2, sorted.get(mid), mid.checked_sub(1)) {
        (1, Some(&value), _) => value,
        (_, Some(&upper), Some(lower)) => {
            (upper + sorted.get(lower).copied().unwrap_or(upper)) / 2.0
        }
        _ => f64::NAN,
    }
}

/// Serves `app` on a fresh loopback port until the returned sender fires.
async fn serve(name: &'static str, app: Router, pull_cursor: u64) -> std::io::Result<Target> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.await;
            })
            .await
    });
    Ok(Target {
        name,
        addr,
        pull_cursor,
        ids: Ids::new(),
        shutdown: Some(shutdown),
        server,
    })
}

/// The todo example app on a fresh engine, with `pull_log` todos created in the pulled scope.
async fn start_engine(pull_log: usize) -> Result<Target, Box<dyn std::error::Error>> {
    let engine: Engine = todo_engine();
    let mut cursors = Vec::with_capacity(pull_log);
    let ids: Vec<String> = (0..pull_log).map(pull_id).collect();
    for chunk in ids.chunks(engine.limits().max_mutations) {
        let mutations = chunk
            .iter()
            .map(|id| create_mutation(id, Some(PULL_SCOPE)))
            .collect();
        let pushed = engine.push(mutations).await?;
        for result in pushed.results {
            if !result.ok {
                return Err(format!("could not fill the engine: {:?}", result.error).into());
            }
            cursors.push(result.cursor);
        }
    }
    let pull_cursor = cursors.get(pull_log / 2 - 1).copied().unwrap_or_default();
    Ok(serve("engine", todo::app(&engine), pull_cursor).await?)
}

fn pull_id(n: usize) -> String {
    format!("p{n:08}")
}

// The bare baseline: the same request and response shapes, decoded and encoded by serde, with the
// todos in a `HashMap` and the pulled changes in a `Vec`.

#[derive(Deserialize)]
struct BarePushRequest {
    mutations: Vec<BareMutation>,
}

#[derive(Deserialize)]
#[allow(dead_code)] // decoded as the engine decodes them, read or not
struct BareMutation {
    name: String,
    #[serde(default)]
    args: Value,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_seq: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Clone, Serialize)]
struct BareChange {
    cursor: u64,
    scope: String,
    entity: &'static str,
    id: String,
    op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
    ts: String,
}

#[derive(Serialize)]
struct BareResult {
    ok: bool,
    cursor: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    changes: Vec<BareChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
}

#[derive(Serialize)]
struct BarePushResponse {
    results: Vec<BareResult>,
    cursor: u64,
}

#[derive(Deserialize)]
struct BarePullRequest {
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    cursor: u64,
    #[serde(default)]
    limit: i64,
}

#[derive(Serialize)]
struct BarePullResponse<'a> {
    changes: &'a [BareChange],
    cursor: u64,
    has_more: bool,
}

struct BareState {
    todos: BareTodos,
    /// The pulled scope's changes, ascending.
    pulled: Vec<BareChange>,
}

impl BareState {
    fn apply(&self, mutation: BareMutation, ts: &str) -> BareResult {
        let created = if mutation.name == CREATE {
            self.todos.create(&mutation.args)
        } else {
            Err(format!("unknown mutation `{}`", mutation.name))
        };
        match created {
            Ok(created) => BareResult {
                ok: true,
                cursor: created.cursor,
                error: None,
                code: None,
                changes: vec![BareChange {
                    cursor: created.cursor,
                    scope: mutation.scope.unwrap_or_else(|| "_default".to_owned()),
                    entity: Todo::NAME,
                    id: created.data["id"].as_str().unwrap_or_default().to_owned(),
                    op: "create",
                    data: Some(created.data.clone()),
                    ts: ts.to_owned(),
                }],
                value: Some(created.data),
            },
            Err(error) => BareResult {
                ok: false,
                cursor: 0,
                error: Some(error),
                code: Some("rejected"),
                changes: Vec::new(),
                value: None,
            },
        }
    }
}

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn bare_push(
    State(state): State<Arc<BareState>>,
    Json(request): Json<BarePushRequest>,
) -> Json<BarePushResponse> {
    let ts = now_rfc3339();
    let results: Vec<BareResult> = request
        .mutations
        .into_iter()
        .map(|mutation| state.apply(mutation, &ts))
        .collect();
    let cursor = results
        .iter()
        .map(|result| result.cursor)
        .max()
        .unwrap_or(0);
    Json(BarePushResponse { results, cursor })
}

async fn bare_pull(
    State(state): State<Arc<BareState>>,
    Json(request): Json<BarePullRequest>,
) -> Response {
    let changes: &[BareChange] = if request.scope.as_deref() == Some(PULL_SCOPE) {
        &state.pulled
    } else {
        &[]
    };
    let limit = match usize::try_from(request.limit) {
        Ok(0) | Err(_) => 100,
        Ok(limit) => limit.min(1000),
    };
    let start = changes.partition_point(|change| change.cursor <= request.cursor);
    let rest = changes.get(start..).unwrap_or_default();
    let page = rest.get(..limit.min(rest.len())).unwrap_or_default();
    let head = changes.last().map_or(0, |change| change.cursor);
    Json(BarePullResponse {
        changes: page,
        cursor: page.last().map_or(head, |change| change.cursor),
        has_more: page.len() < rest.len(),
    })
    .into_response()
}

/// The bare server, with `pull_log` todos created in the pulled scope.
async fn start_bare(pull_log: usize) -> Result<Target, Box<dyn std::error::Error>> {
    let mut state = BareState {
        todos: BareTodos::new(),
        pulled: Vec::with_capacity(pull_log),
    };
    let ts = now_rfc3339();
    for n in 0..pull_log {
        let mutation = create_mutation(&pull_id(n), Some(PULL_SCOPE));
        let result = state.apply(
            BareMutation {
                name: mutation.name,
                args: mutation.args,
                client_id: None,
                client_seq: None,
                scope: mutation.scope,
            },
            &ts,
        );
        if !result.ok {
            return Err(format!("could not fill the baseline: {:?}", result.error).into());
        }
        state.pulled.extend(result.changes);
    }
    let pull_cursor = state
        .pulled
        .get(pull_log / 2 - 1)
        .map_or(0, |change| change.cursor);
    let app = Router::new()
        .route("/_sync/push", post(bare_push))
        .route("/_sync/pull", post(bare_pull))
        .with_state(Arc::new(state));
    Ok(serve("bare", app, pull_cursor).await?)
}

// The client side.

/// Makes the bodies of one connection's requests.
enum Bodies {
    /// The same pull every time.
    Pull(Bytes),
    /// Pushes of `batch` creates with ids unique to the connection, in `scope` (the default
    /// scope where `None`).
    Push {
        batch: usize,
        prefix: String,
        ids: Ids,
        scope: Option<String>,
    },
}

impl Bodies {
    /// The bodies of connection number `connection`.
    fn new(target: &Target, op: Op, cli: &Cli, connection: usize) -> Self {
        match op {
            Op::Pull => {
                let pull = json!({
                    "scope": PULL_SCOPE,
                    "cursor": target.pull_cursor,
                    "limit": cli.pull_limit,
                });
                Bodies::Pull(Bytes::from(pull.to_string()))
            }
            Op::Push => Bodies::Push {
                batch: cli.batch,
                prefix: format!("h{}-", target.ids.next("")),
                ids: Ids::new(),
                scope: (cli.scopes > 1).then(|| format!("load-{}", connection % cli.scopes)),
            },
        }
    }

    fn next(&self) -> Bytes {
        match self {
            Bodies::Pull(body) => body.clone(),
            Bodies::Push {
                batch,
                prefix,
                ids,
                scope,
            } => {
                let mutations: Vec<Value> = (0..*batch)
                    .map(|_| {
                        let args = create_args(&ids.next(prefix));
                        match scope {
                            Some(scope) => json!({"name": CREATE, "scope": scope, "args": args}),
                            None => json!({"name": CREATE, "args": args}),
                        }
                    })
                    .collect();
                Bytes::from(json!({ "mutations": mutations }).to_string())
            }
        }
    }
}

fn request(addr: SocketAddr, op: Op, gzip: bool, body: Bytes) -> Request<Full<Bytes>> {
    let mut request = Request::post(format!("/_sync/{}", op.name()))
        .header(header::HOST, addr.to_string())
        .header(header::CONTENT_TYPE, "application/json");
    if gzip {
        request = request.header(header::ACCEPT_ENCODING, "gzip");
    }
    request.body(Full::new(body)).expect("a valid request")
}

/// One request on a fresh connection, checking that the answer is what the load expects.
async fn check(target: &Target, cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    for op in [Op::Push, Op::Pull] {
        let stream = TcpStream::connect(target.addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(connection);
        let response = sender
            .send_request(request(
                target.addr,
                op,
                false,
                Bodies::new(target, op, cli, 0).next(),
            ))
            .await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        drop(sender);
        driver.await??;
        let answer: Value = serde_json::from_slice(&bytes)?;
        let fits = match op {
            Op::Push => answer["results"].as_array().is_some_and(|results| {
                results.len() == cli.batch && results.iter().all(|r| r["ok"] == true)
            }),
            Op::Pull => answer["changes"]
                .as_array()
                .is_some_and(|changes| changes.len() == cli.pull_limit),
        };
        if status != StatusCode::OK || !fits {
            return Err(format!(
                "{} {} answered {status}: {}",
                target.name,
                op.name(),
                String::from_utf8_lossy(&bytes)
            )
            .into());
        }
    }
    Ok(())
}

/// Drives `target` with `cli.connections` connections for `duration` (or the flags' duration or
/// request count); counts the successful requests.
async fn drive(target: &Target, op: Op, cli: &Cli, duration: Option<Duration>) -> Outcome {
    let connections = cli.connections as u64;
    let (deadline, total) = match (duration, cli.requests) {
        (Some(duration), _) => (duration, u64::MAX),
        (None, Some(requests)) => (MAX_PHASE, requests),
        (None, None) => (
            Duration::from_secs_f64(cli.duration.max(0.0)).min(MAX_PHASE),
            u64::MAX,
        ),
    };
    let start = Instant::now();
    let deadline = start + deadline;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let bodies = Bodies::new(target, op, cli, c as usize);
        let quota = if total == u64::MAX {
            u64::MAX
        } else {
            total / connections + u64::from(c < total % connections)
        };
        tasks.spawn(connection(
            target.addr,
            op,
            cli.gzip,
            bodies,
            quota,
            deadline,
        ));
    }
    let mut outcome = Outcome::default();
    while let Some(joined) = tasks.join_next().await {
        let (ok, errors) = joined.unwrap_or((0, 1));
        outcome.ok += ok;
        outcome.errors += errors;
    }
    outcome.elapsed = start.elapsed();
    outcome
}

/// One keep-alive connection sending requests one after another until `quota` or `deadline`;
/// answers `(ok, errors)`. A transport error ends the connection.
async fn connection(
    addr: SocketAddr,
    op: Op,
    gzip: bool,
    bodies: Bodies,
    quota: u64,
    deadline: Instant,
) -> (u64, u64) {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return (0, 1);
    };
    let _ = stream.set_nodelay(true);
    let Ok((mut sender, connection)) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return (0, 1);
    };
    let driver = tokio::spawn(connection);
    let (mut ok, mut errors) = (0, 0);
    while ok + errors < quota && Instant::now() < deadline {
        let request = request(addr, op, gzip, bodies.next());
        if sender.ready().await.is_err() {
            errors += 1;
            break;
        }
        let Ok(response) = sender.send_request(request).await else {
            errors += 1;
            break;
        };
        let status = response.status();
        match response.into_body().collect().await {
            Ok(_) if status == StatusCode::OK => ok += 1,
            Ok(_) => errors += 1,
            Err(_) => {
                errors += 1;
                break;
            }
        }
    }
    drop(sender);
    let _ = driver.await;
    (ok, errors)
}
