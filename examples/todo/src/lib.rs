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
use serde_json::Value;
use sync_runtime::args::decode_args;
use sync_runtime::{Engine, Mutation, MutationError, Mutator, StoreError, Tx, async_trait};

/// The entity type of todos.
pub const ENTITY: &str = "todo";

/// A todo as stored and synced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Todo {
    /// Unique id (a UUID unless the client chose one).
    pub id: String,
    /// What to do.
    pub title: String,
    /// Whether it is done.
    pub completed: bool,
}

/// The todo mutations, written by hand against the [`Mutator`] trait.
#[derive(Clone, Copy, Debug, Default)]
pub struct TodoMutator;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateArgs {
    title: String,
    #[serde(default)]
    id: Option<String>,
}

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

#[async_trait]
impl Mutator for TodoMutator {
    async fn apply(
        &self,
        tx: &mut Tx,
        mutation: &Mutation,
    ) -> Result<Option<Value>, MutationError> {
        let value = match mutation.name.as_str() {
            "todo/create" => {
                let args: CreateArgs = decode_args(mutation)?;
                let title = checked_title(args.title)?;
                let id = match args.id {
                    Some(id) if id.is_empty() => {
                        return Err(MutationError::invalid_args("`id` must not be empty"));
                    }
                    Some(id) => id,
                    None => tx.new_id(),
                };
                if load(tx, &id).await?.is_some() {
                    return Err(MutationError::new(
                        "already_exists",
                        format!("todo `{id}` already exists"),
                    ));
                }
                Some(
                    save(
                        tx,
                        Todo {
                            id,
                            title,
                            completed: false,
                        },
                    )
                    .await?,
                )
            }
            "todo/toggle" => {
                let IdArgs { id } = decode_args(mutation)?;
                let mut todo = existing(tx, &id).await?;
                todo.completed = !todo.completed;
                Some(save(tx, todo).await?)
            }
            "todo/rename" => {
                let args: RenameArgs = decode_args(mutation)?;
                let title = checked_title(args.title)?;
                let mut todo = existing(tx, &args.id).await?;
                todo.title = title;
                Some(save(tx, todo).await?)
            }
            "todo/delete" => {
                let IdArgs { id } = decode_args(mutation)?;
                if !tx.delete_value(ENTITY, &id).await? {
                    return Err(MutationError::not_found(ENTITY, &id));
                }
                None
            }
            other => return Err(MutationError::unknown_mutation(other)),
        };
        Ok(value)
    }
}

fn checked_title(title: String) -> Result<String, MutationError> {
    if title.trim().is_empty() {
        return Err(MutationError::invalid_args("`title` must not be empty"));
    }
    Ok(title)
}

async fn load(tx: &Tx, id: &str) -> Result<Option<Todo>, StoreError> {
    match tx.get_value(ENTITY, id).await? {
        None => Ok(None),
        Some(data) => serde_json::from_value(data)
            .map(Some)
            .map_err(|error| StoreError::with_source(format!("todo `{id}` is malformed"), error)),
    }
}

async fn existing(tx: &Tx, id: &str) -> Result<Todo, MutationError> {
    load(tx, id)
        .await?
        .ok_or_else(|| MutationError::not_found(ENTITY, id))
}

/// Stores the todo; returns its data, which is also the mutation's result.
async fn save(tx: &mut Tx, todo: Todo) -> Result<Value, StoreError> {
    let data = serde_json::to_value(&todo)
        .map_err(|error| StoreError::with_source("could not encode a todo", error))?;
    tx.put_value(ENTITY, &todo.id, data.clone()).await?;
    Ok(data)
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
