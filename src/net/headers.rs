//! Header hygiene between client and upstream.
//!
//! RFC 9110 §7.6.1: "Intermediaries MUST parse a received Connection header
//! field before a message is forwarded and, for each connection-option in
//! this field, remove any header or trailer field(s) from the message with
//! the same name as the connection-option, and then remove the Connection
//! header field itself". The fixed hop-by-hop names are removed too.

use http::header::{self, HeaderMap, HeaderName};

/// The fixed hop-by-hop names (lowercase).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "keep-alive",
    "proxy-connection",
];

/// Whether a header named `name` is hop-by-hop: a fixed name, or one a
/// `Connection` line lists (`listed`: the value of each such line). For a
/// head read as bytes (the forwarding core); [`strip_hop_by_hop`] is the
/// same rule over a `HeaderMap`.
pub fn is_hop_by_hop<'a>(name: &[u8], mut listed: impl Iterator<Item = &'a [u8]>) -> bool {
    HOP_BY_HOP.iter().any(|h| name_is(name, h))
        || listed.any(|line| {
            (line.split(|b| *b == b',')).any(|t| t.trim_ascii().eq_ignore_ascii_case(name))
        })
}

/// Whether a header name as sent (any case) is `lower`, a lowercase name.
/// Stops at the first differing byte: the standard library's
/// `eq_ignore_ascii_case` compared every byte of equal-length names, and
/// the core compares names a few dozen times a request.
#[inline]
pub fn name_is(name: &[u8], lower: &str) -> bool {
    name.len() == lower.len()
        && (name.iter())
            .zip(lower.as_bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == *b)
}

/// Removes hop-by-hop headers, including every name listed in any
/// `Connection` line.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Most messages carry none: one pass over the names instead of a
    // lookup per hop-by-hop name. Listed names only count with `Connection`.
    if !h.keys().any(|name| HOP_BY_HOP.contains(&name.as_str())) {
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
    for name in HOP_BY_HOP {
        h.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

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
