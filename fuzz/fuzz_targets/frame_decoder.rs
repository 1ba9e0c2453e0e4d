//! Any bytes a peer may send as a frame body: the decoder must return an error, never panic.
#![no_main]

use fedsim::federation::frame::decode_body;
use fedsim::federation::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((payload, _tag)) = decode_body(data) {
        let _ = postcard::from_bytes::<Message>(payload);
    }
});
