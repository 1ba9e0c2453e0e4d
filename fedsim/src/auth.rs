//! Site credentials: a random token per site, and the frame key derived from it.
//!
//! The token lives only in the site's own `.env`. The coordinator keeps the derived key, which is
//! all it needs for that site's handshake (the Noise pre-shared key) and cannot be turned back
//! into the token.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub type FrameKey = [u8; 32];

/// A fresh 256-bit token from the OS's random source, hex-encoded.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    hex::encode(bytes)
}

/// A fresh portal password: 128 random bits, hex-encoded.
pub fn new_password() -> String {
    new_token()[..32].to_string()
}

/// HMAC-SHA256(token, label): the pre-shared key of this site's encrypted connection.
pub fn frame_key(token: &str) -> FrameKey {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"fedsim frame key v1");
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_keys_depend_on_them() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(frame_key(&a), frame_key(&a));
        assert_ne!(frame_key(&a), frame_key(&b));
        assert!(!hex::encode(frame_key(&a)).contains(&a));
    }
}
