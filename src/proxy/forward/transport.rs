//! The forwarding core as a [`Transport`] under [`Exchange::run`]: the
//! request read from the connection's buffer, its upstream head written
//! into one buffer with the body behind it (one write), sent on a pooled
//! connection and its response relayed straight to the client.

use super::*;
use crate::net::head::AnyHead;
use crate::proxy::exchange::{Found, RawLines, Sent, Transport};

/// One request the core serves, with the connection it came on.
pub(super) struct CoreTransport<'c> {
    client: &'c mut Wire,
    /// The connection's buffer: the head at its start (and the body
    /// behind it, when read) until the upstream request is sent.
    buf: &'c mut Vec<u8>,
    clock: &'c mut Clock,
    /// The upstream request: head, then the body bytes at hand.
    out: Lent,
    head: ReqHead,
    rest: Rest,
    head_len: usize,
    /// The body's length.
    body: u64,
    /// Head and body are still in `buf` (until the first send).
    in_buf: bool,
    /// A raw head's bytes, kept for the retry after a 401.
    saved: Option<Vec<u8>>,
    taken: Taken,
    to: Timeouts,
    to_send: ToSend<'c>,
}

/// Where the path after the route's name is.
enum Rest {
    /// In the buffer (a copy would cost an allocation per request).
    InBuf(Range<usize>),
    /// Of a head rebuilt for the retry, the buffer having moved on.
    Owned(String),
}

impl Rest {
    /// The path, `buf` being the connection's buffer.
    fn of<'a>(&'a self, buf: &'a [u8]) -> &'a str {
        match self {
            Rest::InBuf(at) => text(buf, at),
            Rest::Owned(s) => s,
        }
    }
}

impl<'c> CoreTransport<'c> {
    pub fn new(
        req: Req,
        (client, buf, clock): (&'c mut Wire, &'c mut Vec<u8>, &'c mut Clock),
        (stop, tls): (&'c watch::Receiver<bool>, &'c tokio_rustls::TlsConnector),
        cfg: &Config,
    ) -> Self {
        let t = &cfg.server.timeouts;
        Self {
            client,
            buf,
            clock,
            out: buffers::lend(),
            head: req.head,
            rest: Rest::InBuf(req.rest),
            head_len: req.head_len,
            body: req.body,
            in_buf: true,
            saved: None,
            taken: Taken::Nothing,
            to: Timeouts {
                connect: t.connect,
                idle: t.idle,
                response: t.response_headers,
            },
            to_send: ToSend {
                head_request: req.head_request,
                close: !req.keep_alive,
                stop,
                tls,
            },
        }
    }

    /// How much of the request was taken from the connection.
    pub fn taken(&self) -> Taken {
        self.taken
    }

    fn rest(&self) -> &str {
        self.rest.of(self.buf)
    }
}

impl Transport for CoreTransport<'_> {
    type Answer = Served;

    /// The body read whole only on a route that reads or peeks at it.
    async fn admit(&mut self, route: &Route) -> Result<InBody, ProxyError> {
        if !route.takes_body() {
            return Ok(InBody::Relayed);
        }
        let at = (self.head_len, self.body, self.to.idle);
        let io = (&mut *self.client, &mut *self.clock);
        read_body(io, self.buf, at, &mut self.taken).await
    }

    fn head(&self) -> (AnyHead<'_>, &str) {
        let head = match &self.head {
            ReqHead::Raw(spans) => AnyHead::Raw(spans.view(&self.buf[..self.head_len])),
            ReqHead::Map(parts) => AnyHead::Parts(parts),
        };
        (head, self.rest())
    }

    /// Into `out`: the rendered values straight into it on a raw head.
    fn compose(&mut self, x: &mut Exchange<'_>, call: &Found) -> Result<(), ProxyError> {
        let route = x.route();
        // Not `self.rest()`: `out` is borrowed beside it.
        let rest = self.rest.of(self.buf);
        let out = &mut *self.out;
        out.clear();
        out.reserve(self.head_len + 512);
        match &self.head {
            ReqHead::Raw(spans) => {
                let head = spans.view(&self.buf[..self.head_len]);
                let (key, session) = call;
                let render = |l: &mut RawLines<'_, '_>| {
                    x.put_rendered(l.out, (&head, rest), key, session.as_ref())
                };
                request::write_raw_head(out, head, route, rest, render, x.peer())
            }
            ReqHead::Map(parts) => {
                let (uri, headers) = x.upstream_map(parts, rest, call, false)?;
                request::write_request_head(out, &parts.method, &uri, route, &headers);
                Ok(())
            }
        }
    }

    /// A raw head is copied out of the buffer (the body goes on from
    /// there); a parsed one stays where it is.
    fn keep(&mut self) {
        if let ReqHead::Raw(_) = self.head {
            self.saved = Some(self.buf[..self.head_len].to_vec());
        }
    }

