//! An offline-first sync engine for Rust servers and TypeScript clients.
//!
//! Clients push *mutations* (named, with JSON arguments); the server runs the matching mutation
//! function inside a transaction, records the resulting *changes* in a log with increasing
//! *cursors*, and pokes the clients watching the scope; clients pull the changes since their
//! cursor and converge. The wire protocol is in `docs/protocol.md`.
//!
//! The pieces, named as in the design plan:
//!
//! - [`Mutation`], [`MutationResult`], [`Change`], [`ChangeOp`], [`Poke`]: the wire types.
//! - [`Mutator`] (and [`MutatorFunc`]): the application's logic, writing through a [`Tx`].
//! - [`Store`], [`ChangeLog`], [`Backend`], [`Transaction`]: where data and changes live;
//!   [`MemoryBackend`] keeps them in memory.
//! - [`PokeBroker`]: who is told of changes ([`NoopBroker`], [`FanoutBroker`],
//!   [`BroadcastBroker`]).
//! - [`Engine`]: push, pull, snapshot and trim, and [`Engine::router`] for the axum routes.
//!
//! ```no_run
//! use sync_runtime::{Engine, MemoryBackend, MutationError, MutatorFunc};
//!
//! # async fn run() -> std::io::Result<()> {
//! let mutator = MutatorFunc::new(|tx, m| Box::pin(async move {
//!     match m.name.as_str() {
//!         "note/set" => {
//!             let id = tx.new_id();
//!             tx.put_value("note", &id, m.args.clone()).await?;
//!             Ok(None)
//!         }
//!         other => Err(MutationError::unknown_mutation(other)),
//!     }
//! }));
//! let engine = Engine::builder(mutator).backend(MemoryBackend::new()).build();
//! let app = axum::Router::new().merge(engine.router()); // POST /_sync/{push,pull,snapshot}
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

pub mod args;
pub mod auth;
pub mod backend;
pub mod broker;
pub mod change;
pub mod changes;
pub mod describe;
pub mod engine;
pub mod entity;
pub mod error;
pub mod http;
pub mod mutation;
pub mod mutator;
pub mod protocol;
pub mod scope;
pub mod tx;
pub mod typescript;

pub use auth::{Action, AllowAll, AuthError, AuthRequest, Authorizer};
pub use backend::{
    AnyBackend, AnyTransaction, Backend, ChangeLog, Commit, Committed, LogRead, MemoryBackend,
    MemoryChangeLog, MemoryStore, NewChange, Store, Transaction, Write,
};
#[cfg(feature = "postgres")]
pub use backend::{PostgresBackend, PostgresOptions};
#[cfg(feature = "sqlite")]
pub use backend::{SqliteBackend, SqliteOptions};
pub use broker::LiveHub;
#[cfg(feature = "postgres")]
pub use broker::PostgresBroker;
pub use broker::{BroadcastBroker, FanoutBroker, NoopBroker, Poke, PokeBroker};
pub use change::{Change, ChangeOp};
pub use changes::Changes;
pub use engine::{Engine, EngineBuilder, Limits};
pub use entity::Entity;
pub use error::{MutationError, StoreError, SyncError};
pub use http::{HttpOptions, LiveOptions};
pub use mutation::{Mutation, MutationResult};
pub use mutator::{Mutations, Mutator, MutatorFunc};
pub use protocol::{
    PullRequest, PullResponse, PushRequest, PushResponse, ScopeData, SnapshotRequest,
    SnapshotResponse,
};
pub use tx::Tx;
pub use typescript::{typescript, write_typescript};

/// Derives [`Entity`](trait@Entity).
pub use sync_macros::Entity;
/// Turns an impl block of async functions into a typed [`Mutator`]; see the
/// [`sync_macros::mutations`] documentation.
pub use sync_macros::mutations;
/// The `ts-rs` crate, at the version this runtime uses.
pub use ts_rs;
/// The TypeScript form of a type, for the types mutations take and return. Derive it with
/// `#[derive(ts_rs::TS)]`, with `ts-rs` among the application's dependencies (as `serde` is).
pub use ts_rs::TS;

/// What the code `#[mutations]` and `#[derive(Entity)]` generate names; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use ::core::option::Option;
    pub use ::core::result::Result;
    pub use ::std::string::{String, ToString};
    pub use ::std::vec;
    pub use ::std::vec::Vec;
    pub use serde;
    pub use serde_json::Value;
    pub use ts_rs;

    pub use crate::args::decode_args;
    pub use crate::describe::{
        ArgDescription, Description, EntityDescription, MutationDescription, TypeRef,
    };

    use crate::error::MutationError;

    /// A mutation function's result as the engine wants it: the value serialized (`()` and `None`
    /// become no value), the error made a [`MutationError`].
    pub fn into_outcome<T, E>(result: Result<T, E>) -> Result<Option<Value>, MutationError>
    where
        T: serde::Serialize,
        E: Into<MutationError>,
    {
        let value = result.map_err(Into::into)?;
        match serde_json::to_value(value) {
            Ok(Value::Null) => Ok(None),
            Ok(value) => Ok(Some(value)),
            Err(error) => Err(MutationError::new(
                "invalid_result",
                format!("the mutation's result does not serialize: {error}"),
            )),
        }
    }

    /// Compiles only where `T` can be decoded from JSON; a generated call points the compiler's
    /// error at the user's type.
    pub fn assert_deserialize<T: serde::de::DeserializeOwned>() {}

    /// Compiles only where `T` has a TypeScript form.
    pub fn assert_typescript<T: ts_rs::TS + 'static>() {}

    /// Compiles only where `T` is an [`Entity`](crate::Entity) with a TypeScript form.
    pub fn assert_entity<T: crate::Entity + ts_rs::TS>() {}
}

/// The README's Rust examples compile (`cargo test --doc -p sync-runtime`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
