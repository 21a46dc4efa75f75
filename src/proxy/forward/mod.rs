//! The forwarding core: one task per client connection does the whole
//! exchange for an HTTP/1.1 request, cleartext or over TLS, to an
//! `http://` or `https://` upstream (nginx's shape). It reads and parses
//! the request head ([`crate::net::h1`]), runs the route's phases (the
//! same [`Exchange`] the hyper path runs: key, session, render,
//! X-Forwarded-*), writes the rewritten head and the body to a pooled
//! keep-alive upstream connection in one write, parses the response head
//! and relays head and body, and gives the upstream connection back only
//! when its response was read exactly to its end. Both connections are a
//! [`Wire`]: TCP, or TLS over it; the framing is the same code for both.
//!
//! Every kind of route is served: a body the route reads (a platform's
//! signature, variables or a key from it, the retry after a 401) is read
//! whole from the connection's buffer, one it peeks at (JSON-RPC ids, MCP
//! calls) too when it is within the 64 KiB peeked at, and a `tools/list`
//! response the route filters goes through the exchange's own filter
//! ([`reply`]).
//!
//! What it does not serve, it hands over, bytes and all, to hyper at a
//! request boundary, for the rest of the connection: h2c, upgrades,
//! `Expect: 100-continue`, chunked request bodies, HTTP/1.0 clients,
//! non-origin-form targets, the other doors (webhooks, JWKS), the echo
//! route and a peeking route's larger body. HTTP/2 over TLS (ALPN `h2`)
//! never reaches it. Those keep every behaviour they had; the hot path
//! loses hyper's dispatch, its client task and the hand-off between the
//! two.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::App;
use super::doors::route::{Begun, finish, finish_failed, split_route};
use super::exchange::{
    Exchange, InBody, Peer, ProxyError, SavedHead, SessionKey, put_path_and_query, put_raw_headers,
    screen,
};
use crate::config::{Config, Route};
use crate::net::h1::buffers::{self, Lent};
use crate::net::h1::wire::Wire;
use crate::net::h1::{self, put_header};
use crate::net::head::Head as _;
use clock::Clock;
use routing::Routing;
use stop::Stop;

mod clock;
mod gone;
mod relay;
mod reply;
mod request;
mod routing;
mod stop;
mod upstream;

/// The largest request or response head (hyper's `max_buf_size` here).
const MAX_HEAD: usize = 64 << 10;

/// The most bytes of a body read at once: a lent buffer's size, so a
/// read never grows it (nor zeroes it).
const RELAY_BUF: usize = buffers::SIZE;

/// What became of a connection.
pub(super) enum Ended {
    /// Closed (or to be closed): nothing more to do.
    Closed,
    /// To be served by hyper from here on: the connection and what was
    /// already read from it (the start of a request).
    HandOver(Wire, Vec<u8>),
}

/// One client connection.
pub(super) struct Client {
    pub stream: Wire,
    pub app: Arc<App>,
    pub peer: Arc<Peer>,
    pub header_read: Duration,
    pub shutdown: watch::Receiver<bool>,
}

/// A request the core serves, parsed out of the connection's buffer.
struct Req {
    head: ReqHead,
    /// A `HEAD` request (its response has no body).
    head_request: bool,
    route: Arc<Route>,
    /// Where the path after the route's name is in the buffer (a copy
    /// would cost an allocation per request).
    rest: Range<usize>,
    /// The head's length in the buffer.
    head_len: usize,
    /// Body bytes still to come after the head.
    body: u64,
    keep_alive: bool,
}

/// How the phases read a request's head.
enum ReqHead {
    /// Straight from the buffer: on a route whose phases read only names
    /// and values (every route but those with a platform's request
    /// signature or `[tracing]`), the head is never copied into a
    /// `HeaderMap`.
    Raw(h1::Spans),
    /// As `http` types, for every other route (boxed: the raw head is
    /// the common case, and a request moves through a few frames).
    Map(Box<Parts>),
}

