//! The attributes: `#[mutations(...)]` on the impl block, `#[mutation(...)]` on a function,
//! `#[entity(...)]` on an entity type. Reading them reports only what stops them being read (a
//! malformed attribute, an unknown or repeated key, a `crate` that is not a path); whether the
//! values make sense is for `check`.

use syn::meta::ParseNestedMeta;
use syn::punctuated::Punctuated;
use syn::{Attribute, LitStr, Path, Token, Type, parse_quote};

use crate::ctxt::Ctxt;

/// `#[mutations(crate = "...", namespace = "...", entities(A, B))]`.
#[derive(Default)]
pub(crate) struct Container {
    pub(crate) krate: RuntimeCrate,
    /// The first segment of the names a bare `#[mutation]` derives.
    pub(crate) namespace: Option<LitStr>,
    /// The entity types described to TypeScript.
    pub(crate) entities: Vec<Type>,
}

impl Container {
    pub(crate) fn parse(cx: &mut Ctxt, args: proc_macro2::TokenStream) -> Container {
        let mut container = Container::default();
        if args.is_empty() {
            return container;
        }
        let mut seen = Seen::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("crate") {
                seen.check(cx, &meta, "crate");
                container.krate.parse(cx, &meta)?;
            } else if meta.path.is_ident("namespace") {
                seen.check(cx, &meta, "namespace");
                container.namespace = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("entities") {
                seen.check(cx, &meta, "entities");
                let content;
                syn::parenthesized!(content in meta.input);
                let types = Punctuated::<Type, Token![,]>::parse_terminated(&content)?;
                container.entities.extend(types);
            } else {
                cx.error_spanned_by(
                    &meta.path,
                    format!(
                        "unknown `mutations` attribute `{}`; expected one of: `crate`, `namespace`, `entities`",
                        path_string(&meta.path)
                    ),
                );
                skip_value(&meta)?;
            }
            Ok(())
        });
        if let Err(error) = syn::parse::Parser::parse2(parser, args) {
            cx.syn_error(error);
            container.krate.reading_stopped();
        }
        container
    }
}

/// `#[mutation]`, `#[mutation("todo/create")]` or `#[mutation(name = "todo/create")]`.
pub(crate) struct MutationAttr<'a> {
    /// The attribute itself, for spans.
    pub(crate) attr: &'a Attribute,
    /// The explicit name, if any.
    pub(crate) name: Option<LitStr>,
}

impl<'a> MutationAttr<'a> {
    /// The `#[mutation]` attribute among an item's attributes, if any; a second one is an error
    /// on it, as a repeated key is.
    pub(crate) fn from_attrs(cx: &mut Ctxt, attrs: &'a [Attribute]) -> Option<MutationAttr<'a>> {
        let mut mutation_attrs = attrs.iter().filter(|attr| attr.path().is_ident("mutation"));
        let first = mutation_attrs.next()?;
        for extra in mutation_attrs {
            cx.error_spanned_by(extra, "duplicate `#[mutation]` attribute");
        }
        Some(MutationAttr::parse(cx, first))
    }

    fn parse(cx: &mut Ctxt, attr: &'a Attribute) -> MutationAttr<'a> {
        let mut parsed = MutationAttr { attr, name: None };
        let syn::Meta::List(list) = &attr.meta else {
            if let syn::Meta::NameValue(name_value) = &attr.meta {
                cx.error_spanned_by(
                    name_value,
                    "write `#[mutation(\"entity/action\")]` or `#[mutation(name = \"entity/action\")]`",
                );
            }
            return parsed;
        };
        if let Ok(lit) = list.parse_args::<LitStr>() {
            parsed.name = Some(lit);
            return parsed;
        }
        let mut seen = Seen::default();
        let result = list.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                seen.check(cx, &meta, "name");
                parsed.name = Some(meta.value()?.parse()?);
            } else {
                cx.error_spanned_by(
                    &meta.path,
                    format!(
                        "unknown `mutation` attribute `{}`; expected `name`",
                        path_string(&meta.path)
                    ),
                );
                skip_value(&meta)?;
            }
            Ok(())
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
        parsed
    }
}

/// `#[entity(name = "todo", id = "key", crate = "...")]`.
#[derive(Default)]
pub(crate) struct EntityAttr {
    pub(crate) name: Option<LitStr>,
    pub(crate) id: Option<LitStr>,
    pub(crate) krate: RuntimeCrate,
}

impl EntityAttr {
    pub(crate) fn parse(cx: &mut Ctxt, attrs: &[Attribute]) -> EntityAttr {
        let mut parsed = EntityAttr::default();
        let mut seen = Seen::default();
        for attr in attrs.iter().filter(|attr| attr.path().is_ident("entity")) {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    seen.check(cx, &meta, "name");
                    parsed.name = Some(meta.value()?.parse()?);
                } else if meta.path.is_ident("id") {
                    seen.check(cx, &meta, "id");
                    parsed.id = Some(meta.value()?.parse()?);
                } else if meta.path.is_ident("crate") {
                    seen.check(cx, &meta, "crate");
                    parsed.krate.parse(cx, &meta)?;
                } else {
                    cx.error_spanned_by(
                        &meta.path,
                        format!(
                            "unknown `entity` attribute `{}`; expected one of: `name`, `id`, `crate`",
                            path_string(&meta.path)
                        ),
                    );
                    skip_value(&meta)?;
                }
                Ok(())
            });
            if let Err(error) = result {
                cx.syn_error(error);
                parsed.krate.reading_stopped();
            }
        }
        parsed
    }
}

