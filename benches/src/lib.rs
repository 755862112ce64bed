//! Benchmarks of the sync engine; see BENCHMARKS.md.
//!
//! The pieces the criterion benches (`benches/engine.rs`) and the HTTP load driver
//! (`src/bin/http_load.rs`) share: the engine under test, the mutations pushed to it, change logs
//! to pull from, and [`BareTodos`], the bare baseline that does a push's JSON work without the
//! engine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::Deserialize;
use serde_json::{Value, json};
use sync_runtime::{Engine, Json, MemoryBackend, Mutation, MutationError, Mutator, SyncError, Tx};
use todo::{Todo, TodoMutator};

pub mod dispatch;

/// `put`: the args, an object with an `id`, written as the `item` of that id: one entity write,
/// so one entity row and one change row per mutation. The backend benches' mutator, in place of
/// an application's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Put;

impl Mutator for Put {
    async fn apply(&self, tx: &mut Tx, m: &Mutation) -> Result<Option<Json>, MutationError> {
        let id = m.args.get("id").and_then(Value::as_str).unwrap_or("x");
        tx.put_value("item", id, &m.args).await?;
        Ok(None)
    }
}

/// The mutation every push benchmark sends.
pub const CREATE: &str = "todo/create";

/// An engine running the todo example's mutator on a fresh [`MemoryBackend`].
pub fn todo_engine() -> Engine {
    todo_engine_on(MemoryBackend::new())
}

/// An engine running the todo example's mutator on `backend`.
pub fn todo_engine_on(backend: MemoryBackend) -> Engine {
    Engine::builder(TodoMutator).backend(backend).build()
}

/// The arguments of a `todo/create` with a client-chosen id, as offline-first clients send it.
pub fn create_args(id: &str) -> Value {
    json!({ "id": id, "title": format!("benchmark todo {id}") })
}

/// A `todo/create` of the todo `id`, in `scope` (the default scope where `None`).
pub fn create_mutation(id: &str, scope: Option<&str>) -> Mutation {
    let mutation = Mutation::new(CREATE, create_args(id));
    match scope {
        Some(scope) => mutation.with_scope(scope),
        None => mutation,
    }
}

/// Hands out unique todo ids, so that no create of a benchmark fails with `already_exists`.
#[derive(Debug, Default)]
pub struct Ids {
    next: AtomicU64,
}

impl Ids {
    /// Ids starting at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh id, prefixed with `prefix`.
    pub fn next(&self, prefix: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}{n:08}")
    }

    /// `calls` pushes of `per_call` fresh `todo/create`s each, in the default scope.
    pub fn create_calls(&self, calls: u64, per_call: usize) -> Vec<Vec<Mutation>> {
        (0..calls)
            .map(|_| {
                (0..per_call)
                    .map(|_| create_mutation(&self.next("t"), None))
                    .collect()
            })
            .collect()
    }
}

/// The name of the `k`th scope of a benchmark log.
pub fn scope_name(k: usize) -> String {
    format!("team-{k:04}")
}

/// Fills `backend` with `per_scope` changes in each of `scopes` scopes (named by
/// [`scope_name`]), interleaved: each push holds a `todo/create` in every scope, so a scope's
/// changes are spread over the whole log as a busy server's are.
pub async fn fill_log(
    backend: &MemoryBackend,
    scopes: usize,
    per_scope: usize,
) -> Result<(), SyncError> {
    let engine = todo_engine_on(backend.clone());
    let names: Vec<String> = (0..scopes).map(scope_name).collect();
    for round in 0..per_scope {
        let push = names
            .iter()
            .enumerate()
            .map(|(k, scope)| {
                let id = format!("t{:08}", round * scopes + k);
                create_mutation(&id, Some(scope))
            })
            .collect();
        engine.push(push).await?;
    }
    Ok(())
}

/// The arguments of `todo/create`, as the bare baseline decodes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    /// The todo's title.
    pub title: String,
    /// The client-chosen id.
    #[serde(default)]
    pub id: Option<String>,
}

/// The bare baseline of a push: decode each `todo/create`'s arguments, check them, encode the
/// todo and insert it into a `HashMap` behind a `Mutex`. No transaction, change log, cursor
/// bookkeeping or poke: the JSON and map work every implementation of a push has to do.
#[derive(Debug, Default)]
pub struct BareTodos {
    todos: Mutex<HashMap<String, Value>>,
    cursor: AtomicU64,
}

/// What [`BareTodos::create`] answers: the todo's data and the position of the write.
#[derive(Debug)]
pub struct BareCreated {
    /// A counter of writes, standing in for a cursor.
    pub cursor: u64,
    /// The todo as stored.
    pub data: Value,
}

impl BareTodos {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many todos were created.
    pub fn len(&self) -> usize {
        self.todos
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no todo was created.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One `todo/create`: `Err` with a message where the arguments do not fit or the id is
    /// taken, as the todo mutator answers.
    pub fn create(&self, args: &Value) -> Result<BareCreated, String> {
        let args = CreateArgs::deserialize(args).map_err(|error| error.to_string())?;
        if args.title.trim().is_empty() {
            return Err("`title` must not be empty".to_owned());
        }
        let id = args.id.ok_or("`id` is required by the bare baseline")?;
        let todo = Todo {
            id,
            title: args.title,
            completed: false,
            created_by: None,
        };
        let data = serde_json::to_value(&todo).map_err(|error| error.to_string())?;
        let mut todos = self.todos.lock().unwrap_or_else(PoisonError::into_inner);
        if todos.contains_key(&todo.id) {
            return Err(format!("todo `{}` already exists", todo.id));
        }
        todos.insert(todo.id, data.clone());
        drop(todos);
        let cursor = self.cursor.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(BareCreated { cursor, data })
    }

    /// A push of `mutations`, answering each in order, as [`Engine::push`] takes them.
    pub fn push(&self, mutations: Vec<Mutation>) -> Vec<Result<BareCreated, String>> {
        mutations
            .iter()
            .map(|mutation| self.create(&mutation.args))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn engine_and_baseline_accept_the_benchmark_pushes() {
        let ids = Ids::new();
        let calls = ids.create_calls(2, 3);
        let engine = todo_engine();
        let bare = BareTodos::new();
        for call in calls {
            let pushed = engine.push(call.clone()).await.unwrap_or_default();
            assert_eq!(pushed.results.len(), 3);
            assert!(pushed.results.iter().all(|result| result.ok));
            assert!(bare.push(call).iter().all(Result::is_ok));
        }
        assert_eq!(bare.len(), 6);
        assert_eq!(engine.head().await.ok(), Some(6));
    }

    #[tokio::test]
    async fn fill_log_interleaves_the_scopes() {
        let backend = MemoryBackend::new();
        assert!(fill_log(&backend, 3, 4).await.is_ok());
        assert_eq!(backend.log().len(), 12);
        let page = sync_runtime::ChangeLog::read(&backend, &scope_name(1), 0, 10, None)
            .await
            .unwrap_or_default();
        let cursors: Vec<u64> = page.changes.iter().map(|change| change.cursor).collect();
        assert_eq!(cursors, [2, 5, 8, 11]);
    }
}
