//! The todo example: a sync server for todo lists, personal and shared.
//!
//! Entities: `todo` `{id, title, completed, created_by?}`; in a shared list's scope, `list`
//! (its title and owner, id `info`) and `member` (one per member, by name); in a user's scope,
//! `membership` (one per shared list the user belongs to, by the list's scope).
//!
//! | mutation       | args             | result                      |
//! |----------------|------------------|-----------------------------|
//! | `todo/create`  | `{title, id?}`   | the new todo (id generated when absent) |
//! | `todo/toggle`  | `{id}`           | the todo                    |
//! | `todo/rename`  | `{id, title}`    | the todo                    |
//! | `todo/delete`  | `{id}`           | nothing                     |
//! | `list/create`  | `{title}`        | the list, in a fresh `list:ID` scope |
//! | `list/share`   | `{name}`         | the new member (owner only) |
//! | `list/unshare` | `{name}`         | nothing (owner only)        |
//!
//! An unknown id fails with `not_found`; a wrong or missing argument with `invalid_args`; a rule
//! of the lists with `forbidden`. Who calls comes from the request's identity ([`auth`]), never
//! from arguments: `created_by` is the caller's name (absent on a server without sign-in), and
//! only a todo's creator or its list's owner may delete it. The first caller to push to a fresh
//! `list:ID` owns it.

pub mod auth;

use serde::{Deserialize, Serialize};
use sync_runtime::{Engine, Entity, MutationError, Tx, mutations};
use ts_rs::TS;

pub use auth::{DemoAuth, User};

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
    /// The name of the user who created it; absent on a server without sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub created_by: Option<String>,
}

/// A shared list's title and owner, in the list's scope under the id `info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Entity, TS)]
#[entity(name = "list")]
pub struct ListInfo {
    /// Always `info`: one per list scope.
    pub id: String,
    /// The list's title.
    pub title: String,
    /// The owner's name: who created it, the one who may share it.
    pub owner: String,
}

/// A member of a shared list, in the list's scope under the member's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Entity, TS)]
#[entity(name = "member")]
pub struct Member {
    /// The member's user name.
    pub id: String,
}

/// A shared list a user belongs to, in the user's scope under the list's scope: how the user's
/// clients learn which lists to sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Entity, TS)]
#[entity(name = "membership")]
pub struct Membership {
    /// The list's scope, `list:ID`.
    pub id: String,
    /// The list's title.
    pub title: String,
    /// The owner's name.
    pub owner: String,
}

/// The id of a list scope's [`ListInfo`].
const INFO: &str = "info";

/// The todo mutations.
#[derive(Clone, Copy, Debug, Default)]
pub struct TodoMutator;

#[mutations(entities(Todo, ListInfo, Member, Membership))]
impl TodoMutator {
    /// Creates a todo. The client may choose its id (for optimistic UIs); otherwise the server
    /// generates one.
    #[mutation("todo/create")]
    async fn create(
        tx: &mut Tx,
        #[caller] user: Option<&User>,
        title: String,
        id: Option<String>,
    ) -> Result<Todo, MutationError> {
        let title = checked_title(title)?;
        list_member(tx, user).await?;
        let id = match id {
            Some(id) if id.is_empty() => {
                return Err(MutationError::invalid_args("`id` must not be empty"));
            }
            Some(id) => id,
            None => tx.new_id(),
        };
        if tx.exists::<Todo>(&id).await? {
            return Err(MutationError::new(
                "already_exists",
                format!("todo `{id}` already exists"),
            ));
        }
        let todo = Todo {
            id,
            title,
            completed: false,
            created_by: user.map(|user| user.name.clone()),
        };
        tx.put(&todo).await?;
        Ok(todo)
    }

    /// Marks a todo done, or not done again.
    #[mutation("todo/toggle")]
    async fn toggle(
        tx: &mut Tx,
        #[caller] user: Option<&User>,
        id: String,
    ) -> Result<Todo, MutationError> {
        list_member(tx, user).await?;
        let mut todo = existing(tx, &id).await?;
        todo.completed = !todo.completed;
        tx.put(&todo).await?;
        Ok(todo)
    }

