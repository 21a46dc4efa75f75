//! Engine-level tests: the public API end to end.

use serde_json::json;

use super::*;

fn render(t: &str, vars: serde_json::Value) -> Result<String, TemplateError> {
    let t = HeaderTemplate::compile(t)?;
    let value = t.render(&vars);
    into_agrees(&t, &vars, &value);
    value.map(|v| v.to_str().unwrap_or("<non-ascii>").to_string())
}

/// `render_into` appends what `render` returns, after what `out` held,
/// and leaves `out` as it was when `render` fails.
fn into_agrees(
    t: &HeaderTemplate,
    vars: &serde_json::Value,
    value: &Result<http::HeaderValue, TemplateError>,
) {
    let mut out = b"authorization: ".to_vec();
    let into = t.render_into(vars, &mut out);
    match (value, into) {
        (Ok(v), Ok(())) => assert_eq!(&out[15..], v.as_bytes(), "render_into differs"),
        (Err(a), Err(b)) => {
            assert_eq!(a.code(), b.code());
            assert_eq!(out, b"authorization: ", "a failed render_into left bytes");
        }
        (a, b) => panic!("render {a:?} vs render_into {b:?}"),
    }
}

fn both(t: &str, vars: serde_json::Value) -> String {
    let c = HeaderTemplate::compile(t).unwrap();
    into_agrees(&c, &vars, &c.render(&vars));
    let fast = c.render(&vars).map(|v| v.as_bytes().to_vec());
    let slow = c.render_slow(&vars).map(|v| v.as_bytes().to_vec());
    match (&fast, &slow) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "fast and slow differ for {t}"),
        (Err(a), Err(b)) => assert_eq!(a.code(), b.code()),
        _ => panic!("fast {fast:?} vs slow {slow:?} for {t}"),
    }
    String::from_utf8(fast.unwrap()).unwrap()
}

fn vars() -> serde_json::Value {
    json!({"call": {"id": "c-1", "metadata": {"token": "tok-abc", "tenant": "acme", "plan": "pro", "n": 3, "f": 2.5, "nil": null}}})
}

#[test]
fn bearer_token_fast_path() {
    let t = HeaderTemplate::compile("Bearer << call.metadata.token >>").unwrap();
    assert!(t.is_fast_path());
    assert_eq!(t.render(&vars()).unwrap(), "Bearer tok-abc");
    assert_eq!(
        both("Bearer << call.metadata.token >>", vars()),
        "Bearer tok-abc"
    );
    assert_eq!(
        both(
            "<< call.metadata.n >>/<< call.metadata.f >>/<< call.metadata.nil >>x",
            vars()
        ),
        "3/2.5/x"
    );
}

#[test]
fn literal_braces_come_out_byte_for_byte() {
    for lit in [
        "{{ x }}",
        "{% if %}",
        "}}%}",
        "{",
        "a{",
        "{{{",
        "endraw",
        "{%- raw -%}",
    ] {
        assert_eq!(
            render(&format!("{lit}<< call.id >>{lit}"), vars()).unwrap(),
            format!("{lit}c-1{lit}")
        );
        assert_eq!(
            render(&format!("<% if true %>{lit}<% endif %>"), vars()).unwrap(),
            lit.trim()
        );
    }
}

#[test]
fn default_guards_undefined() {
    assert_eq!(
        render("<< call.metadata.missing | default: 'public' >>", vars()).unwrap(),
        "public"
    );
    assert_eq!(
        render("<< nope.deep.path | default: 'x' | upcase >>", vars()).unwrap(),
        "X"
    );
    assert_eq!(
        render(
            "<< call.metadata.tenant | default: 'public' | upcase >>",
            vars()
        )
        .unwrap(),
        "ACME"
    );
}

#[test]
fn unguarded_undefined_is_an_error_naming_the_path() {
    let e = render("Bearer << call.metadata.missing >>", vars()).unwrap_err();
    assert_eq!(e.code(), "template.undefined_variable");
    assert_eq!(e.path(), Some("call.metadata.missing"));
    assert_eq!((e.line(), e.column()), (1, 11));
    let e = render("x <% if true %><< call.nope | upcase >><% endif %>", vars()).unwrap_err();
    assert_eq!(e.code(), "template.undefined_variable");
    assert_eq!(e.path(), Some("call.nope"));
    // Filter arguments are strict too.
    let e = render("<< call.id | append: call.nope >>", vars()).unwrap_err();
    assert_eq!(e.path(), Some("call.nope"));
}