/// What a head in the buffer asks for.
enum Next {
    Serve(Req, Arc<Config>),
    Refuse(h1::Refused),
    HandOver,
    /// More bytes needed.
    Incomplete,
}

impl Client {
    /// Serves requests until the connection closes or must be handed over.
    pub async fn serve(mut self) -> Ended {
        // Lent while the connection has bytes to serve (`read_some`).
        let mut buf = Lent::default();
        let mut clock = Clock::new();
        // One wait for shutdown per connection, polled while idle: a new
        // one per request registered with the watch and dropped again.
        let mut stop = Stop::new(&self.shutdown);
        let mut routing = Routing::new(&self.app.config);
        // The last clock read of the previous request, if it ended well:
        // the wait for the next head is timed from it.
        let mut ended = None;
        loop {
            let next = self.next_head(
                &mut buf,
                &mut clock,
                (&mut stop, &mut routing),
                ended.take(),
            );
            let next = match next.await {
                Ok(n) => n,
                Err(()) => return Ended::Closed,
            };
            let (req, cfg) = match next {
                Next::Serve(req, cfg) => (req, cfg),
                Next::HandOver => return Ended::HandOver(self.stream, buf.take()),
                Next::Refuse(r) => {
                    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
                    let resp = crate::net::response::error(status, "request.malformed", r.reason);
                    if reply::write(&mut self.stream, resp, true, false)
                        .await
                        .is_ok()
                    {
                        linger(&mut self.stream).await;
                    }
                    return Ended::Closed;
                }
                Next::Incomplete => return Ended::Closed,
            };
            let keep_alive = req.keep_alive;
            let head_request = req.head_request;
            let whole = req.head_len + req.body as usize;
            let app = self.app.clone();
            let begun = Begun::now();
            let route = req.route.clone();
            let mut x = Exchange::new(&app, &cfg, &route, &self.peer, begun.started());
            let mut taken = Taken::Nothing;
            let served = serve_one(
                &mut x,
                &route,
                (req, &self.shutdown),
                (&mut self.stream, &mut *buf, &mut clock),
                &mut taken,
            );
            let reuse = match served.await {
                Ok(s) => {
                    ended = Some(finish(&x, begun, s.status));
                    s.client_reusable
                }
                Err(Failed::Answer(e)) => {
                    // Answered before forwarding: the connection goes on
                    // when the request is wholly out of it or wholly in
                    // the buffer (then dropped), as hyper's would.
                    let reusable = keep_alive
                        && match taken {
                            Taken::All => true,
                            Taken::Nothing if buf.len() >= whole => {
                                buf.drain(..whole);
                                true
                            }
                            Taken::Nothing | Taken::Part => false,
                        };
                    let resp = finish_failed(&x, begun, e);
                    let wrote = reply::write(&mut self.stream, resp, !reusable, head_request).await;
                    if wrote.is_ok() && !reusable {
                        // The body's unread bytes may still be on the way.
                        linger(&mut self.stream).await;
                    }
                    wrote.is_ok() && reusable
                }
                Err(Failed::Cut(status)) => {
                    finish(&x, begun, status);
                    false
                }
                // Only asked for when a retry follows; never returned.
                Err(Failed::Unauthorized) => {
                    finish(&x, begun, StatusCode::UNAUTHORIZED);
                    false
                }
                Err(Failed::Stale) => {
                    finish(&x, begun, StatusCode::BAD_GATEWAY);
                    false
                }
            };
            if !(reuse && keep_alive) || *self.shutdown.borrow() {
                return Ended::Closed;
            }
            if buf.is_empty() {
                // Idle until the next request: the buffer goes back.
                buf = Lent::default();
            } else {
                // Pipelined: the next request needs no read, and the
                // core's reads and writes spend the task's budget only
                // when they wait (`h1::io`). Spent here, a client that
                // keeps the buffer full still lets the worker's other
                // connections run.
                tokio::task::coop::consume_budget().await;
            }
        }
    }

