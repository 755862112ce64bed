//! Expansion of `#[derive(Entity)]`: the entity's name and its id field.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use crate::ast::Entity;
use crate::ctxt::Ctxt;
use crate::impls::entity_impl;
use crate::{check, fallback};

/// The `Entity` impl, or the errors and the fallback's.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let entity = Entity::from_syn(&mut cx, input);
    check::entity(&mut cx, &entity);
    match entity.id_field {
        Some(id_field) if !cx.has_errors() => {
            let krate = entity.attrs.krate.path();
            let id = quote!(#krate::__private::ToString::to_string(&self.#id_field));
            entity_impl(&entity, &krate, id)
        }
        _ => {
            let errors = cx.into_compile_errors();
            let fallback = fallback::entity(&entity);
            quote!(#errors #fallback)
        }
    }
}
