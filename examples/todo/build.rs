//! Bundles the web app (web/src/main.tsx, in React, with the sync client and its React bindings)
//! and the service worker (web/src/sw.ts) into OUT_DIR with esbuild, for the server to embed. The
//! bundle is build output, so it is not committed. Where the web folder's npm packages are missing,
//! it installs them (`npm ci`), so that `cargo run -p todo` on a fresh clone serves the app; where
//! Node.js or npm is missing, or the install fails, the server embeds a page that says how to build
//! the app.

#![allow(clippy::expect_used)] // a build script reports what it cannot do by panicking

use std::path::{Path, PathBuf};
use std::process::Command;

const FALLBACK: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>todo · sync</title></head>
<body style="font: 16px/1.4 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto">
<h1>todo sync server</h1>
<p>The server runs: <code>POST /_sync/push</code>, <code>/_sync/pull</code>, <code>/_sync/snapshot</code>
and the WebSocket <code>GET /_sync/live</code> answer (see the README).</p>
<p>The web app was not built into this binary: it needs Node.js and the web folder's npm packages.
Run <code>npm ci</code> in <code>examples/todo/web</code>, then <code>cargo run -p todo</code> again.</p>
<p>Reason: REASON</p>
</body></html>
"#;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let web = manifest.join("web");
    let client = manifest.join("../../sync-client");
    for watched in [
        web.join("src"),
        web.join("index.html"),
        web.join("tsconfig.json"),
        web.join("package-lock.json"),
        client.join("src"),
    ] {
        println!("cargo::rerun-if-changed={}", watched.display());
    }
    // Rebuild once `npm ci` has run (or run again); while node_modules is missing, watching the
    // small web folder notices it appear.
    let installed = web.join("node_modules/.package-lock.json");
    if installed.exists() {
        println!("cargo::rerun-if-changed={}", installed.display());
    } else {
        println!("cargo::rerun-if-changed={}", web.display());
    }
    println!("cargo::rustc-check-cfg=cfg(todo_web_app)");

    match build(&web, &out) {
        Ok(()) => {
            println!("cargo::rustc-cfg=todo_web_app");
            let html = std::fs::read_to_string(web.join("index.html")).expect("web/index.html");
            std::fs::write(out.join("index.html"), html).expect("OUT_DIR is writable");
        }
        Err(reason) => {
            println!("cargo::warning=the todo web app is not built: {reason}");
            for script in ["main.js", "sw.js"] {
                std::fs::write(out.join(script), "").expect("OUT_DIR is writable");
            }
            let page = FALLBACK.replace("REASON", &escape(&reason));
            std::fs::write(out.join("index.html"), page).expect("OUT_DIR is writable");
        }
    }
}

fn build(web: &Path, out: &Path) -> Result<(), String> {
    let esbuild = web.join("node_modules/.bin/esbuild");
    if !esbuild.exists() {
        install(web)?;
    }
    let output = Command::new(&esbuild)
        .current_dir(web)
        .args([
            "src/main.tsx",
            "src/sw.ts",
            "--bundle",
            // One React: the bindings' sources (../../sync-client/src/react.tsx) would otherwise
            // import the copy in sync-client/node_modules beside the app's. An alias resolves from
            // the web folder.
            "--alias:react=react",
            "--alias:react-dom=react-dom",
            "--format=esm",
            "--target=es2022",
            "--minify",
            "--log-level=warning",
        ])
        .arg(format!("--outdir={}", out.display()))
        .output()
        .map_err(|error| {
            format!(
                "cannot run {}: {error} (is Node.js installed?)",
                esbuild.display()
            )
        })?;
    if !output.status.success() {
        return Err(format!(
            "esbuild failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

/// `npm ci` in the web folder; npm may be on PATH or only beside Node.js.
fn install(web: &Path) -> Result<(), String> {
    println!(
        "cargo::warning=installing the todo web app's npm packages (`npm ci` in {})",
        web.display()
    );
    let args = ["ci", "--no-audit", "--no-fund", "--loglevel=error"];
    let output = match Command::new("npm").current_dir(web).args(args).output() {
        Ok(output) => output,
        Err(_) => Command::new("node")
            .current_dir(web)
            .arg("/usr/lib/node_modules/npm/bin/npm-cli.js")
            .args(args)
            .output()
            .map_err(|error| {
                format!("cannot run npm: {error} (install Node.js, then run `npm ci` in examples/todo/web)")
            })?,
    };
    if !output.status.success() {
        return Err(format!(
            "`npm ci` in examples/todo/web failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
