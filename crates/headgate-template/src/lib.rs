//! Header templates: `<< … >>` Liquid, compiled once, rendered per request.
//!
//! ```
//! use headgate_template::HeaderTemplate;
//! use serde_json::json;
//!
//! let t = HeaderTemplate::compile("Bearer << call.metadata.token >>")?;
//! let vars = json!({"call": {"metadata": {"token": "tok-123"}}});
//! assert_eq!(t.render(&vars)?, "Bearer tok-123");
//! # Ok::<(), headgate_template::TemplateError>(())
//! ```
//!
//! The language is Liquid with `<< >>` for output and `<% %>` for tags, so a
//! platform's own `{{ }}` templating leaves it alone. Literal text, including
//! `{{`, `{%`, `}}` and `%}`, comes out byte for byte. Filters and the
//! treatment of undefined variables follow LiquidJS (`strictVariables`,
//! `lenientIf`), which is what the voice platforms run.
//!
//! This is the template language of the headgate proxy on its own: no
//! async runtime, HTTP stack or store. Its root is what a caller needs:
//! [`HeaderTemplate`] (compile, render), the variables it renders from
//! ([`Vars`], or any [`Scope`]; a `serde_json::Value` object is one),
//! its errors ([`TemplateError`], [`ErrorKind`], [`Span`]),
//! [`MAX_HEADER_VALUE_BYTES`] and [`redact`].
//!
//! Rendering is synchronous and keeps per-thread state: a render's work
//! budget (`guard`, set at the start of each render) and a reused output
//! buffer (`render`, cleared before use). A render call never awaits and
//! never re-enters another render, so a thread running many renders (an
//! async worker) never sees one render's state in another's.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod compile;
mod error;
mod filters;
mod guard;
mod print;
mod render;
mod span;
mod syntax;
mod value;

pub use error::{ErrorKind, TemplateError};
pub use guard::MAX_HEADER_VALUE_BYTES;
pub use span::Span;
pub use value::{Scope, Vars};

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;

/// A compiled header template.
///
/// Cheap to clone (the compiled form is shared) and safe to render from many
/// threads at once.
#[derive(Clone)]
pub struct HeaderTemplate {
    inner: Arc<Inner>,
}

struct Inner {
    /// See [`HeaderTemplate::id`].
    id: u64,
    source: Box<str>,
    compiled: compile::Compiled,
}

impl HeaderTemplate {
    /// Parses and checks a template: syntax, tags, filter names, size and
    /// nesting. Errors carry line and column.
    pub fn compile(source: &str) -> Result<Self, TemplateError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let compiled = compile::compile(source)?;
        Ok(Self {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                source: source.into(),
                compiled,
            }),
        })
    }

    /// Renders a header value from `scope` (a JSON object or [`Vars`]).
    ///
    /// The result is trimmed of surrounding spaces and tabs, and must be a
    /// valid HTTP field value: control characters (CR, LF, NUL, …) or more
    /// than [`MAX_HEADER_VALUE_BYTES`] are `template.invalid_header_value`.
    pub fn render<S: Scope + ?Sized>(&self, scope: &S) -> Result<HeaderValue, TemplateError> {
        render::render_header(self, scope)
    }

    /// Appends the value [`render`](Self::render) would return to `out`,
    /// with no allocation of its own on the fast path: a proxy writing a
    /// request head renders straight into it. On error `out` is left as
    /// it was.
    pub fn render_into<S: Scope + ?Sized>(
        &self,
        scope: &S,
        out: &mut Vec<u8>,
    ) -> Result<(), TemplateError> {
        render::render_header_into(self, scope, out)
    }

    /// Renders to text without header validation (e.g. a resolver URL).
    pub fn render_string<S: Scope + ?Sized>(&self, scope: &S) -> Result<String, TemplateError> {
        render::render_text(self, scope)
    }

    /// Appends the rendered text to `out`, without header validation: to
    /// build a key from several templates with one allocation.
    pub fn render_append<S: Scope + ?Sized>(
        &self,
        scope: &S,
        out: &mut Vec<u8>,
    ) -> Result<(), TemplateError> {
        render::render_append(self, scope, out)
    }

    /// Renders through the Liquid interpreter even when the fast path
    /// applies: for equivalence tests and benchmarks.
    #[doc(hidden)]
    pub fn render_slow<S: Scope + ?Sized>(&self, scope: &S) -> Result<HeaderValue, TemplateError> {
        render::render_header_slow(self, scope)
    }

    /// Whether this template renders without the Liquid interpreter (only
    /// text and plain variable paths).
    pub fn is_fast_path(&self) -> bool {
        self.inner.compiled.fast.is_some()
    }

    /// This compiled template's own number, never another's in this
    /// process (its clones share it; compiling the same text again gives
    /// a new one): what a value rendered from it may be kept under.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Root names the template reads (`call`, `session`, `request`, `env`, …).
    pub fn roots(&self) -> impl Iterator<Item = &str> {
        self.inner.compiled.roots.iter().map(String::as_str)
    }

    /// What the template reads under `root`: for each reference, the first
    /// key (`None` when it is the root itself or an index such as
    /// `credentials[name]`) and where it is written. A config uses it to
    /// check `credentials.NAME` against the declared credentials.
    pub fn keys_under<'a>(
        &'a self,
        root: &'a str,
    ) -> impl Iterator<Item = (Option<&'a str>, Span)> + 'a {
        (self.inner.compiled.members.iter())
            .filter(move |m| m.root == root)
            .map(|m| (m.key.as_deref(), m.span))
    }
}

impl fmt::Debug for HeaderTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderTemplate")
            .field("source", &self.inner.source)
            .field("fast_path", &self.is_fast_path())
            .finish()
    }
}

/// A rendered value as `render --redact` and the console show it: its
/// first four characters (a scheme such as `Bear`) and its length.
pub fn redact(v: &str) -> String {
    let shown: String = v.chars().take(4).collect();
    format!("{shown}… ({} bytes)", v.len())
}

#[cfg(test)]
mod tests;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
