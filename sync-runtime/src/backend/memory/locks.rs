//! The memory backend's locks: one per scope and one per client, which a push takes as it first
//! reads (or, at commit, writes) them and holds until it commits or is dropped.
//!
//! Pushes that share no scope and no client run side by side; those that share one run one after
//! the other in the order they asked for it, so that each reads a state no concurrent push
//! changes (the [`Backend::begin`](crate::Backend::begin) contract). Locks are taken in whatever
//! order mutations read, so two pushes can wait for each other: a push that would close such a
//! cycle fails at once with a [`StoreError`] (its client retries, as after PostgreSQL's deadlock
//! detection) instead of waiting forever.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::HashMap;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::StoreError;

/// What a push locks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum LockKey {
    /// A scope whose entities it reads or writes.
    Scope(String),
    /// A client whose sequence number or failures it reads or records.
    Client(String),
}

/// Every lock held or waited for, behind one short-held mutex.
#[derive(Debug, Default)]
pub(super) struct Locks {
    table: Mutex<Table>,
    next_holder: AtomicU64,
}

#[derive(Debug, Default)]
struct Table {
    /// The locks held; a lock nobody holds has no entry.
    held: HashMap<LockKey, Held>,
    /// The lock each waiting push waits for (one at most: it waits inside one read).
    waiting: HashMap<u64, LockKey>,
}

#[derive(Debug)]
struct Held {
    holder: u64,
    /// The pushes waiting, first come first served; a lock is handed to the next directly.
    queue: VecDeque<(u64, oneshot::Sender<()>)>,
}

impl Locks {
    /// A new holder's id, for one transaction.
    pub(super) fn holder(&self) -> u64 {
        self.next_holder.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes `key` for `holder`, waiting while another push holds it; `Err` where waiting
    /// would close a cycle of pushes waiting for each other. The caller must not hold `key`.
    pub(super) async fn lock(&self, holder: u64, key: LockKey) -> Result<(), StoreError> {
        let handed = {
            let mut table = self.table.lock();
            let Some(held) = table.held.get(&key) else {
                table.held.insert(
                    key,
                    Held {
                        holder,
                        queue: VecDeque::new(),
                    },
                );
                return Ok(());
            };
            if table.waits_for(held.holder, holder) {
                return Err(StoreError::new(
                    "two pushes wait for each other's scopes or clients: retry the push",
                ));
            }
            let (send, handed) = oneshot::channel();
            table.waiting.insert(holder, key.clone());
            if let Some(held) = table.held.get_mut(&key) {
                held.queue.push_back((holder, send));
            }
            handed
        };
        // Declared after `handed`, so dropped before it where the push is cancelled.
        let mut waiting = Waiting {
            locks: self,
            holder,
            key: Some(key),
        };
        // The sender is only dropped unsent when the waiter left the queue, which is this.
        let _ = handed.await;
        waiting.key = None;
        Ok(())
    }

    /// Releases `keys`, handing each to its next waiter.
    pub(super) fn unlock(&self, keys: impl IntoIterator<Item = LockKey>) {
        let mut table = self.table.lock();
        for key in keys {
            table.release(&key);
        }
    }
}

impl Table {
    /// Whether `holder` waits, directly or through other pushes, for `target`.
    fn waits_for(&self, mut holder: u64, target: u64) -> bool {
        // Each push waits for one lock at most, so the chain has no branches; it is never longer
        // than the number of waiting pushes.
        for _ in 0..=self.waiting.len() {
            if holder == target {
                return true;
            }
            let Some(next) = self.waiting.get(&holder).and_then(|key| self.held.get(key)) else {
                return false;
            };
            holder = next.holder;
        }
        false
    }

