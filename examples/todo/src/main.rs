//! `cargo run -p todo`: the todo sync server on 127.0.0.1:3000.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use sync_runtime::{Engine, MemoryBackend};
use todo::TodoMutator;
use tracing_subscriber::EnvFilter;

/// A sync server for a todo list: push mutations, pull changes, take snapshots.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Where data and changes live.
    #[arg(long, value_enum, default_value_t = StoreKind::Memory)]
    store: StoreKind,
    /// Keep about this many of the most recent changes; clients further behind take a snapshot.
    #[arg(long, value_name = "N")]
    retain: Option<usize>,
    /// Write the TypeScript types of the todo mutations to PATH (default: the web client's
    /// `web/src/sync.gen.ts`) and exit.
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    write_typescript: Option<Option<PathBuf>>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StoreKind {
    /// In memory: everything is lost when the server stops.
    Memory,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let cli = Cli::parse();
    if let Some(path) = &cli.write_typescript {
        let committed = || Path::new(env!("CARGO_MANIFEST_DIR")).join(todo::TYPESCRIPT_PATH);
        let path = path.clone().unwrap_or_else(committed);
        let wrote = sync_runtime::write_typescript::<TodoMutator>(&path)?;
        let state = if wrote { "wrote" } else { "already current:" };
        tracing::info!("{state} {}", path.display());
        return Ok(());
    }
    let backend = match cli.store {
        StoreKind::Memory => MemoryBackend::new(),
    };
    let mut builder = Engine::builder().mutator(TodoMutator).backend(backend);
    if let Some(keep) = cli.retain {
        builder = builder.retain(keep);
    }
    let engine = builder.build();
    let listener = tokio::net::TcpListener::bind(cli.addr)
        .await
        .map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!("cannot listen on {}: {error}", cli.addr),
            )
        })?;
    tracing::info!(
        "todo sync server listening on http://{} (store: {:?}, endpoints under {})",
        listener.local_addr()?,
        cli.store,
        engine.prefix()
    );
    axum::serve(listener, todo::app(&engine))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
        .await
}
