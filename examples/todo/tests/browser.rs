//! The TypeScript side: the sync-client package's type check and unit tests (vitest), and the todo
//! web app's end-to-end tests in headless Chromium against the real `todo` binary.
//!
//! Outside CI, where `npm ci` has not been run or Chromium is missing, each test prints
//! `skipped: ...` and passes; with `CI` set it fails instead.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
