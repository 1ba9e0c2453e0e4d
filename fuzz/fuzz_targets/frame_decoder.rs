//! Any bytes a peer may send as a frame body: the decoders must return an error, never panic.
//! The clear first frame is the one an unauthenticated peer fully controls; a data frame's
//! payload is parsed only after it decrypts, so it is fuzzed as plain postcard.
#![no_main]

use fedsim::federation::frame::{decode_body, decode_opening};
use fedsim::federation::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_opening(data);
    let _ = decode_body(data);
    let _ = postcard::from_bytes::<Message>(data);
});
