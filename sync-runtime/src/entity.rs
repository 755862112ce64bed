//! Typed entities: Rust types that are stored, synced and described to TypeScript by name.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An entity type: its name in changes and snapshots (e.g. `"todo"`) and where its id is.
///
/// Derive it with `#[derive(Entity)]`; the id field is `id` unless `#[entity(id = "...")]`
/// names another, and the name is the type's name in snake_case unless
/// `#[entity(name = "...")]` says otherwise:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sync_runtime::Entity;
///
/// #[derive(Serialize, Deserialize, Entity)]
/// #[entity(name = "todo")]
/// struct Todo {
///     id: String,
///     title: String,
/// }
///
/// assert_eq!(Todo::NAME, "todo");
/// assert_eq!(Todo { id: "a".into(), title: "t".into() }.id(), "a");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a sync entity",
    label = "not an `Entity`",
    note = "derive it with `#[derive(Serialize, Deserialize, Entity)]`"
)]
pub trait Entity: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The entity type's name, e.g. `"todo"`.
    const NAME: &'static str;

    /// This entity's id.
    fn id(&self) -> String;
}
