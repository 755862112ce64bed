//! Arbitrary bytes as one frame (text where UTF-8, else binary) to a fresh live session over an
//! in-memory pipe: answered with an ERROR, REPLY or HEARTBEAT carrying the frame's ref, the
//! connection left open, never a panic or a hang.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sync_fuzz::live_frame(data);
});
