//! The engine: runs pushes, pulls, snapshots and trims against a backend.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderMap;
use serde_json::{Map, Value};
use tracing::{Instrument, debug, info_span, warn};

use crate::auth::{Action, AllowAll, AuthError, AuthRequest, Authorizer, DynAuthorizer};
use crate::backend::{AnyBackend, Backend, ChangeLog, MemoryBackend};
use crate::broker::{NoopBroker, Poke, PokeBroker};
use crate::change::Change;
use crate::error::{MutationError, SyncError};
use crate::live::{LiveHub, LiveOptions};
use crate::mutation::{Mutation, MutationResult};
use crate::mutator::{DynMutator, Mutator};
use crate::protocol::{PullRequest, PullResponse, PushResponse, SnapshotResponse};
use crate::scope::{resolve_scope, validate_scope};
use crate::tx::Tx;

/// Request limits; PROTOCOL's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most mutations in one push (default 1000).
    pub max_mutations: usize,
    /// Changes in a pull page when the request names no limit (default 100).
    pub default_pull_limit: usize,
    /// Most changes in a pull page (default 1000).
    pub max_pull_limit: usize,
    /// Largest push body in bytes (default 1 MiB).
    pub push_body_bytes: usize,
    /// Largest pull or snapshot body in bytes (default 64 KiB).
    pub request_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_mutations: 1000,
            default_pull_limit: 100,
            max_pull_limit: 1000,
            push_body_bytes: 1 << 20,
            request_body_bytes: 64 << 10,
        }
    }
}

/// The sync engine: applies pushed mutations through the mutator, records their changes, pokes
/// watchers, and serves pulls and snapshots. Cheap to clone; clones share everything.
///
/// ```
/// use serde_json::json;
/// use sync_runtime::{Engine, Mutation, MutationError, Mutator, Tx};
///
/// struct Notes;
///
/// impl Mutator for Notes {
///     async fn apply(&self, tx: &mut Tx, m: &Mutation) -> Result<Option<serde_json::Value>, MutationError> {
///         match m.name.as_str() {
///             "note/set" => {
///                 let id = tx.new_id();
///                 tx.put_value("note", &id, json!({"id": id, "text": m.args["text"]})).await?;
///                 Ok(Some(json!(id)))
///             }
///             other => Err(MutationError::unknown_mutation(other)),
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sync_runtime::SyncError> {
/// let engine = Engine::builder(Notes).build();
/// let pushed = engine.push(vec![Mutation::new("note/set", json!({"text": "hi"}))]).await?;
/// assert!(pushed.results[0].ok);
/// let pulled = engine.pull(Default::default()).await?;
/// assert_eq!(pulled.changes.len(), 1);
/// // Serve it: `axum::Router::new().merge(engine.router())`.
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    backend: AnyBackend,
    live: LiveHub,
    live_options: LiveOptions,
    mutator: Arc<dyn DynMutator>,
    broker: Arc<dyn PokeBroker>,
    authorizer: Arc<dyn DynAuthorizer>,
    limits: Limits,
    retain: Option<u64>,
    /// The lowest cursor the log may still hold: changes below it were trimmed for the
    /// retention.
    retained_from: AtomicU64,
    prefix: String,
}

/// Builds an [`Engine`]: [`Engine::builder`] takes the mutator, the rest has defaults.
///
/// Defaults: a [`MemoryBackend`], live connections of this node only (no broker to other nodes),
/// no authorizer (everything allowed),
/// PROTOCOL's [`Limits`], no retention limit, routes under `/_sync`.
#[must_use]
pub struct EngineBuilder {
    mutator: Arc<dyn DynMutator>,
    live: Option<LiveHub>,
    live_options: LiveOptions,
    backend: Option<AnyBackend>,
    broker: Option<Arc<dyn PokeBroker>>,
    authorizer: Option<Arc<dyn DynAuthorizer>>,
    limits: Limits,
    retain: Option<u64>,
    prefix: String,
}

