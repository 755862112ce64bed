//! The `#[mutations]` dispatch against a hand-written `Mutator` doing the same work: shared by
//! the `dispatch` criterion bench and the `dispatch_loop` example (instruction counts).

use serde::Deserialize;
use serde_json::json;
use sync_runtime::decode_args;
use sync_runtime::{Engine, Json, Mutation, MutationError, Mutator, Tx};
use todo::{Todo, TodoMutator};

/// The todo mutations as one would write them without the macro: a match on the name, a
/// decoded args struct per mutation, the same typed reads and writes.
pub struct HandWritten;

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
pub fn batch(size: usize) -> Vec<Mutation> {
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

/// `mutator`'s engine, holding the ten todos the batches toggle and rename.
pub async fn seeded(mutator: impl Mutator) -> Result<Engine, Box<dyn std::error::Error>> {
    let engine = engine(mutator);
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
    let seeded = seeder.push(creates).await?;
    if let Some(failed) = seeded.results.iter().find(|result| !result.ok) {
        return Err(format!("could not seed the todos: {:?}", failed.error).into());
    }
    Ok(engine)
}
