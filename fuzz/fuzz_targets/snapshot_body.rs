//! Arbitrary bytes as the body of `POST /_sync/snapshot`: never 5xx, never a panic, and every
//! refusal the protocol's `{"error", "code"}` body.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    sync_fuzz::post_within_protocol(sync_fuzz::Endpoint::Snapshot, body);
});