    /// Reads until the buffer holds a whole head, then decides. The head
    /// must be in within `header_read` of the wait's start (slowloris; an
    /// idle keep-alive connection is closed then too, as hyper's header
    /// timer does); shutdown (`stop`) ends a wait that has read nothing.
    /// `since`: a clock read taken just before, if any (one read fewer).
    async fn next_head(
        &mut self,
        buf: &mut Lent,
        clock: &mut Clock,
        (stop, routing): (&mut Stop, &mut Routing),
        since: Option<Instant>,
    ) -> Result<Next, ()> {
        let mut deadline = since.map(|t| tokio::time::Instant::from_std(t) + self.header_read);
        loop {
            if !buf.is_empty() {
                let next = routing::decide(buf, routing);
                if !matches!(next, Next::Incomplete) {
                    return Ok(next);
                }
            }
            let start =
                *deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.header_read);
            let stream = &mut self.stream;
            let read = clock.until(start, async {
                // The read first: not the shutdown watch polled on every
                // wake-up (random order, tokio's default).
                tokio::select! {
                    biased;
                    r = read_some(stream, buf) => Some(r),
                    // Done only once: the connection then ends.
                    () = std::future::poll_fn(|cx| stop.poll(cx)), if buf.is_empty() => None,
                }
            });
            match read.await {
                Some(Some(Ok(n))) if n > 0 => {}
                _ => return Err(()),
            }
        }
    }
}

/// Reads what the client sent next into `buf`; an idle connection waits
/// for it holding no buffer.
async fn read_some(stream: &mut Wire, buf: &mut Lent) -> std::io::Result<usize> {
    if !buf.is_lent() {
        stream.readable().await?;
        *buf = buffers::lend();
    } else if buf.capacity() - buf.len() < 1024 {
        buf.reserve(8 << 10);
    }
    stream.fill(buf).await
}

/// How much of a request the core has taken from the client connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Taken {
    /// Nothing yet: head and body are where they came, in the buffer or
    /// still on their way.
    Nothing,
    /// All of it, body included.
    All,
    /// Some of its body: the rest is still on its way.
    Part,
}

/// How a request the core served went.
struct Served {
    status: StatusCode,
    /// The request was read to its end and the response written whole.
    client_reusable: bool,
}

enum Failed {
    /// Nothing was written to the client yet: answer this error.
    Answer(ProxyError),
    /// The response was cut after its head (status as sent): close.
    Cut(StatusCode),
    /// The upstream answered 401 to a request that may be sent again;
    /// nothing was written to the client.
    Unauthorized,
    /// A reused upstream connection closed before any response byte, on
    /// a request that may be sent again ([`upstream`]); nothing was
    /// written to the client.
    Stale,
}

impl From<ProxyError> for Failed {
    fn from(e: ProxyError) -> Self {
        Failed::Answer(e)
    }
}

