//! The upstream's side of one exchange on the forwarding core: the
//! response head read (1xx passed on), rewritten for the client, and
//! relayed with its body read by read, so an event stream goes out event
//! by event. The upstream connection goes back to the pool only when its
//! response was read exactly to its end. A response the exchange rewrites
//! (an MCP `tools/list` filtered) goes through [`super::reply`] instead.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::net::h1::wire::Wire;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::clock::Clock;
use super::gone::or_gone;
use super::upstream::{fail, is_stale};
use super::{MAX_HEAD, RELAY_BUF, Served, reply};
use crate::config::Route;
use crate::net::drain::STREAM_GRACE;
use crate::net::h1::buffers;
use crate::net::h1::{self, Chunked, Framing, MAX_HEADERS, pool, put_content_length, put_header};
use crate::net::headers::{is_hop_by_hop, name_is};
use crate::proxy::exchange::{Exchange, ProxyError, Sent};
use crate::session::Session;

/// What the access log records for a request whose client closed its
/// connection before the answer (nginx's 499).
const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(s) => s,
    Err(_) => StatusCode::BAD_REQUEST,
};

/// What became of a relay that did not fail.
pub(super) enum Relayed {
    /// The exchange came to this (a response cut after its head is
    /// served with its status, the client's connection not reusable).
    Sent(Sent<Served>),
    /// A reused connection closed before any response byte, on a request
    /// that may be sent again: sent once more on a new one.
    Stale,
}

/// The upstream's side of one exchange: its response head read, rewritten
/// and relayed with its body.
pub(super) struct Relay<'c> {
    pub route: &'c Route,
    pub up: pool::Pooled,
    pub client: &'c mut Wire,
    pub clock: &'c mut Clock,
    pub idle: Duration,
    pub head_request: bool,
    /// The client asked to close after this response.
    pub close: bool,
    /// A 401 that dropped the request's tokens is held back
    /// ([`Exchange::held_back`]), not relayed.
    pub retry: bool,
    /// The connection was reused and the request may be sent again: its
    /// closing before any response byte is [`Relayed::Stale`].
    pub stale_is_retried: bool,
    /// The exchange rewrites the response ([`Exchange::filters_response`]).
    pub rewrites: bool,
    /// The connection's shutdown signal.
    pub stop: &'c watch::Receiver<bool>,
    /// While relaying an event stream: the shutdown signal, after which
    /// the stream ends once it is idle for [`STREAM_GRACE`]. A stream
    /// never ends by itself, and a drain would otherwise wait out its
    /// deadline for it; a plain response is left to finish.
    pub stopping: Option<watch::Receiver<bool>>,
}

/// A response cut after its head went out (`status` as sent, or 499
/// when the client left first): the client's connection is closed.
fn cut(status: StatusCode) -> Relayed {
    Relayed::Sent(Sent::Answered(Served {
        status,
        client_reusable: false,
    }))
}

/// `fut`'s output; with `stopping` (an event stream), `None` once
/// shutdown has begun and `fut` stays pending for [`STREAM_GRACE`].
async fn unless_stopping<F: Future>(
    stopping: &mut Option<watch::Receiver<bool>>,
    fut: F,
) -> Option<F::Output> {
    let Some(rx) = stopping else {
        return Some(fut.await);
    };
    let mut fut = std::pin::pin!(fut);
    if !*rx.borrow() {
        tokio::select! {
            out = &mut fut => return Some(out),
            _ = rx.wait_for(|stop| *stop) => {}
        }
    }
    tokio::time::timeout(STREAM_GRACE, fut).await.ok()
}

