//! HTTP/1.1 message framing for the forwarding core: request and response
//! heads parsed with `httparse` into borrowed views, and the body framing
//! each one declares, decided as strictly as RFC 9112 allows, since a proxy
//! that frames a message differently from the server behind it is a
//! request-smuggling hole (SECURITY.md, "The forwarding core").
//!
//! What is refused (400, and the connection closed):
//! - both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.1 lets a
//!   server choose; a proxy that chooses differently from its upstream
//!   smuggles, so neither is trusted);
//! - a `Transfer-Encoding` other than exactly `chunked`, or more than one,
//!   or any on HTTP/1.0 (whose framing does not know it);
//! - a `Content-Length` that is not only digits, or that is repeated, even
//!   with the same value (hyper accepts equal repeats; nothing legitimate
//!   sends them);
//! - obs-fold, bare CR, NUL, a space before the colon (`httparse` itself);
//! - a chunk-size line with no digit, more than 15 hex digits, a space, a
//!   bare LF, or an extension that is not token characters ([`chunked`]).
//!
//! More than [`MAX_HEADERS`] headers, or a head longer than the limit, is
//! 431.

pub mod buffers;
pub mod chunked;
pub mod io;
pub mod pool;
mod raw;
pub mod rewind;
pub mod target;
pub mod wire;

pub use chunked::{ChunkError, Chunked};
pub use raw::{Field, RawHead, Spans, line_of, span_in};

use std::cell::RefCell;
use std::thread::LocalKey;

use buffers::{Lend, Lent};

use super::head::{Declared, counted_firsts, is_never_hop_by_hop, visible};
use super::headers::{Names, length_bit, name_is};

/// The most header lines a head may have (hyper's server default is 100;
/// nginx and HAProxy cap the head's size instead). A platform sends about
/// a dozen.
pub const MAX_HEADERS: usize = 100;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// Why a head was refused: the status to answer (requests) and a reason
/// for the log, never echoing the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refused {
    /// 400 or 431.
    pub status: u16,
    /// Stable, for logs and tests.
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> Refused {
    Refused {
        status: 400,
        reason,
    }
}

/// A parsed request head, borrowing the buffer it was read into.
#[derive(Debug)]
pub struct RequestHead<'b> {
    /// As sent (a token).
    pub method: &'b str,
    /// The request target, as sent.
    pub target: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The header lines, in order.
    pub headers: &'b [httparse::Header<'b>],
    /// The head's length in bytes, its final CRLF included.
    pub len: usize,
    /// How its body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expects_continue: bool,
    /// An `Upgrade` header (WebSocket and the like, or h2c).
    pub upgrade: bool,
    /// A `Connection` line: only then can a line be hop-by-hop by being
    /// listed in one (the writer need not look for one again).
    pub connection: bool,
    /// Its `Host` lines and `Content-Length`, for the phases' checks
    /// (more than one `Host` is refused there, in the route's error style).
    pub declared: Declared,
}

impl RequestHead<'_> {
    /// The first value of header `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header(self.headers, name)
    }
}

/// The first value of header `name` among `headers`.
pub fn header<'b>(headers: &[httparse::Header<'b>], name: &str) -> Option<&'b [u8]> {
    (headers.iter())
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Appends one header line, `name: value` and CRLF, to a head being written.
pub fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a `content-length: n` line. Digits by hand (`write!` through
/// `fmt` is the formatting machinery for one integer), the line made in
/// place and appended in one copy.
pub fn put_content_length(out: &mut Vec<u8>, mut n: u64) {
    const NAME: &[u8] = b"content-length: ";
    // The name, at most 20 digits (`u64::MAX`), CRLF; filled from the end.
    let mut line = [0u8; NAME.len() + 22];
    let mut at = line.len() - 2;
    line[at..].copy_from_slice(b"\r\n");
    loop {
        at -= 1;
        line[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    at -= NAME.len();
    line[at..at + NAME.len()].copy_from_slice(NAME);
    out.extend_from_slice(&line[at..]);
}

/// Room for the header lines of one head, left uninitialised: filling
/// [`MAX_HEADERS`] empty headers first is work done three times a
/// proxied request for nothing: httparse writes only the lines it finds.
pub type Storage<'b> = [std::mem::MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// A [`Storage`] to parse into.
pub fn storage<'b>() -> Storage<'b> {
    [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Parses the request head at the start of `buf`: `Ok(None)` while it is
/// incomplete and under `max_head` bytes.
pub fn parse_request<'b>(
    buf: &'b [u8],
    storage: &'b mut Storage<'b>,
    max_head: usize,
) -> Result<Option<RequestHead<'b>>, Refused> {
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, storage) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            return Err(too_large());
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
        Err(_) => return Err(bad("malformed request head")),
    };
    if len > max_head {
        return Err(too_large());
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(bad("malformed request head"));
    };
    let headers: &'b [httparse::Header<'b>] = req.headers;
    let conn = HeadFlags::of(headers)?;
    let framing = match (conn.length, conn.chunked) {
        (Some(_), true) => return Err(bad("both Content-Length and Transfer-Encoding")),
        (_, true) if minor == 0 => return Err(bad("Transfer-Encoding on HTTP/1.0")),
        (_, true) => Framing::Chunked,
        (Some(0) | None, false) => Framing::Empty,
        (Some(n), false) => Framing::Length(n),
    };
    Ok(Some(RequestHead {
        method,
        target,
        minor,
        headers,
        len,
        framing,
        keep_alive: conn.keep_alive(minor),
        expects_continue: conn.expects_continue,
        upgrade: conn.upgrade,
        connection: conn.connection,
        declared: Declared {
            hosts: conn.hosts,
            length: conn.length,
            lists_framing: conn.lists_framing,
            host_required: minor == 1,
        },
    }))
}

