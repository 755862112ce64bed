//! A push: validate, authorize, then apply each mutation in one backend transaction, commit,
//! and poke the scopes it changed.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use serde_json::{Map, Value};
use tracing::{Instrument, debug, info_span, warn};

use super::Engine;
use crate::auth::{Action, Caller, Credentials};
use crate::backend::{Backend, ChangeLog, Failure};
use crate::broker::{Poke, PokeBroker};
use crate::change::Change;
use crate::error::{MutationError, Sentence, StoreError, SyncError};
use crate::json::Json;
use crate::metrics::{self, Operation};
use crate::mutation::{Mutation, MutationResult};
use crate::protocol::PushResponse;
use crate::scope::validate_scope;
use crate::tx::Committed;
use crate::tx::Tx;

impl Engine {
    /// Applies mutations in order, in one backend transaction, and pokes the scopes they
    /// changed.
    ///
    /// A permanent failure of one mutation is answered in its result and the push goes on. A store
    /// failure stops the push with [`SyncError::Unavailable`]: the failing mutation and those after
    /// it are neither applied nor recorded, those before it are committed.
    ///
    /// Code on the server is trusted: nothing is authorized, and the mutations have no caller
    /// ([`push_as`](Engine::push_as) names one).
    pub async fn push(&self, mutations: Vec<Mutation>) -> Result<PushResponse, SyncError> {
        metrics::timed(Operation::Push, async {
            validate_push(&mutations, self.inner.limits.max_mutations)?;
            self.run_push(Caller::none(), mutations).await
        })
        .await
    }

    /// [`push`](Engine::push) on behalf of `identity`, which the mutations get as their caller:
    /// for server code acting for a user (a job, an import, a test). Nothing is authorized.
    pub async fn push_as<I: Send + Sync + 'static>(
        &self,
        identity: I,
        mutations: Vec<Mutation>,
    ) -> Result<PushResponse, SyncError> {
        metrics::timed(Operation::Push, async {
            validate_push(&mutations, self.inner.limits.max_mutations)?;
            self.run_push(Caller::new(identity), mutations).await
        })
        .await
    }

    /// A push from a client: validated whole, then authenticated and every scope it names
    /// authorized, then applied with the identity as the mutations' caller.
    pub(crate) async fn push_from(
        &self,
        credentials: &Credentials<'_>,
        mutations: Vec<Mutation>,
    ) -> Result<PushResponse, SyncError> {
        metrics::timed(Operation::Push, async {
            validate_push(&mutations, self.inner.limits.max_mutations)?;
            let scopes = mutations.iter().map(Mutation::scope);
            let caller = self.admit(credentials, scopes, Action::Push).await?;
            self.run_push(caller, mutations).await
        })
        .await
    }

    async fn run_push(
        &self,
        caller: Caller,
        mutations: Vec<Mutation>,
    ) -> Result<PushResponse, SyncError> {
        let span = info_span!("sync.push", mutations = mutations.len());
        async move {
            let mut tx = Tx::new(self.inner.backend.begin().await?, caller, mutations.len());
            let mut outcomes = Vec::with_capacity(mutations.len());
            let mut failure = None;
            for mutation in &mutations {
                match self.apply(&mut tx, mutation).await {
                    Ok(outcome) => outcomes.push(outcome),
                    Err(error) => {
                        warn!(mutation = %mutation.name, error = %Sentence(&error), "push stopped by a store failure");
                        failure = Some(error);
                        break;
                    }
                }
            }
            // What finished before a store failure is committed all the same (docs/protocol.md,
            // "Permanent and transient failures").
            let (committed, poked) = self.commit_and_poke(tx).await?;
            if let Some(error) = failure {
                return Err(error);
            }
            let results: Vec<MutationResult> = outcomes
                .into_iter()
                .zip(committed)
                .zip(&mutations)
                .map(|((outcome, (changes, cursor)), mutation)| {
                    outcome.into_result(mutation.scope(), changes, cursor)
                })
                .collect();
            let cursor = results
                .iter()
                .map(|result| result.cursor)
                .max()
                .unwrap_or_default();
            if poked {
                self.enforce_retention(cursor).await;
            }
            let log_id = self.inner.backend.log_id().to_owned();
            let response = PushResponse {
                results,
                cursor,
                log_id,
            };
            metrics::mutations(&response);
            Ok(response)
        }
        .instrument(span)
        .await
    }

    /// Commits the push and pokes the scopes it changed, whatever happens to the request: once
    /// the commit is under way, a client that hangs up (which drops the push's future) must not
    /// stop it, nor the pokes that tell everyone of it. Where the commit does not finish at once,
    /// it goes on in a task of its own. Returns each mutation's changes and cursor, and whether
    /// anything was poked.
    async fn commit_and_poke(&self, tx: Tx) -> Result<(Committed, bool), SyncError> {
        let pokes = self.inner.pokes.clone();
        let mut finish = Box::pin(async move {
            let committed = tx.commit().await?;
            let mut latest: BTreeMap<&str, u64> = BTreeMap::new();
            for change in committed.iter().flat_map(|(changes, _)| changes) {
                let cursor = latest.entry(&change.scope).or_default();
                *cursor = (*cursor).max(change.cursor);
            }
            for (scope, cursor) in &latest {
                pokes.poke(&Poke {
                    scope: (*scope).to_owned(),
                    cursor: *cursor,
                });
            }
            let poked = !latest.is_empty();
            Ok::<_, StoreError>((committed, poked))
        });
        // Most commits finish at the first poll (memory, SQLite alone): no task for them.
        if let Poll::Ready(done) = futures::poll!(&mut finish) {
            return Ok(done?);
        }
        let done = tokio::spawn(finish).await.map_err(|error| {
            StoreError::with_source("the task that commits a push stopped", error)
        })?;
        Ok(done?)
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
            // A retry of a failure is answered as the failure was, while it is remembered.
            let failure = tx.failure(client_id, seq).await?;
            tx.finish_mutation(None, None);
            return Ok(Outcome::Duplicate(failure));
        }
        let outcome = match args_object(mutation) {
            Ok(mutation) => self.inner.mutator.apply(tx, &mutation).await,
            Err(error) => Err(error),
        };
        // What no store can hold fails the mutation for good; a retry would fail the same way.
        let outcome = outcome.map_err(|error| match error {
            MutationError::Store(error) if error.is_invalid_input() => {
                metrics::store_error("push", &error);
                MutationError::invalid_args(Sentence(&error).to_string())
            }
            other => other,
        });
        match outcome {
            Ok(value) => {
                tx.finish_mutation(None, client);
                Ok(Outcome::Applied(value.filter(|value| !value.is_null())))
            }
            Err(MutationError::Failed { code, message }) => {
                debug!(mutation = %mutation.name, %code, %message, "mutation failed");
                tx.finish_mutation(Some((&code, &message)), client);
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
            Err(error) => {
                metrics::store_error("trim", &error);
                warn!(error = %Sentence(&error), "could not trim the change log to its retention");
            }
        }
    }
}

