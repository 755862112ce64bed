//! The hub of this node's live connections: which connections joined which scope, and what
//! waits to be sent to each.
//!
//! Each connection has an [`Outbox`]: pokes merge per scope into the latest cursor, and replies
//! wait in a short bounded queue. A poke never waits for a connection, so a client that stops
//! reading slows down neither pushes nor other clients, and its memory stays bounded by the
//! number of scopes it joined.
//!
//! A poke is encoded once, by the hub, into a frame that every outbox of its scope shares (a
//! reference count, no copy): with 10,000 connections on a scope, encoding it per connection
//! was most of what the engine added to a bare broadcast server's latency (BENCHMARKS.md).

use std::collections::{HashMap, VecDeque};
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

/// The connections that joined one scope, by connection id.
type Watchers = HashMap<u64, Arc<Outbox>>;

#[derive(Default)]
struct HubInner {
    /// The scope names are shared with the outboxes' pending pokes, which copy no name.
    scopes: RwLock<HashMap<Arc<str>, Watchers>>,
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
        let scopes = self.inner.scopes.read();
        scopes
            .keys()
            .map(|scope| scope.as_ref().to_owned())
            .collect()
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
        let watchers = match scopes.get_mut(scope) {
            Some(watchers) => watchers,
            None => scopes.entry(Arc::from(scope)).or_default(),
        };
        watchers.insert(id, Arc::clone(outbox));
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
        let Some((scope, watchers)) = scopes.get_key_value(poke.scope.as_str()) else {
            return;
        };
        let frame = PokeFrame {
            cursor: poke.cursor,
            text: crate::http::poke_frame(poke),
        };
        for outbox in watchers.values() {
            outbox.poke(scope, &frame);
        }
    }
}

/// A poke as it goes out: its cursor, to merge it with the next, and its encoded frame, shared by
/// every connection of the scope.
#[derive(Clone, Debug)]
pub(crate) struct PokeFrame {
    pub(crate) cursor: u64,
    pub(crate) text: Utf8Bytes,
}

/// What waits to be sent to one connection: pokes merged per scope, which the hub delivers, and
/// the connection's own replies in a short bounded queue.
pub(crate) struct Outbox {
    state: Mutex<OutboxState>,
    /// Wakes the writer when something was queued or the connection closes.
    pub(crate) ready: Notify,
    capacity: usize,
}

/// The pokes waiting in an outbox, or being sent by its writer: the latest of each scope, in the
/// order their scopes were first poked. A vector, searched by the scope: a connection has one
/// pending poke per scope it joined at most, and usually one, which a map would allocate a node
/// for at every poke.
pub(crate) type PendingPokes = Vec<(Arc<str>, PokeFrame)>;

#[derive(Default)]
struct OutboxState {
    /// The latest unsent poke of each scope.
    pokes: PendingPokes,
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

