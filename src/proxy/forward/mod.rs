//! The forwarding core: one task per client connection does the whole
//! exchange for an HTTP/1.1 request, cleartext or over TLS, to an
//! `http://` or `https://` upstream (nginx's shape). It reads and parses
//! the request head ([`crate::net::h1`]) and hands the request to
//! [`Exchange::run`], the one sequencer of the route's phases, as a
//! [`transport::CoreTransport`]: it reads the body, writes the rewritten
//! head and the body to a pooled keep-alive upstream connection in one
//! write, parses the response head and relays head and body, and gives
//! the upstream connection back only when its response was read exactly
//! to its end. Both connections are a
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
    Exchange, InBody, Peer, ProxyError, RawLines, put_headers, put_path_and_query,
};
use crate::config::{Config, ErrorStyle, Route};
use crate::net::h1::buffers::{self, Lent};
use crate::net::h1::wire::Wire;
use crate::net::h1::{self, put_header};
use crate::net::head::Head as _;
use clock::Clock;
use routing::Routing;
use stop::Stop;
use transport::CoreTransport;

mod clock;
mod gone;
mod relay;
mod reply;
mod request;
mod routing;
mod stop;
mod transport;
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
    /// The request, to the route [`Routing::chosen`] names.
    Serve(Req),
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
            let req = match next {
                Next::Serve(req) => req,
                Next::HandOver => return Ended::HandOver(self.stream, buf.take()),
                Next::Refuse(r) => {
                    let resp = ProxyError::BadHead(r).to_response(ErrorStyle::Json, None);
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
            let Some((cfg, route)) = routing.chosen() else {
                return Ended::Closed;
            };
            let (keep_alive, head_request) = (req.keep_alive, req.head_request);
            let whole = req.head_len + req.body as usize;
            // Borrowed, not cloned: the app, config and route are shared by
            // every worker (see `Routing::chosen`).
            let app = &*self.app;
            let begun = Begun::now();
            let mut x = Exchange::new(app, cfg, route, &self.peer, begun.started());
            let io = (&mut self.stream, &mut *buf, &mut clock);
            let mut core = CoreTransport::new(req, io, (&self.shutdown, &app.core_tls), cfg);
            let ran = x.run(&mut core).await;
            let taken = core.taken();
            let reuse = match ran {
                Ok(s) => {
                    ended = Some(finish(&x, begun, s.status));
                    s.client_reusable
                }
                Err(e) => {
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
            };
            if !(reuse && keep_alive) || stop.begun() {
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

/// Closes after an answer the client may still be sending a body to:
/// our side is shut first, then what arrives is read and dropped for a
/// moment (at most 1 s and 256 KiB), so the kernel does not reset the
/// connection, and the answer with it, over unread bytes (nginx's
/// lingering close).
async fn linger(stream: &mut Wire) {
    let _ = stream.shutdown().await;
    // On the heap: in place it would be part of every connection's task.
    let mut sink = vec![0u8; 4096];
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
