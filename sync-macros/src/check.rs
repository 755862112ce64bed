//! The rules a `#[mutations]` impl block and a `#[derive(Entity)]` type follow, checked on the
//! model: each broken rule is an error on the offending tokens, and checking goes on, so that
//! every mistake is reported at once.

use std::collections::HashMap;

use crate::ast::{Entity, Input, MutationFn, Mutations};
use crate::ctxt::Ctxt;

/// The impl block, then each function, then the names across functions.
pub(crate) fn mutations(cx: &mut Ctxt, mutations: &Mutations<'_>) {
    let item = mutations.item;
    if let Some((_, trait_path, _)) = &item.trait_ {
        cx.error_spanned_by(
            trait_path,
            "`#[mutations]` goes on an inherent impl block (`impl Todos { ... }`), not a trait impl",
        );
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &item.generics,
            "`#[mutations]` does not support generic impl blocks",
        );
    }
    if mutations.type_name.is_none() {
        cx.error_spanned_by(
            &item.self_ty,
            "`#[mutations]` needs a named type, e.g. `impl Todos`",
        );
    }
    if let Some(namespace) = &mutations.attrs.namespace
        && let Err(message) = check_name_segment("namespace", &namespace.value())
    {
        cx.error_spanned_by(namespace, message);
    }
    for attr in &mutations.misplaced {
        cx.error_spanned_by(attr, "`#[mutation]` goes on an `async fn`");
    }
    for function in &mutations.functions {
        mutation_fn(cx, function);
    }
    if mutations.functions.is_empty() && mutations.misplaced.is_empty() {
        cx.error_spanned_by(
            &item.self_ty,
            "this `#[mutations]` impl has no `#[mutation]` function; mark each mutation with `#[mutation(\"entity/action\")]`",
        );
    }
    unique_names(cx, mutations);
}

/// The signature: `async`, not generic, `&self` or nothing, the transaction first, plain names,
/// `Result<T, E>`; and an explicit name that is well formed.
fn mutation_fn(cx: &mut Ctxt, function: &MutationFn<'_>) {
    let sig = &function.function.sig;
    if sig.asyncness.is_none() {
        cx.error_spanned_by(
            sig.fn_token,
            "a mutation function must be `async`: write `async fn`",
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        cx.error_spanned_by(&sig.generics, "a mutation function cannot be generic");
    }
    if let Some(variadic) = &sig.variadic {
        cx.error_spanned_by(variadic, "a mutation function cannot be variadic");
    }
    if let Some(lit) = &function.attr.name
        && let Err(message) = check_mutation_name(&lit.value())
    {
        cx.error_spanned_by(lit, message);
    }
    if let Some(receiver) = function.receiver {
        if receiver.reference.is_none() {
            cx.error_spanned_by(
                receiver,
                "a mutation function cannot take `self` by value; take `&self`",
            );
        } else if receiver.mutability.is_some() {
            cx.error_spanned_by(
                receiver,
                "a mutation function cannot take `&mut self`: mutations run concurrently; take `&self`",
            );
        }
    }

    let mut tx_seen = false;
    let mut caller_seen = false;
    for (index, input) in function.inputs.iter().enumerate() {
        match input {
            Input::Caller(caller) => {
                if !matches!(caller.attr.meta, syn::Meta::Path(_)) {
                    cx.error_spanned_by(caller.attr, "`#[caller]` takes no arguments");
                }
                if caller_seen {
                    cx.error_spanned_by(caller.attr, "only one `#[caller]` parameter is allowed");
                }
                caller_seen = true;
                if caller.identity.is_none() {
                    cx.error_spanned_by(
                        &caller.param.ty,
                        "a `#[caller]` parameter borrows the request's identity: write `&User`, or `Option<&User>` where the mutation also runs without one",
                    );
                }
            }
            Input::Tx(param) => {
                if tx_seen {
                    cx.error_spanned_by(param, "only one transaction parameter is allowed");
                } else if index > 0 {
                    cx.error_spanned_by(
                        param,
                        "the transaction parameter must come first (after `&self`)",
                    );
                }
                tx_seen = true;
            }
            Input::Arg(arg) => match arg.pat {
                syn::Pat::Ident(pat) if pat.by_ref.is_some() || pat.subpat.is_some() => {
                    cx.error_spanned_by(pat, "a mutation parameter must be a plain name");
                }
                syn::Pat::Ident(_) => {}
                pat => cx.error_spanned_by(
                    pat,
                    "a mutation parameter must be a plain name: it becomes the argument's JSON field",
                ),
            },
        }
    }
    if !tx_seen {
        cx.error_spanned_by(
            &sig.ident,
            "a mutation function takes the transaction first: add `tx: &mut Tx`",
        );
    }

    if function.ok.is_none() {
        let message = "a mutation function returns `Result<T, E>` where `T: Serialize` and `E: Into<MutationError>`, e.g. `Result<Todo, MutationError>`";
        match &sig.output {
            syn::ReturnType::Type(_, ty) => cx.error_spanned_by(ty, message),
            syn::ReturnType::Default => cx.error_spanned_by(&sig.ident, message),
        }
    }
}

/// Every mutation name is used once.
fn unique_names(cx: &mut Ctxt, mutations: &Mutations<'_>) {
    let mut first_use: HashMap<&str, &syn::Ident> = HashMap::new();
    for function in &mutations.functions {
        let ident = &function.function.sig.ident;
        if let Some(earlier) = first_use.insert(&function.name, ident) {
            cx.syn_error(syn::Error::new(
                function.name_span,
                format!(
                    "duplicate mutation name `{}`: `{earlier}` has it already",
                    function.name
                ),
            ));
        }
    }
}

/// A well-formed name, a struct with named fields among which the id, no generics.
pub(crate) fn entity(cx: &mut Ctxt, entity: &Entity<'_>) {
    let input = entity.input;
    if let Some(lit) = &entity.attrs.name
        && let Err(message) = check_name_segment("entity name", &lit.value())
    {
        cx.error_spanned_by(lit, message);
    }
    if !entity.named_fields {
        cx.error_spanned_by(&input.ident, "an entity is a struct with named fields");
    } else if entity.id_field.is_none() {
        let message = format!(
            "`{}` has no field `{}` for the id; name it with `#[entity(id = \"...\")]`",
            input.ident, entity.id_name
        );
        match &entity.attrs.id {
            Some(lit) => cx.error_spanned_by(lit, message),
            None => cx.error_spanned_by(&input.ident, message),
        }
    }
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(&input.generics, "an entity type cannot be generic");
    }
}

/// One segment of a name, the `what` of the message (a namespace, an entity name): letters,
/// digits, `_`, `-` and `.`.
fn check_name_segment(what: &str, segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    match segment.chars().find(|c| !is_name_char(*c)) {
        Some(c) => Err(format!(
            "the {what} `{segment}` holds `{}`; use letters, digits, `_`, `-` and `.`",
            c.escape_default()
        )),
        None => Ok(()),
    }
}

/// A whole mutation name: segments separated by `/`, e.g. `todo/create`.
fn check_mutation_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the mutation name is empty; name it, e.g. `\"todo/create\"`".to_owned());
    }
    let valid = name
        .split('/')
        .all(|segment| !segment.is_empty() && segment.chars().all(is_name_char));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid mutation name: use segments of letters, digits, `_`, `-` and `.` separated by `/`, e.g. `\"todo/create\"`"
        ))
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}
