//! The change log's statements, and the snapshot.

use std::sync::Arc;

use deadpool_postgres::ClientWrapper as Client;

use super::super::sql::{Context, parse_json, parse_op, timestamp, to_u64};
use crate::backend::{LogRead, SnapshotPage, SnapshotRead};
use crate::change::Change;
use crate::error::StoreError;
use crate::protocol::ScopeData;

/// A page of a scope's changes, its head, its horizon and a client's sequence number read by one
/// statement, so from one snapshot.
const READ: &str = "
SELECT h.cursor, (SELECT horizon FROM sync_horizons WHERE scope = $1),
       (SELECT seq FROM sync_clients WHERE client_id = $4),
       c.cursor, c.entity, c.id, c.op, c.data, c.ts
FROM sync_head h
LEFT JOIN LATERAL (
    SELECT cursor, entity, id, op, data, ts FROM sync_changes
    WHERE scope = $1 AND cursor > $2 ORDER BY cursor LIMIT $3
) c ON true
WHERE h.id = 1
ORDER BY c.cursor";

pub(super) fn row_error(error: tokio_postgres::Error) -> StoreError {
    StoreError::with_source("PostgreSQL: cannot read a row", error)
}

pub(super) async fn read(
    client: &Client,
    scope: &str,
    after: u64,
    limit: usize,
    client_id: Option<&str>,
) -> Result<LogRead, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // A cursor beyond i64 is beyond the head too, which the engine answers.
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let stmt = client
        .prepare_cached(READ)
        .await
        .context(|| "cannot prepare the pull query".to_owned())?;
    let rows = client
        .query(&stmt, &[&scope, &after, &limit, &client_id])
        .await
        .context(|| format!("cannot read the changes of scope `{scope}`"))?;
    let Some(first) = rows.first() else {
        return Err(StoreError::new("PostgreSQL: the sync_head row is missing"));
    };
    let head = to_u64(first.try_get(0).map_err(row_error)?, "head cursor")?;
    let horizon: Option<i64> = first.try_get(1).map_err(row_error)?;
    let horizon = horizon
        .map(|h| to_u64(h, "horizon"))
        .transpose()?
        .unwrap_or(0);
    let client_seq: Option<i64> = first.try_get(2).map_err(row_error)?;
    let client_seq = client_seq
        .map(|seq| to_u64(seq, "client_seq"))
        .transpose()?;
    let mut changes = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(cursor) = row.try_get::<_, Option<i64>>(3).map_err(row_error)? else {
            continue; // the scope has no change after the cursor
        };
        let cursor = to_u64(cursor, "cursor")?;
        let op: String = row.try_get(6).map_err(row_error)?;
        let data: Option<String> = row.try_get(7).map_err(row_error)?;
        changes.push(Arc::new(Change {
            cursor,
            scope: scope.to_owned(),
            entity: row.try_get(4).map_err(row_error)?,
            id: row.try_get(5).map_err(row_error)?,
            op: parse_op(&op)?,
            data: data
                .map(|text| parse_json(&text, format_args!("data of change {cursor}")))
                .transpose()?,
            timestamp: timestamp(row.try_get(8).map_err(row_error)?)?,
        }));
    }
    Ok(LogRead {
        head,
        horizon,
        changes: changes.into(),
        client_seq,
    })
}

pub(super) async fn head(client: &Client) -> Result<u64, StoreError> {
    let head: i64 = client
        .query_one("SELECT cursor FROM sync_head WHERE id = 1", &[])
        .await
        .and_then(|row| row.try_get(0))
        .context(|| "cannot read the change log's head".to_owned())?;
    to_u64(head, "head cursor")
}

/// The scope's latest change; where all were trimmed, the last one trimmed.
pub(super) async fn scope_cursor(client: &Client, scope: &str) -> Result<u64, StoreError> {
    let cursor: i64 = client
        .query_one(
            "SELECT coalesce((SELECT max(cursor) FROM sync_changes WHERE scope = $1),
                             (SELECT horizon FROM sync_horizons WHERE scope = $1), 0)",
            &[&scope],
        )
        .await
        .and_then(|row| row.try_get(0))
        .context(|| format!("cannot read the latest cursor of scope `{scope}`"))?;
    to_u64(cursor, "cursor")
}

