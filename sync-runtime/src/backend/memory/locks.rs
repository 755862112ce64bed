//! The memory backend's locks, which a push takes as it first reads (or, at commit, writes)
//! what they cover and holds until it commits or is dropped: one per entity, one per entity type
//! of a scope, one per client.
//!
//! A push that reads or writes an entity holds the entity's lock and its type's lock in shared
//! mode; a push that lists a type holds the type's lock alone (no entity of that type can then be
//! created, changed or deleted under it); one that reads or records a client's sequence number
//! holds the client's lock. Pushes that share no entity, no listed type and no client run side
//! by side, even within one scope; those that share one run one after the other in the order they
//! asked for it, so that each reads a state no concurrent push changes (the
//! [`Backend::begin`](crate::Backend::begin) contract), as under strict two-phase locking. Locks
//! are taken in whatever order mutations read, so two pushes can wait for each other: a push that
//! would close such a cycle fails at once with a [`StoreError`] (its client retries, as after
//! PostgreSQL's deadlock detection) instead of waiting forever.
//!
//! One lock per scope serialized every push to a scope (16 pushers in one scope served 0.57–0.96×
//! of one, BENCHMARKS.md): two pushes of a todo list's clients, writing different todos, waited
//! for each other for nothing.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::{DefaultHashBuilder, HashMap};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::StoreError;

/// What a lock covers, as a 64-bit hash of its kind and names ([`Locks::entity`],
/// [`Locks::entities`], [`Locks::client`]): taking one allocates nothing. Two names with the
/// same hash share a lock, which only makes their pushes wait for each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct LockKey(u64);

/// How a lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// With other shared holders: the type of an entity a push reads or writes.
    Shared,
    /// Alone: an entity, a client, or a type a push lists.
    Exclusive,
}

/// Every lock held or waited for, behind one short-held mutex.
#[derive(Debug, Default)]
pub(super) struct Locks {
    table: Mutex<Table>,
    next_holder: AtomicU64,
    /// Seeded at random for each backend, so that no client can choose names that collide.
    hasher: DefaultHashBuilder,
}

#[derive(Debug, Default)]
struct Table {
    /// The locks held or waited for; a lock nobody holds or waits for has no entry.
    held: HashMap<LockKey, Held>,
    /// The lock each waiting push waits for (one at most: it waits inside one read).
    waiting: HashMap<u64, LockKey>,
}

#[derive(Debug)]
struct Held {
    mode: Mode,
    /// One where exclusive.
    holders: Holders,
    /// The pushes waiting, first come first served (a shared holder that wants the lock alone
    /// first of all); the lock is handed to them directly.
    queue: VecDeque<Waiter>,
}

/// The holders of a lock, the first inline: an exclusive lock has one, and taking it allocates
/// nothing.
#[derive(Debug, Default)]
struct Holders {
    first: Option<u64>,
    more: Vec<u64>,
}

