//! A lane's open transaction and the pushes that share it (module `lane`).
//!
//! The pushes of a group run one after another in one PostgreSQL transaction. Each reads
//! committed data under the advisory locks it takes (module docs of the backend), held by the
//! group until it commits, with the earlier members' writes laid over it: those wait in memory
//! until the group's end, since a write would take the transaction id early, and the horizon
//! needs the id and all the cursors taken at once (`WRITE`). The group then writes each entity
//! once, in its final state, logs every member's changes in order, and commits: to every reader
//! it is as if the members had committed one after another, with no push between them.
//!
//! A push whose first locks another transaction holds does not wait in a group that holds locks
//! of its own: PostgreSQL would then see two groups each waiting for the other's later member as
//! a deadlock, where each push alone would have waited its turn. The group commits what it has
//! first (module `lane`'s task goes on in a new one), and the push waits in a fresh transaction.
//! A statement that fails aborts the transaction: every member of the group then fails (503;
//! the clients retry, and dedupe holds).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use deadpool_postgres::Object;
use hashbrown::{HashMap, HashSet};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::super::sql::{Context, op_name, parse_json, to_i64, to_u64};
use super::claims::Ticket;
use super::log::row_error;
use super::{Inner, LockKeys, entities, horizon};
use crate::backend::{Commit, CommitParts, Committed, Failure, Key, KeyRef, NewChange, Write};
use crate::change::ChangeOp;
use crate::error::{Sentence, StoreError};

/// Where a push's request is answered.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// What a push's commit in a group came to.
pub(super) struct Done {
    pub(super) committed: Committed,
    /// The group's transaction.
    pub(super) xid: i64,
    /// Whether the horizon had passed it right after the commit.
    pub(super) passed: bool,
}

/// Why a read failed.
pub(super) enum ReadError {
    /// A statement failed, which aborted the group's transaction.
    Aborted(StoreError),
    /// A row did not decode; the transaction goes on.
    Row(StoreError),
}

/// What a group knows of the push it serves.
pub(super) struct Member {
    /// The scopes' locks it expects to need first (`Transaction::expect_scope`).
    expected: Vec<i64>,
    /// Whether it has not read in this group yet.
    fresh: bool,
}

impl Member {
    pub(super) fn new(expected: Vec<i64>) -> Self {
        Member {
            expected,
            fresh: true,
        }
    }
}

/// A push that committed in the group, waiting for the group's commit.
struct Committing {
    /// Where its changes start among the group's.
    start: usize,
    len: usize,
    reply: Reply<Done>,
}

/// One transaction and the work of the pushes in it.
#[derive(Default)]
pub(super) struct Group {
    /// Taken at the first statement.
    client: Option<Object>,
    /// Whether `BEGIN` was sent: it goes out with the first statements, in their pipeline.
    begun: bool,
    /// The advisory locks the transaction holds.
    locked: HashSet<i64>,
    /// Each entity written, once, in its latest state, in the order first written.
    writes: Vec<Write>,
    written: HashMap<Key, usize>,
    /// The members' changes, in order.
    changes: Vec<NewChange>,
    /// The changes whose op the group's write decides: the group's first put of a key, blind.
    pending: Vec<usize>,
    client_seqs: BTreeMap<String, u64>,
    failures: Vec<Failure>,
    members: Vec<Committing>,
    /// The pushes served, the last being served now: their lanes' claims end with the group.
    tickets: Vec<Ticket>,
}

impl Group {
    /// Pushes that committed in it.
    pub(super) fn len(&self) -> usize {
        self.members.len()
    }

    /// The push about to be served.
    pub(super) fn admit(&mut self, ticket: Ticket) {
        self.tickets.push(ticket);
    }

    /// Whether the transaction holds locks or work that a wait in it would hold up.
    fn holds_anything(&self) -> bool {
        self.begun || !self.members.is_empty()
    }

    /// Commits the group so far in a task of its own and goes on as a new one, with the push
    /// being served.
    fn hand_over(&mut self, inner: &Arc<Inner>) {
        let serving = self.tickets.pop();
        let held = std::mem::take(self);
        tokio::spawn(held.commit(Arc::clone(inner)));
        self.tickets.extend(serving);
    }

    /// Fails every member with `error` (the transaction is aborted), rolls back in a task of
    /// its own, and goes on as a new group.
    pub(super) fn abort(&mut self, inner: &Arc<Inner>, error: &StoreError) {
        let mut failed = std::mem::take(self);
        for member in std::mem::take(&mut failed.members) {
            let _ = member.reply.send(Err(copy_error(error)));
        }
        tokio::spawn(failed.commit(Arc::clone(inner)));
    }

