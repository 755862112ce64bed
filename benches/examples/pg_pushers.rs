//! Concurrent pushers against PostgreSQL on one node, and nothing else: a steady load to profile
//! (`perf record -a` beside it), as the `backends -- scaling` bench's pushers run it: each task
//! pushes one-mutation `put`s in a scope and as a client of its own. Prints pushes per second.
//!
//! ```sh
//! cargo build --release -p sync-bench --example pg_pushers
//! SYNC_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     target/release/examples/pg_pushers [PUSHERS (16)] [SECONDS (10)] [LANES (2)]
//! ```
//!
//! It writes into the database's `sync_*` tables under client and scope names of its own
//! process id, so runs do not collide; use a database made for it.

use std::time::{Duration, Instant};

use sync_bench::Put;
use sync_runtime::{Engine, Mutation, PostgresBackend, PostgresOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("SYNC_TEST_POSTGRES_URL")
        .map_err(|_| "set SYNC_TEST_POSTGRES_URL to the database to push into")?;
    let mut args = std::env::args().skip(1);
    let pushers: usize = args.next().map_or(Ok(16), |arg| arg.parse())?;
    let seconds: u64 = args.next().map_or(Ok(10), |arg| arg.parse())?;
    let lanes: Option<usize> = args.next().map(|arg| arg.parse()).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut options = PostgresOptions::default();
        options.pool_size = pushers + 4;
        options.lanes = lanes.unwrap_or(options.lanes);
        let backend = PostgresBackend::connect_with(&url, options).await?;
        let engine = Engine::builder(Put).backend(backend).build();
        let duration = Duration::from_secs(seconds);
        let start = Instant::now();
        let run = std::process::id();
        let tasks: Vec<_> = (0..pushers)
            .map(|pusher| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    let client = format!("pushers{run}-{pusher}");
                    let mut seq = 0;
                    while start.elapsed() < duration {
                        seq += 1;
                        let id = format!("{client}-{seq}");
                        let put = Mutation::new("put", serde_json::json!({ "id": id }))
                            .with_client(&client, seq)
                            .with_scope(&client);
                        engine.push(vec![put]).await?;
                    }
                    Ok::<u64, sync_runtime::SyncError>(seq)
                })
            })
            .collect();
        let mut pushes = 0;
        for task in tasks {
            pushes += task.await??;
        }
        println!(
            "{pushers} pushers: {:.0} pushes/s",
            pushes as f64 / start.elapsed().as_secs_f64()
        );
        Ok(())
    })
}