#[test]
fn if_is_lenient() {
    assert_eq!(
        render(
            "<% if call.metadata.plan == 'pro' %>pro<% else %>free<% endif %>",
            vars()
        )
        .unwrap(),
        "pro"
    );
    assert_eq!(
        render(
            "<% if call.x.y == 'pro' %>pro<% else %>free<% endif %>",
            vars()
        )
        .unwrap(),
        "free"
    );
    assert_eq!(
        render("<% unless call.x %>none<% endunless %>", vars()).unwrap(),
        "none"
    );
    // An undefined reference in a branch not taken is not an error.
    assert_eq!(
        render("<% if false %><< nope >><% endif %>ok", vars()).unwrap(),
        "ok"
    );
}

#[test]
fn tags_ops_use() {
    assert_eq!(
        render(
            "<% assign t = call.metadata.tenant | upcase %>T=<< t >>",
            vars()
        )
        .unwrap(),
        "T=ACME"
    );
    assert_eq!(
        render(
            "<% capture c %>x-<< call.id >><% endcapture %><< c >>",
            vars()
        )
        .unwrap(),
        "x-c-1"
    );
    assert_eq!(
        render(
            "<% case call.metadata.plan %><% when 'pro' %>P<% else %>F<% endcase %>",
            vars()
        )
        .unwrap(),
        "P"
    );
    assert_eq!(
        render("<% for i in (1..3) %><< i >><% endfor %>", vars()).unwrap(),
        "123"
    );
    assert_eq!(
        render("a <%- if true -%> b <%- endif -%> c", vars()).unwrap(),
        "abc"
    );
    assert_eq!(
        render("<% raw %><< x >><% endraw %>", vars()).unwrap(),
        "<< x >>"
    );
    assert_eq!(
        render("<% comment %><< nope >><% endcomment %>ok", vars()).unwrap(),
        "ok"
    );
}

#[test]
fn filters_follow_liquidjs() {
    assert_eq!(
        render("<< 'a b+c' | url_encode >>", vars()).unwrap(),
        "a+b%2Bc"
    );
    assert_eq!(render("<< 10 | divided_by: 4 >>", vars()).unwrap(), "2.5");
    assert_eq!(
        render("<< 'user:pass' | base64_encode >>", vars()).unwrap(),
        "dXNlcjpwYXNz"
    );
    assert_eq!(
        render("<< 'abc' | sha256 >>", vars()).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        render("<< call.metadata | json >>", vars()).unwrap(),
        r#"{"f":2.5,"n":3,"nil":null,"plan":"pro","tenant":"acme","token":"tok-abc"}"#
    );
    assert_eq!(
        render("<< 'msg' | hmac_sha256: 'key' >>", vars()).unwrap(),
        "2d93cbc1be167bcb1637a4a23cbff01a7878f0c50ee833954ea5221bb1b8c628"
    );
}

#[test]
fn unknown_filter_is_a_compile_error_with_position() {
    let e = HeaderTemplate::compile("Bearer\n  << call.id | bogus >>").unwrap_err();
    assert_eq!(e.code(), "template.unknown_filter");
    assert_eq!((e.line(), e.column()), (2, 16));
    let shown = e.display_with_source();
    assert!(
        shown.ends_with("  << call.id | bogus >>\n                 ^"),
        "{shown}"
    );
    assert!(HeaderTemplate::compile("<< x | hg_out >>").is_err());
}

#[test]
fn huge_integer_literals_are_refused_not_a_panic() {
    // Found by fuzzing: the `liquid` crate panics on these.
    for t in [
        "<< 33333333333333333333333333 >>",
        "<% if a == 99999999999999999999 %>x<% endif %>",
        "<< a | plus: -99999999999999999999 >>",
    ] {
        assert_eq!(
            HeaderTemplate::compile(t).unwrap_err().code(),
            "template.syntax",
            "{t}"
        );
    }
    assert!(HeaderTemplate::compile("<< 9223372036854775807 >>").is_ok());
}