    /// Runs `sql` once the locks of `key` (and, at the member's first read, of the scopes it
    /// expects) are held: all in one pipeline, the read after the locks, so that its snapshot
    /// holds every commit of their previous holders.
    async fn query(
        &mut self,
        inner: &Arc<Inner>,
        member: &mut Member,
        key: i64,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<Vec<Row>, ReadError> {
        loop {
            let expected = member.fresh.then_some(&member.expected);
            let mut wanted: Vec<i64> = std::iter::once(key)
                .chain(expected.into_iter().flatten().copied())
                .filter(|key| !self.locked.contains(key))
                .collect();
            wanted.sort_unstable();
            wanted.dedup();
            // A push's first locks wait only in a transaction that holds nothing else.
            let wait = !(member.fresh && self.holds_anything());
            match self.pipeline(inner, &wanted, wait, sql, params, what).await {
                Ok(Some(rows)) => {
                    self.took(&wanted);
                    member.fresh = false;
                    return Ok(rows);
                }
                Ok(None) => self.hand_over(inner),
                Err(error) => return Err(ReadError::Aborted(error)),
            }
        }
    }

    /// `BEGIN` where not sent yet, the locks `keys` (waiting for them, or trying), and `sql`,
    /// pipelined. `None` where a lock tried was taken by another transaction.
    async fn pipeline(
        &mut self,
        inner: &Inner,
        keys: &[i64],
        wait: bool,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<Option<Vec<Row>>, StoreError> {
        if self.client.is_none() {
            self.client = Some(inner.connection().await?);
        }
        let begin = !std::mem::replace(&mut self.begun, true);
        let client = self
            .client
            .as_deref()
            .ok_or_else(|| StoreError::new("PostgreSQL: the transaction has ended"))?;
        let (lock, read) = futures::try_join!(
            client.prepare_cached(if wait { LOCK_ALL } else { TRY_ALL }),
            client.prepare_cached(sql)
        )
        .context(|| "cannot prepare a read".to_owned())?;
        let begin = begin_if(client, begin);
        let lock = async {
            if keys.is_empty() {
                return Ok(true);
            }
            let row = client.query_one(&lock, &[&keys]).await?;
            if wait {
                Ok(true)
            } else {
                row.try_get::<_, Option<bool>>(0)
                    .map(|all| all == Some(true))
            }
        };
        let ((), locked, rows) =
            futures::try_join!(begin, lock, client.query(&read, params)).context(what)?;
        Ok(locked.then_some(rows))
    }

    /// Records locks taken, for this push's lane to claim.
    fn took(&mut self, keys: &[i64]) {
        if keys.is_empty() {
            return;
        }
        self.locked.extend(keys.iter().copied());
        if let Some(ticket) = self.tickets.last_mut() {
            ticket.hold(keys);
        }
    }

    /// The latest write of a key in the group: `Some(None)` where deleted.
    fn written(&self, scope: &str, entity: &str, id: &str) -> Option<Option<&crate::json::Json>> {
        let at = *self.written.get(&KeyRef(scope, entity, id))?;
        self.writes.get(at).map(|write| write.json())
    }

    pub(super) async fn get(
        &mut self,
        inner: &Arc<Inner>,
        member: &mut Member,
        scope: &str,
        entity: &str,
        id: &str,
    ) -> Result<Option<Value>, ReadError> {
        let key = inner.keys.scope(scope);
        let what = || format!("cannot read {entity} `{id}` in scope `{scope}`");
        let rows = self
            .query(inner, member, key, GET, &[&scope, &entity, &id], &what)
            .await?;
        let shown = || format!("{entity} `{id}`");
        if let Some(written) = self.written(scope, entity, id) {
            return written
                .map(|json| json.entity_value(shown()))
                .transpose()
                .map_err(ReadError::Row);
        }
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let text: String = row.try_get(0).map_err(row_error).map_err(ReadError::Row)?;
        parse_json(&text, shown()).map(Some).map_err(ReadError::Row)
    }

    pub(super) async fn contains(
        &mut self,
        inner: &Arc<Inner>,
        member: &mut Member,
        scope: &str,
        entity: &str,
        id: &str,
    ) -> Result<bool, ReadError> {
        let key = inner.keys.scope(scope);
        let what = || format!("cannot read {entity} `{id}` in scope `{scope}`");
        let rows = self
            .query(inner, member, key, CONTAINS, &[&scope, &entity, &id], &what)
            .await?;
        Ok(match self.written(scope, entity, id) {
            Some(written) => written.is_some(),
            None => !rows.is_empty(),
        })
    }

    pub(super) async fn list(
        &mut self,
        inner: &Arc<Inner>,
        member: &mut Member,
        scope: &str,
        entity: &str,
    ) -> Result<BTreeMap<String, Value>, ReadError> {
        let key = inner.keys.scope(scope);
        let what = || format!("cannot list {entity} in scope `{scope}`");
        let rows = self
            .query(inner, member, key, LIST, &[&scope, &entity], &what)
            .await?;
        let mut listed = entities::listed(&rows, entity).map_err(ReadError::Row)?;
        let written = self
            .writes
            .iter()
            .filter(|write| write.scope() == scope && write.entity() == entity);
        for write in written {
            match write.json() {
                Some(json) => {
                    let value = json
                        .entity_value(format_args!("{entity} `{}`", write.id()))
                        .map_err(ReadError::Row)?;
                    listed.insert(write.id().to_owned(), value);
                }
                None => {
                    listed.remove(write.id());
                }
            }
        }
        Ok(listed)
    }

    pub(super) async fn client_seq(
        &mut self,
        inner: &Arc<Inner>,
        member: &mut Member,
        client_id: &str,
    ) -> Result<Option<u64>, ReadError> {
        let key = inner.keys.client(client_id);
        let what = || format!("cannot read the last client_seq of `{client_id}`");
        let rows = self
            .query(inner, member, key, CLIENT_SEQ, &[&client_id], &what)
            .await?;
        let stored = match rows.first() {
            Some(row) => {
                let seq = row.try_get(0).map_err(row_error).map_err(ReadError::Row)?;
                Some(to_u64(seq, "client_seq").map_err(ReadError::Row)?)
            }
            None => None,
        };
        Ok(stored.max(self.client_seqs.get(client_id).copied()))
    }

    pub(super) async fn failure(
        &mut self,
        inner: &Arc<Inner>,
        member: &mut Member,
        client_id: &str,
        client_seq: u64,
    ) -> Result<Option<Failure>, ReadError> {
        let seq = to_i64(client_seq, "client_seq").map_err(ReadError::Row)?;
        let key = inner.keys.client(client_id);
        let what = || format!("cannot read how client_seq {seq} of `{client_id}` failed");
        let rows = self
            .query(inner, member, key, FAILURE, &[&client_id, &seq], &what)
            .await?;
        let earlier = self
            .failures
            .iter()
            .find(|failure| failure.client_id == client_id && failure.client_seq == client_seq);
        if let Some(failure) = earlier {
            return Ok(Some(failure.clone()));
        }
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let column = |at| row.try_get(at).map_err(row_error).map_err(ReadError::Row);
        Ok(Some(Failure {
            client_id: client_id.to_owned(),
            client_seq,
            code: column(0)?,
            error: column(1)?,
        }))
    }

    /// Before a push that read nothing in the group commits in it: where the group holds
    /// anything, the locks of what the push writes are tried, and where one is taken, the group
    /// commits first, so that the push waits in a fresh transaction.
    pub(super) async fn enter_commit(
        &mut self,
        inner: &Arc<Inner>,
        member: &Member,
        commit: &Commit,
    ) -> Result<(), StoreError> {
        if !member.fresh || !self.holds_anything() {
            return Ok(());
        }
        let mut wanted = commit_keys(&inner.keys, commit);
        wanted.retain(|key| !self.locked.contains(key));
        if wanted.is_empty() {
            return Ok(());
        }
        let what = || "cannot lock what a push writes".to_owned();
        match self
            .pipeline(inner, &wanted, false, NOTHING, &[], &what)
            .await?
        {
            Some(_) => self.took(&wanted),
            None => self.hand_over(inner),
        }
        Ok(())
    }

    /// Before the group serves another push: takes the locks of what its last member writes
    /// and has not locked (a lone push's commit takes them in its `WRITE`), waiting for them as
    /// that push alone would, so that the group's commit never waits for a lock while it holds
    /// another push's.
    pub(super) async fn settle(&mut self, inner: &Arc<Inner>) -> Result<(), StoreError> {
        let keys = &inner.keys;
        let clients = clients_of(
            keys,
            self.client_seqs.keys().map(String::as_str),
            &self.failures,
        );
        let mut wanted: Vec<i64> = keys_of(keys, &self.writes, &self.changes)
            .chain(clients)
            .filter(|key| !self.locked.contains(key))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        wanted.sort_unstable();
        wanted.dedup();
        let what = || "cannot lock what a push writes".to_owned();
        self.pipeline(inner, &wanted, true, NOTHING, &[], &what)
            .await?;
        self.took(&wanted);
        Ok(())
    }

    /// Adds a push's commit to the group: its writes over the earlier members', its changes
    /// after theirs. A blind put of a key an earlier member wrote is decided here: `update`
    /// after a put, `create` after a delete.
    pub(super) fn fold(&mut self, commit: Commit, reply: Reply<Done>) {
        let CommitParts {
            writes,
            mut changes,
            client_seqs,
            failures,
            pending,
        } = commit.into_parts();
        let start = self.changes.len();
        for (change, write) in pending.iter() {
            let earlier = writes
                .get(write)
                .and_then(|write| self.written.get(&write.key))
                .and_then(|at| self.writes.get(*at));
            match earlier {
                Some(earlier) => {
                    if let Some(change) = changes.get_mut(change) {
                        change.op = match earlier.json() {
                            Some(_) => ChangeOp::Update,
                            None => ChangeOp::Create,
                        };
                    }
                }
                None => self.pending.push(start + change),
            }
        }
        for write in writes {
            match self.written.get(&write.key).copied() {
                Some(at) => {
                    if let Some(earlier) = self.writes.get_mut(at) {
                        earlier.json = write.json;
                    }
                }
                None => {
                    self.written.insert(write.key.clone(), self.writes.len());
                    self.writes.push(write);
                }
            }
        }
        let len = changes.len();
        self.changes.extend(changes);
        for (client_id, seq) in client_seqs {
            let recorded = self.client_seqs.entry(client_id).or_default();
            *recorded = (*recorded).max(seq);
        }
        self.failures.extend(failures);
        self.members.push(Committing { start, len, reply });
    }

    /// Writes and commits the group, and tells each member; a group with no member rolls back.
    pub(super) async fn commit(mut self, inner: Arc<Inner>) {
        let members = std::mem::take(&mut self.members);
        if members.is_empty() {
            self.end().await;
            return;
        }

        match self.write_and_commit(&inner).await {
            Ok((before, logged, xid, passed)) => {
                crate::metrics::group_commit();
                inner
                    .commits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // The connection goes back to the pool; the claims end with `self`.
                drop(self.client.take());
                let mut logged = logged.into_iter();
                for member in members {
                    let changes = logged.by_ref().take(member.len).collect();
                    let committed = Committed {
                        before: before + member.start as u64,
                        changes,
                    };
                    let done = Done {
                        committed,
                        xid,
                        passed,
                    };
                    let _ = member.reply.send(Ok(done));
                }
            }
            Err(error) => {
                self.end().await;
                let mut members = members;
                let last = members.pop();
                for member in members {
                    let _ = member.reply.send(Err(copy_error(&error)));
                }
                if let Some(member) = last {
                    let _ = member.reply.send(Err(error));
                }
            }
        }
    }

    /// Gives the connection back: to the pool after a rollback, or closed where even that
    /// failed.
    async fn end(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if std::mem::take(&mut self.begun) {
            roll_back(client).await;
        }
    }

    /// Locks the scopes the group writes and the clients it records that it has not locked
    /// yet, takes the cursors and the transaction id under the cursor lock, writes everything
    /// ([`WRITE`], one statement) and commits: one pipeline, one round trip. Returns the head
    /// before the group, its changes as logged, the transaction's id, and whether the horizon
    /// had passed it right after the commit.
    async fn write_and_commit(
        &mut self,
        inner: &Inner,
    ) -> Result<(u64, Vec<Arc<crate::change::Change>>, i64, bool), StoreError> {
        let writes = std::mem::take(&mut self.writes);
        let mut changes = std::mem::take(&mut self.changes);
        let client_seqs = std::mem::take(&mut self.client_seqs);
        let failures = std::mem::take(&mut self.failures);

        // Sorted, so that two commits that lock the same ones do so in one order.
        let keys = &inner.keys;
        let clients = || clients_of(keys, client_seqs.keys().map(String::as_str), &failures);
        let mut wanted: Vec<i64> = keys_of(keys, &writes, &changes)
            .chain(clients())
            .filter(|key| !self.locked.contains(key))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let cursor_lock = keys.cursors();
        // A delete and a client's record must see what their locks' previous holders
        // committed: where the group holds such a lock not yet, it is taken in a statement
        // before `WRITE`, whose snapshot precedes its own locks (`LOCK_ALL`).
        let snapshot_bound = writes
            .iter()
            .filter(|write| write.json().is_none())
            .map(|write| keys.scope(write.scope()))
            .chain(clients())
            .any(|key| wanted.binary_search(&key).is_ok());
        if self.client.is_none() {
            self.client = Some(inner.connection().await?);
        }
        let lock_first = if snapshot_bound {
            std::mem::take(&mut wanted)
        } else {
            Vec::new()
        };
        let count = to_i64(changes.len() as u64, "change count")?;
        let begin = !std::mem::replace(&mut self.begun, true);

        let (mut put, mut gone) = (Columns::default(), Columns::default());
        for write in &writes {
            let columns = match write.json() {
                Some(text) => {
                    put.data.push(Some(text.as_str()));
                    &mut put
                }
                None => &mut gone,
            };
            columns.push(write.scope(), write.entity(), write.id());
        }
        let mut seq_ids = Vec::with_capacity(client_seqs.len());
        let mut seqs = Vec::with_capacity(client_seqs.len());
        for (id, seq) in &client_seqs {
            seq_ids.push(id.as_str());
            seqs.push(to_i64(*seq, "client_seq")?);
        }
        let mut logged = Columns::default();
        let mut ops = Vec::with_capacity(changes.len());
        for change in &changes {
            logged.push(&change.scope, &change.entity, &change.id);
            logged
                .data
                .push(change.data.as_ref().map(|data| data.as_str()));
            ops.push(op_name(change.op));
        }
        // The statement that writes the entities decides these (`WRITE`).
        for change in &self.pending {
            if let Some(op) = ops.get_mut(*change) {
                *op = PENDING;
            }
        }
        let failed = FailureColumns::new(&failures)?;
        let now = Utc::now();
        let ts = now.timestamp_micros();

        let client = self
            .client
            .as_deref()
            .ok_or_else(|| StoreError::new("PostgreSQL: the transaction has ended"))?;
        // Every statement is prepared before the pipeline: each must go out at its future's
        // first poll, so in this order, and none after the `COMMIT`.
        let prepare = |sql: &'static str| client.prepare_cached(sql);
        let puts_only = gone.ids.is_empty() && failed.ids.is_empty();
        let statement = if puts_only { WRITE_PUTS } else { WRITE };
        let (lock_all, write, look_at_horizon) = futures::try_join!(
            prepare(LOCK_ALL),
            prepare(statement),
            prepare(horizon::LOOK)
        )
        .context(|| "cannot prepare a push's commit".to_owned())?;

        let begin = begin_if(client, begin);
        let lock = async {
            if lock_first.is_empty() {
                return Ok(());
            }
            client.execute(&lock_all, &[&lock_first]).await.map(drop)
        };
        let params: [&(dyn ToSql + Sync); 22] = [
            &count,
            &cursor_lock,
            &wanted,
            &logged.scopes,
            &logged.entities,
            &logged.ids,
            &ops,
            &logged.data,
            &ts,
            &put.scopes,
            &put.entities,
            &put.ids,
            &put.data,
            &seq_ids,
            &seqs,
            &gone.scopes,
            &gone.entities,
            &gone.ids,
            &failed.ids,
            &failed.seqs,
            &failed.codes,
            &failed.errors,
        ];
        let write = async {
            let params = if puts_only {
                params.get(..PUTS_PARAMS).unwrap_or(&params)
            } else {
                &params
            };
            let ((), (), rows) = futures::try_join!(begin, lock, client.query(&write, params))?;
            Ok::<_, tokio_postgres::Error>(rows)
        };
        // The horizon's first look goes out with the `COMMIT`, and runs after it.
        let finish = async {
            let look = async {
                client
                    .query_one(&look_at_horizon, &[])
                    .await?
                    .try_get::<_, i64>(0)
            };
            futures::join!(client.batch_execute("COMMIT"), look)
        };
        let (written, (committed, looked)) = match &inner.before_commit {
            // One round trip: where a write fails, the `COMMIT` rolls back, and the error is
            // the write's.
            None => futures::join!(write, finish),
            Some(hook) => {
                let written = write.await;
                if written.is_ok() {
                    (hook.0)().await;
                }
                (written, finish.await)
            }
        };
        let rows = written.context(|| "cannot write a push".to_owned())?;
        committed.context(|| "cannot commit a push".to_owned())?;
        // Committed: nothing is left to roll back.
        self.begun = false;
        let Some(first) = rows.first() else {
            return Err(StoreError::new(
                "PostgreSQL: a push's commit statement returned no row",
            ));
        };
        let xid: i64 = first.try_get(0).map_err(row_error)?;
        let last: i64 = first.try_get(1).map_err(row_error)?;
        // What the writes found is final.
        let mut existed = vec![None; changes.len()];
        for row in &rows {
            let Some(ord) = row.try_get::<_, Option<i64>>(2).map_err(row_error)? else {
                continue; // no pending change
            };
            let found: bool = row.try_get(3).map_err(row_error)?;
            let slot = usize::try_from(ord)
                .ok()
                .and_then(|ord| ord.checked_sub(1))
                .and_then(|at| existed.get_mut(at));
            if let Some(slot) = slot {
                *slot = Some(found);
            }
        }
        for at in &self.pending {
            let found = existed.get(*at).copied().flatten();
            let change = changes.get_mut(*at);
            let (Some(found), Some(change)) = (found, change) else {
                return Err(StoreError::new(format!(
                    "PostgreSQL: the commit did not report whether change {at}'s entity existed"
                )));
            };
            change.op = if found {
                ChangeOp::Update
            } else {
                ChangeOp::Create
            };
        }
        let xmin =
            looked.context(|| "cannot read the change log's visibility horizon".to_owned())?;
        inner.horizon.saw(xmin);
        let passed = inner.horizon.passed(xid);
        let before = to_u64(last, "cursor")?.saturating_sub(changes.len() as u64);
        // The changes now hold their data alone: logging moves it.
        drop(writes);
        let logged = Committed::numbered(before, changes, now).changes;
        Ok((before, logged, xid, passed))
    }
}

/// A group dropped with its transaction open (its lane's task stopped with the runtime) rolls
/// it back, so that its connection goes back to the pool clean.
impl Drop for Group {
    fn drop(&mut self) {
        if !self.begun {
            return;
        }
        let Some(client) = self.client.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(roll_back(client));
            }
            // Without a runtime, closing the connection makes the server roll back.
            Err(_) => drop(Object::take(client)),
        }
    }
}

