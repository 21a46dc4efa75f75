//! The upstream side of one exchange on the forwarding core: a pooled or
//! new connection, the request written to it (in one write whenever the
//! body is at hand), the response relayed, and the one retry a reused
//! connection earns.
//!
//! Which failures are sent again, and why a call is never run twice by
//! headgate: only a request on a *reused* connection that the upstream
//! closed or reset before sending a single response byte, and only when
//! the whole request is still in hand (no body streamed from the client).
//! An idle keep-alive connection the server closed as the request arrived
//! fails exactly so; a server that read the request and then crashed
//! fails the same way, which is the risk every HTTP client that retries
//! takes (Chromium's rule; RFC 9110 §9.2.2). A fresh connection's failure
//! is never retried: it proves nothing about the request.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::AsyncReadExt;

use super::clock::Clock;
use super::relay::{Relay, Relayed};
use super::{Served, Timeouts, ToSend};
use crate::config::Route;
use crate::net::h1::wire::Wire;
use crate::net::h1::{buffers, pool};
use crate::proxy::exchange::{Exchange, ProxyError, Sent, warn_failed};

/// A body at most this long that had not all arrived with its head is
/// read whole from the client before the upstream is written to, so head
/// and body leave in one write (nginx buffers request bodies likewise): a
/// head alone in a segment made a small HTTP/1.0 server reset connections
/// under a burst.
pub(super) const ONE_WRITE_BODY: u64 = 64 << 10;

/// One exchange with the upstream: `out` (head and the body bytes at
/// hand) written, the rest of the body (`left` bytes) streamed from the
/// client, the response relayed (its head written into `out`). With
/// `retry`, a 401 that dropped the tokens is not relayed but answered
/// [`Sent::Refused`].
#[allow(clippy::too_many_arguments)]
pub(super) async fn attempt(
    x: &mut Exchange<'_>,
    route: &Route,
    (client, clock): (&mut Wire, &mut Clock),
    (out, left): (&mut Vec<u8>, u64),
    to: Timeouts,
    to_send: ToSend<'_>,
    retry: bool,
    who: (&str, Option<&Arc<crate::session::Session>>),
) -> Result<Sent<Served>, ProxyError> {
    // One clock read for the pool and the response's wait, as hyper's
    // client counts that wait: from before the connection is taken. A
    // streamed body's upload does not count against it.
    let mut started = Instant::now();
    let mut fresh_only = false;
    loop {
        let (mut up, reused) =
            connect(route, (to.connect, to_send.tls), started, fresh_only).await?;
        let again = reused && left == 0;
        if let Err(e) = up.stream.send(out).await {
            if again && is_stale(&e) {
                fresh_only = true;
                continue;
            }
            return Err(fail(route, &e));
        }
        if left > 0 {
            copy_body((&mut *client, &mut *clock), &mut up.stream, left, to.idle).await?;
            started = Instant::now();
        }
        let wall = x.timings.map(|_| SystemTime::now());
        let relay = Relay {
            route,
            up,
            client: &mut *client,
            clock: &mut *clock,
            idle: to.idle,
            head_request: to_send.head_request,
            close: to_send.close,
            retry,
            stale_is_retried: again,
            rewrites: x.filters_response(),
            stop: to_send.stop,
            stopping: None,
        };
        match relay.run(x, to.response, (started, wall), who, out).await {
            Ok(Relayed::Stale) => {
                tracing::debug!(route = %route.name, "a reused upstream connection closed before answering; sending once more on a new one");
                fresh_only = true;
            }
            Ok(Relayed::Sent(sent)) => return Ok(sent),
            Err(e) => return Err(e),
        }
    }
}

/// Whether a write or read error says the peer had closed the connection.
pub(super) fn is_stale(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        e.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof
    )
}

/// Logs an upstream failure and says what the client gets (502).
pub(super) fn fail(route: &Route, e: &std::io::Error) -> ProxyError {
    let err = ProxyError::UpstreamUnreachable;
    warn_failed(route, &err, e);
    err
}

/// A pooled connection to the route's upstream (unless `fresh_only`), or
/// a new one; whether it was pooled.
async fn connect(
    route: &Route,
    (within, tls): (Duration, &tokio_rustls::TlsConnector),
    now: Instant,
    fresh_only: bool,
) -> Result<(pool::Pooled, bool), ProxyError> {
    let Some(authority) = route.upstream.authority() else {
        return Err(ProxyError::UpstreamUnreachable);
    };
    let https = route.upstream.scheme() == Some(&http::uri::Scheme::HTTPS);
    while let Some(c) = pool::checkout(authority.as_str(), https, now).filter(|_| !fresh_only) {
        // One closed while idle reads as EOF (or its stray bytes, which
        // would desync the next response): never used.
        if c.stream.is_quiet() {
            return Ok((c, true));
        }
    }
    // Boxed: opening a connection (and a TLS handshake) is the rare path,
    // and its state would otherwise be part of every connection's task.
    let opened = Box::pin(open(authority, https, within, tls)).await;
    match opened {
        Ok(stream) => Ok((
            pool::Pooled {
                authority: authority.as_str().into(),
                stream,
            },
            false,
        )),
        Err(e) => {
            let err = ProxyError::UpstreamUnreachable;
            warn_failed(route, &err, &e);
            Err(err)
        }
    }
}

/// A new connection to `authority`, over TLS when `https`.
async fn open(
    authority: &http::uri::Authority,
    https: bool,
    within: Duration,
    tls: &tokio_rustls::TlsConnector,
) -> Result<Wire, crate::net::upstream::SendError> {
    if https {
        crate::net::upstream::open_tls(tls, authority, within)
            .await
            .map(Wire::from)
    } else {
        crate::net::upstream::open(authority, within)
            .await
            .map(Wire::from)
    }
}

/// Reads the rest of a small body (`left` bytes) from the client onto
/// `out`, behind its head, each read within `idle`.
pub(super) async fn gather_body(
    (client, clock): (&mut Wire, &mut Clock),
    out: &mut Vec<u8>,
    left: u64,
    idle: Duration,
) -> Result<(), ProxyError> {
    use bytes::BufMut as _;
    let want = out.len() + left as usize;
    while out.len() < want {
        let missing = want - out.len();
        out.reserve(missing);
        // Never past the body: the next request's bytes stay unread.
        let mut room = (&mut *out).limit(missing);
        match clock.within(idle, client.read_buf(&mut room)).await {
            Some(Ok(n)) if n > 0 => {}
            _ => return Err(cut_short()),
        }
    }
    Ok(())
}

fn cut_short() -> ProxyError {
    ProxyError::BadBody("the request body was malformed or cut short")
}

/// Streams the rest of a `Content-Length` request body to the upstream,
/// with backpressure (one buffer, written before the next read) and the
/// idle timeout between reads.
async fn copy_body(
    (client, clock): (&mut Wire, &mut Clock),
    up: &mut Wire,
    mut left: u64,
    idle: Duration,
) -> Result<(), ProxyError> {
    use bytes::BufMut as _;
    let mut chunk = buffers::lend();
    while left > 0 {
        chunk.clear();
        let want = chunk.capacity().min(left as usize);
        let mut room = (&mut *chunk).limit(want);
        let read = client.read_buf(&mut room);
        let n = match clock.within(idle, read).await {
            Some(Ok(0) | Err(_)) | None => return Err(cut_short()),
            Some(Ok(n)) => n,
        };
        if up.send(&chunk[..n]).await.is_err() {
            return Err(ProxyError::UpstreamUnreachable);
        }
        left -= n as u64;
    }
    Ok(())
}
