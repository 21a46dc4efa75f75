//! The scanner: template source → text, output and tag tokens, following
//! LiquidJS's tokenizer with the delimiters swapped, then LiquidJS's
//! greedy whitespace control.

use super::{Span, Token, char_len, is_blank, is_blank_at, is_word_at};
use crate::error::{ErrorKind, TemplateError};
use crate::guard::MAX_TEMPLATE_BYTES;

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
    while p < b.len() {
        let in_raw = toks.last().is_some_and(|t| t.is_raw_open);
        p = if in_raw {
            raw_content(src, p, &mut toks)?
        } else if b[p..].starts_with(b"<%") {
            tag(src, p, &mut toks)?
        } else if b[p..].starts_with(b"<<") {
            output(src, p, &mut toks)?
        } else {
            text(b, p, &mut toks)
        };
    }
    Ok(whitespace_control(src, &toks))
}

/// Inside `<% raw %>`: everything up to a `<%` whose first identifier is
/// `endraw` (closed by a `%>` before any further `<%`) is text.
fn raw_content(src: &str, begin: usize, toks: &mut Vec<RawTok>) -> Result<usize, TemplateError> {
    let b = src.as_bytes();
    let mut search = begin;
    loop {
        let Some(lt) = find(b, search, b"<%") else {
            return Err(TemplateError::new(
                ErrorKind::Syntax,
                "`<% raw %>` is not closed: add `<% endraw %>`",
            )
            .at(src, Span::new(begin, begin)));
        };
        search = lt + 2;
        let mut q = lt + 2;
        while q < b.len() && is_blank_at(src, q) {
            q += char_len(src, q);
        }
        let id_start = q;
        while q < b.len() && is_word_at(src, q) {
            q += char_len(src, q);
        }
        if &src[id_start..q] != "endraw" {
            continue;
        }
        let close = find(b, q, b"%>");
        let next_open = find(b, q, b"<%");
        let Some(c) = close.filter(|c| next_open.is_none_or(|o| *c < o)) else {
            continue;
        };
        if lt > begin {
            toks.push(plain(Token::Text(Span::new(begin, lt))));
        }
        let end = c + 2;
        let (_, _, tl, tr) = content_range(src, lt + 2, c);
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
        return Ok(end);
    }
}

/// `<% name args %>` at `begin`.
fn tag(src: &str, begin: usize, toks: &mut Vec<RawTok>) -> Result<usize, TemplateError> {
    let b = src.as_bytes();
    let Some(close) = find(b, begin + 2, b"%>") else {
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
    toks.push(RawTok {
        tok: Token::Tag {
            span: Span::new(begin, end),
            name,
            args: Span::new(q, r.max(q)),
        },
        trim_left: tl,
        trim_right: tr,
        is_raw_open: &src[l..name.end] == "raw",
        is_raw_close: false,
    });
    Ok(end)
}

/// `<< expr >>` at `begin`.
fn output(src: &str, begin: usize, toks: &mut Vec<RawTok>) -> Result<usize, TemplateError> {
    let Some(close) = find_output_end(src.as_bytes(), begin + 2) else {
        return Err(
            TemplateError::new(ErrorKind::Syntax, "output is not closed: add `>>`")
                .at(src, Span::new(begin, begin + 2)),
        );
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
    Ok(end)
}

/// Literal text up to the next `<%` or `<<`.
fn text(b: &[u8], begin: usize, toks: &mut Vec<RawTok>) -> usize {
    let mut p = begin;
    while p < b.len() && !(b[p] == b'<' && matches!(b.get(p + 1), Some(b'%') | Some(b'<'))) {
        p += 1;
    }
    toks.push(plain(Token::Text(Span::new(begin, p))));
    p
}

/// Whitespace control, as LiquidJS's `whiteSpaceCtrl` (greedy); text left
/// empty is dropped.
fn whitespace_control(src: &str, toks: &[RawTok]) -> Vec<Token> {
    let mut spans: Vec<Token> = toks.iter().map(|t| t.tok.clone()).collect();
    let mut raw = false;
    for (i, t) in toks.iter().enumerate() {
        if matches!(t.tok, Token::Text(_)) {
            continue;
        }
        if !raw
            && t.trim_left
            && i > 0
            && let Token::Text(s) = &mut spans[i - 1]
        {
            let kept = src[s.start..s.end].trim_end_matches(is_blank);
            s.end = s.start + kept.len();
        }
        if t.is_raw_open {
            raw = true;
        } else if t.is_raw_close {
            raw = false;
        }
        if !raw
            && t.trim_right
            && i + 1 < spans.len()
            && let Token::Text(s) = &mut spans[i + 1]
        {
            let kept = src[s.start..s.end].trim_start_matches(is_blank);
            s.start = s.end - kept.len();
        }
    }
    spans
        .into_iter()
        .filter(|t| !matches!(t, Token::Text(s) if s.start >= s.end))
        .collect()
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
