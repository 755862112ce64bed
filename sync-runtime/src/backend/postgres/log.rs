//! The change log's statements, and the snapshot.

use std::sync::Arc;

use deadpool_postgres::ClientWrapper as Client;

use super::super::sql::{Context, parse_json, parse_op, stored_json, timestamp, to_u64};
use super::Patience;
use crate::backend::{LogRead, SnapshotPage, SnapshotRead};
use crate::change::Change;
use crate::error::StoreError;
use crate::protocol::ScopeData;

/// The visibility horizon, as a CTE `v(xmin)`: the oldest transaction still in progress in the
/// statement's own snapshot. Every transaction below it has ended, so every change it committed
/// is visible to the statement; cursors are taken in the order of their transactions' ids, so
/// the changes below it are all of the log up to their highest cursor (module docs).
macro_rules! horizon {
    () => {
        "WITH v AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin) "
    };
}

/// The log's head behind the horizon, in a query that has `v` and the `sync_head` row `h`: the
/// highest change inside the horizon, or the floor that trims and version 2 left.
macro_rules! head {
    () => {
        "GREATEST(h.cursor, (SELECT max(cursor) FROM sync_changes WHERE xid < v.xmin))"
    };
}

/// A client's highest sequence number inside the horizon, in a query that has `v`: where the
/// transaction that wrote the record may still be beyond it, the one it overwrote.
macro_rules! client_seq {
    ($client:literal) => {
        concat!(
            "(SELECT CASE WHEN xid < v.xmin THEN seq ELSE prev_seq END FROM sync_clients WHERE client_id = ",
            $client,
            ")"
        )
    };
}

/// A page of a scope's changes, its head, its horizon and a client's sequence number read by one
/// statement, so from one snapshot, all behind the visibility horizon.
const READ: &str = concat!(
    horizon!(),
    "SELECT ",
    head!(),
    ", (SELECT horizon FROM sync_horizons WHERE scope = $1), ",
    client_seq!("$4"),
    ", c.cursor, c.entity, c.id, c.op, c.data, c.ts
FROM v CROSS JOIN sync_head h
LEFT JOIN LATERAL (
    SELECT cursor, entity, id, op, data, ts FROM sync_changes
    WHERE scope = $1 AND cursor > $2 AND xid < v.xmin ORDER BY cursor LIMIT $3
) c ON true
WHERE h.id = 1
ORDER BY c.cursor"
);

/// The log's head behind the horizon.
const HEAD: &str = concat!(
    horizon!(),
    "SELECT ",
    head!(),
    " FROM v CROSS JOIN sync_head h WHERE h.id = 1"
);

/// A scope's latest change behind the horizon; where all were trimmed, the last one trimmed.
const SCOPE_CURSOR: &str = concat!(
    horizon!(),
    "SELECT coalesce(
        (SELECT max(cursor) FROM sync_changes WHERE scope = $1 AND xid < v.xmin),
        (SELECT horizon FROM sync_horizons WHERE scope = $1), 0) FROM v"
);

/// [`SCOPE_CURSOR`] of each scope, in the order asked.
const SCOPE_CURSORS: &str = concat!(
    horizon!(),
    "SELECT coalesce(
        (SELECT max(cursor) FROM sync_changes c WHERE c.scope = s.scope AND c.xid < v.xmin),
        (SELECT horizon FROM sync_horizons h WHERE h.scope = s.scope), 0)
     FROM v CROSS JOIN unnest($1::text[]) WITH ORDINALITY AS s(scope, ord) ORDER BY s.ord"
);

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
                .map(|text| stored_json(text, format_args!("data of change {cursor}")))
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
    let stmt = client
        .prepare_cached(HEAD)
        .await
        .context(|| "cannot prepare the head query".to_owned())?;
    let head: i64 = client
        .query_one(&stmt, &[])
        .await
        .and_then(|row| row.try_get(0))
        .context(|| "cannot read the change log's head".to_owned())?;
    to_u64(head, "head cursor")
}

