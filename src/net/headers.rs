//! Header hygiene between client and upstream.
//!
//! RFC 9110 §7.6.1: "Intermediaries MUST parse a received Connection header
//! field before a message is forwarded and, for each connection-option in
//! this field, remove any header or trailer field(s) from the message with
//! the same name as the connection-option, and then remove the Connection
//! header field itself". The fixed hop-by-hop names are removed too.

use http::header::{self, HeaderMap, HeaderName};

/// The fixed hop-by-hop names (lowercase).
pub const HOP_BY_HOP: NameSet = NameSet::new(&[
    "connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "keep-alive",
    "proxy-connection",
]);

/// A fixed set of lowercase header names, asked about names as sent (any
/// case). The lengths present are kept as bits: most names asked about
/// have a length no name in the set has, and are answered without a
/// comparison (the core asks for every header line of every request and
/// response; comparing each against each name was a visible share of
/// a request's cost).
pub struct NameSet {
    names: &'static [&'static str],
    /// Bit `n` set: a name of length `n` (63: of 63 or more).
    lengths: u64,
}

impl NameSet {
    /// The set of `names`, each lowercase.
    pub const fn new(names: &'static [&'static str]) -> Self {
        let mut lengths = 0u64;
        let mut i = 0;
        while i < names.len() {
            lengths |= length_bit(names[i].len());
            i += 1;
        }
        Self { names, lengths }
    }

    /// The lengths its names have, as [`length_bit`]s.
    pub const fn lengths(&self) -> u64 {
        self.lengths
    }

    /// Whether `name`, in any case, is in the set.
    #[inline]
    pub fn contains(&self, name: &[u8]) -> bool {
        self.lengths & length_bit(name.len()) != 0 && self.names.iter().any(|n| name_is(name, n))
    }
}

/// Header names asked about together (a route's session key headers),
/// with the lengths they have as [`length_bit`]s, worked out once when
/// the route is compiled rather than on every request.
#[derive(Debug, Clone, Default)]
pub struct Names {
    names: Vec<HeaderName>,
    lengths: u64,
}

impl Names {
    /// `names`, in their order.
    pub fn new(names: Vec<HeaderName>) -> Self {
        let lengths = (names.iter()).fold(0, |m, n| m | length_bit(n.as_str().len()));
        Self { names, lengths }
    }

    /// The names, in their order.
    pub fn names(&self) -> &[HeaderName] {
        &self.names
    }

    /// The lengths its names have, as [`length_bit`]s.
    pub fn lengths(&self) -> u64 {
        self.lengths
    }

    /// Whether `name`, in any case, is one of them.
    #[inline]
    pub fn contains(&self, name: &[u8]) -> bool {
        self.lengths & length_bit(name.len()) != 0
            && self.names.iter().any(|n| name_is(name, n.as_str()))
    }
}

/// A name's length as one bit of a `u64` (63: 63 bytes or more), for
/// sets of names that pass over lines of other lengths with one test.
#[inline]
pub const fn length_bit(len: usize) -> u64 {
    1 << if len < 63 { len } else { 63 }
}

/// Whether a header named `name` is hop-by-hop: a fixed name, or one a
/// `Connection` line lists (`listed`: the value of each such line). For a
/// head read as bytes (the forwarding core); [`strip_hop_by_hop`] is the
/// same rule over a `HeaderMap`.
pub fn is_hop_by_hop<'a>(name: &[u8], mut listed: impl Iterator<Item = &'a [u8]>) -> bool {
    HOP_BY_HOP.contains(name)
        || listed.any(|line| {
            (line.split(|b| *b == b',')).any(|t| t.trim_ascii().eq_ignore_ascii_case(name))
        })
}

