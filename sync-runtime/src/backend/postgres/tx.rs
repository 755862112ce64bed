//! A push's transaction on a pooled connection, and the entity statements it shares with the
//! backend's reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use deadpool_postgres::{ClientWrapper as Client, Object};
use hashbrown::HashSet;
use serde_json::Value;
use tokio_postgres::types::ToSql;

use super::super::sql::{Context, op_name, parse_json, to_i64, to_u64};
use super::gate::Pass;
use super::log::row_error;
use super::{Inner, horizon};
use crate::backend::{Commit, CommitParts, Committed, Failure, Transaction};
use crate::error::StoreError;

/// Takes one advisory lock, held until the transaction ends.
const LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

/// One push's transaction. It locks each client before it reads the client's sequence number
/// and each scope before it reads or writes it (module docs), and takes its cursors when it
/// commits.
///
/// It takes its connection at its first statement, once it has its turn at the gates of the
/// keys it knows by then (module `gate`): the client of the first mutation and its scope.
///
/// A statement that fails aborts a PostgreSQL transaction: the push's commit then fails, and
/// the push answers 503 whole.
pub struct PostgresTransaction {
    /// `None` before the first statement and once committed; `drop` rolls back a transaction
    /// still holding it.
    client: Option<Object>,
    inner: Arc<Inner>,
    /// The advisory locks this transaction holds.
    locked: HashSet<i64>,
    /// The keys of the scopes it expects to read before its first statement.
    expected: Vec<i64>,
    /// Its turns at this node's gates, kept until its advisory locks are released.
    passes: Vec<(i64, Pass)>,
    /// Whether `BEGIN` was sent: it goes out with the first statements, in their pipeline.
    begun: bool,
}

impl PostgresTransaction {
    pub(super) fn begin(inner: &Arc<Inner>) -> Self {
        PostgresTransaction {
            client: None,
            inner: Arc::clone(inner),
            locked: HashSet::new(),
            expected: Vec::new(),
            passes: Vec::new(),
            begun: false,
        }
    }

    /// Makes sure the transaction has a connection before it locks `keys`. The first time, it
    /// waits for its turn at the gates of `keys` and of the scopes expected, then takes the
    /// connection; later, it only takes the turns no other push of this node holds, and waits
    /// for the others' advisory locks with its connection, in PostgreSQL's sight.
    async fn connect_for(&mut self, keys: &[i64]) -> Result<(), StoreError> {
        let gates = &self.inner.gates;
        if self.client.is_some() {
            for key in keys {
                if !self.passes.iter().any(|(held, _)| held == key)
                    && let Some(pass) = gates.try_enter(*key)
                {
                    self.passes.push((*key, pass));
                }
            }
            return Ok(());
        }
        let mut wanted: Vec<i64> = keys.iter().chain(&self.expected).copied().collect();
        wanted.sort_unstable();
        wanted.dedup();
        for key in wanted {
            let pass = gates.enter(key, self.inner.lock_timeout).await?;
            self.passes.push((key, pass));
        }
        self.client = Some(self.inner.connection().await?);
        Ok(())
    }

