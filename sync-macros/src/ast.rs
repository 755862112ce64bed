//! The model of a `#[mutations]` impl block: its mutation functions with their parameters, each
//! keeping the syn nodes it came from so that errors and generated code carry the user's spans.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ImplItem, ImplItemFn, ItemImpl, LitStr, Pat,
    PathArguments, ReturnType, Type,
};

use crate::attr::{Container, MutationAttr, check_mutation_name};
use crate::ctxt::Ctxt;

/// The annotated impl block.
pub(crate) struct Mutations<'a> {
    pub(crate) attrs: Container,
    pub(crate) item: &'a ItemImpl,
    /// The type's name, e.g. `Todos`.
    pub(crate) type_name: Option<&'a Ident>,
    pub(crate) functions: Vec<MutationFn<'a>>,
}

/// One `#[mutation]` function.
pub(crate) struct MutationFn<'a> {
    pub(crate) function: &'a ImplItemFn,
    /// The mutation's name and where it came from (the literal, or the function's name).
    pub(crate) name: String,
    pub(crate) name_span: Span,
    /// Whether the function takes `&self`.
    pub(crate) takes_self: bool,
    pub(crate) params: Vec<Param<'a>>,
    /// `T` of `Result<T, E>`.
    pub(crate) ok: Option<&'a Type>,
    /// `E` of `Result<T, E>`.
    pub(crate) error: Option<&'a Type>,
    /// The whole return type, for errors about `E`.
    pub(crate) output: &'a ReturnType,
    /// `#[cfg(...)]` attributes, copied onto everything generated for this function.
    pub(crate) cfgs: Vec<&'a Attribute>,
    /// The doc comment, line by line.
    pub(crate) docs: Vec<String>,
}

/// A typed parameter: a field of the mutation's arguments.
pub(crate) struct Param<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    /// `Option<T>`: the field may be absent.
    pub(crate) optional: bool,
}

impl<'a> Mutations<'a> {
    pub(crate) fn parse(cx: &mut Ctxt, attrs: Container, item: &'a ItemImpl) -> Mutations<'a> {
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
        let type_name = match &*item.self_ty {
            Type::Path(path) if path.qself.is_none() => path.path.segments.last().map(|s| &s.ident),
            other => {
                cx.error_spanned_by(
                    other,
                    "`#[mutations]` needs a named type, e.g. `impl Todos`",
                );
                None
            }
        };
        let mut functions = Vec::new();
        for impl_item in &item.items {
            let mutation_attrs: Vec<&Attribute> = item_attrs(impl_item)
                .iter()
                .filter(|attr| attr.path().is_ident("mutation"))
                .collect();
            let Some(first) = mutation_attrs.first() else {
                continue;
            };
            for extra in mutation_attrs.iter().skip(1) {
                cx.error_spanned_by(extra, "duplicate `#[mutation]` attribute");
            }
            match impl_item {
                ImplItem::Fn(function) => {
                    let attr = MutationAttr::parse(cx, first);
                    if let Some(parsed) = MutationFn::parse(cx, &attrs, type_name, attr, function) {
                        functions.push(parsed);
                    }
                }
                _ => cx.error_spanned_by(first, "`#[mutation]` goes on an `async fn`"),
            }
        }
        if functions.is_empty() && !cx.has_errors() {
            cx.error_spanned_by(
                &item.self_ty,
                "this `#[mutations]` impl has no `#[mutation]` function; mark each mutation with `#[mutation(\"entity/action\")]`",
            );
        }
        Mutations {
            attrs,
            item,
            type_name,
            functions,
        }
    }
}

impl<'a> MutationFn<'a> {
    fn parse(
        cx: &mut Ctxt,
        container: &Container,
        type_name: Option<&Ident>,
        attr: MutationAttr<'_>,
        function: &'a ImplItemFn,
    ) -> Option<MutationFn<'a>> {
        let sig = &function.sig;
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

        let (name, name_span) = match &attr.name {
            Some(lit) => {
                if let Err(message) = check_mutation_name(&lit.value()) {
                    cx.error_spanned_by(lit, message);
                }
                (lit.value(), lit.span())
            }
            None => (
                derived_name(container, type_name, &sig.ident),
                attr.attr.span(),
            ),
        };