/// `crate = "..."`: where the generated code finds the runtime crate.
#[derive(Default)]
pub(crate) struct RuntimeCrate {
    /// The path given, when the runtime is renamed.
    given: Option<Path>,
    /// Whether the path is in doubt: `crate = "..."` was not a path, or a malformed attribute
    /// stopped the reading before any `crate` key was read.
    unknown: bool,
}

impl RuntimeCrate {
    fn parse(&mut self, cx: &mut Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        let lit: LitStr = meta.value()?.parse()?;
        match lit.parse_with(Path::parse_mod_style) {
            Ok(path) => self.given = Some(path),
            Err(_) => {
                self.unknown = true;
                cx.error_spanned_by(&lit, "expected a path, e.g. `::sync_runtime`");
            }
        }
        Ok(())
    }

    /// A malformed attribute ended the reading: a `crate` key may have gone unread.
    fn reading_stopped(&mut self) {
        self.unknown |= self.given.is_none();
    }

    /// The runtime crate's path: `::sync_runtime` unless `crate = "..."` says otherwise.
    pub(crate) fn path(&self) -> Path {
        self.given
            .clone()
            .unwrap_or_else(|| parse_quote!(::sync_runtime))
    }

    /// The path for the fallback, which emits nothing rather than name a crate that may not
    /// exist and so add an error of its own.
    pub(crate) fn known_path(&self) -> Option<Path> {
        (!self.unknown).then(|| self.path())
    }
}

/// Keys already given, to report duplicates.
#[derive(Default)]
struct Seen(Vec<&'static str>);

impl Seen {
    fn check(&mut self, cx: &mut Ctxt, meta: &ParseNestedMeta<'_>, key: &'static str) {
        if self.0.contains(&key) {
            cx.error_spanned_by(&meta.path, format!("duplicate attribute key `{key}`"));
        } else {
            self.0.push(key);
        }
    }
}

/// Consumes the value of an unknown key, `= value` or `(...)`, so that parsing goes on.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _content;
        syn::parenthesized!(_content in meta.input);
    }
    Ok(())
}

/// A path without generic arguments (an attribute key, a crate) as written, e.g.
/// `::sync_runtime`: its segments joined, not its tokens printed.
pub(crate) fn path_string(path: &Path) -> String {
    let segments: Vec<String> = path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect();
    let leading = if path.leading_colon.is_some() {
        "::"
    } else {
        ""
    };
    format!("{leading}{}", segments.join("::"))
}
