//! The generated TypeScript module is committed and current, and `tsc --strict` accepts what it
//! should and refuses what it should.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::path::{Path, PathBuf};
use std::process::Command;

use todo::{TYPESCRIPT_PATH, TodoMutator};

fn package_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_committed_typescript_is_current() {
    let path = package_dir().join(TYPESCRIPT_PATH);
    let generated = sync_runtime::typescript::<TodoMutator>();
    if std::env::var_os("UPDATE_TYPESCRIPT").is_some() {
        sync_runtime::write_typescript::<TodoMutator>(&path).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale; regenerate it with `cargo run -p todo -- --write-typescript` (or \
         `UPDATE_TYPESCRIPT=1 cargo test -p todo --test typescript`) and commit it",
        path.display()
    );
}

#[test]
fn the_typescript_describes_every_mutation() {
    let module = sync_runtime::typescript::<TodoMutator>();
    for expected in [
        "export type Todo = { ",
        "created_by?: string, };",
        // The caller (`#[caller] user`) is not an argument.
        "export interface TodoCreateArgs {\n  title: string;\n  id?: string | null;\n}",
        "\"list/share\": { args: ListShareArgs; result: Member };",
        "\"todo/create\": { args: TodoCreateArgs; result: Todo };",
        "\"todo/delete\": { args: TodoDeleteArgs; result: void };",
        "\"todo\": Todo;",
        " * Marks a todo done, or not done again.",
    ] {
        assert!(
            module.contains(expected),
            "missing {expected:?} in:\n{module}"
        );
    }
}

/// `tsc` from the web folder's npm packages, or `None` (with a note) where they are not
/// installed. CI installs them, and there a missing `tsc` fails the test.
fn tsc() -> Option<PathBuf> {
    let tsc = package_dir().join("web/node_modules/.bin/tsc");
    if tsc.exists() {
        return Some(tsc);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the TypeScript checks: run `npm ci` in examples/todo/web first"
    );
    eprintln!(
        "skipped: tsc is not installed (run `npm ci` in examples/todo/web to check the TypeScript)"
    );
    None
}

fn check(tsc: &Path, file: &str) -> std::process::Output {
    let web = package_dir().join("web");
    Command::new(tsc)
        .current_dir(&web)
        .args([
            "--strict", "--noEmit", "--target", "es2022", "--module", "es2022",
        ])
        .args(["--moduleResolution", "bundler", file])
        .output()
        .unwrap()
}

#[test]
fn tsc_accepts_typed_use_and_refuses_mistakes() {
    let Some(tsc) = tsc() else { return };
    let ok = check(&tsc, "typecheck/ok.ts");
    assert!(
        ok.status.success(),
        "ok.ts must type-check:\n{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    let bad = check(&tsc, "typecheck/bad.ts");
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success(), "bad.ts must not type-check");
    // One error per mistake, each on its line of bad.ts.
    for (line, what) in [
        (7, "a misspelt argument"),
        (9, "an unknown mutation"),
        (11, "a missing argument"),
        (13, "an argument of the wrong type"),
        (15, "the result used as the wrong type"),
        (18, "a query on a misspelt field"),
        (20, "a query value of the wrong type"),
        (22, "a prefix of a field that is not a string"),
        (24, "an order by an unknown field"),
        (26, "a query of an unknown entity type"),
        (28, "an index on an unknown field"),
    ] {
        assert!(
            out.contains(&format!("bad.ts({line},")),
            "no error for {what} on line {line}:\n{out}"
        );
    }
}