    /// Merges a poke into the pending one of its scope, the later cursor winning; never waits.
    pub(crate) fn poke(&self, scope: &Arc<str>, frame: &PokeFrame) {
        {
            let mut state = self.state.lock();
            // The hub hands every outbox the same name while the scope has watchers: comparing
            // the pointers first spares comparing the names.
            let pending = state
                .pokes
                .iter_mut()
                .find(|(name, _)| Arc::ptr_eq(name, scope) || name == scope);
            match pending {
                Some((_, pending)) if pending.cursor >= frame.cursor => {
                    crate::metrics::poke_merged();
                }
                Some((_, pending)) => {
                    *pending = frame.clone();
                    crate::metrics::poke_merged();
                }
                None => {
                    // Room for one, not the four a first push makes: most connections watch
                    // one scope, and the outbox and its writer each keep a vector.
                    if state.pokes.capacity() == 0 {
                        state.pokes.reserve_exact(1);
                    }
                    state.pokes.push((Arc::clone(scope), frame.clone()));
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

    /// Everything queued: swaps the pending pokes with `pokes`, which the writer passes empty,
    /// so that the two vectors take turns and a poke allocates nothing; returns the replies
    /// (send the pokes first, so that a heartbeat answer follows every poke queued before it).
    /// `Err` with the close frame once the connection closes.
    pub(crate) fn take_into(
        &self,
        pokes: &mut PendingPokes,
    ) -> Result<VecDeque<String>, CloseFrame> {
        let mut state = self.state.lock();
        if let Some(frame) = state.closing.take() {
            return Err(frame);
        }
        std::mem::swap(&mut state.pokes, pokes);
        // Taken, not swapped: replies are rare, and a kept queue would cost every idle
        // connection its capacity.
        Ok(std::mem::take(&mut state.replies))
    }

    /// Everything queued, for tests: the pending pokes and the replies.
    #[cfg(test)]
    pub(crate) fn take(&self) -> Result<(Vec<PokeFrame>, VecDeque<String>), CloseFrame> {
        let mut pokes = PendingPokes::new();
        let replies = self.take_into(&mut pokes)?;
        Ok((pokes.into_iter().map(|(_, poke)| poke).collect(), replies))
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

    fn poke(outbox: &Outbox, scope: &str, cursor: u64) {
        let poke = Poke {
            scope: scope.to_owned(),
            cursor,
        };
        let text = crate::http::poke_frame(&poke);
        outbox.poke(&Arc::from(scope), &PokeFrame { cursor, text });
    }

    #[test]
    fn pokes_merge_per_scope_and_replies_are_bounded() {
        let outbox = Outbox::new(2);
        for cursor in 1..=3000 {
            poke(&outbox, if cursor % 2 == 0 { "a" } else { "b" }, cursor);
        }
        // An older poke arriving late (two commits poking out of order) changes nothing.
        poke(&outbox, "a", 5);
        assert_eq!(outbox.len(), 2, "one pending poke per scope");
        assert!(outbox.try_reply("1".into()) && outbox.try_reply("2".into()));
        assert!(
            !outbox.try_reply("3".into()),
            "a full reply queue drops heartbeat answers"
        );
        let (pokes, replies) = outbox.take().unwrap_or_default();
        let texts: Vec<&str> = pokes.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                r#"{"type":11,"ref":0,"payload":{"scope":"b","cursor":2999}}"#,
                r#"{"type":11,"ref":0,"payload":{"scope":"a","cursor":3000}}"#
            ],
            "in the order their scopes were first poked"
        );
        assert_eq!(replies, ["1", "2"]);
        assert_eq!(outbox.len(), 0);
    }

    /// The writer's vector and the outbox's take turns: a take hands over the pending pokes and
    /// keeps the (emptied) vector it was given for the next pokes, which merge by the scope's
    /// name whether or not they come with the same shared name.
    #[test]
    fn taking_swaps_the_pending_pokes_with_the_writers_vector() {
        let outbox = Outbox::new(2);
        let mut sending = PendingPokes::with_capacity(4);
        let spare = sending.as_ptr();
        poke(&outbox, "a", 1);
        assert!(outbox.take_into(&mut sending).is_ok_and(|r| r.is_empty()));
        assert_eq!(sending.len(), 1);
        assert_eq!(sending[0].1.cursor, 1);
        sending.clear();
        // `poke` makes a new `Arc<str>` each time: these merge by name.
        poke(&outbox, "a", 2);
        poke(&outbox, "a", 3);
        let mut next = PendingPokes::new();
        assert!(outbox.take_into(&mut next).is_ok());
        assert_eq!(next.len(), 1, "merged into the latest");
        assert_eq!(next[0].1.cursor, 3);
        assert_eq!(
            next.as_ptr(),
            spare,
            "the pokes went into the vector handed over before"
        );
    }

    /// A poke is encoded once per scope: every connection's outbox holds the same bytes.
    #[test]
    fn a_poke_is_encoded_once_for_every_connection_of_its_scope() {
        let hub = LiveHub::new();
        let outboxes: Vec<Arc<Outbox>> = (0..3).map(|_| Arc::new(Outbox::new(4))).collect();
        for outbox in &outboxes {
            hub.join("s", hub.next_id(), outbox);
        }
        hub.poke(&Poke {
            scope: "s".to_owned(),
            cursor: 7,
        });
        let frames: Vec<PokeFrame> = outboxes
            .iter()
            .flat_map(|outbox| outbox.take().unwrap_or_default().0)
            .collect();
        assert_eq!(frames.len(), 3);
        let first = frames[0].text.as_str();
        assert_eq!(
            first,
            r#"{"type":11,"ref":0,"payload":{"scope":"s","cursor":7}}"#
        );
        for frame in &frames {
            assert_eq!(
                frame.text.as_str().as_ptr(),
                first.as_ptr(),
                "shared, not copied"
            );
        }
    }
}
