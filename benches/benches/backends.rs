//! Durable backends against their bare baselines, measured in the same run:
//!
//! 1. SQLite: `Engine::push` vs raw rusqlite inserts of the same rows (entity, change, client
//!    sequence number) in transactions of the same size, with the same pragmas.
//! 2. PostgreSQL: `Engine::push` vs raw INSERT transactions of the same rows through the same
//!    client library (tokio-postgres), on the same server.
//! 3. Throughput with 1, 4 and 16 concurrent pushers on memory, SQLite and PostgreSQL.
//! 4. PostgreSQL with 1, 4 and 16 pushers in scopes of their own, on one node and on two,
//!    against raw INSERT transactions at the same concurrency, with the WAL flush on.
//!
//! `cargo bench -p sync-bench --bench backends` (PostgreSQL parts need `SYNC_TEST_POSTGRES_URL`,
//! e.g. `postgres://postgres@127.0.0.1:5432/postgres`; they run in a schema of their own, dropped
//! afterwards). Each figure is the median of several rounds; baseline and engine rounds
//! alternate, so that drift in the machine's speed hits both.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // bench code

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sync_bench::Put;
use sync_runtime::{
    Backend, Engine, MemoryBackend, Mutation, PostgresBackend, PostgresOptions, SqliteBackend,
    SqliteOptions,
};

/// Rounds per figure; the median is reported.
const ROUNDS: usize = 7;
/// Mutations per measured round of the baseline comparisons.
const MUTATIONS_PER_ROUND: usize = 2000;

fn data(id: &str) -> serde_json::Value {
    json!({"id": id, "title": format!("todo {id}"), "completed": false})
}

/// A push of `batch` mutations by `client`, from `seq`.
fn batch(client: &str, seq: &mut u64, batch: usize) -> Vec<Mutation> {
    (0..batch)
        .map(|_| {
            *seq += 1;
            let id = format!("{client}-{seq}");
            Mutation::new("put", data(&id)).with_client(client, *seq)
        })
        .collect()
}

