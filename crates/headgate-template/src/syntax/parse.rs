//! The parser for expressions: values, variable paths, filters and their
//! arguments, over the lexer's tokens.

use super::{Lexed, Span, Tok, lex_expr};
use crate::error::{ErrorKind, TemplateError};

/// One segment of a variable path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seg {
    /// `.name` or `["name"]`.
    Key(String),
    /// `[0]`, `[var]`, …: anything not a constant key.
    Other,
}

/// A value in an expression: a literal, a range, or a variable path.
#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Literal,
    /// `(lo..hi)`: only allowed as a `for` collection.
    Range {
        lo: Span,
        hi: Span,
        span: Span,
    },
    Path {
        root: String,
        segs: Vec<Seg>,
        span: Span,
    },
}

/// A filter call: `| name: arg, key: arg`.
#[derive(Debug, Clone)]
pub(crate) struct FilterCall {
    pub name: String,
    pub name_span: Span,
    pub args: Vec<Operand>,
}

/// `value | filter …` as in an output or an `assign`.
#[derive(Debug, Clone)]
pub(crate) struct FilteredValue {
    pub value: Operand,
    /// End of the value's text, where a check filter can be inserted.
    pub value_end: usize,
    pub filters: Vec<FilterCall>,
}

/// Literal keywords that are not variables.
const KEYWORDS: &[&str] = &["true", "false", "nil", "null", "empty", "blank"];

pub(crate) struct Parser<'s> {
    src: &'s str,
    toks: Vec<Lexed>,
    pos: usize,
    whole: Span,
}

