//! The change log's statements: reads by scope and cursor, appends and trims.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::super::sql::{Context, op_name, parse_op, stored_json, timestamp, to_i64, to_u64};
use crate::backend::{Committed, LogRead, NewChange};
use crate::change::Change;
use crate::error::StoreError;
use crate::json::Json;

pub(super) fn head(conn: &Connection) -> Result<u64, StoreError> {
    let head: i64 = conn
        .prepare_cached("SELECT cursor FROM sync_head WHERE id = 1")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .context(|| "cannot read the change log's head".to_owned())?;
    to_u64(head, "head cursor")
}

/// The head, the scope's horizon and up to `limit` of its changes after `after`; the caller reads
/// in one transaction, so all three come from one state.
pub(super) fn read(
    conn: &Connection,
    scope: &str,
    after: u64,
    limit: usize,
) -> Result<LogRead, StoreError> {
    let head = head(conn)?;
    let horizon: Option<i64> = conn
        .prepare_cached("SELECT horizon FROM sync_horizons WHERE scope = ?1")
        .and_then(|mut stmt| stmt.query_row([scope], |row| row.get(0)).optional())
        .context(|| format!("cannot read the trim horizon of scope `{scope}`"))?;
    let horizon = horizon
        .map(|h| to_u64(h, "horizon"))
        .transpose()?
        .unwrap_or(0);
    // A cursor beyond i64 is beyond the head too, which the engine answers.
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(
            "SELECT cursor, entity, id, op, data, ts FROM sync_changes \
             WHERE scope = ?1 AND cursor > ?2 ORDER BY cursor LIMIT ?3",
        )
        .context(|| "cannot prepare the pull query".to_owned())?;
    let mut rows = stmt
        .query(params![scope, after, limit])
        .context(|| format!("cannot read the changes of scope `{scope}`"))?;
    let mut changes = Vec::new();
    while let Some(row) = rows
        .next()
        .context(|| format!("cannot read the changes of scope `{scope}`"))?
    {
        changes.push(Arc::new(change(scope, row)?));
    }
    Ok(LogRead {
        head,
        horizon,
        changes: changes.into(),
        client_seq: None,
    })
}

fn change(scope: &str, row: &rusqlite::Row<'_>) -> Result<Change, StoreError> {
    let get = |e: rusqlite::Error| StoreError::with_source("SQLite: cannot read a change", e);
    let cursor = to_u64(row.get(0).map_err(get)?, "cursor")?;
    let data: Option<String> = row.get(4).map_err(get)?;
    let op: String = row.get(3).map_err(get)?;
    Ok(Change {
        cursor,
        scope: scope.to_owned(),
        entity: row.get(1).map_err(get)?,
        id: row.get(2).map_err(get)?,
        op: parse_op(&op)?,
        data: data
            .map(|text| stored_json(text, format_args!("data of change {cursor}")))
            .transpose()?,
        timestamp: timestamp(row.get(5).map_err(get)?)?,
    })
}

/// The scope's latest change; where all were trimmed, the last one trimmed.
pub(super) fn scope_cursor(conn: &Connection, scope: &str) -> Result<u64, StoreError> {
    let cursor: i64 = conn
        .prepare_cached(
            "SELECT coalesce((SELECT max(cursor) FROM sync_changes WHERE scope = ?1), \
             (SELECT horizon FROM sync_horizons WHERE scope = ?1), 0)",
        )
        .and_then(|mut stmt| stmt.query_row([scope], |row| row.get(0)))
        .context(|| format!("cannot read the latest cursor of scope `{scope}`"))?;
    to_u64(cursor, "cursor")
}

/// Appends a commit's changes with the cursors after the head and advances it; the caller
/// commits.
pub(super) fn append(
    conn: &Connection,
    changes: Vec<NewChange>,
    now: DateTime<Utc>,
) -> Result<Committed, StoreError> {
    let before = head(conn)?;
    let ts = now.timestamp_micros();
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO sync_changes (cursor, scope, entity, id, op, data, ts) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .context(|| "cannot prepare the change insert".to_owned())?;
    for (index, change) in changes.iter().enumerate() {
        let cursor = before + 1 + index as u64;
        insert
            .execute(params![
                to_i64(cursor, "cursor")?,
                change.scope,
                change.entity,
                change.id,
                op_name(change.op),
                change.data.as_ref().map(Json::as_str),
                ts
            ])
            .context(|| format!("cannot append change {cursor} to the log"))?;
    }
    let head = to_i64(before + changes.len() as u64, "cursor")?;
    conn.prepare_cached("UPDATE sync_head SET cursor = ?1 WHERE id = 1")
        .and_then(|mut stmt| stmt.execute([head]))
        .context(|| "cannot advance the change log's head".to_owned())?;
    Ok(Committed::numbered(before, changes, now))
}

pub(super) fn trim(conn: &Connection, before: u64) -> Result<(), StoreError> {
    let before = i64::try_from(before).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT INTO sync_horizons (scope, horizon) \
         SELECT scope, max(cursor) FROM sync_changes WHERE cursor < ?1 GROUP BY scope \
         ON CONFLICT (scope) DO UPDATE SET horizon = max(horizon, excluded.horizon)",
    )
    .and_then(|mut stmt| stmt.execute([before]))
    .context(|| "cannot record the trimmed scopes' horizons".to_owned())?;
    conn.prepare_cached("DELETE FROM sync_changes WHERE cursor < ?1")
        .and_then(|mut stmt| stmt.execute([before]))
        .context(|| format!("cannot trim the change log before cursor {before}"))?;
    conn.prepare_cached("DELETE FROM sync_failures WHERE cursor < ?1")
        .and_then(|mut stmt| stmt.execute([before]))
        .context(|| format!("cannot forget the failures before cursor {before}"))?;
    Ok(())
}