/// `BEGIN` where `needed`; it goes out at the first poll, ahead of the statements pipelined
/// after it.
async fn begin_if(
    client: &tokio_postgres::Client,
    needed: bool,
) -> Result<(), tokio_postgres::Error> {
    if needed {
        client.batch_execute("BEGIN").await
    } else {
        Ok(())
    }
}

/// Gives a connection back: to the pool after a rollback, or closed where even that failed.
async fn roll_back(client: Object) {
    if let Err(error) = client.batch_execute(UNDO).await {
        tracing::warn!(%error, "could not roll back a PostgreSQL transaction; closing its connection");
        drop(Object::take(client));
    }
}

/// A store error for one more member of a group that failed with `error`.
pub(super) fn copy_error(error: &StoreError) -> StoreError {
    let message = Sentence(error).to_string();
    if error.is_invalid_input() {
        StoreError::invalid_input(message)
    } else {
        StoreError::new(message)
    }
}

/// The locks of everything a push's commit writes and records, sorted, each once.
pub(super) fn commit_keys(keys: &LockKeys, commit: &Commit) -> Vec<i64> {
    let clients = commit.client_seqs().iter().map(|(id, _)| id.as_str());
    let mut wanted: Vec<i64> = keys_of(keys, commit.writes(), commit.changes())
        .chain(clients_of(keys, clients, commit.failures()))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// The scopes' locks of what a commit writes and logs.
fn keys_of<'a>(
    keys: &'a LockKeys,
    writes: &'a [Write],
    changes: &'a [NewChange],
) -> impl Iterator<Item = i64> + 'a {
    writes
        .iter()
        .map(|write| keys.scope(write.scope()))
        .chain(changes.iter().map(|change| keys.scope(&change.scope)))
}

