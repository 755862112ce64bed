//! The recording calls of [`metrics`](crate::metrics) without the cargo feature `metrics`:
//! nothing, so that the code that records needs no `cfg` of its own.

use crate::error::{StoreError, SyncError};
use crate::protocol::PushResponse;

#[derive(Clone, Copy)]
pub(crate) enum Operation {
    Push,
    Pull,
    Snapshot,
}

pub(crate) async fn timed<T>(
    _operation: Operation,
    run: impl Future<Output = Result<T, SyncError>>,
) -> Result<T, SyncError> {
    run.await
}

pub(crate) fn mutations(_response: &PushResponse) {}

pub(crate) fn store_error(_operation: &'static str, _error: &StoreError) {}

pub(crate) struct LiveConnection(());

impl LiveConnection {
    pub(crate) fn open() -> Self {
        LiveConnection(())
    }
}

pub(crate) fn pokes_sent(_n: usize) {}

pub(crate) fn poke_merged() {}

pub(crate) fn pokes_dropped(_n: usize) {}

#[cfg(feature = "postgres")]
pub(crate) fn horizon_wait(_waited: std::time::Duration) {}

#[cfg(feature = "postgres")]
pub(crate) fn group_commit() {}
