//! The models of the macros' inputs: a `#[mutations]` impl block with its mutation functions and
//! their parameters, and a `#[derive(Entity)]` type. Each keeps the syn nodes it came from, so
//! that `check` reports on the user's tokens and generated code carries their spans. Building a
//! model rejects nothing but attributes that cannot be read (`attr`); `check` does the rest.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Attribute, Data, DeriveInput, Fields, FnArg, GenericArgument, Ident, ImplItem, ImplItemFn,
    ItemImpl, LitStr, Pat, PatType, PathArguments, Receiver, ReturnType, Type,
};

use crate::attr::{Container, EntityAttr, MutationAttr};
use crate::ctxt::Ctxt;

/// The annotated impl block.
pub(crate) struct Mutations<'a> {
    pub(crate) attrs: Container,
    pub(crate) item: &'a ItemImpl,
    /// The type's name, e.g. `Todos`; `None` when the type is not a plain path.
    pub(crate) type_name: Option<&'a Ident>,
    pub(crate) functions: Vec<MutationFn<'a>>,
    /// `#[mutation]` attributes on items that are not functions.
    pub(crate) misplaced: Vec<&'a Attribute>,
}

/// One `#[mutation]` function.
pub(crate) struct MutationFn<'a> {
    pub(crate) function: &'a ImplItemFn,
    pub(crate) attr: MutationAttr<'a>,
    /// The mutation's name and where it came from (the literal, or the attribute).
    pub(crate) name: String,
    pub(crate) name_span: Span,
    /// `self`, `&self` or `&mut self`.
    pub(crate) receiver: Option<&'a Receiver>,
    /// The typed parameters, in order.
    pub(crate) inputs: Vec<Input<'a>>,
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

/// A typed parameter of a mutation function.
pub(crate) enum Input<'a> {
    /// `&mut Tx` (or `&mut path::to::Tx`).
    Tx(&'a PatType),
    /// `#[caller] user: &User` or `Option<&User>`: the request's identity, not an argument.
    Caller(CallerParam<'a>),
    /// Anything else: a field of the mutation's arguments.
    Arg(Arg<'a>),
}

/// A `#[caller]` parameter.
pub(crate) struct CallerParam<'a> {
    pub(crate) param: &'a PatType,
    pub(crate) attr: &'a Attribute,
    /// `T` of `&T` or `Option<&T>`; `None` for any other type (`check` reports it).
    pub(crate) identity: Option<&'a Type>,
    /// `Option<&T>`: the mutation also runs without a caller.
    pub(crate) optional: bool,
}

impl<'a> CallerParam<'a> {
    fn from_syn(param: &'a PatType, attr: &'a Attribute) -> CallerParam<'a> {
        let shared = |ty: &'a Type| match ty {
            Type::Reference(reference) if reference.mutability.is_none() => Some(&*reference.elem),
            _ => None,
        };
        let (identity, optional) = match last_segment_is(&param.ty, "Option")
            .map(type_args)
            .as_deref()
        {
            Some([inner]) => (shared(inner), true),
            _ => (shared(&param.ty), false),
        };
        CallerParam {
            param,
            attr,
            identity,
            optional,
        }
    }
}

/// The `#[caller]` attribute of a parameter.
pub(crate) fn caller_attr(param: &PatType) -> Option<&Attribute> {
    param
        .attrs
        .iter()
        .find(|attr| attr.path().is_ident("caller"))
}

/// A parameter that is a field of the mutation's arguments.
pub(crate) struct Arg<'a> {
    pub(crate) pat: &'a Pat,
    pub(crate) ty: &'a Type,
    /// `Option<T>`: the field may be absent.
    pub(crate) optional: bool,
}

impl<'a> Arg<'a> {
    /// The field's name: the parameter's, when it is a plain name (`check` rejects the rest).
    pub(crate) fn ident(&self) -> Option<&'a Ident> {
        match self.pat {
            Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => Some(&pat.ident),
            _ => None,
        }
    }
}

