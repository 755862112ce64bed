//! The statements on entities and clients' sequence numbers.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::super::sql::{Context, parse_json, to_i64, to_u64};
use crate::backend::{Failure, Write};
use crate::error::StoreError;
use crate::protocol::ScopeData;

pub(super) fn get(
    conn: &Connection,
    scope: &str,
    entity: &str,
    id: &str,
) -> Result<Option<Value>, StoreError> {
    let text: Option<String> = conn
        .prepare_cached(
            "SELECT data FROM sync_entities WHERE scope = ?1 AND entity = ?2 AND id = ?3",
        )
        .and_then(|mut stmt| {
            stmt.query_row([scope, entity, id], |row| row.get(0))
                .optional()
        })
        .context(|| format!("cannot read {entity} `{id}` in scope `{scope}`"))?;
    text.map(|text| parse_json(&text, format_args!("{entity} `{id}`")))
        .transpose()
}

pub(super) fn contains(
    conn: &Connection,
    scope: &str,
    entity: &str,
    id: &str,
) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT 1 FROM sync_entities WHERE scope = ?1 AND entity = ?2 AND id = ?3")
        .and_then(|mut stmt| stmt.exists([scope, entity, id]))
        .context(|| format!("cannot read {entity} `{id}` in scope `{scope}`"))
}

pub(super) fn list(
    conn: &Connection,
    scope: &str,
    entity: &str,
) -> Result<BTreeMap<String, Value>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT id, data FROM sync_entities WHERE scope = ?1 AND entity = ?2")
        .context(|| "cannot prepare the list query".to_owned())?;
    let rows = stmt
        .query_map([scope, entity], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .context(|| format!("cannot list {entity} in scope `{scope}`"))?;
    let mut ids = BTreeMap::new();
    for row in rows {
        let (id, text) = row.context(|| format!("cannot list {entity} in scope `{scope}`"))?;
        let value = parse_json(&text, format_args!("{entity} `{id}`"))?;
        ids.insert(id, value);
    }
    Ok(ids)
}

/// Up to `limit` of a scope's entities after `after`, by `(entity, id)`.
pub(super) fn scope(
    conn: &Connection,
    scope: &str,
    after: Option<(&str, &str)>,
    limit: usize,
) -> Result<ScopeData, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let (sql, after) = match after {
        None => (
            "SELECT entity, id, data FROM sync_entities WHERE scope = ?1 \
             AND ?2 IS NULL AND ?3 IS NULL ORDER BY entity, id LIMIT ?4",
            (None, None),
        ),
        Some((entity, id)) => (
            "SELECT entity, id, data FROM sync_entities WHERE scope = ?1 \
             AND (entity, id) > (?2, ?3) ORDER BY entity, id LIMIT ?4",
            (Some(entity), Some(id)),
        ),
    };
    let mut stmt = conn
        .prepare_cached(sql)
        .context(|| "cannot prepare the snapshot query".to_owned())?;
    let mut rows = stmt
        .query(params![scope, after.0, after.1, limit])
        .context(|| format!("cannot read the data of scope `{scope}`"))?;
    let mut data = ScopeData::new();
    let get = |e: rusqlite::Error| StoreError::with_source("SQLite: cannot read an entity", e);
    while let Some(row) = rows
        .next()
        .context(|| format!("cannot read the data of scope `{scope}`"))?
    {
        let entity: String = row.get(0).map_err(get)?;
        let id: String = row.get(1).map_err(get)?;
        let text: String = row.get(2).map_err(get)?;
        let value = parse_json(&text, format_args!("{entity} `{id}`"))?;
        data.entry(entity).or_default().insert(id, value);
    }
    Ok(data)
}

pub(super) fn client_seq(conn: &Connection, client_id: &str) -> Result<Option<u64>, StoreError> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sync_clients WHERE client_id = ?1")
        .and_then(|mut stmt| stmt.query_row([client_id], |row| row.get(0)).optional())
        .context(|| format!("cannot read the last client_seq of `{client_id}`"))?;
    seq.map(|seq| to_u64(seq, "client_seq")).transpose()
}

