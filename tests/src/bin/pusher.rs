//! `sync-test-pusher STORE CLIENT_ID COUNT [BATCH]`: pushes COUNT pushes of BATCH mutations
//! (default 2) to STORE (`sqlite:PATH` or a PostgreSQL URL) as client CLIENT_ID, and prints
//! `ack SEQ CURSOR` for every mutation once its push is acknowledged.
//!
//! Mutation SEQ is a `put_group` of three entities `CLIENT_ID-SEQ-{0,1,2}` in scope `shared`:
//! after a crash, a group is there whole or not at all. The crash and two-node tests run it as a
//! child process and kill it mid-stream.

use std::io::Write;

use serde_json::json;
use sync_runtime::{Engine, Mutation, PostgresBackend, SqliteBackend};
use sync_tests::RulesMutator;

#[tokio::main]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("sync-test-pusher: {error}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store, client, count, rest @ ..] = args.as_slice() else {
        return Err("usage: sync-test-pusher STORE CLIENT_ID COUNT [BATCH]".into());
    };
    let count: u64 = count.parse()?;
    let batch: u64 = rest.first().map_or(Ok(2), |b| b.parse())?;
    let builder = Engine::builder(RulesMutator);
    let engine = if let Some(path) = store.strip_prefix("sqlite:") {
        builder.backend(SqliteBackend::open(path)?).build()
    } else {
        builder
            .backend(PostgresBackend::connect(store).await?)
            .build()
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    let mut seq = 0;
    for _ in 0..count {
        let mutations: Vec<Mutation> = (0..batch)
            .map(|_| {
                seq += 1;
                Mutation::new(
                    "put_group",
                    json!({"group": format!("{client}-{seq}"), "n": 3}),
                )
                .with_scope("shared")
                .with_client(client.as_str(), seq)
            })
            .collect();
        let first = seq + 1 - batch;
        let pushed = engine.push(mutations).await?;
        for (offset, result) in pushed.results.iter().enumerate() {
            if !result.ok {
                return Err(
                    format!("mutation {} failed: {result:?}", first + offset as u64).into(),
                );
            }
            writeln!(stdout, "ack {} {}", first + offset as u64, result.cursor)?;
        }
        stdout.flush()?;
    }
    writeln!(stdout, "done")?;
    stdout.flush()?;
    Ok(())
}
