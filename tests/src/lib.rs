//! Helpers shared by the integration tests: an in-process HTTP client for an engine's router,
//! test mutators, a backend that fails on demand, and a poke recorder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

pub mod backends;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::{Value, json};
use sync_runtime::{
    Engine, Json, Mutation, MutationError, Mutator, Poke, ScopeData, StoreError, Tx,
};

pub use backends::{FailingBackend, Kind, TestBackend};
use tower::ServiceExt;

/// An engine with the todo example's mutator on a fresh memory backend.
pub fn todo_engine() -> Engine {
    Engine::builder(todo::TodoMutator).build()
}

/// A `todo/create` mutation.
pub fn create(title: &str) -> Mutation {
    Mutation::new("todo/create", json!({ "title": title }))
}

/// A `todo/create` mutation with a client-chosen id.
pub fn create_with_id(id: &str, title: &str) -> Mutation {
    Mutation::new("todo/create", json!({ "id": id, "title": title }))
}

/// A mutation on one todo id (`todo/toggle`, `todo/delete`).
pub fn on_id(name: &str, id: &str) -> Mutation {
    Mutation::new(name, json!({ "id": id }))
}

/// An HTTP answer: status, headers and the body as JSON (`Value::Null` when not JSON).
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, decoded.
    pub body: Value,
}

impl Answer {
    /// Asserts the protocol's error body with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["code"], code, "body: {}", self.body);
        let message = self.body["error"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "an error needs a sentence: {}",
            self.body
        );
    }
}

/// Sends requests to a router in process.
#[derive(Clone)]
pub struct Http {
    router: Router,
}

impl Http {
    /// A client of `engine.router()`.
    pub fn new(engine: &Engine) -> Self {
        Http {
            router: engine.router(),
        }
    }

    /// A client of any router.
    pub fn of(router: Router) -> Self {
        Http { router }
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(
            Method::POST,
            path,
            Some("application/json"),
            body.to_string().into_bytes(),
            &[],
        )
        .await
    }

    /// Any request.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }
}

/// Records every poke.
#[derive(Clone, Default)]
pub struct PokeLog {
    pokes: Arc<Mutex<Vec<Poke>>>,
}

impl PokeLog {
    /// The broker to give the engine.
    pub fn broker(&self) -> impl Fn(&Poke) + Send + Sync + 'static {
        let pokes = Arc::clone(&self.pokes);
        move |poke: &Poke| pokes.lock().push(poke.clone())
    }

    /// The pokes recorded so far, left in place.
    pub fn snapshot(&self) -> Vec<Poke> {
        self.pokes.lock().clone()
    }

    /// Takes the pokes recorded so far.
    pub fn take(&self) -> Vec<Poke> {
        std::mem::take(&mut *self.pokes.lock())
    }
}

/// A mutator for the engine's rules rather than an application's:
///
/// - `put {entity?, id, data}` writes the entity (`entity` defaults to `item`);
/// - `put_then_fail {id}` writes, then fails for good with code `rejected`;
/// - `put_then_store_error {id}` writes, then fails as if the store did;
/// - `slow_put {id}` reads the entity, waits a millisecond, then writes it: a window in which
///   a concurrent mutation could interleave, were mutations not isolated;
/// - `put_many {n, tag}` writes entities `0`..`n` with data `{tag}` in one mutation;
/// - `put_then_stall {id}` reads the entity (on PostgreSQL, locking its scope), writes it, then
///   waits a minute: a push to cancel mid-way;
/// - `append {entity?}` lists the entities of the type, yields, then creates one whose id is
///   their count: two concurrent appends that both listed before either wrote would both write
///   the same id, were the listing not isolated from the other's write;
/// - `put_group {group, n}` writes entities `{group}-0`..`{group}-{n-1}` in one mutation: a
///   crash must leave all of them or none;
/// - `delete {id}` deletes;
/// - `echo` returns its args as the value and writes nothing.
pub struct RulesMutator;

impl Mutator for RulesMutator {
    async fn apply(&self, tx: &mut Tx, m: &Mutation) -> Result<Option<Json>, MutationError> {
        let id = m.args["id"].as_str().unwrap_or("x").to_owned();
        let entity = m.args["entity"].as_str().unwrap_or("item").to_owned();
        let data = m
            .args
            .get("data")
            .cloned()
            .unwrap_or_else(|| json!({ "id": id }));
        match m.name.as_str() {
            "put" => {
                tx.put_value(&entity, &id, data).await?;
                Ok(None)
            }
            "put_then_fail" => {
                tx.put_value(&entity, &id, data).await?;
                Err(MutationError::rejected("refused after writing"))
            }
            "put_then_store_error" => {
                tx.put_value(&entity, &id, data).await?;
                Err(StoreError::new("disk on fire").into())
            }
            "slow_put" => {
                let before = tx.get_value(&entity, &id).await?;
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                let count = before.and_then(|d| d["count"].as_u64()).unwrap_or(0);
                tx.put_value(&entity, &id, json!({ "id": id, "count": count + 1 }))
                    .await?;
                Ok(None)
            }
            "put_many" => {
                let n = m.args["n"].as_u64().unwrap_or(1);
                for i in 0..n {
                    tx.put_value(&entity, &i.to_string(), json!({ "tag": m.args["tag"] }))
                        .await?;
                }
                Ok(None)
            }
            "put_then_stall" => {
                tx.get_value(&entity, &id).await?;
                tx.put_value(&entity, &id, data).await?;
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                Ok(None)
            }
            "put_group" => {
                let group = m.args["group"].as_str().unwrap_or("g").to_owned();
                for i in 0..m.args["n"].as_u64().unwrap_or(1) {
                    let id = format!("{group}-{i}");
                    tx.put_value(&entity, &id, json!({ "id": id, "group": group }))
                        .await?;
                }
                Ok(None)
            }
            "append" => {
                let count = tx.list_values(&entity).await?.len();
                tokio::task::yield_now().await;
                let id = count.to_string();
                tx.put_value(&entity, &id, json!({ "id": id })).await?;
                Ok(None)
            }
            "delete" => {
                tx.delete_value(&entity, &id).await?;
                Ok(None)
            }
            "echo" => Ok(Some(m.args.clone().into())),
            other => Err(MutationError::unknown_mutation(other)),
        }
    }
}

