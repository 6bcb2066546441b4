//! Fuzz the channel reader with the input as a whole export file (see `orderload_fuzz`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use orderload_fuzz::{check_channel_bytes, ChannelTarget};

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = check_channel_bytes(ChannelTarget::Woocommerce, data) {
        panic!("invariant violated: {violation}");
    }
});
