//! Arbitrary text through the compiler: no panic, no hang (size and nesting
//! are capped at compile time).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        if let Ok(t) = headgate::HeaderTemplate::compile(src) {
            let _ = t.render(&serde_json::json!({}));
        }
    }
});
