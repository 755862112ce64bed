//! 200 pushes of 100 one-put mutations each on SQLite (WAL, `synchronous = NORMAL`), and nothing
//! else: the workload of `backends -- sqlite` at 100 mutations per push, fixed so that its
//! instruction count compares two versions of the engine's SQLite path:
//!
//! ```sh
//! cargo build --release -p sync-bench --example sqlite_batch
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/sqlite_batch
//! ```

use serde_json::json;
use sync_runtime::{Engine, Mutation, MutationError, Mutator, SqliteBackend, SqliteOptions, Tx};

/// `put {id, title, completed}`, as the backends bench pushes it.
struct Put;

impl Mutator for Put {
    async fn apply(
        &self,
        tx: &mut Tx,
        m: &Mutation,
    ) -> Result<Option<serde_json::Value>, MutationError> {
        let id = m
            .args
            .get("id")
            .and_then(|id| id.as_str())
            .unwrap_or("x")
            .to_owned();
        tx.put_value("item", &id, m.args.clone()).await?;
        Ok(None)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut options = SqliteOptions::default();
    options.durable = false;
    let backend = SqliteBackend::open_with(dir.path().join("batch.db"), options)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()?;
    runtime.block_on(async {
        let engine = Engine::builder(Put).backend(backend).build();
        let mut seq = 0u64;
        for _ in 0..200 {
            let push = (0..100)
                .map(|_| {
                    seq += 1;
                    let id = format!("bench-{seq}");
                    let data = json!({"id": id, "title": format!("todo {id}"), "completed": false});
                    Mutation::new("put", data).with_client("bench", seq)
                })
                .collect();
            engine.push(push).await?;
        }
        Ok(())
    })
}
