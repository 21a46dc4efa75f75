//! A request head as offsets into the buffer it was parsed from
//! ([`Spans`]), kept across the exchange's awaits, and read through
//! [`RawHead`] (the [`Head`](crate::net::head::Head) view the phases use)
//! instead of a `HeaderMap`.

use super::*;

/// Where a request head's parts lie in the buffer it was parsed from, as
/// offsets: what the forwarding core keeps while the phases run (across awaits,
/// which the borrowed `httparse` view cannot cross), and reads through
/// [`RawHead`] instead of building a `HeaderMap`.
#[derive(Debug)]
pub struct Spans {
    method: Span,
    query: Option<Span>,
    headers: Lent<(Span, Span)>,
    /// What the parse found of `Host` and `Content-Length`.
    declared: Declared,
    /// Whether it has a `Connection` line.
    connection: bool,
}

/// `start..end` in the buffer.
type Span = (u32, u32);

thread_local! {
    static FREE_SPANS: RefCell<Vec<Vec<(Span, Span)>>> = const { RefCell::new(Vec::new()) };
}

/// A request's header lines, lent, as the buffers are: no allocation and
/// free of the list per request.
impl Lend for (Span, Span) {
    const FREE: &'static LocalKey<RefCell<Vec<Vec<Self>>>> = &FREE_SPANS;
    const SIZE: usize = 32;
    const KEEP_UP_TO: usize = MAX_HEADERS;
}

impl Spans {
    /// The spans of `head`, parsed from `buf`; `None` when its target is
    /// not one `http::Uri` accepts (hyper refuses those with 400, and so
    /// does the core).
    pub fn of(buf: &[u8], head: &RequestHead<'_>) -> Option<Self> {
        let query = target::query_of(head.target)?;
        let at = |s: &[u8]| -> Option<Span> {
            let r = span_in(buf, s)?;
            Some((u32::try_from(r.start).ok()?, u32::try_from(r.end).ok()?))
        };
        // As `http::Uri` reads it: the query ends at a fragment.
        let t = head.target.as_bytes();
        let query = match query {
            Some(q) => Some(at(t.get(q)?)?),
            None => None,
        };
        let mut headers = buffers::lend_of();
        headers.reserve(head.headers.len());
        for h in head.headers {
            headers.push((at(h.name.as_bytes())?, at(h.value)?));
        }
        Some(Self {
            method: at(head.method.as_bytes())?,
            query,
            headers,
            declared: head.declared,
            connection: head.connection,
        })
    }

    /// The head these spans were taken from, read out of `buf` (the same
    /// bytes).
    pub fn view<'b>(&'b self, buf: &'b [u8]) -> RawHead<'b> {
        RawHead { buf, spans: self }
    }
}

/// One header line of a [`RawHead`], as sent.
#[derive(Clone, Copy)]
pub struct Field<'b> {
    /// The name, in the case it came in.
    pub name: &'b [u8],
    /// The whole line, without its line end.
    pub line: &'b [u8],
    /// The value, without the blanks around it.
    pub value: &'b [u8],
}

/// A request head read straight from the bytes the forwarding core parsed.
#[derive(Clone, Copy)]
pub struct RawHead<'b> {
    buf: &'b [u8],
    spans: &'b Spans,
}

