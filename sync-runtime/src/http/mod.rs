//! The HTTP layer: the engine's endpoints as an axum [`Router`], and how they are served
//! ([`HttpOptions`]: where they are mounted, body limits and deadlines, the live channel).
//!
//! `POST {prefix}/push`, `/pull` and `/snapshot` take JSON and answer JSON; `GET {prefix}/live`
//! is the WebSocket of the live channel. Every failure answers the protocol's `{"error", "code"}`
//! body (`error`).

mod error;
mod json;
mod live;
#[cfg(test)]
mod typescript;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::SizeAbove;
use tracing::Instrument;

use self::error::{HttpError, live_takes_get, method_not_allowed, not_found, panic_response};
use self::json::{json, pull_answer, read_json, snapshot_answer};
use crate::auth::Credentials;
use crate::engine::Engine;
use crate::protocol::{PullRequest, PushRequest, SnapshotRequest};

pub use live::LiveOptions;
pub(crate) use live::poke_frame;

/// Responses smaller than this are not compressed.
const COMPRESS_ABOVE_BYTES: u16 = 2048;

/// How the routes serve HTTP; the protocol's defaults.
///
/// ```
/// use std::time::Duration;
/// use sync_runtime::{Engine, HttpOptions, MemoryBackend, MutatorFunc};
///
/// # let mutator = MutatorFunc::new(|_, _| Box::pin(async { Ok(None) }));
/// let engine = Engine::builder(mutator).build();
/// let mut options = HttpOptions::default();
/// options.prefix = "/api/sync".into();
/// options.live.idle_timeout = Duration::from_secs(30);
/// let app = axum::Router::new().merge(engine.router_with(options));
/// # let _ = app;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpOptions {
    /// The path the routes are mounted under (default `/_sync`).
    pub prefix: String,
    /// Largest push body in bytes (default 1 MiB).
    pub push_body_bytes: usize,
    /// Largest pull or snapshot body in bytes (default 64 KiB).
    pub request_body_bytes: usize,
    /// How long a request's body may take to arrive (default 30 s): a slower one is answered 408
    /// `request_timeout` and holds nothing after that. How long its headers may take is the
    /// server's setting (hyper's `header_read_timeout`).
    pub body_timeout: Duration,
    /// The byte budget of a pull or snapshot page (default 4 MiB): beyond its first change (or
    /// entity), a page holds changes only while their encoded JSON stays within it, and one cut
    /// short by it says `has_more`.
    pub page_budget_bytes: usize,
    /// The live channel.
    pub live: LiveOptions,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            prefix: "/_sync".to_owned(),
            push_body_bytes: 1 << 20,
            request_body_bytes: 64 << 10,
            body_timeout: Duration::from_secs(30),
            page_budget_bytes: 4 << 20,
            live: LiveOptions::default(),
        }
    }
}

/// What every handler needs: the engine, and how to serve it.
#[derive(Clone)]
struct Routes {
    engine: Engine,
    options: Arc<HttpOptions>,
}

impl Engine {
    /// The axum routes `POST /_sync/push`, `/pull` and `/snapshot`, and `GET /_sync/live`, with
    /// [`HttpOptions`]' defaults: see [`router_with`](Engine::router_with).
    ///
    /// Merge it into the application's router and wrap it in the application's own layers:
    /// `axum::Router::new().merge(engine.router()).layer(cors)`.
    pub fn router(&self) -> Router {
        self.router_with(HttpOptions::default())
    }