/// Both sides skip the fsync per commit (`synchronous = NORMAL`): the comparison is of what the
/// engine costs on top of the same writes, not of a shared disk's fsync latency.
fn fast() -> SqliteOptions {
    let mut options = SqliteOptions::default();
    options.durable = false;
    options
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Mutations per second of one round of pushes of `size` through the engine.
async fn engine_round(engine: &Engine, client: &str, seq: &mut u64, size: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..MUTATIONS_PER_ROUND / size {
        engine.push(batch(client, seq, size)).await.unwrap();
    }
    MUTATIONS_PER_ROUND as f64 / start.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------- SQLite

fn sqlite_baseline_open(path: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE entities (scope TEXT NOT NULL, entity TEXT NOT NULL, id TEXT NOT NULL,
             data TEXT NOT NULL, PRIMARY KEY (scope, entity, id)) WITHOUT ROWID;
         CREATE TABLE changes (cursor INTEGER PRIMARY KEY, scope TEXT NOT NULL, entity TEXT NOT NULL,
             id TEXT NOT NULL, op TEXT NOT NULL, data TEXT, ts INTEGER NOT NULL);
         CREATE INDEX changes_scope ON changes (scope, cursor);
         CREATE TABLE clients (client_id TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;",
    )
    .unwrap();
    conn
}

/// The same rows, raw: per mutation an entity upsert and a change insert, per transaction one
/// client upsert; in `block_in_place`, as the backend runs SQLite.
async fn sqlite_baseline_round(
    conn: &Arc<parking_lot::Mutex<rusqlite::Connection>>,
    seq: &mut u64,
    size: usize,
) -> f64 {
    let start = Instant::now();
    for _ in 0..MUTATIONS_PER_ROUND / size {
        let first = *seq;
        *seq += size as u64;
        let conn = Arc::clone(conn);
        tokio::task::block_in_place(move || {
            let mut conn = conn.lock();
            let tx = conn.transaction().unwrap();
            {
                let mut entity = tx
                    .prepare_cached(
                        "INSERT INTO entities (scope, entity, id, data) VALUES ('_default', 'item', ?1, ?2)
                         ON CONFLICT DO UPDATE SET data = excluded.data",
                    )
                    .unwrap();
                let mut change = tx
                    .prepare_cached(
                        "INSERT INTO changes (cursor, scope, entity, id, op, data, ts)
                         VALUES (?1, '_default', 'item', ?2, 'create', ?3, ?4)",
                    )
                    .unwrap();
                for seq in first + 1..=first + size as u64 {
                    let id = format!("raw-{seq}");
                    let text = serde_json::to_string(&data(&id)).unwrap();
                    entity.execute(rusqlite::params![id, text]).unwrap();
                    change
                        .execute(rusqlite::params![seq as i64, id, text, 0i64])
                        .unwrap();
                }
                tx.execute(
                    "INSERT INTO clients VALUES ('raw', ?1) ON CONFLICT DO UPDATE SET seq = excluded.seq",
                    [(first + size as u64) as i64],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        });
    }
    MUTATIONS_PER_ROUND as f64 / start.elapsed().as_secs_f64()
}

async fn sqlite_vs_raw(dir: &std::path::Path) {
    println!("\n## SQLite push vs raw rusqlite (WAL, synchronous = NORMAL)\n");
    println!(
        "| mutations per transaction | raw rusqlite (mutations/s) | engine push (mutations/s) | ratio |"
    );
    println!("| ---: | ---: | ---: | ---: |");
    for size in [1, 10, 100] {
        let raw = Arc::new(parking_lot::Mutex::new(sqlite_baseline_open(
            &dir.join(format!("raw-{size}.db")),
        )));
        let engine = Engine::builder(Put)
            .backend(
                SqliteBackend::open_with(dir.join(format!("engine-{size}.db")), fast()).unwrap(),
            )
            .build();
        let (mut raw_seq, mut seq) = (0, 0);
        let (mut raws, mut engines) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            raws.push(sqlite_baseline_round(&raw, &mut raw_seq, size).await);
            engines.push(engine_round(&engine, "bench", &mut seq, size).await);
        }
        let (raw, engine) = (median(raws), median(engines));
        println!("| {size} | {raw:.0} | {engine:.0} | {:.2} |", engine / raw);
    }
}

// ---------------------------------------------------------------- PostgreSQL

async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// The same rows, raw, through tokio-postgres: BEGIN, per mutation an entity upsert and a
/// change insert (prepared), one client upsert, COMMIT.
async fn pg_baseline_round(client: &tokio_postgres::Client, seq: &mut u64, size: usize) -> f64 {
    let entity = client
        .prepare(
            "INSERT INTO raw_entities (scope, entity, id, data) VALUES ('_default', 'item', $1, $2)
             ON CONFLICT (scope, entity, id) DO UPDATE SET data = EXCLUDED.data",
        )
        .await
        .unwrap();
    let change = client
        .prepare(
            "INSERT INTO raw_changes (cursor, scope, entity, id, op, data, ts)
             VALUES ($1, '_default', 'item', $2, 'create', $3, 0)",
        )
        .await
        .unwrap();
    let start = Instant::now();
    for _ in 0..MUTATIONS_PER_ROUND / size {
        client.batch_execute("BEGIN").await.unwrap();
        for _ in 0..size {
            *seq += 1;
            let id = format!("raw-{seq}");
            let text = serde_json::to_string(&data(&id)).unwrap();
            client.execute(&entity, &[&id, &text]).await.unwrap();
            client
                .execute(&change, &[&(*seq as i64), &id, &text])
                .await
                .unwrap();
        }
        client
            .execute(
                "INSERT INTO raw_clients VALUES ('raw', $1)
                 ON CONFLICT (client_id) DO UPDATE SET seq = EXCLUDED.seq",
                &[&(*seq as i64)],
            )
            .await
            .unwrap();
        client.batch_execute("COMMIT").await.unwrap();
    }
    MUTATIONS_PER_ROUND as f64 / start.elapsed().as_secs_f64()
}

async fn postgres_vs_raw(url: &str) {
    println!(
        "\n## PostgreSQL push vs raw INSERT transactions (tokio-postgres, synchronous_commit = off)\n"
    );
    println!(
        "| mutations per transaction | raw INSERTs (mutations/s) | engine push (mutations/s) | ratio |"
    );
    println!("| ---: | ---: | ---: | ---: |");
    let raw = pg_client(url).await;
    raw.batch_execute(
        r#"CREATE TABLE raw_entities (scope TEXT COLLATE "C" NOT NULL, entity TEXT COLLATE "C" NOT NULL,
               id TEXT COLLATE "C" NOT NULL, data TEXT NOT NULL, PRIMARY KEY (scope, entity, id));
           CREATE TABLE raw_changes (cursor BIGINT PRIMARY KEY, scope TEXT COLLATE "C" NOT NULL,
               entity TEXT NOT NULL, id TEXT NOT NULL, op TEXT NOT NULL, data TEXT, ts BIGINT NOT NULL);
           CREATE INDEX raw_changes_scope ON raw_changes (scope, cursor);
           CREATE TABLE raw_clients (client_id TEXT COLLATE "C" PRIMARY KEY, seq BIGINT NOT NULL);"#,
    )
    .await
    .unwrap();
    let engine = Engine::builder(Put)
        .backend(PostgresBackend::connect(url).await.unwrap())
        .build();
    let (mut raw_seq, mut seq) = (0, 0);
    for size in [1, 10, 100] {
        let (mut raws, mut engines) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            raws.push(pg_baseline_round(&raw, &mut raw_seq, size).await);
            engines.push(engine_round(&engine, "bench", &mut seq, size).await);
        }
        let (raw, engine) = (median(raws), median(engines));
        println!("| {size} | {raw:.0} | {engine:.0} | {:.2} |", engine / raw);
    }
}

// ---------------------------------------------------------------- concurrency

/// Whether concurrent pushers share one scope or each push into a scope of its own.
#[derive(Clone, Copy, PartialEq)]
enum Scopes {
    Shared,
    OwnEach,
}

/// Mutations per second with `pushers` tasks pushing batches of 10 for `duration`, each as a
/// client of its own.
async fn concurrent_round(
    engine: &Engine,
    pushers: usize,
    round: usize,
    duration: Duration,
    scopes: Scopes,
) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..pushers)
        .map(|p| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let client = format!("r{round}-p{p}");
                let mut seq = 0;
                let mut pushed = 0;
                while start.elapsed() < duration {
                    let mut mutations = batch(&client, &mut seq, 10);
                    if scopes == Scopes::OwnEach {
                        mutations = mutations
                            .into_iter()
                            .map(|m| m.with_scope(client.clone()))
                            .collect();
                    }
                    engine.push(mutations).await.unwrap();
                    pushed += 10;
                }
                pushed
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

async fn concurrency(name: &str, backend: impl Backend, scopes: Scopes) {
    let engine = Engine::builder(Put).backend(backend).build();
    let duration = Duration::from_millis(700);
    // Round by round in turn, so that each count of pushers meets a store and a log of about
    // the same size: run one after the other, the later counts pushed into millions more.
    let counts = [1, 4, 16];
    let mut rounds: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
    for round in 0..ROUNDS {
        for (figures, pushers) in rounds.iter_mut().zip(counts) {
            let round = round * 100 + pushers;
            figures.push(concurrent_round(&engine, pushers, round, duration, scopes).await);
        }
    }
    let medians: Vec<f64> = rounds.into_iter().map(median).collect();
    let one = medians[0];
    let name = match scopes {
        Scopes::Shared => format!("{name}, one scope"),
        Scopes::OwnEach => format!("{name}, a scope each"),
    };
    println!(
        "| {name} | {:.0} | {:.0} ({:.2}×) | {:.0} ({:.2}×) |",
        medians[0],
        medians[1],
        medians[1] / one,
        medians[2],
        medians[2] / one
    );
}

// ---------------------------------------------------------------- PostgreSQL scaling

/// Rounds per figure of the PostgreSQL scaling comparison (a second each).
const SCALING_ROUNDS: usize = 5;

/// Pushes per second with `pushers` tasks spread over `nodes`, each pushing one mutation at a
/// time in a scope and as a client of its own, for `duration`.
async fn pg_push_round(nodes: &[Engine], pushers: usize, round: usize, duration: Duration) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..pushers)
        .map(|p| {
            let engine = nodes[p % nodes.len()].clone();
            tokio::spawn(async move {
                let client = format!("s{round}-p{p}");
                let mut seq = 0;
                let mut pushed = 0;
                while start.elapsed() < duration {
                    seq += 1;
                    let id = format!("{client}-{seq}");
                    let push = Mutation::new("put", data(&id))
                        .with_client(&client, seq)
                        .with_scope(&client);
                    engine.push(vec![push]).await.unwrap();
                    pushed += 1;
                }
                pushed
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// The bare baseline: transactions per second of `connections` connections each running plain
/// INSERT transactions of the same rows as a push of one mutation (an entity upsert, a change
/// insert, a client upsert, `COMMIT`), for `duration`.
async fn pg_raw_round(
    connections: &[Arc<tokio_postgres::Client>],
    round: usize,
    duration: Duration,
) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = connections
        .iter()
        .enumerate()
        .map(|(p, client)| {
            let client = Arc::clone(client);
            tokio::spawn(async move {
                let entity = client
                    .prepare(
                        "INSERT INTO raw_entities (scope, entity, id, data) VALUES ($1, 'item', $2, $3)
                         ON CONFLICT (scope, entity, id) DO UPDATE SET data = EXCLUDED.data",
                    )
                    .await
                    .unwrap();
                let change = client
                    .prepare(
                        "INSERT INTO raw_changes (cursor, scope, entity, id, op, data, ts)
                         VALUES (nextval('raw_cursor'), $1, 'item', $2, 'create', $3, 0)",
                    )
                    .await
                    .unwrap();
                let seen = client
                    .prepare(
                        "INSERT INTO raw_clients VALUES ($1, $2)
                         ON CONFLICT (client_id) DO UPDATE SET seq = EXCLUDED.seq",
                    )
                    .await
                    .unwrap();
                let scope = format!("raw{round}-p{p}");
                let (mut seq, mut done) = (0i64, 0);
                while start.elapsed() < duration {
                    seq += 1;
                    let id = format!("{scope}-{seq}");
                    let text = serde_json::to_string(&data(&id)).unwrap();
                    client.batch_execute("BEGIN").await.unwrap();
                    client.execute(&entity, &[&scope, &id, &text]).await.unwrap();
                    client.execute(&change, &[&scope, &id, &text]).await.unwrap();
                    client.execute(&seen, &[&scope, &seq]).await.unwrap();
                    client.batch_execute("COMMIT").await.unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// PostgreSQL with 1, 4 and 16 pushers over distinct scopes and clients, on one node and on two
/// (two backends, each with a pool of its own, on one database), against raw INSERT
/// transactions at the same concurrency; the server's default `synchronous_commit = on`, so
/// that each commit waits for its WAL flush, which concurrent commits share.
async fn pg_scaling(base: &str, schema: &str) {
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-csearch_path%3D{schema}_scaling");
    pg_client(base)
        .await
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema}_scaling CASCADE; CREATE SCHEMA {schema}_scaling"
        ))
        .await
        .unwrap();
    let setup = pg_client(&url).await;
    setup
        .batch_execute(
            r#"CREATE TABLE raw_entities (scope TEXT COLLATE "C" NOT NULL, entity TEXT COLLATE "C" NOT NULL,
                   id TEXT COLLATE "C" NOT NULL, data TEXT NOT NULL, PRIMARY KEY (scope, entity, id));
               CREATE TABLE raw_changes (cursor BIGINT PRIMARY KEY, scope TEXT COLLATE "C" NOT NULL,
                   entity TEXT NOT NULL, id TEXT NOT NULL, op TEXT NOT NULL, data TEXT, ts BIGINT NOT NULL);
               CREATE INDEX raw_changes_scope ON raw_changes (scope, cursor);
               CREATE TABLE raw_clients (client_id TEXT COLLATE "C" PRIMARY KEY, seq BIGINT NOT NULL);
               CREATE SEQUENCE raw_cursor;"#,
        )
        .await
        .unwrap();
    let mut options = PostgresOptions::default();
    options.pool_size = 20;
    let node = |backend| Engine::builder(Put).backend(backend).build();
    let one = [node(
        PostgresBackend::connect_with(&url, options.clone())
            .await
            .unwrap(),
    )];
    let two = [
        one[0].clone(),
        node(PostgresBackend::connect_with(&url, options).await.unwrap()),
    ];
    let mut connections = Vec::new();
    for _ in 0..16 {
        connections.push(Arc::new(pg_client(&url).await));
    }
    println!(
        "\n## PostgreSQL: concurrent pushers in scopes of their own (pushes of 1 mutation, synchronous_commit = on, median of {SCALING_ROUNDS} rounds of 1 s)\n"
    );
    println!(
        "| pushers | raw INSERT transactions/s | one node: pushes/s | × 1 pusher | × raw | two nodes: pushes/s | × 1 pusher | × raw |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let duration = Duration::from_secs(1);
    let mut firsts = None;
    for pushers in [1, 4, 16] {
        let (mut raws, mut ones, mut twos) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..SCALING_ROUNDS {
            let round = round * 100 + pushers;
            raws.push(pg_raw_round(&connections[..pushers], round, duration).await);
            ones.push(pg_push_round(&one, pushers, round, duration).await);
            twos.push(pg_push_round(&two, pushers, round + 50, duration).await);
        }
        let (raw, one, two) = (median(raws), median(ones), median(twos));
        let (one_first, two_first) = *firsts.get_or_insert((one, two));
        println!(
            "| {pushers} | {raw:.0} | {one:.0} | {:.2} | {:.2} | {two:.0} | {:.2} | {:.2} |",
            one / one_first,
            one / raw,
            two / two_first,
            two / raw
        );
    }
    drop(setup);
    pg_client(base)
        .await
        .batch_execute(&format!("DROP SCHEMA {schema}_scaling CASCADE"))
        .await
        .unwrap();
}

/// `cargo bench -p sync-bench --bench backends -- NAME` runs only the parts whose name contains
/// NAME: `sqlite`, `postgres`, `concurrency` (`concurrency-memory`, `concurrency-durable`),
/// `scaling` (PostgreSQL's).
fn wanted(part: &str) -> bool {
    let filter = std::env::args().skip(1).find(|arg| !arg.starts_with("--"));
    filter.is_none_or(|filter| part.contains(filter.as_str()))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // On a worker thread, as a server's request handlers run.
    let run = runtime.spawn(async {
        let dir = tempfile::tempdir().unwrap();
        let postgres = pg_schema().await;
        println!("# Durable backends (medians of {ROUNDS} rounds, {MUTATIONS_PER_ROUND} mutations per round)");
        if wanted("sqlite") {
            sqlite_vs_raw(dir.path()).await;
        }
        match &postgres {
            Some((url, _, _)) if wanted("postgres") => postgres_vs_raw(url).await,
            Some(_) => {}
            None => println!("\nPostgreSQL skipped: set SYNC_TEST_POSTGRES_URL"),
        }
        if wanted("concurrency-memory") || wanted("concurrency-durable") {
            println!("\n## Concurrent pushers (pushes of 10 mutations, 0.7 s per round)\n");
            println!("| backend | 1 pusher (mutations/s) | 4 pushers | 16 pushers |");
            println!("| --- | ---: | ---: | ---: |");
        }
        if wanted("concurrency-memory") {
            for scopes in [Scopes::Shared, Scopes::OwnEach] {
                concurrency("memory", MemoryBackend::new(), scopes).await;
            }
        }
        if wanted("concurrency-durable") {
            let sqlite = SqliteBackend::open_with(dir.path().join("concurrency.db"), fast());
            concurrency("SQLite", sqlite.unwrap(), Scopes::Shared).await;
            // With its default, an fsync per commit: what pushes sharing a commit save.
            let durable = SqliteBackend::open(dir.path().join("durable.db"));
            concurrency("SQLite, durable (default)", durable.unwrap(), Scopes::Shared).await;
            if let Some((url, _, _)) = &postgres {
                let backend = PostgresBackend::connect(url).await.unwrap();
                concurrency("PostgreSQL", backend, Scopes::Shared).await;
            }
        }
        if let Some((_, base, schema)) = &postgres
            && wanted("scaling")
        {
            pg_scaling(base, schema).await;
        }
        if let Some((_, base, schema)) = &postgres {
            let admin = pg_client(base).await;
            admin
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .await
                .unwrap();
        }
    });
    runtime.block_on(run).unwrap();
}

/// A schema of its own for this run: (URL into it, base URL, schema name).
async fn pg_schema() -> Option<(String, String, String)> {
    let base = std::env::var("SYNC_TEST_POSTGRES_URL").ok()?;
    let schema = format!("sync_bench_{}", std::process::id());
    pg_client(&base)
        .await
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .await
        .unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    // Without waiting for the WAL flush, on both sides: a shared disk's fsync latency would
    // otherwise swamp what the engine itself costs.
    let url =
        format!("{base}{separator}options=-csearch_path%3D{schema}%20-csynchronous_commit%3Doff");
    Some((url, base, schema))
}
