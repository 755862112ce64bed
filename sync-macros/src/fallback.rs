//! What the macros emit beside their errors (thiserror's `fallback.rs`): stub impls of the
//! traits they would have implemented, so that code using the type as a `Mutator`, `Mutations`
//! or `Entity` reports nothing more. One mistake, one error.
//!
//! No stub is emitted where it would fail in turn: for a generic impl or type, a type that is
//! not a plain path, or a runtime path in doubt.

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::{Entity, Mutations};
use crate::impls;

/// A `Mutator` that knows no mutation and a `Mutations` that describes none.
pub(crate) fn mutations(mutations: &Mutations<'_>) -> TokenStream {
    let generics = &mutations.item.generics;
    let Some(krate) = mutations.attrs.krate.known_path() else {
        return TokenStream::new();
    };
    if mutations.type_name.is_none()
        || !generics.params.is_empty()
        || generics.where_clause.is_some()
    {
        return TokenStream::new();
    }
    let private = quote!(#krate::__private);
    let unknown = quote! {
        #private::Result::Err(#krate::MutationError::unknown_mutation(
            #private::String::as_str(&__mutation.name),
        ))
    };
    let mutator = impls::mutator_impl(&krate, &mutations.item.self_ty, unknown);
    let empty = quote!(#private::Vec::new());
    let description = impls::mutations_impl(mutations, &krate, empty.clone(), empty);
    quote! {
        const _: () = {
            #mutator
            #description
        };
    }
}

/// An `Entity` whose id is empty.
pub(crate) fn entity(entity: &Entity<'_>) -> TokenStream {
    let Some(krate) = entity.attrs.krate.known_path() else {
        return TokenStream::new();
    };
    if !entity.input.generics.params.is_empty() {
        return TokenStream::new();
    }
    impls::entity_impl(entity, &krate, quote!(#krate::__private::String::new()))
}
