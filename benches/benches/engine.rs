//! Criterion benchmarks of the engine in process (see BENCHMARKS.md):
//!
//! - `push`: [`Engine::push`] of `todo/create`s, 1 and 100 per call, against [`BareTodos`], a
//!   bare loop that decodes the same arguments and inserts the todos into a `HashMap`.
//! - `pull`: 100 changes from the middle of a scope's history, through [`ChangeLog::read`] and
//!   through [`Engine::pull`], from a log of 1,000 changes against a log of 1,000,000 changes
//!   spread over 1,000 scopes, pulling one scope again and again (the algorithm's cost) or going
//!   round the 1,000 scopes (what a busy server sees: the changes read are rarely in the cache).
//!
//! After the criterion benchmarks it prints the medians criterion measured and their ratios,
//! then measures each pair again in interleaved rounds (engine and baseline alternating, so that
//! a machine that slows down for a while slows both alike) and prints the median of each side
//! and of the per-round ratios.
//!
//! `CARGO_TARGET_DIR=/work/target-bench cargo bench -p sync-bench --bench engine`

// Benchmark code: a fixture that cannot be built should stop the run loudly, and JSON is read
// with `value["key"]`, which answers `null` rather than panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput};
use sync_bench::{BareTodos, Ids, fill_log, scope_name, todo_engine, todo_engine_on};
use sync_runtime::{ChangeLog, Engine, MemoryBackend, PullRequest};
use tokio::runtime::Runtime;

/// Changes pulled per request.
const PAGE: usize = 100;

/// Mutations applied to one engine (or one map) before the benchmark goes on with a fresh one,
/// so that the engine and the baseline work on stores of the same sizes whatever their speeds.
const MUTATIONS_PER_STATE: u64 = 10_000;

/// Interleaved rounds after the criterion benchmarks.
const ROUNDS: usize = 9;
/// Mutations each side of a push pair applies per round.
const ROUND_MUTATIONS: u64 = 30_000;
/// Pulls each side of a pull pair makes per round.
const ROUND_PULLS: u64 = 40_000;

fn main() {
    let started = SystemTime::now();
    // `cargo test --benches` runs each benchmark once with `--test`; `--list` only lists them.
    let quick = std::env::args().any(|arg| arg == "--test" || arg == "--list");
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let logs = Logs::new(&runtime);
    push(&mut criterion, &runtime);
    pull(&mut criterion, &runtime, &logs);
    criterion.final_summary();
    if !quick {
        report(started);
        rounds(&runtime, &logs);
    }
    let drop_start = Instant::now();
    drop(logs);
    eprintln!("dropped the logs in {:.1?}", drop_start.elapsed());
}

/// Pushes `calls` calls of `per_call` creates to the engine; the time they took.
///
/// The mutations are built before the clock starts; every [`MUTATIONS_PER_STATE`] mutations the
/// clock stops and the pushes go on to a fresh engine.
async fn time_engine_push(per_call: usize, calls: u64) -> Duration {
    let calls_per_state = (MUTATIONS_PER_STATE / per_call as u64).max(1);
    let mut elapsed = Duration::ZERO;
    let mut remaining = calls;
    while remaining > 0 {
        let batch = remaining.min(calls_per_state);
        remaining -= batch;
        let engine = todo_engine();
        let calls = Ids::new().create_calls(batch, per_call);
        let start = Instant::now();
        for call in calls {
            let response = engine.push(call).await.expect("push");
            debug_assert!(response.results.iter().all(|result| result.ok));
            black_box(response);
        }
        elapsed += start.elapsed();
    }
    elapsed
}

/// [`time_engine_push`] for the bare baseline.
fn time_bare_push(per_call: usize, calls: u64) -> Duration {
    let calls_per_state = (MUTATIONS_PER_STATE / per_call as u64).max(1);
    let mut elapsed = Duration::ZERO;
    let mut remaining = calls;
    while remaining > 0 {
        let batch = remaining.min(calls_per_state);
        remaining -= batch;
        let bare = BareTodos::new();
        let calls = Ids::new().create_calls(batch, per_call);
        let start = Instant::now();
        for call in calls {
            let results = bare.push(call);
            debug_assert!(results.iter().all(Result::is_ok));
            black_box(results);
        }
        elapsed += start.elapsed();
    }
    elapsed
}

