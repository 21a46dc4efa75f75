//! A request head as the phases read it, whichever core parsed it: hyper's
//! [`Parts`], or the forwarding core's [`h1::RawHead`](super::h1::RawHead), a view
//! of the bytes it parsed. The phases only look names up and read values;
//! building a `HeaderMap` for that costs more than the lookups
//! themselves.

use http::HeaderMap;
use http::header::HeaderName;
use http::request::Parts;

use super::h1::RawHead;
use super::headers::Names;

/// See the module docs. `Sync` so a phase may hold one across an await.
pub trait Head: Sync {
    /// The method, as sent.
    fn method(&self) -> &str;
    /// The query string, undecoded, without a fragment.
    fn query(&self) -> Option<&str>;
    /// The first value of header `name`.
    fn header(&self, name: &HeaderName) -> Option<&[u8]>;
    /// The first value of header `name` when it is visible ASCII, as
    /// `HeaderValue::to_str` reads it.
    fn header_str(&self, name: &HeaderName) -> Option<&str> {
        self.header(name).and_then(visible)
    }
    /// How many lines of header `name` the head has.
    fn count(&self, name: &HeaderName) -> usize;
    /// For names asked about together (a route's session key headers):
    /// the first of `names` (in their order) that has more than one line,
    /// or else the first value of each, into `firsts` by index as far as
    /// it reaches.
    fn firsts<'h, 'n>(
        &'h self,
        names: &'n Names,
        firsts: &mut [Option<&'h [u8]>],
    ) -> Result<(), &'n HeaderName> {
        counted_firsts(self, names, firsts)
    }
    /// Every header line, in order (names lowercase on `Parts`, as sent
    /// on a raw head).
    fn each_header(&self, f: &mut dyn FnMut(&str, &[u8]));
    /// What the head declares of its framing and `Host` (see [`Declared`]).
    fn declared(&self) -> Declared;
    /// hyper's map, when the head has one. The check that reads it (a
    /// platform's request signature) runs on routes whose heads always
    /// have one: the forwarding core builds a `HeaderMap` for them.
    fn map(&self) -> Option<&HeaderMap>;
}

/// Either head, as a transport lends it to the phases.
pub enum AnyHead<'a> {
    /// The forwarding core's, read straight from its buffer.
    Raw(RawHead<'a>),
    /// hyper's, or one the core parsed into `http` types.
    Parts(&'a Parts),
}

/// Calls `$f` on whichever head it is.
macro_rules! either {
    ($self:ident, $h:ident => $e:expr) => {
        match $self {
            AnyHead::Raw($h) => $e,
            AnyHead::Parts($h) => $e,
        }
    };
}

impl Head for AnyHead<'_> {
    #[inline]
    fn method(&self) -> &str {
        either!(self, h => h.method())
    }

    #[inline]
    fn query(&self) -> Option<&str> {
        either!(self, h => h.query())
    }

    #[inline]
    fn header(&self, name: &HeaderName) -> Option<&[u8]> {
        either!(self, h => h.header(name))
    }

    #[inline]
    fn count(&self, name: &HeaderName) -> usize {
        either!(self, h => h.count(name))
    }

    #[inline]
    fn firsts<'h, 'n>(
        &'h self,
        names: &'n Names,
        firsts: &mut [Option<&'h [u8]>],
    ) -> Result<(), &'n HeaderName> {
        either!(self, h => h.firsts(names, firsts))
    }

    #[inline]
    fn each_header(&self, f: &mut dyn FnMut(&str, &[u8])) {
        either!(self, h => h.each_header(f))
    }

    #[inline]
    fn declared(&self) -> Declared {
        either!(self, h => h.declared())
    }

    #[inline]
    fn map(&self) -> Option<&HeaderMap> {
        either!(self, h => h.map())
    }
}

impl Head for Parts {
    fn method(&self) -> &str {
        self.method.as_str()
    }

    fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    fn header(&self, name: &HeaderName) -> Option<&[u8]> {
        self.headers.get(name).map(|v| v.as_bytes())
    }

    fn count(&self, name: &HeaderName) -> usize {
        self.headers.get_all(name).iter().count()
    }

    fn each_header(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (n, v) in &self.headers {
            f(n.as_str(), v.as_bytes());
        }
    }

    fn declared(&self) -> Declared {
        let connection = self.headers.get_all(http::header::CONNECTION);
        Declared {
            hosts: self.count(&http::header::HOST),
            length: (self.header_str(&http::header::CONTENT_LENGTH)).and_then(|v| v.parse().ok()),
            lists_framing: lists_framing(connection.iter().map(|v| v.as_bytes())),
            host_required: self.version == http::Version::HTTP_11,
        }
    }

    fn map(&self) -> Option<&HeaderMap> {
        Some(&self.headers)
    }
}

/// [`Head::firsts`] by counting and looking up each name in turn.
pub fn counted_firsts<'h, 'n, H: Head + ?Sized>(
    head: &'h H,
    names: &'n Names,
    firsts: &mut [Option<&'h [u8]>],
) -> Result<(), &'n HeaderName> {
    let names = names.names();
    if let Some(n) = names.iter().find(|n| head.count(n) > 1) {
        return Err(n);
    }
    for (first, n) in firsts.iter_mut().zip(names) {
        *first = head.header(n);
    }
    Ok(())
}

/// What a head says of its `Host` and its framing, for the checks on a
/// head alone ([`screen`](crate::proxy::exchange::screen)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declared {
    /// `Host` lines.
    pub hosts: usize,
    /// The length `Content-Length` declares, if it is a number.
    pub length: Option<u64>,
    /// A `Connection` line lists `Content-Length`, `Transfer-Encoding` or
    /// `Host`. None of them is ever hop-by-hop (RFC 9110 §7.6.1): a proxy
    /// that dropped them as listed would forward a body its upstream
    /// frames differently (request smuggling), so such a head is refused.
    pub lists_framing: bool,
    /// HTTP/1.1, where a request without `Host` is refused (RFC 9112
    /// §3.2); HTTP/1.0 and HTTP/2 (`:authority`) need none.
    pub host_required: bool,
}

/// The names a `Connection` line may never list (see
/// [`Declared::lists_framing`]).
const NEVER_HOP_BY_HOP: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// Whether any of the `Connection` lines `lines` lists a name that is
/// never hop-by-hop.
pub fn lists_framing<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> bool {
    (lines.into_iter())
        .flat_map(|v| v.split(|b| *b == b','))
        .any(|t| is_never_hop_by_hop(t.trim_ascii()))
}

/// Whether `token` (any case) names a header that is never hop-by-hop.
pub fn is_never_hop_by_hop(token: &[u8]) -> bool {
    NEVER_HOP_BY_HOP
        .iter()
        .any(|n| token.eq_ignore_ascii_case(n.as_bytes()))
}

/// `v` as text when it is visible ASCII (tabs allowed): what
/// `HeaderValue::to_str` accepts.
pub fn visible(v: &[u8]) -> Option<&str> {
    (v.iter().all(|b| *b == b'\t' || (0x20..0x7f).contains(b)))
        .then(|| std::str::from_utf8(v).ok())
        .flatten()
}
