//! Arbitrary bytes, where they are JSON, as the `args` of each todo mutation through
//! `Engine::push`: the `#[mutations]`-generated decoders answer every one with a result (applied,
//! or failed with a code), never a `SyncError` other than a validation error, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sync_fuzz::mutation_args(data);
});
