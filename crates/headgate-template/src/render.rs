//! Rendering: the fast path for text + variable paths, the Liquid path for
//! everything else, and the header-value check both share.

use std::cell::RefCell;
use std::io::Write as _;

use bytes::Bytes;
use http::HeaderValue;
use serde_json::Value as Json;

use super::HeaderTemplate;
use super::compile::FastSeg;
use super::error::{ErrorKind, TemplateError};
use super::guard::{self, MAX_HEADER_VALUE_BYTES, MAX_RENDER_BYTES};
use super::print::stringify_json;
use super::value::{Scope, ScopeView};

thread_local! {
    /// Reused output buffer for the Liquid path.
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn render_header<S: Scope + ?Sized>(
    t: &HeaderTemplate,
    scope: &S,
) -> Result<HeaderValue, TemplateError> {
    let Some(segs) = &t.inner.compiled.fast else {
        return render_header_slow(t, scope);
    };
    let mut out = Vec::new();
    render_fast(t, segs, scope, &mut out)?;
    to_header(Bytes::from(out))
}

pub(crate) fn render_header_into<S: Scope + ?Sized>(
    t: &HeaderTemplate,
    scope: &S,
    out: &mut Vec<u8>,
) -> Result<(), TemplateError> {
    let Some(segs) = &t.inner.compiled.fast else {
        // Liquid writes through a writer capped from an empty buffer.
        let v = render_header_slow(t, scope)?;
        out.extend_from_slice(v.as_bytes());
        return Ok(());
    };
    let mark = out.len();
    let checked = render_fast(t, segs, scope, out).and_then(|()| checked(&out[mark..]));
    match checked {
        Ok(keep) => {
            out.copy_within(mark + keep.start..mark + keep.end, mark);
            out.truncate(mark + keep.len());
            Ok(())
        }
        Err(e) => {
            out.truncate(mark);
            Err(e)
        }
    }
}

pub(crate) fn render_header_slow<S: Scope + ?Sized>(
    t: &HeaderTemplate,
    scope: &S,
) -> Result<HeaderValue, TemplateError> {
    BUF.with(|b| {
        let mut buf = b.borrow_mut();
        buf.clear();
        render_liquid(t, scope, &mut buf)?;
        to_header(Bytes::copy_from_slice(&buf))
    })
}

pub(crate) fn render_text<S: Scope + ?Sized>(
    t: &HeaderTemplate,
    scope: &S,
) -> Result<String, TemplateError> {
    let mut out = Vec::new();
    render_append(t, scope, &mut out)?;
    // Both paths write UTF-8 only (from `&str`s).
    Ok(String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// Appends the rendered text to `out`, unvalidated.
pub(crate) fn render_append<S: Scope + ?Sized>(
    t: &HeaderTemplate,
    scope: &S,
    out: &mut Vec<u8>,
) -> Result<(), TemplateError> {
    match &t.inner.compiled.fast {
        Some(segs) => render_fast(t, segs, scope, out),
        None => render_liquid(t, scope, out),
    }
}

/// Looks up a dotted path the way LiquidJS does for plain outputs: every
/// step must exist, and only objects have named properties.
fn lookup<'v, S: Scope + ?Sized>(scope: &'v S, path: &[Box<str>]) -> Option<&'v Json> {
    let (root, rest) = path.split_first()?;
    let mut cur = scope.root(root)?;
    for key in rest {
        if cur.is_null() {
            // LiquidJS: a property of null is null.
            return Some(cur);
        }
        cur = cur.as_object()?.get(&**key)?;
    }
    Some(cur)
}

fn undefined(t: &HeaderTemplate, id: u32) -> TemplateError {
    let (path, span) = t
        .inner
        .compiled
        .refs
        .get(id as usize)
        .map(|r| (r.path.clone(), r.span))
        .unwrap_or_default();
    TemplateError::new(
        ErrorKind::UndefinedVariable,
        format!(
            "`{path}` is not defined for this session; register it, or guard it with `| default: …` or `<% if %>`"
        ),
    )
    .with_path(path)
    .at(&t.inner.source, span)
}

/// Fast path: at most 8 lookups cached on the stack, one allocation sized
/// up front.
fn render_fast<S: Scope + ?Sized>(
    t: &HeaderTemplate,
    segs: &[FastSeg],
    scope: &S,
    out: &mut Vec<u8>,
) -> Result<(), TemplateError> {
    const CACHED: usize = 8;
    let mut found: [Option<&Json>; CACHED] = [None; CACHED];
    let mut len = 0;
    let mut nvar = 0;
    for seg in segs {
        match seg {
            FastSeg::Lit(s) => len += s.len(),
            FastSeg::Var { path, id } => {
                let v = lookup(scope, path).ok_or_else(|| undefined(t, *id))?;
                len += match v {
                    Json::String(s) => s.len(),
                    _ => 24,
                };
                if nvar < CACHED {
                    found[nvar] = Some(v);
                }
                nvar += 1;
            }
        }
    }
    out.reserve_exact(len);
    let mut i = 0;
    for seg in segs {
        match seg {
            FastSeg::Lit(s) => out.extend_from_slice(s.as_bytes()),
            FastSeg::Var { path, id } => {
                let v = match found.get(i).copied().flatten() {
                    Some(v) => v,
                    None => lookup(scope, path).ok_or_else(|| undefined(t, *id))?,
                };
                i += 1;
                match v {
                    Json::String(s) => out.extend_from_slice(s.as_bytes()),
                    Json::Number(n) if n.is_i64() => {
                        let _ = write!(out, "{}", n.as_i64().unwrap_or_default());
                    }
                    other => {
                        let mut text = String::new();
                        stringify_json(other, &mut text);
                        out.extend_from_slice(text.as_bytes());
                    }
                }
            }
        }
    }
    Ok(())
}

/// A writer that refuses to grow past [`MAX_RENDER_BYTES`].
struct Capped<'a> {
    buf: &'a mut Vec<u8>,
    overflow: bool,
}

