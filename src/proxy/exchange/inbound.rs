//! The inbound phase: is this request acceptable at all? Its path, its
//! declared length, its body (read whole only when the route must look
//! inside it), and the caller's credentials.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use super::error::ProxyError;
use crate::config::{InboundAuth, Route};
use crate::net::body::{FromClient, Prefixed};
use crate::net::head::Head;
use crate::net::response::{self, Body};
use crate::platform;

/// Bytes of a request body a JSON-RPC or MCP route reads before
/// forwarding: any error, even one from the upstream, can then carry the
/// request's id, and MCP policy sees the call.
pub(crate) const RPC_PEEK: usize = 64 << 10;

/// The request body: still streaming, or read because the route needed it.
pub(crate) enum InBody {
    /// Not looked at: streamed to the upstream as it arrives.
    Stream(Incoming),
    /// Read whole (at most the route's body limit).
    Read(Bytes),
    /// The first bytes read (a JSON-RPC route's larger body), the rest
    /// still streaming.
    Prefixed(Bytes, Incoming),
    /// Relayed by the forwarding core itself (a route that never looks
    /// inside bodies): nothing here to read.
    Relayed,
}

impl InBody {
    /// The body as JSON, when it was read and the route reads it.
    pub(super) fn parsed(&self, route: &Route) -> Option<Value> {
        match self {
            InBody::Read(b) if route.parses_body() => serde_json::from_slice(b).ok(),
            _ => None,
        }
    }

    /// The body, if it was read whole.
    pub(super) fn whole(&self) -> Option<&Bytes> {
        match self {
            InBody::Read(b) => Some(b),
            _ => None,
        }
    }

    /// What was read of the body, if anything.
    pub(super) fn read(&self) -> Option<&Bytes> {
        match self {
            InBody::Read(b) | InBody::Prefixed(b, _) => Some(b),
            InBody::Stream(_) | InBody::Relayed => None,
        }
    }

    /// The body as the upstream receives it: what was read, then what
    /// still streams, bounded by the route's limit.
    pub(super) fn into_upstream(self, limit: u64) -> Body {
        let limit = limit as usize;
        match self {
            InBody::Read(b) => response::full(b),
            InBody::Stream(inc) => Limited::new(FromClient::new(inc), limit).boxed(),
            InBody::Prefixed(b, inc) => {
                Limited::new(Prefixed::new(b, FromClient::new(inc)), limit).boxed()
            }
            InBody::Relayed => response::empty(),
        }
    }
}

/// The checks on a request head alone: a path that could climb out of the
/// route, no `Host` on HTTP/1.1 or more than one (RFC 9112 §3.2: 400), a
/// `Connection` line listing a framing header (RFC 9110 §7.6.1: never
/// hop-by-hop; forwarding it as listed would smuggle), a declared length
/// over the route's limit. Pure, for the fuzz targets too.
pub fn screen(route: &Route, head: &dyn Head, rest: &str) -> Result<(), ProxyError> {
    if has_dot_segments(rest) {
        return Err(ProxyError::InvalidPath);
    }
    let declared = head.declared();
    if declared.hosts > 1 {
        return Err(ProxyError::Ambiguous("Host"));
    }
    if declared.hosts == 0 && declared.host_required {
        return Err(ProxyError::Malformed(
            "an HTTP/1.1 request must carry a Host header",
        ));
    }
    if declared.lists_framing {
        return Err(ProxyError::Malformed(
            "the Connection header lists Content-Length, Transfer-Encoding or Host, which are never hop-by-hop",
        ));
    }
    if declared.length.is_some_and(|n| n > route.body_limit) {
        return Err(ProxyError::TooLarge);
    }
    Ok(())
}

/// Reads the body if the route needs to look inside it (after the head
/// was [`screen`]ed).
pub(super) async fn admit(route: &Route, incoming: Incoming) -> Result<InBody, ProxyError> {
    match (route.reads_body(), route.peeks_body()) {
        (true, _) => read_until(incoming, usize::MAX, route.body_limit).await,
        (false, true) => read_until(incoming, RPC_PEEK, route.body_limit).await,
        (false, false) => Ok(InBody::Stream(incoming)),
    }
}

