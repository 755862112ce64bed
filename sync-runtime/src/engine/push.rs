//! A push: validate, authorize, then apply each mutation in one backend transaction, commit,
//! and poke the scopes it changed.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::HeaderMap;
use serde_json::{Map, Value};
use tracing::{Instrument, debug, info_span, warn};

use super::Engine;
use crate::auth::Action;
use crate::backend::{Backend, ChangeLog};
use crate::broker::{Poke, PokeBroker};
use crate::change::Change;
use crate::error::{MutationError, Sentence, SyncError};
use crate::mutation::{Mutation, MutationResult};
use crate::protocol::PushResponse;
use crate::scope::validate_scope;
use crate::tx::Tx;

impl Engine {
    /// Applies mutations in order, in one backend transaction, and pokes the scopes they
    /// changed.
    ///
    /// A permanent failure of one mutation is answered in its result and the push goes on. A store
    /// failure stops the push with [`SyncError::Unavailable`]: the failing mutation and those after
    /// it are neither applied nor recorded, those before it are committed.
    pub async fn push(&self, mutations: Vec<Mutation>) -> Result<PushResponse, SyncError> {
        self.push_from(None, mutations).await
    }

    /// A push from a client: validated whole, then every scope it names authorized with the
    /// request's headers, then applied. Code on the server (`headers: None`) is trusted.
    pub(crate) async fn push_from(
        &self,
        headers: Option<&HeaderMap>,
        mutations: Vec<Mutation>,
    ) -> Result<PushResponse, SyncError> {
        validate_push(&mutations, self.inner.limits.max_mutations)?;
        if let Some(headers) = headers {
            let scopes = mutations.iter().map(Mutation::scope);
            self.authorize(headers, None, scopes, Action::Push).await?;
        }
        let span = info_span!("sync.push", mutations = mutations.len());
        async move {
            let mut tx = Tx::new(self.inner.backend.begin().await?);
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
                self.inner.pokes.poke(poke);
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
                MutationError::invalid_args(Sentence(&error).to_string())
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
            Err(error) => {
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
