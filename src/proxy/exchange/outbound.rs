//! The outbound phase: the request the upstream receives. Its URI (the
//! upstream's base plus the rest of the path and the query), the client's
//! headers less hop-by-hop, `Host`, the caller's credentials and the
//! route's `strip` list, and the `X-Forwarded-*` headers.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::Authority;
use http::{Request, Uri, Version};

use super::error::ProxyError;
use crate::config::{InboundAuth, Route};
use crate::net::h1::{RawHead, put_content_length, put_header};
use crate::net::head::Head as _;
use crate::net::headers::{
    HOP_BY_HOP, NameSet, is_hop_by_hop, length_bit, name_is, strip_hop_by_hop,
};
use crate::net::response::Body;

/// The client end of a connection, formatted once per connection rather
/// than per request.
pub struct Peer {
    /// Its IP as an `X-Forwarded-For` element.
    ip: HeaderValue,
    /// Its IP as a `Forwarded` node (`for=192.0.2.7`, `for="[2001:db8::1]"`).
    node: HeaderValue,
    /// Whether it is one of `trusted_proxies`, whose `X-Forwarded-For` is
    /// appended to rather than replaced.
    trusted: bool,
    /// Whether it came over TLS (`X-Forwarded-Proto: https`).
    tls: bool,
}