impl Holders {
    fn one(holder: u64) -> Self {
        Holders {
            first: Some(holder),
            more: Vec::new(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.first.iter().chain(&self.more).copied()
    }

    fn contains(&self, holder: u64) -> bool {
        self.iter().any(|h| h == holder)
    }

    /// The only holder, where there is one only.
    fn only(&self) -> Option<u64> {
        self.first.filter(|_| self.more.is_empty())
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn add(&mut self, holder: u64) {
        match self.first {
            None => self.first = Some(holder),
            Some(_) => self.more.push(holder),
        }
    }

    fn remove(&mut self, holder: u64) {
        if self.first == Some(holder) {
            self.first = self.more.pop();
        } else {
            self.more.retain(|h| *h != holder);
        }
    }
}

#[derive(Debug)]
struct Waiter {
    holder: u64,
    mode: Mode,
    send: oneshot::Sender<()>,
}

impl Locks {
    /// A new holder's id, for one transaction.
    pub(super) fn holder(&self) -> u64 {
        self.next_holder.fetch_add(1, Ordering::Relaxed)
    }

    /// The lock of one entity.
    pub(super) fn entity(&self, scope: &str, entity: &str, id: &str) -> LockKey {
        self.key((b'e', scope, entity, id))
    }

    /// The lock of one entity type in a scope: shared by the pushes that touch its entities,
    /// taken alone by one that lists them.
    pub(super) fn entities(&self, scope: &str, entity: &str) -> LockKey {
        self.key((b't', scope, entity))
    }

    /// The lock of one client's sequence number and failures.
    pub(super) fn client(&self, client_id: &str) -> LockKey {
        self.key((b'c', client_id))
    }

    /// `str` hashes with a terminator, so that names cannot run into each other.
    fn key(&self, names: impl Hash) -> LockKey {
        LockKey(self.hasher.hash_one(names))
    }

    /// Takes `key` in `mode` for `holder` (from shared to exclusive where it holds it shared),
    /// waiting while other pushes hold it or wait for it first; `Err` where waiting would close a
    /// cycle of pushes waiting for each other.
    pub(super) async fn lock(
        &self,
        holder: u64,
        key: LockKey,
        mode: Mode,
    ) -> Result<(), StoreError> {
        let (handed, upgrade) = {
            let mut table = self.table.lock();
            let Some(held) = table.held.get_mut(&key) else {
                let held = Held {
                    mode,
                    holders: Holders::one(holder),
                    queue: VecDeque::new(),
                };
                table.held.insert(key, held);
                return Ok(());
            };
            if held.holds(holder, mode) {
                return Ok(());
            }
            let upgrade = held.holders.contains(holder);
            // A newcomer queues behind the waiters, so that one waiting to list a type is not
            // passed over for ever by pushes that share it.
            if (upgrade || held.queue.is_empty()) && held.admits(holder, mode) {
                if !upgrade {
                    held.holders.add(holder);
                }
                held.mode = mode;
                return Ok(());
            }
            if table.closes_cycle(holder, key, upgrade) {
                return Err(StoreError::new(
                    "two pushes wait for each other's entities or clients: retry the push",
                ));
            }
            let (send, handed) = oneshot::channel();
            table.waiting.insert(holder, key);
            if let Some(held) = table.held.get_mut(&key) {
                let waiter = Waiter { holder, mode, send };
                // One that holds the lock already waits only for the other holders.
                if upgrade {
                    held.queue.push_front(waiter);
                } else {
                    held.queue.push_back(waiter);
                }
            }
            (handed, upgrade)
        };
        // Declared after `handed`, so dropped before it where the push is cancelled.
        let mut waiting = Waiting {
            locks: self,
            holder,
            key: Some(key),
            upgrade,
        };
        // The sender is only dropped unsent when the waiter left the queue, which is this.
        let _ = handed.await;
        waiting.key = None;
        Ok(())
    }

    /// Releases `holder`'s `keys`, handing each to its next waiters.
    pub(super) fn unlock(&self, holder: u64, keys: impl IntoIterator<Item = LockKey>) {
        let mut table = self.table.lock();
        for key in keys {
            table.release(holder, key);
        }
    }
}

impl Held {
    /// Whether `holder` may take the lock in `mode` now, next to its holders.
    fn admits(&self, holder: u64, mode: Mode) -> bool {
        if self.holders.is_empty() || self.holders.only() == Some(holder) {
            return true;
        }
        mode == Mode::Shared && self.mode == Mode::Shared
    }

    /// Whether `holder` holds the lock in `mode` or more.
    fn holds(&self, holder: u64, mode: Mode) -> bool {
        self.holders.contains(holder) && (mode == Mode::Shared || self.mode == Mode::Exclusive)
    }

    /// The pushes that `waiter` waits for: the other holders and the first `ahead` waiters.
    fn blockers(&self, waiter: u64, ahead: usize) -> impl Iterator<Item = u64> + '_ {
        let holders = self.holders.iter().filter(move |h| *h != waiter);
        holders.chain(self.queue.iter().take(ahead).map(|w| w.holder))
    }
}

impl Table {
    /// Whether `holder`, queueing for `key`, would wait, directly or through other pushes, for
    /// itself.
    fn closes_cycle(&self, holder: u64, key: LockKey, upgrade: bool) -> bool {
        let Some(held) = self.held.get(&key) else {
            return false;
        };
        let ahead = if upgrade { 0 } else { held.queue.len() };
        let mut next: Vec<u64> = held.blockers(holder, ahead).collect();
        let mut seen = hashbrown::HashSet::new();
        while let Some(push) = next.pop() {
            if push == holder {
                return true;
            }
            if !seen.insert(push) {
                continue;
            }
            let Some(held) = self.waiting.get(&push).and_then(|key| self.held.get(key)) else {
                continue;
            };
            let ahead = held.queue.iter().position(|w| w.holder == push);
            next.extend(held.blockers(push, ahead.unwrap_or(0)));
        }
        false
    }

    fn release(&mut self, holder: u64, key: LockKey) {
        if let Some(held) = self.held.get_mut(&key) {
            held.holders.remove(holder);
            self.grant(key);
        }
    }

    /// Hands `key` to the waiters at the front of its queue that its holders admit.
    fn grant(&mut self, key: LockKey) {
        let Table { held, waiting } = self;
        let Some(lock) = held.get_mut(&key) else {
            return;
        };
        while let Some(next) = lock.queue.front() {
            if !lock.admits(next.holder, next.mode) {
                break;
            }
            let Some(next) = lock.queue.pop_front() else {
                break;
            };
            waiting.remove(&next.holder);
            if next.send.send(()).is_ok() {
                if !lock.holders.contains(next.holder) {
                    lock.holders.add(next.holder);
                }
                lock.mode = next.mode;
            }
        }
        if lock.holders.is_empty() && lock.queue.is_empty() {
            held.remove(&key);
        }
    }
}

/// A push waiting for a lock; dropped before the lock arrived (the push was cancelled), it
/// leaves the queue, or where the lock was handed to it meanwhile, passes it on.
struct Waiting<'a> {
    locks: &'a Locks,
    holder: u64,
    key: Option<LockKey>,
    /// It held the lock shared before, and still does: its transaction releases it.
    upgrade: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let mut table = self.locks.table.lock();
        table.waiting.remove(&self.holder);
        let Some(held) = table.held.get_mut(&key) else {
            return;
        };
        match held.queue.iter().position(|w| w.holder == self.holder) {
            Some(at) => {
                held.queue.remove(at);
                // Those it kept waiting may go on.
                table.grant(key);
            }
            None if !self.upgrade => table.release(self.holder, key),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Poll;

    use futures::FutureExt;

    use super::*;

    fn taken(lock: impl Future<Output = Result<(), StoreError>>) -> bool {
        matches!(lock.now_or_never(), Some(Ok(())))
    }

    fn is_empty(locks: &Locks) -> bool {
        let table = locks.table.lock();
        table.held.is_empty() && table.waiting.is_empty()
    }

    #[tokio::test]
    async fn different_keys_do_not_wait_and_a_shared_one_is_handed_on_in_order() {
        let locks = Locks::default();
        let (s, t) = (
            locks.entity("s", "item", "1"),
            locks.entity("s", "item", "2"),
        );
        let (a, b, c) = (locks.holder(), locks.holder(), locks.holder());
        assert!(taken(locks.lock(a, s, Mode::Exclusive)));
        assert!(taken(locks.lock(b, t, Mode::Exclusive)), "another entity");
        let mut second = Box::pin(locks.lock(b, s, Mode::Exclusive));
        let mut third = Box::pin(locks.lock(c, s, Mode::Exclusive));
        assert!(futures::poll!(&mut second).is_pending());
        assert!(futures::poll!(&mut third).is_pending());
        locks.unlock(a, [s]);
        assert!(matches!(futures::poll!(&mut second), Poll::Ready(Ok(()))));
        assert!(
            futures::poll!(&mut third).is_pending(),
            "first come first served"
        );
        locks.unlock(b, [s, t]);
        assert!(matches!(third.await, Ok(())));
        locks.unlock(c, [s]);
        assert!(is_empty(&locks));
    }

    /// Pushes that touch entities of one type share its lock; one that lists the type waits for
    /// them, and those that come after it wait for it.
    #[tokio::test]
    async fn a_listing_waits_for_the_types_users_and_newcomers_wait_for_it() {
        let locks = Locks::default();
        let items = locks.entities("s", "item");
        let (a, b, lister, late) = (
            locks.holder(),
            locks.holder(),
            locks.holder(),
            locks.holder(),
        );
        assert!(taken(locks.lock(a, items, Mode::Shared)));
        assert!(taken(locks.lock(b, items, Mode::Shared)), "shared");
        let mut listing = Box::pin(locks.lock(lister, items, Mode::Exclusive));
        assert!(futures::poll!(&mut listing).is_pending());
        let mut newcomer = Box::pin(locks.lock(late, items, Mode::Shared));
        assert!(
            futures::poll!(&mut newcomer).is_pending(),
            "queues behind the listing"
        );
        locks.unlock(a, [items]);
        assert!(
            futures::poll!(&mut listing).is_pending(),
            "b still holds it"
        );
        locks.unlock(b, [items]);
        assert!(matches!(futures::poll!(&mut listing), Poll::Ready(Ok(()))));
        assert!(futures::poll!(&mut newcomer).is_pending());
        locks.unlock(lister, [items]);
        assert!(matches!(newcomer.await, Ok(())));
        locks.unlock(late, [items]);
        assert!(is_empty(&locks));
    }

    /// A shared holder that lists waits for the other holders only, ahead of the queue; two
    /// that do would wait for each other, and the second is refused.
    #[tokio::test]
    async fn a_shared_holder_takes_the_lock_alone_after_the_others() {
        let locks = Locks::default();
        let items = locks.entities("s", "item");
        let (a, b, c) = (locks.holder(), locks.holder(), locks.holder());
        assert!(taken(locks.lock(a, items, Mode::Shared)));
        assert!(
            taken(locks.lock(a, items, Mode::Exclusive)),
            "alone: at once"
        );
        assert!(taken(locks.lock(a, items, Mode::Shared)), "held already");
        locks.unlock(a, [items]);

        assert!(taken(locks.lock(a, items, Mode::Shared)));
        assert!(taken(locks.lock(b, items, Mode::Shared)));
        let mut c_lists = Box::pin(locks.lock(c, items, Mode::Exclusive));
        assert!(futures::poll!(&mut c_lists).is_pending());
        let mut a_lists = Box::pin(locks.lock(a, items, Mode::Exclusive));
        assert!(futures::poll!(&mut a_lists).is_pending());
        let refused = locks.lock(b, items, Mode::Exclusive).now_or_never();
        assert!(
            matches!(refused, Some(Err(_))),
            "a and b would wait for each other"
        );
        locks.unlock(b, [items]);
        assert!(
            matches!(futures::poll!(&mut a_lists), Poll::Ready(Ok(()))),
            "ahead of c"
        );
        assert!(futures::poll!(&mut c_lists).is_pending());
        locks.unlock(a, [items]);
        assert!(matches!(c_lists.await, Ok(())));
        locks.unlock(c, [items]);
        assert!(is_empty(&locks));
    }

    #[tokio::test]
    async fn a_wait_that_would_close_a_cycle_fails_and_the_other_goes_on() {
        let locks = Locks::default();
        let (s, t) = (locks.client("s"), locks.client("t"));
        let (a, b) = (locks.holder(), locks.holder());
        assert!(taken(locks.lock(a, s, Mode::Exclusive)));
        assert!(taken(locks.lock(b, t, Mode::Exclusive)));
        let mut a_waits = Box::pin(locks.lock(a, t, Mode::Exclusive));
        assert!(futures::poll!(&mut a_waits).is_pending());
        let refused = locks.lock(b, s, Mode::Exclusive).now_or_never();
        assert!(
            matches!(refused, Some(Err(_))),
            "b would wait for a, which waits for b"
        );
        // b gives up (its push fails) and releases what it held: a goes on.
        locks.unlock(b, [t]);
        assert!(matches!(a_waits.await, Ok(())));
        locks.unlock(a, [s, t]);
        assert!(is_empty(&locks));
    }

    /// A cycle through a queue: c waits behind b's listing, which waits for a's share, and a
    /// then asks for what c holds.
    #[tokio::test]
    async fn a_cycle_through_a_queued_waiter_is_refused() {
        let locks = Locks::default();
        let (items, one) = (locks.entities("s", "item"), locks.entity("s", "item", "1"));
        let (a, b, c) = (locks.holder(), locks.holder(), locks.holder());
        assert!(taken(locks.lock(a, items, Mode::Shared)));
        assert!(taken(locks.lock(c, one, Mode::Exclusive)));
        let mut b_lists = Box::pin(locks.lock(b, items, Mode::Exclusive));
        assert!(futures::poll!(&mut b_lists).is_pending());
        let mut c_waits = Box::pin(locks.lock(c, items, Mode::Shared));
        assert!(futures::poll!(&mut c_waits).is_pending());
        let refused = locks.lock(a, one, Mode::Exclusive).now_or_never();
        assert!(matches!(refused, Some(Err(_))), "a → c → b → a");
        locks.unlock(a, [items]);
        assert!(matches!(futures::poll!(&mut b_lists), Poll::Ready(Ok(()))));
        locks.unlock(b, [items]);
        assert!(matches!(c_waits.await, Ok(())));
        locks.unlock(c, [items, one]);
        assert!(is_empty(&locks));
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_the_queue_or_passes_the_lock_on() {
        let locks = Locks::default();
        let s = locks.entity("s", "item", "1");
        let (a, b, c) = (locks.holder(), locks.holder(), locks.holder());
        assert!(taken(locks.lock(a, s, Mode::Exclusive)));
        // Cancelled while queued.
        let mut cancelled = Box::pin(locks.lock(b, s, Mode::Exclusive));
        assert!(futures::poll!(&mut cancelled).is_pending());
        drop(cancelled);
        // Cancelled after the lock was handed to it, before it saw it.
        let mut handed = Box::pin(locks.lock(b, s, Mode::Exclusive));
        assert!(futures::poll!(&mut handed).is_pending());
        let mut last = Box::pin(locks.lock(c, s, Mode::Exclusive));
        assert!(futures::poll!(&mut last).is_pending());
        locks.unlock(a, [s]);
        drop(handed);
        assert!(matches!(last.await, Ok(())), "the lock went on to c");
        locks.unlock(c, [s]);
        assert!(is_empty(&locks));
    }

    /// A cancelled listing lets in the pushes that queued behind it.
    #[tokio::test]
    async fn a_cancelled_listing_lets_the_shared_waiters_behind_it_in() {
        let locks = Locks::default();
        let items = locks.entities("s", "item");
        let (a, lister, b) = (locks.holder(), locks.holder(), locks.holder());
        assert!(taken(locks.lock(a, items, Mode::Shared)));
        let mut listing = Box::pin(locks.lock(lister, items, Mode::Exclusive));
        assert!(futures::poll!(&mut listing).is_pending());
        let mut behind = Box::pin(locks.lock(b, items, Mode::Shared));
        assert!(futures::poll!(&mut behind).is_pending());
        drop(listing);
        assert!(matches!(futures::poll!(&mut behind), Poll::Ready(Ok(()))));
        locks.unlock(a, [items]);
        locks.unlock(b, [items]);
        assert!(is_empty(&locks));
    }
}
