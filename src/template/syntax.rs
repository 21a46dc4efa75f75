//! The `<< … >>` / `<% … %>` surface syntax.
//!
//! The scanner follows LiquidJS's tokenizer (which is what voice platforms
//! run) with the delimiters swapped: outputs end at the first `>>` outside a
//! quoted string, tags at the first `%>`, `<% raw %>` content runs to the
//! first `<% endraw %>`, and whitespace control trims neighbouring text
//! greedily. Every token keeps its byte span in the user's text, so errors
//! point at what the user wrote, not at the translated Liquid.

use super::error::{ErrorKind, TemplateError};

/// A byte range in the template source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }
}

/// One top-level piece of a template.
#[derive(Debug, Clone)]
pub(crate) enum Token {
    /// Literal text, already trimmed by whitespace control.
    Text(Span),
    /// `<< expr >>`; `inner` is the trimmed expression.
    Output { span: Span, inner: Span },
    /// `<% name args %>`.
    Tag { span: Span, name: Span, args: Span },
}

/// Maximum template size and nesting accepted at compile time: a header
/// template is small, and the caps keep hostile input cheap.
pub(crate) const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
pub(crate) const MAX_NESTING: usize = 32;

/// LiquidJS's `BLANK` class: ASCII whitespace plus the Unicode spaces.
pub(crate) fn is_blank(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{b}'
            | '\u{c}'
            | '\r'
            | ' '
            | '\u{a0}'
            | '\u{1680}'
            | '\u{180e}'
            | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// LiquidJS's identifier characters.
pub(crate) fn is_word(c: char) -> bool {
    if (c as u32) >= 128 {
        return !is_blank(c) && c != '\u{201c}' && c != '\u{201d}';
    }
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '?')
}

struct RawTok {
    tok: Token,
    trim_left: bool,
    trim_right: bool,
    is_raw_open: bool,
    is_raw_close: bool,
}

