//! What one node has seen of the visibility horizon, so that its commits wait for it together.
//!
//! A commit answers once the horizon has passed its transaction (module docs of the backend).
//! Its first look at the horizon goes out with its `COMMIT`; where that look finds the horizon
//! still below it (half the commits at 16 pushers: the other pushes in flight), it waits. Each
//! look reports the horizon it saw, `xmin`, and every waiter of the node wakes on any look that
//! passes it: under load, the other commits' first looks answer most waits, and where none comes,
//! one waiter at a time looks for all of them, instead of each polling on a connection of its own.
//!
//! Sound because horizons only grow: once a snapshot finds every transaction below `xmin` ended,
//! they stay ended, and a later snapshot's oldest transaction in progress is no older. A look
//! that saw the horizon pass a transaction thus holds for every read that starts after it, on
//! every node.

use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::ClientWrapper as Client;
use tokio::sync::watch;

use super::super::sql::Context;
use super::{Inner, Patience};
use crate::error::StoreError;

/// The horizon now: the oldest transaction still in progress, or the next one to start.
pub(super) const LOOK: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

/// One node's knowledge of the horizon.
pub(super) struct Horizon {
    /// The highest horizon a look has seen.
    seen: watch::Sender<i64>,
    /// Whether a waiter is looking for all of them now.
    looking: AtomicBool,
}

impl Default for Horizon {
    fn default() -> Self {
        Horizon {
            seen: watch::Sender::new(0),
            looking: AtomicBool::new(false),
        }
    }
}

impl Horizon {
    /// Records what a look found, waking the commits it passed.
    pub(super) fn saw(&self, xmin: i64) {
        self.seen.send_if_modified(|seen| {
            let higher = xmin > *seen;
            if higher {
                *seen = xmin;
            }
            higher
        });
    }

    /// Whether a look has seen the horizon pass the transaction `xid`.
    pub(super) fn passed(&self, xid: i64) -> bool {
        *self.seen.borrow() > xid
    }

    /// Waits until a look has seen the horizon pass the transaction `xid`, which has committed:
    /// one by another commit of this node, or one this waiter makes when its pause ends and no
    /// other waiter is looking. Warns once the wait exceeds the node's patience, and goes on.
    pub(super) async fn wait_past(&self, inner: &Inner, xid: i64) -> Result<(), StoreError> {
        let mut seen = self.seen.subscribe();
        let mut patience = Patience::new(inner.patience);
        loop {
            if *seen.borrow_and_update() > xid {
                return Ok(());
            }
            tokio::select! {
                // The sender lives as long as `inner`, which this borrows.
                _ = seen.changed() => continue,
                () = patience.wait_long(|| format!("a commit (transaction {xid})")) => {}
            }
            let Some(_turn) = self.turn_to_look() else {
                continue; // another waiter looks, and wakes this one if it passed
            };
            self.saw(look(&*inner.connection().await?).await?);
        }
    }

    /// The turn to look for all waiters, where no other waiter has it.
    fn turn_to_look(&self) -> Option<Turn<'_>> {
        self.looking
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            .then(|| Turn(&self.looking))
    }
}

/// A waiter's turn to look, given back when dropped: also where its wait is cancelled.
struct Turn<'a>(&'a AtomicBool);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Looks at the horizon on `client`.
async fn look(client: &Client) -> Result<i64, StoreError> {
    let stmt = client
        .prepare_cached(LOOK)
        .await
        .context(|| "cannot prepare the horizon query".to_owned())?;
    client
        .query_one(&stmt, &[])
        .await
        .and_then(|row| row.try_get(0))
        .context(|| "cannot read the change log's visibility horizon".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_horizon_seen_only_grows() {
        let horizon = Horizon::default();
        assert!(!horizon.passed(0));
        horizon.saw(10);
        horizon.saw(5); // a look that started earlier, answered later
        assert!(horizon.passed(9));
        assert!(!horizon.passed(10));
    }

    #[test]
    fn one_waiter_looks_at_a_time_until_its_turn_ends() {
        let horizon = Horizon::default();
        let turn = horizon.turn_to_look();
        assert!(turn.is_some());
        // Refused, and again: a refusal leaves the turn with its holder.
        assert!(horizon.turn_to_look().is_none());
        assert!(horizon.turn_to_look().is_none());
        drop(turn); // also where the look is cancelled
        assert!(horizon.turn_to_look().is_some());
    }
}
