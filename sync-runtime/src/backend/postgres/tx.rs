//! A push's transaction on a pooled connection, and the entity statements it shares with the
//! backend's reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use deadpool_postgres::{ClientWrapper as Client, Object};
use serde_json::Value;
use tokio::sync::OwnedMutexGuard;
use tokio_postgres::types::ToSql;

use super::super::sql::{Context, Encoded, op_name, parse_json, to_i64, to_u64};
use super::Inner;
use super::log::row_error;
use crate::backend::{Commit, CommitParts, Committed, Failure, Transaction};
use crate::error::StoreError;

/// One push's transaction. It locks the head row when it begins, which serializes writing
/// transactions on every node until its commit.
///
/// A statement that fails aborts a PostgreSQL transaction: the push's commit then fails, and
/// the push answers 503 whole.
pub struct PostgresTransaction {
    /// `None` once committed; `drop` rolls back a transaction still holding it.
    client: Option<Object>,
    gate: Option<OwnedMutexGuard<()>>,
}

impl PostgresTransaction {
    pub(super) async fn begin(inner: &Arc<Inner>) -> Result<Self, StoreError> {
        let gate = Arc::clone(&inner.gate).lock_owned().await;
        let client = inner.connection().await?;
        let tx = PostgresTransaction {
            client: Some(client),
            gate: Some(gate),
        };
        tx.client()?
            .batch_execute("BEGIN; SELECT cursor FROM sync_head WHERE id = 1 FOR UPDATE;")
            .await
            .context(|| "cannot start a push's transaction".to_owned())?;
        Ok(tx)
    }

    fn client(&self) -> Result<&Client, StoreError> {
        self.client
            .as_deref()
            .ok_or_else(|| StoreError::new("PostgreSQL: the transaction has ended"))
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
        let gate = self.gate.take();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    PostgresTransaction::rollback(client).await;
                    drop(gate);
                });
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
        get(self.client()?, scope, entity, id).await
    }

    async fn contains(&mut self, scope: &str, entity: &str, id: &str) -> Result<bool, StoreError> {
        let client = self.client()?;
        let stmt = client
            .prepare_cached(
                "SELECT 1 FROM sync_entities WHERE scope = $1 AND entity = $2 AND id = $3",
            )
            .await
            .context(|| "cannot prepare the entity lookup".to_owned())?;
        let row = client
            .query_opt(&stmt, &[&scope, &entity, &id])
            .await
            .context(|| format!("cannot read {entity} `{id}` in scope `{scope}`"))?;
        Ok(row.is_some())
    }

    async fn list(
        &mut self,
        scope: &str,
        entity: &str,
    ) -> Result<BTreeMap<String, Value>, StoreError> {
        list(self.client()?, scope, entity).await
    }

    async fn client_seq(&mut self, client_id: &str) -> Result<Option<u64>, StoreError> {
        let client = self.client()?;
        let stmt = client
            .prepare_cached("SELECT seq FROM sync_clients WHERE client_id = $1")
            .await
            .context(|| "cannot prepare the client_seq lookup".to_owned())?;
        let seq: Option<i64> = client
            .query_opt(&stmt, &[&client_id])
            .await
            .and_then(|row| row.map(|row| row.try_get(0)).transpose())
            .context(|| format!("cannot read the last client_seq of `{client_id}`"))?;
        seq.map(|seq| to_u64(seq, "client_seq")).transpose()
    }

    async fn failure(
        &mut self,
        client_id: &str,
        client_seq: u64,
    ) -> Result<Option<Failure>, StoreError> {
        let client = self.client()?;
        let seq = to_i64(client_seq, "client_seq")?;
        let stmt = client
            .prepare_cached(
                "SELECT code, error FROM sync_failures WHERE client_id = $1 AND seq = $2",
            )
            .await
            .context(|| "cannot prepare the failure lookup".to_owned())?;
        let row = client
            .query_opt(&stmt, &[&client_id, &seq])
            .await
            .context(|| format!("cannot read how client_seq {seq} of `{client_id}` failed"))?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Failure {
            client_id: client_id.to_owned(),
            client_seq,
            code: row.try_get(0).map_err(row_error)?,
            error: row.try_get(1).map_err(row_error)?,
        }))
    }

    async fn commit(mut self, commit: Commit) -> Result<Committed, StoreError> {
        let result = commit_on(self.client()?, commit).await;
        let Some(client) = self.client.take() else {
            return Err(StoreError::new("PostgreSQL: the transaction has ended"));
        };
        if result.is_err() {
            PostgresTransaction::rollback(client).await;
        } else {
            drop(client);
        }
        drop(self.gate.take());
        result
    }
}

