//! The hub of this node's live connections: which connections joined which scope, and what
//! waits to be sent to each.
//!
//! Each connection has an [`Outbox`]: pokes merge per scope into the latest cursor, and replies
//! wait in a short bounded queue. A poke never waits for a connection, so a client that stops
//! reading slows down neither pushes nor other clients, and its memory stays bounded by the
//! number of scopes it joined.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::{CloseFrame, Utf8Bytes};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use super::{Poke, PokeBroker};

/// The local live connections, by scope. As a [`PokeBroker`] it pokes every connection that
/// joined the scope; an engine pokes its hub after every commit, and a broker that reaches other
/// nodes pokes it for their commits. Cheap to clone; clones share the connections.
#[derive(Clone, Default)]
pub struct LiveHub {
    inner: Arc<HubInner>,
}

#[derive(Default)]
struct HubInner {
    scopes: RwLock<HashMap<String, HashMap<u64, Arc<Outbox>>>>,
    next_id: AtomicU64,
}

impl LiveHub {
    /// A hub without connections.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many connections joined `scope`.
    pub fn watchers(&self, scope: &str) -> usize {
        self.inner.scopes.read().get(scope).map_or(0, HashMap::len)
    }

    /// The scopes some connection joined.
    pub fn scopes(&self) -> Vec<String> {
        self.inner.scopes.read().keys().cloned().collect()
    }

    /// The frames waiting in this node's outboxes: what it holds for clients that read slowly.
    /// At most one poke per joined scope and the reply queue per connection, however many
    /// commits there were.
    pub fn queued(&self) -> usize {
        let scopes = self.inner.scopes.read();
        let outboxes: HashMap<u64, &Arc<Outbox>> = scopes
            .values()
            .flat_map(|watchers| watchers.iter().map(|(id, o)| (*id, o)))
            .collect();
        outboxes.values().map(|outbox| outbox.len()).sum()
    }

    /// A new connection's id.
    pub(crate) fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn join(&self, scope: &str, id: u64, outbox: &Arc<Outbox>) {
        let mut scopes = self.inner.scopes.write();
        scopes
            .entry(scope.to_owned())
            .or_default()
            .insert(id, Arc::clone(outbox));
    }

    pub(crate) fn leave(&self, scope: &str, id: u64) {
        let mut scopes = self.inner.scopes.write();
        if let Some(watchers) = scopes.get_mut(scope) {
            watchers.remove(&id);
            if watchers.is_empty() {
                scopes.remove(scope);
            }
        }
    }
}

impl PokeBroker for LiveHub {
    fn poke(&self, poke: &Poke) {
        let scopes = self.inner.scopes.read();
        for outbox in scopes
            .get(&poke.scope)
            .into_iter()
            .flat_map(HashMap::values)
        {
            outbox.poke(&poke.scope, poke.cursor);
        }
    }
}

/// What waits to be sent to one connection: pokes merged per scope, which the hub delivers, and
/// the connection's own replies in a short bounded queue.
pub(crate) struct Outbox {
    state: Mutex<OutboxState>,
    /// Wakes the writer when something was queued or the connection closes.
    pub(crate) ready: Notify,
    capacity: usize,
}

#[derive(Default)]
struct OutboxState {
    /// The latest unsent cursor of each scope.
    pokes: BTreeMap<String, u64>,
    replies: VecDeque<String>,
    closing: Option<CloseFrame>,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Outbox {
            state: Mutex::new(OutboxState::default()),
            ready: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    /// Frames waiting: pokes and replies.
    pub(crate) fn len(&self) -> usize {
        let state = self.state.lock();
        state.pokes.len() + state.replies.len()
    }

    /// Merges a poke into the pending one of its scope; never waits.
    pub(crate) fn poke(&self, scope: &str, cursor: u64) {
        {
            let mut state = self.state.lock();
            match state.pokes.get_mut(scope) {
                Some(pending) => {
                    *pending = (*pending).max(cursor);
                    crate::metrics::poke_merged();
                }
                None => {
                    state.pokes.insert(scope.to_owned(), cursor);
                }
            }
        }
        self.ready.notify_one();
    }

    /// Queues a reply unless the queue is full; returns whether it was queued.
    pub(crate) fn try_reply(&self, frame: String) -> bool {
        let queued = {
            let mut state = self.state.lock();
            let fits = state.replies.len() < self.capacity;
            if fits {
                state.replies.push_back(frame);
            }
            fits
        };
        if queued {
            self.ready.notify_one();
        }
        queued
    }

    pub(crate) fn close(&self, frame: CloseFrame) {
        self.state.lock().closing = Some(frame);
        self.ready.notify_one();
    }

    /// Closes normally, unless a close (e.g. for idleness) is already queued.
    pub(crate) fn close_unless_closing(&self) {
        self.state.lock().closing.get_or_insert(CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: Utf8Bytes::from_static(""),
        });
        self.ready.notify_one();
    }

    /// Everything queued: the pending pokes and the replies (send the pokes first, so that a
    /// heartbeat answer follows every poke queued before it); `Err` with the close frame once
    /// the connection closes.
    pub(crate) fn take(&self) -> Result<(Vec<Poke>, VecDeque<String>), CloseFrame> {
        let mut state = self.state.lock();
        if let Some(frame) = state.closing.take() {
            return Err(frame);
        }
        let pokes = std::mem::take(&mut state.pokes);
        let replies = std::mem::take(&mut state.replies);
        drop(state);
        let pokes = pokes
            .into_iter()
            .map(|(scope, cursor)| Poke { scope, cursor })
            .collect();
        Ok((pokes, replies))
    }
}

/// Pokes still waiting when the connection is gone were never sent.
impl Drop for Outbox {
    fn drop(&mut self) {
        crate::metrics::pokes_dropped(self.state.get_mut().pokes.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pokes_merge_per_scope_and_replies_are_bounded() {
        let outbox = Outbox::new(2);
        for cursor in 1..=3000 {
            outbox.poke(if cursor % 2 == 0 { "a" } else { "b" }, cursor);
        }
        assert_eq!(outbox.len(), 2, "one pending poke per scope");
        assert!(outbox.try_reply("1".into()) && outbox.try_reply("2".into()));
        assert!(
            !outbox.try_reply("3".into()),
            "a full reply queue drops heartbeat answers"
        );
        let (pokes, replies) = outbox.take().unwrap_or_default();
        let pokes: Vec<(&str, u64)> = pokes.iter().map(|p| (p.scope.as_str(), p.cursor)).collect();
        assert_eq!(pokes, [("a", 3000), ("b", 2999)]);
        assert_eq!(replies, ["1", "2"]);
        assert_eq!(outbox.len(), 0);
    }
}
