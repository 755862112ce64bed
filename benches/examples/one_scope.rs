//! `pushers` tasks pushing batches of 10 mutations into one scope (or, with `own`, each into a
//! scope of its own) for `seconds`, on a multi-threaded runtime over the memory backend: one
//! configuration of the `concurrency-memory` bench alone, to profile or count CPU time.
//!
//! ```sh
//! cargo build --release -p sync-bench --example one_scope
//! perf stat -e task-clock,context-switches target/release/examples/one_scope 16 2
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code

use std::time::{Duration, Instant};

use serde_json::json;
use sync_bench::Put;
use sync_runtime::{Engine, MemoryBackend, Mutation};

fn main() {
    let mut args = std::env::args().skip(1);
    let pushers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2.0);
    let own = args.next().is_some_and(|a| a == "own");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let engine = Engine::builder(Put).backend(MemoryBackend::new()).build();
        let start = Instant::now();
        let duration = Duration::from_secs_f64(seconds);
        let tasks: Vec<_> = (0..pushers)
            .map(|p| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    let client = format!("p{p}");
                    let (mut seq, mut pushed) = (0, 0);
                    while start.elapsed() < duration {
                        let batch: Vec<Mutation> = (0..10)
                            .map(|_| {
                                seq += 1;
                                let id = format!("{client}-{seq}");
                                let data = json!({"id": id, "title": format!("todo {id}"), "completed": false});
                                let m = Mutation::new("put", data).with_client(&client, seq);
                                if own { m.with_scope(client.clone()) } else { m }
                            })
                            .collect();
                        engine.push(batch).await.unwrap();
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
        let rate = total as f64 / start.elapsed().as_secs_f64();
        println!("{pushers} pushers: {rate:.0} mutations/s");
    });
}