/// Whether a header name as sent (any case) is `lower`, a lowercase name.
/// The core compares names a dozen times a request, most of them names
/// that match (`Content-Length`, the key and auth headers): eight bytes
/// at a time from eight bytes on (the two words overlap below sixteen),
/// rather than a loop byte by byte.
#[inline]
pub fn name_is(name: &[u8], lower: &str) -> bool {
    let lower = lower.as_bytes();
    if name.len() != lower.len() {
        return false;
    }
    if name.len() < 8 {
        return (name.iter())
            .zip(lower)
            .all(|(a, b)| a.to_ascii_lowercase() == *b);
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let mut at = 0;
    loop {
        if ascii_lowercase(word(name, at)) != word(lower, at) {
            return false;
        }
        if at + 8 == name.len() {
            return true;
        }
        // The last word ends at the name's end, overlapping the one before.
        at = (at + 8).min(name.len() - 8);
    }
}

/// The eight bytes of `w` with `A`..=`Z` made lowercase, the rest as they
/// are (bytes from 0x80 included): each byte's high bit computes whether
/// it is at least `A` and at most `Z`, without carries between bytes.
fn ascii_lowercase(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let low7 = w & !HIGH;
    let from_a = low7 + ONES * (0x80 - b'A' as u64);
    let past_z = low7 + ONES * (0x80 - b'Z' as u64 - 1);
    let upper = from_a & !past_z & !w & HIGH;
    w | (upper >> 2)
}

/// Removes hop-by-hop headers, including every name listed in any
/// `Connection` line.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Most messages carry none: one pass over the names instead of a
    // lookup per hop-by-hop name. Listed names only count with `Connection`.
    if !h
        .keys()
        .any(|name| HOP_BY_HOP.names.contains(&name.as_str()))
    {
        return;
    }
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()).ok())
        .collect();
    for name in listed {
        h.remove(name);
    }
    for name in HOP_BY_HOP.names {
        h.remove(*name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    proptest::proptest! {
        /// As the standard library's comparison, for names of every
        /// length around the word size and every byte (letters, their
        /// neighbours `@`, `[`, `` ` ``, `{`, and bytes from 0x80).
        #[test]
        fn name_is_agrees_with_eq_ignore_ascii_case(
            lower in "[a-z0-9@\\[`{_-]{0,24}",
            flips in proptest::collection::vec(proptest::prelude::any::<(u8, bool)>(), 0..24),
        ) {
            let lower = lower.to_ascii_lowercase();
            let mut name = lower.clone().into_bytes();
            for (i, (byte, upper)) in flips.into_iter().enumerate().take(name.len()) {
                name[i] = if upper { name[i].to_ascii_uppercase() } else if byte % 4 == 0 { byte } else { name[i] };
            }
            proptest::prop_assert_eq!(name_is(&name, &lower), name.eq_ignore_ascii_case(lower.as_bytes()));
        }
    }

    #[test]
    fn ascii_lowercase_changes_only_capital_letters() {
        for b in 0..=255u8 {
            let w = ascii_lowercase(u64::from_le_bytes([b; 8]));
            assert_eq!(w.to_le_bytes(), [b.to_ascii_lowercase(); 8], "{b:#x}");
        }
    }

    #[test]
    fn a_name_set_knows_its_names_in_any_case_and_nothing_else() {
        const SET: NameSet = NameSet::new(&[
            "te",
            "keep-alive",
            "a-name-of-sixty-four-bytes-or-more-is-counted-as-sixty-three-too",
        ]);
        for yes in [
            "TE",
            "te",
            "Keep-Alive",
            "A-NAME-OF-SIXTY-FOUR-BYTES-OR-MORE-IS-COUNTED-AS-SIXTY-THREE-TOO",
        ] {
            assert!(SET.contains(yes.as_bytes()), "{yes}");
        }
        // Same lengths as names in the set, other bytes; other lengths,
        // the long bucket included.
        for no in [
            "tf",
            "keep-alivf",
            "x",
            "",
            "a-name-of-sixty-four-bytes-or-more-is-counted-as-sixty-three-tooo",
        ] {
            assert!(!SET.contains(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn hop_by_hop_names_are_known_from_bytes_too() {
        let lines: [&[u8]; 2] = [b"close, X-Secret-Hop", b"x-other"];
        for name in ["Keep-Alive", "transfer-encoding", "x-secret-hop", "X-Other"] {
            assert!(
                is_hop_by_hop(name.as_bytes(), lines.iter().copied()),
                "{name}"
            );
        }
        assert!(!is_hop_by_hop(b"x-keep", lines.iter().copied()));
        assert!(!is_hop_by_hop(b"x-other", std::iter::empty()));
    }

    #[test]
    fn removes_listed_and_fixed_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("close, X-Secret-Hop"),
        );
        h.append("connection", HeaderValue::from_static("x-other"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }
}
