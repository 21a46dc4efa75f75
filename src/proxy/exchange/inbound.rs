//! The inbound phase: is this request acceptable at all? Its path, its
//! declared length, its body (read whole only when the route must look
//! inside it), and the caller's credentials.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use super::error::ProxyError;
use crate::config::{InboundAuth, Route};
use crate::net::response::{self, Body, ReadError, read_limited};
use crate::platform;

/// The request body: still streaming, or read because the route needed it.
pub(crate) enum InBody {
    /// Not looked at: streamed to the upstream as it arrives.
    Stream(Incoming),
    /// Read whole (at most the route's body limit).
    Read(Bytes),
}

impl InBody {
    /// The body as JSON, when it was read and the route reads it.
    pub(super) fn parsed(&self, route: &Route) -> Option<Value> {
        match self {
            InBody::Read(b) if route.parses_body() => serde_json::from_slice(b).ok(),
            _ => None,
        }
    }

    /// The body as the upstream receives it: what was read, or the stream
    /// still bounded by the route's limit.
    pub(super) fn into_upstream(self, limit: u64) -> Body {
        match self {
            InBody::Read(b) => response::full(b),
            InBody::Stream(inc) => http_body_util::Limited::new(inc, limit as usize).boxed(),
        }
    }
}

/// Checks the path and the declared length, then reads the body if the
/// route needs to look inside it.
pub(super) async fn admit(
    route: &Route,
    parts: &Parts,
    rest: &str,
    incoming: Incoming,
) -> Result<InBody, ProxyError> {
    if has_dot_segments(rest) {
        return Err(ProxyError::InvalidPath);
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.body_limit) {
        return Err(ProxyError::TooLarge);
    }
    if !route.reads_body() {
        return Ok(InBody::Stream(incoming));
    }
    match read_limited(incoming, route.body_limit as usize).await {
        Ok(b) => Ok(InBody::Read(b)),
        Err(ReadError::TooLarge) => Err(ProxyError::TooLarge),
        Err(ReadError::Aborted) => Err(ProxyError::BadBody("the request body was cut short")),
    }
}

/// Checks the caller: the route's key header, or the platform's signature
/// over the body.
pub(super) fn authenticate(
    route: &Route,
    headers: &HeaderMap,
    body: &InBody,
) -> Result<(), ProxyError> {
    let ok = match &route.inbound_auth {
        InboundAuth::None => true,
        InboundAuth::Header { header, secret } => {
            let given = headers.get(header).map(HeaderValue::as_bytes);
            secret.matches(given.unwrap_or_default())
        }
        InboundAuth::Platform { platform, secret } => match body {
            InBody::Read(b) => {
                platform::signature::verify_request(*platform, secret, headers, b).is_some()
            }
            InBody::Stream(_) => false,
        },
    };
    if ok {
        Ok(())
    } else {
        Err(ProxyError::InboundAuth)
    }
}

/// True if any segment, once percent-decoded, is `.` or `..` (or holds a
/// slash or backslash that would create one upstream).
fn has_dot_segments(path: &str) -> bool {
    path.split('/').any(|seg| {
        let d = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
        d == "." || d == ".." || (d != seg && (d.contains('/') || d.contains('\\')))
    })
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
    }
}
