//! The trait impls the macros emit, each written once: the real expansion and the fallback
//! (`fallback.rs`) fill in their bodies.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Path, Type};

use crate::ast::{Entity, Mutations};

/// The `Mutator` impl of `self_ty`, whose `apply` evaluates `body`: an expression of type
/// `Result<Option<Json>, MutationError>` that may use `self`, `__tx` (the `&mut Tx`),
/// `__mutation` (the `&Mutation`) and `.await`. The dispatch and the fallback's stub both go
/// through here, so that `apply`'s signature is written once.
pub(crate) fn mutator_impl(krate: &Path, self_ty: &Type, body: TokenStream) -> TokenStream {
    let private = quote!(#krate::__private);
    quote! {
        #[automatically_derived]
        impl #krate::Mutator for #self_ty {
            async fn apply(
                &self,
                __tx: &mut #krate::Tx,
                __mutation: &#krate::Mutation,
            ) -> #private::Result<#private::Option<#private::Json>, #krate::MutationError> {
                #body
            }
        }
    }
}

/// The `Mutations` impl whose description lists `mutation_list` and `entity_list`, two `Vec`
/// expressions. The description and the fallback's empty one both go through here, so that
/// the impl is written once.
pub(crate) fn mutations_impl(
    mutations: &Mutations<'_>,
    krate: &Path,
    mutation_list: TokenStream,
    entity_list: TokenStream,
) -> TokenStream {
    let private = quote!(#krate::__private);
    let self_ty = &mutations.item.self_ty;
    let type_name = mutations
        .type_name
        .map(ToString::to_string)
        .unwrap_or_default();
    quote! {
        #[automatically_derived]
        impl #krate::Mutations for #self_ty {
            fn description() -> #private::Description {
                #private::Description {
                    type_name: #type_name,
                    mutations: #mutation_list,
                    entities: #entity_list,
                }
            }
        }
    }
}

/// The `Entity` impl whose `id` evaluates `id`, an expression of type `String` that may use
/// `self`: the derive and the fallback's stub both go through here.
pub(crate) fn entity_impl(entity: &Entity<'_>, krate: &Path, id: TokenStream) -> TokenStream {
    let ident = &entity.input.ident;
    let name = &entity.name;
    quote! {
        #[automatically_derived]
        impl #krate::Entity for #ident {
            const NAME: &'static str = #name;

            fn id(&self) -> #krate::__private::String {
                #id
            }
        }
    }
}