/// Writes the entities, the clients' sequence numbers and the changes (advancing the head) with
/// one pipelined statement each, then commits.
async fn commit_on(client: &Client, commit: Commit) -> Result<Committed, StoreError> {
    let encoded = Encoded::new(&commit)?;
    let CommitParts {
        writes,
        changes,
        client_seqs,
        failures,
    } = commit.into_parts();

    let (mut put, mut gone) = (Columns::default(), Columns::default());
    for (index, write) in writes.iter().enumerate() {
        let columns = match encoded.write(index) {
            Some(text) => {
                put.data.push(Some(text));
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
    for (index, change) in changes.iter().enumerate() {
        logged.push(&change.scope, &change.entity, &change.id);
        logged.data.push(encoded.change(index));
        ops.push(op_name(change.op));
    }
    let count = to_i64(changes.len() as u64, "change count")?;
    let now = Utc::now();
    let ts = now.timestamp_micros();

    let upsert = async {
        if put.is_empty() {
            return Ok(());
        }
        let stmt = client
            .prepare_cached(
                "INSERT INTO sync_entities (scope, entity, id, data)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                 ON CONFLICT (scope, entity, id) DO UPDATE SET data = EXCLUDED.data",
            )
            .await?;
        let params: [&(dyn ToSql + Sync); 4] = [&put.scopes, &put.entities, &put.ids, &put.data];
        client.execute(&stmt, &params).await.map(drop)
    };
    let delete = async {
        if gone.is_empty() {
            return Ok(());
        }
        let stmt = client
            .prepare_cached(
                "DELETE FROM sync_entities e
                 USING unnest($1::text[], $2::text[], $3::text[]) AS d(scope, entity, id)
                 WHERE e.scope = d.scope AND e.entity = d.entity AND e.id = d.id",
            )
            .await?;
        client
            .execute(&stmt, &[&gone.scopes, &gone.entities, &gone.ids])
            .await
            .map(drop)
    };
    let record = async {
        if seq_ids.is_empty() {
            return Ok(());
        }
        let stmt = client
            .prepare_cached(
                "INSERT INTO sync_clients (client_id, seq)
                 SELECT * FROM unnest($1::text[], $2::bigint[])
                 ON CONFLICT (client_id) DO UPDATE SET seq = GREATEST(sync_clients.seq, EXCLUDED.seq)",
            )
            .await?;
        client.execute(&stmt, &[&seq_ids, &seqs]).await.map(drop)
    };
    // The head row is locked by this transaction since `begin`: the cursors follow every
    // committed one, in commit order.
    let append = async {
        let stmt = client
            .prepare_cached(
                "WITH h AS (UPDATE sync_head SET cursor = cursor + $1 WHERE id = 1 RETURNING cursor),
                 ins AS (
                     INSERT INTO sync_changes (cursor, scope, entity, id, op, data, ts)
                     SELECT h.cursor - $1 + c.ord, c.scope, c.entity, c.id, c.op, c.data, $7
                     FROM h, unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                          WITH ORDINALITY AS c(scope, entity, id, op, data, ord)
                 )
                 SELECT cursor FROM h",
            )
            .await?;
        let params: [&(dyn ToSql + Sync); 7] = [
            &count,
            &logged.scopes,
            &logged.entities,
            &logged.ids,
            &ops,
            &logged.data,
            &ts,
        ];
        client.query_one(&stmt, &params).await?.try_get::<_, i64>(0)
    };
    let ((), (), (), head) = futures::try_join!(upsert, delete, record, append)
        .context(|| "cannot write a push".to_owned())?;
    let before = to_u64(head, "head cursor")?.saturating_sub(changes.len() as u64);
    if !failures.is_empty() {
        record_failures(client, &failures, before).await?;
    }
    client
        .batch_execute("COMMIT")
        .await
        .context(|| "cannot commit a push".to_owned())?;
    // The changes now hold their data alone: logging moves it.
    drop(writes);
    Ok(Committed::numbered(before, changes, now))
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
        .prepare_cached(
            "SELECT data FROM sync_entities WHERE scope = $1 AND entity = $2 AND id = $3",
        )
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
        .prepare_cached("SELECT id, data FROM sync_entities WHERE scope = $1 AND entity = $2")
        .await
        .context(|| "cannot prepare the list query".to_owned())?;
    let rows = client
        .query(&stmt, &[&scope, &entity])
        .await
        .context(|| format!("cannot list {entity} in scope `{scope}`"))?;
    let mut ids = BTreeMap::new();
    for row in &rows {
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