/// Reads the body until it ends (then [`InBody::Read`]) or `stop_at`
/// bytes are in (then [`InBody::Prefixed`], the rest left streaming);
/// more than `limit` is 413. A body that arrives in one frame, as a small
/// one with a `Content-Length` does, is taken as it is: no copy, no
/// allocation.
async fn read_until(mut inc: Incoming, stop_at: usize, limit: u64) -> Result<InBody, ProxyError> {
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    loop {
        let len = first.as_ref().map_or(more.len(), Bytes::len);
        if len as u64 > limit {
            return Err(ProxyError::TooLarge);
        }
        if len >= stop_at {
            break;
        }
        let data = match inc.frame().await {
            None => return Ok(InBody::Read(first.unwrap_or_else(|| more.freeze()))),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
            Some(Err(_)) => {
                return Err(ProxyError::BadBody(
                    "the request body was malformed or cut short",
                ));
            }
        };
        match first.take() {
            None if more.is_empty() => first = Some(data),
            Some(f) => {
                more.extend_from_slice(&f);
                more.extend_from_slice(&data);
            }
            None => more.extend_from_slice(&data),
        }
    }
    Ok(InBody::Prefixed(
        first.unwrap_or_else(|| more.freeze()),
        inc,
    ))
}

/// Checks the caller: the route's key header, or the platform's signature
/// over the body.
pub(super) fn authenticate(
    route: &Route,
    head: &dyn Head,
    body: &InBody,
) -> Result<(), ProxyError> {
    let ok = match &route.inbound_auth {
        InboundAuth::None => true,
        InboundAuth::Header { header, secret } => {
            secret.matches(head.header(header).unwrap_or_default())
        }
        InboundAuth::Platform { platform, secret } => match (body, head.map()) {
            (InBody::Read(b), Some(headers)) => {
                platform::signature::verify_request(*platform, secret, headers, b).is_some()
            }
            _ => false,
        },
    };
    if ok {
        Ok(())
    } else {
        Err(ProxyError::InboundAuth)
    }
}

/// True if the path could climb out of the route on some upstream: a
/// segment that is `.` or `..` once percent-decoded, however many times it
/// was encoded (`%252e%252e`); with a path parameter (`..;`, `..%3B`,
/// which Tomcat and Spring treat as `..`); with a backslash (`..\\`, a
/// separator to IIS and other Windows servers); an encoded slash or
/// backslash; or bytes that are not UTF-8 once decoded (overlong `%c0%ae`).
fn has_dot_segments(path: &str) -> bool {
    // Without a dot, literal or encoded, no segment can be `.` or `..`,
    // and without an escape nothing decodes to a separator: one scan
    // settles the usual path.
    if !path.bytes().any(|b| b == b'.' || b == b'%') {
        return false;
    }
    path.split('/').any(|seg| {
        let Some(d) = fully_decoded(seg) else {
            return true;
        };
        let climbs = d.split(['/', '\\']).any(|piece| {
            let name = piece.split(';').next().unwrap_or(piece);
            name == "." || name == ".."
        });
        climbs || (d != seg && (d.contains('/') || d.contains('\\')))
    })
}

/// `seg` percent-decoded until nothing changes (at most a few rounds);
/// `None` if the bytes are not UTF-8. Borrowed, with no allocation, when
/// there is nothing to decode: the common case, on every request.
fn fully_decoded(seg: &str) -> Option<Cow<'_, str>> {
    let mut cur = Cow::Borrowed(seg);
    for _ in 0..4 {
        // Borrowed exactly when no escape was decoded.
        let next = match percent_encoding::percent_decode_str(&cur)
            .decode_utf8()
            .ok()?
        {
            Cow::Borrowed(_) => break,
            Cow::Owned(n) => n,
        };
        cur = Cow::Owned(next);
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_refused() {
        assert!(has_dot_segments("/../admin"));
        assert!(has_dot_segments("/a/%2e%2e/b"));
        assert!(has_dot_segments("/a/%2E/b"));
        assert!(has_dot_segments("/a/..%2fb"));
        assert!(!has_dot_segments("/a/b.c/d..e"));
        assert!(!has_dot_segments(""));
        for spelled in [
            "/..;/admin",
            "/..%3B/admin",
            "/..%3b/admin",
            "/..\\admin",
            "/a/..%5cadmin",
            "/%252e%252e/admin",
            "/%25252e%25252e/admin",
            "/%c0%ae%c0%ae/admin",
            "/.;x=1/admin",
        ] {
            assert!(has_dot_segments(spelled), "{spelled}");
        }
        assert!(!has_dot_segments("/a;b=1/c"));
        assert!(!has_dot_segments("/caf%C3%A9/..x"));
    }
}
