//! Group commit: pushes that wait for the writer share one `COMMIT` (and one fsync).
//!
//! A push that has written its rows while others wait for the writer does not commit: it hands
//! the open transaction on, and the next push runs in it. The first push to find no one waiting
//! (or a full group) commits them all and tells the others. A push is acknowledged only once its
//! group has committed; a failed call rolls the group back and fails every push in it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;
use tokio::sync::oneshot::{self, error::TryRecvError};

use crate::error::{Sentence, StoreError};

/// What the group commit needs of the writer connection.
pub(super) trait Writer {
    /// Commits the open transaction.
    fn commit(&self) -> Result<(), StoreError>;
    /// Rolls back the open transaction, if one is open.
    fn roll_back(&self) -> Result<(), StoreError>;
}

/// A push waiting for the commit of a transaction it handed on.
type Member = oneshot::Sender<Result<(), String>>;

/// Tells a push that handed its transaction on whether its group committed.
pub(super) type Told = oneshot::Receiver<Result<(), String>>;

/// Why a push that handed its transaction on got no answer.
const STOPPED: &str = "the push that was to commit it stopped";

/// The writer's gate, and the group of pushes whose work the open transaction holds.
pub(super) struct GroupCommit {
    /// Held from a push's `begin` until its commit or rollback: one writer at a time.
    gate: Arc<tokio::sync::Mutex<()>>,
    /// Pushes waiting for the gate: while there are, a commit hands the transaction on.
    waiting: AtomicUsize,
    members: Mutex<Vec<Member>>,
    /// Most pushes in one group: bounds how long the first of them waits.
    max: usize,
}

impl GroupCommit {
    pub(super) fn new(max: usize) -> Self {
        GroupCommit {
            gate: Arc::new(tokio::sync::Mutex::new(())),
            waiting: AtomicUsize::new(0),
            members: Mutex::new(Vec::new()),
            max: max.max(1),
        }
    }

    /// Waits for the writer, counted among the pushes that wait meanwhile.
    pub(super) async fn enter(&self) -> OwnedMutexGuard<()> {
        let _waiting = Waiting::new(&self.waiting);
        Arc::clone(&self.gate).lock_owned().await
    }

    /// With the writer: whether a transaction handed on is open, for the next push to join.
    pub(super) fn is_open(&self) -> bool {
        !self.members.lock().is_empty()
    }

    /// With the writer, once a push has written its rows: hands the transaction on where another
    /// push waits and the group has room (then `Some`: the group's answer to wait for), else
    /// commits it, with every push of its group.
    pub(super) fn hand_on_or_commit(&self, db: &impl Writer) -> Result<Option<Told>, StoreError> {
        let mut members = self.members.lock();
        if self.waiting.load(Ordering::SeqCst) > 0 && members.len() + 1 < self.max {
            let (member, told) = oneshot::channel();
            members.push(member);
            return Ok(Some(told));
        }
        drop(members);
        self.commit(db)?;
        Ok(None)
    }

    /// With the writer: commits what pushes handed on, or rolls back what a dropped push left.
    pub(super) fn settle(&self, db: &impl Writer) -> Result<(), StoreError> {
        if self.is_open() {
            self.commit(db)
        } else {
            db.roll_back()
        }
    }

    /// With the writer, after a failed call: rolls back, failing every push of the group.
    pub(super) fn fail(&self, db: &impl Writer, error: &StoreError) {
        let _ = db.roll_back();
        for member in std::mem::take(&mut *self.members.lock()) {
            let _ = member.send(Err(Sentence(error).to_string()));
        }
    }

    /// Commits the open transaction and tells the pushes that wait for it.
    fn commit(&self, db: &impl Writer) -> Result<(), StoreError> {
        let members = std::mem::take(&mut *self.members.lock());
        let committed = db.commit();
        if committed.is_err() {
            let _ = db.roll_back();
        }
        let told = committed
            .as_ref()
            .map(drop)
            .map_err(|error| Sentence(error).to_string());
        for member in members {
            // A member that stopped waiting (its request was dropped) needs no answer.
            let _ = member.send(told.clone());
        }
        committed
    }