#[test]
fn cycle_needs_a_value_after_its_group() {
    // Found by fuzzing: liquid-lib accepts `cycle g:` with no values and
    // divides by zero when it renders.
    for t in [
        "<% cycle a: %>",
        "<% cycle 'g': -%>",
        "<%- cycle 1 : %>x",
        "<% cycle 'g': , 'a' %>",
        "<% cycle %>",
    ] {
        let e = HeaderTemplate::compile(t).unwrap_err();
        assert_eq!(e.code(), "template.syntax", "{t}");
        assert_eq!(e.line(), 1, "{t}");
    }
    assert_eq!(
        HeaderTemplate::compile("<% cycle 'x', call.id | upcase %>")
            .unwrap_err()
            .code(),
        "template.syntax"
    );
    // The forms liquid renders still compile and cycle.
    assert_eq!(
        render(
            "<% for i in (1..3) %><% cycle 'g': 'a', call.id %><% endfor %>",
            vars()
        )
        .unwrap(),
        "ac-1a"
    );
    assert_eq!(
        render("<% cycle 'x', 'y' %><% cycle 'x', 'y' %>", vars()).unwrap(),
        "xy"
    );
    assert_eq!(render("<% cycle 'g': 'a', %>", vars()).unwrap(), "a");
}

#[test]
fn unsupported_tags_and_unbalanced_blocks() {
    assert_eq!(
        HeaderTemplate::compile("<% include 'x' %>")
            .unwrap_err()
            .code(),
        "template.unknown_tag"
    );
    assert_eq!(
        HeaderTemplate::compile("<% if a %>").unwrap_err().code(),
        "template.syntax"
    );
    assert_eq!(
        HeaderTemplate::compile("<% endif %>").unwrap_err().code(),
        "template.syntax"
    );
    assert_eq!(
        HeaderTemplate::compile("<% else %>").unwrap_err().code(),
        "template.syntax"
    );
    let deep = "<% if a %>".repeat(40) + &"<% endif %>".repeat(40);
    assert_eq!(
        HeaderTemplate::compile(&deep).unwrap_err().code(),
        "template.too_deep"
    );
    let big = "x".repeat(70_000);
    assert_eq!(
        HeaderTemplate::compile(&big).unwrap_err().code(),
        "template.too_large"
    );
}

#[test]
fn hostile_templates_run_out_of_fuel_instead_of_hanging() {
    let v = json!({"n": 100000000, "s": "x"});
    for (t, want) in [
        // Literal bounds over the limit can never render: refused when
        // compiled, so `headgate check` reports it.
        (
            "<% for i in (1..100000000) %><% endfor %>",
            "template.too_large",
        ),
        (
            "<% for i in (1..n) %><% endfor %>",
            "template.render_failed",
        ),
        (
            "<% for i in (1..5000) %><% for j in (1..5000) %><% endfor %><% endfor %>",
            "template.render_failed",
        ),
        (
            "<% assign a = s %><% for i in (1..40) %><% assign a = a | append: a %><% endfor %><< a | size >>",
            "template.render_failed",
        ),
        (
            "<% for i in (1..9000) %>xxxxxxxxxx<% endfor %>",
            "template.render_failed",
        ),
        // Each step within every cap, the whole an unbounded amount of
        // work (22.8 s in the console before the work budget).
        (
            "<% assign b = s | append: 'a' %><% for i in (1..17) %><% assign b = b | append: b %><% endfor %>\
<% for i in (1..3000) %><% assign c = b | replace: 'a', 'b' %><% endfor %>",
            "template.render_failed",
        ),
    ] {
        let e = render(t, v.clone()).unwrap_err();
        assert_eq!(e.code(), want, "{t}");
    }
    assert_eq!(
        HeaderTemplate::compile("<< (1..5) | join >>")
            .unwrap_err()
            .code(),
        "template.syntax"
    );
    assert_eq!(
        render("<% for i in (1..3) %><< i >><% endfor %>", v).unwrap(),
        "123"
    );
}