        let mut takes_self = false;
        let mut tx_seen = false;
        let mut params = Vec::new();
        for (index, input) in sig.inputs.iter().enumerate() {
            match input {
                FnArg::Receiver(receiver) => {
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
                    takes_self = true;
                }
                FnArg::Typed(typed) => {
                    let first_typed = index == usize::from(takes_self);
                    if is_tx(&typed.ty) {
                        if tx_seen {
                            cx.error_spanned_by(typed, "only one transaction parameter is allowed");
                        } else if !first_typed {
                            cx.error_spanned_by(
                                typed,
                                "the transaction parameter must come first (after `&self`)",
                            );
                        }
                        tx_seen = true;
                        continue;
                    }
                    let Pat::Ident(pat) = &*typed.pat else {
                        cx.error_spanned_by(
                            &typed.pat,
                            "a mutation parameter must be a plain name: it becomes the argument's JSON field",
                        );
                        continue;
                    };
                    if pat.by_ref.is_some() || pat.subpat.is_some() {
                        cx.error_spanned_by(pat, "a mutation parameter must be a plain name");
                        continue;
                    }
                    params.push(Param {
                        ident: &pat.ident,
                        ty: &typed.ty,
                        optional: is_option(&typed.ty),
                    });
                }
            }
        }
        if !tx_seen {
            cx.error_spanned_by(
                &sig.ident,
                "a mutation function takes the transaction first: add `tx: &mut Tx`",
            );
        }

        let (ok, error) = match &sig.output {
            ReturnType::Type(_, ty) => result_types(ty).unzip(),
            ReturnType::Default => (None, None),
        };
        if ok.is_none() {
            let message = "a mutation function returns `Result<T, E>` where `T: Serialize` and `E: Into<MutationError>`, e.g. `Result<Todo, MutationError>`";
            match &sig.output {
                ReturnType::Type(_, ty) => cx.error_spanned_by(ty, message),
                ReturnType::Default => cx.error_spanned_by(&sig.ident, message),
            }
        }

        let cfgs = function
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("cfg"))
            .collect();
        Some(MutationFn {
            function,
            name,
            name_span,
            takes_self,
            params,
            ok,
            error,
            output: &sig.output,
            cfgs,
            docs: doc_lines(&function.attrs),
        })
    }
}

/// The name of a bare `#[mutation]`: `namespace/function`, where the namespace is the one given
/// or the type's name in snake_case.
fn derived_name(container: &Container, type_name: Option<&Ident>, function: &Ident) -> String {
    let namespace = match (&container.namespace, type_name) {
        (Some(namespace), _) => namespace.value(),
        (None, Some(ident)) => snake_case(&ident.unraw().to_string()),
        (None, None) => String::new(),
    };
    format!("{namespace}/{}", function.unraw())
}

pub(crate) fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn item_attrs(item: &ImplItem) -> &[Attribute] {
    match item {
        ImplItem::Fn(item) => &item.attrs,
        ImplItem::Const(item) => &item.attrs,
        ImplItem::Type(item) => &item.attrs,
        ImplItem::Macro(item) => &item.attrs,
        _ => &[],
    }
}

/// `&mut Tx` (or `&mut path::to::Tx`).
fn is_tx(ty: &Type) -> bool {
    match ty {
        Type::Reference(reference) if reference.mutability.is_some() => {
            last_segment_is(&reference.elem, "Tx").is_some()
        }
        _ => false,
    }
}

fn is_option(ty: &Type) -> bool {
    last_segment_is(ty, "Option").is_some_and(|args| type_args(args).len() == 1)
}

/// `T` and `E` of `Result<T, E>`.
fn result_types(ty: &Type) -> Option<(&Type, &Type)> {
    let args = last_segment_is(ty, "Result")?;
    match type_args(args).as_slice() {
        [ok, error] => Some((ok, error)),
        _ => None,
    }
}

fn last_segment_is<'t>(ty: &'t Type, ident: &str) -> Option<&'t PathArguments> {
    let Type::Path(path) = ty else { return None };
    let segment = path.path.segments.last()?;
    (segment.ident == ident).then_some(&segment.arguments)
}

fn type_args(arguments: &PathArguments) -> Vec<&Type> {
    let PathArguments::AngleBracketed(args) = arguments else {
        return Vec::new();
    };
    args.args
        .iter()
        .filter_map(|arg| match arg {
            GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect()
}

/// The lines of a doc comment, without the one space after `///`.
pub(crate) fn doc_lines(attrs: &[Attribute]) -> Vec<String> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .filter_map(|attr| match &attr.meta {
            syn::Meta::NameValue(syn::MetaNameValue {
                value:
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(lit),
                        ..
                    }),
                ..
            }) => Some(lit.value()),
            _ => None,
        })
        .flat_map(|doc| doc.lines().map(str::to_owned).collect::<Vec<_>>())
        .map(|line| line.strip_prefix(' ').map(str::to_owned).unwrap_or(line))
        .collect()
}

/// A name literal for generated code.
pub(crate) fn lit(value: &str, span: Span) -> LitStr {
    LitStr::new(value, span)
}
