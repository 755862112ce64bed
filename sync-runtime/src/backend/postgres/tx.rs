//! A push's transaction on a pooled connection, and the entity statements it shares with the
//! backend's reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use deadpool_postgres::{ClientWrapper as Client, Object};
use hashbrown::HashSet;
use serde_json::Value;
use tokio_postgres::types::ToSql;

use super::super::sql::{Context, op_name, parse_json, to_i64, to_u64};
use super::log::row_error;
use super::{Inner, Patience};
use crate::backend::{Commit, CommitParts, Committed, Failure, Transaction};
use crate::error::StoreError;

/// Takes one advisory lock, held until the transaction ends.
const LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

/// One push's transaction. It locks each client before it reads the client's sequence number
/// and each scope before it reads or writes it (module docs), and takes its cursors when it
/// commits.
///
/// A statement that fails aborts a PostgreSQL transaction: the push's commit then fails, and
/// the push answers 503 whole.
pub struct PostgresTransaction {
    /// `None` once committed; `drop` rolls back a transaction still holding it.
    client: Option<Object>,
    inner: Arc<Inner>,
    /// The advisory locks this transaction holds.
    locked: HashSet<i64>,
    /// Whether `BEGIN` was sent: it goes out with the first statements, in their pipeline.
    begun: bool,
}

impl PostgresTransaction {
    pub(super) async fn begin(inner: &Arc<Inner>) -> Result<Self, StoreError> {
        let client = inner.connection().await?;
        Ok(PostgresTransaction {
            client: Some(client),
            inner: Arc::clone(inner),
            locked: HashSet::new(),
            begun: false,
        })
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
        if let Err(error) = client.batch_execute("ROLLBACK").await {
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
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(PostgresTransaction::rollback(client));
            }
            // Without a runtime, closing the connection makes the server roll back.
            Err(_) => drop(Object::take(client)),
        }
    }
}

impl Transaction for PostgresTransaction {
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
        let Some(client) = self.client.take() else {
            return Err(StoreError::new("PostgreSQL: the transaction has ended"));
        };
        match result {
            Ok((committed, xid, passed)) => {
                if !passed {
                    await_horizon(&self.inner, client, xid).await?;
                }
                Ok(committed)
            }
            Err(error) => {
                PostgresTransaction::rollback(client).await;
                Err(error)
            }
        }
    }
}

impl PostgresTransaction {
    /// Locks the scopes the commit writes and the clients it records that the push has not
    /// locked yet, takes the cursors and the transaction id under the cursor lock, writes
    /// everything with one pipelined statement each, and commits. Returns what was committed,
    /// the transaction's id, and whether the horizon had passed it right after the commit.
    async fn commit_on(&mut self, commit: Commit) -> Result<(Committed, i64, bool), StoreError> {
        let CommitParts {
            writes,
            changes,
            client_seqs,
            failures,
        } = commit.into_parts();

        // Sorted, so that two commits that lock the same ones do so in one order.
        let keys = &self.inner.keys;
        let mut wanted: Vec<i64> = writes
            .iter()
            .map(|write| keys.scope(write.scope()))
            .chain(changes.iter().map(|change| keys.scope(&change.scope)))
            .chain(client_seqs.iter().map(|(id, _)| keys.client(id)))
            .chain(
                failures
                    .iter()
                    .map(|failure| keys.client(&failure.client_id)),
            )
            .filter(|key| !self.locked.contains(key))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        self.locked.extend(wanted.iter().copied());
        let cursor_lock = keys.cursors();
        let count = to_i64(changes.len() as u64, "change count")?;
        let begin = self.begin_first();

        let client = self.client()?;
        let lock = client
            .prepare_cached(LOCK)
            .await
            .context(|| "cannot prepare the advisory lock".to_owned())?;
        let lock_all = client
            .prepare_cached(
                "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k ORDER BY k",
            )
            .await
            .context(|| "cannot prepare the advisory locks".to_owned())?;
        let take = client
            .prepare_cached(TAKE_CURSORS)
            .await
            .context(|| "cannot prepare the cursors' allocation".to_owned())?;
        // One pipeline, whose statements each go out at their future's first poll, so in this
        // order. The savepoint's rollback releases the cursor lock and keeps the transaction id
        // and the sequence's values, which no rollback returns.
        let locks = async {
            if wanted.is_empty() {
                return Ok(());
            }
            client.execute(&lock_all, &[&wanted]).await.map(drop)
        };
        let (lock_params, take_params): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) =
            ([&cursor_lock], [&count]);
        let begin = async {
            match begin {
                Some(begin) => client.batch_execute(begin).await,
                None => Ok(()),
            }
        };
        let (xid, last) = async {
            let ((), (), (), _, row, ()) = futures::try_join!(
                begin,
                locks,
                client.batch_execute("SAVEPOINT sync_cursors"),
                client.execute(&lock, &lock_params),
                client.query_one(&take, &take_params),
                client.batch_execute("ROLLBACK TO SAVEPOINT sync_cursors"),
            )?;
            Ok::<_, tokio_postgres::Error>((row.try_get::<_, i64>(0)?, row.try_get::<_, i64>(1)?))
        }
        .await
        .context(|| "cannot take the push's cursors".to_owned())?;
        let before = to_u64(last, "cursor")?.saturating_sub(changes.len() as u64);
        let at = to_i64(before, "cursor")?;

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
        let now = Utc::now();
        let ts = now.timestamp_micros();

