//! `#[mutations]`-generated dispatch against a hand-written `Mutator` doing the same work, in the
//! same run: `cargo bench -p sync-bench --bench dispatch`. Target: generated ≥ 0.95 × hand-written
//! (throughput), i.e. the macro costs nothing measurable.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // benchmark code

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::Deserialize;
use serde_json::json;
use sync_runtime::decode_args;
use sync_runtime::{Engine, Json, Mutation, MutationError, Mutator, Tx};
use todo::{Todo, TodoMutator};

/// The todo mutations as one would write them without the macro: a match on the name, a
/// decoded args struct per mutation, the same typed reads and writes.
struct HandWritten;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdArgs {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameArgs {
    id: String,
    title: String,
}

impl Mutator for HandWritten {
    async fn apply(&self, tx: &mut Tx, m: &Mutation) -> Result<Option<Json>, MutationError> {
        let todo = match m.name.as_str() {
            "todo/toggle" => {
                let IdArgs { id } = decode_args(m)?;
                let mut todo: Todo = tx
                    .get(&id)
                    .await?
                    .ok_or_else(|| MutationError::not_found("todo", &id))?;
                todo.completed = !todo.completed;
                tx.put(&todo).await?;
                todo
            }
            "todo/rename" => {
                let RenameArgs { id, title } = decode_args(m)?;
                if title.trim().is_empty() {
                    return Err(MutationError::invalid_args("`title` must not be empty"));
                }
                let mut todo: Todo = tx
                    .get(&id)
                    .await?
                    .ok_or_else(|| MutationError::not_found("todo", &id))?;
                todo.title = title;
                tx.put(&todo).await?;
                todo
            }
            other => return Err(MutationError::unknown_mutation(other)),
        };
        Ok(Some(Json::encode(&todo).map_err(|e| {
            MutationError::new("invalid_result", e.to_string())
        })?))
    }
}

/// A batch that toggles and renames the same ten todos: the same work on every iteration.
fn batch(size: usize) -> Vec<Mutation> {
    (0..size)
        .map(|i| {
            let id = format!("t{}", i % 10);
            if i % 2 == 0 {
                Mutation::new("todo/toggle", json!({ "id": id }))
            } else {
                Mutation::new(
                    "todo/rename",
                    json!({ "id": id, "title": format!("title {i}") }),
                )
            }
        })
        .collect()
}

/// The log keeps its last 10,000 changes, so that memory stays flat however long criterion runs.
fn engine(mutator: impl Mutator) -> Engine {
    Engine::builder(mutator).retain(10_000).build()
}

async fn seeded(engine: Engine) -> Engine {
    let creates = (0..10)
        .map(|i| {
            Mutation::new(
                "todo/create",
                json!({ "id": format!("t{i}"), "title": "seed" }),
            )
        })
        .collect();
    // The seed goes through the generated mutator, which both engines' stores then hold.
    let seeder = Engine::builder(TodoMutator)
        .backend(engine.backend().clone())
        .build();
    assert!(
        seeder
            .push(creates)
            .await
            .unwrap()
            .results
            .iter()
            .all(|r| r.ok)
    );
    engine
}

fn dispatch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("dispatch");
    for size in [1usize, 100] {
        group.throughput(Throughput::Elements(size as u64));
        let mutations = batch(size);
        let engines = [
            ("generated", runtime.block_on(seeded(engine(TodoMutator)))),
            (
                "hand-written",
                runtime.block_on(seeded(engine(HandWritten))),
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