impl Relay<'_> {
    pub async fn run(
        mut self,
        x: &mut Exchange<'_>,
        within: Duration,
        (started, wall): (Instant, Option<SystemTime>),
        (key, session): (&str, Option<&Arc<Session>>),
        out: &mut Vec<u8>,
    ) -> Result<Relayed, ProxyError> {
        let route = self.route;
        let mut rbuf = buffers::lend();
        let deadline = tokio::time::Instant::from_std(started) + within;
        // 1xx heads are passed on; the final head is the one relayed.
        let head = loop {
            let parsed = loop {
                // Nothing read yet: no head to look for.
                if !rbuf.is_empty()
                    && let Some(p) = self.final_head(&rbuf, out)?
                {
                    break p;
                }
                let read = self.clock.until(deadline, self.up.stream.fill(&mut rbuf));
                let Some(read) = or_gone(self.client, read).await else {
                    return Ok(cut(CLIENT_CLOSED));
                };
                let e = match read {
                    None => return Err(ProxyError::UpstreamTimeout),
                    Some(Ok(0)) => std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the upstream closed the connection before its response",
                    ),
                    Some(Err(e)) => e,
                    Some(Ok(_)) => continue,
                };
                if self.stale_is_retried && rbuf.is_empty() && is_stale(&e) {
                    return Ok(Relayed::Stale);
                }
                return Err(fail(route, &e));
            };
            match parsed {
                Reply::Informational(len) => {
                    let _ = self.client.send(&rbuf[..len]).await;
                    rbuf.drain(..len);
                }
                Reply::Final(h) => break h,
            }
        };
        let Final {
            len,
            framing,
            keep_alive,
            idle,
            status,
            is_event_stream: is_stream,
            parts,
        } = head;
        let head_at = x.answered(status, started, wall, key, session).await;
        if x.held_back(status, self.retry) {
            return Ok(Relayed::Sent(Sent::Refused));
        }
        rbuf.drain(..len);
        let gauge = is_stream.then(|| x.app().metrics.open_streams.clone());
        self.stopping = is_stream.then(|| self.stop.clone());
        if let Some(g) = &gauge {
            g.inc();
        }
        let relayed = match parts {
            // Boxed: only a route that filters `tools/list` takes it.
            Some(parts) => Box::pin(self.rewritten(x, *parts, framing, rbuf.take())).await,
            None => (self.relayed(out, (framing, keep_alive, idle), &mut rbuf, head_at)).await,
        };
        if let Some(g) = &gauge {
            g.dec();
        }
        match relayed {
            Ok(client_reusable) => Ok(Relayed::Sent(Sent::Answered(Served {
                status,
                client_reusable,
            }))),
            Err(()) => Ok(cut(status)),
        }
    }

    /// Relays the response byte for byte; the upstream connection is
    /// pooled when it ended exactly at the response's end. Whether the
    /// client's connection may carry another request.
    /// `head_at`: when the head was in (the pooled connection's idle time
    /// counts from it).
    async fn relayed(
        mut self,
        head: &mut Vec<u8>,
        (framing, keep_alive, idle): (Framing, bool, Duration),
        rbuf: &mut Vec<u8>,
        head_at: Instant,
    ) -> Result<bool, ()> {
        let up_clean = self.body(head, framing, rbuf).await?;
        if up_clean && keep_alive {
            pool::checkin(self.up, head_at, idle);
        }
        Ok(framing != Framing::UntilClose)
    }

    /// The response as the exchange rewrites it, written with framing of
    /// its own (the upstream connection is not reused).
    async fn rewritten(
        self,
        x: &Exchange<'_>,
        parts: http::response::Parts,
        framing: Framing,
        rbuf: Vec<u8>,
    ) -> Result<bool, ()> {
        let body = reply::from_upstream(self.up.stream, rbuf, framing, self.idle);
        let resp = x.filter_response(Response::from_parts(parts, body)).await;
        let resp = crate::net::drain::ends_when_idle_at_shutdown(resp, self.stop);
        reply::write(self.client, resp, self.close, self.head_request).await?;
        Ok(true)
    }
}

/// A response head read from the upstream.
enum Reply {
    /// A 1xx (not 101) of this many bytes, passed on as it is.
    Informational(usize),
    Final(Final),
}

/// The final response head (the head the client gets is written into the
/// buffer [`Relay::final_head`] is given).
struct Final {
    /// The upstream head's length.
    len: usize,
    framing: Framing,
    keep_alive: bool,
    /// How long the connection may be reused while idle.
    idle: Duration,
    status: StatusCode,
    is_event_stream: bool,
    /// The head as http parts (framing left out), when the exchange
    /// rewrites the response.
    parts: Option<Box<http::response::Parts>>,
}