        let upsert = async {
            if put.is_empty() {
                return Ok(());
            }
            let stmt = client.prepare_cached(UPSERT).await?;
            let params: [&(dyn ToSql + Sync); 4] =
                [&put.scopes, &put.entities, &put.ids, &put.data];
            client.execute(&stmt, &params).await.map(drop)
        };
        let delete = async {
            if gone.is_empty() {
                return Ok(());
            }
            let stmt = client.prepare_cached(DELETE).await?;
            client
                .execute(&stmt, &[&gone.scopes, &gone.entities, &gone.ids])
                .await
                .map(drop)
        };
        let record = async {
            if seq_ids.is_empty() {
                return Ok(());
            }
            let stmt = client.prepare_cached(RECORD).await?;
            client
                .execute(&stmt, &[&seq_ids, &seqs, &xid])
                .await
                .map(drop)
        };
        let append = async {
            if logged.is_empty() {
                return Ok(());
            }
            let stmt = client.prepare_cached(APPEND).await?;
            let params: [&(dyn ToSql + Sync); 8] = [
                &at,
                &logged.scopes,
                &logged.entities,
                &logged.ids,
                &ops,
                &logged.data,
                &ts,
                &xid,
            ];
            client.execute(&stmt, &params).await.map(drop)
        };
        futures::try_join!(upsert, delete, record, append)
            .context(|| "cannot write a push".to_owned())?;
        if !failures.is_empty() {
            record_failures(client, &failures, before).await?;
        }
        if let Some(hook) = &self.inner.before_commit {
            (hook.0)().await;
        }
        // The first look at the horizon goes out with the `COMMIT`, and runs after it.
        let horizon = client
            .prepare_cached(PASSED)
            .await
            .context(|| "cannot prepare the horizon query".to_owned())?;
        let horizon_params: [&(dyn ToSql + Sync); 1] = [&xid];
        let (commit, passed) = futures::join!(
            client.batch_execute("COMMIT"),
            client.query_one(&horizon, &horizon_params)
        );
        commit.context(|| "cannot commit a push".to_owned())?;
        let passed = passed
            .and_then(|row| row.try_get(0))
            .context(|| "cannot read the change log's visibility horizon".to_owned())?;
        // The changes now hold their data alone: logging moves it.
        drop(writes);
        Ok((Committed::numbered(before, changes, now), xid, passed))
    }
}

/// Takes `$1` cursors (none: only the transaction id) and returns the transaction's id and the
/// last cursor taken (none taken: the last one any push took). Run under the cursor lock, so
/// that ids and cursors are taken in one order.
const TAKE_CURSORS: &str = "
SELECT pg_current_xact_id()::text::bigint,
       CASE WHEN $1::bigint = 1 THEN nextval('sync_cursor')
            ELSE setval('sync_cursor', nextval('sync_cursor') + $1::bigint - 1) END";