    /// After handing the transaction on: the group's outcome. Where the writer comes back to
    /// this push before anyone committed (the push that waited stopped, or queued behind this
    /// one), `settle` runs with it: it commits what is open, which answers `told`.
    pub(super) async fn outcome<F, Fut>(
        &self,
        mut told: Told,
        mut settle: F,
    ) -> Result<(), StoreError>
    where
        F: FnMut(OwnedMutexGuard<()>) -> Fut,
        Fut: Future<Output = Result<(), StoreError>>,
    {
        let answer = loop {
            tokio::select! {
                biased;
                answer = &mut told => break answer.unwrap_or_else(|_| Err(STOPPED.to_owned())),
                gate = Arc::clone(&self.gate).lock_owned() => {
                    let settled = settle(gate).await;
                    match (told.try_recv(), settled) {
                        (Ok(answer), _) => break answer,
                        (Err(TryRecvError::Closed), _) => break Err(STOPPED.to_owned()),
                        // The call never ran, so nobody will answer.
                        (Err(TryRecvError::Empty), Err(error)) => return Err(error),
                        (Err(TryRecvError::Empty), Ok(())) => {}
                    }
                }
            }
        };
        answer
            .map_err(|message| StoreError::new(format!("SQLite: a group commit failed: {message}")))
    }
}

/// Counts a push waiting for the gate, until it has it or stops waiting.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use super::*;

    /// A writer that counts its commits and rollbacks, and fails commits on demand.
    #[derive(Default)]
    struct Counting {
        commits: AtomicUsize,
        rollbacks: AtomicUsize,
        fail: AtomicBool,
    }

    impl Writer for Counting {
        fn commit(&self) -> Result<(), StoreError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::new("disk full"));
            }
            self.commits.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }

        fn roll_back(&self) -> Result<(), StoreError> {
            self.rollbacks.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_push_alone_commits_at_once() {
        let (group, db) = (GroupCommit::new(64), Counting::default());
        let _gate = group.enter().await;
        assert!(!group.is_open());
        assert!(group.hand_on_or_commit(&db).unwrap().is_none());
        assert_eq!(db.commits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn pushes_that_wait_share_one_commit() {
        let group = Arc::new(GroupCommit::new(64));
        let db = Arc::new(Counting::default());
        let gate = group.enter().await;
        let second = tokio::spawn({
            let (group, db) = (Arc::clone(&group), Arc::clone(&db));
            async move {
                let _gate = group.enter().await;
                assert!(group.is_open(), "it joins the transaction handed on");
                assert!(group.hand_on_or_commit(&*db).unwrap().is_none());
            }
        });
        while group.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let told = group.hand_on_or_commit(&*db).unwrap().expect("handed on");
        assert_eq!(db.commits.load(Ordering::SeqCst), 0);
        drop(gate);
        let outcome = group.outcome(told, |_| async { panic!("the second push commits") });
        outcome.await.unwrap();
        second.await.unwrap();
        assert_eq!(db.commits.load(Ordering::SeqCst), 1, "one commit for both");
    }

    #[tokio::test]
    async fn a_failed_commit_fails_the_whole_group() {
        let (group, db) = (GroupCommit::new(64), Counting::default());
        group.waiting.fetch_add(1, Ordering::SeqCst); // someone waits
        let told = group.hand_on_or_commit(&db).unwrap().expect("handed on");
        group.waiting.fetch_sub(1, Ordering::SeqCst);
        db.fail.store(true, Ordering::SeqCst);
        assert!(group.hand_on_or_commit(&db).is_err());
        let error = group.outcome(told, |_| async { Ok(()) }).await.unwrap_err();
        assert!(error.to_string().contains("disk full"), "{error}");
        assert_eq!(db.rollbacks.load(Ordering::SeqCst), 1);
    }

    /// The push that waited stopped before it took the writer: the one that handed on gets the
    /// writer back and commits its own work.
    #[tokio::test]
    async fn a_push_whose_taker_went_away_commits_itself() {
        let group = Arc::new(GroupCommit::new(64));
        let db = Arc::new(Counting::default());
        let gate = group.enter().await;
        let waiter = tokio::spawn({
            let group = Arc::clone(&group);
            async move { drop(group.enter().await) }
        });
        while group.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let told = group.hand_on_or_commit(&*db).unwrap().expect("handed on");
        waiter.abort();
        let _ = waiter.await;
        drop(gate);
        let settle = |_gate| {
            let (group, db) = (Arc::clone(&group), Arc::clone(&db));
            async move { group.settle(&*db) }
        };
        tokio::time::timeout(Duration::from_secs(5), group.outcome(told, settle))
            .await
            .expect("it does not wait forever")
            .unwrap();
        assert_eq!(db.commits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_group_holds_at_most_its_maximum() {
        let (group, db) = (GroupCommit::new(3), Counting::default());
        group.waiting.fetch_add(1, Ordering::SeqCst);
        let first = group.hand_on_or_commit(&db).unwrap();
        let second = group.hand_on_or_commit(&db).unwrap();
        let third = group.hand_on_or_commit(&db).unwrap();
        assert!(first.is_some() && second.is_some());
        assert!(third.is_none(), "the third push of a group of 3 commits it");
        assert_eq!(db.commits.load(Ordering::SeqCst), 1);
    }
}