impl Relay<'_> {
    /// The response head at the start of `rbuf`, if it is all there.
    fn final_head(&self, rbuf: &[u8], out: &mut Vec<u8>) -> Result<Option<Reply>, ProxyError> {
        let route_fail = |why: &str| {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
            fail(self.route, &e)
        };
        let mut storage = h1::storage();
        let head = match h1::parse_response(rbuf, &mut storage, MAX_HEAD, self.head_request) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(None),
            Err(r) => return Err(route_fail(r.reason)),
        };
        if head.status == 101 {
            return Err(route_fail("101 to a request that asked for no upgrade"));
        }
        if head.status < 200 {
            return Ok(Some(Reply::Informational(head.len)));
        }
        let status = StatusCode::from_u16(head.status).map_err(|_| route_fail("bad status"))?;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(head.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        let connection = |h: &httparse::Header<'_>| name_is(h.name.as_bytes(), "connection");
        // The client's framing is the core's own, written below. A
        // `Content-Length` passes only where it frames nothing and tells
        // the size of what a GET would have sent (HEAD, 304); a 1xx or 204
        // carries none (RFC 9110 §8.6).
        let describes = self.head_request || head.status == 304;
        let bodiless = describes || head.status == 204;
        let lines = usize::from(head.connection) * MAX_HEADERS;
        let mut is_event_stream = false;
        let mut parts = self
            .rewrites
            .then(|| Box::new(Response::new(()).into_parts().0));
        for h in head.headers {
            let listed = head.headers.iter().filter(|h| connection(h)).take(lines);
            if is_hop_by_hop(h.name.as_bytes(), listed.map(|c| c.value))
                || (name_is(h.name.as_bytes(), "content-length") && !describes)
            {
                continue;
            }
            if name_is(h.name.as_bytes(), "content-type") {
                is_event_stream = h.value.starts_with(b"text/event-stream");
            }
            match h1::line_of(rbuf, h) {
                Some(line) => {
                    out.extend_from_slice(line);
                    out.extend_from_slice(b"\r\n");
                }
                None => put_header(out, h.name.as_bytes(), h.value),
            }
            if let Some(p) = &mut parts
                && let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(h.name.as_bytes()),
                    HeaderValue::from_bytes(h.value),
                )
            {
                p.headers.append(n, v);
            }
        }
        if let Some(p) = &mut parts {
            p.status = status;
        }
        match head.framing {
            Framing::Length(n) => put_content_length(out, n),
            Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            Framing::Empty if !bodiless => put_content_length(out, 0),
            Framing::Empty | Framing::UntilClose => {}
        }
        if self.close || head.framing == Framing::UntilClose {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(Some(Reply::Final(Final {
            len: head.len,
            framing: head.framing,
            keep_alive: head.keep_alive,
            idle: pool::idle_for(head.keep_alive_timeout),
            status,
            is_event_stream,
            parts,
        })))
    }

    /// Relays the body after `head`, starting with what `rbuf` already
    /// holds. `Ok(true)` when the upstream connection ended exactly at the
    /// response's end (it may be reused); `Err` when the relay broke.
    async fn body(
        &mut self,
        out: &mut Vec<u8>,
        framing: Framing,
        rbuf: &mut Vec<u8>,
    ) -> Result<bool, ()> {
        match framing {
            Framing::Empty => {
                self.send(out).await?;
                Ok(rbuf.is_empty())
            }
            Framing::Length(n) => {
                let now = (n.min(rbuf.len() as u64)) as usize;
                let extra = rbuf.len() - now;
                out.extend_from_slice(&rbuf[..now]);
                self.send(out).await?;
                let mut left = n - now as u64;
                let chunk = rbuf;
                while left > 0 {
                    // Never past the end: stray bytes can only have come
                    // with the head.
                    let got = self.read(chunk, left).await?;
                    self.send(&chunk[..got]).await?;
                    left -= got as u64;
                }
                Ok(extra == 0)
            }
            Framing::Chunked => {
                let mut reader = Chunked::new();
                let used = reader.read(rbuf, |_| {}).map_err(|_| ())?;
                let mut clean = used == rbuf.len();
                out.extend_from_slice(&rbuf[..used]);
                self.send(out).await?;
                let chunk = rbuf;
                while !reader.done() {
                    let got = self.read(chunk, u64::MAX).await?;
                    let used = reader.read(&chunk[..got], |_| {}).map_err(|_| ())?;
                    clean = used == got;
                    self.send(&chunk[..used]).await?;
                }
                Ok(clean)
            }
            Framing::UntilClose => {
                out.extend_from_slice(rbuf);
                self.send(out).await?;
                let chunk = rbuf;
                loop {
                    chunk.clear();
                    chunk.reserve(RELAY_BUF);
                    let read = self.up.stream.read_buf(chunk);
                    let read = self.clock.within(self.idle, read);
                    let read = or_gone(self.client, read);
                    match unless_stopping(&mut self.stopping, read)
                        .await
                        .flatten()
                        .ok_or(())?
                    {
                        Some(Ok(0)) => return Ok(false),
                        Some(Ok(n)) => self.send(&chunk[..n]).await?,
                        Some(Err(_)) | None => return Err(()),
                    }
                }
            }
        }
    }

    /// Reads at most `max` bytes of the body into `chunk` (emptied first)
    /// within the idle timeout; the upstream closing before the end is a
    /// broken relay.
    async fn read(&mut self, chunk: &mut Vec<u8>, max: u64) -> Result<usize, ()> {
        use bytes::BufMut as _;
        chunk.clear();
        chunk.reserve(RELAY_BUF);
        let want = (RELAY_BUF as u64).min(max) as usize;
        let mut room = (&mut *chunk).limit(want);
        let read = self.up.stream.read_buf(&mut room);
        let read = self.clock.within(self.idle, read);
        let read = or_gone(self.client, read);
        match unless_stopping(&mut self.stopping, read)
            .await
            .flatten()
            .ok_or(())?
        {
            Some(Ok(n)) if n > 0 => Ok(n),
            _ => Err(()),
        }
    }

    /// To the client. The body's loops read through tokio, which yields
    /// for them (see [`h1::io`]).
    async fn send(&mut self, b: &[u8]) -> Result<(), ()> {
        self.client.send(b).await.map_err(|_| ())
    }
}