    async fn send(
        &mut self,
        x: &mut Exchange<'_>,
        (key, session): &Found,
        body: InBody,
        retry: bool,
    ) -> Result<Sent<Served>, ProxyError> {
        let route = x.route();
        let mut left = 0;
        if std::mem::take(&mut self.in_buf) {
            let at = (&mut *self.buf, self.head_len, self.body);
            left = take_body(&body, at, &mut self.out, &mut self.taken);
            if left > 0 && self.body <= upstream::ONE_WRITE_BODY {
                let io = (&mut *self.client, &mut *self.clock);
                upstream::gather_body(io, &mut self.out, left, self.to.idle).await?;
                (left, self.taken) = (0, Taken::All);
            }
        } else if let InBody::Read(b) = &body {
            self.out.extend_from_slice(b);
        }
        let io = (&mut *self.client, &mut *self.clock);
        let sent = (&mut *self.out, left);
        let who = (&**key, session.as_ref());
        upstream::attempt(x, route, io, sent, self.to, self.to_send, retry, who).await
    }

    /// The kept head as `http` parts: the buffer has moved on, so the
    /// path after the route's name comes from it again, as `decide` found
    /// it.
    fn rewind(&mut self) -> Result<(), ProxyError> {
        if let Some(raw) = self.saved.take() {
            // It parsed when it was read: never in practice.
            let parts = reparse(&raw).ok_or(ProxyError::UpstreamUnreachable)?;
            self.head = ReqHead::Map(Box::new(parts));
        }
        let ReqHead::Map(parts) = &self.head else {
            return Err(ProxyError::UpstreamUnreachable);
        };
        self.rest = Rest::Owned(split_route(parts.uri.path()).1.to_string());
        Ok(())
    }
}

/// A kept head (its bytes, request line to the empty line) as `http`
/// parts.
fn reparse(raw: &[u8]) -> Option<Parts> {
    let mut storage = h1::storage();
    let head = h1::parse_request(raw, &mut storage, usize::MAX).ok()??;
    h1::to_parts(raw, &head)
}

/// Moves the request's body out of the client's buffer behind the head
/// in `out` (all of it when it was read whole, else what arrived with the
/// head: one write for both) and says how many bytes are still to come.
fn take_body(
    in_body: &InBody,
    (buf, head_len, body): (&mut Vec<u8>, usize, u64),
    out: &mut Vec<u8>,
    taken: &mut Taken,
) -> u64 {
    if let InBody::Read(b) = in_body {
        out.extend_from_slice(b);
        buf.drain(..head_len + b.len());
        *taken = Taken::All;
        return 0;
    }
    let now = ((buf.len() - head_len) as u64).min(body) as usize;
    out.extend_from_slice(&buf[head_len..head_len + now]);
    buf.drain(..head_len + now);
    let left = body - now as u64;
    *taken = if left == 0 { Taken::All } else { Taken::Part };
    left
}

/// The body, read whole (`body` bytes after the head at the start of
/// `buf`, each read within `idle`): a copy, with head and body left in
/// `buf` (the phases read the head from there) until the upstream
/// request is written.
async fn read_body(
    (client, clock): (&mut Wire, &mut Clock),
    buf: &mut Vec<u8>,
    (head_len, body, idle): (usize, u64, Duration),
    taken: &mut Taken,
) -> Result<InBody, ProxyError> {
    let want = head_len + body as usize;
    *taken = Taken::Part;
    while buf.len() < want {
        buf.reserve(want - buf.len());
        match clock.within(idle, client.read_buf(buf)).await {
            Some(Ok(n)) if n > 0 => {}
            _ => {
                return Err(ProxyError::BadBody(
                    "the request body was malformed or cut short",
                ));
            }
        }
    }
    // Wholly in the buffer now: an error answered before forwarding
    // drops it from there and keeps the connection.
    *taken = Taken::Nothing;
    Ok(InBody::Read(Bytes::copy_from_slice(&buf[head_len..want])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_head_comes_back_as_the_core_read_it() {
        let raw = b"POST /crm/mcp?a=1 HTTP/1.1\r\nHost: h\r\nX-Call-Id: call-1\r\n\
                    Accept: application/json\r\nAccept: text/event-stream\r\n\r\n";
        let mut storage = h1::storage();
        let head = h1::parse_request(raw, &mut storage, 1 << 16)
            .unwrap()
            .unwrap();
        let read = h1::to_parts(raw, &head).unwrap();
        let back = reparse(raw).unwrap();
        assert_eq!(back.method, read.method);
        assert_eq!(back.uri, read.uri);
        assert_eq!(back.version, read.version);
        assert_eq!(back.headers, read.headers);
        assert_eq!(back.headers.get_all("accept").iter().count(), 2);
    }
}
