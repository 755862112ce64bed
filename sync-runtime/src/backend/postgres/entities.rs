//! The entity reads that the backend's own (`Store`) and a group's share.

use std::collections::BTreeMap;

use deadpool_postgres::ClientWrapper as Client;
use serde_json::Value;

use super::super::sql::{Context, parse_json};
use super::log::row_error;
use crate::error::StoreError;

/// Reads one entity.
pub(super) const GET: &str =
    "SELECT data FROM sync_entities WHERE scope = $1 AND entity = $2 AND id = $3";

/// Reads every entity of one type in a scope.
pub(super) const LIST: &str = "SELECT id, data FROM sync_entities WHERE scope = $1 AND entity = $2";

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

pub(super) fn listed(
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
