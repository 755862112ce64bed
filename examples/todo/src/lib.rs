//! The todo example: a sync server for a todo list.
//!
//! Mutations on entity `todo` with data `{id, title, completed}`:
//!
//! | mutation      | args                | result                      |
//! |---------------|---------------------|-----------------------------|
//! | `todo/create` | `{title, id?}`      | the new todo (id generated when absent) |
//! | `todo/toggle` | `{id}`              | the todo                    |
//! | `todo/rename` | `{id, title}`       | the todo                    |
//! | `todo/delete` | `{id}`              | nothing                     |
//!
//! An unknown id fails with `not_found`; a wrong or missing argument with `invalid_args`.

use serde::{Deserialize, Serialize};
use sync_runtime::{Engine, Entity, MutationError, Tx, mutations};
use ts_rs::TS;

/// Where the generated TypeScript definitions live, relative to this package.
pub const TYPESCRIPT_PATH: &str = "web/src/sync.gen.ts";

/// A todo as stored and synced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Entity, TS)]
#[entity(name = "todo")]
pub struct Todo {
    /// Unique id (a UUID unless the client chose one).
    pub id: String,
    /// What to do.
    pub title: String,
    /// Whether it is done.
    pub completed: bool,
}

/// The todo mutations.
#[derive(Clone, Copy, Debug, Default)]
pub struct TodoMutator;

#[mutations(entities(Todo))]
impl TodoMutator {
    /// Creates a todo. The client may choose its id (for optimistic UIs); otherwise the server
    /// generates one.
    #[mutation("todo/create")]
    async fn create(tx: &mut Tx, title: String, id: Option<String>) -> Result<Todo, MutationError> {
        let title = checked_title(title)?;
        let id = match id {
            Some(id) if id.is_empty() => {
                return Err(MutationError::invalid_args("`id` must not be empty"));
            }
            Some(id) => id,
            None => tx.new_id(),
        };
        if tx.get::<Todo>(&id).await?.is_some() {
            return Err(MutationError::new(
                "already_exists",
                format!("todo `{id}` already exists"),
            ));
        }
        let todo = Todo {
            id,
            title,
            completed: false,
        };
        tx.put(&todo).await?;
        Ok(todo)
    }

    /// Marks a todo done, or not done again.
    #[mutation("todo/toggle")]
    async fn toggle(tx: &mut Tx, id: String) -> Result<Todo, MutationError> {
        let mut todo = existing(tx, &id).await?;
        todo.completed = !todo.completed;
        tx.put(&todo).await?;
        Ok(todo)
    }

    /// Gives a todo a new title.
    #[mutation("todo/rename")]
    async fn rename(tx: &mut Tx, id: String, title: String) -> Result<Todo, MutationError> {
        let title = checked_title(title)?;
        let mut todo = existing(tx, &id).await?;
        todo.title = title;
        tx.put(&todo).await?;
        Ok(todo)
    }

    /// Deletes a todo.
    #[mutation("todo/delete")]
    async fn delete(tx: &mut Tx, id: String) -> Result<(), MutationError> {
        if !tx.delete::<Todo>(&id).await? {
            return Err(MutationError::not_found(Todo::NAME, &id));
        }
        Ok(())
    }
}

fn checked_title(title: String) -> Result<String, MutationError> {
    if title.trim().is_empty() {
        return Err(MutationError::invalid_args("`title` must not be empty"));
    }
    Ok(title)
}

async fn existing(tx: &Tx, id: &str) -> Result<Todo, MutationError> {
    tx.get::<Todo>(id)
        .await?
        .ok_or_else(|| MutationError::not_found(Todo::NAME, id))
}

/// The example's HTTP app: the sync routes, and a short text at `/` that says what is here.
pub fn app(engine: &Engine) -> axum::Router {
    let index = format!(
        "todo sync server\n\nPOST {0}/push, {0}/pull and {0}/snapshot with a JSON body; see the README.\n",
        engine.prefix()
    );
    axum::Router::new()
        .route("/", axum::routing::get(move || async move { index }))
        .merge(engine.router())
}