fn too_large() -> Refused {
    Refused {
        status: 431,
        reason: "request head too large",
    }
}

/// What a head's framing and connection headers say.
#[derive(Default)]
struct HeadFlags {
    length: Option<u64>,
    chunked: bool,
    close: bool,
    keep_alive: bool,
    expects_continue: bool,
    upgrade: bool,
    /// A response's `Transfer-Encoding` not ending in `chunked`.
    until_close: bool,
    /// `Host` lines.
    hosts: usize,
    /// A `Connection` line.
    connection: bool,
    /// A `Connection` line lists a name that is never hop-by-hop
    /// ([`Declared::lists_framing`]).
    lists_framing: bool,
    /// A response's `Keep-Alive: timeout=N`.
    keep_alive_timeout: Option<u64>,
}

impl HeadFlags {
    /// Reads the headers once; refuses any ambiguity about the framing.
    fn of(headers: &[httparse::Header<'_>]) -> Result<Self, Refused> {
        let mut c = HeadFlags::default();
        let mut te_seen = false;
        for h in headers {
            // The names that matter are at least 6 bytes long; most custom
            // headers skip the comparisons below on their length alone.
            match h.name.len() {
                4 if name_is(h.name.as_bytes(), "host") => c.hosts += 1,
                6 if name_is(h.name.as_bytes(), "expect") => {
                    c.expects_continue = h.value.eq_ignore_ascii_case(b"100-continue");
                }
                7 if name_is(h.name.as_bytes(), "upgrade") => c.upgrade = true,
                10 if name_is(h.name.as_bytes(), "connection") => {
                    c.connection = true;
                    for t in tokens(h.value) {
                        c.close |= t.eq_ignore_ascii_case(b"close");
                        c.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
                        c.lists_framing |= is_never_hop_by_hop(t);
                    }
                }
                14 if name_is(h.name.as_bytes(), "content-length") => {
                    if c.length.is_some() {
                        return Err(bad("repeated Content-Length"));
                    }
                    c.length = Some(content_length(h.value)?);
                }
                17 if name_is(h.name.as_bytes(), "transfer-encoding") => {
                    if te_seen || !h.value.eq_ignore_ascii_case(b"chunked") {
                        return Err(bad("Transfer-Encoding other than exactly `chunked`"));
                    }
                    te_seen = true;
                    c.chunked = true;
                }
                _ => {}
            }
        }
        Ok(c)
    }

    fn keep_alive(&self, minor: u8) -> bool {
        !self.close && (minor == 1 || self.keep_alive)
    }
}

/// A `Content-Length` value: 1 to 19 digits, nothing else.
fn content_length(v: &[u8]) -> Result<u64, Refused> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(bad("malformed Content-Length"));
    }
    Ok(v.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The comma-separated tokens of a list header, trimmed.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

/// A parsed response head, borrowing the buffer it was read into.
#[derive(Debug)]
pub struct ResponseHead<'b> {
    /// The status code.
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The reason phrase.
    pub reason: &'b str,
    /// The header lines, in order.
    pub headers: &'b [httparse::Header<'b>],
    /// The head's length in bytes.
    pub len: usize,
    /// How its body is delimited.
    pub framing: Framing,
    /// Whether the upstream connection may carry another request.
    pub keep_alive: bool,
    /// A `Connection` line: only then can a line be hop-by-hop by being
    /// listed in one.
    pub connection: bool,
    /// The `timeout=` of its `Keep-Alive` line, in seconds: how long the
    /// server keeps an idle connection open.
    pub keep_alive_timeout: Option<u64>,
}

