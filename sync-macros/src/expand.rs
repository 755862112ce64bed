//! Expansion of `#[mutations]`: the user's impl block (without the helper attributes), and in a
//! `const _: () = { ... };` block an args type per function, the `Mutator` impl that decodes and
//! dispatches, and the `Mutations` impl that describes everything to TypeScript.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ImplItem, ItemImpl};

use crate::ast::{Input, MutationFn, Mutations, lit};
use crate::attr::{Container, path_string};
use crate::ctxt::Ctxt;
use crate::impls::mutator_impl;
use crate::{check, fallback, ts};

/// The impl block as the user wrote it, less the `#[mutation]` attributes the compiler would
/// reject: emitted whether or not the macro found errors, so that the code around it (and the
/// IDE) keep working.
fn strip_helper_attributes(item: &ItemImpl) -> ItemImpl {
    let mut item = item.clone();
    for impl_item in &mut item.items {
        let attrs = match impl_item {
            ImplItem::Fn(item) => &mut item.attrs,
            ImplItem::Const(item) => &mut item.attrs,
            ImplItem::Type(item) => &mut item.attrs,
            ImplItem::Macro(item) => &mut item.attrs,
            _ => continue,
        };
        let is_mutation = attrs.iter().any(|attr| attr.path().is_ident("mutation"));
        attrs.retain(|attr| !attr.path().is_ident("mutation"));
        // `#[caller]` is ours on a mutation's parameters only; elsewhere the compiler says so.
        if let (true, ImplItem::Fn(function)) = (is_mutation, &mut *impl_item) {
            for input in &mut function.sig.inputs {
                if let syn::FnArg::Typed(param) = input {
                    param.attrs.retain(|attr| !attr.path().is_ident("caller"));
                }
            }
        }
    }
    item
}

/// The impl block, and beside it the generated impls, or the errors and the fallback's stubs.
pub(crate) fn mutations(args: TokenStream, item: &ItemImpl) -> TokenStream {
    let mut cx = Ctxt::default();
    let attrs = Container::parse(&mut cx, args);
    let model = Mutations::from_syn(&mut cx, attrs, item);
    check::mutations(&mut cx, &model);
    let stripped = strip_helper_attributes(item);
    if cx.has_errors() {
        let errors = cx.into_compile_errors();
        let fallback = fallback::mutations(&model);
        return quote!(#stripped #errors #fallback);
    }
    let expanded = expand(&model);
    quote!(#stripped #expanded)
}

fn expand(mutations: &Mutations<'_>) -> TokenStream {
    let krate = mutations.attrs.krate.path();
    let private = quote!(#krate::__private);
    let self_ty = &mutations.item.self_ty;
    // serde's `crate = "..."` takes the path as a string.
    let serde_crate = format!("{}::__private::serde", path_string(&krate));

    let args_types = mutations.functions.iter().map(|function| {
        let args = args_ident(function);
        let cfgs = &function.cfgs;
        let fields = function.args().map(|(ident, arg)| {
            let ty = arg.ty;
            let default = arg.optional.then(|| quote!(#[serde(default)]));
            quote!(#default #ident: #ty)
        });
        quote! {
            #(#cfgs)*
            #[derive(#private::serde::Deserialize)]
            #[serde(crate = #serde_crate, deny_unknown_fields)]
            #[allow(non_camel_case_types)]
            struct #args { #(#fields,)* }
        }
    });

    let arms = mutations.functions.iter().map(|function| {
        let args = args_ident(function);
        let cfgs = &function.cfgs;
        let name = lit(&function.name, function.name_span);
        let ident = &function.function.sig.ident;
        let bindings = function.args().map(|(ident, _)| ident);
        let params = function.inputs.iter().filter_map(|input| match input {
            Input::Tx(_) => Some(quote!(__tx)),
            Input::Caller(_) => Some(quote!(__caller)),
            Input::Arg(arg) => arg.ident().map(|ident| quote!(#ident)),
        });
        let call = if function.receiver.is_some() {
            quote!(self.#ident(#(#params),*).await)
        } else {
            quote!(<#self_ty>::#ident(#(#params),*).await)
        };
        // The caller first: a mutation that needs one fails before anything of it runs.
        let caller = function.inputs.iter().find_map(|input| match input {
            Input::Caller(caller) => caller.identity.map(|identity| {
                let get = if caller.optional {
                    quote_spanned!(identity.span()=> get::<#identity>)
                } else {
                    quote_spanned!(identity.span()=> require::<#identity>)
                };
                quote! {
                    let __identity = #krate::Caller::clone(#krate::Tx::caller(__tx));
                    let __caller = __identity.#get()?;
                }
            }),
            _ => None,
        });
        // An `E` that is not `Into<MutationError>` is reported on `E`.
        let span = function
            .error
            .map_or_else(|| function.output.span(), Spanned::span);
        let into_outcome = respan(quote!(#private::into_outcome), span);
        let result = syn::Ident::new("__result", span);
        let outcome = quote! {
            let #result = #call;
            #into_outcome(#result)
        };
        quote! {
            #(#cfgs)*
            #name => {
                #caller
                let #args { #(#bindings),* } = #private::decode_args::<#args>(__mutation)?;
                #outcome
            }
        }
    });

    let dispatch = quote! {
        match #private::String::as_str(&__mutation.name) {
            #(#arms)*
            __other => #private::Result::Err(#krate::MutationError::unknown_mutation(__other)),
        }
    };
    let mutator = mutator_impl(&krate, self_ty, dispatch);
    let description = ts::description(mutations, &krate);

    quote! {
        const _: () = {
            #(#args_types)*

            #mutator

            #description
        };
    }
}

/// `tokens` with every span set to `span`, so that the compiler's errors about them point there.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                token = TokenTree::Group(inner);
            }
            token.set_span(span);
            token
        })
        .collect()
}

/// The args type of a function: private to the `const` block.
fn args_ident(function: &MutationFn<'_>) -> syn::Ident {
    format_ident!("__{}Args", function.function.sig.ident)
}
