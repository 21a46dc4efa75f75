//! What keeps a render bounded and LiquidJS-exact: every limit a template
//! runs under, and the per-thread protocol between the compiled template
//! and the renderer.
//!
//! The `liquid` crate is strict everywhere and knows no budgets, so the
//! compiler inserts internal filters into the translated template (their
//! names start with `hg_`; user templates cannot call them):
//! - `{{nil|hg_at:ID}}` marks which variable reference is evaluated next
//!   (so an error can point at it) and clears the miss flag;
//! - `VALUE | hg_defined` fails if the lookup of VALUE missed (a lenient
//!   lookup of a missing key yields `undefined` and raises the flag);
//! - `{{nil|hg_tick}}` counts loop iterations; `HI | hg_range: LO` caps a
//!   `for` range; `hg_out` prints as LiquidJS does; `hg_void` discards.
//!
//! Rendering is synchronous, so a thread-local is exact: [`reset`] before a
//! render, [`take_state`] after it.

use std::cell::Cell;

use super::error::ErrorKind;

/// Largest template source accepted.
pub(crate) const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// Deepest block nesting accepted.
pub(crate) const MAX_NESTING: usize = 32;
/// Loop iterations one render may run (all loops together).
pub(crate) const MAX_ITERATIONS: u32 = 10_000;
/// Largest range a `for` may walk.
pub(crate) const MAX_RANGE: f64 = 10_000.0;
/// Largest string or array any filter may produce.
pub(crate) const MAX_VALUE_BYTES: usize = 256 << 10;
/// Most bytes all filters of one render may read and produce together: a
/// loop of filters over the largest values (a `replace` over 256 KiB,
/// 3,000 times) is otherwise within every other cap and runs for seconds.
pub(crate) const MAX_WORK_BYTES: usize = 16 << 20;
/// Most bytes one render may write (header values are limited to 8 KiB;
/// this bounds the work a hostile template can do before that check).
pub(crate) const MAX_RENDER_BYTES: usize = 64 << 10;
/// The most a rendered header value may be (docs/templates.md "Template language").
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;

/// The internal filter names, as the compiler emits them.
pub(crate) const AT: &str = "hg_at";
pub(crate) const DEFINED: &str = "hg_defined";
pub(crate) const VOID: &str = "hg_void";
pub(crate) const OUT: &str = "hg_out";
pub(crate) const RANGE: &str = "hg_range";
pub(crate) const TICK: &str = "hg_tick";

/// Why the last render stopped, recorded by the internal filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub kind: ErrorKind,
    pub message: &'static str,
}

thread_local! {
    static TICKS: Cell<u32> = const { Cell::new(0) };
    static WORK: Cell<usize> = const { Cell::new(0) };
    static CURRENT: Cell<u32> = const { Cell::new(u32::MAX) };
    static FAILURE: Cell<Option<Failure>> = const { Cell::new(None) };
    static MISS: Cell<bool> = const { Cell::new(false) };
}

/// Clears the state before a render.
pub(crate) fn reset() {
    TICKS.with(|t| t.set(0));
    WORK.with(|w| w.set(0));
    CURRENT.with(|c| c.set(u32::MAX));
    FAILURE.with(|f| f.set(None));
    take_miss();
}

/// The reference being evaluated when rendering stopped, and why.
pub(crate) fn take_state() -> (Option<u32>, Option<Failure>) {
    let cur = CURRENT.with(|c| c.replace(u32::MAX));
    let fail = FAILURE.with(|f| f.take());
    (if cur == u32::MAX { None } else { Some(cur) }, fail)
}

/// Records why the render stops; the error to return from the filter.
pub(crate) fn fail(kind: ErrorKind, message: &'static str) -> liquid_core::Error {
    FAILURE.with(|f| f.set(Some(Failure { kind, message })));
    liquid_core::Error::with_msg(message)
}

/// Records that a lookup found nothing (LiquidJS `undefined`).
pub(crate) fn record_miss() {
    MISS.with(|m| m.set(true));
}

/// Clears the miss flag; returns whether it was set.
pub(crate) fn take_miss() -> bool {
    MISS.with(|m| m.replace(false))
}

/// `hg_at`: reference `id` is evaluated next.
pub(crate) fn at(id: u32) {
    CURRENT.with(|c| c.set(id));
    take_miss();
}

/// `hg_defined`: the reference just evaluated must have been found.
pub(crate) fn defined() -> Result<(), liquid_core::Error> {
    if take_miss() {
        return Err(fail(ErrorKind::UndefinedVariable, "undefined variable"));
    }
    Ok(())
}

/// `hg_tick`: one more loop iteration.
pub(crate) fn tick() -> Result<(), liquid_core::Error> {
    let t = TICKS.with(|t| {
        let v = t.get() + 1;
        t.set(v);
        v
    });
    if t > MAX_ITERATIONS {
        return Err(fail(
            ErrorKind::RenderFailed,
            "loops ran more than 10000 iterations",
        ));
    }
    Ok(())
}

/// `hg_range`: a `for` range may be at most [`MAX_RANGE`] long.
pub(crate) fn range(span: f64) -> Result<(), liquid_core::Error> {
    if span > MAX_RANGE {
        return Err(fail(
            ErrorKind::RenderFailed,
            "a `for` range is longer than 10000",
        ));
    }
    Ok(())
}

/// A filter's result must stay under [`MAX_VALUE_BYTES`], and what the
/// render's filters read and produced together under [`MAX_WORK_BYTES`].
pub(crate) fn value_size(
    input: &dyn liquid_core::ValueView,
    v: &liquid_core::Value,
) -> Result<(), liquid_core::Error> {
    let out = weight(v);
    if out > MAX_VALUE_BYTES {
        return Err(fail(
            ErrorKind::RenderFailed,
            "a filter produced a value larger than 256 KiB",
        ));
    }
    let work = WORK.with(|w| {
        let n = w.get().saturating_add(out).saturating_add(weight(input));
        w.set(n);
        n
    });
    if work > MAX_WORK_BYTES {
        return Err(fail(
            ErrorKind::RenderFailed,
            "the template's filters worked through more than 16 MiB",
        ));
    }
    Ok(())
}

/// The bytes a value stands for: a string's length, eight a list element.
fn weight(v: &dyn liquid_core::ValueView) -> usize {
    if let Some(sc) = v.as_scalar() {
        return liquid_core::ValueView::to_kstr(&sc).len();
    }
    v.as_array().map_or(0, |a| a.size() as usize * 8)
}

/// The marker before reference `id`: `{{nil|hg_at:ID}}`.
pub(crate) fn mark(out: &mut String, id: u32) {
    out.push_str(&format!("{{{{nil|{AT}:{id}}}}}"));
}

/// Evaluates reference `text` (id `id`) strictly and prints nothing: how
/// a filter argument or `for` collection is checked.
pub(crate) fn check_defined(out: &mut String, text: &str, id: u32) {
    mark(out, id);
    out.push_str(&format!("{{{{ {text} | {DEFINED} | {VOID} }}}}"));
}