#[test]
fn header_values_are_validated_never_stripped() {
    let v = json!({"a": "x\r\nInjected: 1", "b": "  padded\t", "c": "nul\u{0}", "big": "y".repeat(9000)});
    for t in [
        "<< a >>",
        "<< c >>",
        "<< a | upcase >>",
        "<< big >>",
        "<< 'a%0Ab' | url_decode >>",
    ] {
        let e = render(t, v.clone()).unwrap_err();
        assert_eq!(e.code(), "template.invalid_header_value", "{t}");
        assert!(!e.to_string().contains("Injected"));
    }
    assert_eq!(render("<< b >>", v).unwrap(), "padded");
}

#[test]
fn errors_never_quote_values() {
    let v = json!({"secret": "s3cr3t-value"});
    for t in [
        "<< secret | base64_decode >>",
        "<< secret | url_decode | append: nope >>",
    ] {
        let e = render(t, v.clone()).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("s3cr3t"), "{e}");
    }
}

#[test]
fn reserved_roots_render() {
    let v = json!({"session": {"id": "sess-1"}, "request": {"headers": {"x-a": "b"}}, "env": {"K": "v"}});
    assert_eq!(
        both(
            "<< session.id >>|<< request.headers['x-a'] >>|<< env.K >>",
            v
        ),
        "sess-1|b|v"
    );
}

mod fast_path_equivalence {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::*;

    const NAMES: &[&str] = &["a", "b", "call", "tok"];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            "[ -~éü👋{}%<>\\t]{0,12}".prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e9f64..1e9).prop_map(Value::from),
            prop_oneof![Just(1e21), Just(1.5e-7), Just(0.1), Just(-0.0), Just(3.0)]
                .prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map(prop::sample::select(NAMES), inner, 0..4).prop_map(
                    |m| {
                        Value::Object(
                            m.into_iter()
                                .map(|(k, v)| (k.to_string(), v))
                                .collect::<Map<_, _>>(),
                        )
                    }
                ),
            ]
        })
    }

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            // Literal text, braces included, never a delimiter.
            "[ a-z{}%>#:\\-]{0,8}".prop_map(|s| s.replace('<', "")),
            (
                prop::collection::vec(prop::sample::select(NAMES), 1..4),
                any::<bool>(),
                any::<bool>()
            )
                .prop_map(|(path, tl, tr)| format!(
                    "<<{} {} {}>>",
                    if tl { "-" } else { "" },
                    path.join("."),
                    if tr { "-" } else { "" }
                )),
        ]
    }

    proptest! {
        #[test]
        fn fast_and_liquid_paths_agree(
            pieces in prop::collection::vec(piece(), 1..6),
            vars in prop::collection::btree_map(prop::sample::select(NAMES), json(), 0..4),
        ) {
            let src: String = pieces.concat();
            let t = HeaderTemplate::compile(&src).unwrap();
            prop_assert!(t.is_fast_path(), "{src} should take the fast path");
            let vars = Value::Object(vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
            let fast = t.render_string(&vars);
            let slow = t.render_slow(&vars);
            let fast_h = t.render(&vars);
            match (&fast_h, &slow) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a.as_bytes(), b.as_bytes(), "{}", src),
                (Err(a), Err(b)) => prop_assert_eq!(a.code(), b.code(), "{}", src),
                _ => prop_assert!(false, "{src}: fast {fast_h:?} vs liquid {slow:?}"),
            }
            if let (Ok(text), Ok(h)) = (&fast, &fast_h) {
                prop_assert_eq!(text.trim_matches([' ', '\t']).as_bytes(), h.as_bytes());
            }
        }
    }
}

#[test]
fn each_compile_has_its_own_id() {
    // A value kept under a template's id must never be found by another
    // template, the same text compiled again (a reload) included.
    let a = HeaderTemplate::compile("Bearer << call.token >>").unwrap();
    let b = HeaderTemplate::compile("Bearer << call.token >>").unwrap();
    assert_ne!(a.id(), b.id());
    assert_eq!(a.clone().id(), a.id(), "a clone is the same template");
}
