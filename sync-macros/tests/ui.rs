//! Compile errors of `#[mutations]` and `#[derive(Entity)]`, each on the offending tokens, and
//! expansions that must compile. `TRYBUILD=overwrite cargo test -p sync-macros --test ui`
//! regenerates the expected `.stderr` files; review the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