impl std::io::Write for Capped<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > MAX_RENDER_BYTES {
            self.overflow = true;
            return Err(std::io::Error::other("render output too large"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn render_liquid<S: Scope + ?Sized>(
    t: &HeaderTemplate,
    scope: &S,
    buf: &mut Vec<u8>,
) -> Result<(), TemplateError> {
    guard::reset();
    let globals = ScopeView(scope);
    let mut w = Capped {
        buf,
        overflow: false,
    };
    let result = t.inner.compiled.liquid.render_to(&mut w, &globals);
    let (current, failure) = guard::take_state();
    if w.overflow {
        return Err(TemplateError::new(
            ErrorKind::RenderFailed,
            format!("the template produced more than {MAX_RENDER_BYTES} bytes"),
        ));
    }
    match result {
        Ok(()) => Ok(()),
        Err(_) => {
            // `liquid`'s own error text can quote values: never surface it.
            let kind = failure.map_or(ErrorKind::UndefinedVariable, |f| f.kind);
            match (kind, current) {
                (ErrorKind::UndefinedVariable, Some(id)) => Err(undefined(t, id)),
                (ErrorKind::UndefinedVariable, None) => Err(TemplateError::new(
                    ErrorKind::UndefinedVariable,
                    "a variable used by the template is not defined",
                )),
                (kind, cur) => {
                    let msg = failure.map_or("render failed", |f| f.message);
                    let err = TemplateError::new(kind, msg);
                    Err(
                        match cur.and_then(|id| t.inner.compiled.refs.get(id as usize)) {
                            Some(r) => err.at(&t.inner.source, r.span),
                            None => err,
                        },
                    )
                }
            }
        }
    }
}

/// Trims spaces and tabs and checks the result is a field value we will
/// send: no control characters (CR, LF, NUL, …, DEL), at most 8 KiB.
fn to_header(bytes: Bytes) -> Result<HeaderValue, TemplateError> {
    let sliced = bytes.slice(checked(&bytes)?);
    HeaderValue::from_maybe_shared(sliced).map_err(|_| {
        TemplateError::new(
            ErrorKind::InvalidHeaderValue,
            "the rendered value is not a valid header value",
        )
    })
}

/// The part of `b` [`to_header`] keeps: trimmed of spaces and tabs, and
/// checked.
fn checked(b: &[u8]) -> Result<std::ops::Range<usize>, TemplateError> {
    // The common case in one pass with no early exit, which the compiler
    // vectorises: nothing to trim, nothing refused (not three scans of
    // the value).
    let blank = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    let field = |acc: bool, c: &u8| acc & ((*c >= 0x20 && *c != 0x7f) | (*c == b'\t'));
    if b.len() <= MAX_HEADER_VALUE_BYTES
        && !blank(b.first())
        && !blank(b.last())
        && b.iter().fold(true, field)
    {
        return Ok(0..b.len());
    }
    let start = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    let v = &b[start..end];
    if let Some(pos) = v
        .iter()
        .position(|&c| (c < 0x20 && c != b'\t') || c == 0x7f)
    {
        let what = match v[pos] {
            b'\r' => "a carriage return (CR)",
            b'\n' => "a line feed (LF)",
            0 => "a NUL byte",
            _ => "a control character",
        };
        return Err(TemplateError::new(
            ErrorKind::InvalidHeaderValue,
            format!(
                "the rendered value contains {what}; header values cannot, so nothing was sent"
            ),
        ));
    }
    if v.len() > MAX_HEADER_VALUE_BYTES {
        return Err(TemplateError::new(
            ErrorKind::InvalidHeaderValue,
            format!(
                "the rendered value is {} bytes; the limit is {MAX_HEADER_VALUE_BYTES}",
                v.len()
            ),
        ));
    }
    Ok(start..end)
}
