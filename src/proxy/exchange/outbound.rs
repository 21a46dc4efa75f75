//! The outbound phase: the request the upstream receives. Its URI (the
//! upstream's base plus the rest of the path and the query), the client's
//! headers less hop-by-hop, `Host`, the caller's credentials and the
//! route's `strip` list, and the `X-Forwarded-*` headers.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Method, Request, Uri, Version};

use super::error::ProxyError;
use crate::config::Route;
use crate::net::h1::{self, RawHead};
use crate::net::head::Head as _;
use crate::net::headers::{HOP_BY_HOP, NameSet, is_hop_by_hop, length_bit, name_is};
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

/// A header the proxy writes itself: its name, and the start of its line
/// (`name: `) as the wire gets it, in one copy.
pub struct Own {
    name: HeaderName,
    line: &'static [u8],
}

macro_rules! own {
    ($name:literal) => {
        Own {
            name: HeaderName::from_static($name),
            line: concat!($name, ": ").as_bytes(),
        }
    };
}

static X_FORWARDED_FOR: Own = own!("x-forwarded-for");
static X_FORWARDED_PROTO: Own = own!("x-forwarded-proto");
static X_FORWARDED_HOST: Own = own!("x-forwarded-host");
static FORWARDED: Own = own!("forwarded");
static ACCEPT_ENCODING: Own = own!("accept-encoding");

/// The `Forwarded` value (RFC 7239) as parts to join: this hop's element
/// (the peer, the scheme it came by, the `Host` it asked for, quoted: a
/// port's `:` is no token) after what a trusted proxy sent, or alone
/// (anyone else could write any address there), as `X-Forwarded-For` is.
fn forwarded<'v>(prev: Option<&'v [u8]>, peer: &'v Peer, host: Option<&'v [u8]>) -> Parts8<'v> {
    let mut p = Parts8::default();
    if let Some(prev) = prev.filter(|_| peer.trusted) {
        p.push(prev);
        p.push(b", ");
    }
    p.push(peer.node.as_bytes());
    p.push(b";proto=");
    p.push(peer.proto().as_bytes());
    // A host with a quote or backslash is not one `Host` allows.
    if let Some(h) = host.filter(|h| !h.iter().any(|b| matches!(b, b'"' | b'\\'))) {
        p.push(b";host=\"");
        p.push(h);
        p.push(b"\"");
    }
    p
}

/// Up to eight parts of a header value, joined where it is written.
#[derive(Default)]
struct Parts8<'v> {
    parts: [&'v [u8]; 8],
    len: usize,
}

impl<'v> Parts8<'v> {
    fn push(&mut self, part: &'v [u8]) {
        if let Some(slot) = self.parts.get_mut(self.len) {
            *slot = part;
            self.len += 1;
        }
    }

