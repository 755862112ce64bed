//! Errors, one type per layer: [`StoreError`] from backends, [`MutationError`] from mutators,
//! [`SyncError`] from the engine. The HTTP layer maps `SyncError` to status and code in one place.

use std::borrow::Cow;
use std::error::Error as StdError;

/// A backend failed: a transient failure the client retries (HTTP 503 `unavailable`), unless
/// it is [invalid input](StoreError::invalid_input), which no retry can store.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    message: String,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync>>,
    invalid_input: bool,
}

impl StoreError {
    /// A store failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        StoreError {
            message: message.into(),
            source: None,
            invalid_input: false,
        }
    }

    /// A key or value that the store can never hold, e.g. an id with a NUL character, which
    /// PostgreSQL's text refuses. The mutation that wrote it fails for good with `invalid_args`
    /// rather than making its client retry forever.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        StoreError {
            invalid_input: true,
            ..StoreError::new(message)
        }
    }

    /// Whether this is [invalid input](StoreError::invalid_input) rather than a failure of the
    /// store.
    pub fn is_invalid_input(&self) -> bool {
        self.invalid_input
    }

    /// A store failure caused by `source`, described by `context`: the message says what
    /// failed, [`source`](StdError::source) why.
    pub fn with_source(
        context: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        StoreError {
            message: context.into(),
            source: Some(source.into()),
            invalid_input: false,
        }
    }
}

/// An error and its sources, one after another: `what failed: why: why that`. Every error here
/// reports its source once, through `source()`; this is how a log line or an answer tells all.
pub(crate) struct Sentence<'a>(pub(crate) &'a (dyn StdError + 'static));

impl std::fmt::Display for Sentence<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Why a mutation function did not succeed.
///
/// A [`MutationError::Failed`] is permanent: the push answers `ok: false` with its code, and the
/// mutation's `client_seq` is recorded so a retry is a duplicate. A [`MutationError::Store`] is
/// transient: nothing of the mutation is applied or recorded and the push answers 503. The `?`
/// operator turns a [`StoreError`] into the latter.
#[derive(Debug, thiserror::Error)]
pub enum MutationError {
    /// A permanent failure with a machine-readable code and a human sentence.
    #[error("{message}")]
    Failed {
        /// `invalid_args`, `not_found`, `rejected`, `unknown_mutation`, or the application's own.
        code: Cow<'static, str>,
        /// A sentence for a person.
        message: String,
    },
    /// The store failed; the client retries.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MutationError {
    /// A permanent failure with the application's own `code`.
    pub fn new(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        MutationError::Failed {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The arguments do not fit the mutation (`invalid_args`).
    pub fn invalid_args(message: impl Into<String>) -> Self {
        MutationError::new("invalid_args", message)
    }

    /// The entity `entity` with id `id` does not exist (`not_found`).
    pub fn not_found(entity: &str, id: &str) -> Self {
        MutationError::new("not_found", format!("{entity} `{id}` does not exist"))
    }

    /// A business rule refused the mutation (`rejected`).
    pub fn rejected(message: impl Into<String>) -> Self {
        MutationError::new("rejected", message)
    }

    /// The mutator knows no mutation of this name (`unknown_mutation`).
    pub fn unknown_mutation(name: &str) -> Self {
        MutationError::new("unknown_mutation", format!("unknown mutation `{name}`"))
    }

    /// The code of a permanent failure; `None` for a store failure.
    pub fn code(&self) -> Option<&str> {
        match self {
            MutationError::Failed { code, .. } => Some(code),
            MutationError::Store(_) => None,
        }
    }
}

/// Why the engine refused or could not serve a request.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The request is not of the expected shape.
    #[error("{0}")]
    InvalidRequest(String),
    /// A push without mutations.
    #[error("the push holds no mutations; send at least one")]
    NoMutations,
    /// A push with more mutations than allowed.
    #[error("the push holds {count} mutations; the limit is {max}: split it into smaller pushes")]
    TooManyMutations {
        /// Mutations in the push.
        count: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A scope that is too long or holds a control character.
    #[error("{0}")]
    InvalidScope(String),
    /// The authorizer wants credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// The authorizer refused.
    #[error("{0}")]
    Forbidden(String),
    /// The changes after the requested cursor were trimmed.
    #[error(
        "changes of scope `{scope}` after cursor {cursor} were trimmed (up to {horizon}); take a snapshot"
    )]
    CursorTooOld {
        /// The scope pulled.
        scope: String,
        /// The cursor pulled from.
        cursor: u64,
        /// The highest trimmed cursor of the scope.
        horizon: u64,
    },
    /// The requested cursor is beyond the log's head.
    #[error("cursor {cursor} is beyond the log's head {head}; take a snapshot")]
    CursorAhead {
        /// The cursor pulled from.
        cursor: u64,
        /// The log's head.
        head: u64,
    },
    /// The request names a log other than the server's: its database was replaced, restored
    /// or reset.
    #[error(
        "the log `{asked}` is not this server's (`{log_id}`): its database was replaced; take a snapshot"
    )]
    LogReplaced {
        /// The log the request named.
        asked: String,
        /// The server's log.
        log_id: String,
    },
    /// The store failed; the client retries.
    #[error("the store is unavailable, retry later")]
    Unavailable(#[from] StoreError),
}

impl SyncError {
    /// The protocol's snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            SyncError::InvalidRequest(_) => "invalid_request",
            SyncError::NoMutations => "no_mutations",
            SyncError::TooManyMutations { .. } => "too_many_mutations",
            SyncError::InvalidScope(_) => "invalid_scope",
            SyncError::Unauthorized(_) => "unauthorized",
            SyncError::Forbidden(_) => "forbidden",
            SyncError::CursorTooOld { .. } => "cursor_too_old",
            SyncError::CursorAhead { .. } => "cursor_ahead",
            SyncError::LogReplaced { .. } => "log_replaced",
            SyncError::Unavailable(_) => "unavailable",
        }
    }

    /// The HTTP status the protocol gives this error.
    pub fn status(&self) -> u16 {
        match self {
            SyncError::InvalidRequest(_)
            | SyncError::NoMutations
            | SyncError::TooManyMutations { .. }
            | SyncError::InvalidScope(_) => 400,
            SyncError::Unauthorized(_) => 401,
            SyncError::Forbidden(_) => 403,
            SyncError::CursorTooOld { .. }
            | SyncError::CursorAhead { .. }
            | SyncError::LogReplaced { .. } => 410,
            SyncError::Unavailable(_) => 503,
        }
    }
}