/// Checks a push as a whole before anything of it runs: count, names and scopes.
fn validate_push(mutations: &[Mutation], max: usize) -> Result<(), SyncError> {
    if mutations.is_empty() {
        return Err(SyncError::NoMutations);
    }
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
        if let Some(client_id) = &mutation.client_id {
            check_client_id(client_id).map_err(|problem| {
                SyncError::InvalidRequest(format!("mutations[{index}].client_id {problem}"))
            })?;
        }
        if let Some(seq) = mutation.client_seq
            && seq > MAX_CLIENT_SEQ
        {
            return Err(SyncError::InvalidRequest(format!(
                "mutations[{index}].client_seq {seq} is above 2^63-1, the highest a client may use"
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

/// The highest `client_seq` a client may send: what every backend can store.
const MAX_CLIENT_SEQ: u64 = i64::MAX as u64;

/// The longest `client_id`, in UTF-8 bytes.
const MAX_CLIENT_ID_BYTES: usize = 256;

/// A client id is 1 to 256 bytes without control characters; the problem, if not.
pub(crate) fn check_client_id(client_id: &str) -> Result<(), String> {
    if client_id.is_empty() {
        return Err("is empty".to_owned());
    }
    if client_id.len() > MAX_CLIENT_ID_BYTES {
        return Err(format!(
            "is {} bytes long; the limit is {MAX_CLIENT_ID_BYTES}",
            client_id.len()
        ));
    }
    if let Some(c) = client_id.chars().find(|c| c.is_control()) {
        return Err(format!(
            "holds the control character U+{:04X}",
            u32::from(c)
        ));
    }
    Ok(())
}

/// How one mutation of a push ended, before the commit gives it a cursor.
enum Outcome {
    Applied(Option<Json>),
    /// Already processed; how it failed, where it did and is remembered.
    Duplicate(Option<Failure>),
    Failed {
        code: String,
        message: String,
    },
}

impl Outcome {
    /// The mutation's result, now that its commit gave it a cursor. It carries the changes of
    /// the mutation's own scope only: the pusher was authorized for that one, and writes to other
    /// scopes (`Tx::in_scope`) reach their own watchers.
    fn into_result(
        self,
        scope: &str,
        mut changes: Vec<Arc<Change>>,
        cursor: u64,
    ) -> MutationResult {
        match self {
            Outcome::Applied(value) => {
                changes.retain(|change| change.scope == scope);
                MutationResult::applied(cursor, changes, value)
            }
            Outcome::Duplicate(None) => MutationResult::duplicate(cursor),
            Outcome::Duplicate(Some(failure)) => MutationResult {
                duplicate: true,
                ..MutationResult::failed(cursor, failure.code, failure.error)
            },
            Outcome::Failed { code, message } => MutationResult::failed(cursor, code, message),
        }
    }
}

/// The protocol: absent or null args mean `{}`; anything but an object fails with `invalid_args`.
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
