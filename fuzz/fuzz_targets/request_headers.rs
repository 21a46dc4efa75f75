//! Session-key extraction and header building for arbitrary requests: an
//! arbitrary method, path, query, headers, body and session variables go
//! through the routes' key sources and header rules (templates that echo
//! request headers, decode with `url_decode` / `base64_decode`, read the
//! query and the body). No panic, no hang, and nothing rendered carries a
//! control character (CR, LF, NUL, …) or exceeds the header size limit.
//! Headers may repeat: a second `Host` or a repeated session-key header
//! must be refused, never resolved to one of its values. The same request
//! written as bytes and read as the own core's raw head must screen, key
//! and render exactly as its `http::request::Parts` do.
#![no_main]
use std::sync::OnceLock;

use headgate::internals::config::{Config, check_texts};
use libfuzzer_sys::fuzz_target;

const ROUTES: &[(&str, &str)] = &[
    (
        "hdr",
        r#"upstream = "http://127.0.0.1:1"
inbound_auth = "none"
[headers]
authorization = "Bearer << call.metadata.token >>"
x-echo = { template = "<< request.headers.x-extra >>", on_error = "omit" }
x-dec = { template = "<< request.headers.x-enc | url_decode >>", on_error = "omit" }
x-b64 = { template = "<< call.metadata.blob | base64_decode >>", on_error = "omit" }
x-sid = "<< session.id >>"
"#,
    ),
    (
        "qry",
        r#"upstream = "http://127.0.0.1:1"
inbound_auth = "none"
session_keys = ["query:sid", "path:1", "header:x-session-id"]
[headers]
x-path = "<< request.path >>|<< request.query.q | url_decode >>|<< request.method >>"
x-user = "<% if call.user %><< call.user | join: ',' >><% else %>none<% endif %>"
"#,
    ),
    (
        "body",
        r#"upstream = "http://127.0.0.1:1"
inbound_auth = "none"
session_keys = ["body:/call/call_id", "body:/n"]
[headers]
x-call = "<< call.metadata.token | default: session.id | url_encode >>"
"#,
    ),
];

fn config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| check_texts("", ROUTES).expect("the fuzz routes are valid"))
}