/// The clients' locks of what a commit records.
fn clients_of<'a>(
    keys: &'a LockKeys,
    client_seqs: impl Iterator<Item = &'a str> + 'a,
    failures: &'a [Failure],
) -> impl Iterator<Item = i64> + 'a {
    let failed = failures.iter().map(|failure| failure.client_id.as_str());
    client_seqs.chain(failed).map(|id| keys.client(id))
}

/// Locks the keys `$1` (in ascending order), held until the transaction ends: a push's locks
/// before its read, and a commit's that deletes in a scope, or records a client, it had not
/// locked, so that [`WRITE`]'s snapshot follows the locks (a `DELETE` must find the rows the
/// lock's previous holder committed, and a client's `prev_seq` must see that its previous writer
/// ended).
const LOCK_ALL: &str = "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT k FROM unnest($1::bigint[]) AS k ORDER BY k) AS keys";

/// Tries the locks `$1` (in ascending order) without waiting: whether all were free. Those
/// taken stay held until the transaction ends.
const TRY_ALL: &str = "SELECT bool_and(pg_try_advisory_xact_lock(k)) FROM (SELECT k FROM unnest($1::bigint[]) AS k ORDER BY k) AS keys";

/// A statement that reads nothing, after [`TRY_ALL`] alone.
const NOTHING: &str = "SELECT 1 WHERE false";

