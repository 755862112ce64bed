//! Reads: pulls page by page, snapshots, and the log's maintenance.

use std::sync::atomic::Ordering;

use tracing::{Instrument, info_span};

use super::Engine;
use super::push::check_client_id;
use crate::auth::{Action, Credentials};
use crate::backend::{Backend, ChangeLog, SnapshotPage};
use crate::error::SyncError;
use crate::metrics::{self, Operation};
use crate::protocol::{PullRequest, PullResponse, ScopeData, SnapshotRequest, SnapshotResponse};
use crate::scope::resolve_scope;

impl Engine {
    /// A page of a scope's changes after a cursor.
    pub async fn pull(&self, request: PullRequest) -> Result<PullResponse, SyncError> {
        self.pull_from(None, request).await
    }

    /// A pull from a client, authenticated and authorized with its credentials; code on the
    /// server (`credentials: None`) is trusted.
    pub(crate) async fn pull_from(
        &self,
        credentials: Option<&Credentials<'_>>,
        request: PullRequest,
    ) -> Result<PullResponse, SyncError> {
        metrics::timed(Operation::Pull, self.read_page(credentials, request)).await
    }

    async fn read_page(
        &self,
        credentials: Option<&Credentials<'_>>,
        request: PullRequest,
    ) -> Result<PullResponse, SyncError> {
        let scope = resolve_scope(request.scope.as_deref())?;
        if let Some(credentials) = credentials {
            self.admit(credentials, [scope], Action::Pull).await?;
        }
        let limits = &self.inner.limits;
        let limit = if request.limit <= 0 {
            limits.default_pull_limit
        } else {
            usize::try_from(request.limit)
                .unwrap_or(usize::MAX)
                .min(limits.max_pull_limit)
        };
        let log_id = self.inner.backend.log_id();
        if let Some(asked) = request.log_id.as_deref()
            && asked != log_id
        {
            return Err(SyncError::LogReplaced {
                asked: asked.chars().take(64).collect(),
                log_id: log_id.to_owned(),
            });
        }
        let client_id = checked_client(request.client_id.as_deref())?;
        let cursor = request.cursor;
        let read = self
            .inner
            .backend
            .read(scope, cursor, limit.saturating_add(1), client_id)
            .instrument(info_span!("sync.pull", scope, cursor, limit))
            .await?;
        if cursor > read.head {
            return Err(SyncError::CursorAhead {
                cursor,
                head: read.head,
            });
        }
        if read.horizon > cursor {
            return Err(SyncError::CursorTooOld {
                scope: scope.to_owned(),
                cursor,
                horizon: read.horizon,
            });
        }
        let mut changes = read.changes;
        let has_more = changes.len() > limit;
        changes.truncate(limit);
        // Cursors become visible in commit order, so the head read with the page skips nothing.
        let next = changes.last().map_or(read.head, |change| change.cursor);
        Ok(PullResponse {
            changes,
            cursor: next,
            has_more,
            log_id: log_id.to_owned(),
            client_seq: client_id.map(|_| read.client_seq.unwrap_or(0)),
        })
    }

    /// A scope's whole data and the cursor it is current at.
    pub async fn snapshot(&self, scope: Option<&str>) -> Result<SnapshotResponse, SyncError> {
        let request = SnapshotRequest {
            scope: scope.map(str::to_owned),
            ..SnapshotRequest::default()
        };
        self.snapshot_from(None, &request).await
    }

    /// A snapshot for a client, as [`pull_from`](Engine::pull_from) a pull.
    pub(crate) async fn snapshot_from(
        &self,
        credentials: Option<&Credentials<'_>>,
        request: &SnapshotRequest,
    ) -> Result<SnapshotResponse, SyncError> {
        metrics::timed(
            Operation::Snapshot,
            self.snapshot_page(credentials, request),
        )
        .await
    }

    async fn snapshot_page(
        &self,
        credentials: Option<&Credentials<'_>>,
        request: &SnapshotRequest,
    ) -> Result<SnapshotResponse, SyncError> {
        let scope = resolve_scope(request.scope.as_deref())?;
        let client_id = checked_client(request.client_id.as_deref())?;
        if let Some(credentials) = credentials {
            self.admit(credentials, [scope], Action::Snapshot).await?;
        }
        let limit = request
            .limit
            .filter(|limit| *limit > 0)
            .map_or(usize::MAX, |limit| {
                usize::try_from(limit).unwrap_or(usize::MAX)
            });
        let page = SnapshotPage {
            client_id,
            after: request
                .after
                .as_ref()
                .map(|(e, i)| (e.as_str(), i.as_str())),
            // One more than asked tells whether there is more.
            limit: limit.saturating_add(1),
        };
        let read = self
            .inner
            .backend
            .snapshot(scope, page)
            .instrument(info_span!("sync.snapshot", scope))
            .await?;
        let mut data = read.data;
        let count: usize = data.values().map(|ids| ids.len()).sum();
        let has_more = count > limit;
        if has_more {
            drop_last(&mut data);
        }
        let next = has_more.then(|| last_key(&data)).flatten();
        Ok(SnapshotResponse {
            data,
            cursor: read.head,
            log_id: self.inner.backend.log_id().to_owned(),
            client_seq: client_id.map(|_| read.client_seq.unwrap_or(0)),
            has_more,
            next,
        })
    }

    /// Removes every change with a cursor below `before`; pulls that would need one answer
    /// `cursor_too_old`.
    pub async fn trim(&self, before: u64) -> Result<(), SyncError> {
        if let Err(error) = self.inner.backend.trim(before).await {
            metrics::store_error("trim", &error);
            return Err(error.into());
        }
        self.inner
            .retained_from
            .fetch_max(before, Ordering::Relaxed);
        Ok(())
    }

    /// The log's latest cursor.
    pub async fn head(&self) -> Result<u64, SyncError> {
        Ok(self.inner.backend.head().await?)
    }
}

/// A request's `client_id`, where it names one: checked as a push's are.
fn checked_client(client_id: Option<&str>) -> Result<Option<&str>, SyncError> {
    let Some(client_id) = client_id else {
        return Ok(None);
    };
    check_client_id(client_id)
        .map_err(|problem| SyncError::InvalidRequest(format!("client_id {problem}")))?;
    Ok(Some(client_id))
}

/// Removes a page's last entity, by `(entity, id)`.
fn drop_last(data: &mut ScopeData) {
    if let Some(mut last) = data.last_entry() {
        last.get_mut().pop_last();
        if last.get().is_empty() {
            last.remove();
        }
    }
}

/// A page's last `(entity, id)`.
fn last_key(data: &ScopeData) -> Option<(String, String)> {
    let (entity, ids) = data.last_key_value()?;
    let (id, _) = ids.last_key_value()?;
    Some((entity.clone(), id.clone()))
}