    fn parts(&self) -> &[&'v [u8]] {
        &self.parts[..self.len]
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

/// An upstream request head being written from the client's:
/// [`put_headers`] decides every line the upstream receives; this says
/// only how a line is read and kept. The forwarding core writes onto the
/// wire, copying a raw head's lines as they came ([`RawLines`]); hyper's
/// client gets a `HeaderMap` ([`MapLines`]). `'c`: the client's head.
pub trait Lines<'c> {
    /// Whether the client's head has a `Connection` line (most have
    /// none: then no line is checked against its list).
    fn has_connection(&self) -> bool;
    /// The body's length the client's head declares.
    fn length(&self) -> Option<u64>;
    /// Hands each client line's name and value, in order, to `keep`
    /// with the values of the head's `Connection` lines; the lines it
    /// keeps go upstream as they came.
    fn pass_client(
        &mut self,
        keep: impl FnMut(&'c [u8], &'c [u8], &mut dyn Iterator<Item = &'c [u8]>) -> bool,
    );
    /// A line the proxy writes: `name` and the value `parts` joined.
    fn put(&mut self, name: &Own, parts: &[&[u8]]);
    /// The body's framing: `Content-Length: n`.
    fn put_length(&mut self, n: u64);
}

/// [`Lines`] onto the wire: a raw head's lines copied straight from the
/// client's buffer into `out`.
pub struct RawLines<'c, 'o> {
    /// The client's head.
    pub head: RawHead<'c>,
    /// The upstream head being written.
    pub out: &'o mut Vec<u8>,
}

impl<'c> Lines<'c> for RawLines<'c, '_> {
    fn has_connection(&self) -> bool {
        self.head.has_connection()
    }

    fn length(&self) -> Option<u64> {
        self.head.declared().length
    }

    #[inline]
    fn pass_client(
        &mut self,
        mut keep: impl FnMut(&'c [u8], &'c [u8], &mut dyn Iterator<Item = &'c [u8]>) -> bool,
    ) {
        let head = self.head;
        for f in head.fields() {
            let kept = match head.has_connection() {
                true => keep(f.name, f.value, &mut head.values("connection")),
                false => keep(f.name, f.value, &mut std::iter::empty()),
            };
            if kept {
                self.out.extend_from_slice(f.line);
                self.out.extend_from_slice(b"\r\n");
            }
        }
    }

    #[inline]
    fn put(&mut self, name: &Own, parts: &[&[u8]]) {
        self.out.extend_from_slice(name.line);
        for p in parts {
            self.out.extend_from_slice(p);
        }
        self.out.extend_from_slice(b"\r\n");
    }

    fn put_length(&mut self, n: u64) {
        h1::put_content_length(self.out, n);
    }
}

/// [`Lines`] into a `HeaderMap`: the client's values shared, not copied.
pub struct MapLines<'c> {
    /// The client's head.
    pub head: &'c http::request::Parts,
    /// The upstream request's headers.
    pub out: HeaderMap,
}

impl<'c> MapLines<'c> {
    /// For the client's `head`.
    pub fn new(head: &'c http::request::Parts) -> Self {
        Self {
            head,
            out: HeaderMap::with_capacity(head.headers.len() + 6),
        }
    }
}

impl<'c> Lines<'c> for MapLines<'c> {
    fn has_connection(&self) -> bool {
        self.head.headers.contains_key(header::CONNECTION)
    }

    fn length(&self) -> Option<u64> {
        self.head.declared().length
    }

    fn pass_client(
        &mut self,
        mut keep: impl FnMut(&'c [u8], &'c [u8], &mut dyn Iterator<Item = &'c [u8]>) -> bool,
    ) {
        let client = &self.head.headers;
        for (n, v) in client {
            let mut listed = (client.get_all(header::CONNECTION).iter()).map(HeaderValue::as_bytes);
            if keep(n.as_str().as_bytes(), v.as_bytes(), &mut listed) {
                self.out.append(n.clone(), v.clone());
            }
        }
    }

    fn put(&mut self, name: &Own, parts: &[&[u8]]) {
        let value = match parts {
            [one] => HeaderValue::from_bytes(one),
            _ => HeaderValue::from_bytes(&parts.concat()),
        };
        // Every part is the client's valid value or the proxy's own.
        if let Ok(v) = value {
            self.out.append(name.name.clone(), v);
        }
    }

    fn put_length(&mut self, n: u64) {
        self.out
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
}

/// The header lines of the upstream request, whichever way they are
/// written ([`Lines`]): the client's lines the upstream may see (less
/// hop-by-hop lines, `Host`, the caller's route key or request signature,
/// the route's `strip` list and every header a rule sets), the rendered
/// lines (`render` writes them), `accept-encoding: identity` on a route
/// that rewrites `tools/list`, `X-Forwarded-*`, `Forwarded` and the
/// body's framing. The framing is always the proxy's own: one
/// `Content-Length` line with the length the client declared (its
/// `Connection` list cannot drop it: `screen` refuses such a head, and
/// this writer never copies the client's framing lines), hyper's rule:
/// what is forwarded is framed by us. The one writer of what the
/// upstream receives.
pub fn put_headers<'c, L: Lines<'c>>(
    lines: &mut L,
    route: &Route,
    render: impl FnOnce(&mut L) -> Result<(), ProxyError>,
    peer: &Peer,
) -> Result<(), ProxyError> {
    // Without a `Connection` line, a line of a length no name left out
    // has is passed on one test.
    let asked = match lines.has_connection() {
        true => u64::MAX,
        false => left_out_lengths(route),
    };
    // The client's `X-Forwarded-For`, `Host` and `Forwarded`, found on
    // the way: all are among the names left out.
    let (mut xff, mut host, mut fwd) = (None, None, None);
    lines.pass_client(|name, value, listed| {
        if asked & length_bit(name.len()) == 0 || !left_out(route, name, listed) {
            return true;
        }
        if name_is(name, X_FORWARDED_FOR.name.as_str()) {
            xff = xff.or(Some(value));
        } else if name_is(name, header::HOST.as_str()) {
            host = host.or(Some(value));
        } else if name_is(name, FORWARDED.name.as_str()) {
            fwd = fwd.or(Some(value));
        }
        false
    });
    render(lines)?;
    if route.limits_tools() {
        lines.put(&ACCEPT_ENCODING, &[b"identity"]);
    }
    let ip = peer.ip.as_bytes();
    match xff.filter(|_| peer.trusted) {
        Some(prev) => lines.put(&X_FORWARDED_FOR, &[prev, b", ", ip]),
        None => lines.put(&X_FORWARDED_FOR, &[ip]),
    }
    lines.put(&X_FORWARDED_PROTO, &[peer.proto().as_bytes()]);
    lines.put(&FORWARDED, forwarded(fwd, peer, host).parts());
    if let Some(host) = host {
        lines.put(&X_FORWARDED_HOST, &[host]);
    }
    if let Some(n) = lines.length() {
        lines.put_length(n);
    }
    Ok(())
}

/// The lengths of the names [`left_out`] leaves out whatever the
/// `Connection` line lists, as [`length_bit`]s.
fn left_out_lengths(route: &Route) -> u64 {
    route.compiled.own_headers.lengths() | REPLACED.lengths() | HOP_BY_HOP.lengths()
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
        || route.compiled.own_headers.contains(name)
        || is_hop_by_hop(name, listed)
}

/// The upstream request, HTTP/1.1 whatever the client spoke.
pub(super) fn request(method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Request<Body> {
    let mut up = Request::new(body);
    *up.method_mut() = method;
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

    /// The one writer gives the same lines onto the wire and into a map.
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
                let mut on_wire = RawLines {
                    head: spans.view(wire),
                    out: &mut raw,
                };
                let render = |l: &mut RawLines<'_, '_>| {
                    for (n, v) in &rendered {
                        h1::put_header(l.out, n.as_str().as_bytes(), v.as_bytes());
                    }
                    Ok(())
                };
                put_headers(&mut on_wire, route, render, &peer).unwrap();
                let mut map = MapLines::new(&parts);
                let render = |l: &mut MapLines<'_>| {
                    for (n, v) in &rendered {
                        l.out.append(n.clone(), v.clone());
                    }
                    Ok(())
                };
                put_headers(&mut map, route, render, &peer).unwrap();
                let mut written = Vec::new();
                for (n, v) in &map.out {
                    h1::put_header(&mut written, n.as_str().as_bytes(), v.as_bytes());
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
        let mut lines = RawLines {
            head: spans.view(wire),
            out: &mut raw,
        };
        put_headers(&mut lines, route, |_| Ok(()), &peer).unwrap();
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