const GET: &str = entities::GET;

const CONTAINS: &str = "SELECT 1 FROM sync_entities WHERE scope = $1 AND entity = $2 AND id = $3";

const LIST: &str = entities::LIST;

const CLIENT_SEQ: &str = "SELECT seq FROM sync_clients WHERE client_id = $1";

const FAILURE: &str = "SELECT code, error FROM sync_failures WHERE client_id = $1 AND seq = $2";

/// The steps every [`WRITE`] starts with: its locks, the cursors, and the writes of the
/// clients' records and of the entities put.
macro_rules! write_locks_and_puts {
    () => {
        "
WITH held AS MATERIALIZED (
    SELECT count(pg_advisory_xact_lock(k))
    FROM (SELECT k FROM unnest($3::bigint[]) AS k ORDER BY k) AS keys
), locked AS MATERIALIZED (
    SELECT pg_advisory_lock($2::bigint) FROM held
), taken AS MATERIALIZED (
    SELECT pg_current_xact_id()::text::bigint AS xid,
           CASE WHEN $1::bigint = 1 THEN nextval('sync_cursor')
                ELSE setval('sync_cursor', nextval('sync_cursor') + $1::bigint - 1) END AS last
    FROM locked
), released AS MATERIALIZED (
    SELECT xid, last, pg_advisory_unlock($2::bigint) FROM taken
), seqs AS (
    INSERT INTO sync_clients AS cl (client_id, seq, xid)
    SELECT r.id, r.seq, t.xid
    FROM released t, unnest($14::text[], $15::bigint[]) AS r(id, seq)
    ON CONFLICT (client_id) DO UPDATE SET
        seq = GREATEST(cl.seq, EXCLUDED.seq),
        xid = EXCLUDED.xid,
        prev_seq = CASE WHEN cl.xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
                        THEN cl.seq ELSE cl.prev_seq END
), put AS (
    INSERT INTO sync_entities AS e (scope, entity, id, data)
    SELECT w.scope, w.entity, w.id, w.data
    FROM released t, unnest($10::text[], $11::text[], $12::text[], $13::text[])
         AS w(scope, entity, id, data)
    ON CONFLICT (scope, entity, id) DO UPDATE SET data = EXCLUDED.data
    RETURNING e.scope, e.entity, e.id, NOT (e.xmax = 0) AS existed
)"
    };
}

