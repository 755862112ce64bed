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

async fn existing(tx: &mut Tx, id: &str) -> Result<Todo, MutationError> {
    tx.get::<Todo>(id)
        .await?
        .ok_or_else(|| MutationError::not_found(Todo::NAME, id))
}

/// The web app's page, built by `build.rs` (or, without Node.js and `npm ci` in `web/`, a page
/// that says how to build it).
pub const INDEX_HTML: &str = include_str!(concat!(env!("OUT_DIR"), "/index.html"));

/// The web app's script: web/src/main.ts and sync-client, bundled by esbuild in `build.rs`.
pub const APP_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/main.js"));

/// The web app's service worker (web/src/sw.ts), which lets the page start offline.
pub const SERVICE_WORKER_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/sw.js"));

/// Whether this binary carries the web app (false where `build.rs` could not bundle it).
pub fn web_app_built() -> bool {
    cfg!(todo_web_app)
}

/// The example's HTTP app: the sync routes, and the todo web app at `/`.
pub fn app(engine: &Engine) -> axum::Router {
    use axum::http::header;
    use axum::response::IntoResponse;

    let page = || async {
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            INDEX_HTML,
        )
            .into_response()
    };
    let script = |source: &'static str| {
        move || async move {
            (
                [
                    (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                source,
            )
                .into_response()
        }
    };
    axum::Router::new()
        .route("/", axum::routing::get(page))
        .route("/app.js", axum::routing::get(script(APP_JS)))
        .route("/sw.js", axum::routing::get(script(SERVICE_WORKER_JS)))
        .merge(engine.router())
}
