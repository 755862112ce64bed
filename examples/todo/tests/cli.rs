//! Runs the `todo` binary as a newcomer would and talks to it over a real socket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// The server process, killed when dropped.
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

fn start(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_todo"))
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
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, addr }
}

/// One HTTP/1.1 request on a fresh connection; returns status and JSON body.
fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
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
    let status = response[9..12].parse().unwrap();
    let (head, payload) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

#[test]
fn the_readme_session_works_against_the_binary() {
    let server = start(&["--store", "memory"]);
    let (status, pushed) = post(
        &server,
        "/_sync/push",
        &json!({"mutations": [
            {"name": "todo/create", "args": {"title": "Buy milk", "id": "milk"}, "client_id": "readme", "client_seq": 1},
            {"name": "todo/toggle", "args": {"id": "milk"}, "client_id": "readme", "client_seq": 2},
            {"name": "todo/rename", "args": {"id": "nope", "title": "x"}},
            {"name": "todo/create", "args": {"title": 5}},
        ]}),
    );
    assert_eq!(status, 200, "{pushed}");
    let results = &pushed["results"];
    assert_eq!(
        (results[0]["ok"].clone(), results[1]["ok"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(results[2]["code"], "not_found");
    assert_eq!(results[3]["code"], "invalid_args");
    assert!(results[3]["error"].as_str().unwrap().contains("title"));

    let (_, pulled) = post(&server, "/_sync/pull", &json!({"cursor": 0}));
    assert_eq!(pulled["changes"].as_array().unwrap().len(), 2);
    let (_, snapshot) = post(&server, "/_sync/snapshot", &json!({}));
    assert_eq!(
        snapshot["data"]["todo"]["milk"],
        json!({"id": "milk", "title": "Buy milk", "completed": true})
    );
    let (status, error) = post(&server, "/_sync/pull", &json!({"cursor": 99}));
    assert_eq!(
        (status, error["code"].clone()),
        (410, json!("cursor_ahead"))
    );
}

#[test]
fn retain_trims_old_changes() {
    let server = start(&["--store", "memory", "--retain", "3"]);
    let mutations: Vec<Value> = (0..6)
        .map(|i| json!({"name": "todo/create", "args": {"title": format!("t{i}")}}))
        .collect();
    let (status, _) = post(&server, "/_sync/push", &json!({ "mutations": mutations }));
    assert_eq!(status, 200);
    let (status, error) = post(&server, "/_sync/pull", &json!({"cursor": 0}));
    assert_eq!(
        (status, error["code"].clone()),
        (410, json!("cursor_too_old"))
    );
    let (status, page) = post(&server, "/_sync/pull", &json!({"cursor": 3}));
    assert_eq!(status, 200);
    assert_eq!(page["changes"].as_array().unwrap().len(), 3);
}

#[test]
fn a_bad_flag_is_explained() {
    let output = Command::new(env!("CARGO_BIN_EXE_todo"))
        .args(["--store", "floppy"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("memory"),
        "lists the valid stores: {stderr}"
    );
}
