//! The PostgreSQL schema: created on connect under an advisory lock (nodes may start at once),
//! its version kept in `sync_schema`, so that a later version of this crate can migrate it.

use tokio_postgres::Client;

use super::super::new_log_id;
use super::super::sql::Context;
use super::super::sql::schema::{Dialect, tables_v1, tables_v2};
use crate::error::StoreError;

/// The schema version this crate writes and reads.
const SCHEMA_VERSION: i32 = 3;

/// What version 3 adds for concurrent commits (see the module docs of `postgres`): cursors come
/// from the sequence `sync_cursor`, continuing after the head of version 2, which `sync_head`
/// keeps as the floor of the log's head; each change and each client record notes the
/// transaction that wrote it (`xid`), against which readers apply the visibility horizon; a
/// client record keeps the last sequence number that was inside the horizon when it was
/// overwritten (`prev_seq`). Rows of version 2 were all committed long ago: `xid` 0.
const TABLES_V3: &str = "
ALTER TABLE sync_changes ADD COLUMN xid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sync_changes ALTER COLUMN xid DROP DEFAULT;
ALTER TABLE sync_clients ADD COLUMN xid BIGINT NOT NULL DEFAULT 0, ADD COLUMN prev_seq BIGINT;
ALTER TABLE sync_clients ALTER COLUMN xid DROP DEFAULT;
CREATE SEQUENCE sync_cursor AS BIGINT MINVALUE 0 NO CYCLE;
SELECT setval('sync_cursor', (SELECT cursor FROM sync_head WHERE id = 1), true);
UPDATE sync_schema SET version = 3;
";

/// Taken (`pg_advisory_xact_lock`) while the schema is created or checked, so that nodes that
/// start at once do not race.
const SCHEMA_LOCK: i64 = 0x7379_6e63_5f73_6368; // "sync_sch"

/// Text columns that are compared or ordered use the "C" collation, so that ids are ordered by
/// their bytes as in the other backends, whatever the database's locale.
const DIALECT: Dialect = Dialect {
    integer: "BIGINT",
    key: r#"TEXT COLLATE "C""#,
    keyed_table: "",
};

/// The oldest server this backend runs on, as `server_version_num`: the visibility horizon reads
/// transaction ids with `pg_current_xact_id()` and `pg_current_snapshot()`, new in PostgreSQL 13.
const MIN_SERVER_VERSION: i32 = 130_000;

/// Refuses a server older than [`MIN_SERVER_VERSION`] at connect, with what to do, rather than
/// let every push fail later on a missing function. `shown` is the server's `server_version`.
fn check_server_version(number: i32, shown: &str, target: &str) -> Result<(), StoreError> {
    if number >= MIN_SERVER_VERSION {
        return Ok(());
    }
    Err(StoreError::new(format!(
        "PostgreSQL: {target} runs PostgreSQL {shown}, and sync-runtime needs PostgreSQL 13 or \
         later (its visibility horizon reads transaction ids with pg_current_xact_id): upgrade \
         the server"
    )))
}

/// Creates the schema in a new database, or migrates an existing one from the version it
/// records up to this crate's; returns the log's identity, which every node reads from the
/// database.
pub(super) async fn migrate(client: &mut Client, target: &str) -> Result<String, StoreError> {
    let (number, shown): (i32, String) = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
            &[],
        )
        .await
        .and_then(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .context(|| format!("cannot read the server version of {target}"))?;
    check_server_version(number, &shown, target)?;
    let tx = client
        .transaction()
        .await
        .context(|| format!("cannot start the schema check on {target}"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .context(|| format!("cannot lock the schema of {target}"))?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('sync_schema') IS NOT NULL", &[])
        .await
        .and_then(|row| row.try_get(0))
        .context(|| format!("cannot look for the sync tables in {target}"))?;
    let version = if exists {
        let version: i32 = tx
            .query_one("SELECT max(version) FROM sync_schema", &[])
            .await
            .and_then(|row| row.try_get::<_, Option<i32>>(0))
            .context(|| format!("cannot read the schema version of {target}"))?
            .unwrap_or(0);
        if version > SCHEMA_VERSION {
            return Err(StoreError::new(format!(
                "PostgreSQL: {target} has schema version {version}, newer than the \
                 {SCHEMA_VERSION} this version of sync-runtime knows: upgrade sync-runtime"
            )));
        }
        if version < 1 {
            return Err(StoreError::new(format!(
                "PostgreSQL: {target} has a sync_schema table without a version; \
                 it is not a sync database"
            )));
        }
        version
    } else {
        let schema = format!(
            "CREATE TABLE sync_schema (version INTEGER NOT NULL);
             INSERT INTO sync_schema (version) VALUES (1);
             {}",
            tables_v1(&DIALECT)
        );
        tx.batch_execute(&schema)
            .await
            .context(|| format!("cannot create the sync tables in {target}"))?;
        1
    };
    if version < 2 {
        // A log that had no identity gets one: its clients had none to compare.
        let steps = format!(
            "{} UPDATE sync_schema SET version = 2;",
            tables_v2(&DIALECT, &new_log_id())
        );
        tx.batch_execute(&steps)
            .await
            .context(|| format!("cannot add version 2 of the schema to {target}"))?;
    }
    if version < 3 {
        tx.batch_execute(TABLES_V3)
            .await
            .context(|| format!("cannot add version 3 of the schema to {target}"))?;
    }
    let log_id: String = tx
        .query_one("SELECT value FROM sync_meta WHERE name = 'log_id'", &[])
        .await
        .and_then(|row| row.try_get(0))
        .context(|| format!("cannot read the log's identity in {target}"))?;
    tx.commit()
        .await
        .context(|| format!("cannot commit the schema of {target}"))?;
    Ok(log_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_older_than_13_is_refused_with_what_to_do() {
        let refused = check_server_version(120_017, "12.17", "db").err();
        let message = refused.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("runs PostgreSQL 12.17"), "{message}");
        assert!(
            message.contains("needs PostgreSQL 13 or later"),
            "{message}"
        );
        assert!(check_server_version(130_000, "13.0", "db").is_ok());
        assert!(check_server_version(150_019, "15.19", "db").is_ok());
    }
}