/// One request: the phases, then the exchange with the upstream; on a
/// route with obtained credentials, one more after an upstream 401, as
/// the hyper path does ([`Exchange::renew`]).
async fn serve_one(
    x: &mut Exchange<'_>,
    route: &Route,
    (req, stop): (Req, &watch::Receiver<bool>),
    (client, buf, clock): (&mut Wire, &mut Vec<u8>, &mut Clock),
    taken: &mut Taken,
) -> Result<Served, Failed> {
    let t = &x.config().server.timeouts;
    let to = Timeouts {
        connect: t.connect,
        idle: t.idle,
        response: t.response_headers,
    };
    let to_send = ToSend {
        head_request: req.head_request,
        close: !req.keep_alive,
        stop,
        tls: &x.app().core_tls,
    };
    let (head_len, body) = (req.head_len, req.body);
    let mut out = buffers::lend();
    let io = (&mut *client, &mut *buf, &mut *clock);
    let (key, session, in_body) = prepare(x, route, req, io, taken, &mut out).await?;
    // Sent again on a 401: the head as it came (still at the start of
    // `buf`), and the body (read whole above).
    let saved =
        (x.carries_tokens() && session.is_some()).then(|| SavedHead::of_raw(&buf[..head_len]));
    let mut left = take_body(&in_body, (buf, head_len, body), &mut out, taken);
    if left > 0 && body <= upstream::ONE_WRITE_BODY {
        upstream::gather_body((&mut *client, &mut *clock), &mut out, left, to.idle).await?;
        (left, *taken) = (0, Taken::All);
    }
    let who = (&*key, session.as_ref());
    let (io, sent) = ((&mut *client, &mut *clock), (&mut *out, left));
    let first = upstream::attempt(x, route, io, sent, to, to_send, saved.is_some(), who).await;
    // Matched in place: moving the body and the saved head into a tuple
    // would copy both on every request.
    let again = (&first, &saved, &in_body);
    if !matches!(again, (Err(Failed::Unauthorized), Some(_), InBody::Read(_))) {
        if let Ok(s) = &first {
            x.refused_again(s.status);
        }
        return first;
    }
    let (Some(saved), InBody::Read(b)) = (saved, in_body) else {
        return first;
    };
    let io = (&mut *client, &mut *clock);
    let again = retry(
        x,
        route,
        io,
        (saved, b),
        &mut out,
        (to, to_send),
        (&key, &session),
    )
    .await;
    if let Ok(s) = &again {
        x.refused_again(s.status);
    }
    again
}

/// The phases before forwarding: the head screened, the body read when
/// the route reads it, the call found, and the upstream head written
/// into `out` (the rendered values straight into it on a raw head).
async fn prepare(
    x: &mut Exchange<'_>,
    route: &Route,
    req: Req,
    (client, buf, clock): (&mut Wire, &mut Vec<u8>, &mut Clock),
    taken: &mut Taken,
    out: &mut Vec<u8>,
) -> Result<(SessionKey, Option<Arc<crate::session::Session>>, InBody), Failed> {
    let Req {
        head,
        rest,
        head_len,
        body,
        ..
    } = req;
    let at = (head_len, body, x.config().server.timeouts.idle);
    out.reserve(head_len + 512);
    match head {
        ReqHead::Raw(spans) => {
            // Screened before a body is read; on a route that reads none,
            // one view of the head serves both (`text` is a UTF-8 check).
            if route.takes_body() {
                screen(route, &spans.view(&buf[..head_len]), text(buf, &rest))?;
            }
            // No body-reading future at all for a route that reads none:
            // making and polling one is work for nothing.
            let in_body = match route.takes_body() {
                true => read_body(route, (client, clock), buf, at, taken).await?,
                false => InBody::Relayed,
            };
            let (head, rest) = (spans.view(&buf[..head_len]), text(buf, &rest));
            if !route.takes_body() {
                screen(route, &head, rest)?;
            }
            let (key, session) = x.find_call(&head, rest, &in_body).await?;
            let render =
                |out: &mut Vec<u8>| x.put_rendered(out, (&head, rest), &key, session.as_ref());
            request::write_raw_head(out, &head, route, rest, render, x.peer())?;
            Ok((key, session, in_body))
        }
        ReqHead::Map(mut parts) => {
            screen(route, &*parts, text(buf, &rest))?;
            let in_body = read_body(route, (client, clock), buf, at, taken).await?;
            let rest = text(buf, &rest);
            let (key, session, rendered) = x.prepare(&*parts, rest, &in_body).await?;
            let length = request::framed_length(&parts, body);
            let (uri, headers) = x.outgoing(&mut parts, rest, rendered, false)?;
            request::write_request_head(out, &parts.method, &uri, route, (&headers, length));
            Ok((key, session, in_body))
        }
    }
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

/// The second attempt after an upstream 401 on a route with obtained
/// credentials: renewed, rendered again and sent with the saved head and
/// body.
async fn retry(
    x: &mut Exchange<'_>,
    route: &Route,
    io: (&mut Wire, &mut Clock),
    (saved, b): (SavedHead, Bytes),
    out: &mut Vec<u8>,
    (to, to_send): (Timeouts, ToSend<'_>),
    (key, session): (&SessionKey, &Option<Arc<crate::session::Session>>),
) -> Result<Served, Failed> {
    let Some(parts) = saved.parts() else {
        return Err(Failed::Answer(ProxyError::UpstreamUnreachable));
    };
    // The head has left the buffer: the path after the route's name again
    // from the saved head, as `decide` found it.
    let rest = split_route(parts.uri.path()).1.to_string();
    let renewed = x.renew(Some((parts, b)), &rest, key, session).await?;
    let Some(((mut parts, b), rendered)) = renewed else {
        return Err(Failed::Answer(ProxyError::UpstreamUnreachable));
    };
    let length = request::framed_length(&parts, b.len() as u64);
    let (uri, headers) = x.outgoing(&mut parts, &rest, rendered, false)?;
    out.clear();
    request::write_request_head(out, &parts.method, &uri, route, (&headers, length));
    out.extend_from_slice(&b);
    let who = (&**key, session.as_ref());
    upstream::attempt(x, route, io, (out, 0), to, to_send, false, who).await
}

/// The path after the route's name, at `at` in the buffer (part of a
/// target httparse read as text, so always UTF-8).
fn text<'b>(buf: &'b [u8], at: &Range<usize>) -> &'b str {
    buf.get(at.clone())
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or_default()
}