    fn release(&mut self, key: &LockKey) {
        let Some(held) = self.held.get_mut(key) else {
            return;
        };
        while let Some((next, send)) = held.queue.pop_front() {
            self.waiting.remove(&next);
            if send.send(()).is_ok() {
                held.holder = next;
                return;
            }
        }
        self.held.remove(key);
    }
}

/// A push waiting for a lock; dropped before the lock arrived (the push was cancelled), it
/// leaves the queue, or where the lock was handed to it meanwhile, passes it on.
struct Waiting<'a> {
    locks: &'a Locks,
    holder: u64,
    key: Option<LockKey>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let mut table = self.locks.table.lock();
        table.waiting.remove(&self.holder);
        let handed = table
            .held
            .get(&key)
            .is_some_and(|h| h.holder == self.holder);
        if handed {
            table.release(&key);
        } else if let Some(held) = table.held.get_mut(&key) {
            held.queue.retain(|(waiter, _)| *waiter != self.holder);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    fn scope(name: &str) -> LockKey {
        LockKey::Scope(name.to_owned())
    }

    #[tokio::test]
    async fn different_keys_do_not_wait_and_a_shared_one_is_handed_on_in_order() {
        let locks = Locks::default();
        let (a, b, c) = (locks.holder(), locks.holder(), locks.holder());
        assert!(matches!(
            locks.lock(a, scope("s")).now_or_never(),
            Some(Ok(()))
        ));
        assert!(matches!(
            locks.lock(b, scope("t")).now_or_never(),
            Some(Ok(()))
        ));
        let mut second = Box::pin(locks.lock(b, scope("s")));
        let mut third = Box::pin(locks.lock(c, scope("s")));
        assert!(futures::poll!(&mut second).is_pending());
        assert!(futures::poll!(&mut third).is_pending());
        locks.unlock([scope("s")]);
        assert!(matches!(
            futures::poll!(&mut second),
            std::task::Poll::Ready(Ok(()))
        ));
        assert!(
            futures::poll!(&mut third).is_pending(),
            "first come first served"
        );
        locks.unlock([scope("s"), scope("t")]);
        assert!(matches!(third.await, Ok(())));
        locks.unlock([scope("s")]);
        assert!(locks.table.lock().held.is_empty());
    }

    #[tokio::test]
    async fn a_wait_that_would_close_a_cycle_fails_and_the_other_goes_on() {
        let locks = Locks::default();
        let (a, b) = (locks.holder(), locks.holder());
        assert!(locks.lock(a, scope("s")).now_or_never().is_some());
        assert!(locks.lock(b, scope("t")).now_or_never().is_some());
        let mut a_waits = Box::pin(locks.lock(a, scope("t")));
        assert!(futures::poll!(&mut a_waits).is_pending());
        let refused = locks.lock(b, scope("s")).now_or_never();
        assert!(
            matches!(refused, Some(Err(_))),
            "b would wait for a, which waits for b"
        );
        // b gives up (its push fails) and releases what it held: a goes on.
        locks.unlock([scope("t")]);
        assert!(matches!(a_waits.await, Ok(())));
        locks.unlock([scope("s"), scope("t")]);
        assert!(locks.table.lock().held.is_empty());
        assert!(locks.table.lock().waiting.is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_the_queue_or_passes_the_lock_on() {
        let locks = Locks::default();
        let (a, b, c) = (locks.holder(), locks.holder(), locks.holder());
        assert!(locks.lock(a, scope("s")).now_or_never().is_some());
        // Cancelled while queued.
        let mut cancelled = Box::pin(locks.lock(b, scope("s")));
        assert!(futures::poll!(&mut cancelled).is_pending());
        drop(cancelled);
        // Cancelled after the lock was handed to it, before it saw it.
        let mut handed = Box::pin(locks.lock(b, scope("s")));
        assert!(futures::poll!(&mut handed).is_pending());
        let mut last = Box::pin(locks.lock(c, scope("s")));
        assert!(futures::poll!(&mut last).is_pending());
        locks.unlock([scope("s")]);
        drop(handed);
        assert!(matches!(last.await, Ok(())), "the lock went on to c");
        locks.unlock([scope("s")]);
        let table = locks.table.lock();
        assert!(table.held.is_empty() && table.waiting.is_empty());
    }
}