/// The changes of a [`WRITE`] as CTE `c`, their ops decided from what the writes `$existed`
/// found, and logged at the cursors taken; then the statement's answer.
macro_rules! write_changes {
    ($existed:literal, $joins:literal, $failed:literal) => {
        concat!(
            ", c AS (
    SELECT u.ord, u.scope, u.entity, u.id, u.data, u.op = 'put' AS pending,
           ",
            $existed,
            " AS existed,
           CASE WHEN u.op <> 'put' THEN u.op WHEN ",
            $existed,
            " THEN 'update' ELSE 'create' END AS op
    FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
         WITH ORDINALITY AS u(scope, entity, id, op, data, ord)
    LEFT JOIN put p
        ON u.op = 'put' AND p.scope = u.scope AND p.entity = u.entity AND p.id = u.id",
            $joins,
            "
), logged AS (
    INSERT INTO sync_changes (cursor, scope, entity, id, op, data, ts, xid)
    SELECT t.last - $1::bigint + c.ord, c.scope, c.entity, c.id, c.op, c.data, $9, t.xid
    FROM released t, c
)",
            $failed,
            "
SELECT t.xid, t.last, p.ord, p.existed
FROM released t
LEFT JOIN (SELECT ord, existed FROM c WHERE pending) AS p ON true"
        )
    };
}