#[derive(arbitrary::Arbitrary, Debug)]
struct Input<'a> {
    route: u8,
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: Vec<(&'a str, &'a [u8])>,
    body: &'a [u8],
    vars: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let cfg = config();
    let (name, _) = ROUTES[input.route as usize % ROUTES.len()];
    let Some(route) = cfg.route(name) else { return };
    let uri = format!("/{name}{}?{}", input.path, input.query);
    let mut req = http::Request::builder()
        .method(http::Method::from_bytes(input.method.as_bytes()).unwrap_or(http::Method::POST))
        .uri(uri.as_str());
    for (k, v) in &input.headers {
        // What a server would not accept from the wire never gets here.
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_bytes(v),
        ) {
            req = req.header(k, v);
        }
    }
    let Ok(req) = req.body(()) else { return };
    let (parts, ()) = req.into_parts();
    let wire = wire(&parts, &input.headers);
    let rest = parts
        .uri
        .path()
        .strip_prefix(&format!("/{name}"))
        .unwrap_or("");
    // Ambiguity is refused before anything is chosen: two `Host`s, or two
    // values of any header the route takes its key from.
    let screened = headgate::internals::proxy::screen(route, &parts, rest);
    let mut storage = headgate::internals::net::h1::storage();
    let raw = wire.as_deref().and_then(|w| {
        let head = headgate::internals::net::h1::parse_request(w, &mut storage, 1 << 20).ok()??;
        headgate::internals::net::h1::Spans::of(w, &head)
    });
    let raw = raw.as_ref().zip(wire.as_deref()).map(|(s, w)| s.view(w));
    if let Some(raw) = &raw {
        assert_eq!(
            code(&screened),
            code(&headgate::internals::proxy::screen(route, raw, rest))
        );
    }
    if parts.headers.get_all(http::header::HOST).iter().count() > 1 {
        assert!(screened.is_err(), "two Host headers were accepted");
    }
    // Framing is never hop-by-hop: a `Connection` line that lists it is
    // refused before anything is forwarded.
    let lists_framing = (parts.headers.get_all(http::header::CONNECTION).iter())
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|t| {
            let t = t.trim_ascii();
            ["content-length", "transfer-encoding", "host"]
                .iter()
                .any(|n| t.eq_ignore_ascii_case(n.as_bytes()))
        });
    if lists_framing {
        assert!(
            screened.is_err(),
            "a Connection line listing framing was accepted"
        );
    }
    let twice = route.session_keys.iter().any(|k| match k {
        headgate::internals::config::KeySource::Header(h) => parts.headers.get_all(h).iter().count() > 1,
        _ => false,
    });
    let body: Option<serde_json::Value> = serde_json::from_slice(input.body).ok();
    let found = headgate::internals::proxy::session_key(route, &parts, rest, body.as_ref());
    if let Some(raw) = &raw {
        let by_raw = headgate::internals::proxy::session_key(route, raw, rest, body.as_ref());
        assert_eq!(
            code(&found),
            code(&by_raw),
            "the raw head found another key"
        );
    }
    if twice {
        assert!(found.is_err(), "a repeated session-key header was accepted");
    }
    let Ok(key) = found else {
        return;
    };
    assert!(route.session_key_pattern.is_match(&key));
    let vars = match serde_json::from_slice(input.vars)
        .ok()
        .and_then(|v| headgate::internals::session::validate(v, 64 << 10).ok())
    {
        Some(v) => v,
        None => headgate::Vars::from_json(serde_json::json!({
            "call": {"metadata": {"token": String::from_utf8_lossy(input.vars), "blob": "QUJD"}}
        }))
        .expect("an object"),
    };
    // The MCP view of the body prefix, as the proxy builds it.
    let mcp = headgate::internals::mcp::view(&parts.headers, Some(input.body)).ok();
    let request = headgate::internals::proxy::RequestView {
        head: &parts,
        rest,
        mcp: mcp.as_ref(),
        credentials: None,
    };
    let rendered = headgate::internals::proxy::render_rules(route, &cfg.env, request, &key, &vars, |_, _| {});
    if let Some(raw) = &raw {
        let request = headgate::internals::proxy::RequestView {
            head: raw,
            ..request
        };
        let by_raw =
            headgate::internals::proxy::render_rules(route, &cfg.env, request, &key, &vars, |_, _| {});
        assert_eq!(
            code(&rendered),
            code(&by_raw),
            "the raw head rendered otherwise"
        );
    }
    let Ok(out) = rendered else {
        return;
    };
    for (_, v) in out {
        assert!(
            v.as_bytes()
                .iter()
                .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)),
            "a control character reached a header value"
        );
        assert!(v.len() <= headgate::template::MAX_HEADER_VALUE_BYTES);
    }
});

/// The request as a client writes it, names in the case the input gave;
/// `None` when the wire could not say the same (a value with whitespace
/// at its ends, which a parser trims).
fn wire(parts: &http::request::Parts, headers: &[(&str, &[u8])]) -> Option<Vec<u8>> {
    let pq = parts.uri.path_and_query()?.as_str();
    let mut w = format!("{} {pq} HTTP/1.1\r\n", parts.method).into_bytes();
    for (k, v) in headers {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::HeaderValue::from_bytes(v).is_err()
        {
            continue;
        }
        if matches!(v.first(), Some(b' ' | b'\t')) || matches!(v.last(), Some(b' ' | b'\t')) {
            return None;
        }
        w.extend_from_slice(k.as_bytes());
        w.extend_from_slice(b": ");
        w.extend_from_slice(v);
        w.extend_from_slice(b"\r\n");
    }
    w.extend_from_slice(b"\r\n");
    Some(w)
}

/// A phase's outcome, its error by code.
fn code<T: Clone>(r: &Result<T, headgate::internals::proxy::error::ProxyError>) -> Result<T, &'static str> {
    r.as_ref().map_err(|e| e.code()).cloned()
}
