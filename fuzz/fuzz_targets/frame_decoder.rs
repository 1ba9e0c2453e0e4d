//! Any bytes a peer may send as a frame body: the decoders must return an error, never panic.
//! The clear opening is the one frame an unauthenticated peer fully controls; a data frame is
//! split into Noise messages before decryption, and its sealed header and payload are parsed
//! after it, so each step is fuzzed alone.
#![no_main]

use fedsim::federation::frame::{decode_body, decode_opening, decode_plain};
use fedsim::federation::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_opening(data);
    if let Ok(messages) = decode_body(data) {
        assert!(messages.map(<[u8]>::len).sum::<usize>() == data.len() - 1);
    }
    if let Ok(payload) = decode_plain(data) {
        let _ = postcard::from_bytes::<Message>(payload);
    }
});