impl Engine {
    /// Starts building an engine that applies pushed mutations with `mutator`.
    pub fn builder(mutator: impl Mutator) -> EngineBuilder {
        EngineBuilder {
            mutator: Arc::new(mutator),
            live: None,
            live_options: LiveOptions::default(),
            backend: None,
            broker: None,
            authorizer: None,
            limits: Limits::default(),
            retain: None,
            prefix: "/_sync".to_owned(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &AnyBackend {
        &self.inner.backend
    }

    /// The hub of this node's live connections.
    pub fn live_hub(&self) -> &LiveHub {
        &self.inner.live
    }

    /// Settings of the live channel.
    pub fn live_options(&self) -> &LiveOptions {
        &self.inner.live_options
    }

    /// The authorizer.
    pub(crate) fn authorizer(&self) -> &dyn DynAuthorizer {
        &*self.inner.authorizer
    }

    /// The limits requests are held to.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The path the routes are mounted under, e.g. `/_sync`.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Checks a push as a whole before anything of it runs: count, names and scopes.
    pub fn validate_push(&self, mutations: &[Mutation]) -> Result<(), SyncError> {
        if mutations.is_empty() {
            return Err(SyncError::NoMutations);
        }
        let max = self.inner.limits.max_mutations;
        if mutations.len() > max {
            return Err(SyncError::TooManyMutations {
                count: mutations.len(),
                max,
            });
        }
        for (index, mutation) in mutations.iter().enumerate() {
            if mutation.name.is_empty() {
                return Err(SyncError::InvalidRequest(format!(
                    "mutations[{index}].name is empty; name the mutation, e.g. \"todo/create\""
                )));
            }
            if mutation
                .client_id
                .as_deref()
                .is_some_and(|id| id.contains('\0'))
            {
                return Err(SyncError::InvalidRequest(format!(
                    "mutations[{index}].client_id holds a NUL character"
                )));
            }
            if let Some(scope) = &mutation.scope {
                validate_scope(scope).map_err(|error| {
                    SyncError::InvalidScope(format!("mutations[{index}].scope: {error}"))
                })?;
            }
        }
        Ok(())
    }

    /// Asks the authorizer about each scope, in order; the first refusal wins.
    pub async fn authorize<'a>(
        &self,
        headers: &HeaderMap,
        scopes: impl IntoIterator<Item = &'a str>,
        action: Action,
    ) -> Result<(), SyncError> {
        let scopes: BTreeSet<&str> = scopes.into_iter().collect();
        for scope in scopes {
            let request = AuthRequest {
                headers,
                scope,
                action,
                token: None,
            };
            match self.inner.authorizer.authorize(&request).await {
                Ok(()) => {}
                Err(AuthError::Unauthorized(message)) => {
                    return Err(SyncError::Unauthorized(message));
                }
                Err(AuthError::Forbidden(message)) => return Err(SyncError::Forbidden(message)),
            }
        }
        Ok(())
    }

    /// Applies mutations in order, in one backend transaction, and pokes the scopes they
    /// changed.
    ///
    /// A permanent failure of one mutation is answered in its result and the push goes on. A store
    /// failure stops the push with [`SyncError::Unavailable`]: the failing mutation and those after
    /// it are neither applied nor recorded, those before it are committed.
    pub async fn push(&self, mutations: Vec<Mutation>) -> Result<PushResponse, SyncError> {
        self.validate_push(&mutations)?;
        let span = info_span!("sync.push", mutations = mutations.len());
        async move {
            let mut tx = Tx::new(self.inner.backend.begin().await?);
            let mut outcomes = Vec::with_capacity(mutations.len());
            let mut failure = None;
            for mutation in &mutations {
                match self.apply(&mut tx, mutation).await {
                    Ok(outcome) => outcomes.push(outcome),
                    Err(error) => {
                        warn!(mutation = %mutation.name, %error, "push stopped by a store failure");
                        failure = Some(error);
                        break;
                    }
                }
            }
            // What finished before a store failure is committed all the same (rule 4).
            let committed = tx.commit().await?;
            let mut latest: BTreeMap<&str, u64> = BTreeMap::new();
            for change in committed.iter().flat_map(|(changes, _)| changes) {
                let cursor = latest.entry(&change.scope).or_default();
                *cursor = (*cursor).max(change.cursor);
            }
            let pokes: Vec<Poke> = latest
                .into_iter()
                .map(|(scope, cursor)| Poke {
                    scope: scope.to_owned(),
                    cursor,
                })
                .collect();
            for poke in &pokes {
                self.inner.live.poke(poke);
                self.inner.broker.poke(poke);
            }
            if let Some(error) = failure {
                return Err(error);
            }
            let results: Vec<MutationResult> = outcomes
                .into_iter()
                .zip(committed)
                .map(Outcome::into_result)
                .collect();
            let cursor = results
                .iter()
                .map(|result| result.cursor)
                .max()
                .unwrap_or_default();
            if !pokes.is_empty() {
                self.enforce_retention(cursor).await;
            }
            Ok(PushResponse { results, cursor })
        }
        .instrument(span)
        .await
    }

    /// Runs one mutation of the push. `Err` only for store failures.
    async fn apply(&self, tx: &mut Tx, mutation: &Mutation) -> Result<Outcome, SyncError> {
        tx.begin_mutation(mutation.scope());
        let client = mutation.client();
        if let Some((client_id, seq)) = client
            && let Some(last) = tx.last_client_seq(client_id).await?
            && seq <= last
        {
            debug!(client_id, seq, last, "duplicate mutation");
            tx.finish_mutation(true, None);
            return Ok(Outcome::Duplicate);
        }
        let outcome = match args_object(mutation) {
            Ok(mutation) => self.inner.mutator.apply(tx, &mutation).await,
            Err(error) => Err(error),
        };
        // What no store can hold fails the mutation for good; a retry would fail the same way.
        let outcome = outcome.map_err(|error| match error {
            MutationError::Store(error) if error.is_invalid_input() => {
                MutationError::invalid_args(error.to_string())
            }
            other => other,
        });
        match outcome {
            Ok(value) => {
                tx.finish_mutation(true, client);
                Ok(Outcome::Applied(value.filter(|value| !value.is_null())))
            }
            Err(MutationError::Failed { code, message }) => {
                debug!(mutation = %mutation.name, %code, %message, "mutation failed");
                tx.finish_mutation(false, client);
                Ok(Outcome::Failed {
                    code: code.into_owned(),
                    message,
                })
            }
            Err(MutationError::Store(error)) => Err(SyncError::Unavailable(error)),
        }
    }

    /// Trims the log to about the `retain` most recent cursors once it holds a tenth more: one
    /// trim per tenth of `retain` commits rather than one per commit.
    async fn enforce_retention(&self, head: u64) {
        let Some(keep) = self.inner.retain else {
            return;
        };
        // At most this many changes are retained: cursors have no gaps.
        let retained = (head + 1).saturating_sub(self.inner.retained_from.load(Ordering::Relaxed));
        if retained <= keep + keep / 10 {
            return;
        }
        let before = (head + 1).saturating_sub(keep);
        match self.inner.backend.trim(before).await {
            Ok(()) => {
                self.inner
                    .retained_from
                    .fetch_max(before, Ordering::Relaxed);
            }
            Err(error) => warn!(%error, "could not trim the change log to its retention"),
        }
    }

    /// A page of a scope's changes after a cursor.
    pub async fn pull(&self, request: PullRequest) -> Result<PullResponse, SyncError> {
        let scope = resolve_scope(request.scope.as_deref())?;
        let limits = &self.inner.limits;
        let limit = if request.limit <= 0 {
            limits.default_pull_limit
        } else {
            usize::try_from(request.limit)
                .unwrap_or(usize::MAX)
                .min(limits.max_pull_limit)
        };
        let cursor = request.cursor;
        let read = self
            .inner
            .backend
            .read(scope, cursor, limit.saturating_add(1))
            .instrument(info_span!("sync.pull", scope, cursor, limit))
            .await?;
        if cursor > read.head {
            return Err(SyncError::CursorAhead {
                cursor,
                head: read.head,
            });
        }
        if read.horizon > cursor {
            return Err(SyncError::CursorTooOld {
                scope: scope.to_owned(),
                cursor,
                horizon: read.horizon,
            });
        }
        let mut changes = read.changes;
        let has_more = changes.len() > limit;
        changes.truncate(limit);
        // Cursors become visible in commit order, so the head read with the page skips nothing.
        let next = changes.last().map_or(read.head, |change| change.cursor);
        Ok(PullResponse {
            changes,
            cursor: next,
            has_more,
        })
    }

    /// A scope's whole data and the cursor it is current at.
    pub async fn snapshot(&self, scope: Option<&str>) -> Result<SnapshotResponse, SyncError> {
        let scope = resolve_scope(scope)?;
        let (data, cursor) = self
            .inner
            .backend
            .snapshot(scope)
            .instrument(info_span!("sync.snapshot", scope))
            .await?;
        Ok(SnapshotResponse { data, cursor })
    }

    /// Removes every change with a cursor below `before`; pulls that would need one answer
    /// `cursor_too_old`.
    pub async fn trim(&self, before: u64) -> Result<(), SyncError> {
        Ok(self.inner.backend.trim(before).await?)
    }

    /// The log's latest cursor.
    pub async fn head(&self) -> Result<u64, SyncError> {
        Ok(self.inner.backend.head().await?)
    }
}

/// How one mutation of a push ended, before the commit gives it a cursor.
enum Outcome {
    Applied(Option<Value>),
    Duplicate,
    Failed { code: String, message: String },
}

impl Outcome {
    /// The mutation's result, now that its commit gave it a cursor.
    fn into_result(
        (outcome, (changes, cursor)): (Self, (Vec<Arc<Change>>, u64)),
    ) -> MutationResult {
        match outcome {
            Outcome::Applied(value) => MutationResult::applied(cursor, changes, value),
            Outcome::Duplicate => MutationResult::duplicate(cursor),
            Outcome::Failed { code, message } => MutationResult::failed(cursor, code, message),
        }
    }
}

/// PROTOCOL: absent or null args mean `{}`; anything but an object fails with `invalid_args`.
fn args_object(mutation: &Mutation) -> Result<Cow<'_, Mutation>, MutationError> {
    match &mutation.args {
        Value::Object(_) => Ok(Cow::Borrowed(mutation)),
        Value::Null => Ok(Cow::Owned(Mutation {
            args: Value::Object(Map::new()),
            ..mutation.clone()
        })),
        other => Err(MutationError::invalid_args(format!(
            "`{}`: args must be a JSON object, got {}",
            mutation.name,
            json_kind(other)
        ))),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl EngineBuilder {
    /// Where data and changes live (default: a new [`MemoryBackend`]).
    pub fn backend(mut self, backend: impl Backend) -> Self {
        self.backend = Some(backend.into_any());
        self
    }

    /// Who is told of changes (default: no one).
    pub fn broker(mut self, broker: impl PokeBroker) -> Self {
        self.broker = Some(Arc::new(broker));
        self
    }

    /// Who may push, pull and snapshot which scope (default: everyone, everything).
    pub fn authorizer(mut self, authorizer: impl Authorizer) -> Self {
        self.authorizer = Some(Arc::new(authorizer));
        self
    }

    /// Request limits. Pull limits below 1 are raised to 1: an empty page must mean that
    /// nothing is left.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Limits {
            default_pull_limit: limits.default_pull_limit.max(1),
            max_pull_limit: limits.max_pull_limit.max(1),
            ..limits
        };
        self
    }

    /// Keep about the `keep` most recent changes: older ones are trimmed after each push, and
    /// clients behind them take a snapshot.
    pub fn retain(mut self, keep: u64) -> Self {
        self.retain = Some(keep);
        self
    }

    /// The hub of this node's live connections (default: a new one). Give the same hub to a
    /// broker that relays other nodes' commits, so that it pokes this node's clients.
    pub fn live_hub(mut self, hub: LiveHub) -> Self {
        self.live = Some(hub);
        self
    }

    /// Settings of the live channel: idle timeout, queue and scope limits.
    pub fn live_options(mut self, options: LiveOptions) -> Self {
        self.live_options = options;
        self
    }

    /// The path the routes are mounted under (default `/_sync`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.prefix = format!("/{}", prefix.trim_matches('/'));
        self
    }

    /// Builds the engine.
    pub fn build(self) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                backend: self
                    .backend
                    .unwrap_or_else(|| AnyBackend::new(MemoryBackend::new())),
                live: self.live.unwrap_or_default(),
                live_options: self.live_options,
                mutator: self.mutator,
                broker: self.broker.unwrap_or_else(|| Arc::new(NoopBroker)),
                authorizer: self.authorizer.unwrap_or_else(|| Arc::new(AllowAll)),
                limits: self.limits,
                retain: self.retain,
                retained_from: AtomicU64::new(1),
                prefix: self.prefix,
            }),
        }
    }
}
