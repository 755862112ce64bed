//! `#[derive(Entity)]`: the entity's name and its id field.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Fields};

use crate::ast::snake_case;
use crate::attr::EntityAttr;
use crate::ctxt::Ctxt;
use crate::expand::runtime_path;

pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let attrs = EntityAttr::parse(&mut cx, &input.attrs);
    let id_name = attrs
        .id
        .as_ref()
        .map_or_else(|| "id".to_owned(), syn::LitStr::value);

    let id_field = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(fields) => {
                let field = fields.named.iter().find(|field| {
                    field
                        .ident
                        .as_ref()
                        .is_some_and(|ident| ident.unraw() == id_name.as_str())
                });
                if field.is_none() {
                    let message = format!(
                        "`{}` has no field `{id_name}` for the id; name it with `#[entity(id = \"...\")]`",
                        input.ident
                    );
                    match &attrs.id {
                        Some(lit) => cx.error_spanned_by(lit, message),
                        None => cx.error_spanned_by(&input.ident, message),
                    }
                }
                field.and_then(|field| field.ident.clone())
            }
            _ => {
                cx.error_spanned_by(&input.ident, "an entity is a struct with named fields");
                None
            }
        },
        _ => {
            cx.error_spanned_by(&input.ident, "an entity is a struct with named fields");
            None
        }
    };
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(&input.generics, "an entity type cannot be generic");
    }
    let (Some(id_field), false) = (id_field, cx.has_errors()) else {
        return cx.into_compile_errors();
    };

    let krate = runtime_path(attrs.krate.as_ref());
    let ident = &input.ident;
    let name = attrs
        .name
        .map_or_else(|| snake_case(&ident.unraw().to_string()), |lit| lit.value());
    quote! {
        #[automatically_derived]
        impl #krate::Entity for #ident {
            const NAME: &'static str = #name;

            fn id(&self) -> #krate::__private::String {
                #krate::__private::ToString::to_string(&self.#id_field)
            }
        }
    }
}