#[derive(Clone, Copy)]
struct Timeouts {
    connect: Duration,
    idle: Duration,
    response: Duration,
}

/// What the response relay needs to know of the request.
#[derive(Clone, Copy)]
struct ToSend<'s> {
    head_request: bool,
    /// The client asked to close after this response.
    close: bool,
    /// Shutdown: a relayed event stream ends when it begins.
    stop: &'s watch::Receiver<bool>,
    /// TLS to an `https://` upstream.
    tls: &'s tokio_rustls::TlsConnector,
}

/// The body, read whole when the route reads or peeks at it (`body`
/// bytes after the head at the start of `buf`, each read within `idle`):
/// a copy, with head and body left in `buf` (the phases read the head
/// from there) until the upstream request is written.
async fn read_body(
    route: &Route,
    (client, clock): (&mut Wire, &mut Clock),
    buf: &mut Vec<u8>,
    (head_len, body, idle): (usize, u64, Duration),
    taken: &mut Taken,
) -> Result<InBody, Failed> {
    if !route.takes_body() {
        return Ok(InBody::Relayed);
    }
    let want = head_len + body as usize;
    *taken = Taken::Part;
    while buf.len() < want {
        buf.reserve(want - buf.len());
        match clock.within(idle, client.read_buf(buf)).await {
            Some(Ok(n)) if n > 0 => {}
            _ => {
                return Err(Failed::Answer(ProxyError::BadBody(
                    "the request body was malformed or cut short",
                )));
            }
        }
    }
    // Wholly in the buffer now: an error answered before forwarding
    // drops it from there and keeps the connection.
    *taken = Taken::Nothing;
    Ok(InBody::Read(Bytes::copy_from_slice(&buf[head_len..want])))
}

/// Closes after an answer the client may still be sending a body to:
/// our side is shut first, then what arrives is read and dropped for a
/// moment (at most 1 s and 256 KiB), so the kernel does not reset the
/// connection, and the answer with it, over unread bytes (nginx's
/// lingering close).
async fn linger(stream: &mut Wire) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let mut left = 256usize << 10;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while left > 0 {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_header_leaves_out_port_80_only() {
        for (authority, host) in [
            ("crm.example.com:80", "crm.example.com"),
            ("crm.example.com:8080", "crm.example.com:8080"),
            ("crm.example.com:180", "crm.example.com:180"),
            ("crm.example.com", "crm.example.com"),
            ("[::1]:80", "[::1]"),
            ("[::1]:8081", "[::1]:8081"),
        ] {
            let a: http::uri::Authority = authority.parse().unwrap();
            assert_eq!(super::request::host(&a), host, "{authority}");
        }
    }
}
