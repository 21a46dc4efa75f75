//! An arbitrary template rendered from arbitrary JSON variables: no panic,
//! no hang (loops and values run on a fixed budget), and whatever renders
//! is a valid header value.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[derive(arbitrary::Arbitrary, Debug)]
struct Input<'a> {
    template: &'a str,
    vars: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let Ok(t) = headgate::HeaderTemplate::compile(input.template) else {
        return;
    };
    let vars: serde_json::Value = match serde_json::from_slice(input.vars) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => {
            serde_json::json!({"call": {"metadata": {"token": String::from_utf8_lossy(input.vars)}}})
        }
    };
    if let Ok(v) = t.render(&vars) {
        assert!(
            v.as_bytes()
                .iter()
                .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
        );
        assert!(v.len() <= headgate::template::MAX_HEADER_VALUE_BYTES);
    }
    let _ = t.render_string(&vars);
    let _ = t.render_slow(&vars);
});