    /// `BEGIN` where it was not sent yet; it then counts as sent (a `BEGIN` that fails fails
    /// the statements after it too).
    fn begin_first(&mut self) -> Option<&'static str> {
        (!std::mem::replace(&mut self.begun, true)).then_some("BEGIN")
    }

    fn client(&self) -> Result<&Client, StoreError> {
        self.client
            .as_deref()
            .ok_or_else(|| StoreError::new("PostgreSQL: the transaction has ended"))
    }

    /// The lock statement where this transaction does not hold `key` yet (it then counts as
    /// held: a lock statement that fails aborts the transaction).
    async fn lock_to_take(
        &mut self,
        key: i64,
    ) -> Result<Option<tokio_postgres::Statement>, StoreError> {
        if !self.locked.insert(key) {
            return Ok(None);
        }
        self.client()?
            .prepare_cached(LOCK)
            .await
            .map(Some)
            .context(|| "cannot prepare the advisory lock".to_owned())
    }

    /// Runs `read` once the lock `key` is held: both pipelined, the read after the lock, so that
    /// its snapshot (taken when it starts) holds every commit of the lock's previous holder.
    async fn read_locked<T>(
        &mut self,
        key: i64,
        read: &str,
        params: &[&(dyn ToSql + Sync)],
        what: impl FnOnce() -> String,
        each: impl FnOnce(Vec<tokio_postgres::Row>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.connect_for(&[key]).await?;
        let lock = self.lock_to_take(key).await?;
        let begin = self.begin_first();
        let client = self.client()?;
        let read = client
            .prepare_cached(read)
            .await
            .context(|| "cannot prepare a read".to_owned())?;
        let begin = async {
            match begin {
                Some(begin) => client.batch_execute(begin).await,
                None => Ok(()),
            }
        };
        let take = async {
            match &lock {
                Some(lock) => client.execute(lock, &[&key]).await.map(drop),
                None => Ok(()),
            }
        };
        let ((), (), rows) =
            futures::try_join!(begin, take, client.query(&read, params)).context(what)?;
        each(rows)
    }

    /// Gives the connection back: to the pool after a rollback, or closed where even that
    /// failed.
    async fn rollback(client: Object) {
        if let Err(error) = client.batch_execute(UNDO).await {
            tracing::warn!(%error, "could not roll back a PostgreSQL transaction; closing its connection");
            drop(Object::take(client));
        }
    }
}

impl Drop for PostgresTransaction {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        // The gates open once the advisory locks are released.
        let passes = std::mem::take(&mut self.passes);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    PostgresTransaction::rollback(client).await;
                    drop(passes);
                });
            }
            // Without a runtime, closing the connection makes the server roll back.
            Err(_) => drop(Object::take(client)),
        }
    }
}

impl Transaction for PostgresTransaction {
    fn expect_scope(&mut self, scope: &str) {
        if self.client.is_none() {
            self.expected.push(self.inner.keys.scope(scope));
        }
    }

    async fn get(
        &mut self,
        scope: &str,
        entity: &str,
        id: &str,
    ) -> Result<Option<Value>, StoreError> {
        let key = self.inner.keys.scope(scope);
        self.read_locked(
            key,
            GET,
            &[&scope, &entity, &id],
            || format!("cannot read {entity} `{id}` in scope `{scope}`"),
            |rows| {
                let Some(row) = rows.first() else {
                    return Ok(None);
                };
                let text: String = row.try_get(0).map_err(row_error)?;
                parse_json(&text, format_args!("{entity} `{id}`")).map(Some)
            },
        )
        .await
    }

    async fn contains(&mut self, scope: &str, entity: &str, id: &str) -> Result<bool, StoreError> {
        let key = self.inner.keys.scope(scope);
        self.read_locked(
            key,
            "SELECT 1 FROM sync_entities WHERE scope = $1 AND entity = $2 AND id = $3",
            &[&scope, &entity, &id],
            || format!("cannot read {entity} `{id}` in scope `{scope}`"),
            |rows| Ok(!rows.is_empty()),
        )
        .await
    }

    async fn list(
        &mut self,
        scope: &str,
        entity: &str,
    ) -> Result<BTreeMap<String, Value>, StoreError> {
        let key = self.inner.keys.scope(scope);
        self.read_locked(
            key,
            LIST,
            &[&scope, &entity],
            || format!("cannot list {entity} in scope `{scope}`"),
            |rows| listed(&rows, entity),
        )
        .await
    }

    async fn client_seq(&mut self, client_id: &str) -> Result<Option<u64>, StoreError> {
        let key = self.inner.keys.client(client_id);
        self.read_locked(
            key,
            "SELECT seq FROM sync_clients WHERE client_id = $1",
            &[&client_id],
            || format!("cannot read the last client_seq of `{client_id}`"),
            |rows| {
                let Some(row) = rows.first() else {
                    return Ok(None);
                };
                to_u64(row.try_get(0).map_err(row_error)?, "client_seq").map(Some)
            },
        )
        .await
    }

