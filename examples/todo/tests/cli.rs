//! Runs the `todo` binary as a newcomer would and talks to it over a real socket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

mod common;

use std::process::Command;

use common::{Server, post};
use serde_json::{Value, json};

/// The server in a fresh temporary folder (so that nothing it writes lands in the repository).
fn start(args: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path(), args);
    (dir, server)
}

#[test]
fn the_readme_session_works_against_the_binary() {
    let (_dir, server) = start(&["--auth", "none", "--store", "memory"]);
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
    let (_dir, server) = start(&["--auth", "none", "--store", "memory", "--retain", "3"]);
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

/// `GET /metrics` answers Prometheus' text format, and a push, a retry, a failed mutation and a
/// pull move their counters.
#[test]
fn metrics_count_pushes_mutations_and_pulls() {
    let (_dir, server) = start(&["--auth", "none", "--store", "memory"]);
    let sample = |name: &str| -> Option<f64> {
        let (status, text) = common::get(&server, "/metrics");
        assert_eq!(status, 200, "{text}");
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    let create = json!({"name": "todo/create", "args": {"title": "milk", "id": "m"}, "client_id": "c", "client_seq": 1});
    let (status, _) = post(&server, "/_sync/push", &json!({ "mutations": [create] }));
    assert_eq!(status, 200);
    let missing = json!({"name": "todo/toggle", "args": {"id": "nope"}});
    let (status, _) = post(
        &server,
        "/_sync/push",
        &json!({ "mutations": [create, missing] }),
    );
    assert_eq!(status, 200);
    let (status, _) = post(&server, "/_sync/push", &json!({"mutations": []}));
    assert_eq!(status, 400);
    let (status, _) = post(&server, "/_sync/pull", &json!({"cursor": 0}));
    assert_eq!(status, 200);

    assert_eq!(sample(r#"sync_pushes_total{outcome="ok"}"#), Some(2.0));
    assert_eq!(
        sample(r#"sync_pushes_total{outcome="no_mutations"}"#),
        Some(1.0)
    );
    for outcome in ["applied", "duplicate", "failed"] {
        let name = format!(r#"sync_mutations_total{{outcome="{outcome}"}}"#);
        assert_eq!(sample(&name), Some(1.0), "{name}");
    }
    assert_eq!(sample(r#"sync_pulls_total{outcome="ok"}"#), Some(1.0));
    assert_eq!(sample("sync_push_duration_seconds_count"), Some(3.0));
    assert_eq!(sample("sync_log_head"), Some(1.0));
}

/// A load balancer's health check: `GET /healthz` answers 200 while the store answers.
#[test]
fn healthz_answers_while_the_store_does() {
    let (_dir, server) = start(&["--auth", "none", "--store", "memory"]);
    let (status, body) = common::get(&server, "/healthz");
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body, json!({"status": "ok"}));
}

/// SIGTERM, as `docker stop`, systemd or Kubernetes send it, stops the server cleanly (as
/// Ctrl-C does) rather than kill it: a process killed by the signal exits unsuccessfully.
#[cfg(unix)]
#[test]
fn sigterm_stops_the_server_cleanly() {
    let (_dir, server) = start(&["--auth", "none", "--store", "memory"]);
    let (status, _) = common::get(&server, "/healthz");
    assert_eq!(status, 200);
    let exit = server.terminate();
    assert!(exit.success(), "{exit}");
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

/// A connection that never finishes its headers (slow-loris) is closed at the header deadline,
/// and connections over the limit wait to be served rather than be served at once.
#[test]
fn slow_and_surplus_connections_do_not_hold_the_server() {
    use std::io::{Read, Write};
    use std::time::Duration;

    let (_dir, server) = start(&[
        "--auth",
        "none",
        "--store",
        "memory",
        "--header-timeout",
        "1",
    ]);
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    // Far longer than the deadline: only a server that never closes it makes this fail.
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    slow.write_all(b"POST /_sync/pull HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let read = slow.read_to_end(&mut rest);
    assert!(read.is_ok(), "the server closed the connection: {read:?}");

    // Two connections that hold their slots (well within their header deadline); a third is
    // served only once one of them goes.
    let (_dir, server) = start(&[
        "--auth",
        "none",
        "--store",
        "memory",
        "--max-connections",
        "2",
    ]);
    let held: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(server.addr).unwrap())
        .collect();
    let third = std::thread::spawn({
        let addr = server.addr;
        move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            let body = "{}";
            write!(
                stream,
                "POST /_sync/pull HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !third.is_finished(),
        "a third connection waits while two are held"
    );
    drop(held);
    let answer = third.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// The demo's contract, as a client sees it: sign in, private and shared scopes, the caller in
/// mutations, and the owner's rules.
#[test]
fn the_demo_sign_in_keeps_users_apart_and_shares_lists() {
    let (_dir, server) = start(&["--store", "memory"]);
    let sign_in = |name: &str| {
        let (status, body) = common::post(&server, "/auth/demo", &json!({ "name": name }));
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_owned()
    };
    let (ann, bob, eve) = (sign_in("ann"), sign_in("bob"), sign_in("eve"));
    for bad in [
        json!({"name": "Ann"}),
        json!({"name": ""}),
        json!({}),
        json!("ann"),
    ] {
        let (status, body) = common::post(&server, "/auth/demo", &bad);
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_name")),
            "{bad}"
        );
    }
    let push = |token: Option<&str>, scope: &str, name: &str, args: Value| {
        let body = json!({"mutations": [{"name": name, "args": args, "scope": scope}]});
        common::post_as(&server, token, "/_sync/push", &body)
    };
    let pull = |token: Option<&str>, scope: &str| {
        common::post_as(&server, token, "/_sync/pull", &json!({ "scope": scope }))
    };

    // No token, a forged one, another user's scope, a scope no rule opens.
    let (status, body) = push(None, "user:ann", "todo/create", json!({"title": "t"}));
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let forged = format!("{}x", &ann[..ann.len() - 1]);
    assert_eq!(pull(Some(&forged), "user:ann").0, 401);
    assert_eq!(pull(Some("not-a-token"), "user:ann").0, 401);
    let (status, body) = pull(Some(&bob), "user:ann");
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    assert_eq!(pull(Some(&ann), "_default").0, 403);

    // The caller, not the arguments, says who created a todo.
    let (status, body) = push(
        Some(&ann),
        "user:ann",
        "todo/create",
        json!({"title": "mine", "id": "t1"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["value"]["created_by"], "ann", "{body}");
    let (_, body) = push(
        Some(&ann),
        "user:ann",
        "todo/create",
        json!({"title": "x", "created_by": "bob"}),
    );
    assert_eq!(body["results"][0]["code"], "invalid_args", "{body}");

    // Ann's list: Bob is let in by a share, Eve is not.
    let (_, body) = push(
        Some(&ann),
        "list:l1",
        "list/create",
        json!({"title": "Groceries"}),
    );
    assert_eq!(body["results"][0]["value"]["owner"], "ann", "{body}");
    assert_eq!(pull(Some(&bob), "list:l1").0, 403);
    let (_, body) = push(Some(&bob), "list:l1", "list/share", json!({"name": "bob"}));
    assert_eq!(
        body.get("code").and_then(Value::as_str),
        Some("forbidden"),
        "{body}"
    );
    let (_, body) = push(Some(&ann), "list:l1", "list/share", json!({"name": "bob"}));
    assert_eq!(body["results"][0]["ok"], true, "{body}");
    let (status, body) = pull(Some(&bob), "list:l1");
    assert_eq!(status, 200, "{body}");
    let (_, mine) = pull(Some(&bob), "user:bob");
    assert!(
        mine.to_string().contains("Groceries"),
        "Bob's scope lists the shared list: {mine}"
    );
    assert_eq!(pull(Some(&eve), "list:l1").0, 403);

    // Only the creator or the owner deletes a todo.
    let (_, body) = push(
        Some(&bob),
        "list:l1",
        "todo/create",
        json!({"title": "bob's", "id": "b1"}),
    );
    assert_eq!(body["results"][0]["value"]["created_by"], "bob", "{body}");
    let (_, body) = push(
        Some(&ann),
        "list:l1",
        "todo/create",
        json!({"title": "ann's", "id": "a1"}),
    );
    assert_eq!(body["results"][0]["ok"], true, "{body}");
    let (_, body) = push(Some(&bob), "list:l1", "todo/delete", json!({"id": "a1"}));
    assert_eq!(body["results"][0]["code"], "forbidden", "{body}");
    let (_, body) = push(Some(&ann), "list:l1", "todo/delete", json!({"id": "b1"}));
    assert_eq!(body["results"][0]["ok"], true, "the owner may: {body}");

    // Unshared, Bob is out.
    let (_, body) = push(
        Some(&ann),
        "list:l1",
        "list/unshare",
        json!({"name": "bob"}),
    );
    assert_eq!(body["results"][0]["ok"], true, "{body}");
    assert_eq!(pull(Some(&bob), "list:l1").0, 403);
    let (_, mine) = pull(Some(&bob), "user:bob");
    assert!(
        mine["changes"].to_string().contains(r#""op":"delete""#),
        "{mine}"
    );
}
