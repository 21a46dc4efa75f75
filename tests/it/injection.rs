//! Header injection, as a property: whatever a session variable, a decoding
//! filter (`url_decode`, `base64_decode`) or a request header echoed into a
//! template contains, no CR, LF, NUL or other control character ever comes
//! out of the phase that builds the upstream headers; a value that would
//! carry one is refused with `template.invalid_header_value`, never
//! stripped or passed on.

use base64::Engine;
use headgate::internals::config::check_texts;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use serde_json::json;

const ROUTE: &str = r#"upstream = "http://127.0.0.1:1"
inbound_auth = "none"
[headers]
x-var = { template = "<< call.v >>", on_error = "omit" }
x-b64 = { template = "<< call.b | base64_decode >>", on_error = "omit" }
x-url = { template = "<< call.u | url_decode >>", on_error = "omit" }
x-echo = { template = "<< request.headers.x-u | url_decode >>", on_error = "omit" }
x-liquid = { template = "a<% if call.v %><< call.v | append: '!' >><% endif %>", on_error = "omit" }
x-query = { template = "<< request.query.q >>", on_error = "omit" }
"#;

/// Text with, often, a control character somewhere in it.
fn hostile() -> impl Strategy<Value = String> {
    (
        "[ -~é✓]{0,24}",
        prop::option::of(prop::sample::select(vec![
            '\r', '\n', '\0', '\u{1}', '\u{1b}', '\u{7f}', '\u{b}', '\u{c}',
        ])),
        "[ -~]{0,8}",
    )
        .prop_map(|(a, c, b)| match c {
            Some(c) => format!("{a}{c}{b}"),
            None => format!("{a}{b}"),
        })
}

/// The oracle, written apart from the code under test: a field value may
/// carry HTAB but no other control character (RFC 9110 §5.5).
fn has_control(s: &[u8]) -> bool {
    s.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn no_control_character_reaches_the_wire(s in hostile()) {
        let cfg = check_texts("", &[("r", ROUTE)]).unwrap();
        let route = cfg.route("r").unwrap();
        let enc = utf8_percent_encode(&s, NON_ALPHANUMERIC).to_string();
        let req = http::Request::builder()
            .uri(format!("/r/x?q={enc}"))
            .header("x-call-id", "c1")
            .header("x-u", enc.as_str())
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let vars = headgate::internals::session::validate(
            json!({"call": {
                "v": s,
                "b": base64::engine::general_purpose::STANDARD.encode(s.as_bytes()),
                "u": enc,
            }}),
            1 << 20,
        )
        .unwrap();
        let mut failures = Vec::new();
        let req = headgate::internals::proxy::RequestView { head: &parts, rest: "/x", mcp: None, credentials: None };
        let out = headgate::internals::proxy::render_rules(route, &cfg.env, req, "c1", &vars, |rule, e| {
            failures.push((rule.name.to_string(), e.code()));
        })
        .unwrap();
        for (name, v) in &out {
            prop_assert!(
                !has_control(v.as_bytes()),
                "{name} carried a control character"
            );
        }
        // The forwarding core renders straight into the upstream head: the same
        // lines, after what the head already held, and nothing more.
        // With the session's kept values, the second request copies what
        // the first rendered: the same lines again.
        let at = (&*cfg.env, req, "c1", &vars);
        let renders = headgate::internals::session::Renders::default();
        let mut want = b"GET /x HTTP/1.1\r\n".to_vec();
        for (name, v) in &out {
            want.extend_from_slice(format!("{name}: ").as_bytes());
            want.extend_from_slice(v.as_bytes());
            want.extend_from_slice(b"\r\n");
        }
        for kept in [None, Some(&renders), Some(&renders)] {
            let mut head = b"GET /x HTTP/1.1\r\n".to_vec();
            headgate::internals::proxy::put_rules(route, at, kept, |_, _| {}, &mut head).unwrap();
            prop_assert_eq!(&head, &want);
        }
        if has_control(s.as_bytes()) {
            // Every rule that reads the hostile text was refused, for the
            // right reason (x-query reads it percent-decoded too).
            prop_assert_eq!(out.len(), 0, "{:?} got through", out);
            for (name, code) in &failures {
                prop_assert_eq!(*code, "template.invalid_header_value", "{}", name);
            }
        } else {
            prop_assert!(failures.is_empty(), "{:?}", failures);
        }
    }
}
