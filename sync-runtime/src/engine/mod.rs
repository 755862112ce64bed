//! The engine: runs pushes, pulls, snapshots and trims against a backend, authenticating and
//! authorizing requests from clients and poking the scopes that commits change.

mod pull;
mod push;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::auth::{
    Action, AuthError, Authenticator, Authorizer, Caller, Credentials, DynAuth, pair,
};
use crate::backend::{AnyBackend, Backend, MemoryBackend};
use crate::broker::{FanoutBroker, LiveHub, PokeBroker};
use crate::error::SyncError;
use crate::mutator::{DynMutator, Mutator};

/// What requests are held to; the protocol's defaults. The limits of the transport (body sizes,
/// deadlines) are the HTTP layer's: [`HttpOptions`](crate::HttpOptions).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Most mutations in one push (default 1000).
    pub max_mutations: usize,
    /// Changes in a pull page when the request names no limit (default 100).
    pub default_pull_limit: usize,
    /// Most changes in a pull page (default 1000).
    pub max_pull_limit: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_mutations: 1000,
            default_pull_limit: 100,
            max_pull_limit: 1000,
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
///     async fn apply(&self, tx: &mut Tx, m: &Mutation) -> Result<Option<sync_runtime::Json>, MutationError> {
///         match m.name.as_str() {
///             "note/set" => {
///                 let id = tx.new_id();
///                 tx.put_value("note", &id, json!({"id": id, "text": m.args["text"]})).await?;
///                 Ok(Some(json!(id).into()))
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
    mutator: Arc<dyn DynMutator>,
    /// This node's live connections, and `broker`: every commit's pokes go to both.
    pokes: Arc<FanoutBroker>,
    live: LiveHub,
    /// `None`: every request allowed, with no caller.
    auth: Option<Arc<dyn DynAuth>>,
    limits: Limits,
    retain: Option<u64>,
    /// The lowest cursor the log may still hold: changes below it were trimmed for the
    /// retention.
    retained_from: AtomicU64,
}

/// Builds an [`Engine`]: [`Engine::builder`] takes the mutator, the rest has defaults.
///
/// Defaults: a [`MemoryBackend`], live connections of this node only (no broker to other nodes),
/// no authentication (every request allowed everything, and mutations have no caller), the
/// protocol's [`Limits`], no retention limit.
#[must_use]
pub struct EngineBuilder {
    mutator: Arc<dyn DynMutator>,
    live: Option<LiveHub>,
    backend: Option<AnyBackend>,
    broker: Option<Arc<dyn PokeBroker>>,
    auth: Option<Arc<dyn DynAuth>>,
    limits: Limits,
    retain: Option<u64>,
}

impl Engine {
    /// Starts building an engine that applies pushed mutations with `mutator`.
    pub fn builder(mutator: impl Mutator) -> EngineBuilder {
        EngineBuilder {
            mutator: Arc::new(mutator),
            live: None,
            backend: None,
            broker: None,
            auth: None,
            limits: Limits::default(),
            retain: None,
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

    /// Whether requests are authenticated (the engine was given [`auth`](EngineBuilder::auth)).
    pub(crate) fn has_auth(&self) -> bool {
        self.inner.auth.is_some()
    }

    /// The lowest cursor the log may still hold, as far as this node's trims know.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn retained_from(&self) -> u64 {
        self.inner
            .retained_from
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The limits requests are held to.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Authenticates a client's request, then authorizes each distinct scope, in order (the
    /// first refusal wins): the caller its mutations get.
    pub(crate) async fn admit<'a>(
        &self,
        credentials: &Credentials<'_>,
        scopes: impl IntoIterator<Item = &'a str>,
        action: Action,
    ) -> Result<Caller, SyncError> {
        let caller = self.authenticate(credentials).await?;
        let scopes: BTreeSet<&str> = scopes.into_iter().collect();
        for scope in scopes {
            self.authorize(&caller, scope, action).await?;
        }
        Ok(caller)
    }

    /// The identity these credentials prove; no identity where the engine has no
    /// authenticator.
    pub(crate) async fn authenticate(
        &self,
        credentials: &Credentials<'_>,
    ) -> Result<Caller, AuthError> {
        match &self.inner.auth {
            Some(auth) => auth.authenticate(credentials).await,
            None => Ok(Caller::none()),
        }
    }

    /// Whether `caller` may do `action` with `scope`.
    pub(crate) async fn authorize(
        &self,
        caller: &Caller,
        scope: &str,
        action: Action,
    ) -> Result<(), AuthError> {
        match &self.inner.auth {
            Some(auth) => {
                auth.authorize(caller, scope, action, &self.inner.backend)
                    .await
            }
            None => Ok(()),
        }
    }
}

impl EngineBuilder {
    /// Where data and changes live (default: a new [`MemoryBackend`]).
    pub fn backend(mut self, backend: impl Backend) -> Self {
        self.backend = Some(backend.into_any());
        self
    }

    /// Who else is told of changes, e.g. other nodes (default: no one but this node's live
    /// connections).
    pub fn broker(mut self, broker: impl PokeBroker) -> Self {
        self.broker = Some(Arc::new(broker));
        self
    }

    /// How requests are authenticated, and who may push, pull, snapshot and watch which scope
    /// (default: no authentication, every request allowed everything). The authenticator's
    /// identity is what the authorizer is asked about and what mutations get as their
    /// [`Caller`].
    ///
    /// ```
    /// use sync_runtime::{AuthError, Credentials, Engine, ScopeRules};
    ///
    /// struct User { name: String }
    ///
    /// // A real app checks a signed token or a session here.
    /// let authenticate = |credentials: &Credentials<'_>| match credentials.bearer() {
    ///     Some(name) => Ok(User { name: name.to_owned() }),
    ///     None => Err(AuthError::unauthorized("send `Authorization: Bearer <token>`")),
    /// };
    /// let rules = ScopeRules::new().personal("user:", |user: &User| &user.name);
    /// # let mutator = sync_runtime::MutatorFunc::new(|_, _| Box::pin(async { Ok(None) }));
    /// let engine = Engine::builder(mutator).auth(authenticate, rules).build();
    /// # let _ = engine;
    /// ```
    pub fn auth<A: Authenticator>(
        mut self,
        authenticator: A,
        authorizer: impl Authorizer<A::Identity>,
    ) -> Self {
        self.auth = Some(pair(authenticator, authorizer));
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

    /// Keep about the `keep` most recent changes: older ones are trimmed once the log holds a
    /// tenth more, and clients behind them take a snapshot.
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

    /// Builds the engine.
    pub fn build(self) -> Engine {
        let live = self.live.unwrap_or_default();
        let mut pokes = FanoutBroker::new().with(live.clone());
        if let Some(broker) = self.broker {
            pokes = pokes.with(broker);
        }
        Engine {
            inner: Arc::new(Inner {
                backend: self
                    .backend
                    .unwrap_or_else(|| AnyBackend::new(MemoryBackend::new())),
                mutator: self.mutator,
                pokes: Arc::new(pokes),
                live,
                auth: self.auth,
                limits: self.limits,
                retain: self.retain,
                retained_from: AtomicU64::new(1),
            }),
        }
    }
}