    /// The engine's routes under `options.prefix`, with a `sync.request` tracing span per
    /// request, compression of large pull and snapshot answers, and panics turned into JSON
    /// errors. Other paths under the prefix answer the JSON 404; the rest are the application's.
    ///
    /// tower-http's `TraceLayer` is not used, and its `CompressionLayer` only on pull and
    /// snapshot: on the push route each cost about a tenth of the throughput (BENCHMARKS.md), the
    /// first for a span that the routes open themselves for less, the second for answers too small to
    /// compress.
    pub fn router_with(&self, options: HttpOptions) -> Router {
        // Full paths rather than `nest`, which rebuilds the URI of every request it routes.
        let prefix = match options.prefix.trim_matches('/') {
            "" => String::new(),
            prefix => format!("/{prefix}"),
        };
        // Small answers go out as they are: compressing them costs more than it saves.
        let compressed =
            || CompressionLayer::new().compress_when(SizeAbove::new(COMPRESS_ABOVE_BYTES));
        let routes = Router::new()
            .route(&format!("{prefix}/push"), endpoint(post(push)))
            .route(
                &format!("{prefix}/pull"),
                endpoint(post(pull)).layer(compressed()),
            )
            .route(
                &format!("{prefix}/snapshot"),
                endpoint(post(snapshot)).layer(compressed()),
            )
            .route(
                &format!("{prefix}/live"),
                get(live::upgrade).fallback(live_takes_get),
            );
        let routes = if prefix.is_empty() {
            routes.fallback(not_found)
        } else {
            routes
                .route(&prefix, any(not_found))
                .route(&format!("{prefix}/"), any(not_found))
                .route(&format!("{prefix}/{{*rest}}"), any(not_found))
        };
        routes
            .with_state(Routes {
                engine: self.clone(),
                options: Arc::new(options),
            })
            .layer(CatchPanicLayer::custom(panic_response))
    }
}

fn endpoint(route: MethodRouter<Routes>) -> MethodRouter<Routes> {
    route.fallback(method_not_allowed)
}

/// Runs one request's handler in a `sync.request` span, and logs its answer's status at debug
/// level.
async fn traced(
    endpoint: &'static str,
    handler: impl Future<Output = Result<Response, HttpError>>,
) -> Response {
    let span = tracing::info_span!("sync.request", endpoint, status = tracing::field::Empty);
    let started = std::time::Instant::now();
    let response = handler.instrument(span.clone()).await.into_response();
    let status = response.status().as_u16();
    span.record("status", status);
    tracing::debug!(parent: &span, status, elapsed = ?started.elapsed(), "answered");
    response
}

// Each handler takes the whole request rather than a `HeaderMap` extractor, which would copy
// every header.

async fn push(State(routes): State<Routes>, request: Request) -> Response {
    traced("push", async move {
        let (parts, body) = request.into_parts();
        let options = &routes.options;
        let request: PushRequest = read_json(
            &parts.headers,
            body,
            options.push_body_bytes,
            options.body_timeout,
        )
        .await?;
        let answer = routes
            .engine
            .push_from(&credentials(&parts), request.mutations)
            .await?;
        Ok(json(&answer, 256 * answer.results.len()))
    })
    .await
}

async fn pull(State(routes): State<Routes>, request: Request) -> Response {
    traced("pull", async move {
        let (parts, body) = request.into_parts();
        let options = &routes.options;
        let request: PullRequest = read_json(
            &parts.headers,
            body,
            options.request_body_bytes,
            options.body_timeout,
        )
        .await?;
        let answer = routes
            .engine
            .pull_from(Some(&credentials(&parts)), request)
            .await?;
        Ok(pull_answer(&answer, options.page_budget_bytes))
    })
    .await
}

async fn snapshot(State(routes): State<Routes>, request: Request) -> Response {
    traced("snapshot", async move {
        let (parts, body) = request.into_parts();
        let options = &routes.options;
        let request: SnapshotRequest = read_json(
            &parts.headers,
            body,
            options.request_body_bytes,
            options.body_timeout,
        )
        .await?;
        let answer = routes
            .engine
            .snapshot_from(Some(&credentials(&parts)), &request)
            .await?;
        Ok(snapshot_answer(&answer, options.page_budget_bytes))
    })
    .await
}

/// An HTTP request's credentials: its parts (headers, extensions), no JOIN token.
fn credentials(parts: &Parts) -> Credentials<'_> {
    Credentials { parts, token: None }
}
