//! The `Mutations` impl: a runtime description of every mutation (name, docs, argument and
//! result types) that the runtime's TypeScript writer renders.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::Path;
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use crate::ast::{Mutations, lit};
use crate::impls::mutations_impl;

pub(crate) fn description(mutations: &Mutations<'_>, krate: &Path) -> TokenStream {
    let private = quote!(#krate::__private);

    let pushes = mutations.functions.iter().map(|function| {
        let cfgs = &function.cfgs;
        let name = lit(&function.name, function.name_span);
        let rust_name = function.function.sig.ident.to_string();
        let docs = &function.docs;
        let args = function.args().map(|(ident, arg)| {
            let field = ident.unraw().to_string();
            let optional = arg.optional;
            let ty = arg.ty;
            // A type without a TypeScript form is reported on the parameter's type.
            let type_ref = quote_spanned!(ty.span()=> #private::TypeRef::of::<#ty>());
            quote! {
                #private::ArgDescription { name: #field, optional: #optional, ty: #type_ref }
            }
        });
        let returns = function.ok.map_or_else(
            || quote!(#private::TypeRef::of::<()>()),
            |ty| quote_spanned!(ty.span()=> #private::TypeRef::of::<#ty>()),
        );
        quote! {
            #(#cfgs)*
            __mutations.push(#private::MutationDescription {
                name: #name,
                function: #rust_name,
                docs: &[#(#docs),*],
                args: #private::vec![#(#args),*],
                returns: #returns,
            });
        }
    });

    let entities = mutations.attrs.entities.iter().map(|ty| {
        quote_spanned! {ty.span()=>
            #private::EntityDescription {
                name: <#ty as #krate::Entity>::NAME,
                ty: {
                    #private::assert_entity::<#ty>();
                    #private::TypeRef::of::<#ty>()
                },
            }
        }
    });

    let mutation_list = quote! {{
        let mut __mutations = #private::Vec::new();
        #(#pushes)*
        __mutations
    }};
    let entity_list = quote!(#private::vec![#(#entities),*]);
    mutations_impl(mutations, krate, mutation_list, entity_list)
}
