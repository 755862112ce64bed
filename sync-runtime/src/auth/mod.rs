//! Identity and authorization. The application says how a request is authenticated (an
//! [`Authenticator`] turns its credentials into an identity of the application's own type) and
//! who may do what with which scope (an [`Authorizer`] of that identity). The engine asks them
//! once per request and once per scope, before anything runs, and hands the identity to the
//! request's mutations as their [`Caller`].

mod caller;
mod reader;
mod rules;

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::http::request::Parts;
use futures::future::BoxFuture;

use crate::backend::AnyBackend;
use crate::error::{StoreError, SyncError};

pub use caller::Caller;
pub use reader::Reader;
pub use rules::{ScopeRules, Unclaimed};

/// What a request wants to do with a scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Run mutations in the scope.
    Push,
    /// Read the scope's changes.
    Pull,
    /// Read the scope's whole data.
    Snapshot,
    /// Receive the scope's pokes.
    Live,
}

/// What a request carries to say who sends it.
#[derive(Clone, Copy, Debug)]
pub struct Credentials<'a> {
    /// The HTTP request's method, URI, headers and extensions (what the application's own
    /// middleware put there: a session, a decoded JWT). For the live channel: the upgrade
    /// request's.
    pub parts: &'a Parts,
    /// The token a live JOIN carried, if any.
    pub token: Option<&'a str>,
}

impl Credentials<'_> {
    /// The request's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    /// The bearer token: a live JOIN's `token`, else the `Authorization: Bearer` header's.
    pub fn bearer(&self) -> Option<&str> {
        self.token.or_else(|| {
            let value = self.parts.headers.get("authorization")?.to_str().ok()?;
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim())
                .filter(|token| !token.is_empty())
        })
    }
}

/// An authenticator's or authorizer's refusal.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No valid credentials: HTTP 401 `unauthorized`; the client gets fresh ones and retries.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that do not allow this: HTTP 403 `forbidden`.
    #[error("{0}")]
    Forbidden(String),
    /// The store could not be read to decide: HTTP 503, retried.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    /// [`AuthError::Unauthorized`] with this sentence.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        AuthError::Unauthorized(message.into())
    }

    /// [`AuthError::Forbidden`] with this sentence.
    pub fn forbidden(message: impl Into<String>) -> Self {
        AuthError::Forbidden(message.into())
    }
}

impl From<AuthError> for SyncError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthorized(message) => SyncError::Unauthorized(message),
            AuthError::Forbidden(message) => SyncError::Forbidden(message),
            AuthError::Store(error) => SyncError::Unavailable(error),
        }
    }
}

/// Turns a request's credentials into the application's identity, or refuses it (401).
///
/// Asked once per HTTP request and once per live JOIN (then again whenever the live channel
/// re-checks its scopes, so that an expired identity stops there too). A closure
/// `Fn(&Credentials) -> Result<Identity, AuthError>` is an authenticator; an async one is a type
/// that implements this trait:
///
/// ```
/// use sync_runtime::{AuthError, Authenticator, Credentials};
///
/// #[derive(Debug)]
/// struct User { name: String }
///
/// struct Tokens;
///
/// impl Authenticator for Tokens {
///     type Identity = User;
///
///     async fn authenticate(&self, credentials: &Credentials<'_>) -> Result<User, AuthError> {
///         match credentials.bearer() {
///             Some(token) if token.starts_with("user-") => Ok(User { name: token[5..].into() }),
///             Some(_) => Err(AuthError::unauthorized("the token is not valid; sign in again")),
///             None => Err(AuthError::unauthorized("send `Authorization: Bearer <token>`")),
///         }
///     }
/// }
/// ```
///
/// What an axum middleware already decided is in the request's extensions:
///
/// ```
/// # use sync_runtime::{AuthError, Credentials};
/// # #[derive(Clone)] struct Session { user_id: u64 }
/// let from_session = |credentials: &Credentials<'_>| {
///     credentials.parts.extensions.get::<Session>().cloned()
///         .ok_or_else(|| AuthError::unauthorized("sign in first"))
/// };
/// # let _ = from_session;
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an authenticator",
    note = "implement `Authenticator` (an `async fn authenticate`), or pass a closure \
            `|credentials: &Credentials<'_>| -> Result<Identity, AuthError>`"
)]
pub trait Authenticator: Send + Sync + 'static {
    /// The application's identity type, e.g. `User { id, roles }`.
    type Identity: Send + Sync + 'static;

    /// The identity these credentials prove, or why there is none.
    fn authenticate(
        &self,
        credentials: &Credentials<'_>,
    ) -> impl Future<Output = Result<Self::Identity, AuthError>> + Send;
}

impl<F, I> Authenticator for F
where
    F: for<'a, 'b> Fn(&'a Credentials<'b>) -> Result<I, AuthError> + Send + Sync + 'static,
    I: Send + Sync + 'static,
{
    type Identity = I;

    async fn authenticate(&self, credentials: &Credentials<'_>) -> Result<I, AuthError> {
        self(credentials)
    }
}

