//! Checks that span several functions.

use std::collections::HashMap;

use crate::ast::Mutations;
use crate::ctxt::Ctxt;

/// Every mutation name is used once.
pub(crate) fn check(cx: &mut Ctxt, mutations: &Mutations<'_>) {
    let mut first_use: HashMap<&str, &syn::Ident> = HashMap::new();
    for function in &mutations.functions {
        let ident = &function.function.sig.ident;
        if let Some(earlier) = first_use.insert(&function.name, ident) {
            cx.syn_error(syn::Error::new(
                function.name_span,
                format!(
                    "duplicate mutation name `{}`: `{earlier}` has it already",
                    function.name
                ),
            ));
        }
    }
}
