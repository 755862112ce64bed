//! Pokes across engine nodes through PostgreSQL's LISTEN/NOTIFY: a commit on one node pokes the
//! live clients of every node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};
use tracing::{debug, info, warn};

use super::LiveHub;
use crate::backend::{AnyBackend, Backend, ChangeLog};
use crate::broker::{Poke, PokeBroker};
use crate::error::{Sentence, StoreError};

/// The channel the nodes notify on.
const CHANNEL: &str = "sync_pokes";

/// How a [`PostgresBroker`] watches its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresBrokerOptions {
    /// How often an idle relay asks the server whether its connection still works, and how long
    /// it waits for any answer before it reconnects (default 15 s): a connection can go
    /// half-open, without an error, and the relay would hear no other node's commit again.
    pub heartbeat: Duration,
}

impl Default for PostgresBrokerOptions {
    fn default() -> Self {
        PostgresBrokerOptions {
            heartbeat: Duration::from_secs(15),
        }
    }
}

/// Relays pokes between engine nodes that share a PostgreSQL database.
///
/// As a [`PokeBroker`] it publishes this node's pokes with `NOTIFY`; it `LISTEN`s for the other
/// nodes' and pokes this node's [`LiveHub`] with them. Publishing never waits: pokes queue, merged
/// per scope, for a background task. When the connection drops, the task reconnects with
/// backoff and then pokes every scope this node's clients joined, with its latest cursor, so that
/// they pull whatever they may have missed meanwhile.
///
/// ```no_run
/// use sync_runtime::{Engine, LiveHub, PostgresBackend, PostgresBroker};
/// # async fn node(url: &str, mutator: impl sync_runtime::Mutator) -> Result<(), sync_runtime::StoreError> {
/// let backend = PostgresBackend::connect(url).await?;
/// let hub = LiveHub::new();
/// let broker = PostgresBroker::start(url, hub.clone(), backend.clone()).await?;
/// let engine = Engine::builder(mutator).backend(backend).live_hub(hub).broker(broker).build();
/// # let _ = engine; Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresBroker {
    shared: Arc<Shared>,
    _task: Arc<StopOnDrop>,
}

struct Shared {
    /// This node's pokes not yet published: the latest cursor per scope.
    pending: Mutex<BTreeMap<String, u64>>,
    ready: Notify,
    /// Tells this node's notifications from the others'.
    node: String,
}

/// Stops the background task when the last clone of the broker is dropped.
struct StopOnDrop(AbortHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Serialize, Deserialize)]
struct Notification {
    node: String,
    scope: String,
    cursor: u64,
}

impl PostgresBroker {
    /// Connects to the database at `url`, listens, and starts relaying. `backend` answers the
    /// scopes' cursors after a reconnection.
    pub async fn start(
        url: &str,
        hub: LiveHub,
        backend: impl Backend,
    ) -> Result<PostgresBroker, StoreError> {
        Self::start_with(url, hub, backend, PostgresBrokerOptions::default()).await
    }

    /// [`start`](PostgresBroker::start) with `options`.
    pub async fn start_with(
        url: &str,
        hub: LiveHub,
        backend: impl Backend,
        options: PostgresBrokerOptions,
    ) -> Result<PostgresBroker, StoreError> {
        let mut config: Config = url.parse().map_err(|error| {
            StoreError::with_source("PostgreSQL: the connection URL is invalid", error)
        })?;
        config.application_name("sync-poke-broker");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        let shared = Arc::new(Shared {
            pending: Mutex::new(BTreeMap::new()),
            ready: Notify::new(),
            node: uuid::Uuid::now_v7().to_string(),
        });
        // The first connection is made here, so that a wrong URL fails at start.
        let session = listen(&config, &hub, &shared.node).await?;
        let relay = Relay {
            config,
            heartbeat: options.heartbeat.max(Duration::from_millis(1)),
            hub,
            backend: backend.into_any(),
            shared: Arc::clone(&shared),
        };
        let task = tokio::spawn(relay.run(session));
        Ok(PostgresBroker {
            shared,
            _task: Arc::new(StopOnDrop(task.abort_handle())),
        })
    }
}

impl PokeBroker for PostgresBroker {
    fn poke(&self, poke: &Poke) {
        {
            let mut pending = self.shared.pending.lock();
            let cursor = pending.entry(poke.scope.clone()).or_default();
            *cursor = (*cursor).max(poke.cursor);
        }
        self.shared.ready.notify_one();
    }
}

