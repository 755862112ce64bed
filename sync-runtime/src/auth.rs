//! The authorizer hook: the application decides who may push, pull or snapshot which scope.

use axum::http::HeaderMap;
use futures::future::BoxFuture;

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

/// One authorization question.
#[derive(Clone, Copy, Debug)]
pub struct AuthRequest<'a> {
    /// The HTTP request's headers (for a live connection: the upgrade request's).
    pub headers: &'a HeaderMap,
    /// The scope asked for.
    pub scope: &'a str,
    /// What is asked.
    pub action: Action,
    /// The token a live JOIN carried, if any.
    pub token: Option<&'a str>,
}

/// An authorizer's refusal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No valid credentials: HTTP 401 `unauthorized`.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that do not allow this: HTTP 403 `forbidden`.
    #[error("{0}")]
    Forbidden(String),
}

/// Decides whether a request may act on a scope. Asked once per scope of a request, before
/// anything runs.
///
/// A closure `Fn(&AuthRequest) -> Result<(), AuthError>` is an authorizer:
///
/// ```
/// use sync_runtime::{AuthError, AuthRequest, Engine};
///
/// let authorize = |req: &AuthRequest<'_>| match req.headers.get("authorization") {
///     Some(value) if value == "Bearer secret" => Ok(()),
///     Some(_) => Err(AuthError::Forbidden("wrong token".into())),
///     None => Err(AuthError::Unauthorized("send an `Authorization: Bearer` header".into())),
/// };
/// # let _ = Engine::builder(sync_runtime::MutatorFunc::new(|_, _| Box::pin(async { Ok(None) }))).authorizer(authorize);
/// ```
pub trait Authorizer: Send + Sync + 'static {
    /// Allows the request, or says why not.
    fn authorize(
        &self,
        request: &AuthRequest<'_>,
    ) -> impl Future<Output = Result<(), AuthError>> + Send;
}

/// [`Authorizer`] with a boxed future, for the engine to hold any authorizer.
pub(crate) trait DynAuthorizer: Send + Sync {
    fn authorize<'a>(
        &'a self,
        request: &'a AuthRequest<'_>,
    ) -> BoxFuture<'a, Result<(), AuthError>>;
}

impl<A: Authorizer> DynAuthorizer for A {
    fn authorize<'a>(
        &'a self,
        request: &'a AuthRequest<'_>,
    ) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(Authorizer::authorize(self, request))
    }
}

impl<F> Authorizer for F
where
    F: for<'a, 'b> Fn(&'a AuthRequest<'b>) -> Result<(), AuthError> + Send + Sync + 'static,
{
    async fn authorize(&self, request: &AuthRequest<'_>) -> Result<(), AuthError> {
        self(request)
    }
}

/// The authorizer of an engine that was given none: everything is allowed.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    async fn authorize(&self, _request: &AuthRequest<'_>) -> Result<(), AuthError> {
        Ok(())
    }
}
