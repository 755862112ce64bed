//! The TypeScript side: the sync-client package's type check and unit tests (vitest), and the todo
//! web app's end-to-end tests in headless Chromium against the real `todo` binary.
//!
//! Outside CI, where `npm ci` has not been run or Chromium is missing, each test prints
//! `skipped: ...` and passes; with `CI` set it fails instead.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `what` is there; where it is not, a note (or, under CI, a failure).
fn present(path: &Path, hint: &str) -> bool {
    if path.exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the TypeScript tests, but {} is missing: {hint}",
        path.display()
    );
    eprintln!("skipped: {} is missing ({hint})", path.display());
    false
}

fn node(dir: &Path, args: &[&str]) -> Output {
    Command::new("node")
        .current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("node runs (install Node.js)")
}

fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_sync_client_type_checks_and_passes_its_unit_tests() {
    let client = repo_root().join("sync-client");
    if !present(
        &client.join("node_modules/vitest"),
        "run `npm ci` in sync-client",
    ) {
        return;
    }
    let tsc = node(&client, &["node_modules/typescript/bin/tsc", "--noEmit"]);
    assert_success("tsc --noEmit in sync-client", &tsc);
    let vitest = node(&client, &["node_modules/vitest/vitest.mjs", "run"]);
    assert_success("vitest in sync-client", &vitest);
}

#[test]
fn the_web_app_type_checks() {
    let web = repo_root().join("examples/todo/web");
    if !present(
        &web.join("node_modules/typescript"),
        "run `npm ci` in examples/todo/web",
    ) {
        return;
    }
    // The app, its service worker and the benchmark page, against sync-client's sources and the
    // generated sync.gen.ts (web/tsconfig.json).
    let tsc = node(&web, &["node_modules/typescript/bin/tsc", "--noEmit"]);
    assert_success("tsc --noEmit in examples/todo/web", &tsc);
}

/// Whether playwright-core and Chromium are there (else a note, and a failure under `CI`).
fn browser_present(web: &Path) -> bool {
    present(
        &web.join("node_modules/playwright-core"),
        "run `npm ci` in examples/todo/web",
    ) && present(
        Path::new("/usr/bin/chromium"),
        "install Debian's chromium and chromium-driver",
    )
}

/// The todo server process, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `todo --auth none` on `addr` (port 0: any) with a SQLite database at `db`; waits
    /// until it listens.
    fn start(addr: &str, db: &Path) -> Server {
        Server::start_with(addr, db, "none")
    }

    /// [`Server::start`] with `--auth auth`.
    fn start_with(addr: &str, db: &Path, auth: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_todo"))
            .args(["--addr", addr, "--auth", auth, "--retain", "10", "--store"])
            .arg(format!("sqlite:{}", db.display()))
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let Some(line) = lines.next() else {
                let status = child.wait().unwrap();
                panic!("the server exited before it listened: {status}");
            };
            if let Some(rest) = line.unwrap().split("listening on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Server { child, addr }
    }

    /// Starts it again on the same address; the old socket may take a moment to be released.
    fn restart(self, db: &Path) -> Server {
        let addr = self.addr.clone();
        drop(self);
        for _ in 0..50 {
            if std::net::TcpListener::bind(&addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Server::start(&addr, db)
    }
}

#[test]
fn the_web_app_works_offline_and_converges_in_chromium() {
    let web = repo_root().join("examples/todo/web");
    if !browser_present(&web) {
        return;
    }
    assert!(
        todo::web_app_built(),
        "the web app was not bundled into the todo binary: see the build script's warning"
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("todo.db");
    let mut server = Some(Server::start("127.0.0.1:0", &db));
    let url = format!("http://{}", server.as_ref().unwrap().addr);

    let mut e2e = Command::new("node")
        .current_dir(&web)
        .args(["e2e/run.mjs", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs (install Node.js)");
    let mut stdin = e2e.stdin.take().unwrap();
    for line in BufReader::new(e2e.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "restart-server" {
            server = Some(server.take().unwrap().restart(&db));
            writeln!(stdin, "restarted").unwrap();
        } else {
            println!("{line}");
        }
    }
    let status = e2e.wait().unwrap();
    assert!(
        status.success(),
        "the end-to-end tests failed ({status}); see their output above"
    );
}

/// The signed-in web app (`--auth demo`): two users, their own lists and a shared one, and a
/// member removed from it (e2e/users.mjs).
#[test]
fn the_web_app_keeps_users_apart_in_chromium() {
    let web = repo_root().join("examples/todo/web");
    if !browser_present(&web) {
        return;
    }
    assert!(
        todo::web_app_built(),
        "the web app was not bundled into the todo binary"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with("127.0.0.1:0", &dir.path().join("todo.db"), "demo");
    let url = format!("http://{}", server.addr);
    let status = Command::new("node")
        .current_dir(&web)
        .args(["e2e/users.mjs", &url])
        .status()
        .expect("node runs (install Node.js)");
    assert!(
        status.success(),
        "the signed-in end-to-end test failed ({status}); see its output above"
    );
}