/// Splits a template into tokens and applies whitespace control.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, TemplateError> {
    if src.len() > MAX_TEMPLATE_BYTES {
        return Err(TemplateError::new(
            ErrorKind::TooLarge,
            format!(
                "template is {} bytes; the limit is {MAX_TEMPLATE_BYTES}",
                src.len()
            ),
        )
        .at(src, Span::new(0, 0)));
    }
    let b = src.as_bytes();
    let mut toks: Vec<RawTok> = Vec::new();
    let mut p = 0;
    let mut in_raw = false;
    while p < b.len() {
        if in_raw {
            // Raw content: up to a `<%` whose first identifier is `endraw`.
            let begin = p;
            let mut search = p;
            loop {
                let Some(lt) = find(b, search, b"<%") else {
                    return Err(TemplateError::new(
                        ErrorKind::Syntax,
                        "`<% raw %>` is not closed: add `<% endraw %>`",
                    )
                    .at(src, Span::new(begin, begin)));
                };
                let mut q = lt + 2;
                while q < b.len() && is_blank_at(src, q) {
                    q += char_len(src, q);
                }
                let id_start = q;
                while q < b.len() && is_word_at(src, q) {
                    q += char_len(src, q);
                }
                if &src[id_start..q] == "endraw" {
                    // Find `%>` before any further `<%`.
                    let close = find(b, q, b"%>");
                    let next_open = find(b, q, b"<%");
                    match close {
                        Some(c) if next_open.is_none_or(|o| c < o) => {
                            if lt > begin {
                                toks.push(plain(Token::Text(Span::new(begin, lt))));
                            }
                            let end = c + 2;
                            let (inner_l, inner_r, tl, tr) = content_range(src, lt + 2, c);
                            let _ = (inner_l, inner_r);
                            toks.push(RawTok {
                                tok: Token::Tag {
                                    span: Span::new(lt, end),
                                    name: Span::new(id_start, id_start + 6),
                                    args: Span::new(id_start + 6, id_start + 6),
                                },
                                trim_left: tl,
                                trim_right: tr,
                                is_raw_open: false,
                                is_raw_close: true,
                            });
                            p = end;
                            in_raw = false;
                            break;
                        }
                        _ => {
                            search = lt + 2;
                        }
                    }
                } else {
                    search = lt + 2;
                }
            }
            continue;
        }
        if b[p..].starts_with(b"<%") {
            let begin = p;
            let Some(close) = find(b, p + 2, b"%>") else {
                return Err(
                    TemplateError::new(ErrorKind::Syntax, "tag is not closed: add `%>`")
                        .at(src, Span::new(begin, begin + 2)),
                );
            };
            let end = close + 2;
            let (l, r, tl, tr) = content_range(src, begin + 2, close);
            // Tag name: identifier at the start of the content.
            let mut q = l;
            if q < r && b[q] == b'#' {
                q += 1;
            } else {
                while q < r && is_word_at(src, q) {
                    q += char_len(src, q);
                }
            }
            if q == l {
                return Err(
                    TemplateError::new(ErrorKind::Syntax, "tag name expected after `<%`")
                        .at(src, Span::new(begin, end)),
                );
            }
            let name = Span::new(l, q);
            while q < r && is_blank_at(src, q) {
                q += char_len(src, q);
            }
            let is_raw = &src[l..name.end] == "raw";
            toks.push(RawTok {
                tok: Token::Tag {
                    span: Span::new(begin, end),
                    name,
                    args: Span::new(q, r.max(q)),
                },
                trim_left: tl,
                trim_right: tr,
                is_raw_open: is_raw,
                is_raw_close: false,
            });
            if is_raw {
                in_raw = true;
            }
            p = end;
            continue;
        }
        if b[p..].starts_with(b"<<") {
            let begin = p;
            let Some(close) = find_output_end(b, p + 2) else {
                return Err(TemplateError::new(
                    ErrorKind::Syntax,
                    "output is not closed: add `>>`",
                )
                .at(src, Span::new(begin, begin + 2)));
            };
            let end = close + 2;
            let (l, r, tl, tr) = content_range(src, begin + 2, close);
            toks.push(RawTok {
                tok: Token::Output {
                    span: Span::new(begin, end),
                    inner: Span::new(l, r.max(l)),
                },
                trim_left: tl,
                trim_right: tr,
                is_raw_open: false,
                is_raw_close: false,
            });
            p = end;
            continue;
        }
        // Literal text up to the next `<%` or `<<`.
        let begin = p;
        while p < b.len() && !(b[p] == b'<' && matches!(b.get(p + 1), Some(b'%') | Some(b'<'))) {
            p += 1;
        }
        toks.push(plain(Token::Text(Span::new(begin, p))));
    }

    // Whitespace control, as LiquidJS's `whiteSpaceCtrl` (greedy).
    let mut spans: Vec<Token> = toks.iter().map(|t| t.tok.clone()).collect();
    let mut raw = false;
    for i in 0..toks.len() {
        if matches!(toks[i].tok, Token::Text(_)) {
            continue;
        }
        if !raw
            && toks[i].trim_left
            && i > 0
            && let Token::Text(s) = &mut spans[i - 1]
        {
            let t = src[s.start..s.end].trim_end_matches(is_blank);
            s.end = s.start + t.len();
        }
        if toks[i].is_raw_open {
            raw = true;
        } else if toks[i].is_raw_close {
            raw = false;
        }
        if !raw
            && toks[i].trim_right
            && i + 1 < spans.len()
            && let Token::Text(s) = &mut spans[i + 1]
        {
            let t = src[s.start..s.end].trim_start_matches(is_blank);
            s.start = s.end - t.len();
        }
    }
    Ok(spans
        .into_iter()
        .filter(|t| !matches!(t, Token::Text(s) if s.start >= s.end))
        .collect())
}

fn plain(tok: Token) -> RawTok {
    RawTok {
        tok,
        trim_left: false,
        trim_right: false,
        is_raw_open: false,
        is_raw_close: false,
    }
}