    /// Gives a todo a new title.
    #[mutation("todo/rename")]
    async fn rename(
        tx: &mut Tx,
        #[caller] user: Option<&User>,
        id: String,
        title: String,
    ) -> Result<Todo, MutationError> {
        let title = checked_title(title)?;
        list_member(tx, user).await?;
        let mut todo = existing(tx, &id).await?;
        todo.title = title;
        tx.put(&todo).await?;
        Ok(todo)
    }

    /// Deletes a todo: its creator or its list's owner may.
    #[mutation("todo/delete")]
    async fn delete(
        tx: &mut Tx,
        #[caller] user: Option<&User>,
        id: String,
    ) -> Result<(), MutationError> {
        let info = list_member(tx, user).await?;
        let todo = existing(tx, &id).await?;
        if let Some(user) = user {
            let creator = todo.created_by.as_deref() == Some(user.name.as_str());
            let owner = info.is_some_and(|info| info.owner == user.name);
            let own_scope = tx.scope() == format!("user:{}", user.name);
            if !(creator || owner || own_scope) {
                return Err(forbidden(
                    "only the todo's creator or the list's owner may delete it",
                ));
            }
        }
        tx.delete::<Todo>(&id).await?;
        Ok(())
    }

    /// Creates a shared list in this (fresh) `list:ID` scope, owned by the caller.
    #[mutation("list/create")]
    async fn create_list(
        tx: &mut Tx,
        #[caller] user: &User,
        title: String,
    ) -> Result<ListInfo, MutationError> {
        let title = checked_title(title)?;
        list_scope(tx)?;
        if tx.exists::<ListInfo>(INFO).await? {
            return Err(MutationError::new(
                "already_exists",
                format!("the list `{}` exists already", tx.scope()),
            ));
        }
        claim(tx, user, title).await
    }

    /// Adds a member to this list (its owner only), and the list to the member's lists.
    #[mutation("list/share")]
    async fn share(
        tx: &mut Tx,
        #[caller] user: &User,
        name: String,
    ) -> Result<Member, MutationError> {
        let info = owned_list(tx, user).await?;
        if !auth::valid_name(&name) {
            return Err(MutationError::invalid_args(
                "`name` is 1 to 32 of a-z, 0-9, `_` and `-`",
            ));
        }
        let member = Member { id: name };
        tx.put(&member).await?;
        add_membership(tx, &member.id, &info).await?;
        Ok(member)
    }

    /// Removes a member from this list (its owner only): they lose access at once.
    #[mutation("list/unshare")]
    async fn unshare(
        tx: &mut Tx,
        #[caller] user: &User,
        name: String,
    ) -> Result<(), MutationError> {
        let info = owned_list(tx, user).await?;
        if name == info.owner {
            return Err(forbidden("the owner cannot leave their own list"));
        }
        if !tx.delete::<Member>(&name).await? {
            return Err(MutationError::not_found(Member::NAME, &name));
        }
        let list = tx.scope().to_owned();
        let mut theirs = tx.in_scope(&format!("user:{name}"))?;
        theirs.delete::<Membership>(&list).await?;
        Ok(())
    }
}

fn forbidden(message: &str) -> MutationError {
    MutationError::new("forbidden", message)
}

fn list_scope(tx: &Tx) -> Result<(), MutationError> {
    match tx.scope().strip_prefix("list:") {
        Some(id) if !id.is_empty() => Ok(()),
        _ => Err(MutationError::invalid_args(
            "lists live in scopes `list:ID`; push this mutation to one",
        )),
    }
}

