//! The SQLite schema: created on open, its version kept in `PRAGMA user_version`, so that a later
//! version of this crate can migrate it.

use std::path::Path;

use rusqlite::Connection;

use super::super::new_log_id;
use super::super::sql::Context;
use super::super::sql::schema::{Dialect, tables_v1, tables_v2};
use crate::error::StoreError;

/// The schema version this crate writes and reads.
const SCHEMA_VERSION: i64 = 2;

const DIALECT: Dialect = Dialect {
    integer: "INTEGER",
    key: "TEXT",
    keyed_table: " WITHOUT ROWID",
};

/// Creates the schema in a new database, or migrates an existing one from the version it
/// records up to this crate's; returns the log's identity.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<String, StoreError> {
    let shown = path.display();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .context(|| format!("cannot lock {shown} to check its schema"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .context(|| format!("cannot read the schema version of {shown}"))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::new(format!(
            "SQLite: {shown} has schema version {version}, newer than the {SCHEMA_VERSION} \
             this version of sync-runtime knows: upgrade sync-runtime"
        )));
    }
    if version == 0 {
        let tables: i64 = tx
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                [],
                |row| row.get(0),
            )
            .context(|| format!("cannot read the tables of {shown}"))?;
        if tables > 0 {
            return Err(StoreError::new(format!(
                "SQLite: {shown} holds tables but no sync schema version; \
                 it is not a sync database: give another path"
            )));
        }
        tx.execute_batch(&tables_v1(&DIALECT))
            .context(|| format!("cannot create the schema in {shown}"))?;
    }
    if version < 2 {
        // A log that had no identity gets one: its clients had none to compare.
        tx.execute_batch(&tables_v2(&DIALECT, &new_log_id()))
            .context(|| format!("cannot add version 2 of the schema to {shown}"))?;
    }
    if version < SCHEMA_VERSION {
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))
            .context(|| format!("cannot record the schema version of {shown}"))?;
    }
    let log_id: String = tx
        .query_row(
            "SELECT value FROM sync_meta WHERE name = 'log_id'",
            [],
            |row| row.get(0),
        )
        .context(|| format!("cannot read the log's identity in {shown}"))?;
    tx.commit()
        .context(|| format!("cannot commit the schema of {shown}"))?;
    Ok(log_id)
}
