//! Procedural macros of `sync-runtime`. Depend on `sync-runtime` and use them through its
//! re-exports; this crate's generated code names only `sync-runtime`'s paths.
//!
//! The `#[mutations]` attribute arrives with the macro issue; this crate is a placeholder so the
//! workspace layout is the final one from the start.
