//! Any text as a scenario: parsing and validation must return an error, never panic (the
//! error's line and column come from byte spans, which must stay on character boundaries).
#![no_main]

use fedsim::scenario::Scenario;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = Scenario::parse(text, std::path::Path::new("fuzz.toml")) {
            let _ = e.to_string();
        }
    }
});
