//! Whether a request target is one `http` takes as a path and query,
//! checked in place. `http::uri::PathAndQuery::try_from` copies the
//! target into a new allocation to check it, on every request, for an
//! answer the core only needs as yes or no. The two must never disagree (a target one side
//! refuses and the other forwards is a smuggling risk), so the byte
//! classes are not restated here: they are learnt from `http` itself,
//! once, and a unit test and the `h1_request_differential` fuzz target
//! compare the two verdicts.

use std::ops::Range;
use std::sync::LazyLock;

use http::uri::PathAndQuery;

/// `http` refuses a longer path and query (`u16::MAX - 1`).
const MAX_LEN: usize = u16::MAX as usize - 1;

/// A byte `http` refuses in this part.
const REFUSED: u8 = 0;
/// A byte `http` takes in this part.
const TAKEN: u8 = 1;
/// `?` in the path: the query starts after it.
const QUERY: u8 = 2;
/// `#`: `http` reads no further.
const FRAGMENT: u8 = 3;

/// What each byte is in a path and in a query, as `http` reads it: one
/// of the classes above. A byte's verdict depends only on the byte and
/// the part it is in (`http`'s scanner classifies byte by byte); bytes
/// past 0x7F are UTF-8 in a `&str`, which `http` takes. One lookup a
/// byte, rather than testing for `#`, `?` and UTF-8 before the table.
struct Classes {
    path: [u8; 256],
    query: [u8; 256],
}

static CLASSES: LazyLock<Classes> = LazyLock::new(|| {
    let probe = |before: &str, b: usize| {
        let s = format!("{before}{}x", char::from(b as u8));
        PathAndQuery::try_from(s.as_str()).is_ok()
    };
    let class = |before: &str, b: usize| match b {
        0x23 => FRAGMENT,
        0x80.. => TAKEN,
        _ if probe(before, b) => TAKEN,
        _ => REFUSED,
    };
    let mut path = std::array::from_fn(|b| class("/a", b));
    path[usize::from(b'?')] = QUERY;
    Classes {
        path,
        query: std::array::from_fn(|b| class("/?a", b)),
    }
});

/// Whether `target`, an origin-form request target (`/…`), is one
/// `PathAndQuery::try_from` accepts.
pub fn is_valid(target: &str) -> bool {
    query_of(target).is_some()
}

/// For a target [`is_valid`] accepts, where its query lies as `http`
/// reads it (after the first `?`, up to a fragment): `Some(None)` when it
/// has none; `None` for a target `http` refuses. The same pass that
/// checks the bytes finds it (not two more scans for `#` and `?`).
pub fn query_of(target: &str) -> Option<Option<Range<usize>>> {
    let t = target.as_bytes();
    if t.first() != Some(&b'/') || t.len() > MAX_LEN {
        return None;
    }
    let classes = &*CLASSES;
    let mut at = 0;
    while let Some(&b) = t.get(at) {
        match classes.path[usize::from(b)] {
            TAKEN => at += 1,
            QUERY => break,
            FRAGMENT => return Some(None),
            _ => return None,
        }
    }
    if at == t.len() {
        return Some(None);
    }
    let q = at + 1;
    for (i, &b) in t.iter().enumerate().skip(q) {
        match classes.query[usize::from(b)] {
            TAKEN => {}
            FRAGMENT => return Some(Some(q..i)),
            _ => return None,
        }
    }
    Some(Some(q..t.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_says(t: &str) -> bool {
        PathAndQuery::try_from(t).is_ok()
    }

    #[test]
    fn every_ascii_byte_in_every_place_is_judged_as_http_judges_it() {
        let places = [
            "/", "/a", "/a?", "/a?b", "/a?b?", "/a#", "/a?b#", "/%", "/a/",
        ];
        for before in places {
            for b in 0u8..0x80 {
                for after in ["", "x", "?", "#", "/"] {
                    let t = format!("{before}{}{after}", char::from(b));
                    assert_eq!(is_valid(&t), http_says(&t), "{t:?}");
                }
            }
        }
    }

    #[test]
    fn pairs_of_the_bytes_that_change_the_part_agree_too() {
        let special = [
            '?', '#', '/', '%', '"', '{', '}', ' ', '\\', '^', '`', '|', '[', ']',
        ];
        for a in special {
            for b in special {
                for c in special {
                    let t = format!("/{a}{b}{c}");
                    assert_eq!(is_valid(&t), http_says(&t), "{t:?}");
                }
            }
        }
    }

    /// Where the query lies, as `http::Uri` reads it, for the targets of
    /// the tests above.
    #[test]
    fn the_query_found_is_the_one_http_reads() {
        let specials = ['?', '#', '/', '%', 'a', 'é'];
        for a in specials {
            for b in specials {
                for c in specials {
                    let t = format!("/{a}{b}{c}");
                    let ours = query_of(&t).map(|q| q.map(|r| t[r].to_string()));
                    let theirs = PathAndQuery::try_from(t.as_str())
                        .ok()
                        .map(|p| p.query().map(str::to_string));
                    assert_eq!(ours, theirs, "{t:?}");
                }
            }
        }
    }

    #[test]
    fn utf8_and_length_agree() {
        for t in ["/café", "/?q=日本", "/a#é", "/\u{10FFFF}"] {
            assert_eq!(is_valid(t), http_says(t), "{t:?}");
        }
        let longest = format!("/{}", "a".repeat(MAX_LEN - 1));
        assert!(is_valid(&longest) && http_says(&longest));
        let over = format!("{longest}a");
        assert!(!is_valid(&over) && !http_says(&over));
    }
}