/// A listening connection: the client to publish on, and the task that reads notifications.
struct Session {
    client: Client,
    reader: tokio::task::JoinHandle<()>,
}

/// Connects, starts reading notifications into `hub`, and listens.
async fn listen(config: &Config, hub: &LiveHub, node: &str) -> Result<Session, StoreError> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(|error| {
        StoreError::with_source("PostgreSQL: the poke broker cannot connect", error)
    })?;
    let (hub, node) = (hub.clone(), node.to_owned());
    let reader = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(note)) => {
                    match serde_json::from_str::<Notification>(note.payload()) {
                        Ok(poke) if poke.node != node => {
                            hub.poke(&Poke {
                                scope: poke.scope,
                                cursor: poke.cursor,
                            });
                        }
                        Ok(_) => {}
                        Err(error) => warn!(%error, "ignoring a malformed poke notification"),
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    warn!(%error, "the poke broker's connection failed");
                    return;
                }
            }
        }
    });
    let session = Session { client, reader };
    session
        .client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|error| {
            StoreError::with_source("PostgreSQL: the poke broker cannot LISTEN", error)
        })?;
    Ok(session)
}

struct Relay {
    config: Config,
    heartbeat: Duration,
    hub: LiveHub,
    backend: AnyBackend,
    shared: Arc<Shared>,
}

impl Relay {
    async fn run(self, first: Session) {
        let mut session = first;
        loop {
            self.publish(&mut session).await;
            session.reader.abort();
            session = self.reconnect().await;
            self.poke_every_joined_scope().await;
        }
    }

    /// Publishes pending pokes until the connection fails.
    async fn publish(&self, session: &mut Session) {
        loop {
            let ready = self.shared.ready.notified();
            let pending = std::mem::take(&mut *self.shared.pending.lock());
            if pending.is_empty() {
                tokio::select! {
                    () = ready => continue,
                    _ = &mut session.reader => return,
                    // A connection can go half-open without an error: ask the server now and
                    // then, and reconnect where it does not answer.
                    () = tokio::time::sleep(self.heartbeat) => {
                        let alive = session.client.simple_query("");
                        let alive = tokio::time::timeout(self.heartbeat, alive);
                        if !matches!(alive.await, Ok(Ok(_))) {
                            warn!("the poke broker's connection stopped answering; reconnecting");
                            return;
                        }
                        continue;
                    }
                }
            }
            let mut unsent = pending.into_iter();
            while let Some((scope, cursor)) = unsent.next() {
                let note = Notification {
                    node: self.shared.node.clone(),
                    scope,
                    cursor,
                };
                let payload = serde_json::to_string(&note).unwrap_or_default();
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&CHANNEL, &payload];
                let sent = session.client.execute("SELECT pg_notify($1, $2)", &params);
                let sent = match tokio::time::timeout(self.heartbeat, sent).await {
                    Ok(sent) => sent.map(drop).map_err(|error| error.to_string()),
                    Err(_) => Err("no answer".to_owned()),
                };
                if let Err(error) = sent {
                    warn!(%error, "the poke broker cannot NOTIFY; reconnecting");
                    // What was not sent goes out after the reconnection.
                    let mut pending = self.shared.pending.lock();
                    for (scope, cursor) in std::iter::once((note.scope, note.cursor)).chain(unsent)
                    {
                        let pending = pending.entry(scope).or_default();
                        *pending = (*pending).max(cursor);
                    }
                    return;
                }
            }
        }
    }

    async fn reconnect(&self) -> Session {
        let mut delay = Duration::from_millis(100);
        loop {
            tokio::time::sleep(delay).await;
            match listen(&self.config, &self.hub, &self.shared.node).await {
                Ok(session) => {
                    info!("the poke broker reconnected");
                    return session;
                }
                Err(error) => {
                    warn!(error = %Sentence(&error), retry_in = ?delay, "the poke broker cannot reconnect");
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Other nodes' commits while the connection was down were not heard: poke every joined
    /// scope so that its clients pull.
    async fn poke_every_joined_scope(&self) {
        for scope in self.hub.scopes() {
            match self.backend.scope_cursor(&scope).await {
                Ok(cursor) => self.hub.poke(&Poke { scope, cursor }),
                Err(error) => {
                    debug!(error = %Sentence(&error), scope, "cannot read a cursor after reconnecting");
                }
            }
        }
    }
}
