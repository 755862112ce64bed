//! Expansion of `#[derive(Entity)]`: the entity's name and its id field.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, Ident, Path};

use crate::ast::Entity;
use crate::check;
use crate::ctxt::Ctxt;
use crate::expand::runtime_path;

/// The `Entity` impl, or the errors.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let entity = Entity::from_syn(&mut cx, input);
    check::entity(&mut cx, &entity);
    match entity.id_field {
        Some(id_field) if !cx.has_errors() => expand(&entity, id_field),
        _ => cx.into_compile_errors(),
    }
}

fn expand(entity: &Entity<'_>, id_field: &Ident) -> TokenStream {
    let krate = runtime_path(entity.attrs.krate.as_ref());
    let id = quote!(#krate::__private::ToString::to_string(&self.#id_field));
    entity_impl(entity, &krate, id)
}

/// The `Entity` impl whose `id` evaluates `id`, an expression of type `String` that may use
/// `self`. The fallback's stub will go through here too.
fn entity_impl(entity: &Entity<'_>, krate: &Path, id: TokenStream) -> TokenStream {
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
