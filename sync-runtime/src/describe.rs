//! A description of a set of mutations: what `#[mutations]` generates, and what the TypeScript
//! writer reads.

use std::any::TypeId;
use std::collections::HashSet;

use ts_rs::{Config, TS, TypeVisitor};

/// A set of mutations, as `#[mutations]` describes the annotated type.
#[derive(Clone, Debug)]
pub struct Description {
    /// The Rust type the mutations belong to.
    pub type_name: &'static str,
    /// The mutations, in source order.
    pub mutations: Vec<MutationDescription>,
    /// The entity types named in `#[mutations(entities(...))]`.
    pub entities: Vec<EntityDescription>,
}

/// One mutation.
#[derive(Clone, Debug)]
pub struct MutationDescription {
    /// The name clients send, e.g. `"todo/create"`.
    pub name: &'static str,
    /// The Rust function.
    pub function: &'static str,
    /// The function's doc comment, one entry per line.
    pub docs: &'static [&'static str],
    /// The arguments, in order.
    pub args: Vec<ArgDescription>,
    /// The type of the value the mutation returns (`MutationResult.value`).
    pub returns: TypeRef,
}

/// One argument of a mutation.
#[derive(Clone, Debug)]
pub struct ArgDescription {
    /// The JSON field name.
    pub name: &'static str,
    /// Whether the field may be absent (an `Option` parameter).
    pub optional: bool,
    /// Its type.
    pub ty: TypeRef,
}

/// One entity type.
#[derive(Clone, Debug)]
pub struct EntityDescription {
    /// The entity's name in changes, e.g. `"todo"`.
    pub name: &'static str,
    /// Its type.
    pub ty: TypeRef,
}

/// A Rust type with a TypeScript form, through [`ts_rs::TS`].
#[derive(Clone, Copy)]
pub struct TypeRef {
    name: fn(&Config) -> String,
    collect: fn(&mut Declarations<'_>),
}

impl TypeRef {
    /// The TypeScript form of `T`.
    pub fn of<T: TS + 'static + ?Sized>() -> Self {
        TypeRef {
            name: T::name,
            collect: collect::<T>,
        }
    }

    /// The type as TypeScript names it, e.g. `string | null` or `Todo`.
    pub fn name(&self, config: &Config) -> String {
        (self.name)(config)
    }

    /// Adds the declarations this type needs (its own, and its dependencies').
    pub(crate) fn declare(&self, declarations: &mut Declarations<'_>) {
        (self.collect)(declarations);
    }
}

impl std::fmt::Debug for TypeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name(&Config::new()))
    }
}

/// The TypeScript declarations of user types, each once, in the order first met.
pub(crate) struct Declarations<'a> {
    config: &'a Config,
    /// Every type visited: a recursive type (`serde_json::Value` holds arrays of itself) would
    /// otherwise be visited for ever.
    visited: HashSet<TypeId>,
    /// The declared types, without their generics: `Frame<A>` and `Frame<B>` are one declaration.
    declared: HashSet<TypeId>,
    out: Vec<String>,
}

impl<'a> Declarations<'a> {
    pub(crate) fn new(config: &'a Config) -> Self {
        Declarations {
            config,
            visited: HashSet::new(),
            declared: HashSet::new(),
            out: Vec::new(),
        }
    }

    pub(crate) fn into_vec(self) -> Vec<String> {
        self.out
    }
}

/// Declares `T` if it is a declared type (a struct or enum deriving `TS`), then its
/// dependencies.
fn collect<T: TS + 'static + ?Sized>(declarations: &mut Declarations<'_>) {
    if !declarations.visited.insert(TypeId::of::<T>()) {
        return;
    }
    if T::output_path().is_some()
        && declarations
            .declared
            .insert(TypeId::of::<T::WithoutGenerics>())
    {
        let docs = T::docs().unwrap_or_default();
        declarations
            .out
            .push(format!("{docs}export {}", T::decl(declarations.config)));
    }
    // ts-rs visits a type's dependencies in an order that changes from build to build; in the
    // order of their Rust names, the module comes out the same every time.
    let mut dependencies = Dependencies::default();
    T::visit_dependencies(&mut dependencies);
    T::visit_generics(&mut dependencies);
    dependencies.0.sort_by_key(|(name, _)| *name);
    for (_, collect) in dependencies.0 {
        collect(declarations);
    }
}

/// [`collect`] for one type.
type Collect = fn(&mut Declarations<'_>);

/// The types a type depends on: each one's Rust name and its [`collect`].
#[derive(Default)]
struct Dependencies(Vec<(&'static str, Collect)>);

impl TypeVisitor for Dependencies {
    fn visit<T: TS + 'static + ?Sized>(&mut self) {
        self.0.push((std::any::type_name::<T>(), collect::<T>));
    }
}