/// Parses the response head at the start of `buf` (to a request with
/// method `method`): `Ok(None)` while it is incomplete and under
/// `max_head` bytes. A 1xx other than 101 is a head of its own, with
/// [`Framing::Empty`]: the caller passes it on and parses the next.
pub fn parse_response<'b>(
    buf: &'b [u8],
    storage: &'b mut Storage<'b>,
    max_head: usize,
    head_request: bool,
) -> Result<Option<ResponseHead<'b>>, Refused> {
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, storage);
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Err(bad("response head too large"));
        }
        Err(_) => return Err(bad("malformed response head")),
    };
    let (Some(status @ 100..), Some(minor)) = (resp.code, resp.version) else {
        return Err(bad("malformed response head"));
    };
    let headers: &'b [httparse::Header<'b>] = resp.headers;
    // RFC 9112 §6.3, in its order: a response that has no body has none
    // whatever its framing headers say, and they are not judged.
    let bodiless = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let conn = HeadFlags::of_response(headers, bodiless, minor)?;
    let framing = if bodiless {
        Framing::Empty
    } else if conn.until_close {
        Framing::UntilClose
    } else if conn.chunked {
        Framing::Chunked
    } else if let Some(n) = conn.length {
        if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        }
    } else {
        Framing::UntilClose
    };
    let keep_alive = conn.keep_alive(minor) && framing != Framing::UntilClose;
    Ok(Some(ResponseHead {
        status,
        minor,
        reason: resp.reason.unwrap_or(""),
        headers,
        len,
        framing,
        keep_alive,
        connection: conn.connection,
        keep_alive_timeout: conn.keep_alive_timeout,
    }))
}

impl HeadFlags {
    /// A response's framing headers, as hyper's client reads them: a
    /// `Transfer-Encoding` (its last line's last coding) decides and any
    /// `Content-Length` is then ignored, the connection not reused (RFC
    /// 9112 §6.3); one not ending in `chunked` is read until close; any on
    /// HTTP/1.0 is refused. Without one, the `Content-Length` lines must
    /// agree.
    fn of_response(
        headers: &[httparse::Header<'_>],
        bodiless: bool,
        minor: u8,
    ) -> Result<Self, Refused> {
        let mut c = HeadFlags::default();
        let mut te: Option<&[u8]> = None;
        // How many `Content-Length` lines, and the first one's value.
        let (mut lengths, mut first_length) = (0, None);
        for h in headers {
            match h.name.len() {
                10 if name_is(h.name.as_bytes(), "connection") => {
                    c.connection = true;
                    for t in tokens(h.value) {
                        c.close |= t.eq_ignore_ascii_case(b"close");
                        c.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
                    }
                }
                14 if name_is(h.name.as_bytes(), "content-length") => {
                    first_length = first_length.or(Some(h.value));
                    lengths += 1;
                }
                17 if name_is(h.name.as_bytes(), "transfer-encoding") => te = Some(h.value),
                10 if name_is(h.name.as_bytes(), "keep-alive") => {
                    // `timeout=N` among the parameters, in any case.
                    c.keep_alive_timeout = (tokens(h.value)).find_map(|t| {
                        let (k, v) = t.split_at(t.iter().position(|b| *b == b'=')?);
                        let v = std::str::from_utf8(&v[1..]).ok()?.trim();
                        k.eq_ignore_ascii_case(b"timeout").then(|| v.parse().ok())?
                    });
                }
                _ => {}
            }
        }
        if bodiless {
            return Ok(c);
        }
        if let Some(v) = te {
            if minor == 0 {
                return Err(bad("Transfer-Encoding on HTTP/1.0"));
            }
            // hyper reads the coding only from a value that is text (visible
            // ASCII); any other is not chunked, and read until close.
            let last = tokens(v).last().filter(|_| visible(v).is_some());
            c.chunked = last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
            c.until_close = !c.chunked;
            c.close |= lengths > 0 || c.until_close;
            return Ok(c);
        }
        // Most responses have one line, its value kept in the pass above.
        // More are read again, and must agree.
        if lengths < 2 {
            c.length = first_length.map(content_length).transpose()?;
            return Ok(c);
        }
        for h in headers {
            if name_is(h.name.as_bytes(), "content-length") {
                let n = content_length(h.value)?;
                if c.length.is_some_and(|m| m != n) {
                    return Err(bad("conflicting Content-Length"));
                }
                c.length = Some(n);
            }
        }
        Ok(c)
    }
}

/// The request head as `http` types, its values sharing one copy of the
/// head; `None` when a part is not valid there (a target `Uri` refuses,
/// a method that is not a token): the caller answers 400.
pub fn to_parts(buf: &[u8], head: &RequestHead<'_>) -> Option<http::request::Parts> {
    let bytes = bytes::Bytes::copy_from_slice(&buf[..head.len]);
    let at = |s: &[u8]| Some(bytes.slice(span_in(buf, s)?));
    // Room for what the exchange adds (the rendered headers,
    // `X-Forwarded-*`) without the map growing and rehashing.
    let mut headers = http::HeaderMap::with_capacity(head.headers.len() + 8);
    for h in head.headers {
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = http::HeaderValue::from_maybe_shared(at(h.value)?).ok()?;
        headers.append(name, value);
    }
    let mut r = http::Request::new(());
    *r.method_mut() = http::Method::from_bytes(head.method.as_bytes()).ok()?;
    *r.uri_mut() = http::Uri::from_maybe_shared(at(head.target.as_bytes())?).ok()?;
    *r.version_mut() = if head.minor == 0 {
        http::Version::HTTP_10
    } else {
        http::Version::HTTP_11
    };
    *r.headers_mut() = headers;
    Some(r.into_parts().0)
}

#[cfg(test)]
mod tests;
