//! What the two differential targets share: the verdict, the runtime
//! hyper runs on, and the rule that judges the own core against hyper.

use std::cell::RefCell;
use std::fmt::Debug;

/// What a reader made of the bytes.
#[derive(Debug)]
pub enum Verdict<R> {
    Accepted(R),
    Refused(&'static str),
    /// The bytes end before the message does, or it is not one the
    /// target compares: nothing to judge.
    Skip,
}

thread_local! {
    static RT: RefCell<tokio::runtime::Runtime> = RefCell::new(
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
    );
}

/// Runs `f` on this thread's runtime, bounded by 2 s.
pub fn run<T>(f: impl Future<Output = Option<T>>) -> Option<T> {
    RT.with_borrow(|rt| {
        rt.block_on(async {
            let timed = tokio::time::timeout(std::time::Duration::from_secs(2), f);
            timed.await.ok().flatten()
        })
    })
}

/// Header lines as compared: names lower-cased, sorted (a `HeaderMap`
/// groups by name).
pub fn lines<'a>(h: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = h
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec()))
        .collect();
    v.sort();
    v
}

/// The chunked reader's refusals, stricter than hyper on purpose
/// (SECURITY.md, "The forwarding core"): both targets decode chunked
/// bodies with it.
const CHUNKED_STRICTER: &[&str] = &[
    "chunk size with no digit",
    "bad byte in the chunk size",
    "bad byte in a chunk extension",
    "chunk size over 15 hex digits",
    "CRLF expected",
    "bare LF or NUL in a trailer",
    "trailer section too large",
    "malformed trailer field",
];

/// The same reading, or a refusal by both, or a refusal by the own core
/// for one of its deliberate strictnesses (`stricter`, or the chunked
/// reader's).
pub fn judge<R: PartialEq + Debug>(
    data: &[u8],
    own: impl FnOnce(&[u8]) -> Verdict<R>,
    hyper: impl FnOnce(&[u8]) -> Option<R>,
    stricter: &[&str],
) {
    if data.len() > 8 << 10 {
        return;
    }
    let mine = own(data);
    if matches!(mine, Verdict::Skip) {
        return;
    }
    match (mine, hyper(data)) {
        (Verdict::Accepted(a), Some(b)) => assert_eq!(a, b, "both read it, differently"),
        (Verdict::Accepted(a), None) => panic!("own core reads what hyper refuses: {a:?}"),
        (Verdict::Refused(why), Some(b)) => assert!(
            stricter.contains(&why) || CHUNKED_STRICTER.contains(&why),
            "own core refuses ({why}) what hyper reads as {b:?}"
        ),
        (Verdict::Refused(_), None) | (Verdict::Skip, _) => {}
    }
}

/// A chunked body at the start of `rest`, decoded by the own core's
/// reader: `Ok(None)` when the bytes end before it does.
pub fn dechunk(rest: &[u8]) -> Result<Option<Vec<u8>>, &'static str> {
    let mut c = headgate::internals::net::h1::Chunked::new();
    let mut body = Vec::new();
    c.read(rest, |d| body.extend_from_slice(d))
        .map_err(|e| e.0)?;
    Ok(c.done().then_some(body))
}