const UPSERT: &str = "
INSERT INTO sync_entities (scope, entity, id, data)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
ON CONFLICT (scope, entity, id) DO UPDATE SET data = EXCLUDED.data";

const DELETE: &str = "
DELETE FROM sync_entities e
USING unnest($1::text[], $2::text[], $3::text[]) AS d(scope, entity, id)
WHERE e.scope = d.scope AND e.entity = d.entity AND e.id = d.id";

/// Records clients' sequence numbers with the transaction's id `$3`; `prev_seq` keeps the number
/// replaced where its writer is already behind the horizon of this statement's snapshot, and
/// otherwise the one that writer kept.
const RECORD: &str = "
INSERT INTO sync_clients AS c (client_id, seq, xid)
SELECT id, seq, $3 FROM unnest($1::text[], $2::bigint[]) AS u(id, seq)
ON CONFLICT (client_id) DO UPDATE SET
    seq = GREATEST(c.seq, EXCLUDED.seq),
    xid = EXCLUDED.xid,
    prev_seq = CASE WHEN c.xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
                    THEN c.seq ELSE c.prev_seq END";

/// Logs the changes at the cursors after `$1`, with the transaction's id `$8`.
const APPEND: &str = "
INSERT INTO sync_changes (cursor, scope, entity, id, op, data, ts, xid)
SELECT $1 + c.ord, c.scope, c.entity, c.id, c.op, c.data, $7, $8
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
     WITH ORDINALITY AS c(scope, entity, id, op, data, ord)";

const GET: &str = "SELECT data FROM sync_entities WHERE scope = $1 AND entity = $2 AND id = $3";

const LIST: &str = "SELECT id, data FROM sync_entities WHERE scope = $1 AND entity = $2";

/// Waits until the horizon has passed the transaction `xid`, which has committed: every cursor
/// up to its own is then resolved, so what the engine pokes and answers is visible to every pull.
/// The connection goes back to the pool: the first look, with the `COMMIT`, found the horizon
/// below the transaction.
async fn await_horizon(inner: &Inner, client: Object, xid: i64) -> Result<(), StoreError> {
    drop(client);
    let mut patience = Patience::new(inner.patience);
    loop {
        patience
            .wait_long(|| format!("a commit (transaction {xid})"))
            .await;
        if passed(&*inner.connection().await?, xid).await? {
            return Ok(());
        }
    }
}

/// Whether the horizon has passed the transaction `$1`.
const PASSED: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint > $1";

async fn passed(client: &Client, xid: i64) -> Result<bool, StoreError> {
    let stmt = client
        .prepare_cached(PASSED)
        .await
        .context(|| "cannot prepare the horizon query".to_owned())?;
    client
        .query_one(&stmt, &[&xid])
        .await
        .and_then(|row| row.try_get(0))
        .context(|| "cannot read the change log's visibility horizon".to_owned())
}

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

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
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

/// Records failures for their retries, at the cursor `at`; the caller commits.
async fn record_failures(client: &Client, failures: &[Failure], at: u64) -> Result<(), StoreError> {
    let at = to_i64(at, "cursor")?;
    let mut ids = Vec::with_capacity(failures.len());
    let mut seqs = Vec::with_capacity(failures.len());
    let mut codes = Vec::with_capacity(failures.len());
    let mut errors = Vec::with_capacity(failures.len());
    for failure in failures {
        ids.push(failure.client_id.as_str());
        seqs.push(to_i64(failure.client_seq, "client_seq")?);
        codes.push(failure.code.as_str());
        errors.push(failure.error.as_str());
    }
    let stmt = client
        .prepare_cached(
            "INSERT INTO sync_failures (client_id, seq, code, error, cursor)
             SELECT *, $5 FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[])
             ON CONFLICT (client_id, seq) DO NOTHING",
        )
        .await
        .context(|| "cannot prepare the failure record".to_owned())?;
    client
        .execute(&stmt, &[&ids, &seqs, &codes, &errors, &at])
        .await
        .context(|| "cannot record the push's failures".to_owned())?;
    Ok(())
}
