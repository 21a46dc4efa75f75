//! Responses the forwarding core writes from an http `Response` instead of
//! relaying bytes: the route's error answers, and an upstream response the
//! exchange rewrites (an MCP `tools/list` filtered). For the latter the
//! upstream's body is read as an http body, so the rewriting is the very
//! code the hyper path runs.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, StreamBody};
use tokio::io::AsyncReadExt;

use super::RELAY_BUF;
use crate::net::h1::wire::Wire;
use crate::net::h1::{Chunked, Framing, put_content_length, put_header};
use crate::net::response::Body;

/// Writes `resp` to the client: a body of known length with
/// `Content-Length` (in one write with the head), any other chunked, each
/// frame sent as it comes (an event stream stays event by event). `Err`
/// when the client went away or the body failed midway: close then.
pub(super) async fn write(
    client: &mut Wire,
    resp: Response<Body>,
    close: bool,
    head_request: bool,
) -> Result<(), ()> {
    let (parts, mut body) = resp.into_parts();
    let bodiless = head_request
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    let exact = body.size_hint().exact();
    let mut out = Vec::with_capacity(256 + exact.unwrap_or(0).min(16 << 10) as usize);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (n, v) in &parts.headers {
        if n != header::CONTENT_LENGTH && n != header::TRANSFER_ENCODING {
            put_header(&mut out, n.as_str().as_bytes(), v.as_bytes());
        }
    }
    let chunked = exact.is_none();
    match exact {
        _ if parts.status == StatusCode::NO_CONTENT || parts.status == StatusCode::NOT_MODIFIED => {
        }
        Some(n) => put_content_length(&mut out, n),
        None => put_header(&mut out, b"transfer-encoding", b"chunked"),
    }
    if close {
        put_header(&mut out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    if bodiless {
        return client.send(&out).await.map_err(drop);
    }
    // A stream the exchange rewrites (a filtered `tools/list` or GET
    // stream) ends when the client goes, as a relayed one does.
    while let Some(frame) = super::gone::or_gone(client, body.frame()).await.ok_or(())? {
        // Trailers are dropped, as the relay drops them.
        let Ok(data) = frame.map_err(drop)?.into_data() else {
            continue;
        };
        if !chunked {
            out.extend_from_slice(&data);
            continue;
        }
        if data.is_empty() {
            continue;
        }
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\r\n");
        client.send(&out).await.map_err(drop)?;
        out.clear();
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    client.send(&out).await.map_err(drop)
}

/// The rest of an upstream response as an http body: `buf` (what was
/// read after the head) first, then the connection, delimited by
/// `framing`, within `idle` between reads. The connection is not reused.
pub(super) fn from_upstream(stream: Wire, buf: Vec<u8>, framing: Framing, idle: Duration) -> Body {
    let source = Source {
        stream,
        buf,
        framing,
        chunked: Chunked::new(),
        idle,
    };
    let frames = futures_util::stream::unfold(source, |mut s| async move {
        let next = s.next().await?;
        Some((next.map(Frame::data).map_err(Into::into), s))
    });
    StreamBody::new(frames).boxed()
}

struct Source {
    stream: Wire,
    buf: Vec<u8>,
    framing: Framing,
    chunked: Chunked,
    idle: Duration,
}

impl Source {
    /// The next run of body data; `None` at the body's end.
    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if self.ended() {
                return None;
            }
            if !self.buf.is_empty() {
                match self.take() {
                    Ok(data) if data.is_empty() => continue,
                    taken => return Some(taken),
                }
            }
            self.buf.reserve(RELAY_BUF);
            let read = self.stream.read_buf(&mut self.buf);
            match tokio::time::timeout(self.idle, read).await {
                Ok(Ok(0)) if self.framing == Framing::UntilClose => return None,
                Ok(Ok(0)) => return Some(Err(io::ErrorKind::UnexpectedEof.into())),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Some(Err(e)),
                Err(_) => return Some(Err(io::ErrorKind::TimedOut.into())),
            }
        }
    }

    fn ended(&self) -> bool {
        match self.framing {
            Framing::Empty => true,
            Framing::Length(left) => left == 0,
            Framing::Chunked => self.chunked.done(),
            Framing::UntilClose => false,
        }
    }

    /// Takes the body's data out of `buf`; what follows the body's end is
    /// dropped (the connection is not reused).
    fn take(&mut self) -> io::Result<Bytes> {
        let data = match &mut self.framing {
            Framing::Length(left) => {
                let n = (*left).min(self.buf.len() as u64) as usize;
                *left -= n as u64;
                Bytes::copy_from_slice(&self.buf[..n])
            }
            Framing::Chunked => {
                let mut data = Vec::new();
                (self.chunked.read(&self.buf, |d| data.extend_from_slice(d)))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.0))?;
                Bytes::from(data)
            }
            Framing::UntilClose => Bytes::copy_from_slice(&self.buf),
            Framing::Empty => Bytes::new(),
        };
        self.buf.clear();
        Ok(data)
    }
}