/// Applies a commit's entity writes; the caller commits. Returns, per write whose entity's
/// existence is wanted ([`Write::existence_unknown`]), whether the entity existed before, which
/// the write itself tells: an insert that finds the key inserts nothing (and an update follows),
/// a delete reports whether it removed a row. The other writes are upserts and deletes, `None`.
pub(super) fn write(conn: &Connection, writes: &[Write]) -> Result<Vec<Option<bool>>, StoreError> {
    // Each statement is taken from the cache once per commit, not once per write.
    let prepare = |sql: &str, what: &str| {
        conn.prepare_cached(sql)
            .context(|| format!("cannot prepare the entity {what}"))
    };
    let mut upsert = prepare(
        "INSERT INTO sync_entities (scope, entity, id, data) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (scope, entity, id) DO UPDATE SET data = excluded.data",
        "write",
    )?;
    let mut insert = prepare(
        "INSERT INTO sync_entities (scope, entity, id, data) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (scope, entity, id) DO NOTHING",
        "insert",
    )?;
    let mut update = prepare(
        "UPDATE sync_entities SET data = ?4 WHERE scope = ?1 AND entity = ?2 AND id = ?3",
        "update",
    )?;
    let mut delete = prepare(
        "DELETE FROM sync_entities WHERE scope = ?1 AND entity = ?2 AND id = ?3",
        "delete",
    )?;
    let mut existed = Vec::with_capacity(writes.len());
    for write in writes {
        let (scope, entity, id) = (write.scope(), write.entity(), write.id());
        let found = match (write.json(), write.existence_unknown()) {
            (Some(text), false) => upsert
                .execute([scope, entity, id, text.as_str()])
                .map(|_| None),
            // Inserted, or found: then updated.
            (Some(text), true) => {
                let row = [scope, entity, id, text.as_str()];
                match insert.execute(row) {
                    Ok(1) => Ok(Some(false)),
                    Ok(_) => update.execute(row).map(|_| Some(true)),
                    Err(error) => Err(error),
                }
            }
            (None, unknown) => delete
                .execute([scope, entity, id])
                .map(|removed| unknown.then_some(removed > 0)),
        }
        .context(|| format!("cannot write {entity} `{id}` in scope `{scope}`"))?;
        existed.push(found);
    }
    Ok(existed)
}

/// Records each client's highest sequence number; the caller commits.
pub(super) fn record_client_seqs(
    conn: &Connection,
    seqs: &[(String, u64)],
) -> Result<(), StoreError> {
    let mut upsert = conn
        .prepare_cached(
            "INSERT INTO sync_clients (client_id, seq) VALUES (?1, ?2) \
             ON CONFLICT (client_id) DO UPDATE SET seq = max(seq, excluded.seq)",
        )
        .context(|| "cannot prepare the client_seq record".to_owned())?;
    for (client_id, seq) in seqs {
        let seq = to_i64(*seq, "client_seq")?;
        upsert
            .execute(params![client_id, seq])
            .context(|| format!("cannot record client_seq {seq} of `{client_id}`"))?;
    }
    Ok(())
}

pub(super) fn failure(
    conn: &Connection,
    client_id: &str,
    seq: u64,
) -> Result<Option<Failure>, StoreError> {
    let at = to_i64(seq, "client_seq")?;
    conn.prepare_cached("SELECT code, error FROM sync_failures WHERE client_id = ?1 AND seq = ?2")
        .and_then(|mut stmt| {
            stmt.query_row(params![client_id, at], |row| {
                Ok(Failure {
                    client_id: client_id.to_owned(),
                    client_seq: seq,
                    code: row.get(0)?,
                    error: row.get(1)?,
                })
            })
            .optional()
        })
        .context(|| format!("cannot read how client_seq {seq} of `{client_id}` failed"))
}

/// Records failures for their retries, at the cursor `at`; the caller commits.
pub(super) fn record_failures(
    conn: &Connection,
    failures: &[Failure],
    at: u64,
) -> Result<(), StoreError> {
    let at = to_i64(at, "cursor")?;
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO sync_failures (client_id, seq, code, error, cursor) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (client_id, seq) DO NOTHING",
        )
        .context(|| "cannot prepare the failure record".to_owned())?;
    for failure in failures {
        let seq = to_i64(failure.client_seq, "client_seq")?;
        insert
            .execute(params![
                failure.client_id,
                seq,
                failure.code,
                failure.error,
                at
            ])
            .context(|| format!("cannot record the failure of `{}`", failure.client_id))?;
    }
    Ok(())
}