/// A group's writes, in one statement of CTEs, each step on what the one before it returned:
///
/// 1. `held`: the advisory locks `$3`, in ascending order, held until the transaction ends (the
///    scopes and clients the group writes that it had not locked yet);
/// 2. `locked`, `taken`, `released`: the cursor lock `$2`, then the transaction's id and `$1`
///    cursors (none: the last one any push took), then the cursor lock released. The cursor lock
///    is the session's, held for these steps only: each materialized CTE runs before what reads
///    it, and every write below reads `released`, so no write (which would take the transaction
///    id) comes before it. A statement that fails in between leaves the lock held: the
///    rollback then releases it ([`UNDO`]);
/// 3. the clients' sequence numbers recorded (`$14`, `$15`), the entities written (`$10`-`$13`
///    put, `$16`-`$18` deleted), the `$1` changes logged (`$4`-`$8`, at `$9`) at the cursors
///    taken, and the failures (`$19`-`$22`) recorded for their retries at the cursor before
///    them.
///
/// Each entity and each client appears once (the group keeps their final states: one statement
/// cannot upsert a row twice, nor see its own `INSERT` from its `DELETE`). The writes are exact
/// whatever the statement's snapshot (taken before the locks), but for the `DELETE` and
/// `prev_seq`: a group that deletes in a scope, or records a client, it had not locked takes
/// those locks in [`LOCK_ALL`] first (the engine locks a client when it reads its `client_seq`,
/// before anything it records). A client's record keeps the id of the transaction that wrote
/// it, and `prev_seq`: the number it replaced where that one's writer is already behind the
/// horizon of the snapshot, else the one that writer kept. A change sent with the op `put` (the
/// group's first put of a key, which no member read) is logged as the write of its key found it,
/// `update` where the entity existed (the upsert met a conflict, `xmax` set on the updated row;
/// or the delete removed a row), else `create`. An insert that meets a concurrent push's insert
/// of the key waits for it, and then updates: exact under concurrency. Returns the
/// transaction's id and the last cursor taken, and per pending change its position (from 1)
/// and whether its entity existed.
const WRITE: &str = concat!(
    write_locks_and_puts!(),
    ", gone AS (
    DELETE FROM sync_entities e
    USING released t, unnest($16::text[], $17::text[], $18::text[]) AS d(scope, entity, id)
    WHERE e.scope = d.scope AND e.entity = d.entity AND e.id = d.id
    RETURNING e.scope, e.entity, e.id
)",
    write_changes!(
        "COALESCE(p.existed, g.id IS NOT NULL)",
        "
    LEFT JOIN gone g
        ON u.op = 'put' AND g.scope = u.scope AND g.entity = u.entity AND g.id = u.id",
        ", failed AS (
    INSERT INTO sync_failures (client_id, seq, code, error, cursor)
    SELECT f.id, f.seq, f.code, f.error, t.last - $1::bigint
    FROM released t, unnest($19::text[], $20::bigint[], $21::text[], $22::text[])
         AS f(id, seq, code, error)
    ON CONFLICT (client_id, seq) DO NOTHING
)"
    )
);