/// Every scope's latest cursor in one statement, in the order asked.
pub(super) async fn scope_cursors(
    client: &Client,
    scopes: &[&str],
) -> Result<Vec<u64>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT coalesce((SELECT max(cursor) FROM sync_changes c WHERE c.scope = s.scope),
                             (SELECT horizon FROM sync_horizons h WHERE h.scope = s.scope), 0)
             FROM unnest($1::text[]) WITH ORDINALITY AS s(scope, ord) ORDER BY s.ord",
        )
        .await
        .context(|| "cannot prepare the scopes' cursors query".to_owned())?;
    let rows = client
        .query(&stmt, &[&scopes])
        .await
        .context(|| "cannot read the scopes' latest cursors".to_owned())?;
    rows.iter()
        .map(|row| to_u64(row.try_get(0).map_err(row_error)?, "cursor"))
        .collect()
}

/// One statement: the horizons move with the deletion, atomically.
pub(super) async fn trim(client: &Client, before: u64) -> Result<(), StoreError> {
    let before = i64::try_from(before).unwrap_or(i64::MAX);
    client
        .execute(
            "WITH gone AS (DELETE FROM sync_changes WHERE cursor < $1 RETURNING scope, cursor)
             INSERT INTO sync_horizons (scope, horizon)
             SELECT scope, max(cursor) FROM gone GROUP BY scope
             ON CONFLICT (scope) DO UPDATE
             SET horizon = GREATEST(sync_horizons.horizon, EXCLUDED.horizon)",
            &[&before],
        )
        .await
        .context(|| format!("cannot trim the change log before cursor {before}"))?;
    client
        .execute("DELETE FROM sync_failures WHERE cursor < $1", &[&before])
        .await
        .context(|| format!("cannot forget the failures before cursor {before}"))?;
    Ok(())
}

/// One statement, one snapshot: the data is exactly the state at the head it returns.
pub(super) async fn snapshot(
    client: &Client,
    scope: &str,
    page: SnapshotPage<'_>,
) -> Result<SnapshotRead, StoreError> {
    // Two statements, from the first entity or after one: a row comparison that an OR would
    // hide from the index.
    let sql = match page.after {
        None => {
            "SELECT h.cursor, (SELECT seq FROM sync_clients WHERE client_id = $2),
                    e.entity, e.id, e.data FROM sync_head h
             LEFT JOIN LATERAL (
                 SELECT entity, id, data FROM sync_entities
                 WHERE scope = $1 AND $3::text IS NULL AND $4::text IS NULL
                 ORDER BY entity, id LIMIT $5
             ) e ON true WHERE h.id = 1 ORDER BY e.entity, e.id"
        }
        Some(_) => {
            "SELECT h.cursor, (SELECT seq FROM sync_clients WHERE client_id = $2),
                    e.entity, e.id, e.data FROM sync_head h
             LEFT JOIN LATERAL (
                 SELECT entity, id, data FROM sync_entities
                 WHERE scope = $1 AND (entity, id) > ($3, $4)
                 ORDER BY entity, id LIMIT $5
             ) e ON true WHERE h.id = 1 ORDER BY e.entity, e.id"
        }
    };
    let stmt = client
        .prepare_cached(sql)
        .await
        .context(|| "cannot prepare the snapshot query".to_owned())?;
    let (after_entity, after_id) = page.after.unzip();
    let limit = i64::try_from(page.limit).unwrap_or(i64::MAX);
    let rows = client
        .query(
            &stmt,
            &[&scope, &page.client_id, &after_entity, &after_id, &limit],
        )
        .await
        .context(|| format!("cannot read the data of scope `{scope}`"))?;
    let mut head = None;
    let mut client_seq = None;
    let mut data = ScopeData::new();
    for row in &rows {
        head = Some(row.try_get::<_, i64>(0).map_err(row_error)?);
        client_seq = row.try_get::<_, Option<i64>>(1).map_err(row_error)?;
        let Some(entity) = row.try_get::<_, Option<String>>(2).map_err(row_error)? else {
            continue;
        };
        let id: String = row.try_get(3).map_err(row_error)?;
        let text: String = row.try_get(4).map_err(row_error)?;
        let value = parse_json(&text, format_args!("{entity} `{id}`"))?;
        data.entry(entity).or_default().insert(id, value);
    }
    let head = head.ok_or_else(|| StoreError::new("PostgreSQL: the sync_head row is missing"))?;
    Ok(SnapshotRead {
        data,
        head: to_u64(head, "head cursor")?,
        client_seq: client_seq
            .map(|seq| to_u64(seq, "client_seq"))
            .transpose()?,
    })
}