/// A mutator that runs the steps it is given, for tests of what one mutation sees of its own
/// and earlier writes. Mutation `script` with `{"steps": [[op, entity, id, data?], ...]}` runs
/// each step in order in the mutation's scope, and records what each one answered, in [`Script::seen`],
/// before the mutation ends (so that a cancelled or failed push still shows them):
///
/// - `["put", entity, id, data]` → `null` (a put does not read whether the entity existed: its
///   change, logged as `create` or `update`, tells);
/// - `["exists", entity, id]` → whether the entity exists, with the push's writes applied;
/// - `["get", entity, id]` → the data, or `null`;
/// - `["list", entity]` → the entities' data, by id;
/// - `["delete", entity, id]` → whether it existed;
/// - `["fail"]` fails the mutation for good, `["store_error"]` as if the store failed, and
///   `["stall"]` waits a minute: a push to cancel.
///
/// The mutation answers the list of what its steps answered.
#[derive(Clone, Default)]
pub struct Script {
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Script {
    /// What the steps answered so far, in order.
    pub fn seen(&self) -> Vec<Value> {
        self.seen.lock().clone()
    }
}

/// A `script` mutation of these steps.
pub fn script(steps: Value) -> Mutation {
    Mutation::new("script", json!({ "steps": steps }))
}

impl Mutator for Script {
    async fn apply(&self, tx: &mut Tx, m: &Mutation) -> Result<Option<Json>, MutationError> {
        if m.name != "script" {
            return Err(MutationError::unknown_mutation(&m.name));
        }
        let steps = m.args["steps"].as_array().cloned().unwrap_or_default();
        let mut answers = Vec::new();
        for step in steps {
            let text = |i: usize| step[i].as_str().unwrap_or_default().to_owned();
            let answer = match text(0).as_str() {
                "put" => {
                    tx.put_value(&text(1), &text(2), step[3].clone()).await?;
                    Value::Null
                }
                "exists" => json!(tx.exists_value(&text(1), &text(2)).await?),
                "get" => tx
                    .get_value(&text(1), &text(2))
                    .await?
                    .unwrap_or(Value::Null),
                "list" => Value::Array(tx.list_values(&text(1)).await?),
                "delete" => json!(tx.delete_value(&text(1), &text(2)).await?),
                "fail" => return Err(MutationError::rejected("the script failed")),
                "store_error" => return Err(StoreError::new("the script's store failed").into()),
                "stall" => {
                    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                    Value::Null
                }
                other => panic!("unknown step {other}"),
            };
            self.seen.lock().push(answer.clone());
            answers.push(answer);
        }
        Ok(Some(Value::Array(answers).into()))
    }
}

/// A `put` of `{id}` for [`RulesMutator`].
pub fn put(id: &str) -> Mutation {
    Mutation::new("put", json!({ "id": id }))
}

/// Applies a scope's changes in order to an empty state: what a client that pulled them has.
pub fn replay(changes: &[Arc<sync_runtime::Change>]) -> ScopeData {
    let mut state = ScopeData::new();
    for change in changes {
        let ids = state.entry(change.entity.clone()).or_default();
        match change.decode() {
            Ok(Some(data)) => {
                ids.insert(change.id.clone(), data);
            }
            Ok(None) => {
                ids.remove(&change.id);
            }
            Err(error) => panic!("change {} does not decode: {error}", change.cursor),
        }
    }
    state.retain(|_, ids| !ids.is_empty());
    state
}

/// Pulls a scope's whole history from `cursor`, page by page.
pub async fn pull_all(
    engine: &Engine,
    scope: &str,
    mut cursor: u64,
) -> Vec<Arc<sync_runtime::Change>> {
    let mut changes = Vec::new();
    loop {
        let page = engine
            .pull(sync_runtime::PullRequest::new(scope, cursor).with_limit(1000))
            .await
            .unwrap();
        changes.extend(page.changes);
        cursor = page.cursor;
        if !page.has_more {
            return changes;
        }
    }
}
