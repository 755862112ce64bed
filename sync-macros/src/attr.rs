//! The attributes: `#[mutations(...)]` on the impl block, `#[mutation(...)]` on a function,
//! `#[entity(...)]` on an entity type.

use syn::meta::ParseNestedMeta;
use syn::punctuated::Punctuated;
use syn::{Attribute, LitStr, Path, Token, Type};

use crate::ctxt::Ctxt;

/// `#[mutations(crate = "...", namespace = "...", entities(A, B))]`.
#[derive(Default)]
pub(crate) struct Container {
    /// The path of the runtime crate, when renamed.
    pub(crate) krate: Option<Path>,
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
                let lit: LitStr = meta.value()?.parse()?;
                match lit.parse_with(Path::parse_mod_style) {
                    Ok(path) => container.krate = Some(path),
                    Err(_) => cx.error_spanned_by(&lit, "expected a path, e.g. `::sync_runtime`"),
                }
            } else if meta.path.is_ident("namespace") {
                seen.check(cx, &meta, "namespace");
                let lit: LitStr = meta.value()?.parse()?;
                if let Err(message) = check_name_segment("namespace", &lit.value()) {
                    cx.error_spanned_by(&lit, message);
                }
                container.namespace = Some(lit);
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
    pub(crate) fn parse(cx: &mut Ctxt, attr: &'a Attribute) -> MutationAttr<'a> {
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
    pub(crate) krate: Option<Path>,
}

impl EntityAttr {
    pub(crate) fn parse(cx: &mut Ctxt, attrs: &[Attribute]) -> EntityAttr {
        let mut parsed = EntityAttr::default();
        let mut seen = Seen::default();
        for attr in attrs.iter().filter(|attr| attr.path().is_ident("entity")) {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    seen.check(cx, &meta, "name");
                    let lit: LitStr = meta.value()?.parse()?;
                    if let Err(message) = check_name_segment("entity name", &lit.value()) {
                        cx.error_spanned_by(&lit, message);
                    }
                    parsed.name = Some(lit);
                } else if meta.path.is_ident("id") {
                    seen.check(cx, &meta, "id");
                    parsed.id = Some(meta.value()?.parse()?);
                } else if meta.path.is_ident("crate") {
                    seen.check(cx, &meta, "crate");
                    let lit: LitStr = meta.value()?.parse()?;
                    match lit.parse_with(Path::parse_mod_style) {
                        Ok(path) => parsed.krate = Some(path),
                        Err(_) => cx.error_spanned_by(&lit, "expected a path, e.g. `::sync_runtime`"),
                    }
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
            }
        }
        parsed
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

/// Checks one segment of a name, the `what` of the message (a namespace, an entity name):
/// letters, digits, `_`, `-` and `.`.
pub(crate) fn check_name_segment(what: &str, segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    match segment.chars().find(|c| !is_name_char(*c)) {
        Some(c) => Err(format!(
            "the {what} `{segment}` holds `{}`; use letters, digits, `_`, `-` and `.`",
            c.escape_default()
        )),
        None => Ok(()),
    }
}

/// Checks a whole mutation name: segments separated by `/`, e.g. `todo/create`.
pub(crate) fn check_mutation_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the mutation name is empty; name it, e.g. `\"todo/create\"`".to_owned());
    }
    let valid = name
        .split('/')
        .all(|segment| !segment.is_empty() && segment.chars().all(is_name_char));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid mutation name: use segments of letters, digits, `_`, `-` and `.` separated by `/`, e.g. `\"todo/create\"`"
        ))
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}
