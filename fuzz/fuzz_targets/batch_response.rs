//! Fuzz the `$batch` response parser: first line `STATUS CONTENT-TYPE`, the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orderload_fuzz::check_batch_response;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = check_batch_response(data) {
        panic!("invariant violated: {violation}");
    }
});