    async fn failure(
        &mut self,
        client_id: &str,
        client_seq: u64,
    ) -> Result<Option<Failure>, StoreError> {
        let seq = to_i64(client_seq, "client_seq")?;
        let key = self.inner.keys.client(client_id);
        self.read_locked(
            key,
            "SELECT code, error FROM sync_failures WHERE client_id = $1 AND seq = $2",
            &[&client_id, &seq],
            || format!("cannot read how client_seq {seq} of `{client_id}` failed"),
            |rows| {
                let Some(row) = rows.first() else {
                    return Ok(None);
                };
                Ok(Some(Failure {
                    client_id: client_id.to_owned(),
                    client_seq,
                    code: row.try_get(0).map_err(row_error)?,
                    error: row.try_get(1).map_err(row_error)?,
                }))
            },
        )
        .await
    }

    async fn commit(mut self, commit: Commit) -> Result<Committed, StoreError> {
        let result = self.commit_on(commit).await;
        let client = self.client.take();
        match (result, client) {
            (Ok((committed, xid, passed)), Some(client)) => {
                // Committed: the advisory locks are released, and so are the gates.
                self.passes.clear();
                let started = Instant::now();
                if !passed {
                    // The connection goes back to the pool for the wait.
                    drop(client);
                    self.inner.horizon.wait_past(&self.inner, xid).await?;
                }
                crate::metrics::horizon_wait(started.elapsed());
                Ok(committed)
            }
            (Ok(_), None) => Err(StoreError::new("PostgreSQL: the transaction has ended")),
            (Err(error), client) => {
                if let Some(client) = client {
                    PostgresTransaction::rollback(client).await;
                }
                Err(error)
            }
        }
    }
}