/// The content between delimiters, minus `-` markers and surrounding
/// blanks: (start, end, trim_left, trim_right).
fn content_range(src: &str, start: usize, end: usize) -> (usize, usize, bool, bool) {
    let b = src.as_bytes();
    let tl = start < end && b[start] == b'-';
    let tr = end > start && b[end - 1] == b'-';
    let mut l = if tl { start + 1 } else { start };
    let mut r = if tr { end - 1 } else { end };
    if l > r {
        // `<%-%>`: both markers are the same byte.
        l = r;
    }
    while l < r && is_blank_at(src, l) {
        l += char_len(src, l);
    }
    while r > l {
        let c = src[..r].chars().next_back().unwrap_or('x');
        if !is_blank(c) {
            break;
        }
        r -= c.len_utf8();
    }
    (l, r, tl, tr)
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if from > b.len() {
        return None;
    }
    b[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// End of an output: the first `>>` outside quotes (LiquidJS respects
/// quotes here, so `<< "a>>b" >>` is one output).
fn find_output_end(b: &[u8], mut p: usize) -> Option<usize> {
    while p < b.len() {
        match b[p] {
            q @ (b'"' | b'\'') => {
                p += 1;
                let mut escaped = false;
                while p < b.len() {
                    let c = b[p];
                    p += 1;
                    if c == q && !escaped {
                        break;
                    }
                    escaped = !escaped && c == b'\\';
                }
            }
            b'>' if b.get(p + 1) == Some(&b'>') => return Some(p),
            _ => p += 1,
        }
    }
    None
}

fn char_len(src: &str, i: usize) -> usize {
    src[i..].chars().next().map_or(1, char::len_utf8)
}

fn is_blank_at(src: &str, i: usize) -> bool {
    src[i..].chars().next().is_some_and(is_blank)
}

fn is_word_at(src: &str, i: usize) -> bool {
    src[i..].chars().next().is_some_and(is_word)
}

// ---------------------------------------------------------------------------
// Expressions inside outputs and tags.

/// A lexical token of a Liquid expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Str(String),
    Num,
    Dot,
    DotDot,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Pipe,
    Colon,
    Comma,
    Op,
}

#[derive(Debug, Clone)]
pub(crate) struct Lexed {
    pub tok: Tok,
    pub span: Span,
}

/// Splits an expression (`base` is its offset in the template).
pub(crate) fn lex_expr(src: &str, span: Span) -> Result<Vec<Lexed>, TemplateError> {
    let text = &src[span.start..span.end];
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = text[i..].chars().next().unwrap_or(' ');
        if is_blank(c) {
            i += c.len_utf8();
            continue;
        }
        let start = i;
        let tok = match c {
            '"' | '\'' => {
                i += 1;
                let body_start = i;
                let mut escaped = false;
                let mut closed = false;
                while i < b.len() {
                    let d = b[i];
                    i += 1;
                    if d == c as u8 && !escaped {
                        closed = true;
                        break;
                    }
                    escaped = !escaped && d == b'\\';
                }
                if !closed {
                    return Err(TemplateError::new(
                        ErrorKind::Syntax,
                        "string is not closed: add the closing quote",
                    )
                    .at(src, Span::new(span.start + start, span.start + i)));
                }
                Tok::Str(text[body_start..i - 1].to_string())
            }
            '0'..='9' => {
                while i < b.len()
                    && (b[i].is_ascii_digit()
                        || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
                {
                    i += 1;
                }
                Tok::Num
            }
            '-' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                while i < b.len()
                    && (b[i].is_ascii_digit()
                        || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
                {
                    i += 1;
                }
                Tok::Num
            }
            '.' if b.get(i + 1) == Some(&b'.') => {
                i += 2;
                Tok::DotDot
            }
            '.' => {
                i += 1;
                Tok::Dot
            }
            '[' => {
                i += 1;
                Tok::LBracket
            }
            ']' => {
                i += 1;
                Tok::RBracket
            }
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            '|' => {
                i += 1;
                Tok::Pipe
            }
            ':' => {
                i += 1;
                Tok::Colon
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '=' | '!' | '<' | '>' => {
                i += 1;
                if b.get(i) == Some(&b'=') || (c == '<' && b.get(i) == Some(&b'>')) {
                    i += 1;
                }
                Tok::Op
            }
            c if is_word(c) => {
                while i < b.len() && is_word_at(text, i) {
                    i += char_len(text, i);
                }
                Tok::Ident(text[start..i].to_string())
            }
            _ => {
                return Err(TemplateError::new(
                    ErrorKind::Syntax,
                    format!("unexpected character `{c}` in expression"),
                )
                .at(
                    src,
                    Span::new(span.start + start, span.start + i + c.len_utf8()),
                ));
            }
        };
        if tok == Tok::Num {
            // `liquid` panics on integers that overflow i64: refuse them here.
            let digits = &text[start..i];
            if !digits.contains('.') && digits.parse::<i64>().is_err() {
                return Err(TemplateError::new(
                    ErrorKind::Syntax,
                    "integer literal out of range (at most 19 digits)",
                )
                .at(src, Span::new(span.start + start, span.start + i)));
            }
        }
        out.push(Lexed {
            tok,
            span: Span::new(span.start + start, span.start + i),
        });
    }
    Ok(out)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<String> {
        tokenize(src)
            .unwrap()
            .into_iter()
            .map(|t| match t {
                Token::Text(s) => format!("T:{}", &src[s.start..s.end]),
                Token::Output { inner, .. } => format!("O:{}", &src[inner.start..inner.end]),
                Token::Tag { name, args, .. } => {
                    format!(
                        "G:{}|{}",
                        &src[name.start..name.end],
                        &src[args.start..args.end]
                    )
                }
            })
            .collect()
    }

    #[test]
    fn splits_outputs_tags_and_text() {
        assert_eq!(
            texts("Bearer << call.token >>!"),
            ["T:Bearer ", "O:call.token", "T:!"]
        );
        assert_eq!(
            texts("<% if a %>x<% endif %>"),
            ["G:if|a", "T:x", "G:endif|"]
        );
    }

    #[test]
    fn quoted_delimiters_do_not_close_outputs() {
        assert_eq!(texts(r#"<< "a>>b" >>"#), [r#"O:"a>>b""#]);
    }

    #[test]
    fn whitespace_control_trims_neighbours() {
        assert_eq!(texts("a \n <<- x ->> \n b"), ["T:a", "O:x", "T:b"]);
        assert_eq!(texts(" <%- if x -%> y "), ["G:if|x", "T:y "]);
    }

    #[test]
    fn raw_keeps_everything_literal() {
        assert_eq!(
            texts("<% raw %><< x >> <% if %><% endraw %>"),
            ["G:raw|", "T:<< x >> <% if %>", "G:endraw|"]
        );
    }

    #[test]
    fn unclosed_delimiters_are_errors_with_position() {
        let e = tokenize("ab << x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Syntax);
        assert_eq!((e.line(), e.column()), (1, 4));
        assert!(tokenize("<% if x").is_err());
        assert!(tokenize("<% raw %>abc").is_err());
    }

    #[test]
    fn parses_filtered_values() {
        let src = "call.metadata['x-y'] | default: 'public' | append: user.name";
        let mut p = Parser::new(src, Span::new(0, src.len())).unwrap();
        let fv = p.filtered_value().unwrap();
        assert!(p.at_end());
        match &fv.value {
            Operand::Path { root, segs, .. } => {
                assert_eq!(root, "call");
                assert_eq!(segs, &[Seg::Key("metadata".into()), Seg::Key("x-y".into())]);
            }
            _ => panic!("expected a path"),
        }
        assert_eq!(fv.filters.len(), 2);
        assert_eq!(fv.filters[1].name, "append");
        assert!(matches!(fv.filters[1].args[0], Operand::Path { .. }));
    }
}
