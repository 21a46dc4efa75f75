//! Arbitrary webhook bodies and signature headers: verification and payload
//! interpretation never panic, and nothing verifies without the secret.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[derive(arbitrary::Arbitrary, Debug)]
struct Input<'a> {
    body: &'a [u8],
    signature: &'a str,
    timestamp: &'a str,
    platform: u8,
}

fuzz_target!(|input: Input<'_>| {
    use headgate::internals::platform::{self as webhooks, Platform};
    let mut h = http::HeaderMap::new();
    for name in [
        "x-signature",
        "x-retell-signature",
        "elevenlabs-signature",
        "x-vapi-secret",
        "authorization",
    ] {
        if let Ok(v) = http::HeaderValue::from_str(input.signature) {
            h.insert(name, v);
        }
    }
    if let Ok(v) = http::HeaderValue::from_str(input.timestamp) {
        h.insert("x-timestamp", v);
    }
    let secret = headgate::internals::config::Secret::new("fuzz-secret-never-guessed-0123456789");
    let tol = std::time::Duration::from_secs(300);
    let now = 1_700_000_000.0;
    assert!(webhooks::verify_retell(&secret, &h, input.body, tol, now).is_none());
    assert!(webhooks::verify_elevenlabs(&secret, &h, input.body, tol, now).is_none());
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(input.body) {
        let platform = Platform::ALL[usize::from(input.platform) % Platform::ALL.len()];
        let _ = webhooks::interpret(platform, &v);
    }
});
