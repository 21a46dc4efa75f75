//! The own HTTP/1.1 core's request framing against hyper's server, on the
//! same bytes (issue 19): where the own core accepts a request, hyper must
//! accept it too and read the same method, target, version, header lines
//! and body bytes; where hyper refuses, the own core must refuse. The own
//! core may refuse more, but only for the reasons SECURITY.md lists as its
//! deliberate strictness ("The forwarding core").
//!
//! And what the core forwards of a request it accepts and screens must be
//! exactly one request to the upstream, framed by the core (issue 39: a
//! `Connection` line listing `Content-Length` once made the body a second
//! request): the upstream head plus body, parsed as a server would, is
//! one request with the client's body and nothing after it.
#![no_main]
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use headgate::internals::net::h1::{self, Framing};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;

#[path = "common/differential.rs"]
mod differential;
use differential::Verdict;

/// A request as read: method, target, version, header lines (names
/// lower-cased, sorted: a `HeaderMap` groups by name), body.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Read {
    method: String,
    target: String,
    version: http::Version,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// The own core's refusals of a request head that are stricter than
/// hyper on purpose, as SECURITY.md lists them (the chunked reader's are
/// `differential`'s). hyper reads a request with both framing headers by
/// its `Transfer-Encoding` (RFC 9112 §6.3), and a `Content-Length` of more
/// than 19 digits whose value fits (leading zeros); the core refuses both.
const STRICTER: &[&str] = &[
    "repeated Content-Length",
    "malformed Content-Length",
    "Transfer-Encoding other than exactly `chunked`",
    "both Content-Length and Transfer-Encoding",
];

fn own(data: &[u8]) -> Verdict<Read> {
    let mut storage = h1::storage();
    let head = match h1::parse_request(data, &mut storage, 64 << 10) {
        Ok(Some(h)) => h,
        Ok(None) => return Verdict::Skip,
        Err(r) => return Verdict::Refused(r.reason),
    };
    // The raw head's in-place target check (`Spans::of`) and `http`'s
    // copy-and-check must never disagree.
    if head.target.starts_with('/') {
        assert_eq!(
            h1::target::is_valid(head.target),
            http::uri::PathAndQuery::try_from(head.target).is_ok(),
            "the in-place target check disagrees with http: {:?}",
            head.target
        );
    }
    let Some(parts) = h1::to_parts(data, &head) else {
        return Verdict::Refused("malformed request head");
    };
    forwarded_once(data, &head);
    let rest = &data[head.len..];
    let body = match head.framing {
        Framing::Empty => Vec::new(),
        Framing::Length(n) => match rest.get(..n as usize) {
            Some(b) if (n as usize) <= rest.len() => b.to_vec(),
            _ => return Verdict::Skip,
        },
        Framing::Chunked => match differential::dechunk(rest) {
            Ok(Some(body)) => body,
            Ok(None) => return Verdict::Skip,
            Err(why) => return Verdict::Refused(why),
        },
        Framing::UntilClose => return Verdict::Refused("until close on a request"),
    };
    Verdict::Accepted(read(&parts, body))
}

/// The one route the forwarding check writes for (no templates: the
/// client's own lines, `X-Forwarded-*` and the framing).
fn route() -> &'static headgate::internals::config::Route {
    static C: std::sync::OnceLock<headgate::internals::config::Config> = std::sync::OnceLock::new();
    let cfg = C.get_or_init(|| {
        let r = "upstream = \"http://127.0.0.1:1\"\ninbound_auth = \"none\"\n";
        headgate::internals::config::check_texts("", &[("r", r)]).expect("a valid route")
    });
    cfg.route("r").expect("route r")
}

/// When the core would forward this request (a body it frames by
/// length, a head `screen` passes), the bytes the upstream receives are
/// exactly one request carrying the client's body.
fn forwarded_once(data: &[u8], head: &h1::RequestHead<'_>) {
    let body_len = match head.framing {
        Framing::Empty => 0,
        Framing::Length(n) => n as usize,
        Framing::Chunked | Framing::UntilClose => return,
    };
    let rest = &data[head.len..];
    if head.minor == 0 || !head.target.starts_with('/') || rest.len() < body_len {
        return;
    }
    let Some(spans) = h1::Spans::of(data, head) else {
        return;
    };
    let raw = spans.view(data);
    if headgate::internals::proxy::screen(route(), &raw, head.target).is_err() {
        return;
    }
    let peer = headgate::internals::proxy::Peer::new("192.0.2.1:1".parse().unwrap(), false, false);
    let mut up = format!("{} /x HTTP/1.1\r\nhost: up\r\n", head.method).into_bytes();
    let mut lines = headgate::internals::proxy::RawLines { head: raw, out: &mut up };
    if headgate::internals::proxy::put_headers(&mut lines, route(), |_| Ok(()), &peer).is_err() {
        return;
    }
    up.extend_from_slice(b"\r\n");
    up.extend_from_slice(&rest[..body_len]);
    let mut storage = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut storage);
    let Ok(httparse::Status::Complete(n)) = req.parse(&up) else {
        panic!(
            "the upstream cannot parse the forwarded head: {:?}",
            String::from_utf8_lossy(&up)
        );
    };
    let framing: Vec<_> = (req.headers.iter())
        .filter(|h| {
            h.name.eq_ignore_ascii_case("content-length")
                || h.name.eq_ignore_ascii_case("transfer-encoding")
        })
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    let framed = match framing.as_slice() {
        [] => 0,
        [(name, v)] if name == "content-length" => std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.parse().ok())
            .expect("a length"),
        other => panic!("forwarded with framing {other:?}"),
    };
    assert_eq!(framed, body_len, "the upstream frames another body length");
    assert_eq!(
        up.len(),
        n + body_len,
        "bytes after the one forwarded request"
    );
}

fn read(parts: &http::request::Parts, body: Vec<u8>) -> Read {
    let headers = differential::lines(
        parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes())),
    );
    Read {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        version: parts.version,
        headers,
        body,
    }
}

/// hyper's server on the same bytes: the first request it hands to the
/// service, read whole, or nothing.
fn hyper_reads(data: &[u8]) -> Option<Read> {
    let seen: Arc<Mutex<Option<Read>>> = Arc::default();
    let data = data.to_vec();
    differential::run(async {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let seen2 = seen.clone();
        let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let seen = seen2.clone();
            async move {
                let (parts, body) = req.into_parts();
                if let Ok(b) = body.collect().await {
                    let mut s = seen.lock().unwrap();
                    if s.is_none() {
                        *s = Some(read(&parts, b.to_bytes().to_vec()));
                    }
                }
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
            }
        });
        // Half-close: the input ends with the client's write side shut,
        // which must not cancel the request it carries.
        let conn = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .max_buf_size(64 << 10)
            .serve_connection(TokioIo::new(server), svc);
        let feed = async move {
            let _ = client.write_all(&data).await;
            let _ = client.shutdown().await;
            // Drain what the server answers so it never blocks.
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut client, &mut sink).await;
        };
        let _ = tokio::join!(conn, feed);
        Some(())
    });
    seen.lock().unwrap().take()
}

fuzz_target!(|data: &[u8]| {
    differential::judge(data, own, hyper_reads, STRICTER);
});