impl<'b> RawHead<'b> {
    fn bytes(&self, (start, end): Span) -> &'b [u8] {
        self.buf
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// `httparse` let only tokens and visible ASCII through in these.
    fn str(&self, span: Span) -> &'b str {
        std::str::from_utf8(self.bytes(span)).unwrap_or_default()
    }

    /// Whether the head has a `Connection` line (found by the parse).
    pub fn has_connection(&self) -> bool {
        self.spans.connection
    }

    /// The method as sent, for a head written on: no UTF-8 check.
    pub fn method_bytes(&self) -> &'b [u8] {
        self.bytes(self.spans.method)
    }

    /// The header lines, in order, names as sent.
    pub fn lines(&self) -> impl Iterator<Item = (&'b [u8], &'b [u8])> + '_ {
        (self.spans.headers.iter()).map(|(n, v)| (self.bytes(*n), self.bytes(*v)))
    }

    /// Each header line as sent (`Name: value`, without its line end),
    /// after its name and before its value: a line forwarded unchanged is
    /// copied in one piece.
    pub fn fields(&self) -> impl Iterator<Item = Field<'b>> + '_ {
        (self.spans.headers.iter()).map(|(n, v)| Field {
            name: self.bytes(*n),
            line: self.bytes((n.0, v.1)),
            value: self.bytes(*v),
        })
    }

    /// Every value of header `name` (lowercase), in order. The lengths
    /// are compared before any byte: most lines are passed over on that.
    pub fn values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'b [u8]> + use<'b, 'n, '_> {
        (self.spans.headers.iter())
            .filter(move |((start, end), _)| {
                (end - start) as usize == name.len() && name_is(self.bytes((*start, *end)), name)
            })
            .map(|(_, v)| self.bytes(*v))
    }
}

impl crate::net::head::Head for RawHead<'_> {
    fn method(&self) -> &str {
        self.str(self.spans.method)
    }

    fn query(&self) -> Option<&str> {
        self.spans.query.map(|q| self.str(q))
    }

    fn header(&self, name: &http::HeaderName) -> Option<&[u8]> {
        self.values(name.as_str()).next()
    }

    fn count(&self, name: &http::HeaderName) -> usize {
        self.values(name.as_str()).count()
    }

    /// One pass over the lines for all of `names`, where counting each
    /// name and then finding the key passed over every line once per name
    /// and once more (four passes for the three default key headers). A
    /// line whose name has a length
    /// none of `names` has is passed over on one test.
    fn firsts<'h, 'n>(
        &'h self,
        names: &'n Names,
        firsts: &mut [Option<&'h [u8]>],
    ) -> Result<(), &'n http::HeaderName> {
        let (lengths, all) = (names.lengths(), names);
        let names = names.names();
        if names.len() > 64 {
            return counted_firsts(self, all, firsts);
        }
        let (mut seen, mut twice) = (0u64, 0u64);
        for (n, v) in self.spans.headers.iter() {
            if lengths & length_bit((n.1 - n.0) as usize) == 0 {
                continue;
            }
            let line = self.bytes(*n);
            for (i, name) in names.iter().enumerate() {
                if name_is(line, name.as_str()) {
                    if seen & (1 << i) == 0
                        && let Some(first) = firsts.get_mut(i)
                    {
                        *first = Some(self.bytes(*v));
                    }
                    twice |= seen & (1 << i);
                    seen |= 1 << i;
                }
            }
        }
        match names.get(twice.trailing_zeros() as usize) {
            Some(n) => Err(n),
            None => Ok(()),
        }
    }

    /// As the parse found them, so `screen` does not scan the lines twice
    /// more for these.
    fn declared(&self) -> Declared {
        self.spans.declared
    }

    fn each_header(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (n, v) in self.lines() {
            f(std::str::from_utf8(n).unwrap_or_default(), v);
        }
    }

    fn map(&self) -> Option<&http::HeaderMap> {
        None
    }
}

/// Header line `h` of a head parsed from `buf` as it came, from its name
/// to its value's end (no line end): a line relayed unchanged is copied
/// in one piece. `None` if `h` is not from `buf`.
pub fn line_of<'b>(buf: &'b [u8], h: &httparse::Header<'_>) -> Option<&'b [u8]> {
    let start = span_in(buf, h.name.as_bytes())?.start;
    let end = span_in(buf, h.value)?.end;
    buf.get(start..end)
}

/// Where `s`, a slice of `buf`, lies in it.
pub fn span_in(buf: &[u8], s: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = (s.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    let end = start.checked_add(s.len()).filter(|e| *e <= buf.len())?;
    Some(start..end)
}
