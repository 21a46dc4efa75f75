//! The outbound phase: the request the upstream receives. Its URI (the
//! upstream's base plus the rest of the path and the query), the client's
//! headers less hop-by-hop, `Host`, the caller's credentials and the
//! route's `strip` list, and the `X-Forwarded-*` headers.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::Authority;
use http::{Request, Uri, Version};

use crate::config::{InboundAuth, Route};
use crate::net::headers::strip_hop_by_hop;
use crate::net::response::Body;

/// The client end of a connection, formatted once per connection rather
/// than per request.
pub struct Peer {
    /// Its IP as an `X-Forwarded-For` element.
    ip: HeaderValue,
    /// Whether it is one of `trusted_proxies`, whose `X-Forwarded-For` is
    /// appended to rather than replaced.
    trusted: bool,
    /// Whether it came over TLS (`X-Forwarded-Proto: https`).
    tls: bool,
}

impl Peer {
    /// For a connection from `remote` (over TLS when `tls`).
    pub fn new(remote: SocketAddr, trusted: bool, tls: bool) -> Self {
        let ip = HeaderValue::from_str(&remote.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { ip, trusted, tls }
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

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
    let base_path = base.path().trim_end_matches('/');
    let mut pq = String::with_capacity(base_path.len() + rest.len() + 32);
    pq.push_str(base_path);
    pq.push_str(rest);
    if pq.is_empty() {
        pq.push('/');
    }
    match (base.query(), query) {
        (Some(a), Some(b)) => {
            pq.push('?');
            pq.push_str(a);
            pq.push('&');
            pq.push_str(b);
        }
        (Some(q), None) | (None, Some(q)) => {
            pq.push('?');
            pq.push_str(q);
        }
        (None, None) => {}
    }
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
    let proto = if peer.tls { "https" } else { "http" };
    h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = host {
        h.insert(X_FORWARDED_HOST.clone(), host);
    }
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