/// `push/engine/{1,100}` and `push/bare/{1,100}`: time per call of `n` creates.
fn push(criterion: &mut Criterion, runtime: &Runtime) {
    let mut group = criterion.benchmark_group("push");
    for per_call in [1_usize, 100] {
        group.throughput(Throughput::Elements(per_call as u64));
        group.bench_with_input(
            BenchmarkId::new("engine", per_call),
            &per_call,
            |bencher, &per_call| {
                bencher
                    .to_async(runtime)
                    .iter_custom(|calls| time_engine_push(per_call, calls));
            },
        );
        group.bench_with_input(
            BenchmarkId::new("bare", per_call),
            &per_call,
            |bencher, &per_call| {
                bencher.iter_custom(|calls| time_bare_push(per_call, calls));
            },
        );
    }
    group.finish();
}

/// Logs to pull from, each behind an engine, with a cursor in the middle of each scope's history.
struct PullFixture {
    logs: Vec<(MemoryBackend, Engine)>,
    /// `(log, scope, cursor)`: pulling after `cursor` leaves at least [`PAGE`] changes of `scope`.
    starts: Vec<(usize, String, u64)>,
    /// Whether each pull goes on to the next start (else all pull from the first).
    rotate: bool,
    /// The next start, when rotating.
    turn: AtomicU64,
}

/// Where one pull reads.
struct Start<'a> {
    backend: &'a MemoryBackend,
    engine: &'a Engine,
    scope: &'a str,
    cursor: u64,
}

impl PullFixture {
    /// `logs` logs of `scopes` interleaved scopes of `per_scope` changes each.
    fn new(runtime: &Runtime, logs: usize, scopes: usize, per_scope: usize) -> Self {
        assert!(per_scope >= 2 * PAGE, "the middle must leave a full page");
        let mut fixture = PullFixture {
            logs: Vec::with_capacity(logs),
            starts: Vec::with_capacity(logs * scopes),
            rotate: false,
            turn: AtomicU64::new(0),
        };
        for index in 0..logs {
            let backend = MemoryBackend::new();
            runtime
                .block_on(fill_log(&backend, scopes, per_scope))
                .expect("fill the log");
            for k in 0..scopes {
                let scope = scope_name(k);
                let first_half = runtime
                    .block_on(backend.read(&scope, 0, per_scope / 2, None))
                    .expect("the first half of the scope");
                let middle = first_half.changes.last().map_or(0, |change| change.cursor);
                fixture.starts.push((index, scope, middle));
            }
            let engine = todo_engine_on(backend.clone());
            fixture.logs.push((backend, engine));
        }
        fixture
    }

    /// The same logs, pulled going round their starts.
    fn rotating(self) -> Self {
        PullFixture {
            rotate: true,
            ..self
        }
    }

    /// How many changes the fixture holds, over all its logs.
    fn changes(&self) -> usize {
        self.logs
            .iter()
            .map(|(backend, _)| backend.log().len())
            .sum()
    }

    /// Where the next `pulls` pulls start: this many turns are taken.
    fn take_turns(&self, pulls: u64) -> u64 {
        if self.rotate {
            self.turn.fetch_add(pulls, Ordering::Relaxed)
        } else {
            0
        }
    }

    /// The start of turn `turn`.
    fn start(&self, turn: u64) -> Start<'_> {
        let index = if self.rotate {
            (turn % self.starts.len() as u64) as usize
        } else {
            0
        };
        let (log, scope, cursor) = self.starts.get(index).expect("a fixture has scopes");
        let (backend, engine) = self.logs.get(*log).expect("the start's log");
        Start {
            backend,
            engine,
            scope,
            cursor: *cursor,
        }
    }
}