impl PostgresTransaction {
    /// Locks the scopes the commit writes and the clients it records that the push has not
    /// locked yet, takes the cursors and the transaction id under the cursor lock, writes
    /// everything ([`WRITE`], one statement) and commits: one pipeline, one round trip. Returns
    /// what was committed, the transaction's id, and whether the horizon had passed it right
    /// after the commit.
    async fn commit_on(&mut self, commit: Commit) -> Result<(Committed, i64, bool), StoreError> {
        let CommitParts {
            writes,
            mut changes,
            client_seqs,
            failures,
            pending,
        } = commit.into_parts();

        // Sorted, so that two commits that lock the same ones do so in one order.
        let keys = &self.inner.keys;
        let clients = || {
            let failed = failures.iter().map(|failure| &failure.client_id);
            client_seqs
                .iter()
                .map(|(id, _)| id)
                .chain(failed)
                .map(|id| keys.client(id))
        };
        let mut wanted: Vec<i64> = writes
            .iter()
            .map(|write| keys.scope(write.scope()))
            .chain(changes.iter().map(|change| keys.scope(&change.scope)))
            .chain(clients())
            .filter(|key| !self.locked.contains(key))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let cursor_lock = keys.cursors();
        // A delete and a client's record must see what their locks' previous holders
        // committed: where the push holds such a lock not yet, it is taken in a statement
        // before `WRITE`, whose snapshot precedes its own locks (`LOCK_ALL`).
        let snapshot_bound = writes
            .iter()
            .filter(|write| write.json().is_none())
            .map(|write| keys.scope(write.scope()))
            .chain(clients())
            .any(|key| wanted.binary_search(&key).is_ok());
        self.connect_for(&wanted).await?;
        self.locked.extend(wanted.iter().copied());
        let lock_first = if snapshot_bound {
            std::mem::take(&mut wanted)
        } else {
            Vec::new()
        };
        let count = to_i64(changes.len() as u64, "change count")?;
        let begin = self.begin_first();

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
        for (change, _) in pending.iter() {
            if let Some(op) = ops.get_mut(change) {
                *op = PENDING;
            }
        }
        let failed = FailureColumns::new(&failures)?;
        let now = Utc::now();
        let ts = now.timestamp_micros();

        let client = self.client()?;
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

        let begin = async {
            match begin {
                Some(begin) => client.batch_execute(begin).await,
                None => Ok(()),
            }
        };
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
        let (written, (committed, looked)) = match &self.inner.before_commit {
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
        let Some(first) = rows.first() else {
            return Err(StoreError::new(
                "PostgreSQL: a push's commit statement returned no row",
            ));
        };
        let xid: i64 = first.try_get(0).map_err(row_error)?;
        let last: i64 = first.try_get(1).map_err(row_error)?;
        // Committed: what the writes found is final.
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
        pending.resolve(&mut changes, |change, _| {
            existed.get(change).copied().flatten()
        })?;
        let xmin =
            looked.context(|| "cannot read the change log's visibility horizon".to_owned())?;
        self.inner.horizon.saw(xmin);
        let passed = self.inner.horizon.passed(xid);
        let before = to_u64(last, "cursor")?.saturating_sub(changes.len() as u64);
        // The changes now hold their data alone: logging moves it.
        drop(writes);
        Ok((Committed::numbered(before, changes, now), xid, passed))
    }
}

/// Locks the keys `$1` (in ascending order), held until the transaction ends: for a commit that
/// deletes in a scope, or records a client, it had not locked, so that [`WRITE`]'s snapshot
/// follows the locks (a `DELETE` must find the rows the lock's previous holder committed, and a
/// client's `prev_seq` must see that its previous writer ended).
const LOCK_ALL: &str = "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT k FROM unnest($1::bigint[]) AS k ORDER BY k) AS keys";

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

/// A push's writes, in one statement of CTEs, each step on what the one before it returned:
///
/// 1. `held`: the advisory locks `$3`, in ascending order, held until the transaction ends (the
///    scopes and clients the commit writes that the push had not locked yet);
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
/// The writes are exact whatever the statement's snapshot (taken before the locks), but for the
/// `DELETE` and `prev_seq`: a commit that deletes in a scope, or records a client, it had not
/// locked takes those locks in [`LOCK_ALL`] first (the engine locks a client when it reads its
/// `client_seq`, before anything it records). A client's record keeps the id of the
/// transaction that wrote it, and `prev_seq`: the number it replaced where that one's writer is
/// already behind the horizon of the snapshot, else the one that writer kept. A change sent
/// with the op `put` (a put of a key the push had not read) is logged as the write of its key
/// found it, `update` where the entity existed (the upsert met a conflict, `xmax` set on the
/// updated row; or the delete removed a row), else `create`. An insert that meets a concurrent
/// push's insert of the key waits for it, and then updates: exact under concurrency. Returns
/// the transaction's id and the last cursor taken, and per pending change its position (from 1)
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

/// [`WRITE`] for a commit that deletes nothing and records no failure, most of them: its first
/// fifteen parameters, without those two writes. A smaller plan is cheaper for PostgreSQL to
/// start on every push (16 pushers: +16 % at the median, BENCHMARKS.md, 2026-12-07 evening).
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

const GET: &str = "SELECT data FROM sync_entities WHERE scope = $1 AND entity = $2 AND id = $3";

const LIST: &str = "SELECT id, data FROM sync_entities WHERE scope = $1 AND entity = $2";

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

pub(super) async fn get(
    client: &Client,
    scope: &str,
    entity: &str,
    id: &str,
) -> Result<Option<Value>, StoreError> {
    let stmt = client
        .prepare_cached(GET)
        .await
        .context(|| "cannot prepare the entity read".to_owned())?;
    let text: Option<String> = client
        .query_opt(&stmt, &[&scope, &entity, &id])
        .await
        .and_then(|row| row.map(|row| row.try_get(0)).transpose())
        .context(|| format!("cannot read {entity} `{id}` in scope `{scope}`"))?;
    text.map(|text| parse_json(&text, format_args!("{entity} `{id}`")))
        .transpose()
}

pub(super) async fn list(
    client: &Client,
    scope: &str,
    entity: &str,
) -> Result<BTreeMap<String, Value>, StoreError> {
    let stmt = client
        .prepare_cached(LIST)
        .await
        .context(|| "cannot prepare the list query".to_owned())?;
    let rows = client
        .query(&stmt, &[&scope, &entity])
        .await
        .context(|| format!("cannot list {entity} in scope `{scope}`"))?;
    listed(&rows, entity)
}

fn listed(
    rows: &[tokio_postgres::Row],
    entity: &str,
) -> Result<BTreeMap<String, Value>, StoreError> {
    let mut ids = BTreeMap::new();
    for row in rows {
        let id: String = row.try_get(0).map_err(row_error)?;
        let text: String = row.try_get(1).map_err(row_error)?;
        let value = parse_json(&text, format_args!("{entity} `{id}`"))?;
        ids.insert(id, value);
    }
    Ok(ids)
}

/// The failures of a commit as the columns of an `unnest`.
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
