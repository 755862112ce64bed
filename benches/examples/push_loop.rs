//! 20,000 one-mutation pushes of `todo/create` on the memory backend, and nothing else: a fixed
//! workload whose instruction count (repeatable where timings on a shared machine are not)
//! compares two versions of the engine:
//!
//! ```sh
//! cargo build --release -p sync-bench --example push_loop
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/push_loop
//! ```

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()?;
    runtime.block_on(async {
        let engine = sync_bench::todo_engine();
        for call in sync_bench::Ids::new().create_calls(20_000, 1) {
            engine.push(call).await?;
        }
        Ok(())
    })
}
