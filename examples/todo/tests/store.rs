//! `--store`: the todo server keeps its todos across a restart, in SQLite (the default, in
//! `./todo.db`) and in PostgreSQL (when `SYNC_TEST_POSTGRES_URL` is set).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

mod common;

use std::path::Path;

use common::start;
use serde_json::{Value, json};

/// A POST that must succeed; its JSON body.
fn post(server: &common::Server, path: &str, body: &Value) -> Value {
    let (status, body) = common::post(server, path, body);
    assert_eq!(status, 200, "{body}");
    body
}

/// Creates a todo, restarts the server on the same store, and finds it there.
fn todos_survive_a_restart(dir: &Path, args: &[&str]) {
    let args = [&["--auth", "none"], args].concat();
    let server = start(dir, &args);
    let pushed = post(
        &server,
        "/_sync/push",
        &json!({"mutations": [
            {"name": "todo/create", "args": {"id": "milk", "title": "Buy milk"}, "client_id": "phone", "client_seq": 1},
            {"name": "todo/toggle", "args": {"id": "milk"}, "client_id": "phone", "client_seq": 2},
        ]}),
    );
    assert_eq!(pushed["cursor"], 2, "{pushed}");
    drop(server);

    let server = start(dir, &args);
    let snapshot = post(&server, "/_sync/snapshot", &json!({}));
    assert_eq!(
        (&snapshot["data"], &snapshot["cursor"], &snapshot["log_id"]),
        (
            &json!({"todo": {"milk": {"id": "milk", "title": "Buy milk", "completed": true}}}),
            &json!(2),
            &pushed["log_id"]
        ),
        "the same data, at the same cursor, of the same log: {snapshot}"
    );
    let retry = post(
        &server,
        "/_sync/push",
        &json!({"mutations": [{"name": "todo/toggle", "args": {"id": "milk"}, "client_id": "phone", "client_seq": 2}]}),
    );
    assert_eq!(retry["results"][0]["duplicate"], true, "{retry}");
    let pulled = post(&server, "/_sync/pull", &json!({"cursor": 0}));
    assert_eq!(pulled["changes"].as_array().unwrap().len(), 2);
}

#[test]
fn sqlite_in_todo_db_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    todos_survive_a_restart(dir.path(), &[]);
    assert!(dir.path().join("todo.db").exists());
    let other = dir.path().join("other.db");
    let store = format!("sqlite:{}", other.display());
    todos_survive_a_restart(dir.path(), &["--store", &store]);
    assert!(other.exists());
}

#[test]
fn postgres_keeps_the_todos() {
    let Ok(base) = std::env::var("SYNC_TEST_POSTGRES_URL") else {
        println!("skipped: SYNC_TEST_POSTGRES_URL is not set, so this PostgreSQL test did not run");
        return;
    };
    let schema = format!("todo_test_{}", std::process::id());
    let sql = |statement: String| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client.batch_execute(&statement).await.unwrap();
        });
    };
    sql(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ));
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-csearch_path%3D{schema}");
    let dir = tempfile::tempdir().unwrap();
    todos_survive_a_restart(dir.path(), &["--store", &url]);
    sql(format!("DROP SCHEMA {schema} CASCADE"));
}
