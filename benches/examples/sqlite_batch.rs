//! 200 pushes of 100 mutations each on SQLite (WAL, `synchronous = NORMAL`), and nothing else: a
//! fixed workload whose instruction count compares two versions of the engine's SQLite path.
//! By default each mutation is the `backends -- sqlite` bench's `put` (`Tx::put_value` of the
//! mutation's args); with `todo`, the todo example's `todo/create` (a typed `Tx::put`):
//!
//! ```sh
//! cargo build --release -p sync-bench --example sqlite_batch
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/sqlite_batch
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/sqlite_batch todo
//! ```

use serde_json::json;
use sync_bench::Put;
use sync_runtime::{Engine, Mutation, SqliteBackend, SqliteOptions, SyncError};

/// The pushes of the `put` workload, as the backends bench builds them.
fn puts() -> Vec<Vec<Mutation>> {
    let mut seq = 0u64;
    (0..200)
        .map(|_| {
            (0..100)
                .map(|_| {
                    seq += 1;
                    let id = format!("bench-{seq}");
                    let data = json!({"id": id, "title": format!("todo {id}"), "completed": false});
                    Mutation::new("put", data).with_client("bench", seq)
                })
                .collect()
        })
        .collect()
}

async fn run(engine: Engine, pushes: Vec<Vec<Mutation>>) -> Result<(), SyncError> {
    for push in pushes {
        engine.push(push).await?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let todo = match std::env::args().nth(1).as_deref() {
        None | Some("put") => false,
        Some("todo") => true,
        Some(other) => return Err(format!("unknown workload `{other}`: put or todo").into()),
    };
    let dir = tempfile::tempdir()?;
    let mut options = SqliteOptions::default();
    options.durable = false;
    let backend = SqliteBackend::open_with(dir.path().join("batch.db"), options)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()?;
    runtime.block_on(async {
        if todo {
            let engine = Engine::builder(todo::TodoMutator).backend(backend).build();
            run(engine, sync_bench::Ids::new().create_calls(200, 100)).await
        } else {
            run(Engine::builder(Put).backend(backend).build(), puts()).await
        }
    })?;
    Ok(())
}