/// The pull fixtures, built once.
///
/// - `1k`: a log of 1,000 changes, all in the scope pulled, pulled again and again (a log that
///   small stays in the cache);
/// - `1m`: a log of 1,000,000 changes, 1,000 scopes of 1,000 changes interleaved, pulling one
///   scope again and again as `1k` does: the cost of the lookup alone;
/// - `1m_rotating`: a second such log, pulling from the next scope each time, as clients of
///   different scopes do: the changes read are rarely in the cache.
struct Logs {
    cases: Vec<(&'static str, PullFixture)>,
}

impl Logs {
    fn new(runtime: &Runtime) -> Self {
        let build = Instant::now();
        let cases = vec![
            ("1k", PullFixture::new(runtime, 1, 1, 1_000)),
            ("1m", PullFixture::new(runtime, 1, 1_000, 1_000)),
            (
                "1m_rotating",
                PullFixture::new(runtime, 1, 1_000, 1_000).rotating(),
            ),
        ];
        let changes: Vec<String> = cases
            .iter()
            .map(|(name, fixture)| format!("{name}: {}", fixture.changes()))
            .collect();
        eprintln!(
            "built the logs ({}) in {:.1?}",
            changes.join(", "),
            build.elapsed()
        );
        Logs { cases }
    }

    fn get(&self, name: &str) -> &PullFixture {
        self.cases
            .iter()
            .find_map(|(case, fixture)| (*case == name).then_some(fixture))
            .expect("a pull case")
    }
}

/// `pulls` pulls of [`PAGE`] changes through [`ChangeLog::read`]; the time they took.
async fn time_read(fixture: &PullFixture, pulls: u64) -> Duration {
    let first = fixture.take_turns(pulls);
    let start = Instant::now();
    for turn in first..first + pulls {
        let at = fixture.start(turn);
        let page = at
            .backend
            .read(at.scope, at.cursor, PAGE, None)
            .await
            .expect("read");
        debug_assert_eq!(page.changes.len(), PAGE);
        black_box(page);
    }
    start.elapsed()
}

/// `pulls` pulls of [`PAGE`] changes through [`Engine::pull`]; the time they took.
async fn time_engine_pull(fixture: &PullFixture, pulls: u64) -> Duration {
    let first = fixture.take_turns(pulls);
    let start = Instant::now();
    for turn in first..first + pulls {
        let at = fixture.start(turn);
        let request = PullRequest::new(at.scope, at.cursor).with_limit(PAGE as i64);
        let page = at.engine.pull(request).await.expect("pull");
        debug_assert_eq!(page.changes.len(), PAGE);
        black_box(page);
    }
    start.elapsed()
}

/// `pull/{changelog_read,engine_pull}/{1k,1m,1m_rotating}`: time per pull of 100
/// changes from the middle of a scope of 1,000 changes (see [`Logs`]).
fn pull(criterion: &mut Criterion, runtime: &Runtime, logs: &Logs) {
    let mut group = criterion.benchmark_group("pull");
    group.throughput(Throughput::Elements(PAGE as u64));
    for (name, fixture) in &logs.cases {
        group.bench_function(BenchmarkId::new("changelog_read", name), |bencher| {
            bencher
                .to_async(runtime)
                .iter_custom(|pulls| time_read(fixture, pulls));
        });
        group.bench_function(BenchmarkId::new("engine_pull", name), |bencher| {
            bencher
                .to_async(runtime)
                .iter_custom(|pulls| time_engine_pull(fixture, pulls));
        });
    }
    group.finish();
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Measures `a` and `b` (each answering ns per operation) in [`ROUNDS`] rounds, alternating which
/// goes first; prints the median of each and of the per-round ratios `a / b`.
fn paired(
    label: &str,
    names: (&str, &str),
    unit: &str,
    target: Option<f64>,
    mut a: impl FnMut() -> f64,
    mut b: impl FnMut() -> f64,
) {
    // One unrecorded pass each, to warm caches and allocators.
    black_box((a(), b()));
    let (mut a_ns, mut b_ns, mut ratios) = (vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let (x, y) = if round % 2 == 0 {
            let x = a();
            (x, b())
        } else {
            let y = b();
            (a(), y)
        };
        a_ns.push(x);
        b_ns.push(y);
        ratios.push(x / y);
    }
    let ratio = median(&ratios);
    let (low, high) = ratios
        .iter()
        .fold((f64::INFINITY, 0.0_f64), |(low, high), &r| {
            (low.min(r), high.max(r))
        });
    let verdict = match target {
        Some(limit) if ratio < limit => format!(", target < {limit}: met"),
        Some(limit) => format!(", target < {limit}: missed"),
        None => String::new(),
    };
    println!(
        "  {label:<42} {} {:>6.0} {unit}, {} {:>6.0} {unit}, ratio {ratio:.2} (rounds {low:.2}-{high:.2}{verdict})",
        names.0,
        median(&a_ns),
        names.1,
        median(&b_ns),
    );
}

/// Every pair measured again in interleaved rounds.
fn rounds(runtime: &Runtime, logs: &Logs) {
    println!(
        "
Interleaved rounds ({ROUNDS}, alternating which side goes first; medians):"
    );
    for per_call in [1_usize, 100] {
        let calls = ROUND_MUTATIONS / per_call as u64;
        let per_mutation = |elapsed: Duration| elapsed.as_nanos() as f64 / ROUND_MUTATIONS as f64;
        paired(
            &format!("push, {per_call} per call"),
            ("engine", "bare"),
            "ns/mutation",
            None,
            || per_mutation(runtime.block_on(time_engine_push(per_call, calls))),
            || per_mutation(time_bare_push(per_call, calls)),
        );
    }
    let per_pull = |elapsed: Duration| elapsed.as_nanos() as f64 / ROUND_PULLS as f64;
    for (small, large) in [("1k", "1m"), ("1k", "1m_rotating")] {
        let (small_log, large_log) = (logs.get(small), logs.get(large));
        paired(
            &format!("pull via ChangeLog::read, {large}/{small}"),
            (large, small),
            "ns",
            Some(1.5),
            || per_pull(runtime.block_on(time_read(large_log, ROUND_PULLS))),
            || per_pull(runtime.block_on(time_read(small_log, ROUND_PULLS))),
        );
        paired(
            &format!("pull via Engine::pull, {large}/{small}"),
            (large, small),
            "ns",
            Some(1.5),
            || per_pull(runtime.block_on(time_engine_pull(large_log, ROUND_PULLS))),
            || per_pull(runtime.block_on(time_engine_pull(small_log, ROUND_PULLS))),
        );
    }
}

/// Prints the medians this run measured, per mutation or per pull, and their ratios.
fn report(started: SystemTime) {
    let dir = criterion_dir();
    // The median time per iteration, in ns, where this run wrote it.
    let median = |id: &str| -> Option<f64> {
        let path = dir.join(id).join("new").join("estimates.json");
        let written = std::fs::metadata(&path).ok()?.modified().ok()?;
        if written < started {
            return None;
        }
        let estimates: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        estimates["median"]["point_estimate"].as_f64()
    };
    println!("\nCriterion's medians of this run ({}):", dir.display());
    for per_call in [1_u32, 100] {
        let engine = median(&format!("push/engine/{per_call}"));
        let bare = median(&format!("push/bare/{per_call}"));
        if let (Some(engine), Some(bare)) = (engine, bare) {
            let per = f64::from(per_call);
            println!(
                "  push, {per_call:>3} per call: engine {:>8.0} ns/mutation, bare {:>7.0} ns/mutation, engine/bare {:.2}",
                engine / per,
                bare / per,
                engine / bare
            );
        }
    }
    for path in ["changelog_read", "engine_pull"] {
        for (small_name, large_name) in [("1k", "1m"), ("1k", "1m_rotating")] {
            let small = median(&format!("pull/{path}/{small_name}"));
            let large = median(&format!("pull/{path}/{large_name}"));
            if let (Some(small), Some(large)) = (small, large) {
                let ratio = large / small;
                println!(
                    "  pull of {PAGE} via {path:<15}: {small_name:<11} {:>6.0} ns, {large_name:<11} {:>6.0} ns, ratio {ratio:.2} (target < 1.5: {})",
                    small,
                    large,
                    if ratio < 1.5 { "met" } else { "missed" }
                );
            }
        }
    }
}

/// Where criterion writes its estimates, found as criterion finds it.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    let metadata = std::env::var_os("CARGO").and_then(|cargo| {
        std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .ok()
    });
    metadata
        .and_then(|output| serde_json::from_slice::<serde_json::Value>(&output.stdout).ok())
        .and_then(|metadata| metadata["target_directory"].as_str().map(PathBuf::from))
        .map_or_else(
            || PathBuf::from("target/criterion"),
            |dir| dir.join("criterion"),
        )
}
