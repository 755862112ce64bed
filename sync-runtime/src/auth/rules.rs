//! [`ScopeRules`]: authorization by scope prefix, the shape most apps' rules take.

use futures::future::BoxFuture;

use super::{Access, Action, AuthError, Authorizer};
use crate::entity::Entity;

/// Who may use a members-only scope that has no members yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unclaimed {
    /// Anyone authenticated: the first to push claims it, and its mutation must record them as
    /// a member in the same transaction (nothing else stops a second claimant).
    Open,
    /// No one: members are recorded by other means first (an admin, a signup).
    Closed,
}

/// Rules by scope prefix: the first rule whose prefix starts the scope decides, and a scope that
/// no rule names is refused (403). Implements [`Authorizer`].
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sync_runtime::{Entity, ScopeRules, Unclaimed};
///
/// struct User { name: String }
///
/// /// A member of a shared list, kept in the list's scope under the user's name.
/// #[derive(Serialize, Deserialize, Entity, ts_rs::TS)]
/// struct Member { id: String }
///
/// let rules = ScopeRules::new()
///     // `user:ada` is Ada's alone.
///     .personal("user:", |user: &User| &user.name)
///     // `list:…` is open to the users with a `member` entity of their name in it.
///     .members::<Member>("list:", |user: &User| &user.name, Unclaimed::Open)
///     // `news` is for everyone signed in.
///     .open("news");
/// # let _ = rules;
/// ```
pub struct ScopeRules<I> {
    rules: Vec<(String, Rule<I>)>,
}

enum Rule<I> {
    Personal(fn(&I) -> &str),
    Members {
        entity: &'static str,
        id_of: fn(&I) -> &str,
        unclaimed: Unclaimed,
    },
    Open,
    Custom(Box<dyn DynRule<I>>),
}

impl<I> Default for ScopeRules<I> {
    fn default() -> Self {
        ScopeRules { rules: Vec::new() }
    }
}

impl<I: Send + Sync + 'static> ScopeRules<I> {
    /// No rules: every scope refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// `{prefix}{id}` belongs to the identity whose id (`id_of`) is `{id}`, and to no one else.
    pub fn personal(mut self, prefix: impl Into<String>, id_of: fn(&I) -> &str) -> Self {
        self.rules.push((prefix.into(), Rule::Personal(id_of)));
        self
    }

    /// `{prefix}…` is open to the identities that have an `E` entity with their id (`id_of`) in
    /// that scope: membership records kept in the scope itself. `unclaimed` says who may use
    /// such a scope before it has any `E`.
    pub fn members<E: Entity>(
        mut self,
        prefix: impl Into<String>,
        id_of: fn(&I) -> &str,
        unclaimed: Unclaimed,
    ) -> Self {
        let rule = Rule::Members {
            entity: E::NAME,
            id_of,
            unclaimed,
        };
        self.rules.push((prefix.into(), rule));
        self
    }

    /// `{prefix}…` is open to every authenticated identity.
    pub fn open(mut self, prefix: impl Into<String>) -> Self {
        self.rules.push((prefix.into(), Rule::Open));
        self
    }

    /// `{prefix}…` is decided by `authorizer`.
    pub fn custom(mut self, prefix: impl Into<String>, authorizer: impl Authorizer<I>) -> Self {
        self.rules
            .push((prefix.into(), Rule::Custom(Box::new(authorizer))));
        self
    }
}

impl<I: Send + Sync + 'static> Authorizer<I> for ScopeRules<I> {
    async fn authorize(&self, access: &Access<'_, I>) -> Result<(), AuthError> {
        let scope = access.scope;
        let Some((prefix, rule)) = self
            .rules
            .iter()
            .find(|(prefix, _)| scope.starts_with(prefix.as_str()))
        else {
            return Err(AuthError::forbidden(format!(
                "scope `{scope}` is not one this server opens to anyone"
            )));
        };
        match rule {
            Rule::Personal(id_of) => {
                let owner = scope.get(prefix.len()..).unwrap_or_default();
                if owner == id_of(access.identity) {
                    Ok(())
                } else {
                    Err(AuthError::forbidden(format!(
                        "scope `{scope}` belongs to another user"
                    )))
                }
            }
            Rule::Members {
                entity,
                id_of,
                unclaimed,
            } => {
                let id = id_of(access.identity);
                if access.store.get_value(scope, entity, id).await?.is_some() {
                    return Ok(());
                }
                if *unclaimed == Unclaimed::Open
                    && access.store.list_values(scope, entity).await?.is_empty()
                {
                    return Ok(());
                }
                Err(AuthError::forbidden(format!(
                    "only the members of `{scope}` may {}",
                    verb(access.action)
                )))
            }
            Rule::Open => Ok(()),
            Rule::Custom(rule) => rule.authorize(access).await,
        }
    }
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Push => "change it",
        Action::Pull | Action::Snapshot => "read it",
        Action::Live => "watch it",
    }
}

/// [`Authorizer`] with a boxed future, for a rule list to hold any authorizer.
trait DynRule<I>: Send + Sync {
    fn authorize<'a>(&'a self, access: &'a Access<'a, I>) -> BoxFuture<'a, Result<(), AuthError>>;
}

impl<I, Z: Authorizer<I>> DynRule<I> for Z {
    fn authorize<'a>(&'a self, access: &'a Access<'a, I>) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(Authorizer::authorize(self, access))
    }
}