/// One authorization question: may `identity` do `action` with `scope`?
#[derive(Clone, Copy, Debug)]
pub struct Access<'a, I> {
    /// Who asks, as the authenticator made it.
    pub identity: &'a I,
    /// The scope asked for.
    pub scope: &'a str,
    /// What is asked.
    pub action: Action,
    /// The committed data, read-only, e.g. for membership records.
    pub store: Reader<'a>,
}

/// Decides whether an identity may act on a scope. Asked for every distinct scope of a push, for
/// a pull's or snapshot's scope, and for every scope a live JOIN names (and again whenever the
/// live channel re-checks them), before anything runs.
///
/// A closure `Fn(&Access<Identity>) -> Result<(), AuthError>` is an authorizer; one that reads
/// the store is a type with an `async fn authorize`. [`ScopeRules`] covers the common rules.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot authorize identities of type `{I}`",
    note = "implement `Authorizer<{I}>` (an `async fn authorize`), pass a closure \
            `|access: &Access<'_, {I}>| -> Result<(), AuthError>`, or use `ScopeRules`"
)]
pub trait Authorizer<I>: Send + Sync + 'static {
    /// Allows the access, or says why not.
    fn authorize(
        &self,
        access: &Access<'_, I>,
    ) -> impl Future<Output = Result<(), AuthError>> + Send;
}

impl<F, I> Authorizer<I> for F
where
    F: for<'a, 'b> Fn(&'a Access<'b, I>) -> Result<(), AuthError> + Send + Sync + 'static,
    I: Sync,
{
    async fn authorize(&self, access: &Access<'_, I>) -> Result<(), AuthError> {
        self(access)
    }
}

/// The authorizer that allows every identity everything: for an app whose authentication is
/// all its rule.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl<I: Sync> Authorizer<I> for AllowAll {
    async fn authorize(&self, _access: &Access<'_, I>) -> Result<(), AuthError> {
        Ok(())
    }
}

/// An authenticator and an authorizer of its identity, as the engine holds them: the identity
/// travels as a [`Caller`] and is downcast where the authorizer takes it, which always succeeds
/// because this pair made it.
pub(crate) trait DynAuth: Send + Sync {
    fn authenticate<'a>(
        &'a self,
        credentials: &'a Credentials<'a>,
    ) -> BoxFuture<'a, Result<Caller, AuthError>>;

    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        scope: &'a str,
        action: Action,
        backend: &'a AnyBackend,
    ) -> BoxFuture<'a, Result<(), AuthError>>;
}

struct Auth<A, Z> {
    authenticator: A,
    authorizer: Z,
}

/// The pair, for the engine.
pub(crate) fn pair<A, Z>(authenticator: A, authorizer: Z) -> Arc<dyn DynAuth>
where
    A: Authenticator,
    Z: Authorizer<A::Identity>,
{
    Arc::new(Auth {
        authenticator,
        authorizer,
    })
}

impl<A, Z> DynAuth for Auth<A, Z>
where
    A: Authenticator,
    Z: Authorizer<A::Identity>,
{
    fn authenticate<'a>(
        &'a self,
        credentials: &'a Credentials<'a>,
    ) -> BoxFuture<'a, Result<Caller, AuthError>> {
        Box::pin(async move {
            let identity = self.authenticator.authenticate(credentials).await?;
            Ok(Caller::new(identity))
        })
    }

    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        scope: &'a str,
        action: Action,
        backend: &'a AnyBackend,
    ) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(async move {
            let Ok(Some(identity)) = caller.get::<A::Identity>() else {
                return Err(AuthError::unauthorized(
                    "the request was not authenticated; send credentials",
                ));
            };
            let access = Access {
                identity,
                scope,
                action,
                store: Reader::new(backend),
            };
            self.authorizer.authorize(&access).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(authorization: Option<&str>) -> Parts {
        let mut request = axum::http::Request::builder();
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_bearer_token_comes_from_the_join_else_the_header() {
        let header = parts(Some("Bearer abc "));
        let credentials = Credentials {
            parts: &header,
            token: None,
        };
        assert_eq!(credentials.bearer(), Some("abc"));
        let joined = Credentials {
            parts: &header,
            token: Some("xyz"),
        };
        assert_eq!(joined.bearer(), Some("xyz"));
        for value in ["Basic abc", "Bearer", "Bearer  ", "bearerabc"] {
            let other = parts(Some(value));
            let credentials = Credentials {
                parts: &other,
                token: None,
            };
            assert_eq!(credentials.bearer(), None, "{value:?}");
        }
        let lower = parts(Some("bearer t"));
        let credentials = Credentials {
            parts: &lower,
            token: None,
        };
        assert_eq!(credentials.bearer(), Some("t"));
    }
}