impl<'s> Parser<'s> {
    pub(crate) fn new(src: &'s str, span: Span) -> Result<Self, TemplateError> {
        Ok(Self {
            src,
            toks: lex_expr(src, span)?,
            pos: 0,
            whole: span,
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|l| &l.tok)
    }

    fn err(&self, msg: impl Into<String>) -> TemplateError {
        let span = self
            .toks
            .get(self.pos)
            .map(|l| l.span)
            .unwrap_or(Span::new(self.whole.end, self.whole.end));
        TemplateError::new(ErrorKind::Syntax, msg).at(self.src, span)
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }

    pub(crate) fn expect_end(&self, what: &str) -> Result<(), TemplateError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.err(format!("unexpected text after {what}")))
        }
    }

    pub(crate) fn eat_ident(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(w)) if w == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes a single `=` (as in `assign x = …`).
    pub(crate) fn eat_assign(&mut self) -> bool {
        match self.toks.get(self.pos) {
            Some(l) if l.tok == Tok::Op && &self.src[l.span.start..l.span.end] == "=" => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn ident(&mut self) -> Result<String, TemplateError> {
        match self.peek() {
            Some(Tok::Ident(w)) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.err("a name is expected here")),
        }
    }

    fn end_of_prev(&self) -> usize {
        self.toks
            .get(self.pos.wrapping_sub(1))
            .map_or(self.whole.start, |l| l.span.end)
    }

    /// A literal, a range or a variable path.
    pub(crate) fn operand(&mut self) -> Result<Operand, TemplateError> {
        let Some(first) = self.toks.get(self.pos).cloned() else {
            return Err(self.err("a value is expected here"));
        };
        match first.tok {
            Tok::Str(_) | Tok::Num => {
                self.pos += 1;
                Ok(Operand::Literal)
            }
            Tok::LParen => {
                self.pos += 1;
                let lo_start = self.toks.get(self.pos).map_or(0, |l| l.span.start);
                let lo = self.operand()?;
                let lo_span = Span::new(lo_start, self.end_of_prev());
                if self.peek() != Some(&Tok::DotDot) {
                    return Err(self.err("expected `..` in a range `(a..b)`"));
                }
                self.pos += 1;
                let hi_start = self.toks.get(self.pos).map_or(0, |l| l.span.start);
                let hi = self.operand()?;
                let hi_span = Span::new(hi_start, self.end_of_prev());
                if self.peek() != Some(&Tok::RParen) {
                    return Err(self.err("expected `)` to close the range"));
                }
                self.pos += 1;
                if matches!(lo, Operand::Range { .. }) || matches!(hi, Operand::Range { .. }) {
                    return Err(self.err("a range bound cannot be a range"));
                }
                Ok(Operand::Range {
                    lo: lo_span,
                    hi: hi_span,
                    span: Span::new(first.span.start, self.end_of_prev()),
                })
            }
            Tok::Ident(ref w) if KEYWORDS.contains(&w.as_str()) => {
                self.pos += 1;
                Ok(Operand::Literal)
            }
            Tok::Ident(root) => {
                self.pos += 1;
                let mut segs = Vec::new();
                loop {
                    match self.peek() {
                        Some(Tok::Dot) => {
                            self.pos += 1;
                            segs.push(Seg::Key(self.ident()?));
                        }
                        Some(Tok::LBracket) => {
                            self.pos += 1;
                            let key = match self.toks.get(self.pos).map(|l| l.tok.clone()) {
                                Some(Tok::Str(s)) => {
                                    self.pos += 1;
                                    Seg::Key(s)
                                }
                                _ => {
                                    self.operand()?;
                                    Seg::Other
                                }
                            };
                            if self.peek() != Some(&Tok::RBracket) {
                                return Err(self.err("expected `]`"));
                            }
                            self.pos += 1;
                            segs.push(key);
                        }
                        _ => break,
                    }
                }
                Ok(Operand::Path {
                    root,
                    segs,
                    span: Span::new(first.span.start, self.end_of_prev()),
                })
            }
            Tok::LBracket => {
                // `["key"]` at the root: a dynamic root lookup.
                self.pos += 1;
                self.operand()?;
                if self.peek() != Some(&Tok::RBracket) {
                    return Err(self.err("expected `]`"));
                }
                self.pos += 1;
                Ok(Operand::Literal)
            }
            _ => Err(self.err("a value is expected here")),
        }
    }

    /// `value (| filter (: args)?)*`.
    pub(crate) fn filtered_value(&mut self) -> Result<FilteredValue, TemplateError> {
        let value = self.operand()?;
        let value_end = self.end_of_prev();
        let mut filters = Vec::new();
        while self.peek() == Some(&Tok::Pipe) {
            self.pos += 1;
            let name_span = self.toks.get(self.pos).map(|l| l.span).unwrap_or_default();
            let name = self
                .ident()
                .map_err(|_| self.err("a filter name is expected after `|`"))?;
            let mut args = Vec::new();
            if self.peek() == Some(&Tok::Colon) {
                self.pos += 1;
                loop {
                    // `key: value` keyword argument.
                    if matches!(self.peek(), Some(Tok::Ident(_)))
                        && self.toks.get(self.pos + 1).map(|l| &l.tok) == Some(&Tok::Colon)
                    {
                        self.pos += 2;
                    }
                    args.push(self.operand()?);
                    if self.peek() == Some(&Tok::Comma) {
                        self.pos += 1;
                        continue;
                    }
                    break;
                }
            }
            filters.push(FilterCall {
                name,
                name_span,
                args,
            });
        }
        Ok(FilteredValue {
            value,
            value_end,
            filters,
        })
    }

    /// `cycle [group:] value, value, …` as liquid-lib parses it, returning
    /// the values. At least one is required: liquid-lib accepts `cycle g:`
    /// with none and then divides by zero when it renders.
    pub(crate) fn cycle_values(&mut self) -> Result<Vec<Operand>, TemplateError> {
        let first = self.operand()?;
        let mut values = Vec::new();
        if self.peek() == Some(&Tok::Colon) {
            // `first` named the group; it is not a variable lookup.
            self.pos += 1;
            values.push(self.operand()?);
        } else {
            values.push(first);
        }
        // `, value` repeated; both liquid-lib and LiquidJS allow a trailing comma.
        while self.peek() == Some(&Tok::Comma) {
            self.pos += 1;
            if self.at_end() {
                break;
            }
            values.push(self.operand()?);
        }
        self.expect_end("the cycle's values")?;
        Ok(values)
    }

    /// Every operand up to the end, stepping over operators and punctuation
    /// (conditions are checked leniently; liquid parses them after us).
    pub(crate) fn rest_operands(&mut self) -> Result<Vec<Operand>, TemplateError> {
        let mut out = Vec::new();
        while !self.at_end() {
            match self.peek() {
                Some(Tok::Ident(_)) | Some(Tok::Str(_)) | Some(Tok::Num) | Some(Tok::LParen) => {
                    out.push(self.operand()?);
                }
                _ => self.pos += 1,
            }
        }
        Ok(out)
    }
}