/// In a `list:` scope, with a caller: the list, which the caller now belongs to (claimed if it
/// was fresh), or `forbidden`. Elsewhere, or without a caller (a server without sign-in):
/// `None`. The authorizer let the push in; this is the rule inside the transaction, where a
/// second claimant of a fresh list loses.
async fn list_member(tx: &mut Tx, user: Option<&User>) -> Result<Option<ListInfo>, MutationError> {
    let Some(user) = user else { return Ok(None) };
    if !tx.scope().starts_with("list:") {
        return Ok(None);
    }
    match tx.get::<ListInfo>(INFO).await? {
        None => {
            let title = tx.scope().trim_start_matches("list:").to_owned();
            claim(tx, user, title).await.map(Some)
        }
        Some(info) if tx.get::<Member>(&user.name).await?.is_some() => Ok(Some(info)),
        Some(_) => Err(forbidden("only the list's members may change it")),
    }
}

/// The caller's own list, or `forbidden`.
async fn owned_list(tx: &mut Tx, user: &User) -> Result<ListInfo, MutationError> {
    list_scope(tx)?;
    match tx.get::<ListInfo>(INFO).await? {
        Some(info) if info.owner == user.name => Ok(info),
        Some(_) => Err(forbidden("only the list's owner may change who shares it")),
        None => Err(MutationError::not_found(ListInfo::NAME, tx.scope())),
    }
}

/// Makes this fresh list the caller's.
async fn claim(tx: &mut Tx, user: &User, title: String) -> Result<ListInfo, MutationError> {
    let info = ListInfo {
        id: INFO.to_owned(),
        title,
        owner: user.name.clone(),
    };
    tx.put(&info).await?;
    tx.put(&Member {
        id: user.name.clone(),
    })
    .await?;
    add_membership(tx, &user.name, &info).await?;
    Ok(info)
}

/// Records the list among `name`'s lists, in their own scope.
async fn add_membership(tx: &mut Tx, name: &str, info: &ListInfo) -> Result<(), MutationError> {
    let membership = Membership {
        id: tx.scope().to_owned(),
        title: info.title.clone(),
        owner: info.owner.clone(),
    };
    let mut theirs = tx.in_scope(&format!("user:{name}"))?;
    theirs.put(&membership).await?;
    Ok(())
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

/// The web app's script: web/src/main.tsx (React) with sync-client and its React bindings, bundled
/// by esbuild in `build.rs`.
pub const APP_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/main.js"));

/// The web app's service worker (web/src/sw.ts), which lets the page start offline.
pub const SERVICE_WORKER_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/sw.js"));

/// Whether this binary carries the web app (false where `build.rs` could not bundle it).
pub fn web_app_built() -> bool {
    cfg!(todo_web_app)
}

/// The example's HTTP app: the sync routes and the todo web app at `/`, open to everyone (no
/// sign-in, every scope allowed, no caller).
pub fn app(engine: &Engine) -> axum::Router {
    web_app(engine).route(
        "/auth",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"mode": "none"})) }),
    )
}

/// [`app`] with the demo sign-in: `POST /auth/demo {"name"}` answers `{"token"}`. Give `engine`
/// the same `auth` ([`auth::rules`] for the demo's scopes).
pub fn app_with_sign_in(engine: &Engine, auth: DemoAuth) -> axum::Router {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    let sign_in = move |body: Result<
        axum::Json<serde_json::Value>,
        axum::extract::rejection::JsonRejection,
    >| async move {
        let name = body
            .ok()
            .and_then(|axum::Json(body)| body.get("name")?.as_str().map(str::to_owned));
        match name.as_deref().and_then(|name| auth.issue(name)) {
            Some(token) => axum::Json(serde_json::json!({ "token": token })).into_response(),
            None => (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({
                    "error": "send {\"name\": NAME}, NAME 1 to 32 of a-z, 0-9, `_` and `-`",
                    "code": "invalid_name",
                })),
            )
                .into_response(),
        }
    };
    web_app(engine)
        .route(
            "/auth",
            axum::routing::get(|| async { axum::Json(serde_json::json!({"mode": "demo"})) }),
        )
        .route("/auth/demo", axum::routing::post(sign_in))
}

/// The sync routes and the web app's files.
fn web_app(engine: &Engine) -> axum::Router {
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
