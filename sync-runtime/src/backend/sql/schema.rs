//! The tables of the SQL backends, written once for both dialects.
//!
//! Entity data and change data are JSON text: written once, parsed only when read back.

/// Where SQLite and PostgreSQL spell a column differently.
pub(in crate::backend) struct Dialect {
    /// A 64-bit integer; SQLite's `INTEGER PRIMARY KEY` is also the row id.
    pub(in crate::backend) integer: &'static str,
    /// Text that is compared or ordered: by its bytes, whatever the database's locale.
    pub(in crate::backend) key: &'static str,
    /// Appended to tables whose primary key is all they are looked up by.
    pub(in crate::backend) keyed_table: &'static str,
}

/// Version 1 of the tables.
pub(in crate::backend) fn tables_v1(dialect: &Dialect) -> String {
    let Dialect {
        integer,
        key,
        keyed_table,
    } = dialect;
    format!(
        "
CREATE TABLE sync_entities (
    scope  {key} NOT NULL,
    entity {key} NOT NULL,
    id     {key} NOT NULL,
    data   TEXT NOT NULL,
    PRIMARY KEY (scope, entity, id)
){keyed_table};
CREATE TABLE sync_changes (
    cursor {integer} PRIMARY KEY,
    scope  {key} NOT NULL,
    entity TEXT NOT NULL,
    id     TEXT NOT NULL,
    op     TEXT NOT NULL,
    data   TEXT,
    ts     {integer} NOT NULL
);
CREATE INDEX sync_changes_scope_cursor ON sync_changes (scope, cursor);
CREATE TABLE sync_horizons (
    scope   {key} PRIMARY KEY,
    horizon {integer} NOT NULL
){keyed_table};
CREATE TABLE sync_clients (
    client_id {key} PRIMARY KEY,
    seq       {integer} NOT NULL
){keyed_table};
CREATE TABLE sync_head (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    cursor {integer} NOT NULL
);
INSERT INTO sync_head (id, cursor) VALUES (1, 0);
"
    )
}

/// What version 2 adds: the log's identity, and the failures that retries are answered with.
pub(in crate::backend) fn tables_v2(dialect: &Dialect, log_id: &str) -> String {
    let Dialect {
        integer,
        key,
        keyed_table,
    } = dialect;
    format!(
        "
CREATE TABLE sync_meta (
    name  {key} PRIMARY KEY,
    value TEXT NOT NULL
){keyed_table};
INSERT INTO sync_meta (name, value) VALUES ('log_id', '{log_id}');
CREATE TABLE sync_failures (
    client_id {key} NOT NULL,
    seq       {integer} NOT NULL,
    code      TEXT NOT NULL,
    error     TEXT NOT NULL,
    cursor    {integer} NOT NULL,
    PRIMARY KEY (client_id, seq)
){keyed_table};
CREATE INDEX sync_failures_cursor ON sync_failures (cursor);
"
    )
}
