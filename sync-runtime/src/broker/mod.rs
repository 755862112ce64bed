//! Poke brokers: how the engine tells live connections that a scope changed, on this node (the
//! [`LiveHub`]) and on others (e.g. [`PostgresBroker`]).

mod hub;
#[cfg(feature = "postgres")]
mod postgres;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use ts_rs::TS;

pub use hub::LiveHub;
pub(crate) use hub::{Outbox, PendingPokes};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresBroker, PostgresBrokerOptions};

/// A scope changed; its latest change cursor is `cursor`. Pokes carry no data: a client that
/// gets one pulls.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
pub struct Poke {
    /// The scope that changed.
    pub scope: String,
    /// Its latest change cursor.
    pub cursor: u64,
}

/// Notifies watchers of a scope that its data changed. Called after every push that committed a
/// change, once per scope touched, with the scope's highest new cursor.
///
/// `poke` must not block: the engine calls it on the push's path.
pub trait PokeBroker: Send + Sync + 'static {
    /// Notifies the watchers of `poke.scope`.
    fn poke(&self, poke: &Poke);
}

/// A broker that tells no one, for engines without live connections.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopBroker;

impl PokeBroker for NoopBroker {
    fn poke(&self, _poke: &Poke) {}
}

/// A broker that passes every poke to several others, e.g. the local live connections and a
/// broker that reaches other nodes.
#[derive(Clone, Default)]
pub struct FanoutBroker {
    brokers: Vec<Arc<dyn PokeBroker>>,
}

impl FanoutBroker {
    /// A fan-out to no one yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a broker.
    pub fn with(mut self, broker: impl PokeBroker) -> Self {
        self.brokers.push(Arc::new(broker));
        self
    }
}

impl PokeBroker for FanoutBroker {
    fn poke(&self, poke: &Poke) {
        for broker in &self.brokers {
            broker.poke(poke);
        }
    }
}

/// A broker that publishes pokes on a [`tokio::sync::broadcast`] channel that anyone can
/// [`subscribe`](BroadcastBroker::subscribe) to. A subscriber that lags loses the oldest pokes
/// and is told so by the channel.
#[derive(Clone, Debug)]
pub struct BroadcastBroker {
    sender: broadcast::Sender<Poke>,
}

impl BroadcastBroker {
    /// A broker whose subscribers may lag by up to `capacity` pokes.
    pub fn new(capacity: usize) -> Self {
        BroadcastBroker {
            sender: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// A receiver of every poke from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Poke> {
        self.sender.subscribe()
    }
}

impl PokeBroker for BroadcastBroker {
    fn poke(&self, poke: &Poke) {
        // No subscriber is not an error: nobody is watching.
        let _ = self.sender.send(poke.clone());
    }
}

impl<F> PokeBroker for F
where
    F: Fn(&Poke) + Send + Sync + 'static,
{
    fn poke(&self, poke: &Poke) {
        self(poke);
    }
}

impl<B: PokeBroker + ?Sized> PokeBroker for Arc<B> {
    fn poke(&self, poke: &Poke) {
        (**self).poke(poke);
    }
}