impl Peer {
    /// `X-Forwarded-Proto`.
    fn proto(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// For a connection from `remote` (over TLS when `tls`).
    pub fn new(remote: SocketAddr, trusted: bool, tls: bool) -> Self {
        let ip = HeaderValue::from_str(&remote.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        let node = match remote.ip() {
            std::net::IpAddr::V4(v4) => format!("for={v4}"),
            std::net::IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
        };
        let node = HeaderValue::from_str(&node)
            .unwrap_or_else(|_| HeaderValue::from_static("for=unknown"));
        Self {
            ip,
            node,
            trusted,
            tls,
        }
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Writes the `Forwarded` value (RFC 7239): this hop's element (the
/// peer, the scheme it came by, the `Host` it asked for, quoted: a port's
/// `:` is no token) after what a trusted proxy sent, or alone (anyone
/// else could write any address there), as `X-Forwarded-For` is.
fn put_forwarded(out: &mut Vec<u8>, prev: Option<&[u8]>, peer: &Peer, host: Option<&[u8]>) {
    if let Some(prev) = prev.filter(|_| peer.trusted) {
        out.extend_from_slice(prev);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(peer.node.as_bytes());
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(peer.proto().as_bytes());
    // A host with a quote or backslash is not one `Host` allows.
    if let Some(h) = host.filter(|h| !h.iter().any(|b| matches!(b, b'"' | b'\\'))) {
        out.extend_from_slice(b";host=\"");
        out.extend_from_slice(h);
        out.push(b'"');
    }
}

/// Where a route's requests go: cleartext upstreams through the direct
/// pool (by authority, origin-form URI), the rest through the general
/// client (absolute URI).
pub(super) fn direct_authority(route: &Route) -> Option<&Authority> {
    (route.upstream.scheme() == Some(&http::uri::Scheme::HTTP))
        .then(|| route.upstream.authority())
        .flatten()
}

/// Upstream base + the rest of the path + the query.
pub(super) fn upstream_uri(
    base: &Uri,
    rest: &str,
    query: Option<&str>,
    absolute: bool,
) -> Option<Uri> {
    let mut pq = Vec::with_capacity(base.path().len() + rest.len() + 32);
    put_path_and_query(&mut pq, base, rest, query);
    if !absolute {
        return Uri::try_from(pq).ok();
    }
    Uri::builder()
        .scheme(base.scheme()?.clone())
        .authority(base.authority()?.clone())
        .path_and_query(pq)
        .build()
        .ok()
}

/// Writes the upstream request's path and query: the upstream's base
/// path, the rest of the client's path, then the base's query and the
/// client's, joined with `&`.
pub(crate) fn put_path_and_query(out: &mut Vec<u8>, base: &Uri, rest: &str, query: Option<&str>) {
    let start = out.len();
    out.extend_from_slice(base.path().trim_end_matches('/').as_bytes());
    out.extend_from_slice(rest.as_bytes());
    if out.len() == start {
        out.push(b'/');
    }
    let mut sep = b'?';
    for q in [base.query(), query].into_iter().flatten() {
        out.push(sep);
        out.extend_from_slice(q.as_bytes());
        sep = b'&';
    }
}

/// The client's headers as the upstream may see them: hop-by-hop headers,
/// `Host`, the caller's route key or request signature and the route's
/// `strip` list removed. Returns the original host for `X-Forwarded-Host`.
pub(super) fn rewrite_headers(
    headers: &mut HeaderMap,
    uri: &Uri,
    route: &Route,
) -> Option<HeaderValue> {
    let original_host = headers.get(header::HOST).cloned().or_else(|| {
        uri.authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    match &route.inbound_auth {
        InboundAuth::None => {}
        InboundAuth::Header { header, .. } => {
            headers.remove(header);
        }
        InboundAuth::Platform { platform, .. } => {
            if let Some(sig) = platform.request_signature() {
                headers.remove(sig);
            }
        }
    }
    for h in &route.strip {
        headers.remove(h);
    }
    if route.limits_tools() {
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    original_host
}

/// `X-Forwarded-For`: the peer appended to what a trusted proxy sent, or
/// alone (anyone else could write any address there); sets
/// `X-Forwarded-Proto` and `X-Forwarded-Host`.
pub(super) fn forwarded_headers(h: &mut HeaderMap, peer: &Peer, host: Option<HeaderValue>) {
    let from_trusted = h.get(&X_FORWARDED_FOR).filter(|_| peer.trusted);
    let xff = match from_trusted {
        None => Some(peer.ip.clone()),
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + peer.ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(peer.ip.as_bytes());
            HeaderValue::from_bytes(&v).ok()
        }
    };
    if let Some(v) = xff {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
    h.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(peer.proto()),
    );
    let prev = h.get(header::FORWARDED).map(HeaderValue::as_bytes);
    let mut fwd = Vec::with_capacity(64);
    put_forwarded(
        &mut fwd,
        prev,
        peer,
        host.as_ref().map(HeaderValue::as_bytes),
    );
    match HeaderValue::from_bytes(&fwd) {
        Ok(v) => h.insert(header::FORWARDED, v),
        Err(_) => h.remove(header::FORWARDED),
    };
    // Never the client's own: without a `Host`, there is none.
    match host {
        Some(host) => h.insert(X_FORWARDED_HOST.clone(), host),
        None => h.remove(&X_FORWARDED_HOST),
    };
}

/// The header lines of the upstream request for a raw head, written
/// straight from the buffer: the client's lines the upstream may see, the
/// rendered lines (`render` writes them), `X-Forwarded-*` and the body's
/// framing. The framing is always the proxy's own: one `Content-Length`
/// line with the length the core framed the body by, whatever the
/// client's lines or its `Connection` list said (hyper's rule: what is
/// forwarded is framed by us). The same
/// headers as [`rewrite_headers`], [`inject::set`](super::inject) and
/// [`forwarded_headers`] leave in a `HeaderMap` (a test compares them).
pub fn put_raw_headers(
    out: &mut Vec<u8>,
    head: &RawHead<'_>,
    route: &Route,
    render: impl FnOnce(&mut Vec<u8>) -> Result<(), ProxyError>,
    peer: &Peer,
) -> Result<(), ProxyError> {
    // Most requests have no `Connection` line: then no line's check scans
    // the head for one again, and a line of a length no name left out
    // has is copied on one test.
    let connection = head.has_connection();
    let asked = match connection {
        true => u64::MAX,
        false => left_out_lengths(route),
    };
    // The client's `X-Forwarded-For` and `Host`, found on the way: both
    // are among the names left out.
    let (mut xff, mut host, mut fwd) = (None, None, None);
    for f in head.fields() {
        if asked & length_bit(f.name.len()) != 0 {
            let listed = connection.then(|| head.values("connection"));
            if left_out(route, f.name, listed.into_iter().flatten()) {
                if name_is(f.name, X_FORWARDED_FOR.as_str()) {
                    xff = xff.or(Some(f.value));
                } else if name_is(f.name, header::HOST.as_str()) {
                    host = host.or(Some(f.value));
                } else if name_is(f.name, header::FORWARDED.as_str()) {
                    fwd = fwd.or(Some(f.value));
                }
                continue;
            }
        }
        out.extend_from_slice(f.line);
        out.extend_from_slice(b"\r\n");
    }
    render(out)?;
    if route.limits_tools() {
        out.extend_from_slice(b"accept-encoding: identity\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prev) = xff.filter(|_| peer.trusted) {
        out.extend_from_slice(prev);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(peer.ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    put_header(
        out,
        X_FORWARDED_PROTO.as_str().as_bytes(),
        peer.proto().as_bytes(),
    );
    out.extend_from_slice(b"forwarded: ");
    put_forwarded(out, fwd, peer, host);
    out.extend_from_slice(b"\r\n");
    if let Some(host) = host {
        put_header(out, X_FORWARDED_HOST.as_str().as_bytes(), host);
    }
    if let Some(n) = head.declared().length {
        put_content_length(out, n);
    }
    Ok(())
}

/// The lengths of the names [`left_out`] leaves out whatever the
/// `Connection` line lists, as [`length_bit`]s.
fn left_out_lengths(route: &Route) -> u64 {
    route.own_header_lengths | REPLACED.lengths() | HOP_BY_HOP.lengths()
}

/// The client's lines the proxy writes itself.
const REPLACED: NameSet = NameSet::new(&[
    "host",
    "content-length",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
]);

/// Whether a client header line named `name` is left out of the upstream
/// request: the names the `HeaderMap` path removes or replaces.
/// `listed`: the values of the request's `Connection` lines.
fn left_out<'a>(route: &Route, name: &[u8], listed: impl Iterator<Item = &'a [u8]>) -> bool {
    REPLACED.contains(name)
        || route.own_header_names().any(|n| name_is(name, n))
        || is_hop_by_hop(name, listed)
}

/// The upstream request, HTTP/1.1 whatever the client spoke.
pub(super) fn request(parts: Parts, uri: Uri, headers: HeaderMap, body: Body) -> Request<Body> {
    let mut up = Request::new(body);
    *up.method_mut() = parts.method;
    *up.uri_mut() = uri;
    *up.headers_mut() = headers;
    *up.version_mut() = Version::HTTP_11;
    up
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::h1;
    use crate::proxy::exchange::Rendered;

    /// The client headers on the wire, their names in mixed case.
    const HEAD: &[u8] = b"POST /r/x?q=1 HTTP/1.1\r\nHost: proxy.example\r\nX-Call-Id: c1\r\n\
Connection: keep-alive, X-Hop\r\nX-Hop: a\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
X-Headgate-Key: k\r\nAuthorization: Bearer client\r\nX-Strip: s\r\n\
X-Forwarded-For: 10.9.9.9\r\nx-forwarded-for: 10.8.8.8\r\nX-Forwarded-Proto: gopher\r\n\
X-Forwarded-Host: evil\r\nForwarded: for=10.9.9.9;host=spoofed\r\nAccept: a\r\naccept: b\r\nContent-Length: 0\r\n\r\n";

    /// Sorted (name, value) lines of a head's headers.
    fn lines(head: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut storage = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Request::new(&mut storage);
        let mut full = b"GET / HTTP/1.1\r\n".to_vec();
        full.extend_from_slice(head);
        full.extend_from_slice(b"\r\n");
        assert!(r.parse(&full).unwrap().is_complete());
        let mut v: Vec<_> = (r.headers.iter())
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_raw_head_is_rewritten_as_the_header_map_is() {
        let cfg = crate::config::check_texts(
            "",
            &[(
                "r",
                r#"upstream = "http://127.0.0.1:1"
inbound_auth = { header = "x-headgate-key", secret_env = "PATH" }
[strip]
headers = ["x-strip"]
[headers]
authorization = "Bearer << call.token >>"
x-absent = { template = "<< call.nothing >>", on_error = "omit" }
"#,
            )],
        )
        .unwrap();
        let route = cfg.route("r").unwrap();
        let rendered: Rendered =
            vec![(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"))];
        // Without a `Host`, the client's `X-Forwarded-Host` must not pass
        // either (the map path let it through before).
        let hostless = String::from_utf8(HEAD.to_vec())
            .unwrap()
            .replace("Host: proxy.example\r\n", "");
        // Without a `Connection` line, lines are passed over on their
        // names' lengths: the same lines must be left out.
        let connless = String::from_utf8(HEAD.to_vec())
            .unwrap()
            .replace("Connection: keep-alive, X-Hop\r\nX-Hop: a\r\n", "");
        for wire in [HEAD, hostless.as_bytes(), connless.as_bytes()] {
            let with_host = wire != hostless.as_bytes();
            let mut storage = h1::storage();
            let head = h1::parse_request(wire, &mut storage, 1 << 16)
                .unwrap()
                .unwrap();
            let spans = h1::Spans::of(wire, &head).unwrap();
            let parts = h1::to_parts(wire, &head).unwrap();
            for trusted in [false, true] {
                let peer = Peer::new("192.0.2.7:4000".parse().unwrap(), trusted, false);
                let mut raw = Vec::new();
                let render = |out: &mut Vec<u8>| {
                    for (n, v) in &rendered {
                        put_header(out, n.as_str().as_bytes(), v.as_bytes());
                    }
                    Ok(())
                };
                put_raw_headers(&mut raw, &spans.view(wire), route, render, &peer).unwrap();
                let mut map = parts.headers.clone();
                let host = rewrite_headers(&mut map, &parts.uri, route);
                super::super::inject::set(&mut map, route, rendered.clone());
                forwarded_headers(&mut map, &peer, host);
                let mut written = Vec::new();
                for (n, v) in &map {
                    put_header(&mut written, n.as_str().as_bytes(), v.as_bytes());
                }
                assert_eq!(lines(&raw), lines(&written), "trusted: {trusted}");
                // What must not reach the upstream, whichever way it is written.
                let raw = String::from_utf8(raw).unwrap().to_ascii_lowercase();
                for gone in [
                    "x-hop",
                    "keep-alive",
                    "te:",
                    "x-headgate-key",
                    "x-strip",
                    "client",
                    "gopher",
                    "evil",
                ] {
                    assert!(!raw.contains(gone), "{gone} in {raw}");
                }
                let xff = if trusted {
                    "10.9.9.9, 192.0.2.7"
                } else {
                    "192.0.2.7"
                };
                let fwd = match (trusted, with_host) {
                    (true, true) => {
                        "for=10.9.9.9;host=spoofed, for=192.0.2.7;proto=http;host=\"proxy.example\""
                    }
                    (true, false) => "for=10.9.9.9;host=spoofed, for=192.0.2.7;proto=http",
                    (false, true) => "for=192.0.2.7;proto=http;host=\"proxy.example\"",
                    (false, false) => "for=192.0.2.7;proto=http",
                };
                assert!(raw.contains(&format!("forwarded: {fwd}\r\n")), "{raw}");
                assert!(
                    raw.contains(&format!("x-forwarded-for: {xff}\r\n")),
                    "{raw}"
                );
                assert_eq!(
                    raw.contains("x-forwarded-host: proxy.example\r\n"),
                    with_host,
                    "{raw}"
                );
            }
        }
    }

    /// Whatever the client's `Connection` line lists, the body's length
    /// goes upstream once, written by the proxy (`screen` refuses such a
    /// head first; this is the writer's own rule beneath it).
    #[test]
    fn the_framing_written_upstream_is_the_proxys_own() {
        let cfg = crate::config::check_texts(
            "",
            &[(
                "r",
                "upstream = \"http://127.0.0.1:1\"\ninbound_auth = \"none\"\n",
            )],
        )
        .unwrap();
        let route = cfg.route("r").unwrap();
        let wire = b"POST /r/x HTTP/1.1\r\nHost: h\r\nConnection: content-length, x-a\r\n\
CONTENT-LENGTH: 5\r\nx-a: 1\r\n\r\nhello";
        let mut storage = h1::storage();
        let head = h1::parse_request(wire, &mut storage, 1 << 16)
            .unwrap()
            .unwrap();
        let spans = h1::Spans::of(wire, &head).unwrap();
        let peer = Peer::new("192.0.2.7:4000".parse().unwrap(), false, false);
        let mut raw = Vec::new();
        put_raw_headers(&mut raw, &spans.view(wire), route, |_| Ok(()), &peer).unwrap();
        let raw = String::from_utf8(raw).unwrap().to_ascii_lowercase();
        assert_eq!(raw.matches("content-length").count(), 1, "{raw}");
        assert!(raw.contains("content-length: 5\r\n"), "{raw}");
        assert!(!raw.contains("x-a"), "{raw}");
    }

    #[test]
    fn upstream_paths() {
        let base: Uri = "https://crm.example.com/mcp".parse().unwrap();
        assert_eq!(
            upstream_uri(&base, "", None, true).unwrap().to_string(),
            "https://crm.example.com/mcp"
        );
        assert_eq!(
            upstream_uri(&base, "/x/y", Some("a=1"), true)
                .unwrap()
                .to_string(),
            "https://crm.example.com/mcp/x/y?a=1"
        );
        let root: Uri = "http://127.0.0.1:9/".parse().unwrap();
        assert_eq!(
            upstream_uri(&root, "", None, true).unwrap().to_string(),
            "http://127.0.0.1:9/"
        );
        let q: Uri = "http://h/p?k=v".parse().unwrap();
        assert_eq!(
            upstream_uri(&q, "/s", Some("a=1"), true)
                .unwrap()
                .to_string(),
            "http://h/p/s?k=v&a=1"
        );
    }
}