/// The scope's latest change behind the horizon; where all were trimmed, the last one trimmed.
pub(super) async fn scope_cursor(client: &Client, scope: &str) -> Result<u64, StoreError> {
    let stmt = client
        .prepare_cached(SCOPE_CURSOR)
        .await
        .context(|| "cannot prepare the scope's cursor query".to_owned())?;
    let cursor: i64 = client
        .query_one(&stmt, &[&scope])
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
        .prepare_cached(SCOPE_CURSORS)
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

/// Removes the changes below `before` that are also inside the visibility horizon: a change
/// still beyond it may sit below a cursor that is yet to commit, and the scope horizons and the
/// head's floor must never pass a cursor that can still appear. One statement: the horizons and
/// the floor move with the deletion, atomically.
pub(super) async fn trim(client: &Client, before: u64) -> Result<(), StoreError> {
    let before = i64::try_from(before).unwrap_or(i64::MAX);
    let stmt = client
        .prepare_cached(concat!(
            horizon!(),
            ", gone AS (
                 DELETE FROM sync_changes USING v
                 WHERE cursor < $1 AND xid < v.xmin RETURNING scope, cursor
             ),
             floor AS (
                 UPDATE sync_head SET cursor = GREATEST(cursor, (SELECT max(cursor) FROM gone))
                 WHERE id = 1 AND EXISTS (SELECT 1 FROM gone) RETURNING cursor
             ),
             forgotten AS (
                 DELETE FROM sync_failures
                 WHERE cursor < LEAST($1, (SELECT ",
            head!(),
            " FROM v CROSS JOIN sync_head h WHERE h.id = 1) + 1) RETURNING 1
             )
             INSERT INTO sync_horizons (scope, horizon)
             SELECT scope, max(cursor) FROM gone GROUP BY scope
             ON CONFLICT (scope) DO UPDATE
             SET horizon = GREATEST(sync_horizons.horizon, EXCLUDED.horizon)"
        ))
        .await
        .context(|| "cannot prepare the trim".to_owned())?;
    client
        .execute(&stmt, &[&before])
        .await
        .context(|| format!("cannot trim the change log before cursor {before}"))?;
    Ok(())
}

/// One statement, one snapshot: the data is exactly the state at the head it returns. The head
/// is behind the visibility horizon; where the scope holds a change beyond it (committed, but
/// after a cursor still in flight), the data holds it too and matches no cursor a client may be
/// given, so the statement is read again once the horizon has passed it, which it does as soon
/// as the transactions in flight end.
pub(super) async fn snapshot(
    client: &Client,
    scope: &str,
    page: SnapshotPage<'_>,
    mut patience: Patience,
) -> Result<SnapshotRead, StoreError> {
    loop {
        if let Some(read) = snapshot_once(client, scope, page).await? {
            return Ok(read);
        }
        patience
            .wait(|| format!("a snapshot of scope `{scope}`"))
            .await?;
    }
}

/// The snapshot, or `None` where the scope holds a change beyond the horizon.
async fn snapshot_once(
    client: &Client,
    scope: &str,
    page: SnapshotPage<'_>,
) -> Result<Option<SnapshotRead>, StoreError> {
    // Two statements, from the first entity or after one: a row comparison that an OR would
    // hide from the index.
    /// The page's query, whose entities are those `$entities` selects.
    macro_rules! page {
        ($entities:literal) => {
            concat!(
                horizon!(),
                ", hd AS MATERIALIZED (SELECT ",
                head!(),
                " AS cursor FROM v CROSS JOIN sync_head h WHERE h.id = 1)
                 SELECT hd.cursor, ",
                client_seq!("$2"),
                ", EXISTS (SELECT 1 FROM sync_changes c WHERE c.scope = $1 AND c.cursor > hd.cursor),
                        e.entity, e.id, e.data FROM v CROSS JOIN hd
                 LEFT JOIN LATERAL (
                     SELECT entity, id, data FROM sync_entities
                     WHERE scope = $1 AND ",
                $entities,
                "
                     ORDER BY entity, id LIMIT $5
                 ) e ON true ORDER BY e.entity, e.id"
            )
        };
    }
    const FIRST: &str = page!("$3::text IS NULL AND $4::text IS NULL");
    const AFTER: &str = page!("(entity, id) > ($3, $4)");
    let sql = match page.after {
        None => FIRST,
        Some(_) => AFTER,
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
        if row.try_get::<_, bool>(2).map_err(row_error)? {
            return Ok(None);
        }
        let Some(entity) = row.try_get::<_, Option<String>>(3).map_err(row_error)? else {
            continue;
        };
        let id: String = row.try_get(4).map_err(row_error)?;
        let text: String = row.try_get(5).map_err(row_error)?;
        let value = parse_json(&text, format_args!("{entity} `{id}`"))?;
        data.entry(entity).or_default().insert(id, value);
    }
    let head = head.ok_or_else(|| StoreError::new("PostgreSQL: the sync_head row is missing"))?;
    Ok(Some(SnapshotRead {
        data,
        head: to_u64(head, "head cursor")?,
        client_seq: client_seq
            .map(|seq| to_u64(seq, "client_seq"))
            .transpose()?,
    }))
}
