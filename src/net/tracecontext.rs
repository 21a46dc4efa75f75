//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): every
//! request reaches the upstream with a `traceparent`, the caller's when it
//! sent a valid one, else a new trace, so the upstream's logs can be
//! joined to headgate's access line (which carries the trace id). When
//! headgate exports its own spans it takes part in the trace: the
//! upstream's parent is then headgate's span for the upstream exchange.

use std::cell::Cell;

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The trace one request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    /// The trace id.
    pub trace_id: u128,
    /// The caller's span, when it sent a valid `traceparent`.
    pub parent: Option<u64>,
    /// headgate's span for the whole request.
    pub span: u64,
    /// headgate's span for the upstream exchange (the upstream's parent
    /// when headgate takes part in the trace).
    pub hop: u64,
}

impl Trace {
    /// The trace id as the spec writes it (32 lower-case hex digits).
    pub fn hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

/// Makes sure `headers` carry a valid `traceparent`, starting a trace when
/// there is none (an invalid or repeated one is replaced, and its
/// `tracestate` dropped, as §4.3 of the spec says). With `participate`,
/// the upstream's parent becomes headgate's own upstream span.
pub fn ensure(headers: &mut HeaderMap, participate: bool) -> Trace {
    let caller = (headers.get_all(&TRACEPARENT).iter().count() == 1)
        .then(|| headers.get(&TRACEPARENT).and_then(|v| v.to_str().ok()))
        .flatten()
        .and_then(parse);
    let trace = trace_of(caller);
    if caller.is_none() {
        headers.remove(&TRACESTATE);
    }
    if caller.is_none() || participate {
        let parent = if participate { trace.hop } else { trace.span };
        let value = format!("00-{:032x}-{parent:016x}-01", trace.trace_id);
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(TRACEPARENT.clone(), v);
        }
    }
    trace
}

/// The trace of a request headgate answers itself (refused before
/// anything is forwarded), from the caller's `traceparent` value when it
/// sent one well-formed, else a new trace: its span joins the caller's
/// trace all the same.
pub fn observe(traceparent: Option<&str>) -> Trace {
    trace_of(traceparent.and_then(parse))
}

/// New span ids in the caller's trace (trace id, parent id), else in a
/// new trace.
fn trace_of(caller: Option<(u128, u64)>) -> Trace {
    let (span, hop) = (nonzero(), nonzero());
    match caller {
        Some((trace_id, parent)) => Trace {
            trace_id,
            parent: Some(parent),
            span,
            hop,
        },
        None => Trace {
            trace_id: (u128::from(nonzero()) << 64) | u128::from(next()),
            parent: None,
            span,
            hop,
        },
    }
}

/// (trace id, parent id) of a well-formed version-00 `traceparent`.
fn parse(v: &str) -> Option<(u128, u64)> {
    let trace = trace_id(v)?;
    let parent = v.trim().split('-').nth(2)?;
    Some((
        u128::from_str_radix(trace, 16).ok()?,
        u64::from_str_radix(parent, 16).ok()?,
    ))
}

fn nonzero() -> u64 {
    next() | 1
}

/// The trace id of a well-formed version-00 `traceparent` (not all zeros,
/// a non-zero parent id).
fn trace_id(v: &str) -> Option<&str> {
    let mut parts = v.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let ok = version == "00"
        && parts.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    ok.then_some(trace)
}

thread_local! {
    /// wyrand state, seeded per thread from the OS-keyed `RandomState`.
    static STATE: Cell<u64> = Cell::new({
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x9e37_79b9_7f4a_7c15);
        h.finish()
    });
}

/// 64 random bits (wyrand: ids need to be unique, not secret).
fn next() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_parent_is_kept_and_a_missing_or_bad_one_started() {
        let mut h = HeaderMap::new();
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert("traceparent", HeaderValue::from_static(given));
        h.insert("tracestate", HeaderValue::from_static("a=1"));
        let t = ensure(&mut h, false);
        assert_eq!(t.hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent, Some(0x00f067aa0ba902b7));
        assert_eq!(h["traceparent"], given);
        assert_eq!(h["tracestate"], "a=1");
        // Taking part: same trace, the upstream's parent is headgate's hop.
        let t = ensure(&mut h, true);
        let sent = h["traceparent"].to_str().unwrap().to_string();
        assert_eq!(
            sent,
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{:016x}-01", t.hop)
        );

        for bad in [
            "",
            "00-0000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            let mut h = HeaderMap::new();
            if !bad.is_empty() {
                h.insert("traceparent", HeaderValue::from_str(bad).unwrap());
                h.insert("tracestate", HeaderValue::from_static("a=1"));
            }
            let id = ensure(&mut h, false).hex();
            let tp = h["traceparent"].to_str().unwrap().to_string();
            assert_eq!(trace_id(&tp), Some(id.as_str()), "{bad}: {tp}");
            assert!(h.get("tracestate").is_none());
        }
        let mut a = HeaderMap::new();
        let mut b = HeaderMap::new();
        assert_ne!(ensure(&mut a, false), ensure(&mut b, false));
    }
}