impl<'a> Mutations<'a> {
    pub(crate) fn from_syn(cx: &mut Ctxt, attrs: Container, item: &'a ItemImpl) -> Mutations<'a> {
        let type_name = match &*item.self_ty {
            Type::Path(path) if path.qself.is_none() => path.path.segments.last().map(|s| &s.ident),
            _ => None,
        };
        let mut functions = Vec::new();
        let mut misplaced = Vec::new();
        for impl_item in &item.items {
            let Some(attr) = MutationAttr::from_attrs(cx, item_attrs(impl_item)) else {
                continue;
            };
            match impl_item {
                ImplItem::Fn(function) => {
                    functions.push(MutationFn::from_syn(&attrs, type_name, attr, function));
                }
                _ => misplaced.push(attr.attr),
            }
        }
        Mutations {
            attrs,
            item,
            type_name,
            functions,
            misplaced,
        }
    }
}

impl<'a> MutationFn<'a> {
    fn from_syn(
        container: &Container,
        type_name: Option<&Ident>,
        attr: MutationAttr<'a>,
        function: &'a ImplItemFn,
    ) -> MutationFn<'a> {
        let sig = &function.sig;
        let (name, name_span) = match &attr.name {
            Some(lit) => (lit.value(), lit.span()),
            None => (
                derived_name(container, type_name, &sig.ident),
                attr.attr.span(),
            ),
        };
        let mut receiver = None;
        let mut inputs = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(r) => receiver = Some(r),
                FnArg::Typed(typed) if caller_attr(typed).is_some() => {
                    if let Some(attr) = caller_attr(typed) {
                        inputs.push(Input::Caller(CallerParam::from_syn(typed, attr)));
                    }
                }
                FnArg::Typed(typed) if is_tx(&typed.ty) => inputs.push(Input::Tx(typed)),
                FnArg::Typed(typed) => inputs.push(Input::Arg(Arg {
                    pat: &typed.pat,
                    ty: &typed.ty,
                    optional: is_option(&typed.ty),
                })),
            }
        }
        let (ok, error) = match &sig.output {
            ReturnType::Type(_, ty) => result_types(ty).unzip(),
            ReturnType::Default => (None, None),
        };
        let cfgs = function
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("cfg"))
            .collect();
        MutationFn {
            function,
            attr,
            name,
            name_span,
            receiver,
            inputs,
            ok,
            error,
            output: &sig.output,
            cfgs,
            docs: doc_lines(&function.attrs),
        }
    }

    /// The arguments with their field names.
    pub(crate) fn args(&self) -> impl Iterator<Item = (&'a Ident, &Arg<'a>)> {
        self.inputs.iter().filter_map(|input| match input {
            Input::Arg(arg) => Some((arg.ident()?, arg)),
            Input::Tx(_) | Input::Caller(_) => None,
        })
    }
}

/// A `#[derive(Entity)]` type.
pub(crate) struct Entity<'a> {
    pub(crate) attrs: EntityAttr,
    pub(crate) input: &'a DeriveInput,
    /// Whether it is a struct with named fields, the one shape an entity has.
    pub(crate) named_fields: bool,
    /// The id field's name: `#[entity(id = "...")]`, or `id`.
    pub(crate) id_name: String,
    /// The field of that name, if there is one.
    pub(crate) id_field: Option<&'a Ident>,
    /// `Entity::NAME`: `#[entity(name = "...")]`, or the type's name in snake_case.
    pub(crate) name: String,
}

impl<'a> Entity<'a> {
    pub(crate) fn from_syn(cx: &mut Ctxt, input: &'a DeriveInput) -> Entity<'a> {
        let attrs = EntityAttr::parse(cx, &input.attrs);
        let id_name = attrs
            .id
            .as_ref()
            .map_or_else(|| "id".to_owned(), LitStr::value);
        let fields = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(fields) => Some(&fields.named),
                _ => None,
            },
            _ => None,
        };
        let id_field = fields
            .into_iter()
            .flatten()
            .filter_map(|field| field.ident.as_ref())
            .find(|ident| ident.unraw() == id_name.as_str());
        let name = attrs.name.as_ref().map_or_else(
            || snake_case(&input.ident.unraw().to_string()),
            LitStr::value,
        );
        Entity {
            attrs,
            input,
            named_fields: fields.is_some(),
            id_name,
            id_field,
            name,
        }
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

/// `TodoItems` → `todo_items`.
fn snake_case(name: &str) -> String {
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
fn doc_lines(attrs: &[Attribute]) -> Vec<String> {
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
