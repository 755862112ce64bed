//! The SQLite schema: created on open, its version kept in `PRAGMA user_version`, so that a later
//! version of this crate can migrate it.

use std::path::Path;

use rusqlite::Connection;

use super::super::sql::Context;
use super::super::sql::schema::{Dialect, tables_v1};
use crate::error::StoreError;

/// The schema version this crate writes and reads.
const SCHEMA_VERSION: i64 = 1;

const DIALECT: Dialect = Dialect {
    integer: "INTEGER",
    key: "TEXT",
    keyed_table: " WITHOUT ROWID",
};

/// Creates the schema in a new database, or checks that an existing one is of a version this
/// crate can read. Later versions add their steps here, from the recorded version up.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let shown = path.display();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .context(|| format!("cannot lock {shown} to check its schema"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .context(|| format!("cannot read the schema version of {shown}"))?;
    match version {
        0 => {
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
            let schema = format!(
                "{}PRAGMA user_version = {SCHEMA_VERSION};",
                tables_v1(&DIALECT)
            );
            tx.execute_batch(&schema)
                .context(|| format!("cannot create the schema in {shown}"))?;
        }
        SCHEMA_VERSION => {}
        newer => {
            return Err(StoreError::new(format!(
                "SQLite: {shown} has schema version {newer}, newer than the {SCHEMA_VERSION} \
                 this version of sync-runtime knows: upgrade sync-runtime"
            )));
        }
    }
    tx.commit()
        .context(|| format!("cannot commit the schema of {shown}"))
}
