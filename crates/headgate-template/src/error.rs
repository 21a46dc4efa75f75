//! Template errors: a stable code, where it happened, and what to do.

use std::fmt;

use super::span::Span;

/// What went wrong; each kind has a stable code used in logs, JSON error
/// bodies, metrics and docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Malformed delimiters, tags or expressions.
    Syntax,
    /// A filter that neither Liquid nor headgate defines.
    UnknownFilter,
    /// A tag headgate does not support (e.g. `include`).
    UnknownTag,
    /// Template larger than the compile-time cap.
    TooLarge,
    /// Blocks nested deeper than the compile-time cap.
    TooDeep,
    /// An unguarded reference to a variable that is not set.
    UndefinedVariable,
    /// The rendered text is not a valid HTTP field value.
    InvalidHeaderValue,
    /// A filter failed at render time (e.g. `base64_decode` of non-base64).
    RenderFailed,
}

impl ErrorKind {
    /// The stable code, e.g. `template.undefined_variable`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "template.syntax",
            ErrorKind::UnknownFilter => "template.unknown_filter",
            ErrorKind::UnknownTag => "template.unknown_tag",
            ErrorKind::TooLarge => "template.too_large",
            ErrorKind::TooDeep => "template.too_deep",
            ErrorKind::UndefinedVariable => "template.undefined_variable",
            ErrorKind::InvalidHeaderValue => "template.invalid_header_value",
            ErrorKind::RenderFailed => "template.render_failed",
        }
    }

    /// Whether this is found by `compile` (as opposed to `render`).
    pub fn is_compile_error(self) -> bool {
        matches!(
            self,
            ErrorKind::Syntax
                | ErrorKind::UnknownFilter
                | ErrorKind::UnknownTag
                | ErrorKind::TooLarge
                | ErrorKind::TooDeep
        )
    }
}

#[derive(Debug, Clone)]
struct Repr {
    kind: ErrorKind,
    message: String,
    line: usize,
    column: usize,
    span: Option<Span>,
    /// The template line the error is on (templates are config, not secrets).
    source_line: Option<String>,
    path: Option<String>,
}

/// A template compile or render error.
///
/// Messages never contain variable values, only names and template text.
///
/// ```
/// let err = headgate_template::HeaderTemplate::compile("Bearer << token | nope >>").unwrap_err();
/// assert_eq!(err.code(), "template.unknown_filter");
/// assert_eq!((err.line(), err.column()), (1, 19));
/// ```
#[derive(Clone)]
pub struct TemplateError {
    repr: Box<Repr>,
}

impl TemplateError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            repr: Box::new(Repr {
                kind,
                message: message.into(),
                line: 0,
                column: 0,
                span: None,
                source_line: None,
                path: None,
            }),
        }
    }

    /// Locates the error in `src` (1-based line and column, in characters).
    pub(crate) fn at(mut self, src: &str, span: Span) -> Self {
        let start = span.start.min(src.len());
        let before = &src[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = src[line_start..start].chars().count() + 1;
        let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
        self.repr.line = line;
        self.repr.column = column;
        self.repr.span = Some(span);
        self.repr.source_line = Some(src[line_start..line_end].to_string());
        self
    }

    pub(crate) fn with_path(mut self, path: impl Into<String>) -> Self {
        self.repr.path = Some(path.into());
        self
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.repr.kind
    }

    /// The stable code, e.g. `template.unknown_filter`.
    pub fn code(&self) -> &'static str {
        self.repr.kind.code()
    }

    /// The human message (no location, no code).
    pub fn message(&self) -> &str {
        &self.repr.message
    }

    /// 1-based line, 0 when unknown.
    pub fn line(&self) -> usize {
        self.repr.line
    }

    /// 1-based column in characters, 0 when unknown.
    pub fn column(&self) -> usize {
        self.repr.column
    }

    /// Byte span in the template, when known.
    pub fn span(&self) -> Option<Span> {
        self.repr.span
    }

    /// For `template.undefined_variable`: the dotted path that was undefined.
    pub fn path(&self) -> Option<&str> {
        self.repr.path.as_deref()
    }

    /// The error followed by the offending template line with a caret under
    /// the column, for terminals:
    ///
    /// ```text
    /// 1:19: template.unknown_filter: unknown filter `nope` …
    ///   Bearer << token | nope >>
    ///                     ^
    /// ```
    pub fn display_with_source(&self) -> String {
        let mut out = self.to_string();
        if let (Some(line), true) = (&self.repr.source_line, self.repr.column > 0) {
            let shown: String = line
                .chars()
                .map(|c| if c == '\t' { ' ' } else { c })
                .collect();
            out.push_str("\n  ");
            out.push_str(&shown);
            out.push_str("\n  ");
            out.push_str(&" ".repeat(self.repr.column - 1));
            out.push('^');
        }
        out
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.repr.line > 0 {
            write!(f, "{}:{}: ", self.repr.line, self.repr.column)?;
        }
        write!(f, "{}: {}", self.code(), self.repr.message)
    }
}

impl fmt::Debug for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateError")
            .field("code", &self.code())
            .field("line", &self.repr.line)
            .field("column", &self.repr.column)
            .field("message", &self.repr.message)
            .finish()
    }
}

impl std::error::Error for TemplateError {}
