//! 20,000 mutations (toggles and renames of ten todos) through the `#[mutations]`-generated
//! mutator or the hand-written one, in pushes of SIZE: a fixed workload whose instruction counts
//! compare the two where criterion's timings on a shared machine swing more than the difference
//! (BENCHMARKS.md):
//!
//! ```sh
//! cargo build --release -p sync-bench --example dispatch_loop
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/dispatch_loop generated 100
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/dispatch_loop hand-written 100
//! ```

use sync_bench::dispatch::{HandWritten, batch, seeded};
use todo::TodoMutator;

/// Mutations per run, whatever the push size.
const MUTATIONS: usize = 20_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_default();
    let size: usize = args.next().as_deref().unwrap_or("1").parse()?;
    if size == 0 {
        return Err("SIZE is the number of mutations per push, at least 1".into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(async {
        let engine = match which.as_str() {
            "generated" => seeded(TodoMutator).await?,
            "hand-written" => seeded(HandWritten).await?,
            other => return Err(format!("`{other}`: say `generated` or `hand-written`").into()),
        };
        let mutations = batch(size);
        for _ in 0..MUTATIONS / size {
            let pushed = engine.push(mutations.clone()).await?;
            if let Some(failed) = pushed.results.iter().find(|result| !result.ok) {
                return Err(format!("a mutation failed: {:?}", failed.error).into());
            }
        }
        Ok(())
    })
}