/// [`WRITE`] for a group that deletes nothing and records no failure, most of them: its first
/// fifteen parameters, without those two writes. A smaller plan is cheaper for PostgreSQL to
/// start on every commit (16 pushers: +16 % at the median, BENCHMARKS.md, 2026-12-07 evening).
const WRITE_PUTS: &str = concat!(
    write_locks_and_puts!(),
    write_changes!("COALESCE(p.existed, false)", "", "")
);

/// How many of [`WRITE`]'s parameters [`WRITE_PUTS`] takes.
const PUTS_PARAMS: usize = 15;

/// Rolls the transaction back and releases the session's advisory locks: the cursor lock, where
/// [`WRITE`] failed while holding it.
const UNDO: &str = "ROLLBACK; SELECT pg_advisory_unlock_all()";

/// The op a pending change is sent with, which [`WRITE`] decides.
const PENDING: &str = "put";

/// Keys and data as the columns of an `unnest`.
#[derive(Default)]
struct Columns<'a> {
    scopes: Vec<&'a str>,
    entities: Vec<&'a str>,
    ids: Vec<&'a str>,
    data: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, scope: &'a str, entity: &'a str, id: &'a str) {
        self.scopes.push(scope);
        self.entities.push(entity);
        self.ids.push(id);
    }
}

/// The failures of a group as the columns of an `unnest`.
struct FailureColumns<'a> {
    ids: Vec<&'a str>,
    seqs: Vec<i64>,
    codes: Vec<&'a str>,
    errors: Vec<&'a str>,
}

impl<'a> FailureColumns<'a> {
    fn new(failures: &'a [Failure]) -> Result<Self, StoreError> {
        let mut columns = FailureColumns {
            ids: Vec::with_capacity(failures.len()),
            seqs: Vec::with_capacity(failures.len()),
            codes: Vec::with_capacity(failures.len()),
            errors: Vec::with_capacity(failures.len()),
        };
        for failure in failures {
            columns.ids.push(failure.client_id.as_str());
            columns.seqs.push(to_i64(failure.client_seq, "client_seq")?);
            columns.codes.push(failure.code.as_str());
            columns.errors.push(failure.error.as_str());
        }
        Ok(columns)
    }
}
