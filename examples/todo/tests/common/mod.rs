//! The `todo` binary as a child process, and one-shot HTTP requests to it over a real socket.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)] // test code

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The server process, killed with SIGKILL when dropped: no graceful shutdown to rely on.
pub(crate) struct Server {
    child: Child,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Sends SIGTERM, as an orchestrator stopping the node would, and waits for the exit.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}: {sent}");
        // A hang guard, not a timing claim.
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the server did not exit within 30 s of SIGTERM");
    }
}

/// Starts `todo --addr 127.0.0.1:0 ARGS` in `dir` and waits until it logs where it listens.
pub(crate) fn start(dir: &Path, args: &[&str]) -> Server {
    start_with_env(dir, args, &[])
}

/// [`start`] with these environment variables set.
pub(crate) fn start_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_todo"))
        .current_dir(dir)
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
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

/// One HTTP/1.1 GET on a fresh connection; returns the status and the body as text.
pub(crate) fn get(server: &Server, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    (status, body.to_owned())
}

/// One HTTP/1.1 POST on a fresh connection; returns the status and the JSON body.
pub(crate) fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    post_as(server, None, path, body)
}

/// [`post`] with `Authorization: Bearer TOKEN` where a token is given.
pub(crate) fn post_as(
    server: &Server,
    token: Option<&str>,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let body = body.to_string();
    let authorization = token.map_or_else(String::new, |token| {
        format!("Authorization: Bearer {token}\r\n")
    });
    let mut stream = TcpStream::connect(server.addr).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {}\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
