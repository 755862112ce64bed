//! `#[mutations]`-generated dispatch against a hand-written `Mutator` doing the same work, in the
//! same run: `cargo bench -p sync-bench --bench dispatch`. Target: generated ≥ 0.95 × hand-written
//! (throughput), i.e. the macro costs nothing measurable.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // benchmark code

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sync_bench::dispatch::{HandWritten, batch, seeded};
use todo::TodoMutator;

fn dispatch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("dispatch");
    for size in [1usize, 100] {
        group.throughput(Throughput::Elements(size as u64));
        let mutations = batch(size);
        let engines = [
            ("generated", runtime.block_on(seeded(TodoMutator)).unwrap()),
            (
                "hand-written",
                runtime.block_on(seeded(HandWritten)).unwrap(),
            ),
        ];
        for (name, engine) in engines {
            group.bench_with_input(BenchmarkId::new(name, size), &mutations, |b, mutations| {
                b.to_async(&runtime).iter(|| async {
                    let pushed = engine.push(mutations.clone()).await.unwrap();
                    debug_assert!(pushed.results.iter().all(|r| r.ok));
                    pushed
                });
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = dispatch
}
criterion_main!(benches);
