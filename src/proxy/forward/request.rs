//! The upstream request head as the forwarding core writes it: request
//! line, `Host`, the headers (rewritten from a parsed request, or copied
//! from the raw head with the rendered ones put in), and the core's own
//! body framing.

use super::*;

/// Writes the upstream request head of a parsed request: request line,
/// `Host`, and the lines [`put_headers`] wrote into `h` (its framing
/// included).
pub(super) fn write_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    uri: &Uri,
    route: &Route,
    h: &HeaderMap,
) {
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    request_line(out, method.as_str().as_bytes(), route, |out| {
        out.extend_from_slice(pq.as_bytes())
    });
    for (n, v) in h {
        put_header(out, n.as_str().as_bytes(), v.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// [`write_request_head`] for a raw head: its lines written straight
/// from the buffer by [`put_headers`], the rendered ones by `render`.
pub(super) fn write_raw_head<'c>(
    out: &mut Vec<u8>,
    head: h1::RawHead<'c>,
    route: &Route,
    rest: &str,
    render: impl for<'o> FnOnce(&mut RawLines<'c, 'o>) -> Result<(), ProxyError>,
    peer: &Peer,
) -> Result<(), ProxyError> {
    request_line(out, head.method_bytes(), route, |out| {
        put_path_and_query(out, &route.upstream, rest, head.query());
    });
    put_headers(&mut RawLines { head, out }, route, render, peer)?;
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// The request line and `Host` of an upstream request head.
pub(super) fn request_line(
    out: &mut Vec<u8>,
    method: &[u8],
    route: &Route,
    pq: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(method);
    out.push(b' ');
    pq(out);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    if let Some(a) = route.upstream.authority() {
        out.extend_from_slice(host(a).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// The upstream's `Host`: its authority, port 80 left out as hyper's
/// client writes it. A plain suffix test: parsing the port searched the
/// string on every request.
pub(super) fn host(a: &http::uri::Authority) -> &str {
    a.as_str().strip_suffix(":80").unwrap_or(a.as_str())
}
