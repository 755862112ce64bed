//! One node's queues for the advisory locks of scopes and clients. A push waits for its turn
//! here, in memory, before it takes a pooled connection: pushes queued behind one busy scope
//! would otherwise each hold a connection while PostgreSQL makes them wait for its lock, until
//! the pool is empty and every other request (a pull, a push to another scope) fails after the
//! pool's timeout. The advisory locks stay, for the pushes of other nodes; a gate only keeps this
//! node's waiters off the pool, and holding it is never required for correctness.
//!
//! No deadlock among gates: a push waits for gates only before it has a connection, for all the
//! keys it knows then at once, in ascending order; once it has a connection it only tries a gate,
//! and where another push holds it, waits for the advisory lock with its connection, where
//! PostgreSQL's deadlock detection sees it. A push that holds gates and waits for the pool holds
//! no advisory lock, so the connections' holders never wait for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hashbrown::HashMap;
use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;

use crate::error::StoreError;

/// The gates of one node, by lock key; a gate exists while some push holds or waits for it.
#[derive(Default)]
pub(super) struct Gates {
    open: Mutex<HashMap<i64, Gate>>,
    /// How many pushes wait for a gate now.
    waiting: AtomicUsize,
}

struct Gate {
    turn: Arc<tokio::sync::Mutex<()>>,
    /// The pushes that hold or wait for it: at none, the gate goes.
    users: usize,
}

/// A push's turn at one key, until dropped.
pub(super) struct Pass {
    /// Declared first, so released before `_ticket` forgets the gate.
    _turn: OwnedMutexGuard<()>,
    _ticket: Ticket,
}

/// A push's interest in one gate, which keeps it in the map.
struct Ticket {
    gates: Arc<Gates>,
    key: i64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.gates.open.lock();
        if let Some(gate) = open.get_mut(&self.key) {
            gate.users -= 1;
            if gate.users == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Counts a push as waiting while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gates {
    fn ticket(self: &Arc<Self>, key: i64) -> (Ticket, Arc<tokio::sync::Mutex<()>>) {
        let mut open = self.open.lock();
        let gate = open.entry(key).or_insert_with(|| Gate {
            turn: Arc::default(),
            users: 0,
        });
        gate.users += 1;
        let turn = Arc::clone(&gate.turn);
        let ticket = Ticket {
            gates: Arc::clone(self),
            key,
        };
        (ticket, turn)
    }

    /// Waits for the turn at `key`, at most `patience` (the advisory locks' `lock_timeout`).
    pub(super) async fn enter(
        self: &Arc<Self>,
        key: i64,
        patience: Duration,
    ) -> Result<Pass, StoreError> {
        let (ticket, turn) = self.ticket(key);
        if let Ok(turn) = Arc::clone(&turn).try_lock_owned() {
            return Ok(Pass {
                _turn: turn,
                _ticket: ticket,
            });
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(patience, turn.lock_owned()).await {
            Ok(turn) => Ok(Pass {
                _turn: turn,
                _ticket: ticket,
            }),
            Err(_) => Err(StoreError::new(format!(
                "PostgreSQL: waited {patience:?} for a scope or a client that another push \
                 holds"
            ))),
        }
    }

    /// The turn at `key` if no other push of this node holds it.
    pub(super) fn try_enter(self: &Arc<Self>, key: i64) -> Option<Pass> {
        let (ticket, turn) = self.ticket(key);
        let turn = turn.try_lock_owned().ok()?;
        Some(Pass {
            _turn: turn,
            _ticket: ticket,
        })
    }

    /// How many pushes wait for a gate.
    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_gate_queues_its_pushes_and_goes_with_the_last() {
        let gates = Arc::new(Gates::default());
        let first = gates.enter(1, Duration::from_secs(5)).await.unwrap();
        assert!(gates.try_enter(1).is_none(), "held");
        let other = gates.try_enter(2).expect("another key is free");
        let second = tokio::spawn({
            let gates = Arc::clone(&gates);
            async move { gates.enter(1, Duration::from_secs(5)).await.map(drop) }
        });
        while gates.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        drop(first);
        second.await.unwrap().unwrap();
        assert_eq!(gates.waiting(), 0);
        drop(other);
        assert!(gates.open.lock().is_empty(), "no gate left behind");
    }

    #[tokio::test]
    async fn a_push_gives_up_after_its_patience() {
        let gates = Arc::new(Gates::default());
        let _held = gates.enter(7, Duration::from_secs(5)).await.unwrap();
        let error = gates
            .enter(7, Duration::from_millis(1))
            .await
            .err()
            .unwrap();
        assert!(error.to_string().contains("another push"), "{error}");
        assert_eq!(gates.open.lock().get(&7).map(|gate| gate.users), Some(1));
    }
}
