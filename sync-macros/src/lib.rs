//! Procedural macros of `sync-runtime`. Depend on `sync-runtime` and use them through its
//! re-exports (`sync_runtime::mutations`, `sync_runtime::Entity`): the generated code names only
//! `sync-runtime`'s paths.

mod ast;
mod attr;
mod check;
mod ctxt;
mod entity;
mod expand;
mod fallback;
mod impls;
mod ts;

use proc_macro::TokenStream;
use quote::quote;
use syn::{DeriveInput, ItemImpl, parse_macro_input};

/// Turns an impl block of async functions into a typed [`Mutator`]: one mutation per
/// `#[mutation]` function, its arguments decoded from `Mutation.args`, its writes recorded as
/// changes, and a description from which the runtime writes a TypeScript client.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sync_runtime::{Entity, MutationError, Tx, mutations};
/// use ts_rs::TS;
///
/// #[derive(Serialize, Deserialize, Entity, TS)]
/// #[entity(name = "todo")]
/// pub struct Todo {
///     pub id: String,
///     pub title: String,
///     pub completed: bool,
/// }
///
/// pub struct Todos;
///
/// #[mutations(entities(Todo))]
/// impl Todos {
///     /// Creates a todo; the client may choose its id.
///     #[mutation("todo/create")]
///     async fn create(tx: &mut Tx, title: String, id: Option<String>) -> Result<Todo, MutationError> {
///         let todo = Todo { id: id.unwrap_or_else(|| tx.new_id()), title, completed: false };
///         tx.put(&todo).await?; // a `create` change with the whole todo
///         Ok(todo) // the result's `value`
///     }
///
///     #[mutation("todo/toggle")]
///     async fn toggle(tx: &mut Tx, id: String) -> Result<(), MutationError> {
///         let mut todo: Todo =
///             tx.get(&id).await?.ok_or_else(|| MutationError::not_found("todo", &id))?;
///         todo.completed = !todo.completed;
///         tx.put(&todo).await?; // an `update` change
///         Ok(())
///     }
/// }
///
/// // Serve it: `axum::Router::new().merge(Engine::builder(Todos).build().router())`.
/// ```
///
/// # What it generates
///
/// The impl block stays as written (less the `#[mutation]` attributes). Beside it, the code is
/// equivalent to this hand-written version (paths shortened; the real code names everything
/// through `::sync_runtime::__private`):
///
/// ```ignore
/// const _: () = {
///     #[derive(Deserialize)]
///     #[serde(deny_unknown_fields)]
///     struct __createArgs { title: String, #[serde(default)] id: Option<String> }
///
///     #[derive(Deserialize)]
///     #[serde(deny_unknown_fields)]
///     struct __toggleArgs { id: String }
///
///     impl Mutator for Todos {
///         async fn apply(&self, tx: &mut Tx, m: &Mutation) -> Result<Option<Json>, MutationError> {
///             match m.name.as_str() {
///                 "todo/create" => {
///                     // An `invalid_args` failure naming the mutation and the field.
///                     let __createArgs { title, id } = decode_args(m)?;
///                     // `Ok(v)` is encoded as the result's `value`; `Err(e)` becomes `e.into()`.
///                     into_outcome(Todos::create(tx, title, id).await)
///                 }
///                 "todo/toggle" => {
///                     let __toggleArgs { id } = decode_args(m)?;
///                     into_outcome(Todos::toggle(tx, id).await)
///                 }
///                 other => Err(MutationError::unknown_mutation(other)),
///             }
///         }
///     }
///
///     impl Mutations for Todos {
///         fn description() -> Description { /* names, docs, TypeScript forms of the types */ }
///     }
/// };
/// ```
///
/// # The attributes
///
/// On the impl block, `#[mutations(...)]` takes, all optional:
///
/// - `entities(Todo, ...)`: entity types to describe to TypeScript (each `Entity + TS`);
/// - `namespace = "todo"`: the first segment of the names bare `#[mutation]`s derive;
/// - `crate = "path"`: the runtime crate's path, where it is renamed (default `::sync_runtime`).
///
/// On each mutation function, `#[mutation("entity/action")]` (or `#[mutation(name = "...")]`)
/// names the mutation; a bare `#[mutation]` derives `namespace/function`, with the type's name in
/// snake_case as the namespace unless `namespace` gives one (`Todos::create` →
/// `"todos/create"`). Names are segments of letters, digits, `_`, `-` and `.`, separated by `/`.
///
/// # The functions
///
/// A mutation function is `async`, not generic, takes `tx: &mut Tx` first (after an optional
/// `&self`, for state such as configuration), then any number of parameters of types that
/// implement `Deserialize` and [`ts_rs::TS`](https://docs.rs/ts-rs) (derive it as you derive
/// serde's traits, with `ts-rs` among your dependencies), each a field of the arguments object
/// (`Option<T>`: an optional field; unknown fields are rejected), and returns `Result<T, E>`
/// with `T: Serialize + TS` (the result's `value`, encoded once) and `E: Into<MutationError>`:
/// a permanent failure with a code, unless it is a store error, which answers 503 so the client
/// retries. `#[cfg]` on a function is honoured; its doc comment carries into the TypeScript
/// output. Functions without `#[mutation]` are left alone.
///
/// # The caller
///
/// One parameter marked `#[caller]` receives the identity the engine's `Authenticator` made of
/// the request (see `EngineBuilder::auth`), not an argument: clients cannot send it, and the
/// TypeScript is the same with or without it. `&User` makes the caller required: called without
/// one (an engine without authentication, or `Engine::push`), the mutation fails with
/// `unauthorized` before anything of it runs. `Option<&User>` also runs without one.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use sync_runtime::{Entity, MutationError, Tx, mutations};
/// # #[derive(Serialize, Deserialize, Entity, ts_rs::TS)]
/// # pub struct Note { pub id: String, pub text: String, pub author: String }
/// pub struct User { pub name: String }
///
/// pub struct Notes;
///
/// #[mutations]
/// impl Notes {
///     #[mutation("note/add")]
///     async fn add(tx: &mut Tx, #[caller] user: &User, text: String) -> Result<Note, MutationError> {
///         let note = Note { id: tx.new_id(), text, author: user.name.clone() };
///         tx.put(&note).await?;
///         Ok(note)
///     }
/// }
/// ```
///
/// The arm that calls it reads the caller first, from the transaction:
///
/// ```ignore
/// "note/add" => {
///     let __identity = Caller::clone(tx.caller()); // an `Arc`: `tx` stays free
///     let __caller = __identity.require::<User>()?; // `get::<User>()` for `Option<&User>`
///     let __addArgs { text } = decode_args(m)?;
///     into_outcome(Notes::add(tx, __caller, text).await)
/// }
/// ```
///
/// Mistakes are compile errors on the offending tokens, all reported at once. The type then
/// still implements `Mutator` and `Mutations`, knowing no mutation, so that the code that uses
/// it reports nothing more: one mistake, one error.
///
/// [`Mutator`]: https://docs.rs/sync-runtime/latest/sync_runtime/trait.Mutator.html
#[proc_macro_attribute]
pub fn mutations(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = match syn::parse::<ItemImpl>(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            let error = syn::Error::new(
                proc_macro2::Span::call_site(),
                "`#[mutations]` goes on an impl block: `#[mutations] impl Todos { ... }`",
            )
            .to_compile_error();
            let input = proc_macro2::TokenStream::from(input);
            return quote!(#input #error).into();
        }
    };
    expand::mutations(args.into(), &item).into()
}

/// Derives `Entity`: the entity's name (`#[entity(name = "todo")]`, default: the type's name in
/// snake_case) and its id field (`#[entity(id = "key")]`, default `id`, any `ToString` type).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sync_runtime::Entity;
///
/// #[derive(Serialize, Deserialize, Entity)]
/// #[entity(id = "number")]
/// struct Invoice {
///     number: u64,
///     total_cents: i64,
/// }
///
/// assert_eq!(Invoice::NAME, "invoice");
/// assert_eq!(Invoice { number: 7, total_cents: 100 }.id(), "7");
/// ```
#[proc_macro_derive(Entity, attributes(entity))]
pub fn derive_entity(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    entity::derive(&input).into()
}
