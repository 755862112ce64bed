//! `--store`: the todo server keeps its todos across a restart, in SQLite (the default, in
//! `./todo.db`) and in PostgreSQL (when `SYNC_TEST_POSTGRES_URL` is set).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// The server process, killed with SIGKILL when dropped: no graceful shutdown to rely on.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_todo"))
        .current_dir(dir)
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server exited before it listened")
            .unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, addr }
}

fn post(server: &Server, path: &str, body: &Value) -> Value {
    let body = body.to_string();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.addr,
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (_, payload) = response.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(payload).unwrap()
}

/// Creates a todo, restarts the server on the same store, and finds it there.
fn todos_survive_a_restart(dir: &Path, args: &[&str]) {
    let server = start(dir, args);
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

    let server = start(dir, args);
    let snapshot = post(&server, "/_sync/snapshot", &json!({}));
    assert_eq!(
        snapshot,
        json!({"data": {"todo": {"milk": {"id": "milk", "title": "Buy milk", "completed": true}}}, "cursor": 2})
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
