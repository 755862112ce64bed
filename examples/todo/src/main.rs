//! `cargo run -p todo`: the todo sync server on 127.0.0.1:3000, with its metrics at `/metrics`
//! and a health check for load balancers at `/healthz`.
//!
//! Several of them on one PostgreSQL database (`--store postgres://...`) are nodes of one
//! deployment: pokes cross between them through the database's LISTEN/NOTIFY.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use sync_runtime::{
    Engine, LiveHub, MemoryBackend, PostgresBackend, PostgresBroker, SqliteBackend,
};
use todo::{DemoAuth, TodoMutator};
use tracing_subscriber::EnvFilter;

/// A sync server for a todo list: push mutations, pull changes, take snapshots.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Where data and changes live: `sqlite:PATH` (a file, created if missing),
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME` (shared by several servers), or `memory`
    /// (lost when the server stops).
    #[arg(long, value_name = "STORE", default_value = "sqlite:./todo.db")]
    store: Store,
    /// Keep about this many of the most recent changes; clients further behind take a snapshot.
    #[arg(long, value_name = "N")]
    retain: Option<u64>,
    /// Most connections served at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a connection may take to send a request's headers before it is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    header_timeout: u64,
    /// Who may do what: `demo` (sign in with a name at `POST /auth/demo`, then `user:NAME` is
    /// yours and `list:ID` is shared with the members its owner names) or `none` (no sign-in,
    /// every scope open to everyone). The demo's signing key is `TODO_AUTH_KEY`'s, else drawn at
    /// start.
    #[arg(long, value_enum, default_value_t = AuthMode::Demo)]
    auth: AuthMode,
    /// Write the TypeScript types of the todo mutations to PATH (default: the web client's
    /// `web/src/sync.gen.ts`) and exit.
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    write_typescript: Option<Option<PathBuf>>,
}

/// How requests are authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum AuthMode {
    /// Demo sign-in by name, with signed tokens.
    Demo,
    /// None: every request may do everything.
    None,
}

/// Where data and changes live.
#[derive(Clone, Debug)]
enum Store {
    /// In memory: everything is lost when the server stops.
    Memory,
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by URL.
    Postgres(String),
}

impl std::str::FromStr for Store {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "memory" {
            Ok(Store::Memory)
        } else if let Some(path) = text.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err("sqlite: needs a path, e.g. sqlite:./todo.db".to_owned());
            }
            Ok(Store::Sqlite(PathBuf::from(path)))
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(Store::Postgres(text.to_owned()))
        } else {
            Err(format!(
                "unknown store `{text}`: use sqlite:PATH, postgres://USER@HOST/DBNAME or memory"
            ))
        }
    }
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Memory => f.write_str("memory"),
            Store::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            // Without the password.
            Store::Postgres(url) => match url.split_once("://").and_then(|(scheme, rest)| {
                let (credentials, host) = rest.split_once('@')?;
                let user = credentials.split(':').next().unwrap_or_default();
                Some(format!("{scheme}://{user}@{host}"))
            }) {
                Some(shown) => f.write_str(&shown),
                None => f.write_str(url),
            },
        }
    }
}

/// A store that cannot be opened stops the server with the reason.
fn store_error(store: &Store, error: sync_runtime::StoreError) -> std::io::Error {
    std::io::Error::other(format!("cannot open the store {store}: {error}"))
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
    let builder = Engine::builder(TodoMutator);
    let mut builder = match &cli.store {
        Store::Memory => builder.backend(MemoryBackend::new()),
        Store::Sqlite(path) => builder
            .backend(SqliteBackend::open(path).map_err(|error| store_error(&cli.store, error))?),
        Store::Postgres(url) => {
            let backend = PostgresBackend::connect(url)
                .await
                .map_err(|error| store_error(&cli.store, error))?;
            // The other nodes' commits poke this node's live clients, and this node's theirs.
            let hub = LiveHub::new();
            let broker = PostgresBroker::start(url, hub.clone(), backend.clone())
                .await
                .map_err(|error| store_error(&cli.store, error))?;
            builder.backend(backend).live_hub(hub).broker(broker)
        }
    };
    if let Some(keep) = cli.retain {
        builder = builder.retain(keep);
    }
    let sign_in = match cli.auth {
        AuthMode::Demo => {
            let auth = DemoAuth::from_env()?;
            builder = builder.auth(auth.clone(), todo::auth::rules());
            Some(auth)
        }
        AuthMode::None => None,
    };
    let engine = builder.build();
    let app = match sign_in {
        Some(auth) => todo::app_with_sign_in(&engine, auth),
        None => todo::app(&engine),
    };
    let app = app
        .route("/healthz", health_route(engine.clone()))
        .route("/metrics", metrics_route(engine)?);
    let listener = tokio::net::TcpListener::bind(cli.addr)
        .await
        .map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!("cannot listen on {}: {error}", cli.addr),
            )
        })?;
    tracing::info!(
        "todo sync server listening on http://{} (store: {}, auth: {}, endpoints under {})",
        listener.local_addr()?,
        cli.store,
        match cli.auth {
            AuthMode::Demo => "demo sign-in",
            AuthMode::None => "none, every scope open",
        },
        sync_runtime::HttpOptions::default().prefix
    );
    let limits = ServerLimits {
        max_connections: cli.max_connections.max(1),
        header_timeout: Duration::from_secs(cli.header_timeout.max(1)),
    };
    serve(listener, app, limits).await
}

/// `GET /healthz`: whether this node can serve, for a load balancer's health check: 200 where
/// its store answers (a read of the log's head) within 5 s, else 503 with the protocol's error
/// body (code `unavailable`), so that a node that lost its database leaves the rotation. The
/// answer names nothing else: the route is open to whoever reaches the node.
fn health_route(engine: Engine) -> axum::routing::MethodRouter {
    use axum::response::IntoResponse;

    const PATIENCE: Duration = Duration::from_secs(5);
    axum::routing::get(move || async move {
        match tokio::time::timeout(PATIENCE, engine.head()).await {
            Ok(Ok(_)) => axum::Json(serde_json::json!({"status": "ok"})).into_response(),
            Ok(Err(error)) => error.into_response(),
            Err(_) => (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({
                    "error": format!("the store did not answer within {PATIENCE:?}"),
                    "code": "unavailable",
                })),
            )
                .into_response(),
        }
    })
}

/// `GET /metrics`: the engine's metrics (`sync_runtime::metrics`) in Prometheus' text format,
/// its sampled gauges read at each scrape.
fn metrics_route(engine: Engine) -> std::io::Result<axum::routing::MethodRouter> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            sync_runtime::metrics::LATENCY_BUCKETS,
        )
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|error| std::io::Error::other(format!("cannot record metrics: {error}")))?;
    sync_runtime::metrics::describe();
    // Folds the histograms' samples into their buckets now and then, between scrapes too.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(axum::routing::get(move || async move {
        engine.sample_metrics().await;
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
    }))
}

/// What the server holds a client to, so that slow or many connections cannot exhaust it: the
/// router's deadline covers a request's body, these its headers and the number of connections.
struct ServerLimits {
    max_connections: usize,
    header_timeout: Duration,
}

/// Serves `app` until Ctrl-C or SIGTERM (what `docker stop`, systemd and Kubernetes send), then
/// lets the open connections finish their requests (for at most 10 s).
///
/// `axum::serve` sets no deadline for a request's headers: a client that sends them a byte at a
/// time would hold its connection for ever. hyper's own server does, and this is it.
async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: ServerLimits,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(stop_signal());
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => permit,
            _ = &mut shutdown => break,
        };
        let Ok(permit) = permit else { break };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a connection ended with an error");
            }
            drop(permit);
        });
    }
    tracing::info!("shutting down");
    // Requests in flight finish; a live connection that stays open is cut after a while.
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("closing the connections still open");
    }
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix; where a signal cannot be watched, only the others end the server.
async fn stop_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot watch for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => drop(terminate.recv().await),
            Err(error) => {
                tracing::warn!(%error, "cannot watch for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
